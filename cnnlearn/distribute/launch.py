"""A local multi-worker launcher: ``cnnlearn launch --workers N -- train ...``.

It starts ``N`` real worker processes on 127.0.0.1, each with a ``TF_CONFIG``
naming the whole cluster (free ports) and its own task, streams their output
with a ``[worker i]`` prefix, and fails as soon as any worker fails, stopping
the others. With an output directory, each worker's whole output also goes to
``worker_<i>.log`` there, and two kinds of lines go only there: the C++ log lines
of TensorFlow, abseil and gRPC (``E0000 00:00:...``, "Additional GRPC error
information ..."), and, once a worker has failed, what the others print (the
fallout: aborted collectives, tracebacks). The stream keeps what the training
code prints up to the first failure, which the result names. Every worker runs
in its own process group and is killed with it when the launch ends, times out
or is interrupted: nothing stays running.

It is for demos and tests on one machine. Real clusters (a Kubernetes TFJob,
Vertex AI custom training) start the workers and set ``TF_CONFIG`` themselves;
the training code is the same. Used in chapter 5.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cnnlearn._io import write_json

__all__ = [
    "LaunchResult",
    "free_ports",
    "is_native_log",
    "launch_workers",
    "tf_config",
    "worker_command",
]

# Lines written by TensorFlow's C++ runtime, abseil and gRPC, not by Python: an
# abseil prefix (severity, MMDD or 0000, time), gRPC's continuation lines, and
# abseil's note before its logging starts.
NATIVE_LOG = re.compile(
    r"^(?:[EWIF]\d{4} \d\d:\d\d:\d\d"
    r"|Additional GRPC error information"
    r"|:UNKNOWN:Error received from peer"
    r"|WARNING: All log messages before absl::InitializeLog\(\))"
)


@dataclass
class LaunchResult:
    """What :func:`launch_workers` returns, and writes to ``launch.json``."""

    workers: int
    ports: list[int]
    command: list[str]
    returncodes: list[int | None]
    seconds: float
    ok: bool
    failed: str = ""  # the first worker to fail and its exit code, or the timeout
    pids: list[int] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct TCP ports that were free on ``host`` a moment ago."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_config(ports: list[int], index: int, host: str = "127.0.0.1") -> dict:
    """The ``TF_CONFIG`` of worker ``index`` in a cluster of workers on ``ports``."""
    if not 0 <= index < len(ports):
        raise ValueError(f"worker index {index} outside 0..{len(ports) - 1}")
    return {
        "cluster": {"worker": [f"{host}:{port}" for port in ports]},
        "task": {"type": "worker", "index": index},
    }


def worker_command(args: list[str]) -> list[str]:
    """The command each worker runs, from what follows ``--``.

    ``train ...`` (any cnnlearn verb) runs ``python -m cnnlearn.cli train ...``,
    with ``--strategy multi_worker`` added to ``train`` unless given;
    ``script.py ...`` runs the script with this Python; anything else runs as is.
    """
    if not args:
        raise ValueError("nothing to launch: give a command after --, e.g. -- train")
    if args[0] in ("train", "evaluate"):
        args = list(args)
        if args[0] == "train" and not any(a.startswith("--strategy") for a in args):
            args += ["--strategy", "multi_worker"]
        return [sys.executable, "-m", "cnnlearn.cli", *args]
    if args[0].endswith(".py"):
        return [sys.executable, *args]
    return list(args)


def is_native_log(line: str) -> bool:
    """True for a C++ log line of TensorFlow, abseil or gRPC (see :data:`NATIVE_LOG`).

    :func:`launch_workers` keeps these out of its sink when it writes worker log files.
    """
    return bool(NATIVE_LOG.match(line))


class _Failures:
    """The order in which workers failed, as their output streams end."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.order: list[int] = []

    def add(self, index: int) -> None:
        with self._lock:
            if index not in self.order:
                self.order.append(index)

    def first_is_not(self, index: int) -> bool:
        """True once a worker other than ``index`` has failed first."""
        with self._lock:
            return bool(self.order) and self.order[0] != index


def _stream(
    proc, index: int, sink, lock: threading.Lock, log_path, failures: _Failures
) -> None:
    """Copy worker ``index``'s output to ``sink`` and its log file, if any.

    With a log file, C++ log lines and everything printed after another worker
    failed go to the log file only. When the output ends, a non-zero exit code
    is recorded in ``failures``.
    """
    log = open(log_path, "a", encoding="utf-8") if log_path else None  # noqa: SIM115
    try:
        for line in iter(proc.stdout.readline, ""):
            if log:
                log.write(line)
                log.flush()
                if is_native_log(line) or failures.first_is_not(index):
                    continue  # in the worker's log file only
            with lock:
                sink.write(f"[worker {index}] {line}")
                sink.flush()
    finally:
        if log:
            log.close()
        proc.stdout.close()
    if proc.wait() != 0:
        failures.add(index)


