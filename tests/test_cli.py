from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from cnnlearn import cli


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cnnlearn.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train"], "the following arguments are required: --output"),
        (["train", "--output", "x", "--epochs", "0"], "--epochs: must be >= 1"),
        (["train", "--output", "x", "--data-fraction", "2"], "must be in (0, 1]"),
        (["fly"], "invalid choice: 'fly'"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(capsys, args, message):
    with pytest.raises(SystemExit) as info:
        cli.main(args)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--model", "vgg"], "unknown model 'vgg'"),
        (["train", "--dataset", "cifar"], "unknown dataset 'cifar'"),
        (["train", "--data-dir", "/nonexistent"], "expected the mnist IDX files"),
        (["train", "--device", "tpu"], "unknown device 'tpu'"),
        (["evaluate", "--model", "missing.keras"], "model file not found"),
    ],
)
def test_bad_input_exits_1_with_one_line(capsys, tmp_path, args, message):
    assert cli.main([*args, "--output", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out" / "metrics.json").exists()


@pytest.mark.slow
def test_train_then_evaluate_round_trip(tmp_path, data_dir):
    out = tmp_path / "seed"
    proc = run_cli(
        "train", "--model", "seed", "--epochs", "1", "--batch-size", "32",
        "--batch-scale", "1", "--data-fraction", "0.1", "--data-dir", str(data_dir),
        "--output", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "test_accuracy=" in proc.stdout
    assert "169/169" in proc.stderr  # the progress bar goes to stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.85 and metrics["epochs"] == 1
    assert metrics["batch_size"] == 32 and metrics["params"] == 54_410
    assert metrics["plan"]["reasons"]["batch_size"] == "set by the caller"
    assert metrics["n_train"] + metrics["n_val"] == 6000
    assert {"test_loss", "train_seconds", "history"} - set(metrics) == {"history"}
    assert json.loads((out / "history.json").read_text())["loss"]

    proc = run_cli("evaluate", "--model", str(out / "model.keras"),
                   "--data-dir", str(data_dir))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "evaluation.json").read_text())
    assert report["accuracy"] == pytest.approx(metrics["test_accuracy"])


@pytest.mark.slow
def test_corrupt_data_is_one_line_error(tmp_path, data_dir):
    shutil.copytree(data_dir / "mnist", tmp_path / "mnist")
    (tmp_path / "mnist").chmod(0o755)
    bad = tmp_path / "mnist" / "train-labels-idx1-ubyte.gz"
    bad.chmod(0o644)
    bad.write_bytes(bad.read_bytes()[:1000])
    proc = run_cli(
        "train", "--data-dir", str(tmp_path), "--output", str(tmp_path / "o")
    )
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "train-labels-idx1-ubyte.gz" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_serve_freezes_the_garbage_collector_unless_told_not_to():
    parser = cli.build_parser()
    base = ["serve", "--model-base-path", "models/mnist"]
    assert parser.parse_args(base).freeze_gc is True
    assert parser.parse_args([*base, "--no-gc-freeze"]).freeze_gc is False
