"""Shapes, padding and sliding windows: the geometry the layers share (chapter 2)."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "IntPair",
    "Padding",
    "Pads",
    "as_float",
    "as_pair",
    "check_4d",
    "check_dout",
    "col2im",
    "im2col",
    "output_shape",
    "output_size",
    "padded_shape",
    "same_padding",
    "unpad",
    "window_geometry",
    "window_view",
]


IntPair = int | tuple[int, int]
Padding = str | int | tuple[tuple[int, int], tuple[int, int]]
Pads = tuple[tuple[int, int], tuple[int, int]]


def as_pair(value: IntPair, name: str) -> tuple[int, int]:
    """``(h, w)`` from an int or a pair of ints >= 1; ``name`` goes in the error."""
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


def window_geometry(
    hw: tuple[int, int],
    kernel_size: IntPair,
    stride: IntPair,
    padding: Padding,
    dilation: IntPair,
) -> tuple[tuple[int, int], tuple[int, int], Pads, tuple[int, int], tuple[int, int]]:
    """Everything a sliding window over an ``hw = (H, W)`` input needs, checked.

    Returns ``(kernel, stride, pads, dilation, (OH, OW))``: the pairs as
    ``(h, w)``, ``pads`` explicit as ``((top, bottom), (left, right))`` (see
    :func:`same_padding`) and the output size of :func:`output_size` per axis.
    Convolution and pooling start with it (chapter 2).
    """
    kernel, stride = as_pair(kernel_size, "kernel_size"), as_pair(stride, "stride")
    dilation = as_pair(dilation, "dilation")
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
    out = window_geometry(hw, kernel_size, stride, padding, dilation)[-1]
    return out if len(shape) == 2 else (shape[0], *out, shape[3])


def check_4d(x: np.ndarray, name: str = "x") -> np.ndarray:
    """``x`` as an array, which must be 4-D ``(N, H, W, C)``; ``name`` for the error."""
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"{name} must be 4-D (N, H, W, C), got shape {x.shape}")
    return x


def window_view(
    x: np.ndarray,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    pads: Pads,
    dilation: tuple[int, int],
    fill: float = 0.0,
) -> np.ndarray:
    """Every window of ``x`` at once: ``(N, OH, OW, KH, KW, C)`` (chapter 2).

    ``win[n, i, j, u, v, c] = x_pad[n, i*s + u*d, j*s + v*d, c]``, with ``x_pad``
    the input padded by ``pads`` cells of ``fill``. A read-only strided view of
    the padded input (``sliding_window_view``): no window is copied. The
    arguments are :func:`window_geometry`'s results.
    """
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    if any(pads[0] + pads[1]):
        x = np.pad(x, ((0, 0), *pads, (0, 0)), constant_values=fill)
    win = sliding_window_view(x, (dh * (kh - 1) + 1, dw * (kw - 1) + 1), axis=(1, 2))
    return win[:, ::sh, ::sw, :, ::dh, ::dw].transpose(0, 1, 2, 4, 5, 3)


def col2im(
    dwin: np.ndarray,
    shape: tuple[int, int, int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
) -> np.ndarray:
    """The adjoint of :func:`window_view`: windows' gradients back into place.

    ``dwin`` holds one gradient per window cell, ``(N, OH, OW, KH, KW, C)``;
    each is added to the input cell that the window read, so cells shared by
    overlapping windows sum their gradients. Returns the gradient of the padded
    input, of ``shape`` (see :func:`padded_shape` and :func:`unpad`). The
    backward passes of convolution and pooling end with it (chapter 2).
    """
    n, oh, ow, kh, kw, c = dwin.shape
    (sh, sw), (dh, dw) = stride, dilation
    dx = np.zeros(shape, dtype=dwin.dtype)
    for u in range(kh):  # one strided slice per kernel tap, all positions at once
        for v in range(kw):
            rows = slice(u * dh, u * dh + sh * (oh - 1) + 1, sh)
            cols = slice(v * dw, v * dw + sw * (ow - 1) + 1, sw)
            dx[:, rows, cols, :] += dwin[:, :, :, u, v, :]
    return dx


def unpad(x_pad: np.ndarray, pads: Pads, hw: tuple[int, int]) -> np.ndarray:
    """The ``hw = (H, W)`` input cells of a padded array: padding cut off."""
    (top, _), (left, _) = pads
    return x_pad[:, top : top + hw[0], left : left + hw[1], :]


def padded_shape(shape: tuple[int, ...], pads: Pads) -> tuple[int, int, int, int]:
    """The shape ``(N, H, W, C)`` takes after padding by ``pads``."""
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
    x = check_4d(x)
    kernel, stride, pads, dilation, (oh, ow) = window_geometry(
        x.shape[1:3], kernel_size, stride, padding, dilation
    )
    win = window_view(x, kernel, stride, pads, dilation)
    return win.reshape(x.shape[0], oh, ow, kernel[0] * kernel[1] * x.shape[3])


def check_dout(
    dout: np.ndarray, shape: tuple[int, ...], out_hw: tuple[int, int]
) -> np.ndarray:
    """``dout`` as an array, checked to be ``(shape[0], *out_hw, shape[3])``.

    The backward passes' check that an output gradient has the output's shape.
    """
    dout = np.asarray(dout)
    expected = (shape[0], *out_hw, shape[3])
    if dout.shape != expected:
        raise ValueError(f"dout has shape {dout.shape}, the output is {expected}")
    return dout


def as_float(x: np.ndarray) -> np.ndarray:
    """``x`` itself if it holds floats, else converted to float64."""
    return x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float64)
