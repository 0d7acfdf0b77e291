"""The chapters as parameterized runs (papermill). nbval re-runs them at their
defaults against the stored outputs: see the Makefile's ``test`` target."""

from __future__ import annotations

import json

import nbformat
import pytest
from conftest import REPO

CHAPTERS = sorted((REPO / "book").glob("*.ipynb"))


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_skeleton(path):
    """Design card: title with the Chinese heading, a parameters cell with the
    shared knobs, committed outputs and no stored errors."""
    nb = nbformat.read(path, as_version=4)
    title = nb.cells[0].source.splitlines()[0]
    assert title.startswith("# ") and any("\u4e00" <= ch <= "\u9fff" for ch in title)
    code = [c for c in nb.cells if c.cell_type == "code"]
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, "exactly one cell tagged 'parameters'"
    for knob in ("device", "seed", "data_fraction", "output_dir"):
        assert f"{knob} =" in params[0].source, knob
    assert all(c.execution_count for c in code), "execute it whole before commit"
    assert sum(bool(c.outputs) for c in code) > len(code) // 2, "outputs missing"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]


@pytest.mark.slow
def test_mnist_chapter_with_injected_parameters(tmp_path, data_dir):
    import papermill

    out = tmp_path / "run"
    papermill.execute_notebook(
        REPO / "book" / "04_mnist_training.ipynb",
        tmp_path / "executed.ipynb",
        parameters={
            "epochs": 1,
            "data_fraction": 0.05,
            "batch_size": 64,
            "output_dir": str(out),
            "data_dir": str(data_dir),
            "seed": 1,
        },
        cwd=REPO / "book",
        kernel_name="python3",
        progress_bar=False,
    )
    nb = nbformat.read(tmp_path / "executed.ipynb", as_version=4)
    injected = [
        c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])
    ]
    assert len(injected) == 1 and "data_fraction = 0.05" in injected[0].source
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and metrics["batch_size"] == 64
    assert metrics["seed"] == 1 and metrics["data_fraction"] == 0.05
    assert metrics["n_train"] + metrics["n_val"] == 3000  # 5 % of 60,000
    assert metrics["n_test"] == 10_000 and metrics["test_accuracy"] > 0.5
