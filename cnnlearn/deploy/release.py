"""The automated deploy pipeline behind ``cnnlearn deploy`` (chapter 8).

take or train a model → evaluate on the held-out test set → convert to TFLite
(float32, or a chapter-6 compression) and evaluate that too → **gate** (minimum
accuracy, maximum size) → export as the next version → ``deploy_report.json``.
Below the gate nothing is published: the report says why and
:class:`GateError` is raised (``cnnlearn deploy`` exits non-zero). A running
server picks the new version up by itself; rollback is :func:`remove_version`
(the server falls back to the highest remaining version) or pinning a version
(``cnnlearn serve --pin-version N``).

Two things are published, each in one step: the version directory
(:func:`cnnlearn.deploy.export.export_version` renames a complete hidden
directory into place), then the report (:func:`write_report`, staged and
published like a training run, so a killed deploy's temporaries are cleaned
by the next one and a reader never sees a half-written report).
"""

from __future__ import annotations

import math
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import cnnlearn._tf  # noqa: F401  (quiet TensorFlow start-up; before Keras)

# isort: split
import keras
import numpy as np

from cnnlearn import models, train
from cnnlearn._io import (
    check_keras_file,
    check_output_dir,
    publish_dir,
    staging_dir,
    write_json,
)
from cnnlearn.compress import quantize
from cnnlearn.config import RunConfig, RunData, load_data
from cnnlearn.deploy.export import (
    TFLITE_FILE,
    export_version,
    list_versions,
    tflite_bytes,
)
from cnnlearn.progress import say

__all__ = [
    "REPORT_FILE",
    "Candidate",
    "GateError",
    "check_gate",
    "deploy",
    "evaluate_candidate",
    "gate_reasons",
    "gate_report",
    "load_or_train",
    "publish",
    "remove_version",
    "write_report",
]

REPORT_FILE = "deploy_report.json"


class GateError(ValueError):
    """The model failed the deploy gate; ``report`` is the written report."""

    def __init__(self, message: str, report: dict):
        super().__init__(message)
        self.report = report


@dataclass
class Candidate:
    """A model on its way to being served, with what the gate looks at.

    ``flatbuffer`` is its ``model.tflite`` (float32 or compressed with
    ``compression``); ``served_accuracy`` is the test accuracy of the model the
    server will run: the TFLite one when compressed, else the Keras one.
    """

    keras_accuracy: float
    tflite_accuracy: float
    flatbuffer: bytes
    compression: str

    @property
    def served_accuracy(self) -> float:
        compressed = self.compression != "float32"
        return self.tflite_accuracy if compressed else self.keras_accuracy

    @property
    def size_mb(self) -> float:
        return len(self.flatbuffer) / 1e6


def load_or_train(
    model_path: str | Path | None,
    config: RunConfig,
    data: RunData,
    verbose: bool = True,
) -> tuple[keras.Model, str]:
    """The model to deploy and where it came from (the report's ``source``).

    A ``.keras`` file is loaded; ``None`` trains ``config.model`` for
    ``config.epochs`` (``None``: 1) on ``data``'s training set.
    """
    if model_path is not None:
        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such model file (expected .keras)")
        check_keras_file(path)
        return keras.saving.load_model(path, compile=False), f"loaded: {path}"
    epochs = config.epochs or 1
    say(
        f"deploy: training {config.model} for {epochs} epoch(s) "
        f"on {len(data.x_train)} images",
        verbose,
    )
    spec = models.get_spec(config.model)
    result = train.fit(
        models.get_model(config.model, seed=config.seed),
        data.x_train,
        data.y_train,
        epochs=epochs,
        batch_size=config.batch_size or spec.batch_size,
        validation_split=config.validation_split,
        learning_rate=spec.learning_rate,
        seed=config.seed,
        device=config.device,
        plan=config.plan or None,
        verbose=0,
    )
    return result.model, f"trained: {config.model}, {epochs} epoch(s)"


