"""cnnlearn.deploy.release and ``cnnlearn deploy``/``serve``: gate, publish, errors."""

from __future__ import annotations

import json
import os

import pytest
from conftest import fail_the_commit
from deploy_helpers import build

from cnnlearn import cli
from cnnlearn.config import RunConfig
from cnnlearn.deploy import export, release


@pytest.fixture(scope="module")
def built(tmp_path_factory, data_dir):
    return build(tmp_path_factory.getbasetemp() / "deploy", data_dir)


def test_the_gate_refuses_and_publishes_nothing(built, tmp_path, data_dir):
    with pytest.raises(release.GateError, match="gate refused mnist") as info:
        release.deploy(
            built.keras_a,
            RunConfig(data_dir=data_dir, data_fraction=0.05),
            base_path=tmp_path / "models",
            output_dir=tmp_path / "out",
            min_accuracy=0.9999,
            max_size_mb=0.01,
            verbose=False,
        )
    report = json.loads((tmp_path / "out" / "deploy_report.json").read_text())
    assert report == info.value.report
    assert report["published"] is False and report["version"] is None
    reasons = report["gate"]["reasons"]
    assert len(reasons) == 2 and "accuracy" in reasons[0] and "size" in reasons[1]
    assert report["config"]["data_fraction"] == 0.05
    assert report["source"] == f"loaded: {built.keras_a}"
    assert export.list_versions(tmp_path / "models" / "mnist") == []


@pytest.mark.slow
def test_deploy_trains_the_configs_model_when_given_no_file(tmp_path, data_dir):
    config = RunConfig(data_dir=data_dir, data_fraction=0.02, epochs=1)
    report = release.deploy(
        None,
        config,
        base_path=tmp_path / "models",
        output_dir=tmp_path / "out",
        min_accuracy=0.0,
        verbose=False,
    )
    assert report["published"] and report["version"] == 1
    assert report["source"] == "trained: seed, 1 epoch(s)"
    assert report["config"] == config.to_dict()
    assert export.list_versions(tmp_path / "models" / "mnist") == [1]


@pytest.mark.slow
def test_cli_deploy_refuses_then_publishes_versions_one_and_two(
    built, tmp_path, data_dir, capsys
):
    base, out = tmp_path / "models", tmp_path / "out"
    common = ["deploy", "--base-path", str(base), "--data-dir", str(data_dir)]
    common += ["--data-fraction", "0.05", "--output", str(out)]
    refused = cli.main([*common, "--model", str(built.keras_a), "--min-accuracy", "1"])
    assert refused == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("cnnlearn deploy: error: gate refused mnist")
    assert json.loads((out / "deploy_report.json").read_text())["published"] is False

    for keras_file, version in ((built.keras_a, 1), (built.keras_b, 2)):
        assert (
            cli.main([*common, "--model", str(keras_file), "--min-accuracy", "0.5"])
            == 0
        )
        assert f"published mnist version {version}" in capsys.readouterr().out
        report = json.loads((out / "deploy_report.json").read_text())
        assert report["published"] and report["version"] == version
        assert report["gate"]["passed"] and report["tflite_test_accuracy"] > 0.5
        assert (
            abs(report["keras_test_accuracy"] - report["tflite_test_accuracy"]) < 1e-3
        )
    meta = export.read_metadata(base / "mnist" / "2")
    assert meta["test_accuracy"] == report["keras_test_accuracy"]
    assert export.list_versions(base / "mnist") == [1, 2]
    release.remove_version(base, "mnist", 2)
    assert export.list_versions(base / "mnist") == [1]
    with pytest.raises(FileNotFoundError, match="no such version"):
        release.remove_version(base, "mnist", 2)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["serve"], "nothing to serve"),
        (["serve", "--model", "mnist"], "--model expects NAME=DIR"),
        (["serve", "--model-base-path", "/nonexistent"], "not found"),
        (["deploy", "--base-path", "b", "--model", "missing.keras"], "no such model"),
    ],
)
def test_bad_input_exits_1_with_one_line(capsys, tmp_path, args, message):
    assert cli.main([*args, "--output", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_the_gate_fails_closed_on_nan():
    """``x < nan`` is False: a gate that asks "is it worse?" would pass NaN."""
    nan = float("nan")
    fine = release.Candidate(0.99, 0.99, b"x" * 1000, "float32")
    assert release.gate_reasons(fine, 0.97, 5.0) == []
    assert release.gate_reasons(fine, nan, 5.0) and release.gate_reasons(
        fine, 0.97, nan
    )
    broken = release.Candidate(nan, nan, b"x", "float32")
    assert release.gate_reasons(broken, 0.0, 5.0)
    for min_accuracy, max_size_mb in [(nan, 5.0), (1.5, 5.0), (0.5, nan), (0.5, 0)]:
        with pytest.raises(ValueError, match="min_accuracy|max_size_mb"):
            release.check_gate(min_accuracy, max_size_mb)


def test_a_report_that_fails_mid_publish_leaves_the_old_one(
    built, tmp_path, data_dir, monkeypatch
):
    out = tmp_path / "out"
    out.mkdir()
    old = b'{"published": true, "version": 1}\n'
    (out / release.REPORT_FILE).write_bytes(old)
    (out / "server.json").write_text("{}")  # a running server's: kept
    stale = out / f".cnnlearn-staging-{2**22 + 1}-0badc0de"  # a killed deploy's
    stale.mkdir()
    os.utime(stale, (0, 0))
    kwargs = dict(
        base_path=tmp_path / "models",
        output_dir=out,
        min_accuracy=0.9999,  # refused: the report is all this deploy writes
        verbose=False,
    )
    config = RunConfig(data_dir=data_dir, data_fraction=0.05)
    with monkeypatch.context() as failing:
        fail_the_commit(failing)
        with pytest.raises(OSError, match="injected"):
            release.deploy(built.keras_a, config, **kwargs)
    assert (out / release.REPORT_FILE).read_bytes() == old
    assert sorted(p.name for p in out.iterdir()) == [
        "deploy_report.json",
        "server.json",
    ]

    with pytest.raises(release.GateError) as info:
        release.deploy(built.keras_a, config, **kwargs)
    report = json.loads((out / release.REPORT_FILE).read_text())
    assert report == info.value.report and report["published"] is False
    assert sorted(p.name for p in out.iterdir()) == [
        "deploy_report.json",
        "server.json",
    ]
