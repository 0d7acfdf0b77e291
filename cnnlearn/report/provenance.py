"""How a result file was made: commit, command, config, machine and load.

Every ``benchmarks/<topic>.py`` stamps its result file with :func:`start` before
it measures and :func:`finish` before each write, and each row it measures with
:func:`measured_at`. Chapters print :func:`notes` next to a table made from the
file, so a reader sees when a number came from a busy machine, from a merge of
several runs, or from a file older than these records (chapter 10 explains why).
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

__all__ = [
    "finish",
    "machine",
    "mark_sources",
    "measured_at",
    "merge_rows",
    "notes",
    "run_label",
    "start",
]

# The checkout of the code that runs: its commit is the code's, whatever the
# working directory (the one path found from the install location; see
# tests/test_house.py).
REPO = Path(__file__).resolve().parents[2]
# What a complete record holds; a file missing any of them is "partial".
FIELDS = ("commit", "command", "config", "machine", "load_average", "started_at")


def measured_at() -> str:
    """The current UTC time, to the second, in ISO 8601 (``2026-12-06T09:30:00Z``)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _git(*args: str) -> str | None:
    """``git args`` in the code's own checkout (see ``REPO``)."""
    try:
        out = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def machine() -> dict:
    """Platform, cores and the versions of the numerical stack."""
    import keras  # on demand: cnnlearn.report reads results without Keras

    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "numpy": np.__version__,
    }
    if info["backend"] == "tensorflow":
        import tensorflow as tf  # loaded already by Keras's backend

        info["tensorflow"] = tf.__version__
    return info


def start(config: dict, argv: list[str] | None = None) -> dict:
    """The provenance record of a run that starts now.

    Parameters
    ----------
    config
        Everything that decides the numbers: the script's arguments and any
        training plan it pins. Must be JSON-serializable.
    argv
        The command line; ``sys.argv`` by default.
    """
    argv = sys.argv if argv is None else argv
    # Dirty: the code differs from the commit (result files are outputs, not code).
    status = _git(
        "status",
        "--porcelain",
        "--untracked-files=no",
        "--",
        ".",
        ":!benchmarks/results",
    )
    return {
        "commit": _git("rev-parse", "HEAD"),
        "dirty": bool(status) if status is not None else None,
        "command": shlex.join(["python", *argv]),
        "config": config,
        "machine": machine(),
        "load_average": {"start": list(os.getloadavg()), "end": None},
        "started_at": measured_at(),
    }


def finish(record: dict) -> dict:
    """Close ``record``: the load average now, the time, and whether it was noisy.

    A run is *noisy* when other work shared the CPU: the one-minute load average
    exceeded the number of cores before the run started, or exceeded it at the
    end by more than the run itself adds (one busy process per core at most).
    Its timings are then slower and less repeatable than the machine allows.
    """
    record["load_average"]["end"] = list(os.getloadavg())
    record["finished_at"] = measured_at()
    record["noisy"] = _noisy(record)
    return record


def _noisy(record: dict) -> bool:
    cores = record["machine"]["cpu_count"] or 1
    load = record["load_average"]
    others_at_end = load["end"][0] - cores if load.get("end") else 0.0
    return max(load["start"][0] if load.get("start") else 0.0, others_at_end) > cores


def merge_rows(rows: list[dict], parts: list[dict]) -> list[dict]:
    """The rows of several result files, each keeping its own run's provenance.

    Merging is refused when the parts' configs differ and a row does not say
    which run made it: a file must never print one config for rows that were
    trained with another.
    """
    configs = [part.get("provenance", {}).get("config") for part in parts]
    if any(c != configs[0] for c in configs) and not all("config" in r for r in rows):
        raise ValueError(
            "the parts were made with different configs; give every row its own "
            "'config' before merging"
        )
    return rows


def notes(result: dict) -> list[str]:
    """What a reader should know about how ``result`` was made, one line each."""
    record = result.get("provenance")
    if not record:
        return ["Made before result files recorded their provenance."]
    lines = []
    missing = [f for f in FIELDS if record.get(f) in (None, {}, "")]
    if missing:
        lines.append(f"Provenance partial: no record of {', '.join(missing)}.")
    if record.get("noisy"):
        cores = record.get("machine", {}).get("cpu_count")
        loads = [v[0] for v in (record.get("load_average") or {}).values() if v]
        load = f" (load average {max(loads):.1f} on {cores} cores)" if loads else ""
        lines.append(
            f"Measured on a busy machine{load}: timings are slower and "
            "noisier than this machine allows."
        )
    if record.get("dirty"):
        lines.append("Measured with uncommitted changes on top of the commit.")
    return lines + list(record.get("notes", []))


def run_label(record: dict | None) -> str:
    """How a note names the run that made ``record``."""
    record = record or {}
    if record.get("started_at"):
        return f"the run started {record['started_at']}"
    committed = record.get("committed_in")
    return "a run made before result files recorded their provenance" + (
        f" (file committed in {committed[:7]})" if committed else ""
    )


def mark_sources(record: dict, earlier: dict | None, fresh, kept) -> None:
    """Say in ``record`` which rows this run made and which an earlier one did.

    ``fresh`` rows were measured by this run, ``kept`` ones come from the file
    it updates, whose provenance was ``earlier``: that record goes under
    ``record["parts"]`` and each kept row keeps its own config and measured_at.
    """
    earlier = earlier or {}
    before = earlier.get("rows_from", {})
    record["rows_from"] = {
        **{row: before.get(row, run_label(earlier)) for row in kept},
        **{row: run_label(record) for row in fresh},
    }
    if not kept:
        return
    parts = earlier.get("parts", [])
    record["parts"] = [*parts, {k: v for k, v in earlier.items() if k != "parts"}]
    groups: dict[str, list[str]] = {}
    for row, label in record["rows_from"].items():
        groups.setdefault(label, []).append(str(row))
    record["notes"] = [
        "Merged from several runs, each row with its own config and measured_at: "
        + "; ".join(f"{', '.join(rows)} from {label}" for label, rows in groups.items())
        + "."
    ] + [
        note
        if note.startswith("Rows from ")
        else f"Rows from {run_label(earlier)}: {note}"
        for note in notes({"provenance": earlier} if earlier else {})
        if not note.startswith("Merged from several runs")
    ]
    then, now = earlier.get("machine") or {}, record.get("machine") or {}
    changed = sorted(k for k in now if k in then and then[k] != now[k])
    if changed:
        record["notes"].append(
            f"Rows from {run_label(earlier)} ran on another machine or software "
            f"({', '.join(f'{k} {then[k]}' for k in changed)}); the file's "
            "machine is this run's."
        )
