"""The site tier: build the book from the committed outputs and check it in Chromium.

Both editions: the English site, and the Chinese one under ``zh/`` built from
the same outputs (:func:`cnnlearn.book.build_zh_site`). Offline by design: every
request a page makes must go to the local server. ``CNNLEARN_SITE_ROOT`` points
the tests at another copy of the repository.
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import nbformat
import pytest
import yaml
from conftest import NOTEBOOK_RUNS, REPO, require

from cnnlearn import book

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, ConsoleMessage

pytestmark = pytest.mark.slow

ROOT = Path(os.environ.get("CNNLEARN_SITE_ROOT", REPO)).resolve()
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    "--disable-quic", "--disable-extensions", "--mute-audio",
]  # fmt: skip
RAW_TEX = re.compile(r"\\(frac|sum|cdot|max|begin|left|right|Big|mathrm)\b|\\[(\[]")
MARKDOWN_TABLE = re.compile(r"\|[^|\n]+\|[^|\n]+\|[^|\n]+\|")
DOLLAR_MATH = re.compile(r"\$[^$\n]+\$")
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)


def toc_docs(node: object) -> list[str]:
    """Every ``root``/``file`` entry of a ``_toc.yml`` tree, in order."""
    if isinstance(node, list):
        return [doc for item in node for doc in toc_docs(item)]
    if not isinstance(node, dict):
        return []
    own = [re.sub(r"\.(md|ipynb)$", "", node[k]) for k in ("root", "file") if k in node]
    return own + [doc for value in node.values() for doc in toc_docs(value)]


PAGES = toc_docs(yaml.safe_load((ROOT / "_toc.yml").read_text()))
# The Chinese edition's own pages: the glossary, when it is there.
ZH_PAGES = PAGES + ["book/glossary"] * (ROOT / "book/zh/glossary.yml").is_file()
EDITION_PAGES = [("", doc) for doc in PAGES] + [("zh/", doc) for doc in ZH_PAGES]
# Which characters of a heading were drawn with the fallback glyph (tofu): each
# character of `pattern` is drawn on a canvas in the heading's font and compared
# with a codepoint no font has (U+0378, unassigned): the same picture, or none,
# means the browser had no font for it. Without CJK fonts every Chinese heading
# fails; with fonts-noto-cjk none does.
TOFU = """([pattern, selector]) => {
  const wanted = new RegExp(pattern, "u");
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = 48;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  const picture = (font, ch) => {
    ctx.clearRect(0, 0, 48, 48);
    ctx.font = font;
    ctx.textBaseline = "top";
    ctx.fillText(ch, 4, 4);
    const alpha = ctx.getImageData(0, 0, 48, 48).data;
    let hash = 0, ink = 0;
    for (let i = 3; i < alpha.length; i += 4) {
      hash = (hash * 31 + alpha[i]) | 0;
      ink += alpha[i] > 0;
    }
    return ink ? String(hash) : "blank";
  };
  const found = [];
  for (const heading of document.querySelectorAll(selector)) {
    const chars = [...new Set([...heading.textContent].filter(c => wanted.test(c)))];
    if (!chars.length) continue;
    const style = getComputedStyle(heading);
    const font = `${style.fontStyle} ${style.fontWeight} 32px ${style.fontFamily}`;
    const tofu = picture(font, "\u0378");
    const seen = chars.map(c => picture(font, c));
    const bad = chars.filter((c, i) => seen[i] === tofu || seen[i] === "blank");
    if (bad.length || (chars.length > 2 && new Set(seen).size === 1)) {
      found.push(`${heading.textContent.trim().slice(0, 50)}: ${bad.join("")}`);
    }
  }
  return found;
}"""
CJK = "[\\u3400-\\u9fff\\uf900-\\ufaff]"
HEADINGS = "h1, h2, h3, h4"


def has_math(source: Path) -> bool:
    """Whether the prose holds ``$...$`` math (code spans and fences left out)."""
    text = source.read_text()
    if source.suffix == ".ipynb":
        cells = json.loads(text)["cells"]
        text = "\n".join(
            "".join(c["source"]) for c in cells if c["cell_type"] != "code"
        )
    return bool(DOLLAR_MATH.search(CODE.sub("", text)))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the site once, from the committed outputs: no notebook runs here.

    ``make test`` runs nbval on ``book`` first: the committed outputs are built
    only once this session has re-executed every chapter and found each compared
    cell (every glued number, every table from a result file, most outputs)
    unchanged. Run alone, the site test builds what is committed.
    """
    chapters = {p.name for p in (ROOT / "book").glob("*.ipynb")}
    if NOTEBOOK_RUNS.ran:
        assert NOTEBOOK_RUNS.ran == chapters, "nbval ran only some chapters"
        assert not NOTEBOOK_RUNS.failed, (
            f"the committed outputs differ from this run: {NOTEBOOK_RUNS.failed}"
        )
    require(
        shutil.which("dot") is not None, "Graphviz not found: apt-get install graphviz"
    )
    out = tmp_path_factory.mktemp("site")
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["execute"]["execute_notebooks"] = "off"  # nbval has just executed them
    extensions = config["sphinx"].get("local_extensions") or {}
    for name, path in extensions.items():  # relative to the config file
        extensions[name] = str(ROOT / path)
    (out / "_config.yml").write_text(yaml.safe_dump(config, allow_unicode=True))
    cmd = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(ROOT)]
    cmd += ["--all", "-W", "-n", "--keep-going", "--path-output", str(out)]
    cmd += ["--config", str(out / "_config.yml")]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    log = re.sub(r"\x1b\[[0-9;]*m", "", run.stdout + run.stderr)  # no colours
    problems = [line for line in log.splitlines() if re.search("WARNING|ERROR", line)]
    assert run.returncode == 0, "jupyter-book build failed:\n" + "\n".join(
        problems or log.splitlines()[-40:]
    )
    assert "execution_mode='off'" in log, "the build would execute notebooks"
    html = out / "_build" / "html"
    # The Chinese edition from the same committed outputs, every warning an error.
    book.build_zh_site(ROOT, executed=ROOT, source=out / "zh_src", output=html / "zh")
    return html


