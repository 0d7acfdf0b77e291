"""Run the server as a subprocess and put load on it (chapter 8).

:func:`start_server` launches ``cnnlearn serve`` on a free loopback port and
waits (bounded) for its ready file; the returned :class:`ServerProcess` is a
context manager whose ``stop`` always ends the process (SIGTERM, then SIGKILL).
:func:`load` is a small closed-loop load generator: C threads on keep-alive
connections, each sending a pre-built request as soon as the previous answer
arrives, for T seconds after a warm-up; :func:`load_grpc` does the same over
TF Serving's gRPC API. The benchmark and the chapter use them.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cnnlearn.deploy import client

__all__ = [
    "BackgroundTraffic",
    "ServerProcess",
    "histogram",
    "histogram_quantile",
    "http_request",
    "load",
    "load_grpc",
    "start_server",
]


class ServerProcess:
    """A running ``cnnlearn serve``: ``url``, ``process``, ``log_path``, ``stop()``,
    and ``grpc_target`` (``host:port``) when it was started with ``--grpc-port``."""

    def __init__(self, process: subprocess.Popen, url: str, log_path: Path, log):
        self.process = process
        self.url = url
        self.grpc_target: str | None = None
        self.log_path = log_path
        self._log = log

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 15.0) -> int:
        """Graceful shutdown (SIGTERM), SIGKILL after ``timeout``; the exit code."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)
        self._log.close()
        return self.process.returncode

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_server(
    model_dir: str | Path | None,
    output_dir: str | Path,
    *,
    model_name: str = "mnist",
    backend: str = "tflite",
    poll_seconds: float = 1.0,
    extra_args: tuple[str, ...] = (),
    timeout: float = 120.0,
) -> ServerProcess:
    """Start ``cnnlearn serve`` on 127.0.0.1 and a free port; wait until ready.

    ``model_dir`` is the model's base path; ``None`` when ``extra_args`` name
    the models otherwise (``--model-config-file``). The server's output goes to
    ``output_dir/server.log``; its ready file is
    ``output_dir/server.json``. Raises ``RuntimeError`` if it exits early and
    ``TimeoutError`` (after stopping it) if it is not ready in ``timeout`` s.
    Whatever happens, the server is stopped when this Python process exits.
    Used in chapter 8.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    ready = out / "server.json"
    ready.unlink(missing_ok=True)
    log_path = out / "server.log"
    log = open(log_path, "wb")  # noqa: SIM115  (closed by stop())
    cmd = [sys.executable, "-m", "cnnlearn.cli", "serve", "--port", "0"]
    if model_dir is not None:
        cmd += ["--model-base-path", str(model_dir), "--model-name", model_name]
    cmd += ["--backend", backend, "--poll-seconds", str(poll_seconds)]
    cmd += ["--output", str(out), *extra_args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(cmd, stdout=log, stderr=log, env=env)
    server = ServerProcess(process, "", log_path, log)
    atexit.register(server.stop)  # even if the notebook or script fails midway
    deadline = time.monotonic() + timeout
    try:
        while not ready.is_file():
            if process.poll() is not None:
                tail = log_path.read_text(errors="replace")[-500:]
                raise RuntimeError(f"server exited with {process.returncode}: {tail}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"server not ready after {timeout} s")
            time.sleep(0.1)
        info = json.loads(ready.read_text())
        server.url = info["url"]
        if info.get("grpc_port") is not None:
            server.grpc_target = f"{info['host']}:{info['grpc_port']}"
    except BaseException:
        server.stop()
        raise
    return server


def http_request(path: str, body: bytes) -> bytes:
    """A raw HTTP/1.1 POST of a JSON ``body`` (keep-alive), ready to send."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _read_response(sock: socket.socket, buffer: bytearray) -> tuple[int, bytes]:
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buffer += chunk
    end = buffer.index(b"\r\n\r\n") + 4
    head = bytes(buffer[:end]).decode("latin-1").lower()
    status = int(head.split(" ", 2)[1])
    length = int(head.split("content-length:", 1)[1].split("\r\n", 1)[0])
    while len(buffer) < end + length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buffer += chunk
    body = bytes(buffer[end : end + length])
    del buffer[: end + length]
    return status, body


