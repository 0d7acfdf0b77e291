"""NumPy reference implementations of the CNN layers (chapter 2).

Activations are NHWC ``(batch, height, width, channels)`` and convolution kernels
HWIO ``(height, width, in_channels, out_channels)``, the layouts of ``tf.nn`` and
Keras, so every result here can be compared with TensorFlow number for number
(``tests/test_ops.py`` does). A convolution is a cross-correlation, as in
``tf.nn.conv2d``. It comes two ways: ``method="naive"`` loops over output
positions and kernel taps and reads like the formula; ``method="im2col"`` copies
every input window into one row of a matrix (:func:`im2col`) and does a single
matrix product. The ``*_backward`` functions return the gradients that
``tf.GradientTape`` computes.

``padding`` is ``"valid"`` (none), ``"same"`` (TensorFlow's rule, see
:func:`same_padding`), an int ``p`` (``p`` zeros on every side) or explicit
``((top, bottom), (left, right))``. ``kernel_size``, ``stride`` and ``dilation``
are an int or an ``(h, w)`` pair.

:func:`layer_costs` and :func:`model_flops` count a Keras model's parameters,
FLOPs and receptive fields; :func:`forward` runs its inference with these functions.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

if TYPE_CHECKING:
    import keras

__all__ = ["avg_pool2d", "avg_pool2d_backward", "conv2d", "conv2d_backward"]
__all__ += ["dense", "flatten", "forward", "im2col", "layer_costs", "max_pool2d"]
__all__ += ["max_pool2d_backward", "model_flops", "output_shape", "output_size"]
__all__ += ["relu", "relu_backward", "same_padding", "softmax"]

IntPair = int | tuple[int, int]
Padding = str | int | tuple[tuple[int, int], tuple[int, int]]
Pads = tuple[tuple[int, int], tuple[int, int]]


# --- geometry ----------------------------------------------------------------


def _pair(value: IntPair, name: str) -> tuple[int, int]:
    pair = (value, value) if np.ndim(value) == 0 else tuple(value)
    if len(pair) != 2 or not all(int(v) == v and v >= 1 for v in pair):
        raise ValueError(f"{name} must be an int >= 1 or a pair of them, got {value}")
    return int(pair[0]), int(pair[1])


def same_padding(n: int, k: int, stride: int = 1, dilation: int = 1) -> tuple[int, int]:
    """Padding ``(before, after)`` of TensorFlow's ``"SAME"`` along one axis.

    The output has ``ceil(n / stride)`` positions; the total padding is what that
    needs, ``max((out - 1) * stride + dilation * (k - 1) + 1 - n, 0)``, and the odd
    cell, if any, goes *after*. At stride 2 the padding is often asymmetric:
    ``same_padding(28, 3, 2) == (0, 1)``. See chapter 2.
    """
    out = -(-n // stride)
    total = max((out - 1) * stride + dilation * (k - 1) + 1 - n, 0)
    return total // 2, total - total // 2


def _pad_1d(
    n: int, k: int, stride: int, padding: Padding, dilation: int
) -> tuple[int, int]:
    if isinstance(padding, str):
        if padding.lower() == "valid":
            return 0, 0
        if padding.lower() == "same":
            return same_padding(n, k, stride, dilation)
        raise ValueError(
            f"unknown padding {padding!r}: expected 'valid', 'same', an int or "
            "((top, bottom), (left, right))"
        )
    pads = (padding, padding) if np.ndim(padding) == 0 else tuple(padding)
    if len(pads) != 2 or not all(int(p) == p and p >= 0 for p in pads):
        raise ValueError(f"padding must be non-negative ints, got {padding}")
    return int(pads[0]), int(pads[1])


def output_size(
    n: int, k: int, stride: int = 1, padding: Padding = "valid", dilation: int = 1
) -> int:
    """Number of output positions along one axis of length ``n`` (chapter 2).

    ``floor((n + pad_before + pad_after - k_eff) / stride) + 1`` with the dilated
    kernel size ``k_eff = dilation * (k - 1) + 1``. Here ``padding`` may also be
    one ``(before, after)`` pair.
    """
    for name, value in {"n": n, "k": k, "stride": stride, "dilation": dilation}.items():
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value}")
    before, after = _pad_1d(n, k, stride, padding, dilation)
    k_eff, padded = dilation * (k - 1) + 1, n + before + after
    if k_eff > padded:
        raise ValueError(
            f"kernel (dilated size {k_eff}) is larger than the padded input ({padded})"
        )
    return (padded - k_eff) // stride + 1


def _plan(
    hw: tuple[int, int],
    kernel_size: IntPair,
    stride: IntPair,
    padding: Padding,
    dilation: IntPair,
) -> tuple[tuple[int, int], tuple[int, int], Pads, tuple[int, int], tuple[int, int]]:
    """Kernel, stride, explicit pads, dilation and output (OH, OW), all checked."""
    kernel, stride = _pair(kernel_size, "kernel_size"), _pair(stride, "stride")
    dilation = _pair(dilation, "dilation")
    if isinstance(padding, str) or np.ndim(padding) == 0:
        padding = (padding, padding)
    if len(padding) != 2:
        raise ValueError(f"padding must be ((top, bottom), (left, right)): {padding}")
    axes = list(zip(hw, kernel, stride, padding, dilation))
    pads = tuple(_pad_1d(*axis) for axis in axes)
    out = tuple(output_size(n, k, s, p, d) for (n, k, s, _, d), p in zip(axes, pads))
    return kernel, stride, pads, dilation, out


def output_shape(
    input_shape: tuple,
    kernel_size: IntPair,
    stride: IntPair = 1,
    padding: Padding = "valid",
    dilation: IntPair = 1,
) -> tuple:
    """Output shape of a convolution or pooling window over ``input_shape``.

    ``input_shape`` is ``(H, W)`` or ``(N, H, W, C)``; only the spatial part
    changes (``N`` may be ``None``; a convolution's channel count is up to its
    kernel). See :func:`output_size` and chapter 2.
    """
    shape = tuple(input_shape)
    if len(shape) not in (2, 4):
        raise ValueError(f"input_shape must be (H, W) or (N, H, W, C), got {shape}")
    hw = shape if len(shape) == 2 else shape[1:3]
    out = _plan(hw, kernel_size, stride, padding, dilation)[-1]
    return out if len(shape) == 2 else (shape[0], *out, shape[3])


# --- windows -----------------------------------------------------------------


def _as_4d(x: np.ndarray, name: str = "x") -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"{name} must be 4-D (N, H, W, C), got shape {x.shape}")
    return x


def _windows(x, kernel, stride, pads, dilation, fill=0.0) -> np.ndarray:
    """Read-only view ``win[n, i, j, u, v, c] = x_pad[n, i*s + u*d, j*s + v*d, c]``."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    if any(pads[0] + pads[1]):
        x = np.pad(x, ((0, 0), *pads, (0, 0)), constant_values=fill)
    win = sliding_window_view(x, (dh * (kh - 1) + 1, dw * (kw - 1) + 1), axis=(1, 2))
    return win[:, ::sh, ::sw, :, ::dh, ::dw].transpose(0, 1, 2, 4, 5, 3)


