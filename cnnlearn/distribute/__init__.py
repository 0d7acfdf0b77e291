"""Distributed training with ``tf.distribute`` and Keras 3 (chapter 5).

:mod:`~cnnlearn.distribute.strategy` picks a ``tf.distribute`` strategy for the
hardware at hand and says why (:func:`get_strategy`).
:mod:`~cnnlearn.distribute.loop` is :func:`distributed_fit`, a custom training
loop that works under every strategy, ``MultiWorkerMirroredStrategy`` included,
where Keras 3's ``Model.fit`` fails (keras-team/keras#20585); it checkpoints on
the chief and resumes after a worker dies and the cluster restarts.
:mod:`~cnnlearn.distribute.runs` is ``cnnlearn train --strategy ...`` as a
function (:func:`run_distributed`). :mod:`~cnnlearn.distribute.launch` starts
local worker processes (``cnnlearn launch``, :func:`launch_workers`), and
:mod:`~cnnlearn.distribute.scaling` holds the learning-rate scaling rule and the
ring all-reduce scaling *model* the chapter plots (:func:`predicted_speedup`).

The package re-exports the public names of these modules. It is TensorFlow's:
without TensorFlow, importing it is a one-line ImportError; on JAX,
:func:`cnnlearn.compute.plan`'s ``devices`` spread a batch instead
(``keras.distribution``).
"""

from __future__ import annotations

from cnnlearn._tf import require_tensorflow

require_tensorflow("cnnlearn.distribute (tf.distribute)")

from cnnlearn.distribute.launch import (
    LaunchResult,
    free_ports,
    is_native_log,
    launch_workers,
    tf_config,
    worker_command,
)
from cnnlearn.distribute.loop import (
    DistributedHistory,
    check_checkpoint,
    distributed_fit,
    distributed_step,
    test_step,
    train_step,
)
from cnnlearn.distribute.runs import run_distributed
from cnnlearn.distribute.scaling import (
    allreduce_seconds,
    predicted_speedup,
    scaled_learning_rate,
)
from cnnlearn.distribute.strategy import (
    FAULT_ENV,
    STRATEGIES,
    choose_strategy,
    cluster_size,
    get_strategy,
    is_chief,
    make_strategy,
    resolve_jit,
    set_global_precision,
    task_info,
    use_logical_cpus,
)

__all__ = [
    "FAULT_ENV",
    "STRATEGIES",
    "DistributedHistory",
    "check_checkpoint",
    "LaunchResult",
    "allreduce_seconds",
    "choose_strategy",
    "cluster_size",
    "distributed_fit",
    "distributed_step",
    "free_ports",
    "get_strategy",
    "is_chief",
    "is_native_log",
    "launch_workers",
    "make_strategy",
    "predicted_speedup",
    "resolve_jit",
    "run_distributed",
    "scaled_learning_rate",
    "set_global_precision",
    "task_info",
    "test_step",
    "tf_config",
    "train_step",
    "use_logical_cpus",
    "worker_command",
]
