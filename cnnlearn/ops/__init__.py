"""NumPy reference implementations of the CNN layers (chapter 2).

Activations are NHWC ``(batch, height, width, channels)`` and convolution kernels
HWIO ``(height, width, in_channels, out_channels)``, the layouts of ``tf.nn`` and
Keras, so every result here can be compared with TensorFlow number for number
(``tests/test_ops.py`` does). A convolution is a cross-correlation, as in
``tf.nn.conv2d``. It comes two ways: :func:`conv2d_naive` loops over output
positions and kernel taps and reads like the formula; :func:`conv2d_im2col`
copies every input window into one row of a matrix (:func:`im2col`) and does a
single matrix product. :func:`conv2d` picks one (``method``) and adds the bias.
The ``*_backward`` functions return the gradients that ``tf.GradientTape``
computes.

The geometry the layers share lives in ``cnnlearn.ops.geometry``:
:func:`window_geometry` checks a window's kernel, stride, padding and dilation
and gives the output size, :func:`window_view` shows every window of an input at
once, and :func:`col2im`, its adjoint, adds windows' gradients back into place.

``padding`` is ``"valid"`` (none), ``"same"`` (TensorFlow's rule, see
:func:`same_padding`), an int ``p`` (``p`` zeros on every side) or explicit
``((top, bottom), (left, right))``. ``kernel_size``, ``stride`` and ``dilation``
are an int or an ``(h, w)`` pair.

:func:`layer_costs` and :func:`model_flops` count a Keras model's parameters,
FLOPs and receptive fields, :func:`training_flops` those of a training step;
:func:`forward` runs its inference with these functions.
"""

from __future__ import annotations

from cnnlearn.ops.conv import (
    conv2d,
    conv2d_backward,
    conv2d_im2col,
    conv2d_im2col_backward,
    conv2d_naive,
    conv2d_naive_backward,
)
from cnnlearn.ops.geometry import (
    IntPair,
    Padding,
    Pads,
    as_float,
    as_pair,
    check_4d,
    check_dout,
    col2im,
    im2col,
    output_shape,
    output_size,
    padded_shape,
    same_padding,
    unpad,
    window_geometry,
    window_view,
)
from cnnlearn.ops.layers import dense, flatten, relu, relu_backward, softmax
from cnnlearn.ops.model import (
    backward_flops,
    forward,
    layer_costs,
    model_flops,
    training_flops,
)
from cnnlearn.ops.pool import (
    avg_pool2d,
    avg_pool2d_backward,
    max_pool2d,
    max_pool2d_backward,
)

__all__ = [
    "IntPair",
    "Padding",
    "Pads",
    "as_float",
    "as_pair",
    "avg_pool2d",
    "avg_pool2d_backward",
    "backward_flops",
    "check_4d",
    "check_dout",
    "col2im",
    "conv2d",
    "conv2d_backward",
    "conv2d_im2col",
    "conv2d_im2col_backward",
    "conv2d_naive",
    "conv2d_naive_backward",
    "dense",
    "flatten",
    "forward",
    "im2col",
    "layer_costs",
    "max_pool2d",
    "max_pool2d_backward",
    "model_flops",
    "output_shape",
    "output_size",
    "padded_shape",
    "relu",
    "relu_backward",
    "same_padding",
    "softmax",
    "training_flops",
    "unpad",
    "window_geometry",
    "window_view",
]
