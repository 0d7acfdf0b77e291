"""Training and evaluation (chapter 4).

Plain Keras 3: :func:`fit` compiles with Adam and sparse categorical cross-entropy,
holds out a seeded validation split, and wires the usual callbacks (checkpoints,
TensorBoard, early stopping); :func:`evaluate` adds what ``model.evaluate`` lacks,
a per-class report and the confusion matrix; :func:`save_run` writes the run's
files (``model.keras``, ``metrics.json``, ``history.json``) atomically.

Modules: :mod:`~cnnlearn.train.fitting` (``fit``), :mod:`~cnnlearn.train.evaluation`
(``evaluate``) and :mod:`~cnnlearn.train.runs` (run directories).
"""

from cnnlearn.train.evaluation import Evaluation, evaluate
from cnnlearn.train.fitting import (
    PLAIN,
    EpochTimer,
    TrainResult,
    fit,
    split_validation,
)
from cnnlearn.train.runs import (
    RUN_FILES,
    StopOnInterrupt,
    TrainingInterrupted,
    check_run,
    evaluate_saved,
    run_training,
    save_run,
    versions,
)

__all__ = [
    "PLAIN",
    "RUN_FILES",
    "EpochTimer",
    "Evaluation",
    "StopOnInterrupt",
    "TrainResult",
    "TrainingInterrupted",
    "check_run",
    "evaluate",
    "evaluate_saved",
    "fit",
    "run_training",
    "save_run",
    "split_validation",
    "versions",
]
