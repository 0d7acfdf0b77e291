from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import REPO

from cnnlearn import data, distribute, models

CLUSTER = {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}}


@pytest.mark.parametrize(
    ("kwargs", "kind"),
    [
        ({}, "default"),
        ({"cpus": 2}, "mirrored"),
        ({"gpus": 1}, "one_device"),
        ({"gpus": 4}, "mirrored"),
        ({"gpus": 4, "device": "cpu"}, "default"),
        ({"tf_config": CLUSTER}, "multi_worker"),
        ({"multi_worker": True}, "multi_worker"),
        ({"device": "tpu"}, "tpu"),
    ],
)
def test_choose_strategy(kwargs, kind):
    args = {"gpus": 0, "cpus": 1, "tf_config": {}, **kwargs}
    chosen, reason = distribute.choose_strategy(**args)
    assert chosen == kind and reason


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("gpu", "device='gpu' was asked for, but no GPU is visible"),
        ("tpu", "device='tpu' was asked for, but no TPU was found"),
        ("npu", "unknown device 'npu'"),
    ],
)
def test_get_strategy_refuses_missing_devices(device, message):
    import tensorflow as tf

    if device == "gpu" and tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match=message):
        distribute.get_strategy(device)


def test_get_strategy_default_on_one_cpu(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    strategy = distribute.get_strategy("cpu")
    assert strategy.num_replicas_in_sync == 1


def test_task_info_and_chief(monkeypatch):
    task = {"type": "worker", "index": 1}
    monkeypatch.setenv("TF_CONFIG", json.dumps({**CLUSTER, "task": task}))
    assert distribute.task_info()["task"]["index"] == 1
    assert not distribute.is_chief()
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG is not valid JSON"):
        distribute.task_info()
    monkeypatch.delenv("TF_CONFIG")
    assert distribute.task_info() == {} and distribute.is_chief()


def test_tensorflow_info_logs_are_off():
    """Chapter 5's outputs hold no "INFO:tensorflow:Using MirroredStrategy ..."
    lines: importing ``cnnlearn.distribute`` raises TensorFlow's Python logger to
    ERROR, unless CNNLEARN_VERBOSE asks for everything."""
    import tensorflow as tf

    if os.environ.get("CNNLEARN_VERBOSE"):
        pytest.skip("CNNLEARN_VERBOSE keeps TensorFlow's logs")
    assert tf.get_logger().level == logging.ERROR


def test_cluster_size_and_jit_choice():
    assert distribute.cluster_size(CLUSTER) == 2 and distribute.cluster_size({}) == 0
    chief = {"cluster": {"chief": ["h:0"], "worker": ["h:1", "h:2"]}}
    assert distribute.cluster_size(chief) == 3
    strategy = distribute.get_strategy("cpu")
    assert distribute.resolve_jit(True, strategy) is True
    with pytest.raises(ValueError, match="jit_compile must be True, False or 'auto'"):
        distribute.resolve_jit("yes", strategy)


def test_set_precision_checks_its_input():
    import keras

    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        distribute.set_global_precision("fp8")
    try:
        assert distribute.set_global_precision("mixed_bfloat16") == "mixed_bfloat16"
        assert keras.mixed_precision.global_policy().compute_dtype == "bfloat16"
    finally:
        distribute.set_global_precision("float32")


def test_scaling_model():
    # one worker never communicates; a ring moves 2(N-1)/N of the gradient
    assert distribute.allreduce_seconds(10**6, 1, 10) == 0
    assert distribute.allreduce_seconds(10**6, 2, 10) == pytest.approx(32e6 / 10e9)
    slow = distribute.predicted_speedup(0.01, 25_000_000, [1, 2, 8, 64], 10)
    fast = distribute.predicted_speedup(0.01, 25_000_000, [1, 2, 8, 64], 100)
    assert slow["speedup"][0] == 1 and np.all(np.diff(fast["efficiency"]) < 0)
    assert np.all(fast["speedup"][1:] > slow["speedup"][1:])
    assert np.all(fast["speedup"] <= fast["workers"])
    # strong scaling: one global batch split N ways; never beyond N
    strong = distribute.predicted_speedup(0.01, 54_410, [1, 2], 10, scaling="strong")
    assert strong["speedup"][0] == 1 and 1 < strong["speedup"][1] < 2


def test_scaling_plot():
    from cnnlearn import plots

    pred = distribute.predicted_speedup(0.01, 54_410, np.arange(1, 65), 10)
    fig = plots.plot_scaling({"seed, 10 Gb/s": pred}, {"measured": ([2], [0.5])})
    assert len(fig.axes) == 2 and fig.axes[0].get_xscale() == "log"


def test_linear_scaling_rule_with_warmup():
    assert distribute.scaled_learning_rate(1e-3, 128, 512) == pytest.approx(4e-3)
    schedule = distribute.scaled_learning_rate(1e-3, 128, 1024, warmup_steps=100)
    rates = [float(schedule(step)) for step in (0, 50, 100, 1000)]
    np.testing.assert_allclose(rates, [1e-3, 4.5e-3, 8e-3, 8e-3], rtol=1e-5)
    with pytest.raises(ValueError, match="batch sizes must be >= 1"):
        distribute.scaled_learning_rate(1e-3, 0, 128)


@pytest.fixture(scope="module")
def small(mnist):
    (x, y), _ = mnist
    return data.preprocess_images(x[:1024]), y[:1024].astype(np.int64)


def test_matches_fit_on_one_device(small):
    """Default strategy: same model, seed and batches as Model.fit → same run."""
    import keras
    import tensorflow as tf

    x, y = small
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(64)
    reference = models.get_model("seed", seed=3)
    reference.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    fitted = reference.fit(ds, epochs=2, verbose=0, shuffle=False).history["loss"]
    history = distribute.distributed_fit(
        lambda: models.get_model("seed", seed=3), ds, epochs=2, global_batch_size=64,
        seed=3, verbose=False,
    )  # fmt: skip
    np.testing.assert_allclose(history["loss"], fitted, rtol=1e-4)
    for a, b in zip(history.model.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert history["step"] == [16, 32] and history.final_step == 32


def test_resume_mid_epoch_counts_no_batch_twice(small, tmp_path):
    """Resuming from a mid-epoch checkpoint ends where an uninterrupted run ends."""
    import tensorflow as tf

    x, y = small

    def fit(directory, epochs=2):
        return distribute.distributed_fit(
            lambda: models.get_model("seed", seed=0), (x, y), epochs=epochs,
            global_batch_size=128, checkpoint_dir=directory, checkpoint_every=4,
            seed=0, verbose=False,
        )  # fmt: skip

    whole = fit(tmp_path / "a")
    assert whole.initial_step == 0 and whole["step"] == [8, 16]
    ckpt = tmp_path / "a"
    assert (ckpt / "history-12.json").is_file()  # kept: ckpt-12 and ckpt-16
    for path in ckpt.glob("ckpt-16*"):  # as if the run died during step 13
        path.unlink()
    (ckpt / "checkpoint").write_text('model_checkpoint_path: "ckpt-12"\n')
    assert tf.train.latest_checkpoint(str(ckpt)).endswith("ckpt-12")
    resumed = fit(ckpt)
    assert resumed.initial_step == 12 and resumed.final_step == 16
    assert resumed["step"] == [8, 16]  # epoch 1 from the saved history
    np.testing.assert_allclose(resumed["loss"], whole["loss"], rtol=1e-5)
    np.testing.assert_allclose(resumed["accuracy"], whole["accuracy"], rtol=1e-6)
    for a, b in zip(resumed.model.get_weights(), whole.model.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)
    more = fit(ckpt, epochs=3)  # a finished run goes on from its last step
    assert more.initial_step == 16 and more["step"] == [8, 16, 24]


def _checkpointed(small, directory, epochs=1):
    x, y = small
    return distribute.distributed_fit(
        lambda: models.get_model("seed", seed=0), (x, y), epochs=epochs,
        global_batch_size=128, checkpoint_dir=directory, seed=0, verbose=False,
    )  # fmt: skip


def _truncate(path, size):
    with open(path, "r+b") as f:
        f.truncate(size)


def test_a_damaged_checkpoint_is_named_before_training(small, tmp_path):
    """Resuming from a truncated checkpoint raised IndexError from deep inside
    the restore; now each kind of damage is a one-line error naming the file."""
    from cnnlearn.distribute import loop

    good = tmp_path / "good"
    _checkpointed(small, good)
    assert loop.check_checkpoint(good).endswith("ckpt-8")
    assert loop.check_checkpoint(tmp_path / "none") is None
    damages = {
        "ckpt-8.data-00000-of-00001": lambda p: _truncate(p, 1000),
        "ckpt-8.index": lambda p: _truncate(p, 100),
        "checkpoint": lambda p: p.write_text("garbage{{"),
    }
    for name, damage in damages.items():
        bad = tmp_path / name.replace(".", "_")
        shutil.copytree(good, bad)
        damage(bad / name)
        with pytest.raises(ValueError, match="corrupt or truncated checkpoint") as e:
            loop.check_checkpoint(bad)
        assert f"{bad / name}:" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ValueError, match=r"ckpt-8\.data-00000-of-00001: corrupt"):
        _checkpointed(small, tmp_path / "ckpt-8_data-00000-of-00001", epochs=2)
    (good / "history-8.json").write_text('{"loss": [1')
    with pytest.raises(ValueError, match=r"history-8\.json: corrupt checkpoint hist"):
        _checkpointed(small, good, epochs=2)


def test_ctrl_c_saves_a_checkpoint_the_next_run_resumes(small, tmp_path, monkeypatch):
    import signal

    from cnnlearn.train.runs import TrainingInterrupted

    def ctrl_c_at_step_5(step, worker):
        if step == 5:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr("cnnlearn.distribute.loop._fault", ctrl_c_at_step_5)
    with pytest.raises(TrainingInterrupted, match="at step 6: checkpoint saved"):
        _checkpointed(small, tmp_path / "run", epochs=2)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    monkeypatch.undo()
    resumed = _checkpointed(small, tmp_path / "run", epochs=2)
    assert (resumed.initial_step, resumed.final_step) == (6, 16)
    whole = _checkpointed(small, tmp_path / "whole", epochs=2)
    np.testing.assert_allclose(resumed["loss"], whole["loss"], rtol=1e-5)


def test_distributed_fit_checks_its_input(small):
    x, y = small
    with pytest.raises(ValueError, match="no full batch of 4096"):
        distribute.distributed_fit(lambda: models.get_model("seed"), (x, y),
                                   global_batch_size=4096)  # fmt: skip
    with pytest.raises(ValueError, match="differ in length"):
        distribute.distributed_fit(lambda: models.get_model("seed"), (x, y[:10]))


def test_run_distributed_takes_a_run_config(tmp_path, data_dir):
    """``cnnlearn train --strategy ...`` as a function: one config in, the
    run directory and its metrics out, with the config in metrics.json."""
    from cnnlearn.config import RunConfig

    config = RunConfig(
        data_dir=data_dir, data_fraction=0.02, epochs=1, batch_size=64,
        validation_split=0.1, device="cpu",
    )  # fmt: skip
    metrics = distribute.run_distributed(
        config, output_dir=tmp_path, steps_per_epoch=3, checkpoint_every=2,
        verbose=False,
    )  # fmt: skip
    assert metrics["strategy"] == "_DefaultDistributionStrategy"
    assert (metrics["replicas"], metrics["workers"]) == (1, 1)
    assert (metrics["initial_step"], metrics["final_step"]) == (0, 3)
    assert metrics["n_train"] == 3 * 64 and metrics["n_val"] == 120
    assert metrics["n_test"] == 10_000 and metrics["precision"] == "float32"
    assert [metrics[k] for k in ("model", "dataset", "seed")] == ["seed", "mnist", 0]
    assert metrics["config"] == {**config.to_dict(), "epochs": 1, "batch_size": 64}
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["final_step"] == 3 and saved["config"] == metrics["config"]
    history = json.loads((tmp_path / "history.json").read_text())
    assert history["step"] == [3] and "val_accuracy" in history
    assert (tmp_path / "model.keras").is_file()
    assert (tmp_path / "checkpoints" / "ckpt-3.index").is_file()
    with pytest.raises(ValueError, match="unknown strategy 'ring'"):
        distribute.run_distributed(config, output_dir=tmp_path, strategy="ring")


MIRRORED = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from cnnlearn import data, distribute, models
    names = distribute.use_logical_cpus(2)
    import tensorflow as tf
    (x, y), _ = data.load_dataset("mnist", sys.argv[1])
    x, y = data.preprocess_images(x[:1024]), y[:1024].astype(np.int64)
    out = {"devices": names}
    for name, strategy in [
        ("one", tf.distribute.OneDeviceStrategy("/cpu:0")),
        ("mirrored", distribute.get_strategy("cpu")),
    ]:
        h = distribute.distributed_fit(
            lambda: models.get_model("seed", seed=0), (x, y), strategy, 2,
            global_batch_size=128, seed=0, verbose=False)
        out[name] = {"loss": h["loss"], "replicas": h.replicas,
                     "weights": [w.tolist() for w in h.model.get_weights()]}
    print(json.dumps(out))
    """
)


@pytest.mark.slow
def test_mirrored_over_two_logical_cpus_equals_one_device(data_dir):
    """Two replicas of 64 images each = one device with the global batch of 128."""
    proc = subprocess.run(
        [sys.executable, "-c", MIRRORED, str(data_dir)],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(out["devices"]) == 2
    one, mirrored = out["one"], out["mirrored"]
    assert (one["replicas"], mirrored["replicas"]) == (1, 2)
    np.testing.assert_allclose(mirrored["loss"], one["loss"], rtol=1e-4)
    assert one["loss"][1] < one["loss"][0]
    for a, b in zip(mirrored["weights"], one["weights"]):
        np.testing.assert_allclose(np.array(a), np.array(b), atol=1e-5)


@pytest.mark.slow
def test_cli_train_with_a_strategy(tmp_path, data_dir, capsys):
    from cnnlearn import cli

    out = tmp_path / "run"
    code = cli.main([
        "train", "--strategy", "mirrored", "--epochs", "2", "--steps-per-epoch", "3",
        "--batch-size", "64", "--data-fraction", "0.02", "--validation-split", "0",
        "--data-dir", str(data_dir), "--output", str(out),
    ])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert "strategy=MirroredStrategy" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["strategy"] == "MirroredStrategy" and metrics["final_step"] == 6
    assert metrics["precision"] == "float32" and metrics["n_test"] == 10_000
    assert (out / "checkpoints" / "checkpoint").is_file()
    assert cli.main(["train", "--strategy", "tpu", "--output", str(tmp_path)]) == 1
    assert "no TPU was found" in capsys.readouterr().err
