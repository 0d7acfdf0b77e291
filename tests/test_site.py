"""The site tier: build the book from the committed outputs and check it in Chromium.

Offline by design: every request a page makes must go to the local server.
``CNNLEARN_SITE_ROOT`` points the tests at another copy of the repository.
"""

from __future__ import annotations

import functools
import http.server
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
    return out / "_build" / "html"


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


@pytest.mark.parametrize("doc", PAGES)  # context first: no Chromium, no build
def test_page(doc: str, context: BrowserContext, base_url: str) -> None:
    """The page loads cleanly offline, with its figures, typeset math and buttons."""
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
    page.goto(f"{base_url}{doc}.html", wait_until="networkidle", timeout=60_000)
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
    assert all(s.startswith(f"{base_url}_static/mathjax/") for s in mathjax), mathjax
    text = page.evaluate("document.body.innerText")
    raw = RAW_TEX.search(text)
    assert raw is None, f"raw TeX in the page: {raw and raw.group()}"
    table = MARKDOWN_TABLE.search(text)
    assert table is None, f"a Markdown table shown as text: {table and table.group()}"

    source = next(p for p in (ROOT / f"{doc}.ipynb", ROOT / f"{doc}.md") if p.exists())
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
