"""The custom training loop that works under every strategy (chapter 5)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cnnlearn._tf  # noqa: F401  (quiet TensorFlow start-up; before Keras)

# isort: split
import keras
import numpy as np
import tensorflow as tf

from cnnlearn._io import write_json
from cnnlearn.distribute.strategy import FAULT_ENV, _jit, is_chief, task_info


class DistributedHistory(dict):
    """Per-epoch lists (``loss``, ``accuracy``, ``val_*``, ``seconds``, ``step``)
    like ``History.history``, plus where the run started and ended.

    ``initial_step`` is the global step the run resumed from (0 for a fresh
    run); ``final_step`` the step it ended at; ``replicas`` the number of
    replicas in sync.
    """

    initial_step: int = 0
    final_step: int = 0
    replicas: int = 1


def _dataset_epoch(x, y, global_batch: int, seed: int, epoch: int) -> tf.data.Dataset:
    """One epoch of global batches in an order fixed by ``(seed, epoch)``, so a
    restarted run sees the same batches as the run it resumes."""
    order = np.random.default_rng([seed, epoch]).permutation(len(x))
    ds = tf.data.Dataset.from_tensor_slices((x[order], y[order]))
    return ds.batch(global_batch, drop_remainder=True)


def _fault(step: int, worker: int) -> None:
    spec = os.environ.get(FAULT_ENV, "")
    if spec and spec == f"{worker}:{step}":
        print(
            f"fault injection: worker {worker} kills itself at step {step}",
            file=sys.stderr,
            flush=True,
        )
        os.kill(os.getpid(), signal.SIGKILL)


def distributed_fit(
    model: keras.Model | Callable[[], keras.Model],
    dataset: tf.data.Dataset | tuple[np.ndarray, np.ndarray],
    strategy: tf.distribute.Strategy | None = None,
    epochs: int = 1,
    *,
    global_batch_size: int = 64,
    optimizer: keras.optimizers.Optimizer | Callable | None = None,
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule = 1e-3,
    validation_data: tuple[np.ndarray, np.ndarray] | None = None,
    steps_per_epoch: int | None = None,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int | None = None,
    seed: int = 0,
    jit_compile: bool | str = "auto",
    verbose: bool = True,
) -> DistributedHistory:
    """Train ``model`` under ``strategy`` with a custom loop; Keras 3's ``fit``
    fails under ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585).

    Parameters
    ----------
    model
        A builder (called inside ``strategy.scope()``) or a model already
        built inside it. Sparse categorical cross-entropy on softmax outputs.
    dataset
        ``(x, y)`` arrays: each epoch is shuffled in an order fixed by
        ``(seed, epoch)`` and cut into ``global_batch_size`` batches (a partial
        last batch is dropped). Or a ``tf.data.Dataset`` of global batches whose
        order is the same every time it is iterated. The strategy splits each
        global batch across replicas and auto-shards across workers.
    strategy
        Default: ``tf.distribute.get_strategy()`` (one device).
    optimizer
        Built inside the scope if a callable; default ``Adam(learning_rate)``.
    steps_per_epoch
        Cut each epoch to this many steps (demos, tests, benchmarks).
    checkpoint_dir, checkpoint_every
        Checkpoint at the end of every epoch, and every ``checkpoint_every``
        steps. The chief writes ``checkpoint_dir``; the other workers write to
        a scratch directory they delete (all must take part). A run finding a
        checkpoint there resumes from its step: the epoch and the position in
        it, the metric sums so far, and the history, so no batch is seen twice.
    seed
        ``keras.utils.set_random_seed`` and the data order.
    jit_compile
        XLA for the train step; ``"auto"``: on GPU or TPU only.
    verbose
        Log each epoch (the chief only) on stderr.

    Returns
    -------
    DistributedHistory
        Per-epoch ``loss``, ``accuracy`` (reduced across all replicas and
        workers), ``val_loss``, ``val_accuracy``, ``seconds`` and ``step``.

    Used in chapter 5.
    """
    if epochs < 1 or global_batch_size < 1:
        raise ValueError(
            f"epochs and global_batch_size must be >= 1: {epochs}, {global_batch_size}"
        )
    strategy = strategy or tf.distribute.get_strategy()
    keras.utils.set_random_seed(seed)
    replicas = strategy.num_replicas_in_sync
    if global_batch_size % replicas:
        raise ValueError(
            f"global_batch_size {global_batch_size} is not a multiple "
            f"of the {replicas} replicas"
        )
    chief = is_chief(strategy)
    worker = (task_info().get("task") or {}).get("index", 0)

    if isinstance(dataset, tf.data.Dataset):
        x = y = None
        n_batches = steps_per_epoch or int(dataset.cardinality())
    else:
        x, y = (np.asarray(a) for a in dataset)
        if len(x) != len(y):
            raise ValueError(f"x and y differ in length: {len(x)} and {len(y)}")
        n_batches = len(x) // global_batch_size
        if steps_per_epoch:
            n_batches = min(n_batches, steps_per_epoch)
    if n_batches < 1:
        raise ValueError(
            f"an epoch has no full batch of {global_batch_size}; "
            "pass steps_per_epoch or more data"
        )

    with strategy.scope():
        if not isinstance(model, keras.Model):
            model = model()
        elif model.weights and not strategy.extended.variable_created_in_scope(
            model.weights[0].value
        ):
            raise ValueError(
                "the model was built outside strategy.scope(): pass a "
                "builder function instead"
            )
        if optimizer is None:
            opt = keras.optimizers.Adam(learning_rate)
        else:
            opt = (
                optimizer()
                if callable(optimizer)
                and not isinstance(optimizer, keras.optimizers.Optimizer)
                else optimizer
            )
        if keras.mixed_precision.global_policy().name == "mixed_float16":
            if not isinstance(opt, keras.optimizers.LossScaleOptimizer):
                opt = keras.optimizers.LossScaleOptimizer(opt)
        opt.build(model.trainable_variables)
        counters = {
            name: tf.Variable(0, dtype=tf.int64, trainable=False, name=name)
            for name in ("step", "epoch", "batch")
        }
        sums = {
            name: tf.Variable(0.0, dtype=tf.float64, trainable=False, name=name)
            for name in ("loss_sum", "correct", "seen")
        }
    loss_fn = keras.losses.SparseCategoricalCrossentropy(reduction=None)

    def replica_step(inputs):
        images, labels = inputs
        with tf.GradientTape() as tape:
            probs = model(images, training=True)
            per_example = loss_fn(labels, tf.cast(probs, tf.float32))
            loss = tf.nn.compute_average_loss(
                per_example, global_batch_size=global_batch_size
            )
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
            scaled = opt.scale_loss(loss) if hasattr(opt, "scale_loss") else loss
        grads = tape.gradient(scaled, model.trainable_variables)
        opt.apply(grads, model.trainable_variables)
        correct = tf.reduce_sum(
            tf.cast(
                tf.equal(
                    tf.argmax(probs, -1, output_type=tf.int64),
                    tf.cast(labels, tf.int64),
                ),
                tf.float64,
            )
        )
        return tf.reduce_sum(tf.cast(per_example, tf.float64)), correct

    jit = _jit(jit_compile, strategy)

    @tf.function(jit_compile=False, autograph=False)
    def train_step(inputs):
        loss_sum, correct = strategy.run(
            tf.function(replica_step, jit_compile=True, autograph=False)
            if jit
            else replica_step,
            args=(inputs,),
        )
        return (
            strategy.reduce("SUM", loss_sum, axis=None),
            strategy.reduce("SUM", correct, axis=None),
        )

    manager = None
    history = DistributedHistory()
    if checkpoint_dir is not None:
        ckpt = tf.train.Checkpoint(model=model, optimizer=opt, **counters, **sums)
        main_dir = Path(checkpoint_dir)
        write_dir = main_dir if chief else main_dir / f".worker_{worker}_scratch"
        if chief:
            main_dir.mkdir(parents=True, exist_ok=True)
        manager = tf.train.CheckpointManager(ckpt, str(write_dir), max_to_keep=2)
        latest = tf.train.latest_checkpoint(str(main_dir))
        if latest:
            ckpt.restore(latest).assert_existing_objects_matched()
            saved = main_dir / f"history-{latest.rsplit('-', 1)[-1]}.json"
            if saved.is_file():
                history.update(json.loads(saved.read_text()))
            if chief and verbose:
                _say(
                    f"resumed from {latest}: step {int(counters['step'].numpy())}, "
                    f"epoch {int(counters['epoch'].numpy())}, batch "
                    f"{int(counters['batch'].numpy())}"
                )

    def save():
        if manager is None:
            return
        step = int(counters["step"].numpy())
        if chief:  # the finished epochs' history, before the checkpoint itself
            write_json(main_dir / f"history-{step}.json", dict(history))
        manager.save(checkpoint_number=step)
        if chief:
            kept = {f"history-{c.rsplit('-', 1)[-1]}.json" for c in manager.checkpoints}
            for old in main_dir.glob("history-*.json"):
                if old.name not in kept:
                    old.unlink(missing_ok=True)
        else:
            shutil.rmtree(manager.directory, ignore_errors=True)

    history.initial_step = int(counters["step"].numpy())
    history.replicas = replicas
    for epoch in range(int(counters["epoch"].numpy()), epochs):
        start = time.perf_counter()
        first = int(counters["batch"].numpy())
        if x is not None:
            ds = _dataset_epoch(x, y, global_batch_size, seed, epoch)
        else:
            ds = dataset
        ds = ds.take(n_batches).skip(first)
        for batch, inputs in enumerate(
            strategy.experimental_distribute_dataset(ds), start=first
        ):
            _fault(int(counters["step"].numpy()), worker)
            loss_sum, correct = train_step(inputs)
            counters["step"].assign_add(1)
            counters["batch"].assign(batch + 1)
            sums["loss_sum"].assign_add(loss_sum)
            sums["correct"].assign_add(correct)
            sums["seen"].assign_add(global_batch_size)
            step = int(counters["step"].numpy())
            last = batch + 1 == n_batches  # saved below, with the epoch's end
            if checkpoint_every and step % checkpoint_every == 0 and not last:
                save()
        seen = float(sums["seen"].numpy())
        logs = {
            "loss": float(sums["loss_sum"].numpy()) / seen,
            "accuracy": float(sums["correct"].numpy()) / seen,
        }
        if validation_data is not None:
            logs.update(_validate(model, strategy, validation_data, global_batch_size))
        logs["seconds"] = time.perf_counter() - start
        logs["step"] = int(counters["step"].numpy())
        for key, value in logs.items():
            history.setdefault(key, []).append(value)
        counters["epoch"].assign(epoch + 1)
        counters["batch"].assign(0)
        for var in sums.values():
            var.assign(0.0)
        save()
        if chief and verbose:
            shown = " ".join(f"{k}={v:.4f}" for k, v in logs.items() if k != "step")
            _say(f"epoch {epoch + 1}/{epochs} step {logs['step']} {shown}")
    history.final_step = int(counters["step"].numpy())
    history.model = model
    return history


def _validate(model, strategy, data, global_batch_size: int) -> dict:
    x, y = data
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(global_batch_size)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    ds = ds.with_options(options)

    def replica_eval(inputs):
        images, labels = inputs
        probs = tf.cast(model(images, training=False), tf.float32)
        per_example = keras.losses.sparse_categorical_crossentropy(labels, probs)
        correct = tf.equal(
            tf.argmax(probs, -1, output_type=tf.int64), tf.cast(labels, tf.int64)
        )
        return (
            tf.reduce_sum(tf.cast(per_example, tf.float64)),
            tf.reduce_sum(tf.cast(correct, tf.float64)),
            tf.cast(tf.size(labels), tf.float64),
        )

    @tf.function(autograph=False)
    def eval_step(inputs):
        out = strategy.run(replica_eval, args=(inputs,))
        return [strategy.reduce("SUM", v, axis=None) for v in out]

    totals = np.zeros(3)
    for inputs in strategy.experimental_distribute_dataset(ds):
        totals += [float(v) for v in eval_step(inputs)]
    return {
        "val_loss": float(totals[0] / totals[2]),
        "val_accuracy": float(totals[1] / totals[2]),
    }


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
