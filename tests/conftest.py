"""Shared fixtures: the real data sets, found the way CI finds them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() == "true"


def require(condition: bool, reason: str) -> None:
    """Skip when something external is missing locally; fail in CI, where it must
    be there (a skipped test there would hide a broken setup)."""
    if not condition:
        (pytest.fail if IN_CI else pytest.skip)(reason)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The directory holding ``mnist/`` with the original IDX files."""
    candidates = [os.environ.get("CNNLEARN_DATA_DIR"), REPO.parent / "shared" / "data"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "mnist").is_dir():
            return Path(candidate)
    require(False, "real MNIST not found: set CNNLEARN_DATA_DIR")


@pytest.fixture(scope="session")
def mnist(data_dir):
    from cnnlearn import data

    return data.load_dataset("mnist", data_dir)
