"""The benchmark scripts stamp their result files with how they were made.

Every ``benchmarks/*.py`` records its provenance (:mod:`cnnlearn.report.provenance`):
checked in the source of all of them, and by quick real runs of two.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import runpy
import sys
from pathlib import Path

import pytest

from cnnlearn import train

REPO = Path(__file__).resolve().parent.parent
BENCHMARKS = REPO / "benchmarks"
SCRIPTS = sorted(BENCHMARKS.glob("*.py"))


def load(name: str):
    """``benchmarks/<name>.py`` as a module (``benchmarks/`` on the path, as run)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location(
            f"bench_{name}", BENCHMARKS / f"{name}.py"
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


def run_script(name: str, *args: str, monkeypatch) -> None:
    """Run ``benchmarks/<name>.py args`` in this process, as its command line."""
    script = BENCHMARKS / f"{name}.py"
    monkeypatch.setattr(sys, "argv", [str(script), *args])
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    runpy.run_path(str(script), run_name="__main__")


def provenance_calls(path: Path) -> set[str]:
    """The ``provenance.<name>(...)`` functions a script calls."""
    return {
        node.func.attr
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "provenance"
    }


def test_make_benchmarks_runs_every_script():
    """``make benchmarks`` runs each script (``gpu.py`` needs a GPU machine)."""
    makefile = (REPO / "Makefile").read_text()
    missing = [p.name for p in SCRIPTS if f"benchmarks/{p.name}" not in makefile]
    assert len(SCRIPTS) >= 10 and not missing, missing


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.stem)
def test_every_benchmark_records_its_provenance(path):
    calls = provenance_calls(path)
    missing = {"start", "finish", "measured_at", "machine"} - calls
    assert not missing, f"{path.name} never calls provenance.{sorted(missing)}"
    source = path.read_text()
    assert "platform.platform()" not in source, "a hand-built machine dict"
    assert '"provenance"' in source, "the record never lands in the result"


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.stem)
def test_every_write_is_preceded_by_finish(path):
    """Each function that writes the result file closes the record first."""
    tree = ast.parse(path.read_text())
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef):
            continue
        calls = [
            node
            for node in ast.walk(function)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name | ast.Attribute)
        ]
        names = [getattr(c.func, "id", getattr(c.func, "attr", "")) for c in calls]
        if "write_json" in names:
            assert "finish" in names, f"{path.name}:{function.name} writes unclosed"


def check_record(record: dict, argv_tail: str) -> None:
    for field in ("commit", "command", "config", "machine", "started_at"):
        assert record[field], field
    assert len(record["commit"]) == 40
    assert record["command"].endswith(argv_tail)
    assert record["machine"]["cpu_count"] >= 1 and "keras" in record["machine"]
    start, end = record["load_average"]["start"], record["load_average"]["end"]
    assert len(start) == 3 and len(end) == 3
    assert isinstance(record["noisy"], bool)
    assert record["finished_at"] >= record["started_at"]


def test_conv_ops_writes_a_complete_provenance(tmp_path, data_dir, monkeypatch):
    out = tmp_path / "conv_ops.json"
    args = ["--repeats", "2", "--naive-repeats", "1", "--batch", "2"]
    args += ["--data-dir", str(data_dir), "--output", str(out)]
    run_script("conv_ops", *args, monkeypatch=monkeypatch)
    result = json.loads(out.read_text())
    record = result["provenance"]
    check_record(record, f"--output {out}")
    assert record["config"]["repeats"] == 2 and record["config"]["batch"] == 2
    assert "output" not in record["config"]  # where it went decides no number
    assert (
        result["machine"]["tf_intra_op_threads"]
        == (record["config"]["tf_intra_op_threads"])
    )
    for mode in ("interleaved", "back_to_back"):
        assert record["started_at"] <= result[mode]["measured_at"]
        assert result[mode]["measured_at"] <= record["finished_at"]


