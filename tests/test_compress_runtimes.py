"""cnnlearn.compress.runtimes: every runtime's model, the timed calls, the rounds.

Fast tier: a tiny CNN (with an augmentation layer, like the strong CNN), real
MNIST images for calibration, and the timing helpers on fake calls. Nothing
here asserts a timing; the benchmark (``benchmarks/runtimes.py``) measures.
"""

from __future__ import annotations

import importlib.util
from collections import Counter

import cnnlearn._tf  # noqa: F401

# isort: split
import keras
import numpy as np
import pytest
from conftest import REPO, require

from cnnlearn import data
from cnnlearn.compress import runtimes


def tiny_cnn() -> keras.Sequential:
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.RandomRotation(0.05, fill_mode="constant"),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.MaxPooling2D(4),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )


@pytest.fixture(scope="module")
def images(mnist) -> tuple[np.ndarray, np.ndarray]:
    (x_train, _), (x_test, _) = mnist
    return data.preprocess_images(x_train[:64]), data.preprocess_images(x_test[:40])


@pytest.fixture(scope="module")
def built(images):
    for module in ("onnxruntime", "tf2onnx", "onnx"):
        require(importlib.util.find_spec(module) is not None, f"{module} missing")
    model = tiny_cnn()
    return model, runtimes.build_artifacts(model, images[0])


def test_every_runtime_runs_and_agrees_with_keras(built, images):
    model, artifacts = built
    x = images[1]
    assert list(artifacts) == list(runtimes.RUNTIMES)
    expected = np.asarray(model.predict(x, verbose=0))
    for runtime, content in artifacts.items():
        got = runtimes.predict(runtime, content, x, batch_size=16)
        assert got.shape == (len(x), 10) and got.dtype == np.float32, runtime
        tolerance = 1e-4 if runtime.endswith("float32") else 0.05
        assert np.abs(got - expected).max() < tolerance, runtime
        labels = expected.argmax(axis=-1)
        assert runtimes.accuracy(runtime, content, x, labels) >= 0.9, runtime


def test_onnx_int8_is_qdq_per_channel(built):
    import onnx

    graph = onnx.load_from_string(built[1]["onnx-int8"]).graph
    ops = Counter(node.op_type for node in graph.node)
    assert ops["QuantizeLinear"] and ops["DequantizeLinear"]
    weights = {init.name: init for init in graph.initializer}
    conv = next(node for node in graph.node if node.op_type == "Conv")
    dequantize = next(n for n in graph.node if n.output[0] == conv.input[1])
    scale = onnx.numpy_helper.to_array(weights[dequantize.input[1]])
    assert scale.shape == (8,)  # one scale per output channel of the kernel
    assert onnx.numpy_helper.to_array(weights[dequantize.input[0]]).dtype == np.int8


@pytest.mark.parametrize("runtime", ["litert-int8", "litert-float32", "onnx-int8"])
@pytest.mark.parametrize("batch", [1, 3])
def test_timed_calls_run_one_batch(built, images, runtime, batch):
    content = built[1][runtime]
    x = images[1][:batch]
    for threads in (1, 2):
        out = runtimes.make_call(runtime, content, x, threads)()
        assert out.shape == (batch, 10)
    if runtime == "litert-int8":
        assert out.dtype == np.int8  # the raw tensor: dequantizing is not timed
        float_io = runtimes.make_call(runtime, content, x, 1, float_io=True)()
        reference = runtimes.predict(runtime, content, x)
        np.testing.assert_allclose(float_io, reference, atol=1e-6)


def test_unknown_runtime_and_bad_labels_are_refused(built, images):
    content = built[1]["litert-float32"]
    with pytest.raises(ValueError, match="unknown runtime 'tvm'"):
        runtimes.make_call("tvm", content, images[1], 1)
    with pytest.raises(ValueError, match="unknown runtimes"):
        runtimes.build_artifacts(built[0], images[0], ("tvm",))
    with pytest.raises(ValueError, match="one length"):
        runtimes.accuracy("litert-float32", content, images[1], np.zeros(3))


