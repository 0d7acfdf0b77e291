"""Shared fixtures: the real data sets, found the way CI finds them."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

# A matplotlib font cache of this session's own, for this process and the notebook
# kernels and builds it starts. A stale ~/.cache/matplotlib, written by a
# matplotlib whose bundled fonts were gone (a venv deleted under a running
# process), lacks STIX: then every log-scale figure prints "findfont: Font family
# 'STIXGeneral' not found" to stderr, and nbval reports a changed cell.
if "MPLCONFIGDIR" not in os.environ:
    os.environ["MPLCONFIGDIR"] = tempfile.mkdtemp(prefix="cnnlearn-mpl-")
    atexit.register(shutil.rmtree, os.environ["MPLCONFIGDIR"], ignore_errors=True)

import matplotlib  # noqa: E402  (reads MPLCONFIGDIR on import)
import pytest  # noqa: E402

# Agg for this process only. Not MPLBACKEND: the notebook kernels that nbval and
# papermill start would inherit it and show no figures, while the committed
# chapters (and nbval's comparisons) have them.
matplotlib.use("Agg")

REPO = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() == "true"
SHARED_DATA = REPO.parent / "shared" / "data"
if "CNNLEARN_DATA_DIR" not in os.environ and (SHARED_DATA / "mnist").is_dir():
    # Where CI keeps the originals; set here so the notebook kernels (nbval,
    # papermill) that pytest starts find them too, as the Makefile does.
    os.environ["CNNLEARN_DATA_DIR"] = str(SHARED_DATA)


class NotebookRuns:
    """Which chapters nbval re-executed in this session, and which cells differed.

    Registered as a plugin (so it sees the ``book/*.ipynb`` items too); the site
    test builds from the committed outputs only after nbval has re-run every
    chapter and found its compared cells unchanged.
    """

    def __init__(self) -> None:
        self.ran: set[str] = set()
        self.failed: list[str] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        path, _, cell = report.nodeid.partition("::")
        if path.endswith(".ipynb") and cell and report.when == "call":
            self.ran.add(Path(path).name)
            if report.failed:
                self.failed.append(report.nodeid)


NOTEBOOK_RUNS = NotebookRuns()


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(NOTEBOOK_RUNS, "cnnlearn-notebook-runs")


def require(condition: bool, reason: str) -> None:
    """Skip when something external is missing locally; fail in CI, where it must
    be there (a skipped test there would hide a broken setup)."""
    if not condition:
        (pytest.fail if IN_CI else pytest.skip)(reason)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The directory holding ``mnist/`` with the original IDX files."""
    candidate = Path(os.environ.get("CNNLEARN_DATA_DIR", SHARED_DATA))
    require((candidate / "mnist").is_dir(), "real MNIST not found: CNNLEARN_DATA_DIR")
    return candidate


@pytest.fixture(scope="session")
def mnist(data_dir):
    from cnnlearn import data

    return data.load_dataset("mnist", data_dir)


# For a subprocess's code: ``killing(f)`` wraps an ``os`` function so that the
# process SIGKILLs itself at call number ``kill_at`` (counted in ``calls``).
KILLING = """def killing(real):
    def wrapper(*args, **kwargs):
        global calls
        calls += 1
        if calls == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)
    return wrapper
"""


def fail_the_commit(monkeypatch) -> None:
    """Make publishing fail at its commit, the rename of the staging directory
    (as a full disk or a kill there would)."""
    rename = os.rename

    def rename_or_fail(src, dst, *args, **kwargs):
        if os.path.basename(os.fspath(dst)).startswith(".cnnlearn-publish-"):
            raise OSError(28, "No space left on device (injected)")
        return rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "rename", rename_or_fail)
