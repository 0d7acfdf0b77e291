from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from cnnlearn import cli
from cnnlearn.config import RunConfig


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
        (["train", "--device", "tpu"], "device='tpu' was asked for"),
        (["train", "--device", "npu"], "unknown device 'npu'"),
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
    assert metrics["config"]["data_fraction"] == 0.1
    assert (metrics["config"]["epochs"], metrics["config"]["batch_size"]) == (1, 32)
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


def test_serve_hands_its_protections_to_the_server(monkeypatch):
    """The slow-client protections reach ``server.serve`` as given; left out,
    none is passed, so the server's own defaults apply."""
    import inspect

    from cnnlearn.cli import deploy as verbs
    from cnnlearn.deploy import server

    # every option is a keyword that serve takes, or hands on to create_app
    takes = set(inspect.signature(server.serve).parameters)
    takes |= set(inspect.signature(server.create_app).parameters)
    assert set(verbs.PROTECTIONS) <= takes
    calls = []
    monkeypatch.setattr(server, "serve", lambda *a, **kw: calls.append(kw))
    base = ["serve", "--model-base-path", "models/mnist"]
    assert cli.main(base) == 0
    assert not set(verbs.PROTECTIONS) & set(calls[-1])
    given = ["--header-timeout", "2.5", "--body-timeout", "30", "--workers", "2"]
    given += ["--keep-alive-timeout", "1", "--limit-concurrency", "16"]
    assert cli.main([*base, *given, "--inline-bytes", "0"]) == 0
    assert {k: calls[-1][k] for k in verbs.PROTECTIONS} == {
        "header_timeout": 2.5,
        "body_timeout": 30.0,
        "keep_alive_timeout": 1.0,
        "limit_concurrency": 16,
        "workers": 2,
        "inline_bytes": 0,
    }


def test_run_verbs_hand_their_routine_one_config(monkeypatch, tmp_path):
    """train, tune, compress and deploy parse the shared run-configuration
    group, each with its own defaults, into one RunConfig for their routine."""
    from cnnlearn import train, tune
    from cnnlearn.compress import apply
    from cnnlearn.deploy import release

    seen = {}

    def fake(name, result):
        def run(*args, **kwargs):
            seen[name] = (args, kwargs)
            return result

        return run

    trained = {"test_accuracy": 1, "test_loss": 0, "epochs": 2, "train_seconds": 1}
    searched = type("Search", (), {"trials": [], "report": {
        "best": {"val_accuracy": 1, "params": 1}, "final": None}})  # fmt: skip
    compressed = {"compressed": {"accuracy": 1, "gzip_bytes": 1}, "gzip_ratio": 1}
    monkeypatch.setattr(train, "run_training", fake("train", trained))
    monkeypatch.setattr(tune, "run_search", fake("tune", searched))
    monkeypatch.setattr(apply, "compress_saved", fake("compress", compressed))
    monkeypatch.setattr(release, "deploy", fake("deploy", {"version": 1,
                        "tflite_test_accuracy": 1}))  # fmt: skip
    out = str(tmp_path)

    assert cli.main(["train", "--model", "lenet5", "--epochs", "2",
                     "--batch-scale", "1", "--output", out]) == 0  # fmt: skip
    (config,), options = seen["train"]
    assert config == RunConfig(model="lenet5", epochs=2, plan={"batch_scale": 1})
    assert options["output_dir"] == out and options["checkpoint"] is False

    assert cli.main(["tune", "--seed", "3", "--output", out]) == 0
    (config, algorithm), options = seen["tune"]
    assert config == RunConfig(data_fraction=0.2, batch_size=128, seed=3)
    assert algorithm == "hyperband" and options["directory"] == out

    assert cli.main(["compress", "--model", "m.keras", "--method", "int8",
                     "--data-fraction", "0.5", "--device", "cpu",
                     "--output", out]) == 0  # fmt: skip
    args, options = seen["compress"]
    expected = RunConfig(epochs=2, data_fraction=0.5, device="cpu")
    assert args == ("m.keras", "int8", out, expected)

    assert cli.main(["deploy", "--base-path", "b", "--train-model", "lenet5",
                     "--device", "cpu", "--output", out]) == 0  # fmt: skip
    args, options = seen["deploy"]
    assert args == (None, RunConfig(model="lenet5", epochs=1, device="cpu"))
    assert options["base_path"] == "b" and options["compression"] is None


