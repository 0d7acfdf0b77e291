"""The PDFs (``make pdf``): both editions built with XeLaTeX from the committed
outputs, then read back with poppler's tools (``pdffonts``, ``pdftotext``,
``pdftoppm``), as a reader's viewer would.

Slow (two LaTeX builds), and run by ``make test`` in CI, which installs the
Debian packages (.ci/run); elsewhere the test skips without them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, require

from cnnlearn import book, translation

pytestmark = pytest.mark.slow

TOOLS = ("xelatex", "latexmk", "pdffonts", "pdftotext", "pdftoppm", "pdfinfo")
# What a colour escape leaves as text without its ESC ([0m, [1;31m, [32m), not
# PromQL's [5m].
ANSI_LEFTOVER = re.compile(r"\[(0|1|[0-9];[0-9;]+|3[0-9]|9[0-9])m")


@pytest.fixture(scope="module", params=["en", "zh"])
def pdf(request: pytest.FixtureRequest, tmp_path_factory) -> tuple[str, Path]:
    """One edition's PDF, built from the committed notebooks' outputs."""
    missing = [t for t in TOOLS if shutil.which(t) is None]
    require(
        not missing,
        f"{', '.join(missing)} not found: apt-get install texlive-xetex "
        "texlive-lang-chinese texlive-latex-extra latexmk fonts-noto-cjk poppler-utils",
    )
    lang = request.param
    out = tmp_path_factory.mktemp(f"pdf-{lang}")
    path = book.build_pdf(
        REPO, lang, executed=REPO, source=out / "src", output_dir=out / "pdf"
    )
    assert path.name == f"cnnlearn-{lang}.pdf"
    return lang, path


def tool(*args: str | Path) -> str:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, check=True, timeout=300
    ).stdout


def squeeze(text: str) -> str:
    """Text without whitespace, hyphens or Markdown marks: how a title survives
    line breaks, hyphenation and typesetting."""
    return re.sub(r"[\s\-*`_\u00ad]", "", text)


def chapter_titles(lang: str) -> list[str]:
    """Each page's first ``# `` heading, in the edition's language (the Chinese
    headings carry the English in parentheses, the English ones the article's
    Chinese)."""
    titles = []
    for page in translation.toc_pages(REPO):
        cells = translation.english_cells(page)
        if lang == "zh":
            path = translation.translation_path(page)
            zh = translation.load_translation(path) if path.is_file() else {}
            cells = {k: zh[k]["zh"] if k in zh else v for k, v in cells.items()}
        text = "\n".join(cells.values())
        titles.append(next(line[2:] for line in text.splitlines() if line[:2] == "# "))
    return titles


def test_every_chapter_title_is_in_the_text(pdf: tuple[str, Path]) -> None:
    lang, path = pdf
    text = tool("pdftotext", "-enc", "UTF-8", path, "-")
    flat = squeeze(text)
    missing = [t for t in chapter_titles(lang) if squeeze(t) not in flat]
    assert not missing, f"chapter titles not in {path.name}: {missing}"
    assert "\x1b" not in text and not ANSI_LEFTOVER.search(text), "ANSI escapes"
    contents = {"en": "contents", "zh": "目录"}[lang]
    front = tool("pdftotext", "-enc", "UTF-8", "-l", 5, path, "-").lower()
    lines = [line.strip("\f ") for line in front.splitlines()]  # \f: a new page
    assert contents in lines, "no table of contents"


def test_the_fonts_are_embedded_cjk_included(pdf: tuple[str, Path]) -> None:
    """``pdffonts``: every font embedded (its ``emb`` column), so the PDF reads
    the same on any machine, Noto CJK among them."""
    lang, path = pdf
    rows = [line.split() for line in tool("pdffonts", path).splitlines()[2:]]
    assert rows, f"no fonts in {path.name}"
    not_embedded = [row[0] for row in rows if row[-5] != "yes"]
    assert not not_embedded, f"fonts not embedded: {not_embedded}"
    # Both: the English headings carry the article's Chinese headings.
    cjk = [row[0] for row in rows if "CJK" in row[0]]
    assert any("NotoSerifCJK" in name for name in cjk), f"no Noto CJK font: {cjk}"


def test_no_glyph_is_missing(pdf: tuple[str, Path]) -> None:
    """XeTeX has no font fallback: a character the fonts lack is dropped, with a
    line in the log (``\\tracinglostchars``), never silently."""
    _, path = pdf
    log = path.parents[1] / "src" / "_build" / "latex" / f"{path.stem}.log"
    text = log.read_text(encoding="utf-8", errors="replace")
    lost = sorted(
        set(re.findall(r"Missing character: There is no (.*?) in font", text))
    )
    assert not lost, f"characters no font of {path.name} has: {lost}"


def test_pages_render(pdf: tuple[str, Path], tmp_path: Path) -> None:
    """Page 1 and a middle page render to images with ink on them, and the
    middle page carries its page number."""
    import matplotlib.image

    _, path = pdf
    pages = int(re.search(r"Pages:\s+(\d+)", tool("pdfinfo", path)).group(1))
    assert pages > 20, f"only {pages} pages"
    for number in (1, pages // 2):
        prefix = tmp_path / f"page{number}"
        tool("pdftoppm", "-f", number, "-l", number, "-r", 40, "-png", path, prefix)
        (image,) = tmp_path.glob(f"page{number}-*.png")
        pixels = matplotlib.image.imread(image)
        assert pixels.std() > 0.01, f"page {number} is blank"
    middle = tool("pdftotext", "-f", pages // 2, "-l", pages // 2, path, "-")
    assert re.search(r"^\s*\d+\s*$", middle, re.M), "no page number on a middle page"


def test_the_pdf_sources_are_clean(pdf: tuple[str, Path]) -> None:
    """What went into the PDF: outputs without escapes, no line over the width."""
    _, path = pdf
    source = path.parents[1] / "src" / "book"
    for chapter in sorted(source.glob("*.ipynb")):
        cells = json.loads(chapter.read_text())["cells"]
        for cell in cells:
            for output in cell.get("outputs", []):
                text = "".join(output.get("text", ""))
                assert "\x1b" not in text, chapter.name
                assert all(len(line) <= book.OUTPUT_WIDTH for line in text.split("\n"))
