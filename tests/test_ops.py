"""cnnlearn.ops (chapter 2) against TensorFlow, finite differences and Keras."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlearn import data, models, ops, train

METHODS = ["im2col", "naive"]
# float64 everywhere, so 1e-5 relative is loose for the maths and tight for any
# indexing mistake (which is off by O(1)). TF's CPU MaxPool on float64 agrees only
# to ~1e-8 (it seems to go through float32 internally), still well inside 1e-5.
RTOL, ATOL = 1e-5, 1e-8

# (input shape, kernel, stride, padding, dilation): odd and even sizes, stride 2
# with SAME (asymmetric: the extra row/column goes at the bottom/right),
# dilation, non-square kernels and explicit padding.
CONV_CASES = [
    ((2, 7, 7, 3), 3, 1, "valid", 1),
    ((2, 8, 8, 3), 3, 1, "same", 1),
    ((2, 8, 8, 3), 3, 2, "same", 1),  # pads (0, 1): asymmetric
    ((2, 7, 7, 3), 3, 2, "same", 1),  # pads (1, 1)
    ((2, 6, 9, 2), (2, 4), 2, "same", 1),
    ((2, 9, 8, 2), 4, (2, 3), "valid", 1),
    ((1, 9, 9, 2), 3, 1, "same", 2),
    ((1, 10, 8, 2), 3, 1, "valid", (2, 3)),
    ((2, 5, 6, 3), 3, 2, 1, 1),
    ((2, 5, 6, 3), 3, 1, ((0, 2), (1, 0)), 2),
]
# TF has no CPU gradient for stride > 1 with dilation > 1: forward only (and the
# finite differences below).
CONV_FORWARD_ONLY = [((2, 9, 10, 2), (3, 2), 2, "same", (2, 3))]
POOL_CASES = [
    ((2, 8, 8, 3), 2, None, "valid"),
    ((2, 7, 7, 3), 2, None, "valid"),
    ((2, 7, 7, 3), 2, None, "same"),  # pads (0, 1)
    ((2, 8, 6, 2), 3, 2, "same"),  # overlapping windows, pads (0, 1) and (1, 1)
    ((1, 7, 9, 2), 3, 2, "valid"),
    ((1, 6, 5, 2), (2, 3), 1, "same"),
]


def _tf_padding(padding):
    if isinstance(padding, str):
        return padding.upper()
    if isinstance(padding, int):
        padding = ((padding, padding), (padding, padding))
    return [[0, 0], *map(list, padding), [0, 0]]


def _conv_case(case, seed=0, c_out=4):
    shape, kernel, stride, padding, dilation = case
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    w = rng.standard_normal((kh, kw, shape[3], c_out))
    b = rng.standard_normal(c_out)
    return x, w, b, dict(stride=stride, padding=padding, dilation=dilation)


def _tf_conv(x, w, b, stride, padding, dilation, tape=False):
    if not tape:
        return tf.nn.conv2d(x, w, stride, _tf_padding(padding), dilations=dilation) + b
    # TF's dilated Conv2D has no CPU gradient; tf.nn.convolution does dilation (at
    # stride 1) with space_to_batch, which has one. It takes no explicit padding.
    if not isinstance(padding, str):
        x, padding = tf.pad(x, _tf_padding(padding)), "valid"
    return tf.nn.convolution(x, w, stride, padding.upper(), dilations=dilation) + b


def _tf_pool(kind, x, pool, stride, padding):
    op = tf.nn.max_pool2d if kind == "max" else tf.nn.avg_pool2d
    return op(x, pool, pool if stride is None else stride, _tf_padding(padding))


def _tape(fn, dout, *args):
    """Gradients of sum(fn(*args) * dout) with respect to every arg."""
    variables = [tf.constant(a) for a in args]
    with tf.GradientTape() as tape:
        tape.watch(variables)
        loss = tf.reduce_sum(fn(*variables) * dout)
    return [g.numpy() for g in tape.gradient(loss, variables)]


def _numerical_grad(f, a, eps=1e-6):
    """Central differences of the scalar f() with respect to every entry of a."""
    grad = np.zeros_like(a)
    for index in np.ndindex(a.shape):
        keep = a[index]
        a[index] = keep + eps
        plus = f()
        a[index] = keep - eps
        minus = f()
        a[index] = keep
        grad[index] = (plus - minus) / (2 * eps)
    return grad


# --- geometry ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "k", "stride", "dilation", "pads"),
    [(28, 3, 1, 1, (1, 1)), (28, 3, 2, 1, (0, 1)), (7, 3, 2, 1, (1, 1)),
     (6, 3, 2, 1, (0, 1)), (5, 4, 1, 1, (1, 2)), (9, 3, 1, 2, (2, 2)),
     (4, 1, 2, 1, (0, 0)), (3, 7, 1, 1, (3, 3))],
)  # fmt: skip
def test_same_padding_is_tensorflows_rule(n, k, stride, dilation, pads):
    assert ops.same_padding(n, k, stride, dilation) == pads
    assert ops.output_size(n, k, stride, "same", dilation) == -(-n // stride)


def test_output_size_and_shape():
    assert ops.output_size(28, 3) == 26
    assert ops.output_size(26, 2, 2) == 13
    assert ops.output_size(28, 3, 2, "same") == 14
    assert ops.output_size(28, 5, 1, 2) == 28
    assert ops.output_size(10, 3, 1, "valid", dilation=3) == 4
    assert ops.output_size(5, 3, 2, (0, 2)) == 3
    assert ops.output_shape((28, 28), 3) == (26, 26)
    assert ops.output_shape((None, 28, 28, 1), 2, 2) == (None, 14, 14, 1)
    assert ops.output_shape((8, 28, 20, 3), (3, 5), 2, ((1, 1), (0, 2))) == (
        8, 14, 9, 3,
    )  # fmt: skip


def test_im2col_index_math():
    x = np.random.default_rng(0).standard_normal((2, 7, 6, 3))
    s, d, kh, kw = 2, 2, 2, 3
    cols = ops.im2col(x, (kh, kw), s, ((1, 0), (2, 1)), d)
    x_pad = np.pad(x, ((0, 0), (1, 0), (2, 1), (0, 0)))
    assert cols.shape == (2, 3, 3, kh * kw * 3)
    for n, i, j, u, v, c in np.ndindex(2, 3, 3, kh, kw, 3):
        got = cols[n, i, j, (u * kw + v) * 3 + c]
        assert got == x_pad[n, i * s + u * d, j * s + v * d, c]


def test_col2im_is_the_adjoint_of_the_window_view():
    """<window_view(x), g> == <x_pad, col2im(g)>: what makes it the gradient."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 7, 6, 3))
    kernel, stride, pads, dilation, (oh, ow) = ops.window_geometry(
        x.shape[1:3], (2, 3), 2, ((1, 0), (2, 1)), 2
    )
    win = ops.window_view(x, kernel, stride, pads, dilation)
    g = rng.standard_normal(win.shape)
    back = ops.col2im(g, ops.padded_shape(x.shape, pads), stride, dilation)
    x_pad = np.pad(x, ((0, 0), *pads, (0, 0)))
    assert win.shape == (2, oh, ow, 2, 3, 3)
    assert np.isclose((win * g).sum(), (x_pad * back).sum())
    assert ops.unpad(x_pad, pads, x.shape[1:3]).shape == x.shape


