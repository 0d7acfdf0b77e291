"""The Chinese edition's translations: load, check and apply them (中文版).

One YAML file per page beside the chapters, ``book/zh/<stem>.yml``, keyed by
the notebook's cell ids (``page`` for ``index.md``, the whole page). Each entry
keeps ``source``, the first 16 hex digits of the SHA-256 of the English text it
translates, and ``zh``, the translation::

    page: 01_concepts.ipynb
    cells:
      ec6c496e:
        source: a0682d7c77cf80f3
        zh: |
          # 1. 背景介绍与核心概念 (Background and core concepts)

Only prose is translated: code cells, their outputs, figures and glued numbers
are the English edition's own, so the two editions cannot disagree on a number.
A translation is *stale* when the English cell changed after it was written
(:func:`stale_cells`), *missing* when a cell has none (:func:`missing_cells`)
and an *orphan* when its cell no longer exists (:func:`orphan_cells`).
:func:`check_translations` runs all three over every page of ``_toc.yml``
except those in :data:`UNTRANSLATED`. Used by the book's Chinese edition (the
index page's ways to read it: ``make book``) and ``cnnlearn book
check-translations``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path

import yaml

__all__ = [
    "UNTRANSLATED",
    "check_translations",
    "english_cells",
    "glossary_entries",
    "glossary_page",
    "load_translation",
    "markdown_cells",
    "missing_cells",
    "orphan_cells",
    "page_status",
    "source_hash",
    "stale_cells",
    "status_lines",
    "toc_pages",
    "translate_notebook",
    "translate_page",
    "translation_path",
    "zh_title",
]

# The one allow-list: pages whose translation may be missing or stale (a page
# whose English is being rewritten); the zh edition shows them in English with a
# note. Every other page of _toc.yml must be fully translated, and a page here
# whose translation is complete must leave the list (check_translations). Empty:
# every page is translated.
UNTRANSLATED: tuple[str, ...] = ()
PAGE_KEY = "page"  # index.md: the whole page is one entry
HASH = re.compile(r"[0-9a-f]{16}")


def source_hash(text: str) -> str:
    """The first 16 hex digits of the SHA-256 of ``text`` (UTF-8): what a
    translation stores as ``source``."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def translation_path(page: str | Path) -> Path:
    """``book/zh/<stem>.yml`` for the page ``book/<stem>.ipynb`` or ``.md``."""
    page = Path(page)
    return page.parent / "zh" / f"{page.stem}.yml"


def load_translation(path: str | Path) -> dict[str, dict[str, str]]:
    """The entries of a translation file: ``{cell id: {"source", "zh"}}``.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Not YAML, no ``cells`` mapping, or an entry without its ``source``
        hash or ``zh`` text (one line naming the file and the cell).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no translation file {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ValueError(f"{path}: not valid YAML{line}: {problem}") from None
    cells = data.get("cells") if isinstance(data, dict) else None
    if not isinstance(cells, dict):
        found = type(cells if isinstance(data, dict) else data).__name__
        raise ValueError(f"{path}: expected a 'cells' mapping, found {found}")
    return {str(key): _entry(path, str(key), value) for key, value in cells.items()}


def _entry(path: Path, key: str, value: object) -> dict[str, str]:
    """One checked entry of :func:`load_translation`."""
    if not isinstance(value, dict):
        raise ValueError(f"{path}: cell {key}: expected a mapping, found {value!r}")
    zh, source = value.get("zh"), value.get("source")
    if not isinstance(zh, str) or not zh.strip():
        raise ValueError(f"{path}: cell {key}: expected 'zh' text, found {zh!r}")
    if not isinstance(source, str) or not HASH.fullmatch(source):
        raise ValueError(
            f"{path}: cell {key}: expected 'source' as 16 hex digits, found "
            f"{source!r} (quote a hash that YAML reads as a number)"
        )
    return {"source": source, "zh": zh}


def markdown_cells(notebook: dict) -> dict[str, str]:
    """``{cell id: source}`` of a notebook's markdown cells, in order."""
    cells = {}
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        if not cell.get("id"):
            raise ValueError(f"markdown cell {index} has no id (nbformat >= 4.5)")
        source = cell["source"]
        cells[cell["id"]] = source if isinstance(source, str) else "".join(source)
    return cells


def english_cells(page: str | Path) -> dict[str, str]:
    """What a page's translation translates: its markdown cells by id, or for a
    Markdown page the whole text under the key ``page``."""
    page = Path(page)
    text = page.read_text(encoding="utf-8")
    if page.suffix == ".md":
        return {PAGE_KEY: text}
    return markdown_cells(json.loads(text))


def stale_cells(english: dict[str, str], translation: dict) -> list[str]:
    """Ids whose English text changed since it was translated."""
    return [
        key
        for key, text in english.items()
        if key in translation and translation[key]["source"] != source_hash(text)
    ]


def missing_cells(english: dict[str, str], translation: dict) -> list[str]:
    """Ids of English cells that have no translation."""
    return [key for key in english if key not in translation]


def orphan_cells(english: dict[str, str], translation: dict) -> list[str]:
    """Ids in the translation that the page no longer has."""
    return [key for key in translation if key not in english]


def page_status(page: str | Path) -> dict:
    """A page's translation state: ``file`` (whether it exists), and the ids
    ``missing``, ``stale`` and ``orphans`` (every cell is missing without a
    file). Used by ``cnnlearn book translation-status``."""
    page = Path(page)
    english = english_cells(page)
    path = translation_path(page)
    translation = load_translation(path) if path.is_file() else {}
    return {
        "page": page.name,
        "file": path.is_file(),
        "english": english,
        "missing": missing_cells(english, translation),
        "stale": stale_cells(english, translation),
        "orphans": orphan_cells(english, translation),
    }