def _col2im(dwin: np.ndarray, padded_shape, stride, dilation) -> np.ndarray:
    """Adjoint of :func:`_windows`: add every window's gradient back into place."""
    n, oh, ow, kh, kw, c = dwin.shape
    (sh, sw), (dh, dw) = stride, dilation
    dx = np.zeros(padded_shape, dtype=dwin.dtype)
    for u in range(kh):  # one strided slice per kernel tap, all positions at once
        for v in range(kw):
            rows = slice(u * dh, u * dh + sh * (oh - 1) + 1, sh)
            cols = slice(v * dw, v * dw + sw * (ow - 1) + 1, sw)
            dx[:, rows, cols, :] += dwin[:, :, :, u, v, :]
    return dx


def _crop(x_pad: np.ndarray, pads: Pads, hw) -> np.ndarray:
    (top, _), (left, _) = pads
    return x_pad[:, top : top + hw[0], left : left + hw[1], :]


def _padded_shape(shape, pads: Pads) -> tuple[int, int, int, int]:
    return (shape[0], shape[1] + sum(pads[0]), shape[2] + sum(pads[1]), shape[3])


def im2col(
    x: np.ndarray,
    kernel_size: IntPair,
    stride: IntPair = 1,
    padding: Padding = "valid",
    dilation: IntPair = 1,
) -> np.ndarray:
    """Every input window as one row: shape ``(N, OH, OW, KH*KW*C)`` (chapter 2).

    With ``x_pad`` the zero-padded input, stride ``s`` and dilation ``d``::

        out[n, i, j, (u*KW + v)*C + c] = x_pad[n, i*s + u*d, j*s + v*d, c]

    Output position ``(i, j)`` sees the window whose top-left corner is
    ``(i*s, j*s)``; tap ``(u, v)`` of the kernel sits ``(u*d, v*d)`` further on.
    The last axis is ordered like a HWIO kernel reshaped to ``(KH*KW*C, C_out)``,
    so a convolution is ``im2col(x) @ w.reshape(-1, C_out)``. The windows come from
    ``sliding_window_view`` (no loop over positions); only the result is copied.
    """
    x = _as_4d(x)
    kernel, stride, pads, dilation, (oh, ow) = _plan(
        x.shape[1:3], kernel_size, stride, padding, dilation
    )
    win = _windows(x, kernel, stride, pads, dilation)
    return win.reshape(x.shape[0], oh, ow, kernel[0] * kernel[1] * x.shape[3])


