"""The custom training loop that works under every strategy (chapter 5).

Keras 3's ``Model.fit`` fails under ``MultiWorkerMirroredStrategy``
(keras-team/keras#20585), so :func:`distributed_fit` trains with a loop of its
own, in four parts:

* building: the model, the optimizer and the loop's counters are created inside
  ``strategy.scope()``, so each replica holds a mirrored copy;
* the step functions: :func:`train_step` and :func:`test_step` are what one
  replica computes on its slice of a global batch, and :func:`distributed_step`
  runs one on every replica and sums its results across replicas and workers;
* checkpointing: the chief saves the model, the optimizer and the loop's position
  and resumes a restarted run where it stopped;
* the epoch loop, :func:`distributed_fit` itself.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

import cnnlearn._tf  # noqa: F401  (quiet TensorFlow start-up; before Keras)

# isort: split
import keras
import numpy as np
import tensorflow as tf

from cnnlearn._io import write_json
from cnnlearn.distribute.strategy import (
    FAULT_ENV,
    cluster_size,
    is_chief,
    resolve_jit,
    task_info,
)
from cnnlearn.progress import say
from cnnlearn.train.runs import StopOnInterrupt, TrainingInterrupted

__all__ = [
    "DistributedHistory",
    "check_checkpoint",
    "distributed_fit",
    "distributed_step",
    "test_step",
    "train_step",
]

COUNTERS = ("step", "epoch", "batch")  # where the loop is (int64 variables)
SUMS = ("loss_sum", "correct", "seen")  # the epoch's metric sums (float64)


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


# --------------------------------------------------------------------------- #
# The step functions
# --------------------------------------------------------------------------- #
def train_step(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    inputs: tuple[tf.Tensor, tf.Tensor],
    global_batch_size: int,
) -> tuple[tf.Tensor, tf.Tensor]:
    """One replica's training step on its slice of a global batch.

    Each replica divides its per-example losses by the *global* batch size, so
    the sum of the replicas' gradients, which the strategy all-reduces inside
    ``optimizer.apply``, is the gradient of the mean loss over the whole global
    batch (section 5.1). Returns the slice's summed loss and its number of
    correct predictions, for the epoch's metrics. Used in chapter 5.
    """
    images, labels = inputs
    with tf.GradientTape() as tape:
        probs = model(images, training=True)
        per_example = keras.losses.sparse_categorical_crossentropy(
            labels, tf.cast(probs, tf.float32)
        )
        loss = tf.nn.compute_average_loss(
            per_example, global_batch_size=global_batch_size
        )
        if model.losses:
            loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
        scaled = optimizer.scale_loss(loss)  # float16: up here, down in apply()
    grads = tape.gradient(scaled, model.trainable_variables)
    optimizer.apply(grads, model.trainable_variables)
    correct = tf.equal(
        tf.argmax(probs, -1, output_type=tf.int64), tf.cast(labels, tf.int64)
    )
    return (
        tf.reduce_sum(tf.cast(per_example, tf.float64)),
        tf.reduce_sum(tf.cast(correct, tf.float64)),
    )


def test_step(
    model: keras.Model, inputs: tuple[tf.Tensor, tf.Tensor]
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """One replica's evaluation step: the slice's summed loss, its number of
    correct predictions and its number of images. Used in chapter 5."""
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


def distributed_step(
    strategy: tf.distribute.Strategy, replica_step: Callable, *, jit: bool = False
) -> Callable:
    """``replica_step`` run on every replica of ``strategy`` as one graph.

    ``strategy.run`` calls ``replica_step(inputs)`` on each replica with its
    slice of the distributed global batch; each of the values it returns is then
    summed across replicas and workers. With ``jit`` the replica's step is
    compiled by XLA. Used in chapter 5.
    """
    per_replica = (
        tf.function(replica_step, jit_compile=True, autograph=False)
        if jit
        else replica_step
    )

    @tf.function(jit_compile=False, autograph=False)
    def step(inputs):
        results = strategy.run(per_replica, args=(inputs,))
        return tuple(strategy.reduce("SUM", value, axis=None) for value in results)

    return step


# --------------------------------------------------------------------------- #
# Data, building and checkpointing
# --------------------------------------------------------------------------- #
def _check_sizes(epochs: int, global_batch_size: int, replicas: int) -> None:
    """Refuse an empty run, and a global batch the replicas cannot share."""
    if epochs < 1 or global_batch_size < 1:
        raise ValueError(
            f"epochs and global_batch_size must be >= 1: {epochs}, {global_batch_size}"
        )
    if global_batch_size % replicas:
        raise ValueError(
            f"global_batch_size {global_batch_size} is not a multiple "
            f"of the {replicas} replicas"
        )


def _epoch_batches(
    dataset, global_batch_size: int, steps_per_epoch: int | None, seed: int
) -> tuple[Callable[[int], tf.data.Dataset], int]:
    """A function giving epoch ``e``'s global batches, and their number.

    Arrays are shuffled in an order fixed by ``(seed, e)``, so a restarted run
    sees the same batches as the run it resumes; a dataset is taken as it is.
    """
    if isinstance(dataset, tf.data.Dataset):
        n_batches = steps_per_epoch or int(dataset.cardinality())

        def batches(epoch: int) -> tf.data.Dataset:
            return dataset.take(n_batches)

    else:
        x, y = (np.asarray(a) for a in dataset)
        if len(x) != len(y):
            raise ValueError(f"x and y differ in length: {len(x)} and {len(y)}")
        n_batches = len(x) // global_batch_size
        if steps_per_epoch:
            n_batches = min(n_batches, steps_per_epoch)

        def batches(epoch: int) -> tf.data.Dataset:
            order = np.random.default_rng([seed, epoch]).permutation(len(x))
            ds = tf.data.Dataset.from_tensor_slices((x[order], y[order]))
            return ds.batch(global_batch_size, drop_remainder=True).take(n_batches)

    if n_batches < 1:
        raise ValueError(
            f"an epoch has no full batch of {global_batch_size}; "
            "pass steps_per_epoch or more data"
        )
    return batches, n_batches


def _build_in_scope(
    strategy: tf.distribute.Strategy, model, optimizer, learning_rate
) -> tuple[keras.Model, keras.optimizers.Optimizer, dict[str, tf.Variable]]:
    """The model, its optimizer and the loop's variables (:data:`COUNTERS`,
    :data:`SUMS`), all created inside ``strategy.scope()``."""
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
            optimizer = keras.optimizers.Adam(learning_rate)
        elif callable(optimizer) and not isinstance(
            optimizer, keras.optimizers.Optimizer
        ):
            optimizer = optimizer()
        if keras.mixed_precision.global_policy().name == "mixed_float16":
            if not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(model.trainable_variables)
        state = {
            name: tf.Variable(0, dtype=tf.int64, trainable=False, name=name)
            for name in COUNTERS
        }
        for name in SUMS:
            state[name] = tf.Variable(0.0, dtype=tf.float64, trainable=False, name=name)
    return model, optimizer, state


def _damaged(path: Path | str, reason: str) -> ValueError:
    return ValueError(
        f"{path}: corrupt or truncated checkpoint ({reason}); "
        f"delete {Path(path).parent} to start the run over"
    )


def check_checkpoint(directory: str | Path) -> str | None:
    """The latest checkpoint in ``directory``, checked before anything trains.

    Its state file must parse, and every tensor of the checkpoint it names
    must read back whole (which catches a truncated or corrupt ``.index`` or
    ``.data`` file), so a damaged checkpoint is a one-line ``ValueError``
    naming the file, not an ``IndexError`` from deep inside the restore.
    Returns the checkpoint's prefix, or ``None`` when there is none yet.
    Used in chapter 5.
    """
    directory = Path(directory)
    state_file = directory / "checkpoint"
    if not state_file.is_file():
        return None
    state = tf.train.get_checkpoint_state(str(directory))
    if state is None or not state.model_checkpoint_path:
        raise _damaged(state_file, "the state file does not parse")
    latest = tf.train.latest_checkpoint(str(directory))
    if latest is None:
        raise _damaged(
            state_file, f"it names {state.model_checkpoint_path}, whose files are gone"
        )
    try:
        reader = tf.train.load_checkpoint(latest)
    except Exception as exc:  # TF raises OpError, IndexError, ... on damage
        raise _damaged(f"{latest}.index", str(exc).splitlines()[0]) from None
    for name in reader.get_variable_to_dtype_map():
        try:
            reader.get_tensor(name)
        except Exception as exc:
            data = sorted(directory.glob(f"{Path(latest).name}.data-*"))
            where = ", ".join(str(p) for p in data) or f"{latest}.data-*"
            raise _damaged(where, f"{name}: {str(exc).splitlines()[0]}") from None
    return latest


class _LoopCheckpoint:
    """The loop's checkpoints, kept in ``directory`` by the chief.

    The other workers write a scratch copy they delete (every worker must take
    part in a save). Beside each checkpoint the chief keeps
    ``history-<step>.json``, the history of the epochs finished by then, so a
    resumed run still reports every epoch.
    """

    def __init__(self, directory, objects: dict, chief: bool, worker: int) -> None:
        self.directory = Path(directory)
        self.chief = chief
        self.checkpoint = tf.train.Checkpoint(**objects)
        write_dir = self.directory / f".worker_{worker}_scratch"
        if chief:
            write_dir = self.directory
            self.directory.mkdir(parents=True, exist_ok=True)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, str(write_dir), max_to_keep=2
        )

    def restore(self) -> tuple[str, dict] | None:
        """Restore the latest checkpoint, if there is one: returns its path and
        the history saved with it (``{}`` if none was). The files are checked
        first (:func:`check_checkpoint`)."""
        latest = check_checkpoint(self.directory)
        if not latest:
            return None
        self.checkpoint.restore(latest).assert_existing_objects_matched()
        saved = self.directory / f"history-{latest.rsplit('-', 1)[-1]}.json"
        if not saved.is_file():
            return latest, {}
        try:
            return latest, json.loads(saved.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"{saved}: corrupt checkpoint history ({exc})") from None

    def save(self, step: int, history: dict) -> None:
        """Checkpoint at ``step``; the chief first writes ``history``."""
        if self.chief:  # the finished epochs' history, before the checkpoint itself
            write_json(self.directory / f"history-{step}.json", dict(history))
        self.manager.save(checkpoint_number=step)
        if not self.chief:
            shutil.rmtree(self.manager.directory, ignore_errors=True)
            return
        kept = {
            f"history-{c.rsplit('-', 1)[-1]}.json" for c in self.manager.checkpoints
        }
        for old in self.directory.glob("history-*.json"):
            if old.name not in kept:
                old.unlink(missing_ok=True)


def _fault(step: int, worker: int) -> None:
    """Kill this worker at ``step`` if :data:`FAULT_ENV` says so (tests, ch. 5)."""
    spec = os.environ.get(FAULT_ENV, "")
    if spec and spec == f"{worker}:{step}":
        say(f"fault injection: worker {worker} kills itself at step {step}")
        os.kill(os.getpid(), signal.SIGKILL)


# --------------------------------------------------------------------------- #
# The epoch loop
# --------------------------------------------------------------------------- #
def _train_epoch(
    step: Callable,
    strategy: tf.distribute.Strategy,
    batches: tf.data.Dataset,
    state: dict[str, tf.Variable],
    *,
    n_batches: int,
    global_batch_size: int,
    worker: int,
    checkpoint_every: int | None,
    save: Callable[[], None],
    stop: StopOnInterrupt | None = None,
) -> None:
    """Train on an epoch's ``n_batches`` from the batch ``state`` is at, adding
    to its counters and sums; save every ``checkpoint_every`` steps, except
    after the epoch's last batch (the caller saves the epoch's end). After a
    Ctrl-C (``stop.interrupted``), save at the batch boundary and raise
    :class:`~cnnlearn.train.TrainingInterrupted`."""
    first = int(state["batch"].numpy())
    distributed = strategy.experimental_distribute_dataset(batches.skip(first))
    for batch, inputs in enumerate(distributed, start=first):
        _fault(int(state["step"].numpy()), worker)
        loss_sum, correct = step(inputs)
        state["step"].assign_add(1)
        state["batch"].assign(batch + 1)
        state["loss_sum"].assign_add(loss_sum)
        state["correct"].assign_add(correct)
        state["seen"].assign_add(global_batch_size)
        at, last = int(state["step"].numpy()), batch + 1 == n_batches
        if stop is not None and stop.interrupted:
            save()
            raise TrainingInterrupted(
                f"interrupted (Ctrl-C) at step {at}: checkpoint saved, run again "
                "to resume; nothing published"
            )
        if checkpoint_every and at % checkpoint_every == 0 and not last:
            save()


def _end_epoch(state: dict[str, tf.Variable], epoch: int) -> dict:
    """The epoch's ``loss`` and ``accuracy``; the loop moves to the next epoch."""
    seen = float(state["seen"].numpy())
    logs = {
        "loss": float(state["loss_sum"].numpy()) / seen,
        "accuracy": float(state["correct"].numpy()) / seen,
    }
    state["epoch"].assign(epoch + 1)
    state["batch"].assign(0)
    for name in SUMS:
        state[name].assign(0.0)
    return logs


