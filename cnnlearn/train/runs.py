"""Runs on disk: train, evaluate and save a run directory (``cnnlearn train``).

:func:`save_run` writes a run's files (``model.keras``, ``metrics.json``,
``history.json``) into a staging directory and publishes them with
``metrics.json`` last (:func:`cnnlearn._io.publish_dir`), so a run directory
never holds the files of two runs, even when a run is killed; :func:`check_run`
checks that it does not. :func:`run_training` and :func:`evaluate_saved` are the
``cnnlearn train`` and ``cnnlearn evaluate`` verbs as functions (chapter 4).
Ctrl-C stops :func:`run_training` at the next batch (:class:`StopOnInterrupt`)
and raises :class:`TrainingInterrupted`; nothing is published then.
"""

from __future__ import annotations

import cnnlearn._tf  # noqa: F401  (quiet TensorFlow start-up; before Keras)

# isort: split
import hashlib
import json
import platform
import signal
import threading
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import keras

from cnnlearn import data, models
from cnnlearn._io import (
    check_keras_file,
    check_output_dir,
    publish_dir,
    staging_dir,
    write_json,
)
from cnnlearn.compute import resolve_device
from cnnlearn.config import BACKENDS, RunConfig, load_data
from cnnlearn.train.evaluation import Evaluation, evaluate
from cnnlearn.train.fitting import TrainResult, fit

__all__ = [
    "RUN_FILES",
    "StopOnInterrupt",
    "TrainingInterrupted",
    "check_run",
    "evaluate_saved",
    "run_training",
    "save_run",
    "versions",
]

