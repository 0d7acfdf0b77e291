"""Every number checked: the prose cannot drift from the code that made it.

Fast checks on the committed chapters (no kernel starts):

* prose states no measured-looking number that is not glued from a cell
  (``{glue:text}`` from ``myst_nb.glue``), apart from the commented allow-list;
* every cell that glues a number or renders a ``benchmarks/results`` file is one
  that nbval re-executes and compares (``nbval-check-output``), so a stale output
  or a stale result file fails ``make test``;
* nbval compares most of each chapter's outputs;
* stored outputs are what a reader should see: no ANSI escapes, no TensorFlow or
  gRPC log lines, no ``# NBVAL_`` comments in the code a reader copies.
"""

from __future__ import annotations

import re

import nbformat
import pytest
from conftest import REPO

CHAPTERS = sorted((REPO / "book").glob("*.ipynb"))
CHECK = "nbval-check-output"
# At least this share of each chapter's code cells with output is compared.
MIN_CHECKED_SHARE = 0.6

UNIT = (
    r"(?:%|×|x\b|ms\b|µs\b|s\b|s/epoch|seconds?\b|minutes?\b|hours?\b|[KMG]i?B\b|"
    r"kB\b|bytes\b|img/s|images/s|req/s|requests/s|params\b|parameters\b|"
    r"[GMT]FLOP|FLOPs?\b|points?\b|times\b|fold\b)"
)
NUMBER = r"(?<![\w.])(?:\d[\d,]*(?:\.\d+)?|\.\d+)"
WORD_NUMBER = r"\b(?:two|three|four|five|six|seven|eight|nine|ten|twenty|hundred)"
MEASURED = re.compile(
    rf"{NUMBER}\s?(?:[-–]\s?{NUMBER}\s?)?{UNIT}"
    rf"|{WORD_NUMBER}\s+(?:times|fold)\b|\btwice\s+as\b|\bhalf\s+as\b",
    re.IGNORECASE,
)
# Text a number may stand in without being a measurement of this book.
NOT_PROSE = re.compile(
    r"```.*?```"  # code and directive blocks (graphviz)
    r"|\$\$.*?\$\$|\$[^$\n]*\$"  # math: formulas and their constants
    r"|\{glue:\w+\}`[^`]*`"  # glued: printed by a cell
    r"|`[^`\n]*`"  # code spans: parameter values, calls
    r"|\]\([^)\s]*\)",  # link targets
    re.S,
)

# The allow-list: text that holds a number without being a measurement of this
# book. Shared here: sizes that define the data and the layers. Each chapter keeps
# its own beside its prose, in the notebook's metadata, one reason per entry:
#   "cnnlearn": {"allowed_numbers": [{"text": "...", "why": "..."}]}
# (the article's claims, quoted so the chapter can check them; definitions).
ALLOWED = ["28×28", "3×3", "2×2", "28×28×1", "224×224", "92×112"]


def allowed_numbers(nb: nbformat.NotebookNode) -> list[str]:
    entries = nb.metadata.get("cnnlearn", {}).get("allowed_numbers", [])
    assert all(e.get("why") for e in entries), "every allowed number needs a why"
    return ALLOWED + [e["text"] for e in entries]


def prose(cell: nbformat.NotebookNode) -> str:
    return NOT_PROSE.sub(" ", cell.source)


def unglued_numbers(path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    allowed = allowed_numbers(nb)
    found = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        text = prose(cell)
        for phrase in allowed:
            text = text.replace(phrase, " ")
        for match in MEASURED.finditer(text):
            context = text[max(0, match.start() - 30) : match.end() + 10]
            found.append(f"cell {index}: {' '.join(context.split())!r}")
    return found


def code_cells(path) -> list[nbformat.NotebookNode]:
    nb = nbformat.read(path, as_version=4)
    return [c for c in nb.cells if c.cell_type == "code"]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_prose_numbers_are_glued(path):
    """A measured number in Markdown is glued from the cell that computed it."""
    assert not unglued_numbers(path), "\n".join(unglued_numbers(path))


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_glued_and_result_cells_are_compared(path):
    """nbval re-executes and compares every cell that glues a number or shows a
    benchmark result file: prose and tables cannot go stale unnoticed."""
    unchecked = [
        c.source.splitlines()[0]
        for c in code_cells(path)
        if re.search(r"\bglue\(|load_benchmark\(", c.source)
        and CHECK not in c.metadata.get("tags", [])
    ]
    assert not unchecked, f"tag these cells {CHECK}: {unchecked}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_most_outputs_are_compared(path):
    with_output = [c for c in code_cells(path) if c.outputs]
    checked = [c for c in with_output if CHECK in c.metadata.get("tags", [])]
    share = len(checked) / len(with_output)
    assert share >= MIN_CHECKED_SHARE, f"{len(checked)} of {len(with_output)} compared"


READER_NOISE = re.compile(
    r"\x1b\[|INFO:tensorflow|WARNING:tensorflow|^[EWI]\d{4} \d\d:\d\d|"
    r"E0000 |W0000 |I0000 |oneDNN custom operations",
    re.M,
)


def output_text(output: nbformat.NotebookNode) -> str:
    if output.output_type == "stream":
        return output.text
    data = output.get("data", {})
    return "\n".join(str(v) for k, v in data.items() if k.startswith("text/"))


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_outputs_are_reader_facing(path):
    """No terminal colour codes, log lines or nbval comments in what a reader sees."""
    noisy = [
        READER_NOISE.search(output_text(o)).group(0)
        for c in code_cells(path)
        for o in c.outputs
        if READER_NOISE.search(output_text(o))
    ]
    assert not noisy, noisy
    assert not [c for c in code_cells(path) if "NBVAL_" in c.source]


def test_scan_catches_typed_numbers(tmp_path):
    """The scan itself: typed measurements fail, glued ones and definitions pass."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("It reaches 98.03 % in 3.0 s/epoch."),
        nbformat.v4.new_markdown_cell("A teacher ten times larger, 1.6× faster."),
        nbformat.v4.new_markdown_cell(
            "It reaches {glue:text}`acc:.2%` on 28×28 images with `batch_size=32` "
            "and $3 \\times 3$ kernels; 54,410 parameters."
        ),
    ]
    path = tmp_path / "99_test.ipynb"
    nbformat.write(nb, path)
    found = unglued_numbers(path)
    assert [f.split(":")[0] for f in found] == ["cell 0"] * 2 + ["cell 1"] * 2 + [
        "cell 2"
    ]
    assert "54,410 parameters" in found[-1]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_result_files_are_shown_with_their_provenance(path):
    """A chapter that reads a result file prints how it was made: its notes under
    a table (``markdown_table(..., source=)``), or the summary's provenance column."""
    code = "\n".join(c.source for c in code_cells(path))
    if "load_benchmark(" in code:
        shown = ("source=", "provenance.notes(", "chapter_summary(")
        assert any(s in code for s in shown), "print the result file's notes"
