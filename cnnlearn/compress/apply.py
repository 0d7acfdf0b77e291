"""``cnnlearn compress`` as a function: compress a saved model, measure it (chapter 6).

:func:`compress_saved` loads a ``.keras`` file, applies one method, writes the
artifact and ``report.json`` (sizes raw and gzipped, nonzero parameters, LiteRT
test accuracy, latency) beside the same numbers for the uncompressed model.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cnnlearn._tf  # noqa: F401  (quiet TensorFlow start-up; before Keras)

# isort: split
import keras
import numpy as np

from cnnlearn._io import atomic_path, write_json
from cnnlearn.compress._util import count_nonzero

__all__ = ["METHODS", "compress_saved"]

METHODS = ("prune", "dynamic", "int8", "float16", "fuse", "distill")


def _load(path: str | Path, what: str) -> keras.Model:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    if path.suffix != ".keras":
        raise ValueError(f"expected a .keras {what} file, got {path.name}")
    return keras.models.load_model(path, compile=False)


def _measure(model: keras.Model, content: bytes, x, y) -> dict:
    from cnnlearn.compress import quantize

    ev = quantize.evaluate_tflite(content, x, y)
    keep = ("accuracy", "raw_bytes", "gzip_bytes", "latency_ms", "throughput_per_s")
    return {**count_nonzero(model), **{k: ev[k] for k in keep}}


def _write(path: Path, content: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(content)


def _save(path: Path, model: keras.Model) -> None:
    with atomic_path(path) as tmp:
        model.save(tmp)


def compress_saved(
    model_path: str | Path,
    method: str,
    output_dir: str | Path,
    *,
    sparsity: float = 0.8,
    epochs: int = 2,
    teacher_path: str | Path | None = None,
    dataset: str = "mnist",
    data_dir: str | Path | None = None,
    data_fraction: float = 1.0,
    seed: int = 0,
) -> dict:
    """Compress the model saved at ``model_path`` with ``method``; write the results.

    Methods: ``"dynamic"``, ``"int8"``, ``"float16"`` (post-training
    quantization); ``"prune"`` (``epochs`` of fine-tuning to ``sparsity``);
    ``"fuse"`` (fold batch norm); ``"distill"`` (train the model at
    ``model_path`` as a student of ``teacher_path`` for ``epochs``).

    Writes into ``output_dir`` the artifact (``model.tflite`` for quantization,
    ``model.keras`` plus its float32 ``model.tflite`` otherwise) and
    ``report.json``; returns the report. Every size, accuracy and latency is
    measured on the TFLite file with LiteRT on the whole test set, for the
    baseline (the model as given, float32) and the result.
    """
    from cnnlearn import data, train
    from cnnlearn.compress import distill, fuse, prune, quantize

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: expected one of {METHODS}")
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    if method == "distill" and teacher_path is None:
        raise ValueError("method 'distill' needs a teacher model (--teacher)")
    model = _load(model_path, "model")
    teacher = _load(teacher_path, "teacher") if method == "distill" else None
    (x_train, y_train), (x_test, y_test) = data.load_dataset(dataset, data_dir)
    x_train, y_train = data.take_fraction(x_train, y_train, data_fraction, seed)
    x_train, x_test = data.preprocess_images(x_train), data.preprocess_images(x_test)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)

    print(f"measuring the baseline {model_path}", file=sys.stderr)
    baseline = _measure(model, quantize.convert(model), x_test, y_test)
    info: dict = {}
    print(f"compressing: {method}", file=sys.stderr)
    if method in ("dynamic", "int8", "float16"):
        result = model
        content = quantize.convert(model, method, x_train[:300])
    else:
        if method == "prune":
            result, pruning = prune.prune_model(
                model, x_train, y_train, sparsity, epochs=epochs, seed=seed, verbose=2
            )
            info["sparsity"] = prune.sparsity_report(result)
        elif method == "fuse":
            result = fuse.fold_batchnorm(model)
            sample = x_test[:500]
            diff = model.predict(sample, verbose=0) - result.predict(sample, verbose=0)
            info["max_abs_diff"] = float(np.abs(diff).max())
            info["layers"] = {"before": len(model.layers), "after": len(result.layers)}
        else:
            distiller = distill.Distiller(model, teacher)
            train.fit(distiller, x_train, y_train, epochs=epochs, batch_size=128,
                      seed=seed, verbose=2)  # fmt: skip
            result = distiller.student
            info["teacher"] = str(teacher_path)
            info["teacher_params"] = int(teacher.count_params())
        _save(out / "model.keras", result)
        content = quantize.convert(result)
    artifact = out / "model.tflite"
    _write(artifact, content)
    measured = _measure(result, content, x_test, y_test)
    report = {
        "model": str(model_path),
        "method": method,
        "artifact": str(artifact),
        **({"sparsity_target": sparsity} if method == "prune" else {}),
        **({"epochs": epochs} if method in ("prune", "distill") else {}),
        "baseline": baseline,
        "compressed": measured,
        "gzip_ratio": baseline["gzip_bytes"] / measured["gzip_bytes"],
        "accuracy_change": measured["accuracy"] - baseline["accuracy"],
        "dataset": dataset,
        "seed": seed,
        "versions": train.versions(),
        **info,
    }
    write_json(out / "report.json", report)
    return report
