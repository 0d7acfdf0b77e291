from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

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


# The editions (cnnlearn.book.write_edition and friends; the builds: test_site.py
# and test_pdf.py).


def fake_checkout(root, *, zh: str | None = "# 书\n"):
    """A checkout with ``index.md`` and one chapter, ``book/zh/index.yml`` when
    ``zh`` is given, and no chapter translation."""
    from cnnlearn import translation

    (root / "book" / "zh").mkdir(parents=True)
    toc = "format: jb-book\nroot: book/index\nchapters:\n- file: book/01_a\n"
    (root / "_toc.yml").write_text(toc)
    (root / "_config.yml").write_text("title: A book\nauthor: Us\n")
    index = "# A book\n"
    (root / "book" / "index.md").write_text(index)
    chapter = json.loads((BOOK / "01_concepts.ipynb").read_text())
    (root / "book" / "01_a.ipynb").write_text(json.dumps(chapter))
    if zh is not None:
        entry = {"source": translation.source_hash(index), "zh": zh}
        (root / "book/zh/index.yml").write_text(json.dumps({"cells": {"page": entry}}))
    return root


def code_cells(notebook: dict) -> list[dict]:
    return [c for c in notebook["cells"] if c["cell_type"] == "code"]


def test_the_zh_edition_shares_code_and_outputs(tmp_path):
    import yaml

    from cnnlearn import translation

    out = book.write_edition(REPO, "zh", tmp_path / "zh", executed=REPO)
    config = yaml.safe_load((out / "_config.yml").read_text())
    conf = config["sphinx"]["config"]
    assert config["execute"]["execute_notebooks"] == "off"  # never executed twice
    assert conf["language"] == "zh_CN" and conf["html_search_language"] == "zh"
    assert (out / "jieba_dict.txt").read_text().splitlines()[:2] == ["卷积", "卷积核"]
    assert conf["html_search_options"]["dict"] == str(
        (out / "jieba_dict.txt").resolve()
    )
    assert conf["cnnlearn_edition"]["other_root"] == "../"
    assert "Noto Serif CJK SC" in conf["latex_elements"]["preamble"]
    assert all(Path(p).is_dir() for p in config["sphinx"]["local_extensions"].values())
    toc = yaml.safe_load((out / "_toc.yml").read_text())
    english_toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    assert toc["chapters"][: len(english_toc["chapters"])] == english_toc["chapters"]
    for chapter in book.find_chapters([]):
        english = json.loads(chapter.read_text())
        zh = json.loads((out / "book" / chapter.name).read_text())
        assert code_cells(zh) == code_cells(english), chapter.name
        assert zh["metadata"]["language"] == "zh_CN"
        path = translation.translation_path(chapter)
        entries = translation.load_translation(path) if path.is_file() else {}
        sources = {c["id"]: c["source"] for c in zh["cells"]}
        for key, entry in entries.items():
            assert sources[key] == entry["zh"], (chapter.name, key)
        noted = "cnnlearn-zh-note" in sources
        assert noted == (chapter.stem in translation.UNTRANSLATED), chapter.name
    index = (out / "book" / "index.md").read_text()
    assert index == translation.load_translation(BOOK / "zh/index.yml")["page"]["zh"]
    assert config["title"] == translation.zh_title(index, "")


def test_an_untranslated_chapter_stays_english_under_a_note(tmp_path):
    root = fake_checkout(tmp_path / "repo")
    out = book.write_edition(root, "zh", tmp_path / "zh")
    zh = json.loads((out / "book/01_a.ipynb").read_text())
    english = json.loads((root / "book/01_a.ipynb").read_text())
    assert zh["cells"][0] == english["cells"][0]  # the English title, first
    assert zh["cells"][1]["id"] == "cnnlearn-zh-note"
    assert zh["cells"][2:] == english["cells"][1:]
    assert (out / "book/index.md").read_text() == "# 书\n"
    assert not (out / "book/glossary.md").exists()
    with pytest.raises(ValueError, match="expected the edition 'en' or 'zh', got 'fr'"):
        book.write_edition(root, "fr", tmp_path / "fr")


def test_the_pdf_sources_start_with_a_contents_page(tmp_path):
    import yaml

    root = fake_checkout(tmp_path / "repo")
    out = book.write_edition(root, "en", tmp_path / "en", pdf=True)
    toc = yaml.safe_load((out / "_toc.yml").read_text())
    assert toc["root"] == "pdf_root" and toc["chapters"][0] == {"file": "book/index"}
    assert (out / "pdf_root.md").read_text() == "# A book\n"
    config = yaml.safe_load((out / "_config.yml").read_text())
    (document,) = config["sphinx"]["config"]["latex_documents"]
    assert document == ["pdf_root", "cnnlearn-en.tex", "A book", "Us", "manual", True]


