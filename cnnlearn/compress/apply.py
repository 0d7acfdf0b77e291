"""``cnnlearn compress`` as a function: compress a saved model, measure it (chapter 6).

:func:`compress_saved` loads a ``.keras`` file, applies one method, writes the
artifact and ``report.json`` (sizes raw and gzipped, nonzero parameters, LiteRT
test accuracy, latency) beside the same numbers for the uncompressed model.
The files are written into a staging directory and published together, with
``report.json`` last (:func:`cnnlearn._io.publish_dir`), as ``cnnlearn train``
publishes a run: an output directory never holds one run's ``model.tflite``
beside another run's report, even when a run fails or is killed half-way.
"""

from __future__ import annotations

from pathlib import Path

import cnnlearn._tf  # noqa: F401  (quiet TensorFlow start-up; before Keras)

# isort: split
import keras
import numpy as np

from cnnlearn import train
from cnnlearn._io import (
    check_keras_file,
    check_output_dir,
    publish_dir,
    staging_dir,
    write_json,
)
from cnnlearn.compress import distill, fuse, prune, quantize
from cnnlearn.compress.common import count_nonzero
from cnnlearn.config import RunConfig, RunData, load_data
from cnnlearn.progress import say

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_EPOCHS",
    "METHODS",
    "REPORT_FILE",
    "compress_saved",
]

METHODS = ("prune", "dynamic", "int8", "float16", "fuse", "distill")
QUANTIZATION = ("dynamic", "int8", "float16")
#: Fine-tuning epochs (prune, distill) when ``config.epochs`` is None.
DEFAULT_EPOCHS = 2
#: Their batch when ``config.batch_size`` is None.
DEFAULT_BATCH_SIZE = 128
#: The report, written last: the run's completion marker.
REPORT_FILE = "report.json"
# A new run replaces these even when it does not write them: a quantization run
# writes no model.keras, and a pruned one left beside its report would be stale.
# (model.tflite is always written; named for a reader of the list.)
_RUN_FILES = ("model.keras", "model.tflite")


def _check_arguments(method: str, sparsity: float, teacher_path) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: expected one of {METHODS}")
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    if method == "distill" and teacher_path is None:
        raise ValueError("method 'distill' needs a teacher model (--teacher)")


def _load(path: str | Path, what: str) -> keras.Model:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    if path.suffix != ".keras":
        raise ValueError(f"expected a .keras {what} file, got {path.name}")
    check_keras_file(path)
    return keras.models.load_model(path, compile=False)


def _measure(model: keras.Model, content: bytes, x, y) -> dict:
    ev = quantize.evaluate_tflite(content, x, y)
    keep = ("accuracy", "raw_bytes", "gzip_bytes", "latency_ms", "throughput_per_s")
    return {**count_nonzero(model), **{k: ev[k] for k in keep}}


def _prune(model, data: RunData, config: RunConfig, sparsity: float):
    result, _ = prune.prune_model(
        model,
        data.x_train,
        data.y_train,
        sparsity,
        epochs=config.epochs or DEFAULT_EPOCHS,
        batch_size=config.batch_size or DEFAULT_BATCH_SIZE,
        validation_split=config.validation_split,
        seed=config.seed,
        device=config.device,
        verbose=2,
    )
    return result, {"sparsity": prune.sparsity_report(result)}


def _fuse(model, data: RunData):
    result = fuse.fold_batchnorm(model)
    sample = data.x_test[:500]
    diff = model.predict(sample, verbose=0) - result.predict(sample, verbose=0)
    return result, {
        "max_abs_diff": float(np.abs(diff).max()),
        "layers": {"before": len(model.layers), "after": len(result.layers)},
    }


def _distill(model, teacher, teacher_path, data: RunData, config: RunConfig):
    distiller = distill.Distiller(model, teacher)
    train.fit(
        distiller,
        data.x_train,
        data.y_train,
        epochs=config.epochs or DEFAULT_EPOCHS,
        batch_size=config.batch_size or DEFAULT_BATCH_SIZE,
        validation_split=config.validation_split,
        seed=config.seed,
        device=config.device,
        verbose=2,
    )
    return distiller.student, {
        "teacher": str(teacher_path),
        "teacher_params": int(teacher.count_params()),
    }