def evaluate_candidate(
    model: keras.Model, data: RunData, compression: str | None = None
) -> Candidate:
    """Test ``model`` as Keras and as the TFLite file it would be served as.

    ``compression`` (``None`` for float32, ``"dynamic"``, ``"float16"``,
    ``"int8"``) is applied by chapter 6's converter; int8 calibrates on the
    first 500 training images.
    """
    mode = compression or "float32"
    keras_accuracy = train.evaluate(model, data.x_test, data.y_test).accuracy
    flatbuffer = tflite_bytes(model, mode, data.x_train[:500])
    probabilities = quantize.predict_tflite(flatbuffer, data.x_test)
    tflite_accuracy = float(np.mean(probabilities.argmax(1) == data.y_test))
    return Candidate(keras_accuracy, tflite_accuracy, flatbuffer, mode)


def gate_reasons(
    candidate: Candidate, min_accuracy: float, max_size_mb: float
) -> list[str]:
    """Why ``candidate`` may not be published; empty when it passes the gate.

    The gate fails closed: each test asks "is it good enough?", so a NaN
    measurement or threshold refuses (``x < nan`` would be False and pass).
    """
    reasons = []
    if not candidate.served_accuracy >= min_accuracy:
        reasons.append(
            f"test accuracy {candidate.served_accuracy:.4f} is not >= {min_accuracy}"
        )
    if not candidate.size_mb <= max_size_mb:
        reasons.append(
            f"model size {candidate.size_mb:.3f} MB is not <= {max_size_mb} MB"
        )
    return reasons


def check_gate(min_accuracy: float, max_size_mb: float) -> None:
    """Refuse thresholds that are not finite or out of range, before any work."""
    if not 0.0 <= min_accuracy <= 1.0:  # NaN fails this too
        raise ValueError(f"min_accuracy must be in [0, 1], got {min_accuracy}")
    if not 0.0 < max_size_mb < math.inf:
        raise ValueError(f"max_size_mb must be a finite size > 0 MB, got {max_size_mb}")


def publish(
    model: keras.Model,
    candidate: Candidate,
    source: str,
    data: RunData,
    *,
    base_path: str | Path,
    model_name: str,
) -> Path:
    """Export ``model`` as the next version of ``base_path/model_name``, with
    the candidate's TFLite file and the training images' statistics (for drift
    monitoring); return the new version's directory."""
    info = {
        "test_accuracy": candidate.served_accuracy,
        "source": source,
        "compression": candidate.compression,
    }
    return export_version(
        model,
        base_path,
        model_name,
        train_images=data.x_train,
        tflite=candidate.flatbuffer,
        info=info,
    )


def gate_report(
    candidate: Candidate,
    gate: dict,
    *,
    model_name: str,
    model_dir: Path,
    source: str,
    config: RunConfig,
    n_test: int,
) -> dict:
    """``deploy_report.json`` as the gate leaves it: not published (yet).

    ``gate`` holds ``min_accuracy``, ``max_size_mb``, ``passed`` and ``reasons``.
    """
    return {
        "model_name": model_name,
        "model_dir": str(model_dir),
        "source": source,
        "dataset": config.dataset,
        "n_test": n_test,
        "keras_test_accuracy": candidate.keras_accuracy,
        "tflite_test_accuracy": candidate.tflite_accuracy,
        "compression": candidate.compression,
        "tflite_bytes": len(candidate.flatbuffer),
        "gate": gate,
        "previous_versions": list_versions(model_dir),
        "published": False,
        "version": None,
        "config": config.to_dict(),
    }