def test_clean_outputs_for_the_pdfs():
    text = "\x1b[1mEpoch 1/3\x1b[0m\n 1/9 ━━\r 9/9 ━━━━ 2s\r\n" + "x" * 200 + "\tend"
    notebook = {
        "cells": [
            {"cell_type": "code", "id": "c", "metadata": {}, "source": "", "outputs": [
                {"output_type": "stream", "name": "stdout", "text": text},
                {"output_type": "error", "ename": "E", "evalue": "",
                 "traceback": ["\x1b[31mValueError\x1b[0m: bad"]},
                {"output_type": "display_data", "metadata": {}, "data": {
                    "text/plain": ["a\x1b[0m"], "image/png": "iVBORw0KGgo=",
                    "application/papermill.record/text/plain": "'\x1b'"}},
            ]}
        ]
    }  # fmt: skip
    clean = book.clean_outputs(notebook)
    stream, error, display = clean["cells"][0]["outputs"]
    lines = stream["text"].split("\n")
    assert lines[:2] == ["Epoch 1/3", " 9/9 ━━━━ 2s"]  # the line a terminal kept
    assert max(map(len, lines)) <= book.OUTPUT_WIDTH and "\x1b" not in stream["text"]
    assert "".join(lines[2:]).replace(" ", "") == "x" * 200 + "end"  # wrapped, kept
    assert error["traceback"] == ["ValueError: bad"]
    assert display["data"]["text/plain"] == "a"
    assert display["data"]["image/png"] == "iVBORw0KGgo="  # figures untouched
    assert display["data"]["application/papermill.record/text/plain"] == "'\x1b'"
    assert "\x1b" in notebook["cells"][0]["outputs"][0]["text"]  # a copy


def test_the_executed_chapters_are_found(tmp_path):
    root = fake_checkout(tmp_path / "repo")
    assert book.executed_root(root) == root  # the committed outputs
    built = root / "_build/jupyter_execute/book"
    built.mkdir(parents=True)
    (built / "01_a.ipynb").write_text((root / "book/01_a.ipynb").read_text())
    assert book.executed_root(root) == root / "_build/jupyter_execute"


def test_cli_check_translations(capsys, tmp_path, monkeypatch):
    from cnnlearn import translation

    root = fake_checkout(tmp_path / "repo")
    monkeypatch.chdir(root)
    monkeypatch.setattr(translation, "UNTRANSLATED", ("01_a",))
    assert cli.main(["book", "check-translations"]) == 0
    assert "every translated page is up to date" in capsys.readouterr().out
    (root / "book/index.md").write_text("# A book, changed\n")
    assert cli.main(["book", "check-translations"]) == 1
    err = capsys.readouterr().err
    assert (
        "1 translation problem(s)" in err and "index.md: 1 stale cell(s): page" in err
    )
    assert err.count("\n") == 1


def test_cli_translation_status_prints_what_to_translate(capsys, tmp_path, monkeypatch):
    from cnnlearn import translation

    root = fake_checkout(tmp_path / "repo")
    monkeypatch.chdir(root)
    assert cli.main(["book", "translation-status", "01"]) == 0
    out = capsys.readouterr().out
    english = translation.markdown_cells(
        json.loads((root / "book/01_a.ipynb").read_text())
    )
    assert out.startswith(f"01_a.ipynb: {len(english)} missing, 0 stale, 0 orphans")
    key, text = next(iter(english.items()))
    assert (
        f"=== 01_a.ipynb {key} missing source: {translation.source_hash(text)}" in out
    )
    assert text.strip() in out and "index.md" not in out
    assert cli.main(["book", "translation-status", "99"]) == 1
    assert "unknown page(s)" in capsys.readouterr().err


def test_cli_pdf_bad_edition(capsys):
    assert cli.main(["book", "pdf", "fr"]) == 1
    err = capsys.readouterr().err
    assert "unknown edition(s) fr: expected en, zh" in err and err.count("\n") == 1


def test_glue_kept_aside_by_myst_nb_goes_back_into_the_edition(tmp_path):
    """myst-nb's executed copies keep ``display=False`` glue in a
    ``.glue.json`` beside the notebook; the edition puts it back in a cell."""
    root = fake_checkout(tmp_path / "repo")
    built = root / "_build/jupyter_execute/book"
    built.mkdir(parents=True)
    chapter = json.loads((root / "book/01_a.ipynb").read_text())
    for cell in code_cells(chapter):
        cell["outputs"] = [
            o for o in cell["outputs"] if "scrapbook" not in o.get("metadata", {})
        ]
    (built / "01_a.ipynb").write_text(json.dumps(chapter))
    scrapbook = {"name": "ch_x", "mime_prefix": "application/papermill.record/"}
    glued = {"output_type": "display_data", "metadata": {"scrapbook": scrapbook}}
    glued["data"] = {"text/plain": "2.5"}
    (built / "01_a.glue.json").write_text(json.dumps({"ch_x": glued}))
    out = book.write_edition(root, "zh", tmp_path / "zh")
    written = json.loads((out / "book/01_a.ipynb").read_text())
    outputs = [o for c in code_cells(written) for o in c["outputs"]]
    (back,) = [o for o in outputs if "scrapbook" in o.get("metadata", {})]
    assert back["data"] == {"application/papermill.record/text/plain": "2.5"}
