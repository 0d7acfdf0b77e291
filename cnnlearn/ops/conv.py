"""Convolution forward and backward, naive and im2col (chapter 2).

:func:`conv2d_naive` is the formula as loops; :func:`conv2d_im2col` the same
numbers as one matrix product over :func:`~cnnlearn.ops.geometry.im2col`'s rows.
:func:`conv2d` picks one by ``method`` and adds the bias; the ``*_backward``
functions are their gradients.
"""

from __future__ import annotations

import numpy as np

from cnnlearn.ops.geometry import (
    IntPair,
    Padding,
    check_4d,
    check_dout,
    col2im,
    im2col,
    padded_shape,
    unpad,
    window_geometry,
    window_view,
)

__all__ = [
    "conv2d",
    "conv2d_backward",
    "conv2d_im2col",
    "conv2d_im2col_backward",
    "conv2d_naive",
    "conv2d_naive_backward",
]

_METHODS = ("im2col", "naive")


def _check_method(method: str) -> None:
    if method not in _METHODS:
        raise ValueError(f"unknown method {method!r}: expected 'im2col' or 'naive'")


def _check_conv(x, w) -> tuple[np.ndarray, np.ndarray]:
    x, w = check_4d(x), check_4d(w, "w (KH, KW, C_in, C_out)")
    if x.shape[3] != w.shape[2]:
        raise ValueError(f"x has {x.shape[3]} channels, w expects {w.shape[2]}")
    return x, w


def conv2d_naive(
    x: np.ndarray,
    w: np.ndarray,
    stride: IntPair = 1,
    padding: Padding = "valid",
    dilation: IntPair = 1,
) -> np.ndarray:
    """The convolution of chapter 2 as its formula: loops, no bias.

    For every output position ``(i, j)`` and kernel tap ``(u, v)``, the input
    pixels under that tap (``(N, C_in)``) times the tap's ``(C_in, C_out)``
    matrix: the sum over input channels and all output channels in one product.
    Slow; the obviously correct reference. Arguments and result as
    :func:`conv2d`.
    """
    x, w = _check_conv(x, w)
    kh, kw, c_in, c_out = w.shape
    _, (sh, sw), pads, (dh, dw), (oh, ow) = window_geometry(
        x.shape[1:3], (kh, kw), stride, padding, dilation
    )
    x_pad = np.pad(x, ((0, 0), *pads, (0, 0)))
    out = np.zeros((x.shape[0], oh, ow, c_out), np.result_type(x, w))
    for i in range(oh):
        for j in range(ow):
            for u in range(kh):
                for v in range(kw):
                    pixel = x_pad[:, i * sh + u * dh, j * sw + v * dw, :]
                    out[:, i, j, :] += pixel @ w[u, v]
    return out


def conv2d_im2col(
    x: np.ndarray,
    w: np.ndarray,
    stride: IntPair = 1,
    padding: Padding = "valid",
    dilation: IntPair = 1,
) -> np.ndarray:
    """The convolution of chapter 2 as one matrix product, no bias.

    Every input window becomes a row (:func:`~cnnlearn.ops.geometry.im2col`),
    the kernel a ``(KH*KW*C_in, C_out)`` matrix; their product holds every
    output. Arguments and result as :func:`conv2d`.
    """
    x, w = _check_conv(x, w)
    kh, kw, c_in, c_out = w.shape
    cols = im2col(x, (kh, kw), stride, padding, dilation)  # (N, OH, OW, KH*KW*C_in)
    out = cols.reshape(-1, kh * kw * c_in) @ w.reshape(kh * kw * c_in, c_out)
    return out.reshape(*cols.shape[:3], c_out)  # one product, not one per row


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
        ``"im2col"``: one matrix product over all windows
        (:func:`conv2d_im2col`). ``"naive"``: loops over output positions and
        kernel taps (:func:`conv2d_naive`; slow, the obviously-correct reference).

    Returns
    -------
    (N, OH, OW, C_out) array
    """
    _check_method(method)
    x, w = _check_conv(x, w)
    if b is not None:
        b = np.asarray(b)
        if b.shape != (w.shape[3],):
            raise ValueError(f"b must have shape ({w.shape[3]},), got {b.shape}")
    convolve = conv2d_im2col if method == "im2col" else conv2d_naive
    out = convolve(x, w, stride, padding, dilation)
    if b is not None:  # in place: allocating another output costs more than the matmul
        out = out.astype(np.result_type(out, b), copy=False)
        out += b
    return out


def conv2d_naive_backward(
    dout: np.ndarray,
    x: np.ndarray,
    w: np.ndarray,
    stride: IntPair = 1,
    padding: Padding = "valid",
    dilation: IntPair = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Gradients ``(dx, dw)`` of :func:`conv2d_naive`, as loops (chapter 2).

    The forward loops run again; where the forward pass added ``pixel @ w[u, v]``
    to an output, the backward pass sends that output's gradient back through
    ``w[u, v]`` to the pixel (``dx``) and correlates it with the pixel (``dw``).
    Arguments and results as :func:`conv2d_backward`.
    """
    x, w = _check_conv(x, w)
    kh, kw, c_in, c_out = w.shape
    _, (sh, sw), pads, (dh, dw), (oh, ow) = window_geometry(
        x.shape[1:3], (kh, kw), stride, padding, dilation
    )
    dout = check_dout(dout, (*x.shape[:3], c_out), (oh, ow))
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
    return unpad(dx_pad, pads, x.shape[1:3]), dw_


def conv2d_im2col_backward(
    dout: np.ndarray,
    x: np.ndarray,
    w: np.ndarray,
    stride: IntPair = 1,
    padding: Padding = "valid",
    dilation: IntPair = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Gradients ``(dx, dw)`` of :func:`conv2d_im2col`, as matrix products.

    The forward pass was ``cols @ w``; so ``dw = cols.T @ dout`` and each
    window's gradient is ``dout @ w.T``, which :func:`~cnnlearn.ops.geometry.col2im`
    adds back into place (one strided add per kernel tap). Arguments and
    results as :func:`conv2d_backward` (chapter 2).
    """
    x, w = _check_conv(x, w)
    kh, kw, c_in, c_out = w.shape
    kernel, stride, pads, dilation, (oh, ow) = window_geometry(
        x.shape[1:3], (kh, kw), stride, padding, dilation
    )
    dout = check_dout(dout, (*x.shape[:3], c_out), (oh, ow))
    cols = window_view(x, kernel, stride, pads, dilation).reshape(-1, kh * kw * c_in)
    grads = dout.reshape(-1, c_out)
    dw_ = (cols.T @ grads).reshape(w.shape)
    dwin = (grads @ w.reshape(-1, c_out).T).reshape(-1, oh, ow, kh, kw, c_in)
    dx_pad = col2im(dwin, padded_shape(x.shape, pads), stride, dilation)
    return unpad(dx_pad, pads, x.shape[1:3]), dw_


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
    (:func:`conv2d_im2col_backward`) does the first two as matrix products and
    scatters ``dx`` back with one strided add per kernel tap (col2im); the naive
    path (:func:`conv2d_naive_backward`) loops as :func:`conv2d_naive`. The
    other arguments are :func:`conv2d`'s.

    Returns
    -------
    dx : (N, H, W, C_in) array
    dw : (KH, KW, C_in, C_out) array
    db : (C_out,) array
    """
    _check_method(method)
    backward = conv2d_im2col_backward if method == "im2col" else conv2d_naive_backward
    dx, dw = backward(dout, x, w, stride, padding, dilation)
    return dx, dw, np.asarray(dout).sum(axis=(0, 1, 2))
