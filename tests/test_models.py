from __future__ import annotations

import keras
import numpy as np
import pytest

from cnnlearn import models


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("seed", 54_410),
        ("lenet5", 61_706),
        ("strong", 459_434),
        ("wide_bn", 389_674),
        ("speedrun", 422_314),
    ],
)
def test_parameter_counts(name, params):
    assert models.get_model(name).count_params() == params


def test_keras_io_convnet_is_the_examples_model():
    model = models.keras_io_convnet()
    assert model.count_params() == 34_826  # as keras-io's mnist_convnet says
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == [
        "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Flatten", "Dropout",
        "Dense",
    ]  # fmt: skip
    assert [model.layers[i].filters for i in (0, 2)] == [32, 64]
    assert model.layers[5].rate == 0.5


def test_speedrun_cnn_without_batch_norm_is_its_ablation():
    plain = models.speedrun_cnn(batch_norm=False)
    kinds = {type(layer).__name__ for layer in plain.layers}
    assert "BatchNormalization" not in kinds
    norms = [
        layer
        for layer in models.speedrun_cnn().layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert len(norms) == 3 and all(n.momentum == 0.9 for n in norms)


def test_new_recipes_are_registered_with_their_schedules():
    wide, fast = models.get_spec("wide_bn"), models.get_spec("speedrun")
    assert (wide.lr_schedule, wide.label_smoothing) == ("cosine", 0.1)
    assert (fast.lr_schedule, fast.label_smoothing) == ("one_cycle", 0.1)
    assert models.get_spec("strong").epochs == 15  # today's recipe, unchanged


def test_wide_bn_cnn_augments_only_while_training():
    model = models.wide_bn_cnn()
    x = np.random.default_rng(0).random((2, 28, 28, 1), dtype=np.float32)
    np.testing.assert_array_equal(model(x, training=False), model(x, training=False))
    assert not np.allclose(model(x, training=True), model(x, training=True))


def test_seed_cnn_is_the_articles_model():
    layers = models.seed_cnn().layers
    kinds = [type(layer).__name__ for layer in layers]
    assert kinds == ["Conv2D", "MaxPooling2D", "Flatten", "Dense"]
    conv, dense = layers[0], layers[-1]
    assert conv.filters == 32 and conv.kernel_size == (3, 3)
    assert conv.activation.__name__ == "relu" and conv.padding == "valid"
    assert dense.units == 10 and dense.activation.__name__ == "softmax"


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_outputs_are_probabilities(name):
    x = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
    p = np.asarray(models.get_model(name)(x))
    assert p.shape == (4, 10)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)


def test_builders_take_shape_and_classes():
    model = models.get_model("seed", input_shape=(32, 32, 3), num_classes=5)
    assert model.output_shape == (None, 5)


def test_strong_cnn_augments_only_while_training():
    model = models.strong_cnn()
    x = np.random.default_rng(0).random((2, 28, 28, 1), dtype=np.float32)
    np.testing.assert_array_equal(model(x, training=False), model(x, training=False))
    assert not np.allclose(model(x, training=True), model(x, training=True))


def test_unknown_model_name():
    with pytest.raises(ValueError, match="unknown model 'vgg'.*lenet5"):
        models.get_model("vgg")


def test_prepend_shares_weights_and_keeps_the_layer():
    base = models.get_model("seed", seed=0)
    layer = keras.layers.Rescaling(2.0, name="double")
    model = models.prepend(layer, base)
    assert model.layers[0].name == "double" and model.layers[1] is base.layers[0]
    x = np.random.default_rng(0).random((2, 28, 28, 1), dtype=np.float32)
    np.testing.assert_allclose(model(x), base(2 * x), rtol=1e-6)


def test_face_cnn_shapes_and_embedding():
    model = models.face_cnn()
    assert model.input_shape == (None, 112, 92, 1) and model.output_shape == (None, 40)
    assert model.get_layer("embedding").output.shape == (None, 64)
    x = np.random.default_rng(0).random((2, 112, 92, 1), dtype=np.float32)
    np.testing.assert_array_equal(model(x, training=False), model(x, training=False))


def test_kim_text_cnn_has_one_branch_per_width():
    model = models.kim_text_cnn(vocab_size=50, sequence_length=12, widths=(2, 3))
    assert [layer.name for layer in model.layers if layer.name.startswith("conv_")] == [
        "conv_2",
        "conv_3",
    ]
    ids = np.random.default_rng(0).integers(0, 50, (3, 12))
    p = np.asarray(model(ids))
    assert p.shape == (3, 2)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)


def test_caser_scores_every_item():
    model = models.caser(n_users=7, n_items=20, window=4, dim=8)
    heights = [
        layer.kernel_size[0]
        for layer in model.layers
        if layer.name.startswith("horizontal_")
    ]
    assert heights == [1, 2, 3, 4]
    assert model.get_layer("vertical").kernel.shape == (4, 1, 1, 4)
    inputs = {
        "users": np.array([0, 6]),
        "items": np.array([[0, 0, 3, 5], [1, 2, 3, 4]]),
    }
    p = np.asarray(model(inputs))
    assert p.shape == (2, 21)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