def _validate(step: Callable, strategy, data, global_batch_size: int) -> dict:
    """``val_loss`` and ``val_accuracy`` over ``data`` with the distributed
    :func:`test_step` ``step``, the batches sharded across workers."""
    x, y = data
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(global_batch_size)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    totals = np.zeros(3)
    for inputs in strategy.experimental_distribute_dataset(ds.with_options(options)):
        totals += [float(v) for v in step(inputs)]
    return {
        "val_loss": float(totals[0] / totals[2]),
        "val_accuracy": float(totals[1] / totals[2]),
    }


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
        XLA for the train step; ``"auto"``: on GPU or TPU only
        (:func:`~cnnlearn.distribute.strategy.resolve_jit`).
    verbose
        Log each epoch (the chief only) on stderr.

    Returns
    -------
    DistributedHistory
        Per-epoch ``loss``, ``accuracy`` (reduced across all replicas and
        workers), ``val_loss``, ``val_accuracy``, ``seconds`` and ``step``.

    Used in chapter 5.
    """
    strategy = strategy or tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    _check_sizes(epochs, global_batch_size, replicas)
    keras.utils.set_random_seed(seed)
    chief = is_chief(strategy)
    worker = (task_info().get("task") or {}).get("index", 0)
    batches, n_batches = _epoch_batches(
        dataset, global_batch_size, steps_per_epoch, seed
    )
    model, optimizer, state = _build_in_scope(strategy, model, optimizer, learning_rate)
    train = distributed_step(
        strategy,
        lambda inputs: train_step(model, optimizer, inputs, global_batch_size),
        jit=resolve_jit(jit_compile, strategy),
    )
    test = distributed_step(strategy, lambda inputs: test_step(model, inputs))

    history = DistributedHistory()
    checkpoint = None
    if checkpoint_dir is not None:
        objects = {"model": model, "optimizer": optimizer, **state}
        checkpoint = _LoopCheckpoint(checkpoint_dir, objects, chief, worker)
        restored = checkpoint.restore()
        if restored:
            history.update(restored[1])
            at = ", ".join(f"{k} {int(state[k].numpy())}" for k in COUNTERS)
            say(f"resumed from {restored[0]}: {at}", chief and verbose)

    def save() -> None:
        if checkpoint is not None:
            checkpoint.save(int(state["step"].numpy()), history)

    history.initial_step = int(state["step"].numpy())
    history.replicas = replicas
    # Ctrl-C stops one worker only where there is one: workers stopping at
    # different steps would leave the others waiting in a collective.
    stop = StopOnInterrupt() if cluster_size(task_info()) <= 1 else None
    try:
        if stop is not None:
            stop.install()
        _epoch_loop(train, test, strategy, batches, state, history, epochs,
                    n_batches=n_batches, global_batch_size=global_batch_size,
                    worker=worker, checkpoint_every=checkpoint_every, save=save,
                    stop=stop, validation_data=validation_data,
                    verbose=chief and verbose)  # fmt: skip
    finally:
        if stop is not None:
            stop.restore()
    history.final_step = int(state["step"].numpy())
    history.model = model
    return history


def _epoch_loop(
    train: Callable,
    test: Callable,
    strategy: tf.distribute.Strategy,
    batches: Callable[[int], tf.data.Dataset],
    state: dict[str, tf.Variable],
    history: DistributedHistory,
    epochs: int,
    *,
    validation_data,
    verbose: bool,
    **epoch_args,
) -> None:
    """The epochs from the one ``state`` is at: train, validate, record, save."""
    save = epoch_args["save"]
    for epoch in range(int(state["epoch"].numpy()), epochs):
        start = time.perf_counter()
        _train_epoch(train, strategy, batches(epoch), state, **epoch_args)
        logs = _end_epoch(state, epoch)
        if validation_data is not None:
            batch = epoch_args["global_batch_size"]
            logs.update(_validate(test, strategy, validation_data, batch))
        logs["seconds"] = time.perf_counter() - start
        logs["step"] = int(state["step"].numpy())
        for key, value in logs.items():
            history.setdefault(key, []).append(value)
        save()
        shown = " ".join(f"{k}={v:.4f}" for k, v in logs.items() if k != "step")
        say(f"epoch {epoch + 1}/{epochs} step {logs['step']} {shown}", verbose)
