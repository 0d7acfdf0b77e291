"""``cnnlearn train --strategy ...`` as a function (chapter 5).

:func:`run_distributed` makes the strategy, loads the run's data
(:func:`cnnlearn.config.load_data`), trains with
:func:`~cnnlearn.distribute.loop.distributed_fit`, evaluates on the test set and
saves the run as :func:`cnnlearn.train.run_training` does.
"""

from __future__ import annotations

import time
from pathlib import Path

import cnnlearn._tf  # noqa: F401  (quiet TensorFlow start-up; before Keras)

# isort: split
import tensorflow as tf

from cnnlearn import models, train
from cnnlearn._io import check_output_dir
from cnnlearn.config import RunConfig, load_data
from cnnlearn.distribute.loop import DistributedHistory, distributed_fit
from cnnlearn.distribute.strategy import (
    STRATEGIES,
    choose_strategy,
    cluster_size,
    is_chief,
    make_strategy,
    set_global_precision,
    task_info,
)
from cnnlearn.progress import say

__all__ = ["run_distributed"]


def _start_strategy(name: str, device: str) -> tuple[tf.distribute.Strategy, str]:
    """The strategy ``--strategy name`` asks for on ``device``, and why.

    It must be made before anything initializes TensorFlow's devices (a
    ``MultiWorkerMirroredStrategy`` sets up the collectives first).
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}: expected one of {STRATEGIES}")
    if name == "tpu":
        device = "tpu"
    kind, reason = choose_strategy(device, multi_worker=name == "multi_worker")
    if name == "mirrored" and kind not in ("mirrored", "one_device", "default"):
        raise ValueError(f"--strategy mirrored does not fit here: {reason}")
    if name == "mirrored":
        kind, reason = "mirrored", "--strategy mirrored: " + reason
    return make_strategy(kind), reason


def _train_result(
    history: DistributedHistory,
    strategy: tf.distribute.Strategy,
    seconds: float,
    global_batch: int,
    n_val: int,
) -> train.TrainResult:
    """The :class:`~cnnlearn.train.TrainResult` of a distributed run; its
    ``n_train`` counts the images an epoch trains on (whole global batches)."""
    return train.TrainResult(
        model=history.model,
        history={k: list(v) for k, v in history.items()},
        train_seconds=seconds,
        epochs=len(history["loss"]),
        batch_size=global_batch,
        n_train=(history["step"][-1] // len(history["step"])) * global_batch,
        n_val=n_val,
        device=_devices(strategy),
    )


def _devices(strategy: tf.distribute.Strategy) -> str:
    """The devices ``strategy`` trains on, for ``metrics.json``."""
    try:
        return ", ".join(strategy.extended.worker_devices)
    except RuntimeError:  # the default strategy: TensorFlow's first device
        gpus = tf.config.list_logical_devices("GPU")
        return (gpus or tf.config.list_logical_devices("CPU"))[0].name


def run_distributed(
    config: RunConfig,
    *,
    output_dir: str | Path,
    strategy: str = "auto",
    precision: str = "float32",
    steps_per_epoch: int | None = None,
    checkpoint_every: int | None = None,
    jit_compile: bool | str = "auto",
    verbose: bool = True,
) -> dict:
    """``cnnlearn train --strategy ...``: load, train with
    :func:`~cnnlearn.distribute.loop.distributed_fit`, evaluate on the test set
    and save, as :func:`cnnlearn.train.run_training` does.

    Parameters
    ----------
    config
        The run: model, data, seed, validation split, epochs and device;
        ``config.batch_size`` is the *global* batch (default: the model's).
    output_dir
        Checkpoints go to ``output_dir/checkpoints``; a restarted run resumes
        from them. The chief writes ``model.keras``, ``metrics.json`` and
        ``history.json`` here; worker ``i`` writes its copy into
        ``output_dir/worker_i`` (the weights are the same on every worker).
    strategy
        ``"auto"``, ``"mirrored"``, ``"multi_worker"`` or ``"tpu"``
        (:data:`~cnnlearn.distribute.strategy.STRATEGIES`).
    precision, steps_per_epoch, checkpoint_every, jit_compile, verbose
        As in :func:`~cnnlearn.distribute.strategy.set_global_precision` and
        :func:`~cnnlearn.distribute.loop.distributed_fit`.

    Returns
    -------
    dict
        ``metrics.json``: :func:`cnnlearn.train.save_run`'s fields, the config,
        the strategy, replicas, workers, precision and the global steps the
        run started and ended at. Used in chapter 5.

    Raises
    ------
    ValueError
        Before training, for a damaged checkpoint in ``output_dir/checkpoints``
        (:func:`~cnnlearn.distribute.loop.check_checkpoint`), naming the file.
    cnnlearn.train.runs.TrainingInterrupted
        On Ctrl-C (one worker only): the loop saves a checkpoint at the batch
        boundary and nothing is published; run again to resume. The run's
        files are published as :func:`cnnlearn.train.save_run` does, so a kill
        never leaves two runs' files in ``output_dir``.
    """
    check_output_dir(output_dir)
    config = config.resolved()
    spec = models.get_spec(config.model)
    set_global_precision(precision)
    dist, reason = _start_strategy(strategy, config.device)  # before TF starts
    data = load_data(config)
    (x_train, y_train), val = train.split_validation(
        data.x_train, data.y_train, config.validation_split, config.seed
    )
    chief = is_chief(dist)
    say(
        f"strategy: {type(dist).__name__} ({reason}), "
        f"{dist.num_replicas_in_sync} replicas, precision {precision}",
        verbose and chief,
    )
    out = Path(output_dir)
    start = time.perf_counter()
    history = distributed_fit(
        lambda: models.get_model(config.model, seed=config.seed),
        (x_train, y_train),
        dist,
        config.epochs,
        global_batch_size=config.batch_size,
        learning_rate=spec.learning_rate,
        validation_data=val,
        steps_per_epoch=steps_per_epoch,
        checkpoint_dir=out / "checkpoints",
        checkpoint_every=checkpoint_every,
        seed=config.seed,
        jit_compile=jit_compile,
        verbose=verbose,
    )
    result = _train_result(
        history,
        dist,
        time.perf_counter() - start,
        config.batch_size,
        0 if val is None else len(val[0]),
    )
    evaluation = train.evaluate(
        history.model, data.x_test, data.y_test, data.class_names
    )
    worker = (task_info().get("task") or {}).get("index", 0)
    return train.save_run(
        out if chief else out / f"worker_{worker}",
        result,
        evaluation,
        config,
        strategy=type(dist).__name__,
        replicas=dist.num_replicas_in_sync,
        workers=max(1, cluster_size(task_info())),
        precision=precision,
        initial_step=history.initial_step,
        final_step=history.final_step,
    )
