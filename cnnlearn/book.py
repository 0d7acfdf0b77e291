"""Run the book's chapters with papermill (chapter 5); build its editions.

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

The editions (the index page's "ways to read it"): ``make book`` builds the
English site, executing every chapter, then :func:`build_zh_site` the Chinese
one into ``_build/html/zh/`` from the same executed notebooks
(:func:`write_edition` writes a source tree of translated copies that is built
with execution off), so both editions show the same numbers. :func:`build_pdf`
makes ``cnnlearn-en.pdf`` and ``cnnlearn-zh.pdf`` with XeLaTeX, offline.
"""

from __future__ import annotations

import ast
import copy
import json
import platform
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import yaml

from cnnlearn import translation
from cnnlearn._io import find_upward, write_json
from cnnlearn.config import check_device_name, use_backend

__all__ = [
    "TENSORFLOW_ONLY",
    "book_dir",
    "build_pdf",
    "build_zh_site",
    "check_parameters",
    "clean_outputs",
    "device_note",
    "device_use",
    "edition_config",
    "executed_root",
    "find_chapters",
    "jupyter_book",
    "parse_params",
    "run_book",
    "without_tensorflow_cells",
    "write_edition",
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


# The editions ------------------------------------------------------------------

ZH_LANGUAGE = "zh_CN"
ZH_TITLE = "cnnlearn：卷积神经网络，从数学原理到部署"
# Words the Chinese search must index whole (jieba's own dictionary splits some
# of them); the glossary's terms are added to these.
SEARCH_TERMS = (
    "卷积", "卷积核", "池化", "最大池化", "步幅", "填充", "特征图", "感受野",
    "全连接层", "激活函数", "批量规范化", "暂退法", "数据增广", "知识蒸馏", "剪枝",
    "量化", "算子融合", "模型压缩", "超参数", "分布式训练", "数据并行", "吞吐量",
    "模型服务",
)  # fmt: skip
UNTRANSLATED_NOTE = (
    "```{note}\n本章的中文译文尚未完成：未译的段落以英文原文显示，"
    "代码和输出与英文版相同。\n```\n"
)
ZH_CONTENTS = "\\addto\\captionsenglish{\\renewcommand{\\contentsname}{目录}}\n"
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # \t and \n stay
OUTPUT_WIDTH = 88  # characters per output line in the PDFs: the code's own width
CJK_RUN = re.compile(r"[\u4e00-\u9fff]{2,}")


def executed_root(root: str | Path) -> Path:
    """Where the executed chapters are: ``_build/jupyter_execute`` (myst-nb
    leaves each notebook it executed there, as ``book/<chapter>.ipynb``) when it
    holds every chapter, else ``root`` itself, whose committed notebooks carry
    their outputs. Used by :func:`write_edition`."""
    root = Path(root)
    built = root / "_build" / "jupyter_execute"
    chapters = [
        page.relative_to(root)
        for page in translation.toc_pages(root)
        if page.suffix == ".ipynb"
    ]
    return built if all((built / c).is_file() for c in chapters) else root


def plain_output(text: str, width: int = OUTPUT_WIDTH) -> str:
    """An output's text as a PDF prints it: no ANSI escapes, each line as a
    terminal left it (the text after its last carriage return), no other
    control characters, lines longer than ``width`` wrapped."""
    lines = []
    for line in ANSI.sub("", text).split("\n"):
        parts = [p for p in line.split("\r") if p.strip()] or [""]
        line = CONTROL.sub("", parts[-1]).expandtabs()
        if len(line) <= width:
            lines.append(line)
        else:
            lines += textwrap.wrap(line, width, break_on_hyphens=False)
    return "\n".join(lines)


def clean_outputs(notebook: dict, width: int = OUTPUT_WIDTH) -> dict:
    """A copy of ``notebook`` whose text outputs went through
    :func:`plain_output` (streams, ``text/plain``, tracebacks); images, Markdown
    tables and glued values untouched. For the PDFs."""
    result = copy.deepcopy(notebook)
    for cell in result["cells"]:
        for output in cell.get("outputs", []):
            if "text" in output:
                output["text"] = plain_output(_joined(output["text"]), width)
            data = output.get("data", {})
            if "text/plain" in data:
                data["text/plain"] = plain_output(_joined(data["text/plain"]), width)
            if "traceback" in output:
                output["traceback"] = [
                    plain_output(t, width) for t in output["traceback"]
                ]
    return result


def _joined(text: str | list[str]) -> str:
    return text if isinstance(text, str) else "".join(text)


def edition_config(
    root: str | Path,
    lang: str,
    *,
    pdf: bool = False,
    title: str | None = None,
    search_dict: str | Path | None = None,
) -> dict:
    """The ``_config.yml`` of an edition's source tree.

    The book's own, built with execution off and its local Sphinx extensions
    found by absolute path. ``zh`` adds the language, the Chinese ``title``,
    the Chinese search (jieba, with the user dictionary ``search_dict``) and the
    link back to the English pages (both PDFs have the CJK fonts of the book's
    own configuration: the English headings carry Chinese too). A PDF starts
    at ``pdf_root``, a page that only holds the table of contents
    (``toctree_only``): every page of ``_toc.yml`` becomes a chapter.
    """
    root = Path(root)
    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))
    config.setdefault("execute", {})["execute_notebooks"] = "off"
    sphinx = config.setdefault("sphinx", {})
    extensions = sphinx.get("local_extensions") or {}
    sphinx["local_extensions"] = {
        name: str((root / path).resolve()) for name, path in extensions.items()
    }
    conf = sphinx.setdefault("config", {})
    target = f"cnnlearn-{lang}.tex"
    config.setdefault("latex", {}).setdefault("latex_documents", {})["targetname"] = (
        target
    )
    if lang == "zh":
        config["title"] = title or ZH_TITLE
        conf["language"] = ZH_LANGUAGE
        conf["html_search_language"] = "zh"
        if search_dict is not None:
            conf["html_search_options"] = {"dict": str(Path(search_dict).resolve())}
        conf["cnnlearn_edition"] = {
            "other_root": "../",
            "label": "English",
            "hreflang": "en",
        }
        # Sphinx's LaTeX has no babel language for Chinese: it keeps English's
        # captions, so the table of contents is named here.
        elements = conf.setdefault("latex_elements", {})
        elements["preamble"] = elements.get("preamble", "") + ZH_CONTENTS
    if pdf:
        author = config.get("author", "")
        conf["latex_documents"] = [
            ["pdf_root", target, config["title"], author, "manual", True]
        ]
    return config