def _terminate(signum, frame):
    raise SystemExit(128 + signum)


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _start_worker(
    argv: list[str], index: int, env: dict[str, str], stream_args: tuple
) -> tuple[subprocess.Popen, threading.Thread]:
    """Start worker ``index`` with environment ``env`` in its own process group,
    and a thread copying its output (:func:`_stream` with ``stream_args``)."""
    proc = subprocess.Popen(
        argv,
        env={**env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        start_new_session=True,  # its own process group, killed as one
    )
    thread = threading.Thread(target=_stream, args=(proc, index, *stream_args))
    thread.daemon = True
    thread.start()
    return proc, thread


def _wait(
    procs: list[subprocess.Popen], failures: _Failures, deadline: float, timeout: float
) -> str:
    """Wait until every worker exits 0 (returns ``""``), one fails or the
    ``deadline`` passes (returns what went wrong)."""
    while True:
        codes = [p.poll() for p in procs]
        bad = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
        if bad:
            first = failures.order[0] if failures.order else bad[0][0]
            return f"worker {first} exited with {procs[first].poll()}"
        if all(c == 0 for c in codes):
            return ""
        if time.perf_counter() > deadline:
            return f"timed out after {timeout:g} s"
        time.sleep(0.1)


def _stop(
    procs: list[subprocess.Popen], threads: list[threading.Thread], failed: str
) -> None:
    """Kill what still runs (every worker's group after a failure) and reap it:
    the survivors of a failure would wait for the dead worker forever."""
    for proc in procs:
        if proc.poll() is None or failed:
            _kill_group(proc)
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
    for thread in threads:
        thread.join(timeout=5)


def launch_workers(
    command: list[str],
    workers: int = 2,
    *,
    timeout: float = 600.0,
    env: dict[str, str] | None = None,
    worker_env: dict[int, dict[str, str]] | None = None,
    output_dir: str | Path | None = None,
    sink=None,
) -> LaunchResult:
    """Run ``command`` as ``workers`` cooperating processes on 127.0.0.1.

    Parameters
    ----------
    command
        What follows ``--`` on the command line (see :func:`worker_command`).
    timeout
        Seconds before every worker is killed and the launch fails.
    env, worker_env
        Extra environment for all workers, and per worker index.
    output_dir
        Where ``launch.json`` (ports, pids, return codes, seconds, logs) goes;
        the pids are written as soon as the workers start. Each worker's whole
        output is appended to ``worker_<i>.log`` there (a restart adds to it).
    sink
        Where the prefixed worker output goes (default: stderr). With
        ``output_dir``, C++ log lines (:func:`is_native_log`) and what the other
        workers print after one has failed go to the log files only; without
        it, the sink gets every line.

    Returns
    -------
    LaunchResult
        ``ok`` is true when every worker exited 0. Used in chapter 5.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if timeout <= 0:
        raise ValueError(f"timeout must be > 0, got {timeout}")
    argv = worker_command(command)
    ports = free_ports(workers)
    report_path = Path(output_dir) / "launch.json" if output_dir else None
    log_paths = [None] * workers
    if report_path:
        report_path.parent.mkdir(parents=True, exist_ok=True)
        log_paths = [report_path.parent / f"worker_{i}.log" for i in range(workers)]
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)  # → the finally below
    procs: list[subprocess.Popen] = []
    threads: list[threading.Thread] = []
    lock, failures = threading.Lock(), _Failures()
    start = time.perf_counter()
    failed = ""
    try:
        for index in range(workers):
            worker_vars = {
                **os.environ,
                **(env or {}),
                **((worker_env or {}).get(index, {})),
                "TF_CONFIG": json.dumps(tf_config(ports, index)),
            }
            stream_args = (sink or sys.stderr, lock, log_paths[index], failures)
            proc, thread = _start_worker(argv, index, worker_vars, stream_args)
            procs.append(proc)
            threads.append(thread)
        if report_path:
            write_json(report_path, {"ports": ports, "pids": [p.pid for p in procs]})
        failed = _wait(procs, failures, start + timeout, timeout)
    finally:
        _stop(procs, threads, failed)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    result = LaunchResult(
        workers=workers,
        ports=ports,
        command=argv,
        returncodes=[p.returncode for p in procs],
        seconds=time.perf_counter() - start,
        ok=not failed,
        failed=failed,
        pids=[p.pid for p in procs],
        logs=[str(path) for path in log_paths if path],
    )
    if report_path:
        write_json(report_path, asdict(result))
    return result
