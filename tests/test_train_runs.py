"""Run directories (chapter 4): one run at a time, Ctrl-C, checked model files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import zipfile

import keras
import numpy as np
import pytest
from conftest import KILLING

from cnnlearn import models, train
from cnnlearn._io import clean_output_dir
from cnnlearn.config import RunConfig
from cnnlearn.train import runs


@pytest.fixture(scope="module")
def tiny():
    """640 random images: what these tests check does not depend on the data."""
    rng = np.random.default_rng(0)
    x = rng.random((640, 28, 28, 1), dtype=np.float32)
    return x, (np.arange(640) % 10).astype(np.int64)


@pytest.fixture(scope="module")
def two_runs(tiny):
    x, y = tiny
    results = [
        train.fit(models.get_model("seed", seed=s), x, y, epochs=1, batch_size=64,
                  seed=s, verbose=0)
        for s in (1, 2)
    ]  # fmt: skip
    return [(r, train.evaluate(r.model, x[:128], y[:128])) for r in results]


def test_versions_name_the_backend_and_its_library():
    found = runs.versions()
    backend = keras.config.backend()
    assert found["backend"] == backend and found["keras"] == keras.__version__
    library = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[backend]
    assert found[library]  # the active backend's library, from its metadata


def test_a_rerun_replaces_the_whole_run_and_keeps_other_files(two_runs, tmp_path):
    (first, eval_first), (second, eval_second) = two_runs
    train.save_run(tmp_path, first, eval_first, seed=1)
    (tmp_path / "evaluation.json").write_text("{}")  # about run 1's model
    (tmp_path / "notes.txt").write_text("mine")
    assert runs.check_run(tmp_path)["seed"] == 1
    metrics = train.save_run(tmp_path, second, eval_second, seed=2)
    assert runs.check_run(tmp_path) == metrics and metrics["seed"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "history.json", "metrics.json", "model.keras", "notes.txt",
    ]  # fmt: skip
    files = metrics["files"]
    assert set(files) == {"model.keras", "history.json"}
    assert files["model.keras"]["bytes"] == (tmp_path / "model.keras").stat().st_size
    reloaded = keras.models.load_model(tmp_path / "model.keras")
    for a, b in zip(reloaded.get_weights(), second.model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_check_run_finds_a_mix(two_runs, tmp_path):
    """Run 2's model beside run 1's metrics.json, the mix issue 19 found."""
    (first, eval_first), (second, eval_second) = two_runs
    train.save_run(tmp_path / "a", first, eval_first)
    train.save_run(tmp_path / "b", second, eval_second)
    (tmp_path / "b" / "model.keras").replace(tmp_path / "a" / "model.keras")
    with pytest.raises(ValueError, match=r"a/model\.keras: not the file metrics"):
        runs.check_run(tmp_path / "a")
    with pytest.raises(FileNotFoundError, match=r"b/model\.keras: missing"):
        runs.check_run(tmp_path / "b")
    with pytest.raises(FileNotFoundError, match="no metrics.json"):
        runs.check_run(tmp_path / "c")


class SendSigint(keras.callbacks.Callback):
    """Send this process ``times`` SIGINTs after training batch ``after``."""

    def __init__(self, after: int, times: int = 1) -> None:
        super().__init__()
        self.after, self.times, self.batches = after, times, 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1
        if batch >= self.after and self.times:  # steps_per_execution may skip
            self.times, times = 0, self.times
            for _ in range(times):
                os.kill(os.getpid(), signal.SIGINT)


def test_first_ctrl_c_stops_at_the_batch_boundary(tiny):
    x, y = tiny
    sender, stop = SendSigint(2), runs.StopOnInterrupt()
    before = signal.getsignal(signal.SIGINT)
    result = train.fit(
        models.get_model("seed"), x, y, epochs=3, batch_size=32,
        validation_split=0.0, callbacks=[sender, stop], verbose=0, plan=train.PLAIN,
    )  # fmt: skip
    assert stop.interrupted and stop.where == (0, 3)
    assert sender.batches == 3 and result.epochs == 1  # of 20 batches and 3 epochs
    assert signal.getsignal(signal.SIGINT) is before  # given back after the fit


def test_second_ctrl_c_gets_the_default_handler(tiny):
    x, y = tiny
    stop = runs.StopOnInterrupt()
    with pytest.raises(KeyboardInterrupt):
        train.fit(models.get_model("seed"), x, y, epochs=3, batch_size=32,
                  callbacks=[SendSigint(1, times=2), stop], verbose=0)  # fmt: skip
    assert stop.interrupted
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_run_training_interrupted_publishes_nothing(tmp_path, data_dir, monkeypatch):
    fit = runs.fit

    def fit_with_ctrl_c(*args, callbacks=(), **kwargs):
        return fit(*args, callbacks=[SendSigint(1), *callbacks], **kwargs)

    monkeypatch.setattr(runs, "fit", fit_with_ctrl_c)
    (tmp_path / "metrics.json").write_text('{"run": "old"}')
    config = RunConfig(data_dir=data_dir, data_fraction=0.02, epochs=1, device="cpu")
    with pytest.raises(
        runs.TrainingInterrupted, match=r"epoch 1 after batch \d+: nothing"
    ) as e:
        train.run_training(config, output_dir=tmp_path, checkpoint=True, verbose=0)
    assert "\n" not in str(e.value)
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no staging
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"run": "old"}


def test_evaluate_saved_checks_config_json_before_keras(tmp_path):
    path = tmp_path / "deep.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", "[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match=r"deep\.keras: config\.json is nested"):
        train.evaluate_saved(path)


KILLED_TRAINING = textwrap.dedent(
    """
    import os, signal, sys
    from cnnlearn import train
    from cnnlearn.config import RunConfig
    out, seed, kill_at = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    config = RunConfig(data_dir=sys.argv[4], data_fraction=0.02, epochs=1,
                       seed=seed, device="cpu")
    calls, rename, replace = 0, os.rename, os.replace

    {KILLING}
    os.rename, os.replace = killing(rename), killing(replace)
    train.run_training(config, output_dir=out, checkpoint=True, verbose=0)
    print("renames", calls)
    """
).replace("{KILLING}", KILLING)


@pytest.mark.slow
def test_run_training_killed_while_saving_or_publishing(tmp_path, data_dir):
    """A real ``run_training`` rerun with another seed, SIGKILLed at each
    rename it makes (while Keras saves into the staging directory, at the
    commit, while moving the run into place): the next run finishes or drops
    it, and the directory holds one whole run, never run 2's model beside run
    1's metrics.json."""

    def run(out, seed, kill_at=0):
        cmd = [sys.executable, "-c", KILLED_TRAINING, str(out), str(seed),
               str(kill_at), str(data_dir)]  # fmt: skip
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300)

    first = run(tmp_path / "one", 1)
    assert first.returncode == 0, first.stderr[-2000:]
    n_calls = int(first.stdout.split()[-1])
    seeds = set()
    for kill_at in range(1, n_calls + 1, max(1, n_calls // 4)):
        out = tmp_path / f"kill-{kill_at}"
        subprocess.run(["cp", "-r", str(tmp_path / "one"), str(out)], check=True)
        assert run(out, 2, kill_at).returncode == -signal.SIGKILL
        if (out / "metrics.json").is_file():  # what it claims, it holds
            runs.check_run(out)
        clean_output_dir(out, older_than=float("inf"))  # as the next run does
        seeds.add(runs.check_run(out)["seed"])
        assert not [p for p in out.iterdir() if p.name.startswith(".")]
        assert (out / "checkpoints" / "best.keras").is_file()
    assert seeds <= {1, 2} and 2 in seeds
