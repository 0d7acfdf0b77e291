"""ReLU, softmax, dense and flatten (chapter 2)."""

from __future__ import annotations

import numpy as np

from cnnlearn.ops.geometry import as_float

__all__ = ["dense", "flatten", "relu", "relu_backward", "softmax"]


def relu(x: np.ndarray) -> np.ndarray:
    """``max(x, 0)`` elementwise (chapter 2)."""
    return np.maximum(x, 0)


def relu_backward(dout: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Gradient of :func:`relu`: ``dout`` where ``x > 0``, else 0 (chapter 2)."""
    return dout * (np.asarray(x) > 0)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Softmax along ``axis`` (chapter 2); the maximum is subtracted first, so
    ``exp`` cannot overflow."""
    x = as_float(np.asarray(x))
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def dense(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Fully connected layer ``x @ w + b`` with ``w`` of shape (in, out) (chapter 2)."""
    x, w = np.asarray(x), np.asarray(w)
    if w.ndim != 2 or x.shape[-1] != w.shape[0]:
        raise ValueError(f"x has {x.shape[-1]} features, w has shape {w.shape}")
    return x @ w if b is None else x @ w + b


def flatten(x: np.ndarray) -> np.ndarray:
    """``(N, ...)`` to ``(N, prod(...))`` in row-major order, as Keras' Flatten and
    chapter 2 do."""
    x = np.asarray(x)
    return x.reshape(x.shape[0], -1)
