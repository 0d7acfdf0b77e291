"""Max and average pooling, forward and backward (chapter 2)."""

from __future__ import annotations

import numpy as np

from cnnlearn.ops.geometry import (
    IntPair,
    Padding,
    as_float,
    as_pair,
    check_4d,
    check_dout,
    col2im,
    padded_shape,
    unpad,
    window_geometry,
    window_view,
)

__all__ = ["avg_pool2d", "avg_pool2d_backward", "max_pool2d", "max_pool2d_backward"]


def _pool_plan(shape: tuple[int, ...], pool_size, stride, padding):
    """:func:`window_geometry` of a pooling window; ``stride`` None: the pool size."""
    kernel = as_pair(pool_size, "pool_size")
    return window_geometry(
        shape[1:3], kernel, kernel if stride is None else stride, padding, 1
    )


def _avg_counts(shape, kernel, stride, pads) -> np.ndarray:
    """How many real (unpadded) cells each window holds, shape (1, OH, OW, 1)."""
    ones = np.ones((1, shape[1], shape[2], 1))
    counts = window_view(ones, kernel, stride, pads, (1, 1)).sum(axis=(3, 4))
    if counts.min() == 0:
        raise ValueError("padding >= pool_size: a window would hold only padding")
    return counts


def max_pool2d(
    x: np.ndarray,
    pool_size: IntPair = 2,
    stride: IntPair | None = None,
    padding: Padding = "valid",
) -> np.ndarray:
    """Max pooling (chapter 2): the largest value of each window, per channel.

    ``stride`` defaults to ``pool_size``. Padded cells count as ``-inf``, so they
    are never the maximum (as in ``tf.nn.max_pool2d``).
    """
    x = as_float(check_4d(x))
    kernel, stride, pads, _, _ = _pool_plan(x.shape, pool_size, stride, padding)
    return window_view(x, kernel, stride, pads, (1, 1), -np.inf).max(axis=(3, 4))


def avg_pool2d(
    x: np.ndarray,
    pool_size: IntPair = 2,
    stride: IntPair | None = None,
    padding: Padding = "valid",
) -> np.ndarray:
    """Average pooling (chapter 2): the mean of each window, per channel.

    With padding, the mean is over the real (unpadded) cells of the window only,
    as ``tf.nn.avg_pool2d`` does for ``"SAME"``.
    """
    x = as_float(check_4d(x))
    kernel, stride, pads, _, _ = _pool_plan(x.shape, pool_size, stride, padding)
    sums = window_view(x, kernel, stride, pads, (1, 1)).sum(axis=(3, 4))
    return sums / _avg_counts(x.shape, kernel, stride, pads).astype(x.dtype)


def max_pool2d_backward(
    dout: np.ndarray,
    x: np.ndarray,
    pool_size: IntPair = 2,
    stride: IntPair | None = None,
    padding: Padding = "valid",
) -> np.ndarray:
    """Gradient of :func:`max_pool2d` with respect to ``x`` (chapter 2).

    Each window's gradient goes entirely to the cell that held its maximum (the
    first one in row-major order on a tie); overlapping windows add up.
    """
    x = as_float(check_4d(x))
    kernel, stride, pads, _, out_hw = _pool_plan(x.shape, pool_size, stride, padding)
    dout = check_dout(dout, x.shape, out_hw)
    win = window_view(x, kernel, stride, pads, (1, 1), -np.inf)
    n, oh, ow, kh, kw, c = win.shape
    argmax = win.reshape(n, oh, ow, kh * kw, c).argmax(axis=3)
    is_max = np.arange(kh * kw)[:, None] == argmax[:, :, :, None, :]
    dwin = np.where(is_max, dout[:, :, :, None, :], 0.0)
    dx_pad = col2im(
        dwin.reshape(win.shape), padded_shape(x.shape, pads), stride, (1, 1)
    )
    return unpad(dx_pad, pads, x.shape[1:3])


def avg_pool2d_backward(
    dout: np.ndarray,
    x_shape: tuple[int, int, int, int],
    pool_size: IntPair = 2,
    stride: IntPair | None = None,
    padding: Padding = "valid",
) -> np.ndarray:
    """Gradient of :func:`avg_pool2d` with respect to its input of ``x_shape``.

    Every real cell of a window receives ``dout / count`` (chapter 2).
    """
    shape = tuple(x_shape)
    if len(shape) != 4:
        raise ValueError(f"x_shape must be (N, H, W, C), got {shape}")
    kernel, stride, pads, _, out_hw = _pool_plan(shape, pool_size, stride, padding)
    dout = as_float(check_dout(dout, shape, out_hw))
    grads = dout / _avg_counts(shape, kernel, stride, pads).astype(dout.dtype)
    dwin = np.broadcast_to(
        grads[:, :, :, None, None, :], (*grads.shape[:3], *kernel, shape[3])
    )
    dx_pad = col2im(dwin, padded_shape(shape, pads), stride, (1, 1))
    return unpad(dx_pad, pads, shape[1:3])