def _compress_into(
    stage: Path,
    out: Path,
    model: keras.Model,
    teacher: keras.Model | None,
    data: RunData,
    config: RunConfig,
    *,
    method: str,
    model_path: str | Path,
    sparsity: float,
    teacher_path: str | Path | None,
) -> dict:
    """Measure the baseline, compress, write the artifacts into ``stage`` (the
    staging directory of ``out``); return the report, which names the paths
    the artifacts will have in ``out``."""
    say(f"measuring the baseline {model_path}")
    baseline = _measure(model, quantize.convert(model), data.x_test, data.y_test)
    say(f"compressing: {method}")
    info: dict = {}
    if method in QUANTIZATION:
        result = model
        content = quantize.convert(model, method, data.x_train[:300])
    else:
        if method == "prune":
            result, info = _prune(model, data, config, sparsity)
        elif method == "fuse":
            result, info = _fuse(model, data)
        else:
            result, info = _distill(model, teacher, teacher_path, data, config)
        result.save(stage / "model.keras")
        content = quantize.convert(result)
    (stage / "model.tflite").write_bytes(content)
    measured = _measure(result, content, data.x_test, data.y_test)
    return {
        "model": str(model_path),
        "method": method,
        "artifact": str(out / "model.tflite"),
        **({"sparsity_target": sparsity} if method == "prune" else {}),
        **(
            {"epochs": config.epochs or DEFAULT_EPOCHS}
            if method in ("prune", "distill")
            else {}
        ),
        "baseline": baseline,
        "compressed": measured,
        "gzip_ratio": baseline["gzip_bytes"] / measured["gzip_bytes"],
        "accuracy_change": measured["accuracy"] - baseline["accuracy"],
        "dataset": config.dataset,
        "seed": config.seed,
        "config": config.to_dict(),
        "versions": train.versions(),
        **info,
    }


def compress_saved(
    model_path: str | Path,
    method: str,
    output_dir: str | Path,
    config: RunConfig = RunConfig(),  # noqa: B008  (frozen: safe to share)
    *,
    sparsity: float = 0.8,
    teacher_path: str | Path | None = None,
) -> dict:
    """Compress the model saved at ``model_path`` with ``method``; write the results.

    This is ``cnnlearn compress`` as a function (chapter 6).

    Parameters
    ----------
    model_path
        The ``.keras`` file to compress.
    method
        ``"dynamic"``, ``"int8"``, ``"float16"`` (post-training quantization,
        int8 calibrated on 300 training images); ``"prune"`` (fine-tune to
        ``sparsity``); ``"fuse"`` (fold batch norm); ``"distill"`` (train the
        model at ``model_path`` as a student of ``teacher_path``).
    output_dir
        Receives the artifact (``model.tflite`` for quantization, ``model.keras``
        plus its float32 ``model.tflite`` otherwise) and ``report.json``, all
        staged and published together with the report last, replacing the
        previous run's (its ``model.keras`` too, when this run writes none);
        other files are kept. If the run fails, the directory keeps the run
        it had.
    config
        The data (:func:`cnnlearn.config.load_data`: ``dataset``, ``data_dir``,
        ``data_fraction`` of the training set, ``seed``) and, for ``"prune"``
        and ``"distill"``, the fine-tuning: ``epochs`` (``None``: 2),
        ``batch_size`` (``None``: 128), ``validation_split`` and ``device``.
        ``model`` is not used.

    Returns
    -------
    dict
        The report. Every size, accuracy and latency is measured on the TFLite
        file with LiteRT on the whole test set, for the baseline (the model as
        given, float32) and the result.
    """
    _check_arguments(method, sparsity, teacher_path)
    check_output_dir(output_dir)
    model = _load(model_path, "model")
    teacher = _load(teacher_path, "teacher") if method == "distill" else None
    data = load_data(config)
    with staging_dir(output_dir, REPORT_FILE) as stage:
        report = _compress_into(
            stage,
            Path(output_dir),
            model,
            teacher,
            data,
            config,
            method=method,
            model_path=model_path,
            sparsity=sparsity,
            teacher_path=teacher_path,
        )
        write_json(stage / REPORT_FILE, report)
        publish_dir(stage, output_dir, REPORT_FILE, retire=_RUN_FILES)
    return report
