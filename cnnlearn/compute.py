"""Matching the training path to the hardware at hand (chapter 5, 算法与算力适配).

A small CNN on a CPU is overhead-bound: most of a training step is Python,
op dispatch and memory traffic, not arithmetic. :func:`plan` looks at the
machine (GPU compute capability, the CPU's bfloat16 instructions) and the data,
and picks the input pipeline, the batch size, ``steps_per_execution``, the
precision policy, XLA and data parallelism, each with the reason, so that
:func:`cnnlearn.train.fit` runs the fastest path that learns as well as the
plain one (``benchmarks/train_speed.py`` checks it). Every field can be
overridden. The plan knows the Keras backend (TensorFlow, JAX or PyTorch,
chapter 4's parity table): what each compiles, how it is fed, and how it
spreads a batch over several accelerators.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cnnlearn._tf  # noqa: F401  (quiet TensorFlow start-up; before Keras)

# isort: split
import keras
import numpy as np

from cnnlearn.config import check_device_name

__all__ = [
    "PIPELINES",
    "PRECISIONS",
    "Plan",
    "accelerator_count",
    "apply_precision",
    "cpu_flags",
    "device_scope",
    "gpu_capability",
    "native_bf16",
    "plan",
    "resolve_device",
    "tpu_strategy",
]


PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
PIPELINES = ("tf.data", "batches", "numpy", "dataset")
STEPS_PER_EXECUTION = 32
EVAL_BATCH_SIZE = 1024
# A batch of 32 small images is too little work to spread over cores: on the
# 2-core CPU of chapter 5 one thread trains it as fast as two. The plan grows a
# smaller recipe batch to this size (and Adam's learning rate by the square
# root of the factor) when an epoch still has MIN_STEPS_PER_EPOCH steps.
HARDWARE_BATCH = 128
MIN_STEPS_PER_EPOCH = 200

# x86 flags (Linux /proc/cpuinfo) and the Arm feature name for native bfloat16
# matrix arithmetic; a CPU without them emulates bfloat16 in float32, slowly.
_BF16_FLAGS = {
    "amx_bf16": "AMX-BF16 tiles",
    "avx512_bf16": "AVX512-BF16",
    "bf16": "BF16",
}


# --- what the machine has ------------------------------------------------------
# The functions below import tensorflow or jax inside the branch for that Keras
# backend: the package runs under either, and only the active one is installed
# for sure.


def resolve_device(device: str = "auto") -> str:
    """Map a device name (:data:`cnnlearn.config.DEVICES`) to ``"/CPU:0"``,
    ``"/GPU:0"`` or ``"/TPU:0"``.

    ``"auto"`` takes a TPU if one is attached, else the first GPU, else the
    CPU. Asking for a device that is not there is a one-line
    :class:`ValueError`, never a silent fall-back to the CPU, so a run fails
    before it loads data (chapter 5; ``cnnlearn book run --device`` checks it
    once for the whole book).
    """
    name = check_device_name(device)
    backend = keras.config.backend()
    if name == "tpu" and not _tpu_attached():
        raise ValueError(
            f"device='tpu' was asked for, but no TPU is attached (Keras backend "
            f"{backend}: no TPU device, no /dev/accel0, TPU_NAME unset)"
        )
    if name == "gpu" and not _gpu_count():
        raise ValueError(
            f"device='gpu' was asked for, but no GPU is visible (Keras backend "
            f"{backend})"
        )
    if name == "tpu" or (name == "auto" and _tpu_attached()):
        return "/TPU:0"
    if name == "cpu" or not _gpu_count():
        return "/CPU:0"
    return "/GPU:0"


def _tpu_attached() -> bool:
    """A TPU this process can use: JAX lists one; for TensorFlow, a local TPU
    VM's device file or a named TPU (``TPU_NAME``) that the resolver connects to."""
    if keras.config.backend() == "jax":
        import jax

        return any(d.platform == "tpu" for d in jax.devices())
    if keras.config.backend() != "tensorflow":
        return False
    local = os.path.exists("/dev/accel0") or os.path.exists("/dev/vfio/0")
    return local or bool(os.environ.get("TPU_NAME"))


@functools.cache
def tpu_strategy():
    """``tf.distribute.TPUStrategy`` on the attached TPU, connected once per process.

    A TPU that the resolver cannot reach is a one-line :class:`ValueError`.
    Used by :func:`cnnlearn.train.fit` and :func:`cnnlearn.distribute.make_strategy`
    for ``device="tpu"`` on TensorFlow (chapter 5).
    """
    import tensorflow as tf

    local = os.path.exists("/dev/accel0") or os.path.exists("/dev/vfio/0")
    name = os.environ.get("TPU_NAME") or ("local" if local else None)
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=name)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as exc:
        message = " ".join(str(exc).split())
        raise ValueError(
            f"device='tpu' was asked for, but no TPU was found: {message}"
        ) from exc
    return tf.distribute.TPUStrategy(resolver)


