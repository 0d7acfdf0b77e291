"""Distributed training with ``tf.distribute`` and Keras 3 (chapter 5).

:func:`get_strategy` picks a ``tf.distribute`` strategy for the hardware at hand
and says why. :func:`distributed_fit` is a custom training loop that works under
every strategy, ``MultiWorkerMirroredStrategy`` included, where Keras 3's
``Model.fit`` fails (keras-team/keras#20585); it checkpoints on the chief and
resumes after a worker dies and the cluster restarts. :func:`run` is
``cnnlearn train --strategy ...`` as a function. :func:`predicted_speedup` is the
ring all-reduce scaling *model* the chapter plots.
"""

from __future__ import annotations

import time
from pathlib import Path

from cnnlearn.distribute.loop import DistributedHistory, _say, distributed_fit
from cnnlearn.distribute.scaling import (
    allreduce_seconds,
    predicted_speedup,
    scaled_learning_rate,
)
from cnnlearn.distribute.strategy import (
    DEVICES,
    FAULT_ENV,
    PRECISIONS,
    STRATEGIES,
    _cluster_size,
    choose_strategy,
    get_strategy,
    is_chief,
    make_strategy,
    set_precision,
    task_info,
    use_logical_cpus,
)

__all__ = [
    "DEVICES",
    "FAULT_ENV",
    "PRECISIONS",
    "STRATEGIES",
    "DistributedHistory",
    "allreduce_seconds",
    "choose_strategy",
    "distributed_fit",
    "get_strategy",
    "is_chief",
    "make_strategy",
    "predicted_speedup",
    "run",
    "scaled_learning_rate",
    "set_precision",
    "task_info",
    "use_logical_cpus",
]


def run(
    model: str = "seed",
    dataset: str = "mnist",
    *,
    output_dir: str | Path,
    strategy: str = "auto",
    device: str = "auto",
    precision: str = "float32",
    epochs: int | None = None,
    batch_size: int | None = None,
    data_dir: str | Path | None = None,
    data_fraction: float = 1.0,
    seed: int = 0,
    validation_split: float = 0.1,
    steps_per_epoch: int | None = None,
    checkpoint_every: int | None = None,
    jit_compile: bool | str = "auto",
    verbose: bool = True,
) -> dict:
    """``cnnlearn train --strategy ...``: load, train with :func:`distributed_fit`,
    evaluate on the test set and save, as :func:`cnnlearn.train.run` does.

    ``batch_size`` is the global batch. Checkpoints go to
    ``output_dir/checkpoints``; a restarted run resumes from them. The chief
    writes ``model.keras``, ``metrics.json`` and ``history.json`` into
    ``output_dir``; worker ``i`` writes its copy into ``output_dir/worker_i``
    (the weights are the same on every worker). ``metrics.json`` adds the
    strategy, replicas, workers, precision and the global steps the run started
    and ended at; its ``n_train`` counts the images an epoch trains on (whole
    global batches). Used in chapter 5; returns the metrics.
    """
    from cnnlearn import data, models, train

    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}: expected one of {STRATEGIES}")
    if strategy == "tpu":
        device = "tpu"
    set_precision(precision)
    spec = models.get_spec(model)
    kind, reason = choose_strategy(device, multi_worker=strategy == "multi_worker")
    if strategy == "mirrored" and kind not in ("mirrored", "one_device", "default"):
        raise ValueError(f"--strategy mirrored does not fit here: {reason}")
    if strategy == "mirrored":
        kind, reason = "mirrored", "--strategy mirrored: " + reason
    dist = make_strategy(kind)  # before anything initializes TensorFlow
    (x_train, y_train), (x_test, y_test) = data.load_dataset(dataset, data_dir)
    x_train, y_train = data.take_fraction(x_train, y_train, data_fraction, seed)
    (x_tr, y_tr), val = train.split_validation(
        data.preprocess_images(x_train), y_train, validation_split, seed
    )
    chief = is_chief(dist)
    if verbose and chief:
        _say(
            f"strategy: {type(dist).__name__} ({reason}), "
            f"{dist.num_replicas_in_sync} replicas, precision {precision}"
        )
    global_batch = batch_size or spec.batch_size
    out = Path(output_dir)
    start = time.perf_counter()
    history = distributed_fit(
        lambda: models.get_model(model, seed=seed),
        (x_tr, y_tr),
        dist,
        epochs or spec.epochs,
        global_batch_size=global_batch,
        learning_rate=spec.learning_rate,
        validation_data=val,
        steps_per_epoch=steps_per_epoch,
        checkpoint_dir=out / "checkpoints",
        checkpoint_every=checkpoint_every,
        seed=seed,
        jit_compile=jit_compile,
        verbose=verbose,
    )
    result = train.TrainResult(
        model=history.model,
        history={k: list(v) for k, v in history.items()},
        train_seconds=time.perf_counter() - start,
        epochs=len(history["loss"]),
        batch_size=global_batch,
        n_train=(history["step"][-1] // len(history["step"])) * global_batch,
        n_val=0 if val is None else len(val[0]),
        device=", ".join(dist.extended.worker_devices),
    )
    evaluation = train.evaluate(
        history.model, data.preprocess_images(x_test), y_test, data.CLASS_NAMES[dataset]
    )
    target = (
        out
        if chief
        else out / f"worker_{(task_info().get('task') or {}).get('index', 0)}"
    )
    return train.save_run(
        target,
        result,
        evaluation,
        model=model,
        dataset=dataset,
        data_fraction=data_fraction,
        seed=seed,
        strategy=type(dist).__name__,
        replicas=dist.num_replicas_in_sync,
        workers=max(1, _cluster_size(task_info())),
        precision=precision,
        initial_step=history.initial_step,
        final_step=history.final_step,
    )