def _http_client(address, request, warm_until, stop_at, latencies, errors) -> None:
    try:
        sock = socket.create_connection(address, timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError as exc:
        errors.append(repr(exc))
        return
    buffer = bytearray()
    with sock:
        while True:
            start = time.perf_counter()
            if start >= stop_at:
                return
            try:
                sock.sendall(request)
                status, body = _read_response(sock, buffer)
            except (OSError, ValueError) as exc:
                errors.append(repr(exc))
                return
            done = time.perf_counter()
            if status != 200 or not body.startswith(b'{"predictions":'):
                errors.append(f"{status}: {body[:100]!r}")
            elif start >= warm_until:
                latencies.append(done - start)


def _grpc_client(target, request, warm_until, stop_at, latencies, errors) -> None:
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    # A connection of its own per client, as each HTTP client has its socket
    # (grpcio shares one between channels to the same target by default).
    options = [("grpc.use_local_subchannel_pool", 1)]
    with grpc.insecure_channel(target, options=options) as channel:
        predict = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict
        while True:
            start = time.perf_counter()
            if start >= stop_at:
                return
            try:
                answer = predict(request, timeout=30)
            except grpc.RpcError as exc:
                errors.append(f"{exc.code().name}: {exc.details()}")
                continue
            done = time.perf_counter()
            if not answer.outputs:
                errors.append("an answer without outputs")
            elif start >= warm_until:
                latencies.append(done - start)


def _closed_loop(
    client, args: tuple, clients: int, seconds: float, warmup: float, at_warm
):
    latencies: list[float] = []
    errors: list[str] = []
    warm_until = time.perf_counter() + warmup
    stop_at = warm_until + seconds
    args = (*args, warm_until, stop_at, latencies, errors)
    threads = [threading.Thread(target=client, args=args) for _ in range(clients)]
    for t in threads:
        t.start()
    if at_warm is not None:  # e.g. read the server's metrics as counting starts
        time.sleep(max(0.0, warm_until - time.perf_counter()))
        at_warm()
    for t in threads:
        t.join(timeout=warmup + seconds + 60)
    ms = np.asarray(latencies) * 1000
    return {
        "requests": len(latencies),
        "errors": len(errors),
        "first_errors": errors[:3],
        "p50_ms": float(np.percentile(ms, 50)) if len(ms) else None,
        "p99_ms": float(np.percentile(ms, 99)) if len(ms) else None,
        "requests_per_s": len(latencies) / seconds,
    }


def load(
    url: str,
    request: bytes,
    clients: int = 4,
    seconds: float = 5.0,
    warmup: float = 1.0,
    at_warm: Callable[[], object] | None = None,
) -> dict:
    """Closed-loop load: ``clients`` connections sending ``request`` for ``seconds``.

    ``request`` comes from :func:`http_request`. Answers other than 200 with a
    ``predictions`` body count as errors. ``at_warm`` is called once the
    warm-up is over, when counting starts. Returns requests, errors (and the
    first three), p50/p99 latency in ms and requests per second.
    """
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    address = (host.strip("[]"), int(port))
    args = (address, request)
    return _closed_loop(_http_client, args, clients, seconds, warmup, at_warm)


def load_grpc(
    target: str,
    request,
    clients: int = 4,
    seconds: float = 5.0,
    warmup: float = 1.0,
    at_warm: Callable[[], object] | None = None,
) -> dict:
    """:func:`load` over gRPC: ``clients`` channels calling ``Predict``.

    ``target`` is ``host:port`` of the server's gRPC port; ``request`` a
    ``tensorflow.serving.PredictRequest``. Each client has a connection of its
    own. Failed calls (any gRPC status but OK) and answers without outputs count
    as errors. Returns what :func:`load` returns. Needs ``tensorflow-serving-api``.
    """
    args = (target, request)
    return _closed_loop(_grpc_client, args, clients, seconds, warmup, at_warm)


def histogram(url: str, name: str) -> dict[float, float]:
    """A histogram from the server's ``/monitoring/prometheus/metrics``: each
    bucket's upper bound (``le``) and cumulative count, summed over its label
    sets; empty if the server has no such samples. Used in chapter 8."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(
        f"{url}/monitoring/prometheus/metrics", timeout=30
    ) as r:
        text = r.read().decode()
    counts: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == f"{name}_bucket":
                le = float(sample.labels["le"])
                counts[le] = counts.get(le, 0.0) + sample.value
    return counts


def histogram_quantile(
    before: dict[float, float], after: dict[float, float], q: float
) -> float | None:
    """The ``q`` quantile of what a histogram counted between two
    :func:`histogram` readings, as the upper bound of the bucket it falls in
    (an over-estimate by at most one bucket; ``inf`` past the last); ``None``
    if nothing was counted."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return None
    for bound, count in zip(bounds, counts):
        if count >= q * counts[-1]:
            return bound
    return bounds[-1]


class BackgroundTraffic:
    """Predict requests in a loop on a thread, e.g. while a new version deploys.

    Each answer's ``x-model-version`` header is recorded in ``versions``; every
    failed request (an exception or a non-200 answer) in ``failures``. Stops at
    ``stop()`` or after ``max_seconds``, whichever comes first. Chapter 8.
    """

    def __init__(self, url: str, model: str, body: dict, max_seconds: float = 120):
        self._request = client.request
        self._url = f"{url.rstrip('/')}/v1/models/{model}:predict"
        self._body = json.dumps(body).encode()
        self._max_seconds = max_seconds
        self._stop = threading.Event()
        self.versions: list[str] = []
        self.failures: list[str] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + self._max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                _, headers, doc = self._request(self._url, self._body, timeout=30)
                if "predictions" not in doc:
                    raise ValueError(f"no predictions in {str(doc)[:80]}")
                self.versions.append(headers.get("x-model-version", "?"))
            except Exception as exc:  # every failure counts
                self.failures.append(repr(exc))

    def start(self) -> BackgroundTraffic:
        self._thread.start()
        return self

    def wait_for(self, version: str, consecutive: int = 10, timeout: float = 60):
        """Block until the last ``consecutive`` answers came from ``version``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._thread.is_alive():
            if self.versions[-consecutive:] == [version] * consecutive:
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def __enter__(self) -> BackgroundTraffic:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