RUN_FILES = ("model.keras", "history.json", "metrics.json")  # metrics.json: last
# What a new run replaces even when it does not write it: the old run's report on
# its own model, and (run_training) its Keras checkpoints and TensorBoard logs.
_STALE = ("evaluation.json",)
_STALE_TRAINING = ("evaluation.json", "checkpoints", "logs")


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped training at a batch boundary; the run was not published.

    A ``KeyboardInterrupt``, so ``except Exception`` does not swallow it and
    one ``except KeyboardInterrupt`` in the CLI (which needs no Keras import
    to name it) prints the message and exits 130, for a second Ctrl-C too.
    Used in chapters 4 and 5.
    """


class StopOnInterrupt(keras.callbacks.Callback):
    """Turn the first Ctrl-C (SIGINT) into ``model.stop_training = True``.

    Keras' ``fit`` (TensorFlow, JAX and PyTorch trainers alike) checks
    ``stop_training`` after each call of its train function, so the fit ends
    at the next batch boundary (after ``steps_per_execution`` batches at
    most); ``interrupted`` then says so, and
    ``where`` gives the epoch and batch. The second Ctrl-C gets the handler
    that was there before (Python's: ``KeyboardInterrupt``). The handler is
    installed for the fit only, and only from the main thread (the only one
    Python delivers signals to); Keras skips ``on_train_end`` when ``fit``
    raises, so call :meth:`restore` in a ``finally``. Used in chapters 4 and 5.
    """

    def __init__(self) -> None:
        super().__init__()
        self.interrupted = False
        self.where = (0, 0)  # (epoch, batch) of the last batch finished
        self._installed = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        self.interrupted = True
        if self._model is not None:
            self._model.stop_training = True
        self.restore()

    def install(self) -> None:
        """Take over SIGINT (from the main thread; elsewhere, do nothing)."""
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True

    def restore(self) -> None:
        """Give SIGINT back to the handler that was there before (the
        default action if that one was not set from Python)."""
        if self._installed:
            previous = self._previous
            signal.signal(
                signal.SIGINT, signal.SIG_DFL if previous is None else previous
            )
            self._installed, self._previous = False, None

    def on_train_begin(self, logs=None) -> None:
        self.interrupted = False
        self.install()

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self.where = (epoch, 0)

    def on_train_batch_end(self, batch, logs=None) -> None:
        self.where = (self.where[0], batch + 1)
        if self.interrupted:  # in case anything reset the flag since
            self.model.stop_training = True

    def on_train_end(self, logs=None) -> None:
        self.restore()


def versions() -> dict[str, str]:
    """Versions of the software a run used, for its ``metrics.json``.

    The Keras backend, and the versions of Python, Keras, NumPy and the
    backend's library (TensorFlow, JAX or PyTorch), read from the installed
    distributions; one that is not installed is left out. Used in chapter 4.
    """
    backend = keras.config.backend()
    found = {"python": platform.python_version(), "backend": backend}
    for package in ("keras", BACKENDS.get(backend, backend), "numpy"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found


def _digest(path: Path) -> dict:
    """A file's size and SHA-256, for ``metrics.json``'s ``files``."""
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
    return {"bytes": path.stat().st_size, "sha256": sha.hexdigest()}


def _write_run(
    directory: Path,
    result: TrainResult,
    evaluation: Evaluation,
    config: RunConfig | None,
    info: dict,
) -> dict:
    """Write the run's files into ``directory`` (a staging directory), the
    metrics last, with the size and SHA-256 of the others under ``files``."""
    if config is not None:
        info = {
            "model": config.model,
            "dataset": config.dataset,
            "data_fraction": config.data_fraction,
            "seed": config.seed,
            "config": config.to_dict(),
            **info,
        }
    result.model.save(directory / "model.keras")
    write_json(directory / "history.json", result.history)
    metrics = {
        **info,
        "test_accuracy": evaluation.accuracy,
        "test_loss": evaluation.loss,
        "epochs": result.epochs,
        "batch_size": result.batch_size,
        "params": int(result.model.count_params()),
        "train_seconds": result.train_seconds,
        "seconds_per_epoch": result.seconds_per_epoch,
        "ms_per_step": result.ms_per_step,
        "n_train": result.n_train,
        "n_val": result.n_val,
        "n_test": int(evaluation.confusion_matrix.sum()),
        "device": result.device,
        "plan": result.plan.to_dict() if result.plan else None,
        "versions": versions(),
        "per_class": evaluation.per_class,
        "confusion_matrix": evaluation.confusion_matrix.tolist(),
        "files": {name: _digest(directory / name) for name in RUN_FILES[:2]},
    }
    write_json(directory / "metrics.json", metrics)
    return metrics


def save_run(
    output_dir: str | Path,
    result: TrainResult,
    evaluation: Evaluation,
    config: RunConfig | None = None,
    **info,
) -> dict:
    """Write ``model.keras``, ``history.json`` and ``metrics.json`` as one run.

    ``metrics.json`` holds test_accuracy, test_loss, epochs, batch_size, params,
    train_seconds and seconds_per_epoch, the data sizes, the device, the
    software versions, the per-class report and the confusion matrix, the
    size and SHA-256 of the other two files (``files``), plus any keyword
    arguments given here (model name, dataset, seed, ...). A run's ``config``
    adds its model, dataset, data_fraction and seed, and all of it under
    ``"config"``. The files are written into a staging directory inside
    ``output_dir`` and published with ``metrics.json`` last, replacing the
    previous run's and its ``evaluation.json``; other files are kept
    (:func:`cnnlearn._io.publish_dir`). Returns the metrics. Used in chapters
    4 and 5.
    """
    with staging_dir(output_dir) as stage:
        metrics = _write_run(stage, result, evaluation, config, info)
        publish_dir(stage, output_dir, retire=_STALE)
    return metrics


def check_run(output_dir: str | Path) -> dict:
    """The metrics of the complete run in ``output_dir``; a one-line
    ``ValueError`` if there is none, or if a file is not the one
    ``metrics.json`` describes (``FileNotFoundError`` for a missing one).
    Used in chapter 4."""
    out = Path(output_dir)
    marker = out / "metrics.json"
    if not marker.is_file():
        raise FileNotFoundError(f"{out}: no metrics.json: not a complete run")
    metrics = json.loads(marker.read_text())
    for name, expected in metrics.get("files", {}).items():
        if not (out / name).is_file():
            raise FileNotFoundError(f"{out / name}: missing from the run")
        found = _digest(out / name)
        if found != expected:
            raise ValueError(
                f"{out / name}: not the file metrics.json describes "
                f"(expected {expected}, found {found})"
            )
    return metrics


def run_training(
    config: RunConfig,
    *,
    output_dir: str | Path,
    checkpoint: bool = False,
    tensorboard: bool = False,
    early_stopping_patience: int | None = None,
    verbose: int | str = 1,
) -> dict:
    """Load data, train a registered model, evaluate it on the test set, save all.

    This is ``cnnlearn train`` as a function (chapter 4).

    Parameters
    ----------
    config
        Which model on which data (:func:`cnnlearn.config.load_data`), the seed,
        the validation split, the device and the training-plan overrides
        (``config.plan``, see :func:`fit`). ``epochs``, ``batch_size`` and the
        learning rate default to the model's :class:`~cnnlearn.models.ModelSpec`.
    output_dir
        Gets ``model.keras``, ``metrics.json`` and ``history.json``
        (:func:`save_run`), and the checkpoints and logs asked for, all
        written into a staging directory and published together when the run
        is complete; the previous run's files (its ``checkpoints/`` and
        ``logs/`` too) are replaced.
    checkpoint, tensorboard, early_stopping_patience, verbose
        As in :func:`fit`.

    Returns
    -------
    dict
        The ``metrics.json`` content, with the run's ``config`` (its epochs and
        batch size resolved).

    Raises
    ------
    TrainingInterrupted
        On Ctrl-C, after the batch that was running: nothing is published,
        and ``output_dir`` keeps the run it had.
    """
    config = config.resolved()  # an unknown model fails here,
    check_output_dir(output_dir)
    resolve_device(config.device)  # a missing device here: before loading data
    spec = models.get_spec(config.model)
    run = load_data(config)
    interrupt = StopOnInterrupt()
    with staging_dir(output_dir) as stage:
        try:
            result = fit(
                models.get_model(config.model, seed=config.seed),
                run.x_train,
                run.y_train,
                epochs=config.epochs,
                batch_size=config.batch_size,
                validation_split=config.validation_split,
                learning_rate=spec.learning_rate,
                lr_schedule=spec.lr_schedule,
                label_smoothing=spec.label_smoothing,
                seed=config.seed,
                device=config.device,
                output_dir=stage,
                checkpoint=checkpoint,
                tensorboard=tensorboard,
                early_stopping_patience=early_stopping_patience,
                verbose=verbose,
                plan=config.plan,
                callbacks=[interrupt],
            )
        finally:  # Keras skips on_train_end when fit raises
            interrupt.restore()
        if interrupt.interrupted:
            epoch, batch = interrupt.where
            raise TrainingInterrupted(
                f"interrupted (Ctrl-C) in epoch {epoch + 1} after batch {batch}: "
                f"nothing published, {output_dir} keeps the run it had"
            )
        evaluation = evaluate(result.model, run.x_test, run.y_test, run.class_names)
        metrics = _write_run(stage, result, evaluation, config, {})
        publish_dir(stage, output_dir, retire=_STALE_TRAINING)
    return metrics


def evaluate_saved(
    model_path: str | Path,
    dataset: str = "mnist",
    data_dir: str | Path | None = None,
    output_dir: str | Path | None = None,
) -> dict:
    """Evaluate a saved ``.keras`` model on a test set; write ``evaluation.json``.

    The report goes to ``output_dir``, by default the model's own directory.
    This is ``cnnlearn evaluate`` as a function; returns the report. The
    file's ``config.json`` is checked before Keras parses it
    (:func:`cnnlearn._io.check_keras_file`).
    """
    model_path = check_keras_file(model_path)  # config.json bounded first
    loaded = keras.models.load_model(model_path)
    _, (x_test, y_test) = data.load_dataset(dataset, data_dir)
    evaluation = evaluate(
        loaded, data.preprocess_images(x_test), y_test, data.CLASS_NAMES[dataset]
    )
    report = {"model": str(model_path), "dataset": dataset, **evaluation.report()}
    out = Path(output_dir) if output_dir is not None else model_path.parent
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "evaluation.json", report)
    return report