def _gpu_count() -> int:
    backend = keras.config.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return len(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return sum(d.platform == "gpu" for d in jax.devices())
    if backend == "torch":
        import torch

        return torch.cuda.device_count()
    return 0


def device_scope(device: str):
    """A context manager that places ops on ``device`` (``"/CPU:0"``,
    ``"/GPU:0"``, ``"/TPU:0"``; on TensorFlow a TPU means the scope of
    :func:`tpu_strategy`, where a model's variables must be created)."""
    backend = keras.config.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        if device.startswith("/TPU"):
            return tpu_strategy().scope()
        return tf.device(device)
    if backend == "jax":
        import jax

        kind = device[1:4].lower()  # "cpu", "gpu" or "tpu"
        return jax.default_device(jax.devices(kind)[0])
    if backend == "torch":
        return keras.device(device[1:].lower())  # "cpu:0" or "gpu:0" (CUDA)
    return contextlib.nullcontext()


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags (x86 ``flags``, Arm ``Features``); empty if unknown."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in {"flags", "Features"}:
            return set(value.split())
    return set()


def native_bf16(flags: set[str]) -> str | None:
    """The name of the CPU's native bfloat16 instructions, or ``None``."""
    found = [name for flag, name in _BF16_FLAGS.items() if flag in flags]
    return " and ".join(found) or None


def gpu_capability() -> tuple[int, int] | None:
    """The first GPU's CUDA compute capability, ``None`` without a GPU."""
    backend = keras.config.backend()
    if not _gpu_count():
        return None
    if backend == "tensorflow":
        import tensorflow as tf

        details = tf.config.experimental.get_device_details(
            tf.config.list_physical_devices("GPU")[0]
        )
        capability = details.get("compute_capability")
    elif backend == "jax":
        import jax

        found = getattr(jax.devices("gpu")[0], "compute_capability", None)
        capability = tuple(int(p) for p in found.split(".")) if found else None
    else:
        import torch

        capability = torch.cuda.get_device_capability(0)
    return tuple(capability) if capability else None


def accelerator_count(device: str) -> int:
    """How many devices of ``device``'s kind JAX sees (1 elsewhere): the
    replicas :func:`plan` can split a batch over with ``keras.distribution``."""
    if keras.config.backend() != "jax" or not device.startswith(("/GPU", "/TPU")):
        return 1
    import jax

    return len(jax.devices(device[1:4].lower()))


# --- the plan ------------------------------------------------------------------


@dataclass
class Plan:
    """How :func:`cnnlearn.train.fit` will train, and why (chapter 5).

    Print it to read the choices; ``to_dict()`` is what ``metrics.json`` stores.
    """

    backend: str
    device: str
    devices: int
    pipeline: str
    batch_size: int
    batch_scale: int
    learning_rate_scale: float
    eval_batch_size: int
    steps_per_execution: int
    precision: str
    jit_compile: bool
    reasons: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        rows = [(k, v) for k, v in self.to_dict().items() if k != "reasons"]
        width = max(len(k) for k, _ in rows)
        return "\n".join(
            f"{k:<{width}}  {v!s:<15} {self.reasons.get(k, '')}".rstrip()
            for k, v in rows
        )


def _choose(reasons: dict[str, str], name: str, given, default, why: str):
    """``given`` if the caller set it, else ``default``; record the reason."""
    if given is None:
        reasons[name] = why
        return default
    reasons[name] = "set by the caller"
    return given


def _is_arrays(data) -> bool:
    return isinstance(data, tuple | list) and len(data) == 2


def _example_count(data) -> int | None:
    """The number of training examples of ``(x, y)`` arrays, else ``None``."""
    return len(data[0]) if _is_arrays(data) else None


def _pick_pipeline(data, backend: str) -> tuple[str, str]:
    """tf.data for in-memory images on TensorFlow, seeded batches on the other
    backends, a given dataset as is, arrays otherwise."""
    if data is not None and not _is_arrays(data):
        return "dataset", "a dataset was given: used as is"
    if data is not None:
        dtype = np.asarray(data[0][:1]).dtype
        if dtype != np.uint8 and not np.issubdtype(dtype, np.floating):
            return "numpy", f"{dtype} inputs, not images: passed to Model.fit as arrays"
    if backend != "tensorflow":
        return "batches", (
            f"in-memory images on {backend}: batched in a seeded order by "
            "SeededBatches (tf.data is TensorFlow's)"
        )
    return "tf.data", (
        "in-memory images: cached, shuffled and prefetched by tf.data, "
        "so batches are ready while the previous step runs"
    )


def _pick_batch_scale(data, batch_size: int) -> tuple[int, str]:
    """Grow a small recipe batch to :data:`HARDWARE_BATCH` where an epoch keeps
    :data:`MIN_STEPS_PER_EPOCH` steps (in-memory data only)."""
    n = _example_count(data)
    if n is None and data is not None:
        return 1, "the dataset comes batched"
    recipe = "the training recipe's"
    if n is None or 2 * batch_size > HARDWARE_BATCH:
        return 1, recipe
    grown = HARDWARE_BATCH // batch_size
    if n // (batch_size * grown) < MIN_STEPS_PER_EPOCH:
        return (
            1,
            f"{recipe} (x{grown} would leave under {MIN_STEPS_PER_EPOCH} steps/epoch)",
        )
    return grown, (
        f"{grown}x the recipe's {batch_size}: a small batch leaves cores "
        f"idle; Adam's learning rate x{math.sqrt(grown):.2g} (square-root "
        "rule) keeps the accuracy"
    )


def _pick_steps_per_execution(data, batch_size: int, backend: str) -> tuple[int, str]:
    """:data:`STEPS_PER_EXECUTION`, or one epoch's steps if that is fewer; one
    on PyTorch."""
    if backend == "torch":
        return 1, "Keras' torch backend runs one step per call (it refuses more)"
    n = _example_count(data)
    steps = -(-n // batch_size) if n else None
    chosen = min(STEPS_PER_EXECUTION, steps) if steps else STEPS_PER_EXECUTION
    return chosen, (
        f"{chosen} steps per call into the compiled graph: one Python "
        "round trip (callbacks, dispatch) per call instead of per step"
    )


def _pick_precision(
    device: str, flags: set[str], capability, backend: str = "tensorflow"
) -> tuple[str, str]:
    """Half precision where the hardware has native units for it, else float32;
    float32 on a CPU except with TensorFlow."""
    if device.startswith("/TPU"):
        return "mixed_bfloat16", "TPUs multiply in bfloat16 natively (their MXUs)"
    if device.startswith("/GPU"):
        if capability is None:
            return "float32", "the GPU's compute capability is unknown"
        cc = ".".join(map(str, capability))
        if capability >= (8, 0):
            return "mixed_bfloat16", f"compute capability {cc} has bfloat16 units"
        if capability >= (7, 0):
            return "mixed_float16", f"compute capability {cc}: float16 tensor cores"
        return "float32", f"compute capability {cc} has no fast half precision"
    native = native_bf16(flags)
    if native and backend != "tensorflow":
        return "float32", (
            f"the CPU has {native}; the plan uses them through TensorFlow's "
            f"oneDNN kernels only, so {backend} trains in float32 on a CPU"
        )
    if native:
        return "mixed_bfloat16", f"the CPU has {native}"
    return "float32", (
        "the CPU has no native bfloat16 (AMX-BF16 or AVX512-BF16): emulated "
        "16-bit formats are slower than float32 kernels"
    )


def _pick_devices(device: str, batch_size: int) -> tuple[int, str]:
    """Every accelerator JAX sees, through ``keras.distribution.DataParallel``."""
    count = accelerator_count(device)
    if count == 1:
        return 1, "one device (tf.distribute spreads TensorFlow: chapter 5)"
    if batch_size % count:
        return 1, f"the batch of {batch_size} does not split over {count} devices"
    return count, (
        f"keras.distribution.DataParallel: each of {count} devices takes "
        f"{batch_size // count} examples of a batch"
    )


def _pick_jit_compile(on_accelerator: bool, backend: str) -> tuple[bool, str]:
    """XLA on accelerators with TensorFlow, always with JAX, never with PyTorch."""
    if backend == "jax":
        return True, "Keras' default on JAX: each step compiled by XLA as one program"
    if backend == "torch":
        return False, "Keras' default on torch: eager; torch.compile is opt-in"
    if on_accelerator:
        return True, "XLA fuses ops on accelerators"
    return False, "off on CPUs: chapter 5 measures XLA against TensorFlow's CPU kernels"


def plan(
    model: keras.Model | None = None,
    data=None,
    device: str = "auto",
    *,
    batch_size: int = 32,
    batch_scale: int | None = None,
    eval_batch_size: int | None = None,
    devices: int | None = None,
    pipeline: str | None = None,
    steps_per_execution: int | None = None,
    precision: str | None = None,
    jit_compile: bool | None = None,
    flags: set[str] | None = None,
    capability: tuple[int, int] | None = None,
) -> Plan:
    """Pick the fastest honest way to train ``model`` on ``data`` here.

    Each choice has its own ``_pick_*`` function above, which returns the
    default and the reason for it; the caller's value, where given, wins.

    Parameters
    ----------
    model
        The model to train (only its size is reported).
    data
        The training data: ``(x, y)`` arrays, or a ``tf.data.Dataset``.
    device
        One of :data:`cnnlearn.config.DEVICES` (see :func:`resolve_device`).
    batch_size
        The training recipe's batch size.
    batch_scale
        Train with ``batch_scale`` times the recipe's batch and Adam's learning
        rate times ``sqrt(batch_scale)``, the square-root scaling rule for
        adaptive optimizers (Malladi et al., 2022). ``None`` lets the plan grow
        a batch smaller than :data:`HARDWARE_BATCH` when the data are in memory
        and an epoch keeps :data:`MIN_STEPS_PER_EPOCH` steps; ``1`` keeps the
        recipe's batch exactly.
    eval_batch_size, devices, pipeline, steps_per_execution, precision, jit_compile
        Overrides; ``None`` lets the plan choose. ``devices`` above 1 splits
        each batch over that many JAX devices (``keras.distribution``).
    flags, capability
        The CPU flags and GPU compute capability to plan for; by default the
        ones of this machine (tests simulate other machines with them).

    Returns
    -------
    Plan
        The choices, with a reason for each. Used in chapters 4 and 5.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    # What the machine has.
    backend = keras.config.backend()
    device_name = resolve_device(device)
    on_accelerator = device_name.startswith(("/GPU", "/TPU"))
    flags = cpu_flags() if flags is None else flags
    if capability is None and device_name.startswith("/GPU"):
        capability = gpu_capability()
    reasons = {"backend": "the process's Keras backend", "device": f"device={device!r}"}
    if model is not None:
        reasons["device"] += f"; {model.count_params():,} parameters"
    # What to do with it, choice by choice (the reasons keep this order).
    pipeline = _choose(reasons, "pipeline", pipeline, *_pick_pipeline(data, backend))
    batch_scale = _choose(
        reasons, "batch_size", batch_scale, *_pick_batch_scale(data, batch_size)
    )
    batch = batch_size * batch_scale
    devices = _choose(reasons, "devices", devices, *_pick_devices(device_name, batch))
    steps_per_execution = _choose(
        reasons,
        "steps_per_execution",
        steps_per_execution,
        *_pick_steps_per_execution(data, batch, backend),
    )
    precision = _choose(
        reasons,
        "precision",
        precision,
        *_pick_precision(device_name, flags, capability, backend),
    )
    jit = _pick_jit_compile(on_accelerator, backend)
    jit_compile = _choose(reasons, "jit_compile", jit_compile, *jit)
    eval_batch_size = _choose(
        reasons,
        "eval_batch_size",
        eval_batch_size,
        max(EVAL_BATCH_SIZE, batch),
        "evaluation has no optimizer step: big batches are free",
    )
    _check_choices(
        backend, pipeline, precision, batch_scale, devices, steps_per_execution
    )
    if batch % devices:
        raise ValueError(f"a batch of {batch} does not split over {devices} devices")
    return Plan(
        backend=backend,
        device=device_name,
        devices=devices,
        pipeline=pipeline,
        batch_size=batch,
        batch_scale=batch_scale,
        learning_rate_scale=math.sqrt(batch_scale),
        eval_batch_size=eval_batch_size,
        steps_per_execution=steps_per_execution,
        precision=precision,
        jit_compile=bool(jit_compile),
        reasons=reasons,
    )


def _check_choices(
    backend: str,
    pipeline: str,
    precision: str,
    batch_scale: int,
    devices: int,
    steps: int,
) -> None:
    """One-line errors for plan values the backend cannot run."""
    if pipeline not in PIPELINES:
        raise ValueError(f"unknown pipeline {pipeline!r}: expected one of {PIPELINES}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: expected {PRECISIONS}")
    if devices > 1 and pipeline != "batches":
        raise ValueError(
            f"devices={devices} needs the 'batches' pipeline (even splits)"
        )
    if batch_scale < 1 or devices < 1:
        raise ValueError(
            f"batch_scale and devices must be >= 1: {batch_scale}, {devices}"
        )
    if steps < 1 or (backend == "torch" and steps > 1):
        raise ValueError(f"steps_per_execution must be >= 1 (1 on torch): {steps}")


def _leaves(layer) -> list:
    sublayers = getattr(layer, "layers", None)
    if sublayers is None:
        return [layer]
    return [leaf for sub in sublayers for leaf in _leaves(sub)]


def apply_precision(model: keras.Model, precision: str) -> None:
    """Switch a built model's layers to ``precision`` in place.

    Mixed policies compute in 16 bits and keep the variables in float32; the
    output layer stays float32, as Keras' mixed-precision guide advises, so
    the softmax and the loss are computed at full precision. ``"float32"``
    switches back, e.g. before saving or exporting a model.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: expected {PRECISIONS}")
    leaves = _leaves(model)
    for layer in leaves[:-1]:
        layer.dtype_policy = precision
    leaves[-1].dtype_policy = "float32"
