"""Run the book's chapters with papermill: ``cnnlearn book run`` (chapter 5).

The same chapters run on a laptop CPU, a GPU box or a TPU: only the injected
parameters change (``device``, ``precision`` where a chapter has it, and any
``--param NAME=VALUE``). Each executed notebook is written under the output
directory, never over the committed one, and ``summary.json`` records per
chapter the parameters, the duration, the key metrics the chapter wrote (the
numbers in its ``metrics.json`` files) and whether it passed.

``--backend jax`` (or ``torch``) starts every chapter's kernel with that
``KERAS_BACKEND``; a notebook never switches backend inside its kernel. Cells
tagged :data:`TENSORFLOW_ONLY` (``tf.distribute``, which trains Keras models
only on TensorFlow) print that they were skipped instead of running there.
"""

from __future__ import annotations

import ast
import json
import platform
import time
from pathlib import Path

from cnnlearn._io import find_upward, write_json
from cnnlearn.config import check_device_name, use_backend

__all__ = [
    "TENSORFLOW_ONLY",
    "book_dir",
    "check_parameters",
    "device_note",
    "device_use",
    "find_chapters",
    "parse_params",
    "run_book",
    "without_tensorflow_cells",
]

TENSORFLOW_ONLY = "tensorflow-only"  # the cell tag


def book_dir(path: str | Path | None = None) -> Path:
    """The chapters' folder: ``path``, or ``book/`` beside the ``_toc.yml`` found
    from the working directory up (see :func:`cnnlearn._io.find_upward`)."""
    if path is not None:
        return Path(path)
    toc = find_upward("_toc.yml")
    if toc is None:
        raise FileNotFoundError(
            f"no _toc.yml in {Path.cwd()} or above: run inside a cnnlearn checkout "
            "or pass the book folder"
        )
    return toc.parent / "book"


def parse_params(items: list[str]) -> dict:
    """``["epochs=10", "dataset=fashion_mnist"]`` → ``{"epochs": 10, ...}``.

    Values are read as Python literals where they are one (numbers, ``None``,
    ``True``, quoted strings, lists), else kept as strings.
    """
    params = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip().isidentifier():
            raise ValueError(f"expected --param NAME=VALUE, got {item!r}")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        params[name.strip()] = value
    return params


def find_chapters(names: list[str], book_path: str | Path | None = None) -> list[Path]:
    """The chapter notebooks named by number (``"04"``, ``"4"``), stem
    (``"04_mnist_training"``) or path; all of them for an empty list."""
    book = book_dir(book_path)
    chapters = sorted(book.glob("*.ipynb"))
    if not chapters:
        raise FileNotFoundError(f"no chapter notebooks (*.ipynb) in {book}")
    if not names:
        return chapters
    found = []
    for name in names:
        stem = Path(name).stem
        matches = [
            c
            for c in chapters
            if c.stem == stem
            or (stem.isdigit() and c.stem.split("_")[0].lstrip("0") == stem.lstrip("0"))
        ]
        if len(matches) != 1:
            known = ", ".join(c.stem for c in chapters)
            raise ValueError(f"unknown chapter {name!r}: expected one of {known}")
        found.append(matches[0])
    return found


