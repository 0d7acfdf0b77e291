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
    LR_SCHEDULES,
    PLAIN,
    EpochTimer,
    EvaluateEachEpoch,
    OneCycle,
    TrainResult,
    fit,
    smoothed_sparse_crossentropy,
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
    "LR_SCHEDULES",
    "PLAIN",
    "RUN_FILES",
    "EpochTimer",
    "EvaluateEachEpoch",
    "Evaluation",
    "OneCycle",
    "StopOnInterrupt",
    "TrainResult",
    "TrainingInterrupted",
    "check_run",
    "evaluate",
    "evaluate_saved",
    "fit",
    "run_training",
    "save_run",
    "smoothed_sparse_crossentropy",
    "split_validation",
    "versions",
]
