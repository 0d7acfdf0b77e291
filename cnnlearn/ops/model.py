"""A Keras model's costs and its inference with these functions (chapter 2)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from cnnlearn.ops.conv import conv2d
from cnnlearn.ops.layers import dense, flatten, relu, softmax
from cnnlearn.ops.pool import avg_pool2d, max_pool2d

if TYPE_CHECKING:
    import keras

__all__ = ["backward_flops", "forward", "layer_costs", "model_flops", "training_flops"]


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


def backward_flops(model: keras.Model) -> list[int]:
    """FLOPs of one image's backward pass, per layer of ``model.layers`` (ch. 1, 5).

    A count, not a measurement, built on :func:`layer_costs` (``f`` is a layer's
    forward FLOPs there). The convention:

    * a layer with parameters (Conv2D, Dense, BatchNormalization) costs ``f`` for
      the gradient with respect to its weights (the same multiply-adds as the
      forward pass, with the output gradient in place of the weights) and ``f``
      again for the gradient with respect to its input;
    * a layer without parameters (pooling) costs ``f`` for its input gradient:
      routing or spreading each window's gradient, one operation per element;
      activations, Flatten, Dropout and Random* layers count 0, as in
      :func:`layer_costs`;
    * no input gradient is computed in front of the first layer with parameters:
      nothing there learns, so that layer costs only its weight gradient and the
      layers before it cost 0.

    The loss, the softmax's gradient and the optimizer's update (a few operations
    per parameter) are not counted.
    """
    rows = layer_costs(model)
    costs, learns_below = [], False
    for row in rows:
        flops, has_weights = row["flops"], row["params"] > 0
        input_grad = flops if learns_below else 0
        costs.append(flops + input_grad if has_weights else input_grad)
        learns_below = learns_below or has_weights
    return costs


def training_flops(model: keras.Model) -> int:
    """FLOPs of one training step per image: forward plus backward (ch. 1, 5).

    :func:`model_flops` plus the sum of :func:`backward_flops`; see there for the
    convention. For the seed CNN the ratio to the forward pass is below 3, because
    its first (and most expensive) layer needs no input gradient.
    """
    return model_flops(model) + sum(backward_flops(model))


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
    from keras import ops as kops  # here: cnnlearn.ops stays NumPy-only to import

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