# --- convolution -------------------------------------------------------------


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


def _check_dout(dout, shape, out_hw) -> np.ndarray:
    dout = np.asarray(dout)
    expected = (shape[0], *out_hw, shape[3])
    if dout.shape != expected:
        raise ValueError(f"dout has shape {dout.shape}, the output is {expected}")
    return dout


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


# --- pooling -----------------------------------------------------------------


def _pool_plan(shape, pool_size, stride, padding):
    kernel = _pair(pool_size, "pool_size")
    return _plan(shape[1:3], kernel, kernel if stride is None else stride, padding, 1)


def _float(x: np.ndarray) -> np.ndarray:
    return x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float64)


def _avg_counts(shape, kernel, stride, pads) -> np.ndarray:
    """How many real (unpadded) cells each window holds, shape (1, OH, OW, 1)."""
    ones = np.ones((1, shape[1], shape[2], 1))
    counts = _windows(ones, kernel, stride, pads, (1, 1)).sum(axis=(3, 4))
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
    x = _float(_as_4d(x))
    kernel, stride, pads, _, _ = _pool_plan(x.shape, pool_size, stride, padding)
    return _windows(x, kernel, stride, pads, (1, 1), -np.inf).max(axis=(3, 4))


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
    x = _float(_as_4d(x))
    kernel, stride, pads, _, _ = _pool_plan(x.shape, pool_size, stride, padding)
    sums = _windows(x, kernel, stride, pads, (1, 1)).sum(axis=(3, 4))
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
    x = _float(_as_4d(x))
    kernel, stride, pads, _, out_hw = _pool_plan(x.shape, pool_size, stride, padding)
    dout = _check_dout(dout, x.shape, out_hw)
    win = _windows(x, kernel, stride, pads, (1, 1), -np.inf)
    n, oh, ow, kh, kw, c = win.shape
    argmax = win.reshape(n, oh, ow, kh * kw, c).argmax(axis=3)
    is_max = np.arange(kh * kw)[:, None] == argmax[:, :, :, None, :]
    dwin = np.where(is_max, dout[:, :, :, None, :], 0.0)
    dx_pad = _col2im(
        dwin.reshape(win.shape), _padded_shape(x.shape, pads), stride, (1, 1)
    )
    return _crop(dx_pad, pads, x.shape[1:3])


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
    dout = _float(_check_dout(dout, shape, out_hw))
    grads = dout / _avg_counts(shape, kernel, stride, pads).astype(dout.dtype)
    dwin = np.broadcast_to(
        grads[:, :, :, None, None, :], (*grads.shape[:3], *kernel, shape[3])
    )
    dx_pad = _col2im(dwin, _padded_shape(shape, pads), stride, (1, 1))
    return _crop(dx_pad, pads, shape[1:3])


