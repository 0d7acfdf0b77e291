"""Affine quantization arithmetic, NumPy only (chapters 6 and 8).

An int8 tensor stores a float tensor ``x`` as integers ``q`` with one scale and
zero point (per tensor, or per output channel for kernels)::

    q = clip(round(x / scale) + zero_point, -128, 127)
    x ≈ scale * (q - zero_point)

:func:`affine_params` picks the scale and zero point for a range,
:func:`quantize_array` and :func:`dequantize` apply the two formulas, and
:func:`to_input_tensor` / :func:`from_output_tensor` do it at the edges of a
quantized LiteRT model. The LiteRT model server (:mod:`cnnlearn.deploy`) uses
them without TensorFlow: keep this module free of Keras and TensorFlow.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "affine_params",
    "dequantize",
    "from_output_tensor",
    "quantize_array",
    "to_input_tensor",
]


def affine_params(low: float, high: float, dtype: type = np.int8) -> tuple[float, int]:
    """Scale and zero point mapping ``[low, high]`` onto ``dtype``'s range.

    The range is first widened to include 0, so that 0.0 (padding, ReLU's
    output, pruned weights) is represented exactly by ``zero_point``.
    """
    info = np.iinfo(dtype)
    low, high = min(float(low), 0.0), max(float(high), 0.0)
    if high == low:
        return 1.0, 0
    scale = (high - low) / (info.max - info.min)
    zero_point = int(np.clip(round(info.min - low / scale), info.min, info.max))
    return scale, zero_point


def quantize_array(
    x: np.ndarray, scale: float, zero_point: int, dtype: type = np.int8
) -> np.ndarray:
    """``clip(round(x / scale) + zero_point)`` in ``dtype`` (affine quantization)."""
    info = np.iinfo(dtype)
    q = np.round(np.asarray(x, dtype=np.float32) / np.float32(scale)) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """``scale * (q - zero_point)`` in float32: undoes :func:`quantize_array`."""
    return (np.float32(scale) * (q.astype(np.float32) - np.float32(zero_point))).astype(
        np.float32
    )


def to_input_tensor(x: np.ndarray, detail: dict) -> np.ndarray:
    """Float images as a LiteRT input tensor wants them (quantized if int8)."""
    dtype = detail["dtype"]
    if dtype in (np.int8, np.uint8):
        scale, zero_point = detail["quantization"]
        return quantize_array(x, scale, zero_point, dtype)
    return np.asarray(x).astype(dtype, copy=False)


def from_output_tensor(y: np.ndarray, detail: dict) -> np.ndarray:
    """A LiteRT output tensor as float32 (dequantized if int8)."""
    if detail["dtype"] in (np.int8, np.uint8):
        scale, zero_point = detail["quantization"]
        return dequantize(y, scale, zero_point)
    return np.asarray(y, dtype=np.float32)