def check_parameters(
    chapters: list[Path],
    device: str = "auto",
    precision: str | None = None,
    params: dict | None = None,
) -> list[dict]:
    """Check the parameters against each chapter's ``parameters`` cell
    (``papermill.inspect_notebook``) before anything runs.

    A parameter is injected into the chapters that declare it; one that no
    selected chapter declares is an error. Returns per chapter the parameters
    to inject and those skipped.
    """
    import papermill  # optional: in the "dev" extra, not a core dependency

    wanted = {"device": device, **(params or {})}
    if precision is not None:
        wanted["precision"] = precision
    declared = {c: set(papermill.inspect_notebook(str(c))) for c in chapters}
    everywhere = set().union(*declared.values())
    unknown = sorted(set(params or {}) - everywhere)
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {', '.join(unknown)}: the chapters "
            f"{', '.join(c.stem for c in chapters)} declare {sorted(everywhere)}"
        )
    check_device_name(device)  # the name now; run_book checks it is there
    steps = []
    for chapter in chapters:
        names = declared[chapter]
        if "device" not in names or "output_dir" not in names:
            raise ValueError(
                f"{chapter.name}: its parameters cell lacks device or output_dir"
            )
        steps.append(
            {
                "chapter": chapter.stem,
                "path": chapter,
                "parameters": {k: v for k, v in wanted.items() if k in names},
                "skipped": sorted(k for k in wanted if k not in names),
                "device_use": device_use(chapter),
            }
        )
    return steps


def device_use(chapter: str | Path) -> dict[str, str]:
    """What a chapter runs on the device it is given, and what runs on the CPU
    whatever the device: its notebook metadata ``cnnlearn.device_use``
    (``{"device": ..., "cpu": ...}``), shown by ``cnnlearn book run --dry-run``."""
    meta = json.loads(Path(chapter).read_text(encoding="utf-8"))["metadata"]
    use = meta.get("cnnlearn", {}).get("device_use") or {}
    if not {"device", "cpu"} <= set(use):
        raise ValueError(f"{Path(chapter).name}: no cnnlearn.device_use metadata")
    return use


def device_note(chapter: str, device: str = "auto") -> str:
    """One line for a chapter's output: the device asked for, the one it got
    (:func:`cnnlearn.compute.resolve_device`) and what runs where."""
    from cnnlearn import compute  # Keras: only when a chapter asks

    (path,) = find_chapters([chapter])
    use = device_use(path)
    return (
        f"device={device!r} → {compute.resolve_device(device)}. "
        f"On it: {use['device']}. On the CPU whatever the device: {use['cpu']}."
    )


