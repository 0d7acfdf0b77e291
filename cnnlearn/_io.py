"""Atomic file writing: a reader never sees a half-written file."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; rename it onto ``path`` on success.

    The temporary name keeps the suffix (Keras checks for ``.keras``). If the
    body raises, the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_json(path: str | Path, obj) -> None:
    """Write ``obj`` as indented JSON to ``path``, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def find_upward(relative: str, start: str | Path | None = None) -> Path | None:
    """``<dir>/relative`` for the first ``dir`` from ``start`` up that has it.

    ``start`` defaults to the working directory, so an installed package finds
    the book's files from wherever it is run inside a checkout (the
    repository root, ``book/`` during a chapter), never from its own install
    location. Returns ``None`` when no directory up to the root has it.
    """
    here = Path(start if start is not None else Path.cwd()).resolve()
    for directory in (here, *here.parents):
        if (directory / relative).exists():
            return directory / relative
    return None


def check_output_dir(path: str | Path) -> Path:
    """``path`` as a directory a run may write into: refuse an existing file at
    once (a one-line :class:`NotADirectoryError`), before any work is done."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"output {path} is a file, expected a directory")
    return path