def test_conv2d_is_either_implementation_plus_the_bias():
    rng = np.random.default_rng(2)
    x, w, b = (
        rng.standard_normal((2, 6, 5, 3)),
        rng.standard_normal((3, 2, 3, 4)),
        rng.standard_normal(4),
    )
    geometry = (2, "same", 1)
    naive = ops.conv2d_naive(x, w, *geometry)
    np.testing.assert_allclose(ops.conv2d_im2col(x, w, *geometry), naive, atol=1e-12)
    np.testing.assert_array_equal(ops.conv2d(x, w, b, *geometry, "naive"), naive + b)
    dout = rng.standard_normal(naive.shape)
    dx, dw = ops.conv2d_naive_backward(dout, x, w, *geometry)
    dx2, dw2 = ops.conv2d_im2col_backward(dout, x, w, *geometry)
    np.testing.assert_allclose(dx2, dx, atol=1e-12)
    np.testing.assert_allclose(dw2, dw, atol=1e-12)
    full = ops.conv2d_backward(dout, x, w, *geometry, "naive")
    np.testing.assert_array_equal(full[2], dout.sum(axis=(0, 1, 2)))


# --- convolution against TensorFlow --------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", CONV_CASES + CONV_FORWARD_ONLY)
def test_conv2d_matches_tf(case, method):
    x, w, b, kw = _conv_case(case)
    expected = _tf_conv(x, w, b, **kw).numpy()
    got = ops.conv2d(x, w, b, **kw, method=method)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_backward_matches_gradient_tape(case, method):
    x, w, b, kw = _conv_case(case)
    dout = np.random.default_rng(1).standard_normal(ops.conv2d(x, w, b, **kw).shape)
    expected = _tape(lambda *a: _tf_conv(*a, **kw, tape=True), dout, x, w, b)
    got = ops.conv2d_backward(dout, x, w, **kw, method=method)
    for g, e in zip(got, expected):
        assert g.shape == e.shape
        np.testing.assert_allclose(g, e, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("case", POOL_CASES)
def test_pooling_and_its_gradient_match_tf(case, kind):
    shape, pool, stride, padding = case
    x = np.random.default_rng(0).standard_normal(shape)
    forward = ops.max_pool2d if kind == "max" else ops.avg_pool2d
    got = forward(x, pool, stride, padding)
    expected = _tf_pool(kind, x, pool, stride, padding).numpy()
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)

    dout = np.random.default_rng(1).standard_normal(got.shape)
    (dx_tf,) = _tape(lambda x: _tf_pool(kind, x, pool, stride, padding), dout, x)
    if kind == "max":
        dx = ops.max_pool2d_backward(dout, x, pool, stride, padding)
    else:
        dx = ops.avg_pool2d_backward(dout, x.shape, pool, stride, padding)
    np.testing.assert_allclose(dx, dx_tf, rtol=RTOL, atol=ATOL)