def write_edition(
    root: str | Path,
    lang: str,
    output: str | Path,
    *,
    executed: str | Path | None = None,
    pdf: bool = False,
) -> Path:
    """Write an edition's source tree to ``output`` (replacing it).

    Every page of ``root/_toc.yml``, each chapter copied from ``executed``
    (default :func:`executed_root`), so nothing runs again: in translation for
    ``zh`` (:func:`cnnlearn.translation.translate_notebook`; a page not fully
    translated keeps its English cells under a note), its outputs cleaned for a
    PDF (:func:`clean_outputs`). Then ``_toc.yml``, ``_config.yml``
    (:func:`edition_config`) and for ``zh`` the glossary page and the search
    dictionary. Returns ``output``.
    """
    if lang not in ("en", "zh"):
        raise ValueError(f"expected the edition 'en' or 'zh', got {lang!r}")
    root, out = Path(root), Path(output)
    source = Path(executed) if executed is not None else executed_root(root)
    if out.exists():
        shutil.rmtree(out)
    titles = []
    for page in translation.toc_pages(root):
        target = out / page.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        if page.suffix == ".md":
            text = page.read_text(encoding="utf-8")
            text = _zh_markdown(page, text) if lang == "zh" else text
            target.write_text(text, encoding="utf-8")
            titles.append(text)
            continue
        notebook = _executed_notebook(source / page.relative_to(root))
        notebook = _zh_notebook(page, notebook) if lang == "zh" else notebook
        write_json(target, clean_outputs(notebook) if pdf else notebook)
    title = translation.zh_title(titles[0], ZH_TITLE) if titles else None
    chapters = _write_extras(root, lang, out, pdf=pdf, title=title)
    search_dict = out / "jieba_dict.txt" if lang == "zh" else None
    config = edition_config(root, lang, pdf=pdf, title=title, search_dict=search_dict)
    if lang == "zh":  # no English page to link to
        conf = config["sphinx"]["config"]
        conf["cnnlearn_edition"]["skip"] = [c["file"] for c in chapters]
    (out / "_config.yml").write_text(
        yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8"
    )
    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    toc["chapters"] = toc.get("chapters", []) + chapters
    if pdf:
        toc["chapters"].insert(0, {"file": toc["root"]})
        toc["root"] = "pdf_root"
    (out / "_toc.yml").write_text(
        yaml.safe_dump(toc, allow_unicode=True, sort_keys=False), encoding="utf-8"
    )
    return out


