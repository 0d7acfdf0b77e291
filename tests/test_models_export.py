"""Every model of cnnlearn.models exports clean: no random or training-only op in
its SavedModel, TFLite or ONNX graph, and each format computes what Keras does
(cnnlearn.deploy.export.inference_model, check_inference_graph; chapter 8)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from cnnlearn import data, models
from cnnlearn.deploy import export, parity

FORMATS = ("saved_model", "tflite", "onnx")
# The registry's MNIST models; "strong" (augmentation, batch norm, dropout) is
# the fast case, the others run in the slow tier, with the application models.
SLOW_MNIST = sorted(set(models.MODELS) - {"strong"})
APPS = ("face_cnn", "kim_text_cnn", "caser")


@pytest.fixture(scope="module")
def digits(mnist):
    """64 real training and 64 real test images, floats in [0, 1]."""
    (x_train, y_train), (x_test, _) = mnist
    return (
        data.preprocess_images(x_train[:64]),
        y_train[:64].astype(np.int64),
        data.preprocess_images(x_test[:64]),
    )


def one_step(model, x, y):
    """``model`` after one Adam step on ``(x, y)``: batch norm has moved."""
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.train_on_batch(x, y)
    return model


def app_case(name: str, rng: np.random.Generator):
    """An untrained application model and inputs it takes (no accuracy claimed)."""
    if name == "face_cnn":
        return models.face_cnn(), rng.random((16, 112, 92, 1), dtype=np.float32)
    if name == "kim_text_cnn":
        return models.kim_text_cnn(200, 24), rng.integers(0, 200, (16, 24))
    users, items = rng.integers(0, 9, 16), rng.integers(0, 41, (16, 5))
    return models.caser(9, 40), {"users": users, "items": items}


def all_layers(model) -> list:
    """Every layer of ``model``, those of nested models too."""
    found = list(getattr(model, "layers", []))
    return found + [x for layer in found for x in all_layers(layer)]


def export_all(model, root) -> dict:
    """The three formats of ``model`` under ``root``, by format name."""
    return {
        "saved_model": export.export_saved_model(model, root / "saved_model"),
        "tflite": export.export_tflite(model, root / "model.tflite"),
        "onnx": export.export_onnx(model, root / "model.onnx"),
    }


def assert_clean_and_equal(model, inputs, paths) -> None:
    import onnxruntime

    for fmt, path in paths.items():
        ops = export.check_inference_graph(path)
        assert ops and not any("random" in op.lower() for op in ops), fmt
    onnxruntime.InferenceSession(str(paths["onnx"]))  # loads: every op is known
    rows = parity.parity_check(model, inputs, paths)
    assert set(rows) == set(FORMATS)
    for fmt, row in rows.items():
        assert row["max_abs_diff"] <= 1e-5, fmt
        assert row["argmax_agreement"] == 1.0, fmt


def test_every_registry_model_is_covered():
    assert set(SLOW_MNIST) | {"strong"} == set(models.MODELS)


def test_strong_cnn_exports_clean_in_every_format(digits, tmp_path):
    x_train, y_train, x_test = digits
    model = one_step(models.get_model("strong", seed=0), x_train, y_train)
    version = export.export_version(
        model, tmp_path, "strong", train_images=x_train, onnx=True
    )
    paths = {
        "saved_model": version,
        "tflite": version / export.TFLITE_FILE,
        "onnx": version / export.ONNX_FILE,
    }
    assert_clean_and_equal(model, x_test, paths)
    meta = export.read_metadata(version)
    assert meta["keras_model"] == "strong_cnn"
    assert meta["params"] == model.count_params()


def test_keras_own_onnx_export_of_the_strong_cnn_is_refused(tmp_path):
    import tensorflow as tf

    # What the issue saw: Keras traces model.__call__ without `training`, and
    # the augmentation layers' default (True) puts them into the graph.
    model = models.get_model("strong", seed=0)
    signature = [tf.TensorSpec([None, 28, 28, 1], tf.float32, name="image")]
    raw = tmp_path / "raw.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model.export(str(raw), format="onnx", verbose=False, input_signature=signature)
    with pytest.raises(
        ValueError, match=r"raw\.onnx: .* ops .*StatelessRandomUniformV2"
    ):
        export.check_inference_graph(raw)
    assert "StatelessRandomUniformV2" in export.graph_ops(raw)


def test_inference_model_drops_augmentation_and_keeps_the_weights(digits):
    x_train, y_train, x_test = digits
    model = one_step(models.get_model("strong", seed=0), x_train, y_train)
    inference = export.inference_model(model)
    kinds = [type(layer).__name__ for layer in inference.layers]
    assert not [k for k in kinds if k.startswith("Random")]
    assert "Dropout" in kinds and "BatchNormalization" in kinds
    assert {id(w) for w in inference.weights} == {id(w) for w in model.weights}
    np.testing.assert_allclose(
        inference.predict(x_test, verbose=0),
        model.predict(x_test, verbose=0),
        atol=1e-6,
    )
    # Called without `training`, the original runs its augmentation; this not.
    np.testing.assert_allclose(inference(x_test), model(x_test, training=False))
    assert np.abs(np.asarray(model(x_test)) - np.asarray(inference(x_test))).max() > 0


def test_inference_model_reaches_into_nested_and_functional_models(digits):
    import keras

    from cnnlearn.pipeline.arrays import augmentation

    _, _, x_test = digits
    seed = models.get_model("seed", seed=0)
    assert export.inference_model(seed) is seed  # nothing to remove
    nested = models.prepend(augmentation("flips", seed=1), seed)
    inputs = keras.Input((28, 28, 1))
    noisy = keras.layers.GaussianNoise(0.3)(keras.layers.RandomZoom(0.2)(inputs))
    functional = keras.Model(inputs, seed(augmentation("geometric")(noisy)))
    for model in (nested, functional):
        inference = export.inference_model(model)
        flat = [type(x).__name__ for x in all_layers(inference)]
        assert not [k for k in flat if k.startswith(("Random", "Gaussian"))]
        np.testing.assert_allclose(
            inference(x_test), seed(x_test, training=False), atol=1e-6
        )


def test_a_layer_that_trains_by_default_is_refused():
    import keras

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.RandomCrop(4, 4)])
    with pytest.raises(ValueError, match="'random_crop' .*training=True"):
        export.inference_model(model)


def test_graph_ops_refuses_what_it_cannot_read(tmp_path):
    with pytest.raises(ValueError, match="expected a SavedModel directory"):
        export.graph_ops(tmp_path / "model.pt")
    with pytest.raises(ValueError, match="TFLite flatbuffer"):
        export.graph_ops(b"not a flatbuffer")


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW_MNIST)
def test_registry_model_exports_clean(name, digits, tmp_path):
    x_train, y_train, x_test = digits
    model = one_step(models.get_model(name, seed=0), x_train, y_train)
    assert_clean_and_equal(model, x_test, export_all(model, tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("name", APPS)
def test_application_model_exports_clean(name, tmp_path):
    model, inputs = app_case(name, np.random.default_rng(0))
    assert_clean_and_equal(model, inputs, export_all(model, tmp_path))
