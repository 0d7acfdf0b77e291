"""Strategies, devices and precision for ``tf.distribute`` (chapter 5)."""

from __future__ import annotations

import json
import logging
import os

import cnnlearn._tf  # noqa: F401  (quiet TensorFlow start-up; before Keras)

# isort: split
import keras
import tensorflow as tf

from cnnlearn import compute
from cnnlearn.compute import PRECISIONS
from cnnlearn.config import check_device_name
from cnnlearn.progress import logger

__all__ = [
    "FAULT_ENV",
    "STRATEGIES",
    "choose_strategy",
    "cluster_size",
    "get_strategy",
    "is_chief",
    "make_strategy",
    "resolve_jit",
    "set_global_precision",
    "task_info",
    "use_logical_cpus",
]

log = logger("distribute")

if not os.environ.get("CNNLEARN_VERBOSE"):
    # "Using MirroredStrategy with devices ...", "Collective all_reduce tensors
    # ..." and the like: INFO lines from TensorFlow's Python logger on every
    # strategy and every first step. Errors still show; CNNLEARN_VERBOSE=1 keeps
    # them all.
    tf.get_logger().setLevel(logging.ERROR)

STRATEGIES = ("auto", "mirrored", "multi_worker", "tpu")

FAULT_ENV = "CNNLEARN_FAULT_AT_STEP"  # "WORKER:STEP", fault injection for tests


def use_logical_cpus(n: int) -> list[str]:
    """Split the CPU into ``n`` logical devices, so ``MirroredStrategy`` can use
    several replicas on one machine. Call it before TensorFlow uses a device.

    Returns the logical CPU names. Used in chapter 5.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is None or len(current) != n:
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)]
            )
        except RuntimeError as exc:
            found = len(tf.config.list_logical_devices("CPU"))
            raise ValueError(
                f"cannot split the CPU into {n} logical devices: TensorFlow has "
                f"already initialized {found}; call use_logical_cpus first, in a "
                "fresh process"
            ) from exc
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def task_info() -> dict:
    """The cluster and this process's task from ``TF_CONFIG`` (``{}`` if unset).

    Kubernetes TFJob, Vertex AI and ``cnnlearn launch`` all set ``TF_CONFIG``.
    """
    text = os.environ.get("TF_CONFIG", "")
    if not text.strip():
        return {}
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"TF_CONFIG is not valid JSON: {exc}") from exc
    if not isinstance(config, dict) or "cluster" not in config:
        raise ValueError(f"TF_CONFIG needs a 'cluster' entry, found {text[:200]!r}")
    return config


def cluster_size(config: dict) -> int:
    """How many workers (the chief included) a ``TF_CONFIG`` dict names."""
    cluster = config.get("cluster", {})
    return sum(len(cluster.get(kind, [])) for kind in ("chief", "worker"))


def is_chief(strategy: tf.distribute.Strategy | None = None) -> bool:
    """True for the process that logs and writes checkpoints and results.

    That is the ``chief`` task if the cluster has one, else worker 0; a
    process outside any cluster is its own chief.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is not None and resolver.task_type is not None:
        task_type, task_id = resolver.task_type, resolver.task_id
    else:
        task = task_info().get("task", {})
        task_type, task_id = task.get("type"), task.get("index", 0)
    if task_type is None:
        return True
    has_chief = bool(task_info().get("cluster", {}).get("chief"))
    return task_type == "chief" or (
        task_type == "worker" and task_id == 0 and not has_chief
    )