@pytest.mark.slow
def test_train_mnist_trains_the_batch_it_records(tmp_path, data_dir, monkeypatch):
    """``--only`` re-measures one run, keeps the others, and says which is which."""
    out = tmp_path / "train_mnist.json"
    legacy = {"runs": {"seed-b128": {"batch_size": 128, "final_test_accuracy": 0.99}}}
    out.write_text(json.dumps(legacy))  # a file from before provenance records
    args = ["--only", "seed-b32", "--epochs", "1", "--data-dir", str(data_dir)]
    run_script("train_mnist", *args, "--output", str(out), monkeypatch=monkeypatch)
    result = json.loads(out.read_text())
    record = result["provenance"]
    check_record(record, f"--output {out}")
    run = result["runs"]["seed-b32"]
    assert run["batch_size"] == run["plan"]["batch_size"] == 32
    assert run["plan"]["precision"] == "float32" and run["plan"]["batch_scale"] == 1
    assert run["steps_per_epoch"] == 60_000 // 32
    assert run["config"] == record["config"]["runs"]["seed-b32"]
    assert run["config"]["epochs"] == 1 and run["config"]["plan"] == train.PLAIN
    assert record["started_at"] <= run["measured_at"] <= record["finished_at"]
    assert result["runs"]["seed-b128"] == legacy["runs"]["seed-b128"]  # kept as is
    (note,) = [n for n in record["notes"] if n.startswith("Merged from")]
    assert f"seed-b32 from the run started {record['started_at']}" in note
    assert "seed-b128 from a run made before result files recorded" in note


def compression_part(config: dict | None, method: str, with_provenance=True) -> dict:
    part = {
        "rows": [{"model": "seed", "method": method, "seed": 0, "accuracy": 0.9}],
        "train_seconds": [1.0],
        "keras_latency": {},
        "ops": {},
        "distillation": {"runs": []},
        "total_seconds": 1.0,
        "machine": {"cpu_count": 2},
    }
    if with_provenance:
        part["provenance"] = {"config": config, "started_at": "2026-12-01T00:00:00Z"}
    elif config is not None:
        part["config"] = config  # a file from before provenance records
    return part


def test_compression_merge_keeps_every_rows_config(tmp_path):
    merge = load("model_compression").merge
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(compression_part({"frontier_epochs": 5}, "int8")))
    b.write_text(json.dumps(compression_part({"frontier_epochs": 2}, "fp16", False)))
    out = tmp_path / "merged.json"
    merge([a, b], out)
    merged = json.loads(out.read_text())
    assert "config" not in merged  # no part's config speaks for the others
    configs = {r["method"]: r["config"]["frontier_epochs"] for r in merged["rows"]}
    assert configs == {"int8": 5, "fp16": 2}
    record = merged["provenance"]
    assert [p["file"] for p in record["parts"]] == ["a.json", "b.json"]
    assert [p["config"] for p in record["parts"]] == [
        {"frontier_epochs": 5},
        {"frontier_epochs": 2},
    ]
    assert record["notes"][0].startswith("Merged from 2 runs (a.json, b.json)")
    assert any(n.startswith("b.json: Made before") for n in record["notes"])
    assert isinstance(record["noisy"], bool) and record["load_average"]["end"]


def test_compression_merge_refuses_rows_of_unknown_config(tmp_path):
    merge = load("model_compression").merge
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(compression_part({"frontier_epochs": 5}, "int8")))
    b.write_text(json.dumps(compression_part(None, "fp16", False)))
    with pytest.raises(ValueError, match="different configs"):
        merge([a, b], tmp_path / "merged.json")
    assert not (tmp_path / "merged.json").exists()


def test_training_benchmarks_pin_the_plans_they_record():
    assert load("train_mnist").PLAN == train.PLAIN
    assert load("serving").PLAN == train.PLAIN  # a copy: serving imports little
    assert load("applications").FASHION_PLAN == train.PLAIN
