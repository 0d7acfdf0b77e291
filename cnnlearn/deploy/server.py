"""A model server with TensorFlow Serving's REST API (chapter 8).

``create_app`` wires module-level request handlers (:func:`get_status`,
:func:`get_metadata`, :func:`predict`), which read the app's
:class:`ServerState`, to TF Serving's URLs; ``serve`` runs the app with uvicorn
on a socket it binds itself (127.0.0.1 by default; port 0 picks a free one) and
writes a ready file with the URL once the models are loaded. A client written
for this server works unchanged against ``tensorflow/serving``:

==========================================================  =====================
``GET  /v1/models/{name}[/versions/{v}]``                    version status
``GET  /v1/models/{name}[/versions/{v}]/metadata``           signature defs
``POST /v1/models/{name}[/versions/{v}]:predict``            ``instances`` (rows)
                                                             or ``inputs``
``GET  /monitoring/prometheus/metrics``                      Prometheus metrics
==========================================================  =====================

Errors are ``{"error": "..."}``: 400 for a bad request (malformed JSON, NaN or
infinite values, a wrong shape or dtype, an empty or too large batch, both
``instances`` and ``inputs``), 404 for an unknown model or version, 413 for a
body over ``max_body_bytes``, 500 if the backend fails. Predict answers carry an
``x-model-version`` header (TF Serving has none; clients may ignore it). JSON
goes through simdjson (plain float batches) or orjson (everything else, see
:func:`~.protocol.read_predict`); nothing is ever unpickled. New versions under
a model's base path are picked up by a background poll, without a restart (see
:class:`~.backends.ModelVersions`). The LiteRT backend never imports TensorFlow.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from starlette.exceptions import HTTPException

from cnnlearn import progress
from cnnlearn._io import write_json
from cnnlearn.deploy.backends import ModelVersions
from cnnlearn.deploy.protocol import (
    ServingError,
    metadata_body,
    not_found,
    read_predict,
    status_body,
)

__all__ = [
    "DEFAULT_MAX_BATCH",
    "DEFAULT_MAX_BODY_BYTES",
    "ROUTES",
    "ServerMetrics",
    "ServerState",
    "create_app",
    "find_version",
    "get_metadata",
    "get_status",
    "http_error",
    "lifespan",
    "load_models",
    "poll_forever",
    "predict",
    "prometheus_metrics",
    "read_body",
    "serve",
    "server_state",
]

DEFAULT_MAX_BATCH = 1024
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024  # a 1024-image float batch is ~12 MB
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
log = progress.logger("deploy")


def _json(obj, status: int = 200, headers: dict | None = None) -> Response:
    body = orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, status, headers, media_type="application/json")


class ServerMetrics:
    """The server's Prometheus metrics, in a registry of its own."""

    def __init__(self, models: dict[str, ModelVersions]):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "cnnlearn_requests",
            "Predict requests by model, version and HTTP status",
            ["model", "version", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "cnnlearn_request_latency_seconds",
            "Predict latency inside the server, from body received to answer",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.models = models
        self.classes = {name: np.zeros(0, dtype=np.int64) for name in models}
        self.images = dict.fromkeys(models, 0)
        self._children: dict[tuple, object] = {}
        self.registry.register(self)  # collect() below: classes, drift, versions

    def record(self, model: str, version: str, status: int, seconds: float) -> None:
        if model not in self.models:  # names from URLs: bound the label values
            model = "_unknown"
        key = (model, version, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.requests.labels(model, version, status)
        child.inc()
        if model in self.models:
            key = (model,)
            hist = self._children.get(key)
            if hist is None:
                hist = self._children[key] = self.latency.labels(model)
            hist.observe(seconds)

    def count_predictions(self, model: str, probabilities: np.ndarray) -> None:
        counts = np.bincount(
            probabilities.argmax(axis=1), minlength=probabilities.shape[1]
        )
        known = self.classes[model]
        if len(counts) > len(known):
            known = np.pad(known, (0, len(counts) - len(known)))
        known[: len(counts)] += counts
        self.classes[model] = known
        self.images[model] += len(probabilities)

    def collect(self):
        classes = CounterMetricFamily(
            "cnnlearn_predicted_class",
            "Predictions per class (argmax)",
            labels=["model", "class"],
        )
        images = CounterMetricFamily(
            "cnnlearn_images", "Images predicted", labels=["model"]
        )
        drift = GaugeMetricFamily(
            "cnnlearn_input_drift",
            "|live mean - training mean| / training std of per-image statistics, "
            "over the drift window",
            labels=["model", "statistic"],
        )
        version = GaugeMetricFamily(
            "cnnlearn_model_version", "The version being served", labels=["model"]
        )
        for name, manager in self.models.items():
            for cls, count in enumerate(self.classes[name].tolist()):
                classes.add_metric([name, str(cls)], count)
            images.add_metric([name], self.images[name])
            loaded = manager.current
            if loaded is not None:
                version.add_metric([name], loaded.version)
                if loaded.monitor is not None:
                    for stat, value in loaded.monitor.drift().items():
                        drift.add_metric([name, stat], value)
        yield from (classes, images, drift, version)

    def describe(self):
        return []


@dataclass
class ServerState:
    """What the request handlers read: the app's ``app.state.server``.

    ``managers`` maps each model name to its :class:`~.backends.ModelVersions`;
    ``on_ready`` are called once the app accepts connections (``serve`` writes
    its ready file there).
    """

    managers: dict[str, ModelVersions]
    metrics: ServerMetrics
    max_batch: int = DEFAULT_MAX_BATCH
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    poll_seconds: float = 1.0
    on_ready: list[Callable[[], None]] = field(default_factory=list)


def server_state(request: Request) -> ServerState:
    """The :class:`ServerState` of the app answering ``request``."""
    return request.app.state.server


def find_version(state: ServerState, name: str, version: str | None):
    """The loaded version of model ``name`` that a URL asks for.

    ``version`` is the URL's ``/versions/{v}`` part, or ``None`` for the one
    being served. Raises :class:`~.protocol.ServingError`: 400 for a version
    that is not an integer, 404 for an unknown model or a version not served.
    """
    manager = state.managers.get(name)
    loaded = manager.current if manager else None
    if version is None:
        if loaded is None:
            raise not_found(name)
        return loaded
    if not version.isdigit():
        raise ServingError(400, f"version must be an integer, got {version!r}")
    if loaded is None or loaded.version != int(version):
        raise not_found(name, int(version))
    return loaded


# The handlers are plain Starlette endpoints (no FastAPI dependency solving on
# the hot path); create_app wires them to TF Serving's URLs.


async def get_status(request: Request) -> Response:
    """``GET /v1/models/{name}[/versions/{v}]``: the served version's status."""
    name, version = _path(request)
    try:
        loaded = find_version(server_state(request), name, version)
    except ServingError as exc:
        return _json({"error": exc.message}, exc.status)
    return _json(status_body([loaded.version]))


async def get_metadata(request: Request) -> Response:
    """``GET /v1/models/{name}[/versions/{v}]/metadata``: the signature defs."""
    name, version = _path(request)
    try:
        loaded = find_version(server_state(request), name, version)
    except ServingError as exc:
        return _json({"error": exc.message}, exc.status)
    return _json(metadata_body(name, loaded.version, loaded.metadata["signatures"]))


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, refused with 413 once over ``max_bytes`` (whether the
    client declared its length or sends it chunked)."""
    length = request.headers.get("content-length")
    if length is not None and int(length) > max_bytes:
        raise ServingError(413, f"body over {max_bytes} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        chunks.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            raise ServingError(413, f"body over {max_bytes} bytes")
    return b"".join(chunks)


async def predict(request: Request) -> Response:
    """``POST /v1/models/{name}[/versions/{v}]:predict``: probabilities.

    Reads the body (bounded), finds the version, parses ``instances`` or
    ``inputs`` against its signatures (:func:`~.protocol.read_predict`), runs
    the backend, feeds the drift monitor and the class counts, and answers in
    the request's format with an ``x-model-version`` header. Every answer,
    error or not, is counted and timed in the metrics.
    """
    start = time.perf_counter()
    state = server_state(request)
    name, version = _path(request)
    served = ""
    try:
        body = await read_body(request, state.max_body_bytes)
        loaded = find_version(state, name, version)
        served = str(loaded.version)
        parsed = read_predict(body, loaded.metadata["signatures"], state.max_batch)
        probabilities = loaded.backend.predict(parsed.signature, parsed.images)
        if loaded.monitor is not None:
            loaded.monitor.update(parsed.images)
        state.metrics.count_predictions(name, probabilities)
        response = _json(
            {parsed.key: probabilities}, headers={"x-model-version": served}
        )
    except ServingError as exc:
        response = _json({"error": exc.message}, exc.status)
    except ValueError as exc:  # e.g. a bad Content-Length
        response = _json({"error": str(exc)}, 400)
    except Exception as exc:  # a backend failure: answer, log, keep serving
        log.exception("%s: prediction failed", name)
        response = _json({"error": f"Internal error: {type(exc).__name__}"}, 500)
    elapsed = time.perf_counter() - start
    state.metrics.record(name, served, response.status_code, elapsed)
    return response


def prometheus_metrics(request: Request) -> Response:
    """``GET /monitoring/prometheus/metrics``: the metrics in Prometheus' text
    format (run in a worker thread: computing the drift gauges takes a while)."""
    text = generate_latest(server_state(request).metrics.registry)
    return Response(text, media_type=CONTENT_TYPE_LATEST)


async def http_error(request: Request, exc: HTTPException) -> Response:
    """Unknown paths and wrong methods, as ``{"error": ...}`` like the rest."""
    return _json({"error": f"Malformed request: {exc.detail}"}, exc.status_code)


async def poll_forever(state: ServerState) -> None:
    """Scan every model's base path for new versions every ``poll_seconds``.

    Loading runs in a thread, so the event loop keeps serving meanwhile; a
    failed poll is logged and the next one tries again.
    """
    while True:
        await asyncio.sleep(state.poll_seconds)
        for manager in state.managers.values():
            try:
                await asyncio.to_thread(manager.poll)
            except Exception as exc:  # keep polling whatever happens
                log.error("%s: poll failed: %s", manager.name, exc)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI):
    """While the app runs: poll for versions, and call ``on_ready`` once."""
    state: ServerState = app.state.server
    task = asyncio.create_task(poll_forever(state))
    for callback in state.on_ready:  # e.g. serve() writes its ready file
        callback()
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


ROUTES = (
    ("/v1/models/{name}", get_status, "GET"),
    ("/v1/models/{name}/versions/{version}", get_status, "GET"),
    ("/v1/models/{name}/metadata", get_metadata, "GET"),
    ("/v1/models/{name}/versions/{version}/metadata", get_metadata, "GET"),
    ("/v1/models/{name}:predict", predict, "POST"),
    ("/v1/models/{name}/versions/{version}:predict", predict, "POST"),
)


def load_models(
    models: dict[str, str | Path],
    backend: str,
    pinned: dict[str, int] | None,
    drift_window: int,
) -> dict[str, ModelVersions]:
    """One :class:`~.backends.ModelVersions` per model, its versions present
    now loaded. Raises :class:`FileNotFoundError` for a missing base path and
    :class:`ValueError` for a pinned model that is not served."""
    pinned = pinned or {}
    unknown = set(pinned) - set(models)
    if unknown:
        raise ValueError(f"pinned models {sorted(unknown)} are not served")
    managers = {
        name: ModelVersions(name, path, backend, pinned.get(name), drift_window)
        for name, path in models.items()
    }
    for manager in managers.values():
        if not manager.base_path.is_dir():
            raise FileNotFoundError(f"model base path {manager.base_path} not found")
        manager.poll()
    return managers


def create_app(
    models: dict[str, str | Path],
    backend: str = "tflite",
    *,
    pinned: dict[str, int] | None = None,
    poll_seconds: float = 1.0,
    max_batch: int = DEFAULT_MAX_BATCH,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    drift_window: int = 1000,
) -> FastAPI:
    """The FastAPI app serving ``models`` (name → base path). Used in chapter 8.

    Parameters
    ----------
    models
        Model name → base path holding integer version directories.
    backend
        ``"tflite"`` (LiteRT, no TensorFlow) or ``"savedmodel"``.
    pinned
        Model name → the only version to serve (rollback); others serve their
        highest complete version.
    poll_seconds
        How often the base paths are scanned for new versions (while the app
        runs under a server or a ``with TestClient(app)`` block).
    max_batch, max_body_bytes
        Larger requests are refused with 400 and 413.
    drift_window
        Images in each model's drift window.

    The versions present now are loaded before this returns; a model with no
    loadable version yet is served as 404 until one appears. The handlers
    (:func:`predict`, :func:`get_status`, ...) read the app's
    :class:`ServerState` from ``app.state.server``.
    """
    if not models:
        raise ValueError("no models to serve: expected {name: base_path}")
    if max_batch < 1 or max_body_bytes < 1:
        raise ValueError(f"max_batch, max_body_bytes must be >= 1: {max_batch}")
    managers = load_models(models, backend, pinned, drift_window)
    app = FastAPI(
        title="cnnlearn model server",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.server = ServerState(
        managers, ServerMetrics(managers), max_batch, max_body_bytes, poll_seconds
    )
    app.add_exception_handler(HTTPException, http_error)
    for path, endpoint, method in ROUTES:
        app.router.add_route(path, endpoint, methods=[method])
    app.add_api_route(
        "/monitoring/prometheus/metrics", prometheus_metrics, methods=["GET"]
    )
    return app


def _path(request: Request) -> tuple[str, str | None]:
    params = request.path_params
    return params["name"], params.get("version")


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)  # connections queue from now on, before uvicorn accepts
    return sock


def serve(
    models: dict[str, str | Path],
    backend: str = "tflite",
    *,
    host: str = "127.0.0.1",
    port: int = 8501,
    ready_file: str | Path | None = None,
    log_level: str = "warning",
    freeze_gc: bool = True,
    **app_kwargs,
) -> None:
    """Serve ``models`` until SIGINT or SIGTERM (a graceful shutdown).

    Binds ``host:port`` (127.0.0.1 unless told otherwise; port 0 picks a free
    port), loads the models, writes ``ready_file`` (JSON: url, host, port, pid,
    backend, models) once it accepts connections, and runs uvicorn with uvloop
    and httptools. With ``freeze_gc`` the objects alive once the models are
    loaded leave the garbage collector's reach (``gc.freeze``): a stream of
    JSON requests triggers full collections, and walking the whole web stack
    and framework each time was the server's worst tail latency. Used by
    ``cnnlearn serve`` and chapter 8.
    """
    app = create_app(models, backend, **app_kwargs)
    if freeze_gc:  # see the docstring; measured in benchmarks/serving.py
        gc.collect()
        gc.freeze()
    sock = _bind(host, port)
    bound_port = sock.getsockname()[1]
    url = f"http://{host if ':' not in host else f'[{host}]'}:{bound_port}"

    def ready():
        if ready_file is None:
            return
        served = {
            name: {
                "base_path": str(m.base_path),
                "version": m.current.version if m.current else None,
            }
            for name, m in app.state.server.managers.items()
        }
        info = {"url": url, "host": host, "port": bound_port, "pid": os.getpid()}
        write_json(ready_file, {**info, "backend": backend, "models": served})

    app.state.server.on_ready.append(ready)
    config = uvicorn.Config(
        app,
        loop="uvloop",
        http="httptools",
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal
    # with the handlers found at start: these make that a normal return (exit 0).
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: None)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
        if ready_file is not None:
            with contextlib.suppress(FileNotFoundError):
                Path(ready_file).unlink()
