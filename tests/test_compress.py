"""Tests for cnnlearn.compress (chapter 6): prune, quantize, fuse, distill, peer, CLI.

One seed CNN is trained once per module on real MNIST and shared; the
quantized models are evaluated with LiteRT on the full 10,000 test images.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import fail_the_commit

import cnnlearn._tf  # noqa: F401

# isort: split
import keras

from cnnlearn import cli, data, models, train
from cnnlearn.compress import (
    affine,
    apply,
    count_nonzero,
    distill,
    fuse,
    gzip_size,
    prune,
    quantize,
    schedules,
)
from cnnlearn.compress.apply import compress_saved
from cnnlearn.config import RunConfig


@pytest.fixture(scope="module")
def arrays(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    return (
        data.preprocess_images(x_train),
        y_train,
        data.preprocess_images(x_test),
        y_test,
    )


@pytest.fixture(scope="module")
def trained(arrays):
    """The seed CNN after 3 epochs at batch 128 on all of MNIST (about 98 %)."""
    x_train, y_train, x_test, y_test = arrays
    model = models.get_model("seed", seed=0)
    train.fit(model, x_train, y_train, epochs=3, batch_size=128, verbose=0)
    return model


def copy_of(model):
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


# ---------------------------------------------------------------- quantize


def test_convert_rejects_unknown_mode_and_missing_calibration():
    model = models.get_model("seed", seed=0)
    with pytest.raises(ValueError, match="expected one of .*float32.*int8"):
        quantize.convert(model, "int4")
    with pytest.raises(ValueError, match="needs representative_data"):
        quantize.convert(model, "int8")
    with pytest.raises(ValueError, match="float32 preprocessed images"):
        quantize.convert(model, "int8", np.zeros((4, 28, 28, 1), np.uint8))


def test_package_and_numpy_modules_never_import_tensorflow():
    # the LiteRT server imports compress.affine and compress.common
    code = (
        "import sys\n"
        "import cnnlearn.compress, cnnlearn.compress.affine, cnnlearn.compress.common\n"
        "print(any(m in sys.modules for m in ('tensorflow', 'keras')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_affine_quantization_round_trip():
    rng = np.random.default_rng(0)
    x = rng.uniform(-0.7, 2.3, 1000).astype(np.float32)
    scale, zero_point = affine.affine_params(x.min(), x.max())
    q = affine.quantize_array(x, scale, zero_point)
    assert q.dtype == np.int8 and q.min() >= -128 and q.max() <= 127
    error = np.abs(affine.dequantize(q, scale, zero_point) - x).max()
    assert error <= scale / 2 + 1e-7
    # zero is exact: padding, ReLU zeros and pruned weights stay zero
    zero = affine.quantize_array(np.zeros(1), scale, zero_point)
    assert affine.dequantize(zero, scale, zero_point)[0] == 0.0
    assert affine.affine_params(0.0, 1.0, np.uint8) == (1 / 255, 0)


def test_quantized_models_keep_accuracy_on_real_mnist(trained, arrays):
    x_train, _, x_test, y_test = arrays
    keras_accuracy = train.evaluate(trained, x_test, y_test).accuracy
    results = {}
    for mode in quantize.MODES:
        content = quantize.convert(trained, mode, x_train[:300])
        results[mode] = quantize.evaluate_tflite(content, x_test, y_test)
    float32, int8 = results["float32"], results["int8"]
    assert float32["n"] == 10_000 and keras_accuracy > 0.975
    assert float32["accuracy"] == pytest.approx(keras_accuracy, abs=2e-4)
    for mode in ("dynamic", "float16", "int8"):
        assert results[mode]["accuracy"] >= float32["accuracy"] - 0.002, mode
    assert int8["input_dtype"] == "int8" and float32["input_dtype"] == "float32"
    assert float32["raw_bytes"] / int8["raw_bytes"] >= 3.7
    assert float32["raw_bytes"] / results["float16"]["raw_bytes"] > 1.9
    assert int8["latency_ms"] > 0 and int8["throughput_per_s"] > 0


def test_evaluate_tflite_reads_files_and_checks_shapes(trained, arrays, tmp_path):
    x_train, _, x_test, y_test = arrays
    path = tmp_path / "m.tflite"
    path.write_bytes(quantize.convert(trained, "int8", x_train[:100]))
    result = quantize.evaluate_tflite(path, x_test[:500], y_test[:500], batch_size=64)
    assert result["n"] == 500 and result["accuracy"] > 0.95
    with pytest.raises(ValueError, match=r"expects images shaped \(28, 28, 1\)"):
        quantize.evaluate_tflite(path, np.zeros((2, 32, 32, 1), np.float32), [0, 1])
    with pytest.raises(FileNotFoundError, match="model file not found"):
        quantize.evaluate_tflite(tmp_path / "none.tflite", x_test[:2], y_test[:2])
    conv = [t for t in quantize.tensor_details(path) if t["shape"] == [32, 3, 3, 1]]
    assert conv and conv[0]["dtype"] == "int8" and len(conv[0]["scales"]) == 32


# ------------------------------------------------------------------- prune


def test_schedules_follow_tfmot_semantics():
    s = schedules.PolynomialDecay(
        initial_sparsity=0.5,
        final_sparsity=0.8,
        begin_step=0,
        end_step=100,
        frequency=10,
    )
    assert s.sparsity(0) == pytest.approx(0.5) and s.sparsity(100) == 0.8
    assert s.sparsity(50) == pytest.approx(0.8 - 0.3 * 0.5**3)
    assert s.sparsity(500) == 0.8
    assert [t for t in range(0, 40) if s.should_prune(t)] == [0, 10, 20, 30]
    assert not s.should_prune(110)
    s.check(101)  # prunes at step 100, the end: reaches 80 %
    c = schedules.ConstantSparsity(target_sparsity=0.6, begin_step=5, frequency=100)
    assert c.sparsity(5) == 0.6 and c.should_prune(105) and not c.should_prune(104)


def test_schedule_that_cannot_reach_its_target_fails_loudly():
    # tfmot's default frequency=100 on a 90-step run: tfmot silently stays at 50 %
    s = schedules.PolynomialDecay(initial_sparsity=0.5, final_sparsity=0.8, end_step=89)
    with pytest.raises(ValueError, match="reaches only 50.00% sparsity.*target 80.00%"):
        s.check(90)
    late = schedules.ConstantSparsity(target_sparsity=0.5, begin_step=1000)
    with pytest.raises(ValueError, match="never prunes"):
        late.check(90)
    with pytest.raises(ValueError, match=r"sparsity must be in \[0, 1\)"):
        schedules.ConstantSparsity(target_sparsity=1.0)


def test_masks_count_exactly():
    w = np.random.default_rng(1).normal(size=(6, 8, 3)).astype(np.float32)
    mask = prune.magnitude_mask(w, 0.75)
    assert mask.sum() == 36 and np.abs(w[mask == 1]).min() >= np.abs(w[mask == 0]).max()
    m24 = prune.m_by_n_mask(w, 2, 4)
    assert prune.is_m_by_n_sparse(w * m24) and m24.sum() == w.size / 2
    with pytest.raises(ValueError, match="multiple of 4"):
        prune.m_by_n_mask(np.ones((3, 3, 1, 8)))


def test_pruning_reaches_sparsity_and_survives_save_load_strip(
    trained, arrays, tmp_path
):
    x_train, y_train, x_test, y_test = arrays
    model = copy_of(trained)
    stripped, pruning = prune.prune_model(
        model, x_train[:12_000], y_train[:12_000], 0.8, epochs=1
    )
    for row in prune.sparsity_report(stripped):
        assert row["sparsity"] == pytest.approx(0.8, abs=1 / row["weights"]), row
    assert not stripped.compiled and type(stripped) is type(trained)
    np.testing.assert_array_equal(
        stripped.predict(x_test[:64], verbose=0), model.predict(x_test[:64], verbose=0)
    )
    path = tmp_path / "pruned.keras"
    stripped.save(path)
    loaded = keras.models.load_model(path)
    assert prune.sparsity_report(loaded) == prune.sparsity_report(stripped)
    # the zeros compress: gzip of the float TFLite shrinks by well over 2x
    dense = gzip_size(quantize.convert(trained))
    assert dense / gzip_size(quantize.convert(stripped)) > 2.5
    # resuming training on the loaded model keeps its pruned weights at zero
    resume = prune.MagnitudePruning(
        schedules.ConstantSparsity(target_sparsity=0.8, begin_step=10_000)
    )
    with pytest.raises(ValueError, match="never prunes"):
        train.fit(
            loaded,
            x_train[:512],
            y_train[:512],
            epochs=1,
            callbacks=[resume],
            plan=prune.FIT_PLAN,
        )
    keep = prune.MagnitudePruning(schedules.ConstantSparsity(target_sparsity=0.8))
    train.fit(
        loaded,
        x_train[:512],
        y_train[:512],
        epochs=1,
        callbacks=[keep],
        plan=prune.FIT_PLAN,
        verbose=0,
    )
    assert prune.sparsity_report(loaded)[-1]["sparsity"] == pytest.approx(0.8, abs=1e-3)
    assert train.evaluate(stripped, x_test, y_test).accuracy > 0.94  # 85 steps


def test_two_four_structured_pruning_and_per_layer_targets(trained, arrays):
    x_train, y_train, _, _ = arrays
    pruned, pruning = prune.prune_model(
        copy_of(trained),
        x_train[:4096],
        y_train[:4096],
        0.5,
        epochs=1,
        m_by_n=(2, 4),
    )
    conv, dense = (layer for layer in pruned.layers if hasattr(layer, "kernel"))
    assert pruning.skipped == [conv.name]  # 1 input channel: not a multiple of 4
    assert prune.is_m_by_n_sparse(dense.kernel.numpy(), 2, 4)
    assert np.count_nonzero(conv.kernel.numpy()) == conv.kernel.numpy().size
    pruned, _ = prune.prune_model(
        copy_of(trained), x_train[:4096], y_train[:4096], {dense.name: 0.95}, epochs=1
    )
    rows = {r["layer"]: r["sparsity"] for r in prune.sparsity_report(pruned)}
    assert rows[conv.name] == 0.0 and rows[dense.name] == pytest.approx(0.95, abs=1e-4)
    with pytest.raises(ValueError, match="no prunable layer named"):
        prune.prune_model(copy_of(trained), x_train[:256], y_train[:256], {"x": 0.5})


# -------------------------------------------------------------------- fuse


def _strong_with_statistics():
    model = models.get_model("strong", seed=0)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.set_weights(
                [
                    rng.uniform(0.5, 2, n),
                    rng.normal(0, 0.5, n),
                    rng.normal(0, 0.3, n),
                    rng.uniform(0.2, 3, n),
                ]
            )
    return model


def test_batchnorm_folding_preserves_outputs(arrays):
    _, _, x_test, _ = arrays
    model = _strong_with_statistics()
    folded = fuse.fold_batchnorm(model)
    assert not any(
        isinstance(layer, (keras.layers.BatchNormalization, keras.layers.Dropout))
        for layer in folded.layers
    )
    assert len(folded.layers) < len(model.layers)
    assert count_nonzero(folded)["params"] < count_nonzero(model)["params"]
    x = x_test[:256]
    diff = np.abs(model.predict(x, verbose=0) - folded.predict(x, verbose=0))
    assert diff.max() <= 1e-5
    kept = fuse.fold_batchnorm(model, drop_identity=False)
    assert sum(isinstance(layer, keras.layers.Dropout) for layer in kept.layers) == 2


def test_recalibrated_statistics_are_exact(arrays):
    _, _, x_test, _ = arrays
    model = fuse.recalibrate_batchnorm(models.get_model("strong", seed=0), x_test[:600])
    first_bn = next(
        layer
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    )
    conv = model.layers[model.layers.index(first_bn) - 1]
    z = np.asarray(conv(x_test[:600]), np.float64).reshape(-1, conv.filters)
    np.testing.assert_allclose(first_bn.moving_mean.numpy(), z.mean(0), atol=1e-5)
    np.testing.assert_allclose(first_bn.moving_variance.numpy(), z.var(0), rtol=1e-3)
    # the next batch norm sees inputs normalized with the new statistics
    index = model.layers.index(first_bn)
    second = next(
        layer
        for layer in model.layers[index + 1 :]
        if isinstance(layer, keras.layers.BatchNormalization)
    )
    h = x_test[:600]
    for layer in model.layers[: model.layers.index(second)]:
        h = layer(h, training=False)
    h = np.asarray(h, np.float64).reshape(-1, h.shape[-1])
    np.testing.assert_allclose(second.moving_mean.numpy(), h.mean(0), atol=1e-4)


def test_folding_keeps_batchnorm_after_an_activation_and_rejects_functional():
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.BatchNormalization(),
        ]
    )
    folded = fuse.fold_batchnorm(model)
    assert isinstance(folded.layers[-1], keras.layers.BatchNormalization)
    inputs = keras.Input((4,))
    functional = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    with pytest.raises(ValueError, match="expects a keras.Sequential"):
        fuse.fold_batchnorm(functional)


def test_tflite_ops_show_the_converters_fusions(trained):
    assert fuse.keras_ops(trained)[:2] == ["Conv2D", "relu"]
    ops = fuse.tflite_ops(quantize.convert(trained))
    assert ops[0] == "CONV_2D+RELU" and "SOFTMAX" in ops
    strong = quantize.convert(_strong_with_statistics())
    counts = fuse.count_ops(strong)
    assert counts["CONV_2D+RELU"] == 3 and "BATCH_NORMALIZATION" not in str(counts)


# ----------------------------------------------------------------- distill


def test_distillation_loss_matches_a_hand_computed_example():
    teacher = np.array([[0.7, 0.2, 0.1]])
    student = np.array([[0.5, 0.3, 0.2]])
    t, alpha = 2.0, 0.25
    soft_t = teacher ** (1 / t) / (teacher ** (1 / t)).sum()
    soft_s = student ** (1 / t) / (student ** (1 / t)).sum()
    kl = (soft_t * np.log(soft_t / soft_s)).sum()
    expected = alpha * -np.log(0.5) + (1 - alpha) * t**2 * kl
    loss = distill.distillation_loss(np.array([0]), student, teacher, t, alpha)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    logits = np.log(student) + 3.0  # logits: shifting them changes nothing
    loss = distill.distillation_loss(
        [0], logits, np.log(teacher) - 1.0, t, alpha, from_logits=True
    )
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    same = distill.distillation_loss([1], teacher, teacher, t, 0.0)
    assert float(same) == pytest.approx(0.0, abs=1e-6)


def test_distiller_trains_the_student_and_freezes_the_teacher(trained, arrays):
    x_train, y_train, x_test, y_test = arrays
    teacher_weights = [w.copy() for w in trained.get_weights()]
    student = distill.student_cnn()
    assert student.count_params() * 10 <= models.get_model("strong").count_params()
    teacher = copy_of(trained)  # the Distiller freezes its teacher
    distiller = distill.Distiller(student, teacher, temperature=4.0, alpha=0.1)
    result = train.fit(
        distiller, x_train[:6000], y_train[:6000], epochs=2, batch_size=128, verbose=0
    )
    assert result.history["loss"][-1] < result.history["loss"][0]
    assert train.evaluate(distiller.student, x_test, y_test).accuracy > 0.85
    for before, after in zip(teacher_weights, teacher.get_weights()):
        np.testing.assert_array_equal(before, after)
    # offline: the teacher's outputs computed once give the same loss
    x, y = x_train[:64], y_train[:64]
    p = student.predict(x, verbose=0)
    offline = distill.Distiller(student, None, temperature=4.0, alpha=0.1)
    targets = distill.soft_targets(teacher, x, y)
    assert targets.shape == (64, 11) and (targets[:, 0] == y).all()
    assert float(offline.compute_loss(x, targets, p)) == pytest.approx(
        float(distiller.compute_loss(x, y, p)), rel=1e-5
    )
    with pytest.raises(ValueError, match="outputs differ"):
        distill.Distiller(student, models.get_model("seed", num_classes=5))
    with pytest.raises(ValueError, match="temperature > 0"):
        distill.Distiller(student, teacher, temperature=0)


# ------------------------------------------------------- cross-check, CLI


@pytest.mark.slow
def test_our_pruning_matches_tfmot_in_a_separate_process(trained, mnist, arrays):
    from cnnlearn.compress import tfmot_peer

    (x_raw, y_raw), (x_test_raw, y_test_raw) = mnist
    x_train, y_train, x_test, y_test = arrays
    n, epochs = 12_000, 1
    steps = -(-(n - n // 10) // 128) * epochs
    end = schedules.ramp_end_step(steps, 10)
    peer = tfmot_peer.run_peer(
        trained.get_weights(),
        (x_raw[:n], y_raw[:n]),
        (x_test_raw, y_test_raw),
        initial_sparsity=0.5,
        final_sparsity=0.8,
        frequency=10,
        end_step=end,
        epochs=epochs,
        timeout=300,
    )
    theirs = models.get_model("seed")
    theirs.set_weights(peer["weights"])
    ours = copy_of(trained)
    pruning = prune.MagnitudePruning(
        schedules.PolynomialDecay(
            initial_sparsity=0.5, final_sparsity=0.8, end_step=end, frequency=10
        )
    )
    train.fit(
        ours,
        x_train[:n],
        y_train[:n],
        epochs=epochs,
        batch_size=128,
        callbacks=[pruning],
        plan=prune.FIT_PLAN,
        verbose=0,
    )
    ours = prune.strip(ours, pruning)
    mine = [r["sparsity"] for r in prune.sparsity_report(ours)[:-1]]
    assert list(peer["layers"].values()) == pytest.approx(mine, rel=0.05)
    assert mine == pytest.approx([0.8, 0.8], abs=0.01)
    sizes = [gzip_size(quantize.convert(m)) for m in (theirs, ours)]
    assert sizes[0] == pytest.approx(sizes[1], rel=0.05)
    accuracy = [
        quantize.evaluate_tflite(quantize.convert(m), x_test, y_test)
        for m in (theirs, ours)
    ]
    assert accuracy[1]["accuracy"] >= accuracy[0]["accuracy"] - 0.005
    assert peer["versions"]["tfmot"] and peer["h5_gzip_before"] > peer["h5_gzip_after"]


@pytest.mark.slow
def test_cli_compress_round_trip(trained, data_dir, tmp_path, capsys):
    path = tmp_path / "model.keras"
    trained.save(path)
    out = tmp_path / "int8"
    assert (
        cli.main(
            [
                "compress",
                "--model",
                str(path),
                "--method",
                "int8",
                "--data-dir",
                str(data_dir),
                "--output",
                str(out),
            ]
        )
        == 0
    )
    summary = capsys.readouterr().out
    assert "report.json" in summary and "accuracy=" in summary
    report = json.loads((out / "report.json").read_text())
    assert (out / "model.tflite").stat().st_size == report["compressed"]["raw_bytes"]
    assert report["baseline"]["raw_bytes"] / report["compressed"]["raw_bytes"] >= 3.7
    assert report["accuracy_change"] >= -0.002
    out = tmp_path / "pruned"
    assert (
        cli.main(
            [
                "compress",
                "--model",
                str(path),
                "--method",
                "prune",
                "--sparsity",
                "0.9",
                "--epochs",
                "1",
                "--data-fraction",
                "0.1",
                "--data-dir",
                str(data_dir),
                "--output",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads((out / "report.json").read_text())
    assert report["sparsity"][-1]["sparsity"] == pytest.approx(0.9, abs=1e-3)
    assert report["gzip_ratio"] > 3 and (out / "model.keras").is_file()


@pytest.mark.slow
def test_compress_saved_takes_a_run_config(trained, data_dir, tmp_path):
    path = tmp_path / "model.keras"
    trained.save(path)
    config = RunConfig(data_dir=data_dir, data_fraction=0.05, epochs=1, seed=1)
    out = tmp_path / "pruned"
    report = compress_saved(path, "prune", out, config, sparsity=0.5)
    assert report == json.loads((out / "report.json").read_text())
    assert report["config"] == config.to_dict()
    assert (report["epochs"], report["seed"], report["dataset"]) == (1, 1, "mnist")
    assert report["sparsity"][-1]["sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert (out / "model.keras").is_file() and (out / "model.tflite").is_file()


def test_a_compress_run_is_published_whole_or_not_at_all(
    tmp_path, data_dir, monkeypatch
):
    """A run that fails mid-publish leaves the previous run (a pruned model:
    model.keras, model.tflite, report.json) byte for byte; the next run
    replaces all of it, its model.keras included, though a quantization run
    writes none."""
    path = tmp_path / "model.keras"
    models.get_model("seed", seed=0).save(path)
    out = tmp_path / "out"
    out.mkdir()
    old = {
        "report.json": b'{"method": "prune"}\n',
        "model.keras": b"the pruned model",
        "model.tflite": b"the pruned flatbuffer",
    }
    for name, content in old.items():
        (out / name).write_bytes(content)
    measured = {"accuracy": 0.1, "raw_bytes": 1, "gzip_bytes": 1, "latency_ms": 1.0}
    # LiteRT on the 10,000 test images is not what is tested here
    monkeypatch.setattr(apply, "_measure", lambda *args: dict(measured))
    config = RunConfig(data_dir=data_dir, data_fraction=0.01)
    with monkeypatch.context() as failing:
        fail_the_commit(failing)
        with pytest.raises(OSError, match="injected"):
            compress_saved(path, "dynamic", out, config)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == old  # no staging left

    report = compress_saved(path, "dynamic", out, config)
    assert sorted(p.name for p in out.iterdir()) == ["model.tflite", "report.json"]
    assert json.loads((out / "report.json").read_text()) == report
    assert report["method"] == "dynamic"
    assert report["artifact"] == str(out / "model.tflite")
    assert (out / "model.tflite").read_bytes()[4:8] == b"TFL3"  # a flatbuffer


@pytest.mark.parametrize(
    ("method", "kwargs", "error", "message"),
    [
        ("zip", {}, ValueError, "unknown method 'zip'"),
        ("prune", {"sparsity": 1.0}, ValueError, r"sparsity must be in \[0, 1\)"),
        ("distill", {}, ValueError, "needs a teacher"),
        ("int8", {}, FileNotFoundError, "model file not found"),
    ],
)
def test_compress_saved_checks_before_it_loads(
    tmp_path, method, kwargs, error, message
):
    out = tmp_path / "out"
    with pytest.raises(error, match=message):
        compress_saved(tmp_path / "missing.keras", method, out, **kwargs)
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--model", "missing.keras", "--method", "int8"], 1, "model file not found"),
        (["--model", "m.keras", "--method", "zip"], 2, "invalid choice: 'zip'"),
        (
            ["--model", "m.keras", "--method", "prune", "--sparsity", "1"],
            2,
            "must be in [0, 1)",
        ),
        (["--model", "m.keras", "--method", "distill"], 1, "needs a teacher"),
    ],
)
def test_cli_compress_bad_input(capsys, tmp_path, args, code, message):
    argv = ["compress", *args, "--output", str(tmp_path / "out")]
    if code == 2:
        with pytest.raises(SystemExit) as info:
            cli.main(argv)
        assert info.value.code == 2
    else:
        assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out" / "report.json").exists()


def test_results_tables_goals_and_plot():
    from cnnlearn import plots
    from cnnlearn.report import compression as results

    def row(method, seed, acc, gzip, raw=220_000):
        return {
            "model": "seed",
            "method": method,
            "seed": seed,
            "params": 10,
            "nonzero_params": 10,
            "accuracy": acc,
            "raw_bytes": raw,
            "gzip_bytes": gzip,
            "latency_ms": 0.05,
            "throughput_per_s": 9.0,
        }

    bench = {
        "rows": [
            *(row("float32", s, 0.98, 200_000) for s in (0, 1)),
            *(row("int8", s, 0.979, 45_000, 58_000) for s in (0, 1)),
            row("prune 90% + int8", 0, 0.978, 10_000, 58_000),
            row("prune 90% + int8", 1, 0.976, 10_000, 58_000),
            *(row("prune 95% + int8", s, 0.97, 8_000, 58_000) for s in (0, 1)),
        ],
        "keras_latency": {"seed": {"predict_ms": 50.0, "call_ms": 2.0}},
    }
    summary = {e["method"]: e for e in results.summarize(bench)}
    assert summary["prune 90% + int8"]["accuracy"] == pytest.approx(0.977)
    assert summary["prune 90% + int8"]["accuracy_std"] == pytest.approx(0.0014142, 1e-4)
    goals = results.goals(bench)
    assert goals["int8"]["size_ratio"] == pytest.approx(220 / 58)
    best = goals["prune_int8"]["best_within_0.3pt"]
    assert best["method"] == "prune 90% + int8" and best["ratio"] == 20.0
    assert goals["latency"]["predict_over_litert_int8"] == pytest.approx(1000)
    assert goals["prune_int8"]["best_within_0.3pt_of_fine_tuned"] is None
    # the stricter reference: the float model fine-tuned as long, unpruned
    tuned = [row("fine-tuned", s, 0.981, 200_000) for s in (0, 1)]
    tuned += [row("fine-tuned + int8", s, 0.981, 45_000, 58_000) for s in (0, 1)]
    stricter = results.goals({**bench, "rows": bench["rows"] + tuned})["prune_int8"]
    assert [p["method"] for p in stricter["frontier"]] == [
        "prune 90% + int8",
        "prune 95% + int8",
    ]
    assert stricter["frontier"][0]["change_vs_fine_tuned"] == pytest.approx(-0.004)
    assert stricter["best_within_0.3pt_of_fine_tuned"] is None
    assert stricter["best_within_0.3pt"]["method"] == "prune 90% + int8"
    table = results.summary_table(bench)
    assert table[2]["× smaller (gzip)"] == "20.0" and "±" in table[2]["test accuracy"]
    fig = plots.plot_size_accuracy(results.summarize(bench))
    assert len(fig.axes[0].texts) == 4


def test_distillation_verdict():
    from cnnlearn.report import compression as results

    def runs(kind, accuracies):
        return [{"method": kind, "accuracy": a} for a in accuracies]

    def verdict(scratch, distilled):
        dist = {"student_params": 5, "runs": runs("scratch", scratch)}
        dist["runs"] += runs("distilled", distilled)
        rows = results.distillation_summary({"distillation": dist})
        return results.distillation_verdict(rows)

    same = verdict([0.97, 0.98, 0.975], [0.976, 0.974, 0.975])
    assert same["gain"] == pytest.approx(0.0)
    assert same["verdict"].startswith("no difference")
    assert same["spread"] == pytest.approx(0.005)
    assert verdict([0.90, 0.901], [0.95, 0.951])["verdict"].startswith("a gain")
    assert verdict([0.95, 0.951], [0.90, 0.901])["verdict"].startswith("a loss")