def choose_strategy(
    device: str = "auto",
    multi_worker: bool = False,
    gpus: int | None = None,
    cpus: int | None = None,
    tf_config: dict | None = None,
) -> tuple[str, str]:
    """Decide which strategy fits: returns ``(kind, reason)``.

    ``kind`` is ``"default"``, ``"one_device"``, ``"mirrored"``,
    ``"multi_worker"`` or ``"tpu"``. ``gpus``, ``cpus`` (logical devices) and
    ``tf_config`` default to what this process sees.
    """
    device = check_device_name(device)
    if gpus is None:
        gpus = len(tf.config.list_physical_devices("GPU"))
    config = task_info() if tf_config is None else tf_config
    if device == "gpu" and gpus == 0:
        raise ValueError("device='gpu' was asked for, but no GPU is visible")
    if device == "tpu":
        return "tpu", "device='tpu': TPUStrategy through TPUClusterResolver"
    if multi_worker or cluster_size(config) > 1:
        why = (
            f"TF_CONFIG describes a cluster of {cluster_size(config)} workers"
            if cluster_size(config) > 1
            else "multi_worker=True"
        )
        return "multi_worker", f"{why}: MultiWorkerMirroredStrategy"
    if device in ("auto", "gpu") and gpus > 1:
        return "mirrored", f"{gpus} GPUs: MirroredStrategy over all of them"
    if device in ("auto", "gpu") and gpus == 1:
        return "one_device", "one GPU: OneDeviceStrategy('/gpu:0')"
    if cpus is None:  # initializes TensorFlow's devices: after the cases above
        cpus = len(tf.config.list_logical_devices("CPU"))
    if cpus > 1:
        return "mirrored", f"{cpus} logical CPUs: MirroredStrategy over them"
    return "default", "one CPU device: the default strategy"


def make_strategy(kind: str) -> tf.distribute.Strategy:
    """Build the strategy :func:`choose_strategy` named."""
    if kind == "default":
        return tf.distribute.get_strategy()
    if kind == "one_device":
        return tf.distribute.OneDeviceStrategy("/gpu:0")
    if kind == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("GPU")]
        devices = devices or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if kind == "multi_worker":
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.AUTO
        )
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    if kind == "tpu":
        return compute.tpu_strategy()
    raise ValueError(f"unknown strategy kind {kind!r}")


def get_strategy(device: str = "auto", multi_worker: bool = False):
    """A ``tf.distribute`` strategy for this machine; logs what it chose and why.

    * ``MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` describes a cluster or
      ``multi_worker=True``;
    * ``TPUStrategy`` (through ``TPUClusterResolver``) when ``device="tpu"``;
    * ``MirroredStrategy`` when several GPUs, or several logical CPUs (see
      :func:`use_logical_cpus`), exist;
    * ``OneDeviceStrategy("/gpu:0")`` with one GPU;
    * else the default strategy.

    A device that does not exist (``"gpu"`` on a CPU box, ``"tpu"`` without a
    TPU) is a ``ValueError``. Used in chapter 5.
    """
    kind, reason = choose_strategy(device, multi_worker)
    strategy = make_strategy(kind)
    log.info("strategy: %s (%s)", type(strategy).__name__, reason)
    return strategy


def set_global_precision(precision: str = "float32") -> str:
    """Set Keras' global dtype policy; returns its name.

    ``mixed_bfloat16`` is faster than float32 on CPUs with AMX or AVX512-BF16
    and on TPUs; ``mixed_float16`` is for GPUs (CPUs emulate float16, slowly).
    """
    if precision not in PRECISIONS:
        raise ValueError(
            f"unknown precision {precision!r}: expected one of {PRECISIONS}"
        )
    keras.mixed_precision.set_global_policy(precision)
    return precision


def resolve_jit(jit_compile: bool | str, strategy: tf.distribute.Strategy) -> bool:
    """Whether the train step is XLA-compiled: ``"auto"`` is on under a TPU
    strategy or with a GPU, off on CPUs (chapter 5 measures XLA there)."""
    if jit_compile == "auto":
        return isinstance(strategy, tf.distribute.TPUStrategy) or bool(
            tf.config.list_logical_devices("GPU")
        )
    if not isinstance(jit_compile, bool):
        raise ValueError(f"jit_compile must be True, False or 'auto': {jit_compile!r}")
    return jit_compile
