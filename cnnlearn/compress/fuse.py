"""Batch-norm folding and TFLite op counts (chapter 6).

At inference, batch normalization is a fixed affine map per channel::

    BN(z) = gamma * (z - mean) / sqrt(var + eps) + beta = s * z + (beta - s * mean)

with ``s = gamma / sqrt(var + eps)``. When ``z = W x + b`` comes from a
Conv2D or Dense layer without activation, the two fold into one layer::

    W' = W * s  (per output channel)      b' = s * (b - mean) + beta

:func:`fold_batchnorm` builds that model. :func:`tflite_ops` lists the ops in a
TFLite flatbuffer, to show the fusions the converter does on its own (the ReLU
after a convolution becomes the convolution's fused activation).
"""

from __future__ import annotations

import os
from collections import Counter

import cnnlearn._tf  # noqa: F401  (quiet TensorFlow start-up; before Keras)

# isort: split
import keras
import numpy as np
from ai_edge_litert import schema_py_generated as schema
from keras import layers

from cnnlearn.compress.common import read_bytes

__all__ = [
    "INFERENCE_IDENTITY",
    "count_ops",
    "fold_batchnorm",
    "keras_ops",
    "recalibrate_batchnorm",
    "tflite_ops",
]

#: Layers that pass their input through unchanged at inference.
INFERENCE_IDENTITY = (
    layers.Dropout,
    layers.SpatialDropout1D,
    layers.SpatialDropout2D,
    layers.SpatialDropout3D,
    layers.GaussianNoise,
    layers.GaussianDropout,
    layers.AlphaDropout,
    layers.RandomRotation,
    layers.RandomTranslation,
    layers.RandomZoom,
    layers.RandomFlip,
    layers.RandomContrast,
    layers.RandomBrightness,
)
_FOLDABLE = (layers.Conv2D, layers.Dense, layers.DepthwiseConv2D)


def _is_linear(layer: layers.Layer) -> bool:
    activation = getattr(layer, "activation", None)
    return activation is None or activation is keras.activations.linear


def _fold(layer: layers.Layer, bn: layers.BatchNormalization) -> tuple[dict, list]:
    kernel = np.asarray(layer.kernel.numpy(), dtype=np.float64)
    channels = kernel.shape[-1]
    if isinstance(layer, layers.DepthwiseConv2D):
        channels = kernel.shape[-2] * kernel.shape[-1]
    bias = (
        np.asarray(layer.bias.numpy(), dtype=np.float64)
        if layer.use_bias
        else np.zeros(channels)
    )
    mean = np.asarray(bn.moving_mean.numpy(), dtype=np.float64)
    var = np.asarray(bn.moving_variance.numpy(), dtype=np.float64)
    gamma = np.asarray(bn.gamma.numpy(), np.float64) if bn.scale else np.ones(channels)
    beta = np.asarray(bn.beta.numpy(), np.float64) if bn.center else np.zeros(channels)
    s = gamma / np.sqrt(var + bn.epsilon)
    if isinstance(layer, layers.DepthwiseConv2D):
        folded = kernel * s.reshape(kernel.shape[-2], kernel.shape[-1])
    else:
        folded = kernel * s
    config = layer.get_config()
    config.update(use_bias=True, name=f"{layer.name}_folded")
    return config, [
        folded.astype(np.float32),
        (s * (bias - mean) + beta).astype(np.float32),
    ]


def fold_batchnorm(model: keras.Model, drop_identity: bool = True) -> keras.Sequential:
    """A new Sequential model with every foldable BatchNormalization folded away.

    Parameters
    ----------
    model
        A ``keras.Sequential`` model. A BatchNormalization folds into the
        Conv2D, DepthwiseConv2D or Dense layer right before it when that layer
        has no activation (Conv → BN → ReLU, the usual order); any other
        BatchNormalization is kept.
    drop_identity
        Also drop the layers that are the identity at inference (dropout,
        random augmentation; see :data:`INFERENCE_IDENTITY`).

    Returns
    -------
    keras.Sequential
        Same predictions as ``model`` at inference (to float32 rounding),
        fewer layers. Used in chapter 6.
    """
    if not isinstance(model, keras.Sequential):
        raise ValueError(
            f"fold_batchnorm expects a keras.Sequential model, got "
            f"{type(model).__name__}; rebuild functional models as Sequential"
        )
    source = list(model.layers)
    built: list[tuple[layers.Layer, list]] = []
    i = 0
    while i < len(source):
        layer = source[i]
        after = source[i + 1] if i + 1 < len(source) else None
        if (
            isinstance(layer, _FOLDABLE)
            and isinstance(after, layers.BatchNormalization)
            and _is_linear(layer)
            and after.axis in (-1, len(layer.output.shape) - 1)
        ):
            config, weights = _fold(layer, after)
            built.append((type(layer).from_config(config), weights))
            i += 2
            continue
        if not (drop_identity and isinstance(layer, INFERENCE_IDENTITY)):
            built.append(
                (type(layer).from_config(layer.get_config()), layer.get_weights())
            )
        i += 1
    folded = keras.Sequential(
        [keras.Input(model.input_shape[1:]), *(layer for layer, _ in built)],
        name=f"{model.name}_folded",
    )
    for layer, weights in built:
        layer.set_weights(weights)
    return folded