def deploy(
    model_path: str | Path | None,
    config: RunConfig,
    *,
    base_path: str | Path,
    model_name: str = "mnist",
    output_dir: str | Path,
    min_accuracy: float = 0.97,
    max_size_mb: float = 5.0,
    compression: str | None = None,
    verbose: bool = True,
) -> dict:
    """Evaluate, gate and publish a model as the next version. Used in chapter 8.

    The phases: get the model (:func:`load_or_train`), test it as Keras and as
    TFLite (:func:`evaluate_candidate`), apply the gate (:func:`gate_reasons`),
    publish it as the next version (:func:`publish`), and write
    ``deploy_report.json`` (:func:`gate_report`) either way.

    Parameters
    ----------
    model_path
        A ``.keras`` file, or ``None`` to train ``config.model`` for
        ``config.epochs`` (``None``: 1).
    config
        The data (``dataset``, ``data_dir``, ``data_fraction``, ``seed``,
        loaded by :func:`cnnlearn.config.load_data`) and, when training, the
        model and its epochs, batch, device and plan.
    base_path, model_name
        Versions go to ``base_path/model_name/<N>/`` (serve that directory).
    output_dir
        Where ``deploy_report.json`` goes, published or refused.
    min_accuracy, max_size_mb
        The gate: test accuracy of the model that will be served (the TFLite
        one when ``compression`` is set) and the size of its ``model.tflite``.
    compression
        ``None`` (float32), ``"dynamic"``, ``"float16"`` or ``"int8"``.
    verbose
        Print progress lines (:func:`cnnlearn.progress.say`).

    Returns
    -------
    dict
        The report: published, version, path, accuracies, sizes, gate, timings,
        config.

    Raises
    ------
    GateError
        Below the gate, after writing the report.
    """
    check_gate(min_accuracy, max_size_mb)
    check_output_dir(output_dir)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    out = Path(output_dir)
    data = load_data(config)
    timings["data_seconds"] = time.perf_counter() - start

    t = time.perf_counter()
    model, source = load_or_train(model_path, config, data, verbose)
    timings["model_seconds"] = time.perf_counter() - t

    t = time.perf_counter()
    candidate = evaluate_candidate(model, data, compression)
    timings["evaluate_seconds"] = time.perf_counter() - t
    say(
        f"deploy: test accuracy {candidate.served_accuracy:.4f}, "
        f"{TFLITE_FILE} {candidate.size_mb:.3f} MB",
        verbose,
    )

    reasons = gate_reasons(candidate, min_accuracy, max_size_mb)
    gate = {
        "min_accuracy": min_accuracy,
        "max_size_mb": max_size_mb,
        "passed": not reasons,
        "reasons": reasons,
    }
    report = gate_report(
        candidate,
        gate,
        model_name=model_name,
        model_dir=Path(base_path) / model_name,
        source=source,
        config=config,
        n_test=int(len(data.y_test)),
    )
    if reasons:
        report["timings"] = timings
        write_report(out, report)
        raise GateError(f"gate refused {model_name}: {'; '.join(reasons)}", report)

    t = time.perf_counter()
    path = publish(
        model, candidate, source, data, base_path=base_path, model_name=model_name
    )
    timings["export_seconds"] = time.perf_counter() - t
    timings["total_seconds"] = time.perf_counter() - start
    report.update(
        published=True, version=int(path.name), path=str(path), timings=timings
    )
    write_report(out, report)
    say(f"deploy: published {path}", verbose)
    return report


def write_report(output_dir: str | Path, report: dict) -> Path:
    """Publish ``report`` as ``output_dir/deploy_report.json``; return its path.

    The report is the deploy run's completion marker: it is written into a
    staging directory inside ``output_dir`` and published with
    :func:`cnnlearn._io.publish_dir`, as ``cnnlearn train`` publishes a run, so
    a deploy that fails or is killed before this leaves the previous report
    whole, and the next deploy removes what a killed one left behind
    (:func:`cnnlearn._io.clean_output_dir`). Other files in ``output_dir``
    (a server's ``server.json``) are kept. The version a passing deploy
    exports is published before its report: killed in between, the version is
    served and its own ``assets.extra`` metadata says where it came from,
    while the report still describes the previous deploy. Used in chapter 8.
    """
    with staging_dir(output_dir, REPORT_FILE) as stage:
        write_json(stage / REPORT_FILE, report)
        publish_dir(stage, output_dir, REPORT_FILE)
    return Path(output_dir) / REPORT_FILE


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