def test_max_pool_explicit_padding_matches_tf():
    x = np.random.default_rng(0).standard_normal((2, 5, 6, 2)) - 5.0  # all < 0
    padding = ((1, 0), (1, 1))
    expected = tf.nn.max_pool2d(x, 2, 2, _tf_padding(padding)).numpy()
    np.testing.assert_allclose(ops.max_pool2d(x, 2, 2, padding), expected, RTOL)


# --- properties ----------------------------------------------------------------

paddings = st.one_of(
    st.sampled_from(["valid", "same"]),
    st.integers(0, 2),
    st.tuples(
        st.tuples(st.integers(0, 2), st.integers(0, 2)),
        st.tuples(st.integers(0, 2), st.integers(0, 2)),
    ),
)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9),
    c_in=st.integers(1, 3), c_out=st.integers(1, 3),
    kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    padding=paddings, seed=st.integers(0, 2**16),
)  # fmt: skip
def test_conv_property(n, h, w, c_in, c_out, kernel, stride, dilation, padding, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, c_in))
    k = rng.standard_normal((*kernel, c_in, c_out))
    geometry = dict(stride=stride, padding=padding, dilation=dilation)
    try:
        oh = ops.output_size(h, kernel[0], stride[0], _axis(padding, 0), dilation[0])
        ow = ops.output_size(w, kernel[1], stride[1], _axis(padding, 1), dilation[1])
    except ValueError:  # the dilated kernel does not fit: conv2d must say so too
        with pytest.raises(ValueError, match="larger than the padded input"):
            ops.conv2d(x, k, **geometry)
        return
    im2col = ops.conv2d(x, k, **geometry)
    assert im2col.shape == (n, oh, ow, c_out)
    assert ops.output_shape(x.shape, kernel, **geometry) == (n, oh, ow, c_in)
    np.testing.assert_allclose(ops.conv2d(x, k, **geometry, method="naive"), im2col)
    expected = _tf_conv(x, k, 0.0, **geometry).numpy()
    np.testing.assert_allclose(im2col, expected, rtol=RTOL, atol=ATOL)
    dout = rng.standard_normal(im2col.shape)
    grads = ops.conv2d_backward(dout, x, k, **geometry)
    naive = ops.conv2d_backward(dout, x, k, **geometry, method="naive")
    for g, e in zip(grads, naive):
        np.testing.assert_allclose(g, e, rtol=RTOL, atol=ATOL)


