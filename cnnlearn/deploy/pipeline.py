"""The automated deploy pipeline behind ``cnnlearn deploy`` (chapter 8).

take or train a model → evaluate on the held-out test set → convert to TFLite
(float32, or a chapter-6 compression) and evaluate that too → **gate** (minimum
accuracy, maximum size) → export as the next version → ``deploy_report.json``.
Below the gate nothing is published: the report says why and
:class:`GateError` is raised (``cnnlearn deploy`` exits non-zero). A running
server picks the new version up by itself; rollback is :func:`remove_version`
(the server falls back to the highest remaining version) or pinning a version
(``cnnlearn serve --pin-version N``).
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path

import numpy as np

from cnnlearn._io import write_json
from cnnlearn.compress import quantize
from cnnlearn.deploy.export import (
    TFLITE_FILE,
    export_version,
    list_versions,
    tflite_bytes,
)

__all__ = ["GateError", "deploy", "remove_version"]


class GateError(ValueError):
    """The model failed the deploy gate; ``report`` is the written report."""

    def __init__(self, message: str, report: dict):
        super().__init__(message)
        self.report = report


def _load_or_train(model, x_train, y_train, train_model, epochs, seed, log):
    import cnnlearn._tf  # noqa: F401

    # isort: split
    import keras

    from cnnlearn import models, train

    if model is None:
        log(f"training {train_model} for {epochs} epoch(s) on {len(x_train)} images")
        spec = models.get_spec(train_model)
        result = train.fit(
            models.get_model(train_model, seed=seed),
            x_train,
            y_train,
            epochs=epochs,
            batch_size=spec.batch_size,
            learning_rate=spec.learning_rate,
            seed=seed,
            verbose=0,
        )
        return result.model, f"trained: {train_model}, {epochs} epoch(s)"
    if isinstance(model, str | Path):
        path = Path(model)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such model file (expected .keras)")
        return keras.saving.load_model(path, compile=False), f"loaded: {path}"
    return model, f"given: {model.name}"


def deploy(
    model=None,
    *,
    base_path: str | Path,
    model_name: str = "mnist",
    output_dir: str | Path,
    dataset: str = "mnist",
    data_dir: str | Path | None = None,
    data_fraction: float = 1.0,
    train_model: str = "seed",
    epochs: int = 1,
    seed: int = 0,
    min_accuracy: float = 0.97,
    max_size_mb: float = 5.0,
    compression: str | None = None,
    verbose: bool = True,
) -> dict:
    """Evaluate, gate and publish a model as the next version. Used in chapter 8.

    Parameters
    ----------
    model
        A Keras model, a ``.keras`` path, or ``None`` to train ``train_model``
        for ``epochs`` on ``data_fraction`` of the training set.
    base_path, model_name
        Versions go to ``base_path/model_name/<N>/`` (serve that directory).
    output_dir
        Where ``deploy_report.json`` goes, published or refused.
    min_accuracy, max_size_mb
        The gate: test accuracy of the model that will be served (the TFLite
        one when ``compression`` is set) and the size of its ``model.tflite``.
    compression
        ``None`` (float32), ``"dynamic"``, ``"float16"`` or ``"int8"``.

    Returns
    -------
    dict
        The report: published, version, path, accuracies, sizes, gate, timings.

    Raises
    ------
    GateError
        Below the gate, after writing the report.
    """
    from cnnlearn import data, train

    def log(message: str) -> None:
        if verbose:
            print(f"deploy: {message}", flush=True)

    timings: dict[str, float] = {}
    start = time.perf_counter()
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (x_train, y_train), (x_test, y_test) = data.load_dataset(dataset, data_dir)
    x_train, y_train = data.take_fraction(x_train, y_train, data_fraction, seed)
    x_train, x_test = data.preprocess_images(x_train), data.preprocess_images(x_test)
    timings["data_seconds"] = time.perf_counter() - start

    t = time.perf_counter()
    model, source = _load_or_train(
        model, x_train, y_train, train_model, epochs, seed, log
    )
    timings["model_seconds"] = time.perf_counter() - t

    t = time.perf_counter()
    keras_accuracy = train.evaluate(model, x_test, y_test).accuracy
    mode = compression or "float32"
    flatbuffer = tflite_bytes(model, mode, x_train[:500])
    tmp = out / f".candidate-{uuid.uuid4().hex[:8]}.tflite"
    try:
        tmp.write_bytes(flatbuffer)
        probs = quantize.predict_tflite(tmp, x_test)
    finally:
        tmp.unlink(missing_ok=True)
    tflite_accuracy = float(np.mean(probs.argmax(1) == y_test))
    timings["evaluate_seconds"] = time.perf_counter() - t
    served_accuracy = tflite_accuracy if compression else keras_accuracy
    size_mb = len(flatbuffer) / 1e6
    log(f"test accuracy {served_accuracy:.4f}, {TFLITE_FILE} {size_mb:.3f} MB")

    reasons = []
    if served_accuracy < min_accuracy:
        reasons.append(f"test accuracy {served_accuracy:.4f} < {min_accuracy}")
    if size_mb > max_size_mb:
        reasons.append(f"model size {size_mb:.3f} MB > {max_size_mb} MB")
    model_dir = Path(base_path) / model_name
    report = {
        "model_name": model_name,
        "model_dir": str(model_dir),
        "source": source,
        "dataset": dataset,
        "n_test": int(len(y_test)),
        "keras_test_accuracy": keras_accuracy,
        "tflite_test_accuracy": tflite_accuracy,
        "compression": mode,
        "tflite_bytes": len(flatbuffer),
        "gate": {
            "min_accuracy": min_accuracy,
            "max_size_mb": max_size_mb,
            "passed": not reasons,
            "reasons": reasons,
        },
        "previous_versions": list_versions(model_dir),
        "published": False,
        "version": None,
    }
    if reasons:
        report["timings"] = timings
        write_json(out / "deploy_report.json", report)
        raise GateError(f"gate refused {model_name}: {'; '.join(reasons)}", report)

    t = time.perf_counter()
    info = {"test_accuracy": served_accuracy, "source": source, "compression": mode}
    path = export_version(
        model,
        base_path,
        model_name,
        train_images=x_train,
        tflite=flatbuffer,
        info=info,
    )
    timings["export_seconds"] = time.perf_counter() - t
    timings["total_seconds"] = time.perf_counter() - start
    report.update(
        published=True, version=int(path.name), path=str(path), timings=timings
    )
    write_json(out / "deploy_report.json", report)
    log(f"published {path}")
    return report


def remove_version(base_path: str | Path, model_name: str, version: int) -> None:
    """Withdraw a version (rollback): servers stop seeing it at once.

    The directory is first renamed to a hidden name (atomic, and no longer an
    integer version), then deleted.
    """
    directory = Path(base_path) / model_name / str(version)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such version")
    hidden = directory.with_name(f".removed-{version}-{uuid.uuid4().hex[:8]}")
    os.rename(directory, hidden)
    shutil.rmtree(hidden, ignore_errors=True)