def recalibrate_batchnorm(
    model: keras.Sequential, x: np.ndarray, batch_size: int = 500
) -> keras.Sequential:
    """Set every BatchNormalization's moving mean and variance to exact statistics.

    Runs ``x`` through the Sequential ``model`` layer by layer (inference mode)
    and gives each BatchNormalization the mean and variance of its own inputs
    over ``x``, per channel, computed after the batch norms before it were
    recalibrated. Useful after pruning, or to give a model real statistics; the
    other weights are untouched. Keeps one layer's activations for all of ``x``
    in memory, so a few thousand images is plenty. Returns ``model``.
    """
    if not isinstance(model, keras.Sequential):
        raise ValueError(
            f"expected a keras.Sequential model, got {type(model).__name__}"
        )
    batches = [x[i : i + batch_size] for i in range(0, len(x), batch_size)]
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            n, s1, s2 = 0, 0.0, 0.0
            for h in batches:
                flat = np.asarray(h, dtype=np.float64).reshape(-1, h.shape[-1])
                n, s1, s2 = n + len(flat), s1 + flat.sum(0), s2 + (flat**2).sum(0)
            mean = s1 / n
            variance = np.maximum(s2 / n - mean**2, 0.0)
            layer.moving_mean.assign(mean.astype(np.float32))
            layer.moving_variance.assign(variance.astype(np.float32))
        batches = [np.asarray(layer(h, training=False)) for h in batches]
    return model


def keras_ops(model: keras.Model) -> list[str]:
    """The operations a Keras model runs: one per layer, plus its activation.

    ``Conv2D(activation="relu")`` counts as two ops, ``"Conv2D"`` and
    ``"relu"``, since that is what runs; compare with :func:`tflite_ops`.
    """
    ops = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.Model) or isinstance(layer, layers.InputLayer):
            continue
        ops.append(type(layer).__name__)
        if not _is_linear(layer) and not isinstance(layer, layers.Activation):
            ops.append(keras.activations.serialize(layer.activation))
    return ops


def tflite_ops(model: str | os.PathLike | bytes, fused: bool = True) -> list[str]:
    """The ops in a TFLite flatbuffer's main graph, in execution order.

    With ``fused``, an op that carries a fused activation is shown with it, e.g.
    ``"CONV_2D+RELU"``: the converter's own fusion of Conv2D and ReLU.
    ``collections.Counter(tflite_ops(b))`` counts them. Used in chapter 6.
    """
    buffer = read_bytes(model)
    flat = schema.Model.GetRootAsModel(buffer, 0)
    names = {
        value: name
        for name, value in vars(schema.BuiltinOperator).items()
        if not name.startswith("_")
    }
    activations = {
        value: name
        for name, value in vars(schema.ActivationFunctionType).items()
        if not name.startswith("_")
    }
    options = {
        schema.BuiltinOptions.Conv2DOptions: schema.Conv2DOptions,
        schema.BuiltinOptions.DepthwiseConv2DOptions: schema.DepthwiseConv2DOptions,
        schema.BuiltinOptions.FullyConnectedOptions: schema.FullyConnectedOptions,
        schema.BuiltinOptions.AddOptions: schema.AddOptions,
        schema.BuiltinOptions.MulOptions: schema.MulOptions,
        schema.BuiltinOptions.Pool2DOptions: schema.Pool2DOptions,
    }
    graph = flat.Subgraphs(0)
    ops = []
    for k in range(graph.OperatorsLength()):
        op = graph.Operators(k)
        code = flat.OperatorCodes(op.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        name = names.get(builtin, f"OP_{builtin}")
        if name == "CUSTOM":
            name = code.CustomCode().decode()
        kind = options.get(op.BuiltinOptionsType())
        if fused and kind is not None and op.BuiltinOptions() is not None:
            table = op.BuiltinOptions()
            opts = kind()
            opts.Init(table.Bytes, table.Pos)
            act = activations.get(opts.FusedActivationFunction(), "NONE")
            if act != "NONE":
                name = f"{name}+{act}"
        ops.append(name)
    return ops


def count_ops(model: str | os.PathLike | bytes) -> dict[str, int]:
    """``{op name: count}`` for a TFLite flatbuffer (see :func:`tflite_ops`)."""
    return dict(Counter(tflite_ops(model)))