def _executed_notebook(path: Path) -> dict:
    """The notebook at ``path``, with its glued values put back as outputs.

    myst-nb's executed copies (``_build/jupyter_execute``) keep the values
    glued with ``display=False`` in ``<chapter>.glue.json`` instead of in the
    cells; a build with execution off finds glue only in cell outputs, so they
    go back into the last code cell, in the form ``glue`` gives them there.
    """
    if not path.is_file():
        raise FileNotFoundError(
            f"no executed notebook {path}: run `make book` first, or build from book/"
        )
    notebook = json.loads(path.read_text(encoding="utf-8"))
    glued = path.with_suffix(".glue.json")
    if glued.is_file():
        code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
        for output in json.loads(glued.read_text(encoding="utf-8")).values():
            prefix = output["metadata"]["scrapbook"]["mime_prefix"]
            data = {prefix + mime: value for mime, value in output["data"].items()}
            code[-1].setdefault("outputs", []).append({**output, "data": data})
    return notebook


def _zh_notebook(page: Path, notebook: dict) -> dict:
    """A chapter in translation; a note under its title while cells are missing."""
    path = translation.translation_path(page)
    entries = translation.load_translation(path) if path.is_file() else {}
    result = translation.translate_notebook(notebook, entries, language=ZH_LANGUAGE)
    if translation.missing_cells(translation.markdown_cells(notebook), entries):
        cells = result["cells"]
        first = next(i for i, c in enumerate(cells) if c["cell_type"] == "markdown")
        note = {"id": "cnnlearn-zh-note", "metadata": {}, "source": UNTRANSLATED_NOTE}
        cells.insert(first + 1, {"cell_type": "markdown", **note})
    return result


def _zh_markdown(page: Path, text: str) -> str:
    path = translation.translation_path(page)
    entries = translation.load_translation(path) if path.is_file() else {}
    return translation.translate_page(text, entries)


def _write_extras(
    root: Path, lang: str, out: Path, *, pdf: bool, title: str | None
) -> list[dict]:
    """The generated pages: the PDF's start page; for ``zh`` the glossary
    (when ``book/zh/glossary.yml`` exists) and jieba's user dictionary. Returns
    the ``_toc.yml`` chapters to add."""
    chapters = []
    if pdf:
        config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))
        (out / "pdf_root.md").write_text(f"# {title or config['title']}\n")
    if lang != "zh":
        return chapters
    terms = list(SEARCH_TERMS)
    glossary = root / "book" / "zh" / "glossary.yml"
    if glossary.is_file():
        page = translation.glossary_page(glossary)
        (out / "book" / "glossary.md").write_text(page, encoding="utf-8")
        chapters.append({"file": "book/glossary"})
        for entry in translation.glossary_entries(glossary):
            terms += CJK_RUN.findall(entry["zh"])
    words = "\n".join(dict.fromkeys(terms))
    (out / "jieba_dict.txt").write_text(words + "\n", encoding="utf-8")
    return chapters