def status_lines(status: dict, *, sources: bool = True) -> list[str]:
    """What a translator needs for one page of :func:`page_status`: per stale or
    missing cell its id, the hash to store and (``sources``) the English text."""
    lines = []
    for kind in ("missing", "stale"):
        for key in status[kind]:
            text = status["english"][key]
            lines.append(
                f"=== {status['page']} {key} {kind} source: {source_hash(text)}"
            )
            if sources:
                lines += [text.rstrip("\n"), ""]
    lines += [f"=== {status['page']} {key} orphan: remove" for key in status["orphans"]]
    return lines


def toc_pages(root: str | Path) -> list[Path]:
    """Every page of ``root/_toc.yml`` (``root`` and ``file`` entries), in order,
    as the existing ``.ipynb`` or ``.md`` file."""
    root = Path(root)
    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    pages = []
    for doc in _toc_docs(toc):
        found = [root / f"{doc}{ext}" for ext in (".ipynb", ".md")]
        found = [p for p in found if p.is_file()] or [root / doc]
        if not found[0].is_file():
            raise FileNotFoundError(f"_toc.yml names {doc}, found no .ipynb or .md")
        pages.append(found[0])
    return pages


def _toc_docs(node: object) -> list[str]:
    """The ``root``/``file`` entries of a ``_toc.yml`` tree, in order."""
    if isinstance(node, list):
        return [doc for item in node for doc in _toc_docs(item)]
    if not isinstance(node, dict):
        return []
    own = [re.sub(r"\.(md|ipynb)$", "", node[k]) for k in ("root", "file") if k in node]
    return own + [doc for value in node.values() for doc in _toc_docs(value)]


def check_translations(
    root: str | Path, untranslated: tuple[str, ...] | None = None
) -> list[str]:
    """One line per problem over every page of ``root/_toc.yml``: a missing
    file, missing, stale or orphan cells; pages in ``untranslated`` are let
    off, but one listed there whose translation is complete is a problem too
    (the list only shrinks); ``None``: :data:`UNTRANSLATED`. Empty when both
    editions agree. Used by the zh edition's test and ``cnnlearn book
    check-translations``."""
    untranslated = UNTRANSLATED if untranslated is None else untranslated
    problems = []
    for page in toc_pages(root):
        status = page_status(page)
        bad = {k: status[k] for k in ("missing", "stale", "orphans") if status[k]}
        if page.stem in untranslated:
            if status["file"] and not bad:
                problems.append(
                    f"{page.name}: fully translated, remove it from UNTRANSLATED"
                )
            continue
        if not status["file"]:
            problems.append(
                f"{page.name}: no translation file {translation_path(page)}"
            )
            continue
        problems += [
            f"{page.name}: {len(ids)} {kind} cell(s): {', '.join(ids)}"
            for kind, ids in bad.items()
        ]
    return problems


def translate_notebook(
    notebook: dict, translation: dict, *, language: str = "zh_CN"
) -> dict:
    """A copy of ``notebook`` with each translated markdown cell's source
    replaced; code cells and every output untouched; ``metadata.language`` set.

    Cells without a translation stay English. An id the notebook lacks is an
    error (its English cell was removed or renamed).
    """
    english = markdown_cells(notebook)
    orphans = orphan_cells(english, translation)
    if orphans:
        raise ValueError(
            f"translation has cell ids the notebook lacks: {', '.join(orphans)}"
        )
    result = copy.deepcopy(notebook)
    for cell in result["cells"]:
        if cell["cell_type"] == "markdown" and cell["id"] in translation:
            cell["source"] = translation[cell["id"]]["zh"]
    result["metadata"]["language"] = language
    return result


def translate_page(text: str, translation: dict) -> str:
    """A Markdown page (``index.md``) in translation: its ``page`` entry, or the
    English text when there is none. Other keys are an error."""
    orphans = orphan_cells({PAGE_KEY: text}, translation)
    if orphans:
        raise ValueError(
            f"a Markdown page's translation has one key '{PAGE_KEY}', "
            f"found {', '.join(orphans)}"
        )
    return translation[PAGE_KEY]["zh"] if PAGE_KEY in translation else text


def zh_title(index_zh: str, default: str) -> str:
    """The Chinese title: the first ``# `` heading of the translated index
    without its English in parentheses; ``default`` without one."""
    for line in index_zh.splitlines():
        if line.startswith("# "):
            title = re.sub(r"\s*[(（][^()（）]*[)）]\s*$", "", line[2:]).strip()
            return title or default
    return default


def glossary_entries(path: str | Path) -> list[dict[str, str]]:
    """The entries of ``book/zh/glossary.yml``: a list of ``{zh, en, note}``
    mappings (or a mapping holding one such list), in the file's order."""
    path = Path(path)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if isinstance(data, dict):
        data = next((v for v in data.values() if isinstance(v, list)), None)
    if not isinstance(data, list) or not all(
        isinstance(e, dict) and e.get("zh") and e.get("en") for e in data
    ):
        raise ValueError(f"{path}: expected a list of {{zh, en, note}} entries")
    return [
        {"zh": str(e["zh"]), "en": str(e["en"]), "note": str(e.get("note") or "")}
        for e in data
    ]


def glossary_page(path: str | Path) -> str:
    """The zh edition's glossary page (Markdown): :func:`glossary_entries` as a
    table."""
    rows = ["| 中文 | English | 说明 |", "| --- | --- | --- |"]
    for entry in glossary_entries(path):
        cells = [entry[k].replace("|", "\\|") for k in ("zh", "en", "note")]
        rows.append("| " + " | ".join(cells) + " |")
    head = "# 术语表 (Glossary)\n\n本书使用的中英文术语对照。\n\n"
    return head + "\n".join(rows) + "\n"