def _key_metrics(directory: Path) -> dict:
    """The scalar numbers of every ``metrics.json`` a chapter wrote."""
    found = {}
    for path in sorted(directory.rglob("metrics.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        scalars = {
            k: v
            for k, v in data.items()
            if isinstance(v, (int, float, str, bool)) and not isinstance(v, dict)
        }
        found[str(path.parent.relative_to(directory)) or "."] = scalars
    return found


def _refuse_inside_book(output: Path, book: Path) -> None:
    """Raise unless ``output`` lies outside the book: never over its notebooks."""
    output = output.resolve()
    if output == book.resolve() or book.resolve() in output.parents:
        raise ValueError(
            f"output directory {output} is inside the book ({book}): the runner "
            "never overwrites the committed notebooks; choose another directory"
        )


def run_book(
    chapters: list[str] | None = None,
    *,
    output_dir: str | Path,
    device: str = "auto",
    precision: str | None = None,
    params: dict | None = None,
    timeout: float = 1800.0,
    book_path: str | Path | None = None,
    kernel_name: str = "python3",
    backend: str | None = None,
) -> dict:
    """Execute chapters with papermill; write them and ``summary.json``.

    Parameters
    ----------
    chapters
        Names for :func:`find_chapters`; all chapters when empty.
    output_dir
        Gets ``<chapter>.ipynb`` (executed), ``<chapter>/`` (the chapter's own
        ``output_dir``) and ``summary.json``. It may not lie inside the book.
    device, precision, params
        Injected where a chapter's ``parameters`` cell declares them (see
        :func:`check_parameters`); ``precision=None`` leaves each chapter's
        default.
    timeout
        Seconds per cell.
    backend
        The Keras backend of every chapter's kernel (see
        :func:`cnnlearn.config.use_backend`); ``None`` keeps ``$KERAS_BACKEND``.
        Not TensorFlow: the cells tagged :data:`TENSORFLOW_ONLY` are skipped
        (:func:`without_tensorflow_cells`).

    Returns
    -------
    dict
        The summary: per chapter ``parameters``, ``skipped_parameters``,
        ``seconds``, ``ok``, ``error`` and ``metrics``. A failed chapter does not
        stop the others. Used in chapter 5.
    """
    if backend is not None:
        use_backend(backend)  # this process and the kernels it starts
    # Imported here: the device check and training's software versions load
    # Keras, which finding and checking chapters does not need.
    from cnnlearn import compute
    from cnnlearn.train import versions

    book = book_dir(book_path)
    out = Path(output_dir)
    _refuse_inside_book(out, book)
    steps = check_parameters(
        find_chapters(chapters or [], book), device, precision, params
    )
    compute.resolve_device(device)  # once, before any chapter starts
    out.mkdir(parents=True, exist_ok=True)
    summary = {
        "device": device,
        "precision": precision,
        "parameters": params or {},
        "machine": {"platform": platform.platform(), "processor": platform.machine()},
        "versions": versions(),
        "chapters": [],
    }
    for step in steps:
        summary["chapters"].append(
            _run_chapter(step, out, book, timeout=timeout, kernel_name=kernel_name)
        )
        write_json(out / "summary.json", summary)
    return summary


def without_tensorflow_cells(path: str | Path, backend: str) -> tuple[dict, int]:
    """The notebook at ``path`` as JSON, with each cell tagged
    :data:`TENSORFLOW_ONLY` replaced by a line saying it was skipped, unless
    ``backend`` is TensorFlow; and how many cells were replaced (chapter 5)."""
    notebook = json.loads(Path(path).read_text())
    if backend == "tensorflow":
        return notebook, 0
    skipped = 0
    for cell in notebook["cells"]:
        if TENSORFLOW_ONLY in cell.get("metadata", {}).get("tags", []):
            why = (
                f"skipped on the {backend} backend: tf.distribute trains on TensorFlow"
            )
            cell["source"] = f"print({why!r})"
            skipped += 1
    return notebook, skipped


def _run_chapter(
    step: dict,
    output_dir: Path,
    book: Path,
    *,
    timeout: float = 1800.0,
    kernel_name: str = "python3",
) -> dict:
    """Execute one chapter of :func:`check_parameters`' ``steps`` with papermill.

    The executed notebook goes to ``output_dir/<chapter>.ipynb``, the chapter's
    own files to ``output_dir/<chapter>/``. Returns its record for
    ``summary.json``: the injected ``parameters``, ``skipped_parameters``,
    ``ok``, ``error``, ``seconds`` and the ``metrics`` it wrote. A failure is
    recorded, not raised, so the other chapters still run.
    """
    import keras
    import papermill  # optional: in the "dev" extra, not a core dependency

    chapter_out = (output_dir / step["chapter"]).resolve()
    injected = {**step["parameters"], "output_dir": str(chapter_out)}
    executed = output_dir / f"{step['chapter']}.ipynb"
    notebook, skipped = without_tensorflow_cells(step["path"], keras.config.backend())
    source = output_dir / f".{step['chapter']}.input.ipynb"
    write_json(source, notebook)
    record = {
        "chapter": step["chapter"],
        "executed": str(executed),
        "parameters": injected,
        "skipped_parameters": step["skipped"],
        "skipped_cells": skipped,
    }
    start = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(source),
            str(executed),
            parameters=injected,
            cwd=str(book),
            kernel_name=kernel_name,
            progress_bar=False,
            execution_timeout=timeout,
        )
        record.update(ok=True, error="")
    except Exception as exc:  # noqa: BLE001  (recorded: the others still run)
        text = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        record.update(ok=False, error=text[:2000])
    finally:
        source.unlink(missing_ok=True)
    record["seconds"] = time.perf_counter() - start
    record["metrics"] = _key_metrics(chapter_out) if chapter_out.is_dir() else {}
    return record
