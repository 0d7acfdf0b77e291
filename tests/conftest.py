"""Shared fixtures: the real data sets, found the way CI finds them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() == "true"
SHARED_DATA = REPO.parent / "shared" / "data"
if "CNNLEARN_DATA_DIR" not in os.environ and (SHARED_DATA / "mnist").is_dir():
    # Where CI keeps the originals; set here so the notebook kernels (nbval,
    # papermill) that pytest starts find them too, as the Makefile does.
    os.environ["CNNLEARN_DATA_DIR"] = str(SHARED_DATA)


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