@pytest.fixture(scope="module")
def sources(site: Path) -> dict[str, Path]:
    """Each edition's source tree, by its folder in the site."""
    return {"": ROOT, "zh/": site.parents[1] / "zh_src"}


@pytest.fixture(scope="module")
def base_url(site: Path) -> Iterator[str]:
    """Serve the built site on an ephemeral port of 127.0.0.1."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, driven by Playwright (its own download needs internet)."""
    require(CHROMIUM.is_file(), f"{CHROMIUM} not found: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile per page: each page is checked as a first visit."""
    context = browser.new_context()
    yield context
    context.close()


@pytest.mark.parametrize(("edition", "doc"), EDITION_PAGES)
def test_page(  # context first: no Chromium, no build
    edition: str,
    doc: str,
    context: BrowserContext,
    base_url: str,
    sources: dict[str, Path],
) -> None:
    """The page loads cleanly offline, with its figures, typeset math, buttons,
    the link to the other edition, and real glyphs in its Chinese headings."""
    errors: list[str] = []
    requests: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        url = message.location.get("url", "")
        # A missing favicon.ico is the browser's own probe, not the page's.
        if message.type == "error" and not url.endswith("/favicon.ico"):
            errors.append(f"console: {message.text} ({url})")

    page = context.new_page()
    page.on("console", on_console)
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    page.on("requestfailed", lambda r: errors.append(f"failed: {r.url} {r.failure}"))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(
        f"{base_url}{edition}{doc}.html", wait_until="networkidle", timeout=60_000
    )
    page.evaluate("async () => { await window.MathJax?.startup?.promise; }")
    assert not errors, "\n".join(errors)

    offsite = [u for u in requests if not u.startswith((base_url, "data:"))]
    assert not offsite, f"requests leave the machine: {offsite}"
    broken = page.evaluate(
        "[...document.images].filter(i => !i.naturalWidth).map(i => i.src)"
    )
    assert not broken, f"images that did not load: {broken}"
    mathjax = page.eval_on_selector_all(
        "script[src*=mathjax]", "s => s.map(e => e.src)"
    )
    static = f"{base_url}{edition}_static/mathjax/"
    assert all(s.startswith(static) for s in mathjax), mathjax
    text = page.evaluate("document.body.innerText")
    raw = RAW_TEX.search(text)
    assert raw is None, f"raw TeX in the page: {raw and raw.group()}"
    table = MARKDOWN_TABLE.search(text)
    assert table is None, f"a Markdown table shown as text: {table and table.group()}"

    tofu = page.evaluate(TOFU, [CJK, HEADINGS])
    assert not tofu, f"Chinese headings drawn with the fallback glyph: {tofu}"
    check_edition_link(page, base_url, edition, doc)

    root = sources[edition]
    source = next(p for p in (root / f"{doc}.ipynb", root / f"{doc}.md") if p.exists())
    if has_math(source):
        assert mathjax, "math in the source but no MathJax script"
        n_math = page.locator(".math").count()
        n_typeset = page.locator("mjx-container").count()
        assert n_typeset >= n_math > 0, f"{n_typeset} of {n_math} formulas typeset"
    n_diagrams = source.read_text().count("{graphviz}")
    if n_diagrams:  # each drawn as an SVG document with nodes, not shown as source
        nodes = page.eval_on_selector_all(
            "object.graphviz",
            "os => os.map(o => o.contentDocument?.querySelectorAll('g.node').length)",
        )
        assert len(nodes) == n_diagrams and all(nodes), f"diagram nodes: {nodes}"
        assert "digraph" not in text, "a diagram is shown as its source"
    if source.suffix == ".ipynb":
        notebook = nbformat.read(source, as_version=4)
        figures = sum(
            "image/png" in output.get("data", {})
            for cell in notebook.cells
            for output in cell.get("outputs", [])
        )
        shown = page.locator(".cell_output img").count()
        assert shown >= figures, f"{shown} of the notebook's {figures} figures shown"
        colab = page.locator("a[href*='colab.research.google.com']")
        assert colab.count(), "no Colab launch button"
        assert colab.first.get_attribute("href").endswith(f"{doc}.ipynb")
        download = page.locator("a.btn-download-source-button[href$='.ipynb']")
        assert download.count(), "no .ipynb download button"
        assert page.request.get(download.first.evaluate("a => a.href")).ok


def check_edition_link(page, base_url: str, edition: str, doc: str) -> None:
    """The page links to the same page in the other edition, which loads; the
    Chinese glossary has no English page and no link."""
    link = page.locator("a.cnnlearn-edition-link")
    if edition == "zh/" and doc not in PAGES:
        assert not link.count(), "a link to an English page that does not exist"
        return
    assert link.count() == 1, "no link to the other edition"
    other = "" if edition == "zh/" else "zh/"
    href = link.first.evaluate("a => a.href")
    assert href == f"{base_url}{other}{doc}.html"
    assert page.request.get(href).ok, f"{href} does not load"


def test_the_tofu_check_sees_a_missing_glyph(context: BrowserContext) -> None:
    """The font check itself: codepoints no font has are reported (whatever
    fonts this machine has), and Latin text is not."""
    page = context.new_page()
    page.set_content("<h1>Convolution \u0379\u0380\u0381</h1><h2>Pooling</h2>")
    found = page.evaluate(TOFU, ["[\\u0378-\\u0381]", HEADINGS])
    assert found == ["Convolution \u0379\u0380\u0381: \u0379\u0380\u0381"]
    assert page.evaluate(TOFU, ["[a-z]", HEADINGS]) == []


def test_the_zh_search_finds_chinese_words(
    site: Path, context: BrowserContext, base_url: str
) -> None:
    """Sphinx's Chinese search splits with jieba: 卷积 and 知识蒸馏 are terms of
    the index, and searching for 知识蒸馏 finds pages."""
    require(
        importlib.util.find_spec("jieba") is not None,
        "jieba not installed: pip install -e '.[all]'",
    )
    text = (site / "zh" / "searchindex.js").read_text(encoding="utf-8")
    prefix = "Search.setIndex("
    assert text.startswith(prefix) and text.endswith(")")
    terms = json.loads(text[len(prefix) : -1])["terms"]
    missing = [t for t in ("卷积", "知识蒸馏", "池化") if t not in terms]
    assert not missing, f"not terms of the zh search index: {missing}"
    page = context.new_page()
    page.goto(f"{base_url}zh/search.html?q=知识蒸馏", wait_until="networkidle")
    page.wait_for_selector("#search-results li", timeout=30_000)
    assert page.locator("#search-results li").count() >= 1