def _axis(padding, axis):
    return padding if isinstance(padding, (str, int)) else padding[axis]


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 2), h=st.integers(1, 9), w=st.integers(1, 9),
    c=st.integers(1, 3), pool=st.integers(1, 3), stride=st.integers(1, 3),
    padding=st.sampled_from(["valid", "same"]), kind=st.sampled_from(["max", "avg"]),
    seed=st.integers(0, 2**16),
)  # fmt: skip
def test_pool_property(n, h, w, c, pool, stride, padding, kind, seed):
    x = np.random.default_rng(seed).standard_normal((n, h, w, c))
    if padding == "valid" and pool > min(h, w):
        with pytest.raises(ValueError, match="larger than the padded input"):
            ops.max_pool2d(x, pool, stride, padding)
        return
    forward = ops.max_pool2d if kind == "max" else ops.avg_pool2d
    got = forward(x, pool, stride, padding)
    oh, ow = (ops.output_size(size, pool, stride, padding) for size in (h, w))
    assert got.shape == (n, oh, ow, c)
    expected = _tf_pool(kind, x, pool, stride, padding).numpy()
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


# --- finite differences --------------------------------------------------------


@pytest.mark.parametrize(
    ("stride", "padding", "dilation"),
    [(1, "valid", 1), (2, "same", 1), (1, 1, 2), (2, ((1, 0), (0, 2)), 2)],
)
def test_conv2d_backward_finite_differences(stride, padding, dilation):
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 6, 5, 2)), rng.standard_normal((3, 2, 2, 3))
    b = rng.standard_normal(3)
    kw = dict(stride=stride, padding=padding, dilation=dilation)
    dout = rng.standard_normal(ops.conv2d(x, w, b, **kw).shape)

    def loss():
        return np.sum(ops.conv2d(x, w, b, **kw) * dout)

    dx, dw, db = ops.conv2d_backward(dout, x, w, **kw)
    np.testing.assert_allclose(dx, _numerical_grad(loss, x), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dw, _numerical_grad(loss, w), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(db, _numerical_grad(loss, b), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize(("pool", "stride", "padding"), [(2, None, "same"), (3, 2, 1)])
def test_pool_backward_finite_differences(kind, pool, stride, padding):
    rng = np.random.default_rng(0)
    x = rng.permutation(2 * 5 * 5 * 2).reshape(2, 5, 5, 2) / 10.0  # no ties
    args = (pool, stride, padding)
    forward = ops.max_pool2d if kind == "max" else ops.avg_pool2d
    dout = rng.standard_normal(forward(x, *args).shape)

    def loss():
        return np.sum(forward(x, *args) * dout)

    if kind == "max":
        dx = ops.max_pool2d_backward(dout, x, *args)
    else:
        dx = ops.avg_pool2d_backward(dout, x.shape, *args)
    np.testing.assert_allclose(dx, _numerical_grad(loss, x), rtol=1e-6, atol=1e-7)


# --- activations, dense --------------------------------------------------------


def test_relu_softmax_dense_flatten():
    x = np.array([[-1.0, 0.0, 2.0]])
    np.testing.assert_array_equal(ops.relu(x), [[0.0, 0.0, 2.0]])
    np.testing.assert_array_equal(ops.relu_backward(np.ones((1, 3)), x), [[0, 0, 1]])
    p = ops.softmax(np.array([[1000.0, 1000.0, -1000.0], [0.0, np.log(3.0), 0.0]]))
    np.testing.assert_allclose(p, [[0.5, 0.5, 0.0], [0.2, 0.6, 0.2]])
    np.testing.assert_allclose(ops.softmax(x, axis=0), np.ones((1, 3)))
    w, b = np.arange(6.0).reshape(3, 2), np.array([1.0, -1.0])
    np.testing.assert_array_equal(ops.dense(x, w, b), x @ w + b)
    assert ops.flatten(np.zeros((4, 3, 2, 5))).shape == (4, 30)
    y = np.arange(24).reshape(2, 3, 2, 2)
    np.testing.assert_array_equal(ops.flatten(y), keras.layers.Flatten()(y))


# --- Keras models ----------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_seed(mnist):
    (x_train, y_train), (x_test, _) = mnist
    x = data.preprocess_images(x_train[:6000])
    result = train.fit(
        models.get_model("seed", seed=0), x, y_train[:6000], epochs=1,
        batch_size=64, validation_split=0.0, seed=0, device="cpu", verbose=0,
    )  # fmt: skip
    return result.model, data.preprocess_images(x_test[:500])


@pytest.mark.parametrize("method", METHODS)
def test_forward_matches_trained_seed_cnn(trained_seed, method):
    model, x = trained_seed
    expected = model.predict(x, batch_size=500, verbose=0)
    got = ops.forward(model, x, method=method)
    assert np.abs(got - expected).max() <= 1e-5
    assert np.mean(expected.argmax(1) == got.argmax(1)) == 1.0
    assert expected.max(axis=1).mean() > 0.8  # it did learn something


@pytest.mark.parametrize("name", ["lenet5", "strong"])
def test_forward_matches_keras(name):
    model = models.get_model(name, seed=0)
    rng = np.random.default_rng(0)
    for layer in model.layers:  # non-trivial statistics, so a wrong BN would show
        if isinstance(layer, keras.layers.BatchNormalization):
            size = layer.moving_mean.shape
            layer.moving_mean.assign(rng.normal(0, 0.5, size))
            layer.moving_variance.assign(rng.uniform(0.2, 3.0, size))
            layer.gamma.assign(rng.uniform(0.5, 2.0, size))
            layer.beta.assign(rng.normal(0, 0.5, size))
    x = rng.random((16, 28, 28, 1), dtype=np.float32)
    expected = model.predict(x, verbose=0)
    got = ops.forward(model, x)
    assert np.abs(got - expected).max() <= 1e-5
    assert np.ptp(expected, axis=0).max() > 1e-3  # outputs depend on the input


def test_forward_rejects_unknown_layers():
    model = keras.Sequential(
        [keras.Input((4, 4, 1)), keras.layers.LayerNormalization()]
    )
    with pytest.raises(ValueError, match="LayerNormalization"):
        ops.forward(model, np.zeros((1, 4, 4, 1)))
    with pytest.raises(ValueError, match="LayerNormalization"):
        ops.layer_costs(model)


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_layer_costs_params_match_keras(name):
    model = models.get_model(name)
    costs = ops.layer_costs(model)
    assert [c["params"] for c in costs] == [lay.count_params() for lay in model.layers]
    assert sum(c["params"] for c in costs) == model.count_params()
    assert all(c["flops"] >= 0 for c in costs)
    assert costs[-1]["output_shape"] == (10,)


def test_layer_costs_of_seed_cnn_by_hand():
    costs = ops.layer_costs(models.seed_cnn())
    assert [c["type"] for c in costs] == ["Conv2D", "MaxPooling2D", "Flatten", "Dense"]
    assert [c["output_shape"] for c in costs] == [
        (26, 26, 32), (13, 13, 32), (5408,), (10,),
    ]  # fmt: skip
    flops = [26 * 26 * 32 * (3 * 3 * 1) * 2, 13 * 13 * 32 * 4, 0, 5408 * 10 * 2]
    assert [c["flops"] for c in costs] == flops
    assert ops.model_flops(models.seed_cnn()) == sum(flops)
    assert [c["params"] for c in costs] == [320, 0, 0, 54_090]
    assert [c["receptive_field"] for c in costs] == [3, 4, 28, 28]


def test_training_flops_of_seed_cnn_by_hand():
    """Forward, then the backward pass: the conv layer is first, so it computes
    only its weight gradient; pooling routes its gradient; the dense layer
    computes both its weight and its input gradient."""
    conv, pool, dense = 26 * 26 * 32 * 9 * 2, 13 * 13 * 32 * 4, 5408 * 10 * 2
    model = models.seed_cnn()
    assert ops.backward_flops(model) == [conv, pool, 0, 2 * dense]
    forward = conv + pool + dense
    assert ops.training_flops(model) == forward + conv + pool + 2 * dense
    assert 2 < ops.training_flops(model) / ops.model_flops(model) < 3


def test_training_flops_skip_input_gradients_before_the_first_weights():
    model = keras.Sequential(
        [
            keras.Input((8, 8, 2)),
            keras.layers.MaxPooling2D(2),  # nothing below learns: 0
            keras.layers.Conv2D(3, 3, activation="relu"),  # weight gradient only
            keras.layers.Flatten(),
            keras.layers.Dense(5),  # weight and input gradient
        ]
    )
    pool, conv, _, dense = (c["flops"] for c in ops.layer_costs(model))
    assert (pool, conv, dense) == (4 * 4 * 2 * 4, 2 * 2 * 2 * 3 * 9 * 2, 12 * 5 * 2)
    assert ops.backward_flops(model) == [0, conv, 0, 2 * dense]
    assert ops.training_flops(model) == pool + 2 * conv + 3 * dense


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_training_flops_between_two_and_three_forward_passes(name):
    model = models.get_model(name)
    ratio = ops.training_flops(model) / ops.model_flops(model)
    assert 2 <= ratio <= 3
    assert len(ops.backward_flops(model)) == len(model.layers)


def test_receptive_field_with_stride_and_dilation():
    model = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Conv2D(4, 3, strides=2, padding="same"),  # r 3, jump 2
            keras.layers.Conv2D(4, 3, dilation_rate=2),  # k_eff 5: r 3 + 4*2 = 11
            keras.layers.MaxPooling2D(2),  # r 11 + 1*2 = 13, jump 4
            keras.layers.Conv2D(4, (1, 3)),  # r (13, 13 + 2*4 = 21)
        ]
    )
    fields = [c["receptive_field"] for c in ops.layer_costs(model)]
    assert fields == [3, 11, 13, (13, 21)]


