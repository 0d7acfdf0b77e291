from __future__ import annotations

import hashlib
import json
import re

import pytest
from conftest import REPO

from cnnlearn import book, cli

BOOK = REPO / "book"


def test_parse_params():
    params = book.parse_params(["epochs=10", "dataset=fashion_mnist", "x=None",
                                  "lr=1e-3", "name='a=b'"])  # fmt: skip
    assert params == {"epochs": 10, "dataset": "fashion_mnist", "x": None,
                      "lr": 0.001, "name": "a=b"}  # fmt: skip
    with pytest.raises(ValueError, match="expected --param NAME=VALUE, got 'epochs'"):
        book.parse_params(["epochs"])


def test_find_chapters():
    assert book.find_chapters(["04"])[0].name == "04_mnist_training.ipynb"
    assert book.find_chapters(["4", "04_mnist_training"])[0].stem.startswith("04")
    assert len(book.find_chapters([])) == len(list(BOOK.glob("*.ipynb")))
    with pytest.raises(ValueError, match="unknown chapter '99'"):
        book.find_chapters(["99"])


def test_check_parameters_checks_parameter_names():
    chapters = book.find_chapters(["01", "04"])
    steps = book.check_parameters(chapters, "gpu", "mixed_float16", {"epochs": 10})
    ch1, ch4 = steps
    assert ch4["parameters"] == {
        "device": "gpu",
        "precision": "mixed_float16",
        "epochs": 10,
    }
    assert {"epochs", "precision"} <= set(ch1["skipped"]) and not ch4["skipped"]
    with pytest.raises(ValueError, match="unknown parameter"):
        book.check_parameters(chapters, params={"epochz": 10})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["book", "run", "99"], "unknown chapter '99'"),
        (["book", "run", "04", "--param", "epochz=1"], "unknown parameter(s) epochz"),
    ],
)
def test_cli_bad_input(capsys, tmp_path, args, message):
    assert cli.main([*args, "--output-dir", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "out" / "summary.json").exists()


def test_never_writes_into_the_book(capsys):
    assert cli.main(["book", "run", "04", "--output-dir", str(BOOK / "runs")]) == 1
    assert "never overwrites the committed notebooks" in capsys.readouterr().err


@pytest.mark.slow
def test_run_one_chapter_with_tiny_parameters(tmp_path, data_dir):
    source = BOOK / "04_mnist_training.ipynb"
    before = hashlib.sha256(source.read_bytes()).hexdigest()
    out = tmp_path / "cpu"
    code = cli.main([
        "book", "run", "04", "--device", "cpu", "--output-dir", str(out),
        "--param", "epochs=1", "--param", "data_fraction=0.02",
        "--param", "batch_size=64", "--param", f"data_dir='{data_dir}'",
    ])  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert code == 0, summary
    (chapter,) = summary["chapters"]
    assert chapter["ok"] and chapter["error"] == "" and chapter["seconds"] > 0
    assert chapter["parameters"]["device"] == "cpu"
    assert chapter["parameters"]["epochs"] == 1
    assert (out / "04_mnist_training.ipynb").is_file()
    metrics = chapter["metrics"]["."]
    assert metrics["epochs"] == 1 and metrics["data_fraction"] == 0.02
    assert metrics["n_train"] + metrics["n_val"] == 1200
    assert 0.5 < metrics["test_accuracy"] <= 1.0
    assert hashlib.sha256(source.read_bytes()).hexdigest() == before


@pytest.mark.parametrize("device", ["gpu", "tpu"])
def test_a_missing_device_stops_the_whole_book_before_any_chapter(
    capsys, tmp_path, device
):
    from cnnlearn import compute

    try:
        compute.resolve_device(device)
        pytest.skip(f"this machine has a {device}")
    except ValueError:
        pass
    out = tmp_path / "out"
    assert cli.main(["book", "run", "--device", device, "--output-dir", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"device='{device}' was asked for" in err and err.count("\n") == 1
    assert not out.exists()  # no chapter started, nothing written


def test_every_chapter_says_what_runs_on_the_device():
    for chapter in book.find_chapters([]):
        use = book.device_use(chapter)
        assert use["device"] and use["cpu"], chapter.name
    note = book.device_note("02", "cpu")
    assert note.startswith("device='cpu' → /CPU:0. On it: Keras training")
    assert "NumPy convolution" in note


def test_dry_run_lists_the_device_use_and_runs_nothing(capsys, tmp_path):
    out = tmp_path / "plan"
    assert (
        cli.main(["book", "run", "--device", "tpu", "--dry-run", "--output", str(out)])
        == 0
    )
    plan = json.loads((out / "plan.json").read_text())
    assert plan["device"] == "tpu" and len(plan["chapters"]) == len(
        book.find_chapters([])
    )
    assert all(c["parameters"]["device"] == "tpu" for c in plan["chapters"])
    assert "02_convolution_math: on tpu:" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["plan.json"]
    assert (
        cli.main(["book", "run", "--device", "npu", "--dry-run", "--output", str(out)])
        == 1
    )
    assert "unknown device 'npu'" in capsys.readouterr().err


@pytest.mark.slow
def test_every_chapter_runs_with_device_cpu(tmp_path, data_dir):
    """nbval runs every chapter at its defaults (``device="auto"``); this runs
    them all again through papermill with ``device="cpu"``."""
    summary = book.run_book([], output_dir=tmp_path / "cpu", device="cpu")
    failed = {c["chapter"]: c["error"] for c in summary["chapters"] if not c["ok"]}
    assert not failed and len(summary["chapters"]) == len(book.find_chapters([]))


def test_tensorflow_only_cells_are_skipped_on_other_backends():
    chapter = BOOK / "05_distributed_training.ipynb"
    same, none = book.without_tensorflow_cells(chapter, "tensorflow")
    assert none == 0 and same == json.loads(chapter.read_text())
    notebook, skipped = book.without_tensorflow_cells(chapter, "jax")
    tagged = [
        c for c in notebook["cells"]
        if book.TENSORFLOW_ONLY in c.get("metadata", {}).get("tags", [])
    ]  # fmt: skip
    assert skipped == len(tagged) >= 6  # the tf.distribute runs and their checks
    for cell in tagged:
        assert cell["source"].startswith("print('skipped on the jax backend")
    untouched = [c for c in notebook["cells"] if c not in tagged]
    assert not any("launch_workers(" in "".join(c["source"]) for c in untouched)
    assert not any("distributed_fit(" in "".join(c["source"]) for c in untouched)


@pytest.mark.slow
def test_chapters_4_and_5_run_on_jax(tmp_path, data_dir):
    """The issue's check: ``book run 04 05 --backend jax`` under papermill, in a
    process of its own (a process keeps the backend Keras started with)."""
    import os
    import subprocess
    import sys

    out = tmp_path / "jax"
    argv = ["book", "run", "04", "05", "--backend", "jax", "--device", "cpu"]
    argv += ["--param", "epochs=1", "--param", "data_fraction=0.05"]
    argv += ["--output-dir", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "cnnlearn.cli", *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "CNNLEARN_DATA_DIR": str(data_dir)},
        timeout=1800,
    )
    summary = json.loads((out / "summary.json").read_text())
    assert done.returncode == 0, [c["error"] for c in summary["chapters"]]
    assert summary["versions"]["backend"] == "jax"
    ch4, ch5 = summary["chapters"]
    assert ch4["skipped_cells"] == 0 and ch5["skipped_cells"] >= 6
    executed = (out / "04_mnist_training.ipynb").read_text()
    assert re.search(r"backend +jax", executed)  # the plan chapter 4 printed