def jupyter_book(
    source: str | Path, builder: str = "html", *, strict: bool = False
) -> str:
    """Build ``source`` with jupyter-book's ``builder`` (``html``, ``latex``)
    into ``source/_build``; the log. ``strict``: every warning is an error,
    as in ``make book``. A failed build raises :class:`ChildProcessError`
    naming its first problems, in one line."""
    exe = Path(sys.executable).with_name("jupyter-book")
    exe = exe if exe.is_file() else shutil.which("jupyter-book")
    if exe is None:
        raise FileNotFoundError("jupyter-book not found: pip install -e '.[dev]'")
    cmd = [str(exe), "build", str(source), "--all", "--builder", builder]
    cmd += ["-W", "-n", "--keep-going"] if strict else []
    run = subprocess.run(
        cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=3600
    )
    log = ANSI.sub("", run.stdout + run.stderr)
    if run.returncode:
        problems = [
            line for line in log.splitlines() if re.search("WARNING|ERROR", line)
        ]
        shown = "; ".join((problems or log.splitlines()[-3:])[:5])
        raise ChildProcessError(f"jupyter-book {builder} of {source} failed: {shown}")
    return log


def build_zh_site(
    root: str | Path,
    *,
    executed: str | Path | None = None,
    source: str | Path | None = None,
    output: str | Path | None = None,
) -> Path:
    """Build the Chinese site: its source tree (:func:`write_edition`, default
    ``_build/zh_src``) built with jupyter-book, execution off, every warning an
    error, copied to ``output`` (default ``_build/html/zh``). Returns it."""
    root = Path(root)
    source = Path(source) if source is not None else root / "_build" / "zh_src"
    write_edition(root, "zh", source, executed=executed)
    jupyter_book(source, "html", strict=True)
    dest = Path(output) if output is not None else root / "_build" / "html" / "zh"
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(source / "_build" / "html", dest)
    return dest


def build_pdf(
    root: str | Path,
    lang: str,
    *,
    executed: str | Path | None = None,
    source: str | Path | None = None,
    output_dir: str | Path | None = None,
) -> Path:
    """Build ``cnnlearn-<lang>.pdf`` with XeLaTeX (Sphinx's LaTeX builder and
    latexmk): math typeset by TeX, figures from the outputs' PNGs, a table of
    contents and page numbers; nothing downloaded. The source tree (default
    ``_build/pdf_src/<lang>``) holds cleaned copies of the executed chapters.
    Returns the PDF, copied into ``output_dir`` (default ``_build/pdf``)."""
    for tool in ("xelatex", "latexmk", "make"):
        if shutil.which(tool) is None:
            raise FileNotFoundError(
                f"{tool} not found: apt-get install texlive-xetex "
                "texlive-lang-chinese texlive-latex-extra latexmk fonts-noto-cjk"
            )
    root = Path(root)
    source = Path(source) if source is not None else root / "_build" / "pdf_src" / lang
    write_edition(root, lang, source, executed=executed, pdf=True)
    jupyter_book(source, "latex")
    latex, name = source / "_build" / "latex", f"cnnlearn-{lang}"
    run = subprocess.run(
        ["make", "-C", str(latex), f"{name}.pdf",
         "LATEXMKOPTS=-interaction=nonstopmode -halt-on-error"],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=3600,
    )  # fmt: skip
    log = latex / f"{name}.log"
    if run.returncode or not (latex / f"{name}.pdf").is_file():
        text = log.read_text(errors="replace") if log.is_file() else run.stdout
        errors = [line for line in text.splitlines() if line.startswith("!")]
        shown = "; ".join(errors[:3]) or run.stderr.strip()[-300:]
        raise ChildProcessError(f"xelatex failed on {name}.tex: {shown} (see {log})")
    out = Path(output_dir) if output_dir is not None else root / "_build" / "pdf"
    out.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy2(latex / f"{name}.pdf", out / f"{name}.pdf"))