def test_calibration_reader_feeds_batches_then_stops():
    reader = runtimes.CalibrationReader(np.zeros((70, 28, 28, 1)), "image", 32)
    sizes = []
    while (batch := reader.get_next()) is not None:
        assert set(batch) == {"image"} and batch["image"].dtype == np.float32
        sizes.append(len(batch["image"]))
    assert sizes == [32, 32, 6]
    with pytest.raises(ValueError, match="at least one image"):
        runtimes.CalibrationReader(np.zeros((0, 28, 28, 1)), "image")


def test_time_rounds_interleaves_every_call_once_per_round():
    order = []
    calls = {key: (lambda key=key: order.append(key)) for key in "abcde"}
    times = runtimes.time_rounds(
        calls, dict.fromkeys("abcde", 4), rounds=6, target_seconds=1e-9
    )
    assert set(times) == set("abcde")
    assert all(len(t) == 6 and min(t) > 0 for t in times.values())
    warm_up = 3 * 5  # two warm-up calls and one to size the repeats, per call
    assert order[:warm_up] == [k for k in "abcde" for _ in range(3)]
    timed = order[warm_up:]
    rounds = [timed[i : i + 5] for i in range(0, len(timed), 5)]  # one repeat each
    assert len(rounds) == 6 and all(sorted(r) == list("abcde") for r in rounds)
    assert len({tuple(r) for r in rounds}) > 1  # the order changes between rounds
    with pytest.raises(ValueError, match="rounds >= 1"):
        runtimes.time_rounds(calls, dict.fromkeys("abcde", 1), rounds=0)
    with pytest.raises(ValueError, match="no image count"):
        runtimes.time_rounds(calls, {"a": 1})


def test_summaries_and_ratios_are_medians_over_rounds():
    summary = runtimes.summarize([1e-3, 2e-3, 4e-3])
    assert summary["images_per_s"] == pytest.approx(500)
    assert summary["us_per_image"] == pytest.approx(2000)
    assert summary["spread"] == pytest.approx((3e-3 - 1.5e-3) / 2e-3)
    assert summary["rounds"] == 3
    ratio = runtimes.ratios([1.0, 1.0, 2.0], [2.0, 3.0, 10.0])
    assert ratio == {"median": 3.0, "min": 2.0, "max": 5.0}
    with pytest.raises(ValueError, match="positive timings"):
        runtimes.summarize([])
    with pytest.raises(ValueError, match="same rounds"):
        runtimes.ratios([1.0], [1.0, 2.0])


def test_benchmark_goals_are_met_only_by_speed_and_accuracy_together(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))  # as the script runs
    path = REPO / "benchmarks" / "runtimes.py"
    spec = importlib.util.spec_from_file_location("bench_runtimes", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = [
        {"model": m, "runtime": r, "accuracy": a}
        for m, r, a in [
            ("strong", "litert-float32", 0.9940),
            ("strong", "litert-int8", 0.9930),
            ("seed", "litert-float32", 0.98),
            ("seed", "litert-int8", 0.95),
        ]
    ]

    def speed(model, batch, ratio):
        return {
            "model": model,
            "family": "litert",
            "batch": batch,
            "threads": 1,
            "int8_over_float32": {"median": ratio},
        }

    speeds = [speed("strong", 256, 3.1), speed("strong", 1, 1.9), speed("seed", 1, 0.8)]
    found = bench.verdicts(rows, speeds)
    assert [v["met"] for v in found] == [True, False, None]
    assert [v["verdict"] for v in found] == ["faster", "faster", "slower"]
    rows[1]["accuracy"] = 0.9910  # 0.3 points below float32
    assert bench.verdicts(rows, speeds)[0]["met"] is False