@pytest.mark.parametrize(
    "args",
    [
        ["tune", "--model", "seed"],
        ["compress", "--model", "m", "--method", "int8", "--batch-size", "64"],
        ["deploy", "--base-path", "b", "--batch-size", "64"],
    ],
)
def test_run_verbs_keep_their_own_flags(capsys, args):
    """A verb offers only the run options its routine uses."""
    with pytest.raises(SystemExit) as info:
        cli.main([*args, "--output", "x"])
    assert info.value.code == 2 and "unrecognized arguments" in capsys.readouterr().err


def test_run_arguments_know_the_config_fields():
    from cnnlearn.cli import _args

    with pytest.raises(TypeError, match="epoch"):
        _args.add_run_arguments(_args.Parser(), epoch=3)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["deploy", "--base-path", "b", "--min-accuracy", "nan"], "in [0, 1]"),
        (["deploy", "--base-path", "b", "--min-accuracy", "1.5"], "in [0, 1]"),
        (["deploy", "--base-path", "b", "--max-size-mb", "nan"], "(0, inf] MB"),
        (["deploy", "--base-path", "b", "--max-size-mb", "0"], "(0, inf] MB"),
        (["deploy", "--base-path", "b", "--port", "70000"], "0 to 65535"),
        (["serve", "--port", "-1"], "0 to 65535"),
        (["serve", "--poll-seconds", "0"], "seconds"),
        (["serve", "--poll-seconds", "inf"], "seconds"),
        (["launch", "--timeout", "nan", "--", "train"], "seconds"),
        (["book", "run", "--timeout", "-5"], "seconds"),
        (["serve", "--header-timeout", "0"], "(0, 3600] seconds"),
        (["serve", "--header-timeout", "inf"], "(0, 3600] seconds"),
        (["serve", "--body-timeout", "nan"], "(0, 3600] seconds"),
        (["serve", "--body-timeout", "soon"], "expected a number, got 'soon'"),
        (["serve", "--keep-alive-timeout", "-1"], "(0, 3600] seconds"),
        (["serve", "--limit-concurrency", "1"], "must be >= 2 connections"),
        (["serve", "--limit-concurrency", "0"], "must be >= 1"),
        (["serve", "--workers", "0"], "--workers: must be >= 1"),
        (["serve", "--inline-bytes", "-1"], "must be >= 0 bytes"),
        (["serve", "--inline-bytes", "1.5"], "expected an integer, got '1.5'"),
    ],
)
def test_numeric_options_are_checked_when_parsed(capsys, args, message):
    """Fail closed: a NaN threshold or an impossible port is refused at once."""
    with pytest.raises(SystemExit) as info:
        cli.main([*args, "--output", "never-written"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and message in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--epochs", "1"],
        ["train", "--strategy", "mirrored"],
        ["tune"],
        ["compress", "--model", "MODEL", "--method", "int8"],
        ["deploy", "--base-path", "b"],
    ],
)
def test_an_output_that_is_a_file_is_refused_before_any_work(capsys, tmp_path, args):
    model = tmp_path / "m.keras"
    model.write_bytes(b"")
    args = [str(model) if a == "MODEL" else a for a in args]
    taken = tmp_path / "taken.txt"
    taken.write_text("keep me")
    assert cli.main([*args, "--output", str(taken)]) == 1
    err = capsys.readouterr().err
    assert "is a file, expected a directory" in err and err.count("\n") == 1
    assert taken.read_text() == "keep me"