# --- activations and dense layers ----------------------------------------------


def relu(x: np.ndarray) -> np.ndarray:
    """``max(x, 0)`` elementwise (chapter 2)."""
    return np.maximum(x, 0)


def relu_backward(dout: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Gradient of :func:`relu`: ``dout`` where ``x > 0``, else 0 (chapter 2)."""
    return dout * (np.asarray(x) > 0)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Softmax along ``axis`` (chapter 2); the maximum is subtracted first, so
    ``exp`` cannot overflow."""
    x = _float(np.asarray(x))
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


# --- Keras models ------------------------------------------------------------


def _grow(rf, jump, kernel, stride, dilation):
    """One layer of receptive-field arithmetic, per axis (see layer_costs)."""
    rf = tuple(r + d * (k - 1) * j for r, k, d, j in zip(rf, kernel, dilation, jump))
    return rf, tuple(j * s for j, s in zip(jump, stride))


_FREE = ("Activation", "Dropout", "ReLU", "InputLayer")


def layer_costs(model: keras.Model) -> list[dict]:
    """Output shape, parameters, FLOPs and receptive field of each layer (chapter 2).

    For one image. A multiply-add counts as 2 FLOPs: a convolution costs
    ``2 * OH * OW * C_out * KH * KW * C_in`` and a dense layer ``2 * in * out``
    (bias additions are not counted). Pooling counts one comparison or addition per
    window element, ``OH * OW * C * KH * KW``; batch normalization at inference 2
    per element (a scale and a shift). Activations (ReLU, softmax), Flatten,
    Dropout and the Random* augmentation layers count 0: they are free or
    identities at inference.

    The receptive field is the side of the input region one output unit sees:
    with ``k_eff = d * (k - 1) + 1``, ``r_out = r_in + (k_eff - 1) * jump_in`` and
    ``jump_out = jump_in * stride``, starting from ``r = jump = 1``. After Flatten
    every unit sees the whole input. It is an int when square, else ``(rh, rw)``.

    Supported: Conv2D, MaxPooling2D, AveragePooling2D, Flatten, Dense, Dropout,
    BatchNormalization, ReLU, Activation and Random* layers; others raise
    ValueError.

    Returns
    -------
    list of dict
        One per layer of ``model.layers``, with keys ``name``, ``type`` (the class
        name), ``output_shape`` (without the batch axis), ``params`` (equal to
        ``layer.count_params()``), ``flops`` and ``receptive_field``.
    """
    shape = tuple(model.input_shape[1:])
    rf, jump = (1, 1), (1, 1)
    rows = []
    for layer in model.layers:
        kind = type(layer).__name__
        out = tuple(layer.compute_output_shape((None, *shape))[1:])
        if kind == "Conv2D":
            taps = math.prod(layer.kernel_size) * shape[-1] // layer.groups
            flops = 2 * math.prod(out) * taps
            rf, jump = _grow(
                rf, jump, layer.kernel_size, layer.strides, layer.dilation_rate
            )
        elif kind in ("MaxPooling2D", "AveragePooling2D"):
            flops = math.prod(out) * math.prod(layer.pool_size)
            rf, jump = _grow(rf, jump, layer.pool_size, layer.strides, (1, 1))
        elif kind == "Dense":
            flops = 2 * math.prod(shape) * layer.units
        elif kind == "BatchNormalization":
            flops = 2 * math.prod(out)
        elif kind == "Flatten":
            flops, rf = 0, tuple(model.input_shape[1:3])
        elif kind in _FREE or kind.startswith("Random"):
            flops = 0
        else:
            raise ValueError(
                f"layer_costs does not support {kind} layers ({layer.name})"
            )
        rows.append(
            {
                "name": layer.name,
                "type": kind,
                "output_shape": out,
                "params": int(layer.count_params()),
                "flops": int(flops),
                "receptive_field": rf[0] if rf[0] == rf[1] else rf,
            }
        )
        shape = out
    return rows


def model_flops(model: keras.Model) -> int:
    """FLOPs of one image's forward pass, the sum over :func:`layer_costs` (ch. 2)."""
    return sum(row["flops"] for row in layer_costs(model))


def _activate(layer, x: np.ndarray) -> np.ndarray:
    name = getattr(layer.activation, "__name__", repr(layer.activation))
    functions = {"linear": lambda v: v, "relu": relu, "softmax": softmax}
    if name not in functions:
        raise ValueError(f"forward does not support activation {name!r} ({layer.name})")
    return functions[name](x)


def forward(model: keras.Model, x: np.ndarray, method: str = "im2col") -> np.ndarray:
    """Run a built Keras model's inference with the NumPy functions of chapter 2.

    Handles Conv2D (strides, padding, dilation, activation), MaxPooling2D,
    AveragePooling2D, Flatten, Dense (linear, relu or softmax), ReLU, Activation,
    BatchNormalization (moving statistics) and, as identities at inference, Dropout
    and the Random* augmentation layers; any other layer raises ValueError.
    ``method`` picks the convolution (see :func:`conv2d`). Computes in ``x``'s
    float dtype (integers become float32).
    """
    from keras import ops as kops

    out = np.asarray(x)
    out = out if np.issubdtype(out.dtype, np.floating) else out.astype(np.float32)
    dtype = out.dtype

    def value(variable) -> np.ndarray:
        return kops.convert_to_numpy(variable).astype(dtype)

    for layer in model.layers:
        kind = type(layer).__name__
        if getattr(layer, "data_format", "channels_last") != "channels_last":
            raise ValueError(f"forward needs channels_last layers ({layer.name})")
        if kind == "Conv2D":
            if layer.groups != 1:
                raise ValueError(
                    f"forward does not support grouped Conv2D ({layer.name})"
                )
            b = value(layer.bias) if layer.use_bias else None
            geometry = (layer.strides, layer.padding, layer.dilation_rate)
            out = _activate(
                layer, conv2d(out, value(layer.kernel), b, *geometry, method)
            )
        elif kind in ("MaxPooling2D", "AveragePooling2D"):
            pool = max_pool2d if kind == "MaxPooling2D" else avg_pool2d
            out = pool(out, layer.pool_size, layer.strides, layer.padding)
        elif kind == "Dense":
            b = value(layer.bias) if layer.use_bias else None
            out = _activate(layer, dense(out, value(layer.kernel), b))
        elif kind == "Flatten":
            out = flatten(out)
        elif kind == "Activation":
            out = _activate(layer, out)
        elif kind == "ReLU":
            if (layer.max_value, layer.negative_slope, layer.threshold) != (None, 0, 0):
                raise ValueError(f"forward supports only the plain ReLU ({layer.name})")
            out = relu(out)
        elif kind == "BatchNormalization":
            if layer.axis not in (-1, out.ndim - 1):
                raise ValueError("forward needs BatchNormalization on the last axis")
            scale = 1 / np.sqrt(value(layer.moving_variance) + layer.epsilon)
            if layer.scale:
                scale = scale * value(layer.gamma)
            out = (out - value(layer.moving_mean)) * scale
            out = out + value(layer.beta) if layer.center else out
        elif kind not in ("Dropout", "InputLayer") and not kind.startswith("Random"):
            raise ValueError(f"forward does not support {kind} layers ({layer.name})")
    return out
