"""Learning-rate scaling and the ring all-reduce scaling model (chapter 5)."""

from __future__ import annotations

import cnnlearn._tf  # noqa: F401  (quiet TensorFlow start-up; before Keras)

# isort: split
import keras
import numpy as np

__all__ = ["allreduce_seconds", "predicted_speedup", "scaled_learning_rate"]


def scaled_learning_rate(
    base_lr: float,
    base_batch: int,
    global_batch: int,
    warmup_steps: int = 0,
    decay_steps: int | None = None,
):
    """The linear scaling rule with gradual warmup (Goyal et al., 2017).

    A global batch ``k`` times ``base_batch`` gets ``k`` times ``base_lr``,
    reached linearly over ``warmup_steps`` (from ``base_lr``); with
    ``decay_steps`` a cosine decay follows. Returns a float when there is
    neither warmup nor decay, else a Keras schedule. Used in chapter 5.
    """
    if base_batch < 1 or global_batch < 1:
        raise ValueError(f"batch sizes must be >= 1: {base_batch}, {global_batch}")
    peak = base_lr * global_batch / base_batch
    if not warmup_steps and decay_steps is None:
        return peak
    return keras.optimizers.schedules.CosineDecay(
        base_lr,
        decay_steps=decay_steps or 1,
        alpha=1.0 if decay_steps is None else 0.01,
        warmup_target=peak,
        warmup_steps=warmup_steps,
    )


def allreduce_seconds(
    n_params: int, workers: int, gbit_per_s: float, bytes_per_param: int = 4
) -> float:
    """Time of one ring all-reduce of the gradients: each worker sends and
    receives 2(N-1)/N of the gradient bytes over a link of ``gbit_per_s``."""
    if workers < 1 or gbit_per_s <= 0:
        raise ValueError(
            f"need workers >= 1 and bandwidth > 0: {workers}, {gbit_per_s}"
        )
    grad_bits = 8 * n_params * bytes_per_param
    return 2 * (workers - 1) / workers * grad_bits / (gbit_per_s * 1e9)


def predicted_speedup(
    compute_seconds: float,
    n_params: int,
    workers,
    gbit_per_s: float,
    overlap: float = 0.0,
    scaling: str = "weak",
) -> dict:
    """The data-parallel *model* of ``N`` workers, one per machine.

    Each step is compute, then a ring all-reduce of the float32 gradients
    (:func:`allreduce_seconds`); ``overlap`` is the share of the communication
    hidden behind the backward pass (0: none). ``compute_seconds`` is one
    worker's step time, measured. ``scaling="weak"`` keeps the batch per worker
    (the global batch grows with ``N``: the usual data parallelism);
    ``"strong"`` splits one global batch ``N`` ways, assuming the compute
    splits evenly. Latency, stragglers and input pipelines are left out.

    Returns arrays ``workers``, ``step_seconds``, ``speedup`` (images per
    second relative to one worker) and ``efficiency`` (speedup / N). Used in
    chapter 5; a model, not a measurement.
    """
    if scaling not in ("weak", "strong"):
        raise ValueError(f"scaling must be 'weak' or 'strong', got {scaling!r}")
    n = np.atleast_1d(np.asarray(workers, dtype=float))
    comm = np.array([allreduce_seconds(n_params, int(k), gbit_per_s) for k in n])
    per_worker = compute_seconds if scaling == "weak" else compute_seconds / n
    step = per_worker + (1 - overlap) * comm
    images = n if scaling == "weak" else np.ones_like(n)
    speedup = images * compute_seconds / step
    return {
        "workers": n,
        "step_seconds": step,
        "speedup": speedup,
        "efficiency": speedup / n,
    }
