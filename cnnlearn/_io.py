"""Atomic file writing and run publishing: a reader never sees a half-written
file, and a run directory never holds the files of two runs.

:func:`atomic_path` and :func:`write_json` replace one file atomically.
:func:`staging_dir` and :func:`publish_dir` publish a whole run: everything is
written into a hidden staging directory inside the output directory (so on the
same file system), which is then committed with one rename and moved into
place with the completion marker (``metrics.json``) last; :func:`clean_output_dir`
finishes or removes what a killed run left behind. :func:`check_keras_file`
bounds a ``.keras`` file's ``config.json`` before Keras parses it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
import uuid
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

__all__ = [
    "MAX_KERAS_CONFIG_BYTES",
    "MAX_KERAS_CONFIG_DEPTH",
    "atomic_path",
    "check_keras_file",
    "check_output_dir",
    "clean_output_dir",
    "find_upward",
    "publish_dir",
    "staging_dir",
    "write_json",
]

# When this process began using the package: a temporary older than this cannot
# be one of ours, so :func:`clean_output_dir` may remove it.
_STARTED = time.time()

# Our temporaries: ``.<stem>.<pid>-<hex>.tmp<suffix>`` (atomic_path; older
# versions wrote ``.<stem>.<hex>.tmp<suffix>``), and the run directories
# ``.cnnlearn-staging-<pid>-<hex>`` and ``.cnnlearn-publish-<pid>-<hex>``.
_TEMP_FILE = re.compile(r"^\..+\.(?:(\d+)-)?[0-9a-f]{8}\.tmp(?:\.[A-Za-z0-9]+)?$")
_RUN_DIR = re.compile(r"^\.cnnlearn-(staging|publish)-(\d+)-[0-9a-f]{8}$")
_RETIRED = ".retired"  # inside a publish directory: what the new run replaced
_PLAN = ".publish.json"  # in a publish directory: its entries, and what to retire

# A .keras file's config.json: the most bytes and the deepest nesting accepted
# before Keras parses it (the book's models have a few kB and depth < 20).
MAX_KERAS_CONFIG_BYTES = 64 << 20
MAX_KERAS_CONFIG_DEPTH = 256


def _tag() -> str:
    return f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; rename it onto ``path`` on success.

    The temporary name keeps the suffix (Keras checks for ``.keras``). If the
    body raises, the temporary file is removed and ``path`` is left untouched;
    one left by a killed process is removed by :func:`clean_output_dir`.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{_tag()}.tmp{path.suffix}")
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


# --------------------------------------------------------------------------- #
# Publishing a run: staging, commit, roll forward, clean up
# --------------------------------------------------------------------------- #
def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _roll_forward(publish: Path, output: Path, marker: str) -> None:
    """Move a committed run from ``publish`` into ``output``, ``marker`` last.

    Idempotent, so a run killed half-way through is finished by the next one:
    the old marker goes first (the old run stops claiming to be complete),
    then each of the run's entries still in ``publish`` replaces its
    namesake, and the old entries named in the plan's ``retire`` that the
    new run lacks are moved aside (into ``publish/.retired``), then the new
    marker lands.
    """
    if not (publish / marker).exists():  # published; killed while clearing up
        shutil.rmtree(publish, ignore_errors=True)
        return
    retired = publish / _RETIRED
    retired.mkdir(exist_ok=True)
    (output / marker).unlink(missing_ok=True)
    plan = json.loads((publish / _PLAN).read_text())
    for name in plan["entries"]:
        new, old = publish / name, output / name
        if not new.exists() and not new.is_symlink():
            continue  # moved in already
        if old.is_dir() and not old.is_symlink():
            os.rename(old, retired / f"{name}.{_tag()}")
        os.replace(new, old)
    for name in set(plan["retire"]) - set(plan["entries"]):
        old = output / name
        if old.exists() or old.is_symlink():
            os.rename(old, retired / f"{name}.{_tag()}")
    os.replace(publish / marker, output / marker)
    shutil.rmtree(publish, ignore_errors=True)


def clean_output_dir(
    output_dir: str | Path,
    marker: str = "metrics.json",
    older_than: float | None = None,
) -> list[str]:
    """Finish or remove what killed runs left in ``output_dir``.

    Only our own temporaries are touched (:func:`atomic_path`'s files, the
    staging and publish directories), and only those last changed before
    ``older_than`` (default: when this process imported the package) whose
    process, where the name tells it, is gone. A committed publish directory
    is rolled forward (its run is complete); anything else is removed.
    Returns the names handled. Used in chapters 4 and 5.
    """
    output = Path(output_dir)
    cutoff = _STARTED if older_than is None else older_than
    handled = []
    if not output.is_dir():
        return handled
    for entry in sorted(output.iterdir()):
        run, temp = _RUN_DIR.match(entry.name), _TEMP_FILE.match(entry.name)
        pid = int(run[2]) if run else int(temp[1]) if temp and temp[1] else None
        if not (run or temp) or (pid is not None and _alive(pid)):
            continue
        try:
            if entry.lstat().st_mtime >= cutoff:
                continue
        except FileNotFoundError:
            continue
        if run and run[1] == "publish":
            _roll_forward(entry, output, marker)
        else:
            _remove(entry)
        handled.append(entry.name)
    return handled


@contextlib.contextmanager
def staging_dir(output_dir: str | Path, marker: str = "metrics.json") -> Iterator[Path]:
    """A fresh hidden staging directory inside ``output_dir`` for a run's files.

    ``output_dir`` is created and cleaned first (:func:`clean_output_dir`).
    Write the run into the directory yielded and call :func:`publish_dir`
    inside the ``with``; if the body raises (or never publishes), the staging
    directory is removed and ``output_dir`` is as it was. Used in chapters 4
    and 5.
    """
    output = check_output_dir(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    clean_output_dir(output, marker)
    stage = output / f".cnnlearn-staging-{_tag()}"
    stage.mkdir()
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _sync(directory: Path) -> None:
    """Flush the directory's files and the directory itself to disk."""
    for path in directory.iterdir():
        if path.is_file() and not path.is_symlink():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    with contextlib.suppress(OSError):  # directories cannot be opened everywhere
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def publish_dir(
    stage: str | Path,
    output_dir: str | Path,
    marker: str = "metrics.json",
    retire: Iterable[str] = (),
) -> None:
    """Publish a complete staged run into ``output_dir``, ``marker`` last.

    Why not swap the whole directory: the output directory also holds what
    must outlive a run (a distributed run's resume checkpoints, the workers'
    ``worker_i`` folders, whatever else a user keeps there, up to ``--output
    .``), so the unit published is the run's own entries, and ``marker`` is
    the commit record, like the ``_SUCCESS`` file Hadoop's ``FileOutputCommitter``
    (which Spark uses) writes when a job commits. The order makes a kill at
    any moment safe: (1) the staging directory is renamed to a publish
    directory, one atomic step that commits the new run; (2) the old
    ``marker`` is removed, so the old run no longer claims to be complete;
    (3) each entry replaces its namesake, and the entries named in
    ``retire`` that the new run lacks (an old ``evaluation.json``) are moved
    aside; (4) the new ``marker`` lands. A directory with a ``marker``
    therefore never holds another run's files; killed before (1) the old run
    stays whole, killed after it the next :func:`clean_output_dir` (every
    :func:`staging_dir` runs one) finishes the new run. Used in chapters 4
    and 5.
    """
    stage, output = Path(stage), Path(output_dir)
    if not (stage / marker).is_file():
        raise ValueError(f"{stage}: no {marker}: the staged run is not complete")
    entries = sorted(p.name for p in stage.iterdir() if p.name != marker)
    plan = {"entries": entries, "retire": sorted(set(retire))}
    (stage / _PLAN).write_text(json.dumps(plan))
    _sync(stage)
    publish = output / f".cnnlearn-publish-{_tag()}"
    os.rename(stage, publish)  # the commit
    _roll_forward(publish, output, marker)


