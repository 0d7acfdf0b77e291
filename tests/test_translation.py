from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from cnnlearn import translation


def notebook(*cells: tuple[str, str, str]) -> dict:
    """A notebook of (id, type, source) cells; each code cell has one output."""
    made = []
    for key, kind, source in cells:
        cell = {"cell_type": kind, "id": key, "metadata": {}, "source": source}
        if kind == "code":
            output = {"name": "stdout", "output_type": "stream", "text": "0.9912\n"}
            cell.update(execution_count=1, outputs=[output])
        made.append(cell)
    meta = {"kernelspec": {"name": "python3", "display_name": "Python 3"}}
    return {"cells": made, "metadata": meta, "nbformat": 4, "nbformat_minor": 5}


CHAPTER = notebook(
    ("t1", "markdown", "# 1. Title (标题)\n\nSome prose."),
    ("c1", "code", "print(0.9912)"),
    ("m2", "markdown", "Accuracy: {glue:text}`acc`."),
)


def entry(english: str, zh: str) -> dict:
    return {"source": translation.source_hash(english), "zh": zh}


def write_yaml(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_source_hash_is_the_sha256_prefix_of_the_utf8_text():
    assert translation.source_hash("abc") == "ba7816bf8f01cfea"
    text = "卷积 (convolution)"
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    assert translation.source_hash(text) == digest[:16]


def test_load_translation_reads_entries(tmp_path):
    path = write_yaml(
        tmp_path / "01.yml",
        {"page": "01.ipynb", "cells": {"t1": entry("x", "# 1. 标题 (Title)\n")}},
    )
    loaded = translation.load_translation(path)
    assert loaded == {
        "t1": {"source": translation.source_hash("x"), "zh": "# 1. 标题 (Title)\n"}
    }


HEX = "0123456789abcdef"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"cells: {{t1: {{source: {HEX}, zh: [open\n", "not valid YAML at line"),
        ("- just\n- a list\n", "expected a 'cells' mapping, found list"),
        (f"cells: {{t1: {{source: {HEX}}}}}\n", "cell t1: expected 'zh' text"),
        ("cells: {t1: {source: abc, zh: 文}}\n", "t1: expected 'source' as 16 hex"),
        ("cells: {t1: 文}\n", "cell t1: expected a mapping"),
    ],
)
def test_load_translation_errors_are_one_line(tmp_path, text, message):
    path = tmp_path / "bad.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message) as error:
        translation.load_translation(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_load_translation_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no translation file"):
        translation.load_translation(tmp_path / "zh" / "99.yml")


def test_stale_missing_and_orphan_cells():
    english = translation.markdown_cells(CHAPTER)
    assert list(english) == ["t1", "m2"]  # markdown only, in order
    entries = {
        "t1": entry("# 1. Title (标题)\n\nOld prose.", "# 1. 标题 (Title)"),
        "gone": entry("removed", "已删除"),
    }
    assert translation.stale_cells(english, entries) == ["t1"]
    assert translation.missing_cells(english, entries) == ["m2"]
    assert translation.orphan_cells(english, entries) == ["gone"]
    fresh = {"t1": entry(english["t1"], "# 1. 标题 (Title)")}
    assert translation.stale_cells(english, fresh) == []


def test_translate_notebook_replaces_prose_only():
    english = translation.markdown_cells(CHAPTER)
    entries = {"m2": entry(english["m2"], "准确率：{glue:text}`acc`。")}
    before = json.dumps(CHAPTER, sort_keys=True)
    zh = translation.translate_notebook(CHAPTER, entries)
    assert json.dumps(CHAPTER, sort_keys=True) == before  # the input is untouched
    assert zh["metadata"]["language"] == "zh_CN"
    assert zh["cells"][2]["source"] == "准确率：{glue:text}`acc`。"
    assert zh["cells"][0] == CHAPTER["cells"][0]  # no translation: English stays
    assert zh["cells"][1] == CHAPTER["cells"][1]  # code and its output, the same
    with pytest.raises(ValueError, match="cell ids the notebook lacks: gone"):
        translation.translate_notebook(CHAPTER, {"gone": entry("x", "文")})


def test_a_markdown_cell_without_an_id_is_an_error():
    old = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": "x"}]}
    with pytest.raises(ValueError, match="markdown cell 0 has no id"):
        translation.markdown_cells(old)


def test_translate_page():
    text = "# cnnlearn\n\nA book.\n"
    assert translation.translate_page(text, {}) == text
    zh = {"page": entry(text, "# cnnlearn：一本书 (cnnlearn)\n")}
    assert translation.translate_page(text, zh).startswith("# cnnlearn：一本书")
    with pytest.raises(ValueError, match="one key 'page', found t1"):
        translation.translate_page(text, {"t1": entry(text, "文")})
    assert translation.zh_title(zh["page"]["zh"], "默认") == "cnnlearn：一本书"
    assert translation.zh_title("no heading", "默认") == "默认"


def fake_book(root: Path) -> Path:
    """A checkout with an index and two chapters, each fully translated."""
    (root / "book").mkdir(parents=True)
    toc = {"format": "jb-book", "root": "book/index"}
    toc["chapters"] = [{"file": "book/01_a"}, {"file": "book/02_b"}]
    write_yaml(root / "_toc.yml", toc)
    index = "# A book\n"
    (root / "book" / "index.md").write_text(index, encoding="utf-8")
    write_yaml(root / "book/zh/index.yml", {"cells": {"page": entry(index, "# 书")}})
    for stem in ("01_a", "02_b"):
        (root / "book" / f"{stem}.ipynb").write_text(json.dumps(CHAPTER))
        cells = {
            k: entry(v, f"译文 {k}")
            for k, v in translation.markdown_cells(CHAPTER).items()
        }
        write_yaml(root / f"book/zh/{stem}.yml", {"cells": cells})
    return root


def test_check_translations_finds_every_kind_of_problem(tmp_path):
    root = fake_book(tmp_path)
    assert [p.name for p in translation.toc_pages(root)] == [
        "index.md",
        "01_a.ipynb",
        "02_b.ipynb",
    ]
    assert translation.check_translations(root, untranslated=()) == []
    problems = translation.check_translations(root, untranslated=("02_b",))
    assert problems == ["02_b.ipynb: fully translated, remove it from UNTRANSLATED"]

    changed = json.loads((root / "book/01_a.ipynb").read_text())
    changed["cells"][2]["source"] = "Accuracy, changed: {glue:text}`acc`."
    changed["cells"].append(
        {"cell_type": "markdown", "id": "new", "metadata": {}, "source": "New."}
    )
    (root / "book/01_a.ipynb").write_text(json.dumps(changed))
    (root / "book/zh/02_b.yml").unlink()
    problems = translation.check_translations(root, untranslated=())
    assert problems == [
        "01_a.ipynb: 1 missing cell(s): new",
        "01_a.ipynb: 1 stale cell(s): m2",
        "02_b.ipynb: no translation file " + str(root / "book/zh/02_b.yml"),
    ]
    assert translation.check_translations(root, untranslated=("01_a", "02_b")) == []

    status = translation.page_status(root / "book/01_a.ipynb")
    lines = "\n".join(translation.status_lines(status))
    assert "01_a.ipynb new missing source: " + translation.source_hash("New.") in lines
    assert "Accuracy, changed" in lines  # the English to translate
    assert "New." not in "\n".join(translation.status_lines(status, sources=False))


def test_glossary_page(tmp_path):
    path = write_yaml(
        tmp_path / "glossary.yml",
        [
            {"zh": "卷积", "en": "convolution"},
            {"zh": "步幅", "en": "stride", "note": "a|b"},
        ],
    )
    page = translation.glossary_page(path)
    assert page.startswith("# 术语表 (Glossary)")
    assert "| 卷积 | convolution |  |" in page and "| 步幅 | stride | a\\|b |" in page
    write_yaml(path, [{"zh": "卷积"}])
    with pytest.raises(ValueError, match="expected a list of {zh, en, note} entries"):
        translation.glossary_page(path)


def test_every_page_is_translated_except_the_allow_list(capsys):
    """The staleness check: a translated page whose English changed, or that
    lacks a cell, fails here (``cnnlearn book translation-status`` lists the
    cells to translate, with their hashes)."""
    with capsys.disabled():
        print(f"\nuntranslated pages (UNTRANSLATED): {translation.UNTRANSLATED}")
    pages = {p.stem for p in translation.toc_pages(REPO)}
    assert set(translation.UNTRANSLATED) <= pages, (
        "UNTRANSLATED names a page not in _toc.yml"
    )
    problems = translation.check_translations(REPO)
    assert not problems, "\n".join(problems)
