from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import zipfile

import pytest
from conftest import KILLING

from cnnlearn._io import (
    MAX_KERAS_CONFIG_BYTES,
    MAX_KERAS_CONFIG_DEPTH,
    atomic_path,
    check_keras_file,
    check_output_dir,
    clean_output_dir,
    find_upward,
    publish_dir,
    staging_dir,
    write_json,
)


def test_write_json_replaces_whole_file(tmp_path):
    path = tmp_path / "m.json"
    write_json(path, {"a": 1})
    write_json(path, {"b": "ü"})
    assert json.loads(path.read_text()) == {"b": "ü"}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "model.keras"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        assert tmp.suffix == ".keras" and tmp.parent == tmp_path
        tmp.write_text("half")
        raise RuntimeError("crash while writing")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]


def test_find_upward_looks_from_the_start_directory_up(tmp_path):
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    deep = tmp_path / "book" / "runs"
    deep.mkdir(parents=True)
    found = find_upward("benchmarks/results", deep)
    assert found == tmp_path.resolve() / "benchmarks" / "results"
    assert find_upward("no/such/thing", deep) is None


def test_check_output_dir_refuses_a_file(tmp_path):
    assert check_output_dir(tmp_path / "new") == tmp_path / "new"
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        check_output_dir(tmp_path / "f")


# --------------------------------------------------------------------------- #
# Publishing a run: a SIGKILL at any step leaves the old run or the new one
# --------------------------------------------------------------------------- #
KILLED_RUN = textwrap.dedent(
    """
    import hashlib, json, os, signal, sys
    from pathlib import Path
    from cnnlearn._io import publish_dir, staging_dir

    out, run, kill_at = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    calls = 0

    {KILLING}
    for name in ("rename", "replace", "unlink", "mkdir", "rmdir", "fsync"):
        setattr(os, name, killing(getattr(os, name)))
    with staging_dir(out) as stage:
        files = {}
        for name in ("model.keras", "history.json"):
            (stage / name).write_text(f"{name} of run {run}")
            files[name] = hashlib.sha256((stage / name).read_bytes()).hexdigest()
        (stage / "logs").mkdir()
        (stage / "logs" / "events").write_text(f"logs of run {run}")
        (stage / "metrics.json").write_text(json.dumps({"run": run, "files": files}))
        publish_dir(stage, out, retire=["evaluation.json"])
    print("published", calls)
    """
).replace("{KILLING}", KILLING)


def _run(out, run: str, kill_at: int = 0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", KILLED_RUN, str(out), run, str(kill_at)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _complete_run(out) -> str | None:
    """The run ``out`` holds if it claims one (then every file must be its)."""
    if not (out / "metrics.json").is_file():
        return None
    metrics = json.loads((out / "metrics.json").read_text())
    for name, digest in metrics["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest, name
    assert (out / "logs" / "events").read_text() == f"logs of run {metrics['run']}"
    return metrics["run"]


def test_a_run_killed_at_any_step_leaves_one_whole_run(tmp_path):
    """Kill the second run at each file-system call of staging and publishing:
    whenever metrics.json is there, every file is its run's; after the next
    run's clean-up the directory holds run 1 or run 2, whole, and nothing of
    ours is left behind; files that are not the run's are kept."""
    first = tmp_path / "template"
    assert _run(first, "1").returncode == 0
    n_calls = int(_run(tmp_path / "count", "2").stdout.split()[-1])
    assert n_calls >= 8  # staging, commit, roll forward and clean-up all counted
    outcomes = set()
    for kill_at in range(1, n_calls + 1):
        out = tmp_path / f"kill-{kill_at}"
        shutil.copytree(first, out)
        (out / "notes.txt").write_text("mine")
        (out / "evaluation.json").write_text("of run 1's model")
        proc = _run(out, "2", kill_at)
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        claimed = _complete_run(out)  # run 1, run 2, or none claimed
        # after the commit, the clean-up finishes run 2 (even if run 1 still shows)
        clean_output_dir(out, older_than=time.time() + 1)  # as the next run does
        after = _complete_run(out)
        assert after in ("1", "2") and claimed in (None, "1", after)
        assert (after == "2") == (not (out / "evaluation.json").exists())
        assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []
        assert (out / "notes.txt").read_text() == "mine"
        outcomes.add(after)
    assert outcomes == {"1", "2"}


def test_clean_output_dir_removes_only_our_old_temporaries(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    ours = [
        ".model.1a2b3c4d.tmp.keras",  # atomic_path's old naming
        f".metrics.{dead}-1a2b3c4d.tmp.json",
        f".cnnlearn-staging-{dead}-1a2b3c4d",
    ]
    kept = [
        "model.keras",
        ".model.keras.bak",
        "notes.tmp",
        f".cnnlearn-staging-{os.getpid()}-1a2b3c4d",  # a live process's
    ]
    for name in ours + kept:
        (tmp_path / name).mkdir() if "staging" in name else (tmp_path / name).touch()
    assert clean_output_dir(tmp_path, older_than=time.time() - 3600) == []  # new
    assert sorted(clean_output_dir(tmp_path, older_than=time.time() + 1)) == sorted(
        ours
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)


def test_staging_that_fails_leaves_the_output_as_it_was(tmp_path):
    (tmp_path / "metrics.json").write_text("old")
    with pytest.raises(RuntimeError), staging_dir(tmp_path) as stage:
        (stage / "model.keras").write_text("half")
        raise RuntimeError("killed by a bug")
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
    with pytest.raises(ValueError, match="no metrics.json"), staging_dir(tmp_path) as s:
        publish_dir(s, tmp_path)
    with pytest.raises(NotADirectoryError, match="is a file"):
        with staging_dir(tmp_path / "metrics.json"):
            pass


# --------------------------------------------------------------------------- #
# .keras files: config.json bounded before Keras parses it
# --------------------------------------------------------------------------- #
def _keras_zip(path, config: bytes):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", config)
        archive.writestr("metadata.json", b"{}")
    return path


def test_check_keras_file_bounds_config_json(tmp_path):
    fine = _keras_zip(tmp_path / "fine.keras", b'{"a": [1, {"b": "[[[["}]}')
    assert check_keras_file(fine) == fine
    big = _keras_zip(tmp_path / "big.keras", b" " * (MAX_KERAS_CONFIG_BYTES + 1))
    assert big.stat().st_size < 1 << 20  # a small file that expands past the bound
    with pytest.raises(ValueError, match=r"big\.keras: config\.json claims \d+ bytes"):
        check_keras_file(big)
    deep = b"[" * (MAX_KERAS_CONFIG_DEPTH + 1) + b"]" * (MAX_KERAS_CONFIG_DEPTH + 1)
    with pytest.raises(ValueError, match=r"deep\.keras: .*nested more than"):
        check_keras_file(_keras_zip(tmp_path / "deep.keras", deep))
    quoted = b'["' + b"[" * 100_000 + b'"]'  # brackets inside a string do not nest
    assert check_keras_file(_keras_zip(tmp_path / "q.keras", quoted))
    (tmp_path / "text.keras").write_text("not a zip")
    with pytest.raises(ValueError, match=r"text\.keras: not a readable \.keras zip"):
        check_keras_file(tmp_path / "text.keras")
    with pytest.raises(FileNotFoundError, match="gone.keras"):
        check_keras_file(tmp_path / "gone.keras")