# --------------------------------------------------------------------------- #
# .keras files: bound config.json before Keras parses it
# --------------------------------------------------------------------------- #
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _json_depth(text: bytes) -> int:
    """The deepest nesting of ``[``/``{`` in JSON ``text``, counted without
    parsing: strings are blanked, the brackets kept and summed."""
    brackets = _STRING.sub(b'""', text).translate(None, _NOT_BRACKETS)
    if not brackets:
        return 0
    steps = np.frombuffer(brackets, dtype=np.uint8)
    opens = (steps == ord("[")) | (steps == ord("{"))
    return int(np.cumsum(np.where(opens, 1, -1)).max(initial=0))


def check_keras_file(
    path: str | Path,
    max_config_bytes: int = MAX_KERAS_CONFIG_BYTES,
    max_depth: int = MAX_KERAS_CONFIG_DEPTH,
) -> Path:
    """Refuse a ``.keras`` file Keras should not parse; return its path.

    A ``.keras`` file is a zip holding ``config.json``. Its size (the zip's
    claim, then at most that many bytes read) and its nesting depth are
    checked before Keras reads it: a small zip can hold a gigabyte of
    ``config.json`` or one nested past Python's recursion limit. Raises
    ``FileNotFoundError``, or ``ValueError`` naming the file and what is
    wrong. Call it before ``keras.saving.load_model``. Used in chapters 4, 6
    and 8.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo("config.json")
            if info.file_size > max_config_bytes:
                raise ValueError(
                    f"{path}: config.json claims {info.file_size} bytes, more than "
                    f"the {max_config_bytes} accepted: refused before parsing"
                )
            with archive.open(info) as f:
                text = f.read(max_config_bytes + 1)
    except (zipfile.BadZipFile, KeyError, EOFError, OSError, zlib.error) as exc:
        raise ValueError(f"{path}: not a readable .keras zip file ({exc})") from None
    if len(text) > max_config_bytes:
        raise ValueError(
            f"{path}: config.json holds more than {max_config_bytes} bytes: refused"
        )
    depth = _json_depth(text)
    if depth > max_depth:
        raise ValueError(
            f"{path}: config.json is nested more than {max_depth} levels deep: "
            "refused before parsing"
        )
    return path
