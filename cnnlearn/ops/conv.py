"""Convolution forward and backward, naive and im2col (chapter 2)."""

from __future__ import annotations

import numpy as np

from cnnlearn.ops.geometry import (
    IntPair,
    Padding,
    _as_4d,
    _check_dout,
    _col2im,
    _crop,
    _padded_shape,
    _plan,
    _windows,
)

__all__ = ["conv2d", "conv2d_backward"]


def _check_conv(x, w, b=None, method="im2col"):
    if method not in ("im2col", "naive"):
        raise ValueError(f"unknown method {method!r}: expected 'im2col' or 'naive'")
    x, w = _as_4d(x), _as_4d(w, "w (KH, KW, C_in, C_out)")
    if x.shape[3] != w.shape[2]:
        raise ValueError(f"x has {x.shape[3]} channels, w expects {w.shape[2]}")
    if b is not None:
        b = np.asarray(b)
        if b.shape != (w.shape[3],):
            raise ValueError(f"b must have shape ({w.shape[3]},), got {b.shape}")
    return x, w, b


def conv2d(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None = None,
    stride: IntPair = 1,
    padding: Padding = "valid",
    dilation: IntPair = 1,
    method: str = "im2col",
) -> np.ndarray:
    """2-D convolution (cross-correlation, as ``tf.nn.conv2d``) of chapter 2.

    ``out[n, i, j, o] = b[o] + sum_{u, v, c} x_pad[n, i*s + u*d, j*s + v*d, c]
    * w[u, v, c, o]``.

    Parameters
    ----------
    x : (N, H, W, C_in) array
    w : (KH, KW, C_in, C_out) array
    b : (C_out,) array or None
    stride, padding, dilation
        See the module docstring.
    method : {"im2col", "naive"}
        ``"im2col"``: one matrix product over all windows. ``"naive"``: loops over
        output positions and kernel taps (slow; the obviously-correct reference).

    Returns
    -------
    (N, OH, OW, C_out) array
    """
    x, w, b = _check_conv(x, w, b, method)
    kh, kw, c_in, c_out = w.shape
    kernel, (sh, sw), pads, (dh, dw), (oh, ow) = _plan(
        x.shape[1:3], (kh, kw), stride, padding, dilation
    )
    if method == "im2col":
        win = _windows(x, kernel, (sh, sw), pads, (dh, dw))
        out = win.reshape(-1, kh * kw * c_in) @ w.reshape(-1, c_out)
        out = out.reshape(x.shape[0], oh, ow, c_out)
    else:
        x_pad = np.pad(x, ((0, 0), *pads, (0, 0)))
        out = np.zeros((x.shape[0], oh, ow, c_out), np.result_type(x, w))
        for i in range(oh):
            for j in range(ow):
                for u in range(kh):
                    for v in range(kw):
                        pixel = x_pad[:, i * sh + u * dh, j * sw + v * dw, :]
                        out[:, i, j, :] += pixel @ w[u, v]
    if b is not None:  # in place: allocating another output costs more than the matmul
        out = out.astype(np.result_type(out, b), copy=False)
        out += b
    return out


def conv2d_backward(
    dout: np.ndarray,
    x: np.ndarray,
    w: np.ndarray,
    stride: IntPair = 1,
    padding: Padding = "valid",
    dilation: IntPair = 1,
    method: str = "im2col",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of :func:`conv2d` given ``dout = dL/dout``, (N, OH, OW, C_out).

    Chapter 2 derives them: ``db`` sums ``dout`` over batch and positions; ``dw``
    correlates the input windows with ``dout``; ``dx`` sends each output's
    gradient back through the kernel to the pixels of its window. The im2col path
    does the first two as matrix products and scatters ``dx`` back with one
    strided add per kernel tap (col2im); the naive path loops as :func:`conv2d`.
    The other arguments are :func:`conv2d`'s.

    Returns
    -------
    dx : (N, H, W, C_in) array
    dw : (KH, KW, C_in, C_out) array
    db : (C_out,) array
    """
    x, w, _ = _check_conv(x, w, None, method)
    kh, kw, c_in, c_out = w.shape
    kernel, (sh, sw), pads, (dh, dw), (oh, ow) = _plan(
        x.shape[1:3], (kh, kw), stride, padding, dilation
    )
    dout = _check_dout(dout, (*x.shape[:3], c_out), (oh, ow))
    db = dout.sum(axis=(0, 1, 2))
    if method == "im2col":
        cols = _windows(x, kernel, (sh, sw), pads, (dh, dw)).reshape(-1, kh * kw * c_in)
        grads = dout.reshape(-1, c_out)
        dw_ = (cols.T @ grads).reshape(w.shape)
        dwin = (grads @ w.reshape(-1, c_out).T).reshape(-1, oh, ow, kh, kw, c_in)
        dx_pad = _col2im(dwin, _padded_shape(x.shape, pads), (sh, sw), (dh, dw))
    else:
        x_pad = np.pad(x, ((0, 0), *pads, (0, 0)))
        dtype = np.result_type(dout, x, w)
        dx_pad, dw_ = np.zeros(x_pad.shape, dtype), np.zeros(w.shape, dtype)
        for i in range(oh):
            for j in range(ow):
                for u in range(kh):
                    for v in range(kw):
                        r, c = i * sh + u * dh, j * sw + v * dw
                        dx_pad[:, r, c, :] += dout[:, i, j, :] @ w[u, v].T
                        dw_[u, v] += x_pad[:, r, c, :].T @ dout[:, i, j, :]
    return _crop(dx_pad, pads, x.shape[1:3]), dw_, db