# --- validation ----------------------------------------------------------------


def test_bad_arguments_raise_value_errors():
    x, w = np.zeros((2, 5, 5, 3)), np.zeros((3, 3, 1, 4))
    with pytest.raises(ValueError, match="x has 3 channels, w expects 1"):
        ops.conv2d(x, w)
    with pytest.raises(ValueError, match="x has 3 channels, w expects 1"):
        ops.conv2d_backward(np.zeros((2, 3, 3, 4)), x, w)
    w = np.zeros((3, 3, 3, 4))
    with pytest.raises(ValueError, match=r"x must be 4-D .*\(5, 5, 3\)"):
        ops.conv2d(x[0], w)
    with pytest.raises(ValueError, match="stride must be an int >= 1"):
        ops.conv2d(x, w, stride=0)
    with pytest.raises(ValueError, match="dilation must be an int >= 1"):
        ops.conv2d(x, w, dilation=(1, 0))
    with pytest.raises(ValueError, match=r"dilated size 7\) is larger than the padded"):
        ops.conv2d(x, w, dilation=3)
    with pytest.raises(ValueError, match=r"larger than the padded input \(5\)"):
        ops.conv2d(x, np.zeros((6, 1, 3, 4)))
    with pytest.raises(ValueError, match="unknown padding 'full'"):
        ops.conv2d(x, w, padding="full")
    with pytest.raises(ValueError, match="padding must be non-negative"):
        ops.conv2d(x, w, padding=-1)
    with pytest.raises(ValueError, match="unknown method 'fft'"):
        ops.conv2d(x, w, method="fft")
    with pytest.raises(ValueError, match=r"b must have shape \(4,\)"):
        ops.conv2d(x, w, np.zeros(3))
    with pytest.raises(ValueError, match=r"dout has shape \(2, 2, 2, 4\)"):
        ops.conv2d_backward(np.zeros((2, 2, 2, 4)), x, w)
    with pytest.raises(ValueError, match="pool_size must be an int >= 1"):
        ops.max_pool2d(x, 0)
    with pytest.raises(ValueError, match="larger than the padded input"):
        ops.avg_pool2d(x, 6)
    with pytest.raises(ValueError, match="a window would hold only padding"):
        ops.avg_pool2d(x, 2, padding=2)
    with pytest.raises(ValueError, match=r"dout has shape \(2, 3, 3, 3\)"):
        ops.max_pool2d_backward(np.zeros((2, 3, 3, 3)), x)
    with pytest.raises(ValueError, match="x has 4 features"):
        ops.dense(np.zeros((2, 4)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"input_shape must be \(H, W\)"):
        ops.output_shape((5, 5, 3), 3)
