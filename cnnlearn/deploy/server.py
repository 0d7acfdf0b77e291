"""A model server with TensorFlow Serving's REST API (chapter 8).

``create_app`` routes every request through :func:`rest_api`, which matches
the raw path against TF Serving's own URL patterns (:func:`route`:
case-insensitive, model names and labels percent-decoded, a 400 "Malformed
request: ..." for any ``/v1`` URL or method it does not route, as TF Serving
answers) and calls the module-level handlers (:func:`get_status`,
:func:`get_metadata`, :func:`predict`, :func:`classify_or_regress`), which read
the app's :class:`ServerState`; ``serve`` runs the app with uvicorn on a socket
it binds itself (127.0.0.1 by default; port 0 picks a free one) and writes a
ready file with the URL once the models are loaded. A client written for this
server works unchanged against ``tensorflow/serving``:

=============================================================  ==================
``GET  /v1/models/{name}[/versions/{v}|/labels/{l}]``           version status
``GET  /v1/models/{name}[/versions/{v}|/labels/{l}]/metadata``  signature defs
``POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict``   ``instances``
                                                                or ``inputs``
``POST ...:classify``, ``...:regress``                          tf.Example
                                                                ``examples``
``OPTIONS /v1/...``                                             CORS preflight
``GET  /monitoring/prometheus/metrics``                         Prometheus
=============================================================  ==================

Request bodies may be gzip-compressed (``Content-Encoding: gzip``; bounded by
``max_body_bytes`` after decompression). A version served before and replaced
stays in the status answer as ``END``, as in TF Serving.

Any SavedModel in TF Serving's layout serves (see :mod:`~.backends`): every
signature with its own inputs and outputs, converted from and to JSON with TF
Serving's semantics (:mod:`~.protocol`); the cnnlearn sidecar
(``assets.extra/cnnlearn.json``) is optional and adds labels and drift
monitoring. A version with a checksum manifest is checked before it loads.

Errors are ``{"error": "..."}``: 400 for a bad request (malformed JSON, a value
of the wrong type, a ragged list, a shape the signature cannot take, both
``instances`` and ``inputs``, a version over int64, an unknown version
label, an unroutable URL, malformed HTTP, and, where the server was started
with them, the guards of :class:`~.protocol.Guards`: a batch limit, a value
range, finite values only), 404 for an unknown model or version or any path
outside ``/v1``, 408 for a body not received within ``body_timeout``,
413 for a body over ``max_body_bytes``, 431 for headers over
:data:`MAX_HEADER_BYTES`, 503 over ``limit_concurrency``, 500 if the backend
fails. A client that closes the connection before its body
is in is counted as 499 (nginx's "client closed request"), logged in one line.
Predict answers carry an ``x-model-version`` header (TF Serving has none;
clients may ignore it). JSON goes through simdjson (plain float batches) or
orjson (everything else, see :func:`~.protocol.read_predict`); nothing is ever
unpickled. Parsing and inference of a body over ``inline_bytes`` run in a
bounded pool of worker threads, so the event loop keeps answering status and
health requests meanwhile. New versions under a model's base path are picked up
by a background poll, without a restart, and a version whose load failed is
retried with backoff and shown in the status API (see
:class:`~.backends.ModelVersions`). The LiteRT backend never imports TensorFlow.

Slow and idle clients are cut off by :class:`GuardedProtocol`, uvicorn's
httptools protocol with header and body timeouts added (uvicorn itself only has
``timeout_keep_alive``, which starts once a response is sent, so a connection
that never completes its headers would stay open forever). uvicorn answers
malformed HTTP itself, before the app, with a plain-text 400
(``HttpToolsProtocol.send_400_response``) and requests over its
``limit_concurrency`` with a plain-text 503 (``flow_control.service_unavailable``);
:class:`GuardedProtocol` overrides both, so those answers are JSON as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import re
import signal
import socket
import threading
import time
import urllib.parse
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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
from starlette.requests import ClientDisconnect
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from cnnlearn import progress
from cnnlearn._io import write_json
from cnnlearn.deploy.backends import Loaded, ModelVersions
from cnnlearn.deploy.protocol import (
    Guards,
    ServingError,
    classify_response,
    metadata_body,
    not_found,
    predict_response,
    read_examples_request,
    read_predict,
    regress_response,
    status_body,
)

__all__ = [
    "DEFAULT_BODY_TIMEOUT",
    "DEFAULT_HEADER_TIMEOUT",
    "DEFAULT_INLINE_BYTES",
    "DEFAULT_KEEP_ALIVE_TIMEOUT",
    "DEFAULT_LIMIT_CONCURRENCY",
    "DEFAULT_MAX_BATCH",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_WORKERS",
    "MAX_HEADER_BYTES",
    "CORS_HEADERS",
    "HTTP_METHODS",
    "METRICS_PATH",
    "PREDICT_PATH",
    "REST_PATH",
    "ROUTES",
    "STATUS_PATH",
    "GuardedProtocol",
    "ServerMetrics",
    "ServerState",
    "answer",
    "classify_or_regress",
    "cors_preflight",
    "create_app",
    "find_version",
    "get_metadata",
    "get_status",
    "guarded_protocol",
    "gunzip",
    "http_error",
    "internal_error",
    "lifespan",
    "load_models",
    "poll_forever",
    "predict",
    "prometheus_metrics",
    "read_body",
    "rest_api",
    "route",
    "run_examples",
    "serve",
    "server_config",
    "server_state",
    "service_busy",
    "version_status",
]

#: The batch limit the chapter 8 model server applied before it took any
#: SavedModel: now an option (``max_batch``), off by default as in TF Serving.
DEFAULT_MAX_BATCH = 1024
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024  # a 1024-image float batch is ~12 MB
#: Worker threads that parse and run requests with bodies over inline_bytes.
#: One: JSON parsing holds the GIL, so each more thread competes with the event
#: loop for it (a status request waited longer with 2 or 4 than with 1 while
#: clients sent large uint8 batches), and LiteRT calls are serialized anyway.
DEFAULT_WORKERS = 1
#: Bodies up to this size (a few single images) are parsed and run on the
#: event loop: see create_app.
DEFAULT_INLINE_BYTES = 64 * 1024
#: Seconds from a connection's opening, or a request's first byte, to the end
#: of its headers.
DEFAULT_HEADER_TIMEOUT = 10.0
#: Seconds from the end of the headers to the end of the body: a full
#: DEFAULT_MAX_BODY_BYTES body needs about 0.6 MB/s.
DEFAULT_BODY_TIMEOUT = 60.0
#: Seconds an idle keep-alive connection stays open (uvicorn's default).
DEFAULT_KEEP_ALIVE_TIMEOUT = 5.0
#: Open connections at most (uvicorn's limit_concurrency); with the body limit,
#: it bounds the memory that request bodies can take.
DEFAULT_LIMIT_CONCURRENCY = 128
#: Header bytes one request may send before it is refused with 431.
MAX_HEADER_BYTES = 64 * 1024
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
log = progress.logger("deploy")


def _json(obj, status: int = 200, headers: dict | None = None) -> Response:
    body = orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, status, headers, media_type="application/json")


class ServerMetrics:
    """The server's Prometheus metrics, in a registry of its own.

    ``cnnlearn_requests_total`` counts predict answers by status (499: the
    client closed the connection first); ``cnnlearn_model_load_failures_total``
    counts failed loads of model versions, retries included.
    """

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
        self.lock = threading.Lock()  # worker threads count predictions
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
        with self.lock:
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
        failures = CounterMetricFamily(
            "cnnlearn_model_load_failures",
            "Failed loads of model versions (each retry counts)",
            labels=["model"],
        )
        for name, manager in self.models.items():
            with self.lock:
                counted, seen = self.classes[name].tolist(), self.images[name]
            for cls, count in enumerate(counted):
                classes.add_metric([name, str(cls)], count)
            images.add_metric([name], seen)
            failures.add_metric([name], manager.load_failures)
            loaded = manager.current
            if loaded is not None:
                version.add_metric([name], loaded.version)
                if loaded.monitor is not None:
                    for stat, value in loaded.monitor.drift().items():
                        drift.add_metric([name, stat], value)
        yield from (classes, images, drift, version, failures)

    def describe(self):
        return []


@dataclass
class ServerState:
    """What the request handlers read: the app's ``app.state.server``.

    ``managers`` maps each model name to its :class:`~.backends.ModelVersions`;
    ``on_ready`` are called once the app accepts connections (``serve`` writes
    its ready file there); ``executor`` is the worker pool while the app runs
    (:func:`lifespan`), ``None`` otherwise (then everything runs inline).
    """

    managers: dict[str, ModelVersions]
    metrics: ServerMetrics
    guards: Guards = field(default_factory=Guards)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    poll_seconds: float = 1.0
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    workers: int = DEFAULT_WORKERS
    inline_bytes: int = DEFAULT_INLINE_BYTES
    executor: ThreadPoolExecutor | None = None
    on_ready: list[Callable[[], None]] = field(default_factory=list)


def server_state(request: Request) -> ServerState:
    """The :class:`ServerState` of the app answering ``request``."""
    return request.app.state.server


def find_version(
    state: ServerState, name: str, version: int | None, label: str | None = None
):
    """The loaded version of model ``name`` that a URL asks for.

    ``version`` is the URL's ``/versions/{v}`` number and ``label`` its
    ``/labels/{label}``, both ``None`` for the version being served. Raises
    :class:`~.protocol.ServingError`: 400 for a label the model does not
    have (TF Serving's "Unrecognized servable version label"), 404 for an
    unknown model or a version not served.
    """
    manager = state.managers.get(name)
    loaded = manager.current if manager else None
    if label is not None:
        if manager is None:
            raise not_found(name)
        if label not in manager.version_labels:
            raise ServingError(400, f"Unrecognized servable version label: {label}")
        version = manager.version_labels[label]
    if version is None:
        if loaded is None:
            raise not_found(name)
        return loaded
    if loaded is None or loaded.version != version:
        raise not_found(name, version)
    return loaded


def version_status(
    state: ServerState, name: str, version: int | None, label: str | None = None
) -> dict:
    """TF Serving's status answer for model ``name``: the version served
    (``AVAILABLE``), those served before (``END``, OK) and those whose load
    failed (``END``, with the error), or only the version the URL names
    (``version`` or ``label``). Raises :class:`~.protocol.ServingError` with
    TF Serving's words (``get_model_status_impl.cc``): 404 "Could not find
    any versions of model ..." or "Could not find version ... of model ...".
    """
    manager = state.managers.get(name)
    if label is not None and manager is not None:
        if label not in manager.version_labels:
            raise ServingError(400, f"Unrecognized servable version label: {label}")
        version = manager.version_labels[label]
    if manager is None:
        if version is None:
            raise ServingError(404, f"Could not find any versions of model {name}")
        raise ServingError(404, f"Could not find version {version} of model {name}")
    loaded = manager.current
    failed = {v: ("OK", "") for v in manager.retired.copy()}
    failed.update(
        (v, (failure.error_code, failure.message))
        for v, failure in manager.failed.copy().items()  # a copy: polls change it
    )
    available = [loaded.version] if loaded is not None else []
    if version is not None:
        available = [v for v in available if v == version]
        failed = {v: why for v, why in failed.items() if v == version}
        if not available and not failed:
            raise ServingError(404, f"Could not find version {version} of model {name}")
    if not available and not failed:
        raise ServingError(404, f"Could not find any versions of model {name}")
    return status_body(available, failed)


def _error(exc: ServingError) -> Response:
    return _json({"error": exc.message}, exc.status)


async def get_status(
    request: Request, name: str, version: int | None, label: str | None
) -> Response:
    """``GET /v1/models/{name}[/versions/{v}|/labels/{l}]``: the versions'
    status (:func:`version_status`)."""
    try:
        return _json(version_status(server_state(request), name, version, label))
    except ServingError as exc:
        return _error(exc)


async def get_metadata(
    request: Request, name: str, version: int | None, label: str | None
) -> Response:
    """``GET /v1/models/{name}[/versions/{v}|/labels/{l}]/metadata``: the
    model spec and the SavedModel's ``signature_def`` map."""
    try:
        loaded = find_version(server_state(request), name, version, label)
    except ServingError as exc:
        return _error(exc)
    # The model spec names the version found, never the label (TF Serving's
    # SavedModelGetSignatureDef sets the name and version of the servable).
    return _json(metadata_body(name, loaded.version, loaded.signature_def_map()))


async def read_body(
    request: Request, max_bytes: int, timeout: float = DEFAULT_BODY_TIMEOUT
) -> bytes:
    """The request body, refused with 413 once over ``max_bytes`` (whether the
    client declared its length or sends it chunked) and with 408 if it is not
    all in within ``timeout`` seconds. Raises
    :class:`starlette.requests.ClientDisconnect` if the client goes away."""
    length = request.headers.get("content-length")
    if length is not None and int(length) > max_bytes:
        raise ServingError(413, f"body over {max_bytes} bytes")
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                chunks.append(chunk)
                size += len(chunk)
                if size > max_bytes:
                    raise ServingError(413, f"body over {max_bytes} bytes")
    except TimeoutError:
        raise ServingError(408, f"body not received within {timeout:g} s") from None
    return b"".join(chunks)


def _observe(state: ServerState, name: str, loaded: Loaded, inputs, outputs):
    """Feed the drift monitor (the first image-like input: numbers, at least
    3-D) and the predicted-class counts (a single 2-D float output)."""
    if loaded.monitor is not None:
        for array in inputs.values():
            if array.dtype.kind in "uif" and array.ndim >= 3:
                loaded.monitor.update(array)
                break
    if len(outputs) == 1:
        (out,) = outputs.values()
        if out.dtype.kind == "f" and out.ndim == 2 and out.shape[1] > 0:
            state.metrics.count_predictions(name, out)


def gunzip(body: bytes, max_bytes: int) -> bytes:
    """A ``Content-Encoding: gzip`` body, decompressed (TF Serving's HTTP
    server accepts them); 413 once it would pass ``max_bytes``, 400 if it is
    not gzip. Never decompresses more than ``max_bytes`` plus one byte."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise ServingError(400, f"Malformed request: gzip body: {exc}") from None
    if len(out) > max_bytes or inflater.unconsumed_tail:
        raise ServingError(413, f"decompressed body over {max_bytes} bytes")
    if not inflater.eof:
        raise ServingError(400, "Malformed request: gzip body: truncated")
    return out


def answer(
    state: ServerState, name: str, loaded: Loaded, body: bytes, gzipped: bool = False
) -> Response:
    """Parse a predict body against the version's signatures, run it, feed
    the drift monitor and the class counts, and build TF Serving's answer: the
    work :func:`predict` runs in a worker thread (or inline for a small body).
    Thread-safe: LiteRT calls are serialized by the backend, the monitor and
    the counts take locks."""
    if gzipped:
        body = gunzip(body, state.max_body_bytes)
    parsed = read_predict(body, loaded.signatures, state.guards)
    outputs = loaded.run(parsed.signature, parsed.inputs)
    _observe(state, name, loaded, parsed.inputs, outputs)
    served = str(loaded.version)
    return Response(
        predict_response(outputs, parsed.key),
        200,
        {"x-model-version": served},
        media_type="application/json",
    )


async def predict(
    request: Request, name: str, version: int | None, label: str | None = None
) -> Response:
    """``POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict``.

    Reads the body (bounded in size and time), finds the version, and runs
    :func:`answer` (parse ``instances`` or ``inputs`` against its signatures,
    run the backend, answer in the request's format with an
    ``x-model-version`` header) in the worker pool, or inline for a body of at
    most ``inline_bytes``. Every answer, error or not, is counted and timed in
    the metrics; a client gone before its body is in counts as 499.
    """
    start = time.perf_counter()
    state = server_state(request)
    served = ""
    try:
        body = await read_body(request, state.max_body_bytes, state.body_timeout)
        loaded = find_version(state, name, version, label)
        served = str(loaded.version)
        executor = state.executor
        gzipped = request.headers.get("content-encoding", "").lower() == "gzip"
        if executor is None or (len(body) <= state.inline_bytes and not gzipped):
            response = answer(state, name, loaded, body, gzipped)
        else:
            loop = asyncio.get_running_loop()
            response = await loop.run_in_executor(
                executor, answer, state, name, loaded, body, gzipped
            )
    except ClientDisconnect:  # the client's doing: no traceback, not a 5xx
        log.warning("%r: client closed the connection mid-request (499)", name)
        response = _json({"error": "Client closed request"}, 499)
    except ServingError as exc:
        close = {"connection": "close"} if exc.status in (408, 413) else None
        response = _json({"error": exc.message}, exc.status, close)
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


async def internal_error(request: Request, exc: Exception) -> Response:
    """Any exception a handler lets through: a JSON 500, never a plain-text one
    (Starlette then re-raises it, so the server logs its traceback)."""
    return _json({"error": f"Internal error: {type(exc).__name__}"}, 500)


async def service_busy(scope, receive, send) -> None:
    """The ASGI answer over ``limit_concurrency``: a JSON 503 that closes the
    connection (uvicorn's own is plain text)."""
    body = orjson.dumps({"error": "Service unavailable: too many connections"})
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})


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
    """While the app runs: the worker pool, a poll for versions, and
    ``on_ready`` called once."""
    state: ServerState = app.state.server
    state.executor = ThreadPoolExecutor(state.workers, "cnnlearn-predict")
    task = asyncio.create_task(poll_forever(state))
    for callback in state.on_ready:  # e.g. serve() writes its ready file
        callback()
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        executor, state.executor = state.executor, None
        executor.shutdown(wait=False, cancel_futures=True)


#: TF Serving's URL patterns (``http_rest_api_util.cc``), matched against the
#: raw path: case-insensitive, model names and labels percent-decoded after.
PREDICT_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:/versions/([0-9]+)|/labels/([^/:]+))?"
    r":(classify|regress|predict)",
    re.IGNORECASE,
)
STATUS_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:/versions/([0-9]+)|/labels/([^/:]+))?"
    r"(?:/(metadata))?",
    re.IGNORECASE,
)
REST_PATH = re.compile(r"/v1/.*", re.IGNORECASE | re.DOTALL)
ROUTES = (("POST", PREDICT_PATH), ("GET", STATUS_PATH))
METRICS_PATH = "/monitoring/prometheus/metrics"
#: The methods routed to :func:`rest_api` (TF Serving answers any of them).
HTTP_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD")
#: TF Serving's answer headers with ``--enable_cors_support`` (AddCORSHeaders).
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, GET",
    "Access-Control-Allow-Headers": "Content-Type",
}


def _url_version(text: str | None) -> int | None:
    """The ``/versions/{v}`` digits as an int64, as ``absl::SimpleAtoi``
    reads them; too many digits is TF Serving's 400."""
    if text is None:
        return None
    value = int(text) if len(text) <= 20 else 2**63
    if value >= 2**63:
        shown = text if len(text) <= 24 else f"{text[:24]}..."
        raise ServingError(400, f"Failed to convert version: {shown} to numeric.")
    return value


def route(method: str, path: str):
    """What TF Serving does with ``method path`` (``ParseModelInfo``):
    ``(handler name, model, version, label)`` with the handler ``"predict"``,
    ``"classify"``, ``"regress"``, ``"metadata"`` or ``"status"``. Raises
    :class:`~.protocol.ServingError` 400 "Malformed request: ..." for what
    it does not route (a wrong method, an unknown verb, ``PREDICT`` in
    capitals: the pattern ignores case, the verb comparison does not), and
    for a missing model name or a version over int64."""
    malformed = ServingError(400, f"Malformed request: {method} {path}")
    pattern = dict(ROUTES).get(method)
    match = pattern.fullmatch(path) if pattern is not None else None
    if match is None:
        raise malformed
    name, version, label, verb = match.groups()
    name = urllib.parse.unquote(name or "")
    label = None if label is None else urllib.parse.unquote(label)
    number = _url_version(version)
    if method == "POST":
        if verb not in ("predict", "classify", "regress"):
            raise malformed
        return verb, name, number, label
    if not name:
        raise ServingError(400, "Missing model name in request.")
    return ("metadata" if verb == "metadata" else "status"), name, number, label


async def cors_preflight(request: Request) -> Response:
    """``OPTIONS``: TF Serving's CORS preflight, 200 with an ``http(s)://``
    ``Origin`` header, else 400."""
    if re.search(r"https?://", request.headers.get("origin", "")):
        return Response(b"", 200, CORS_HEADERS)
    return _json({"error": "Origin header is missing in CORS preflight"}, 400)


async def rest_api(request: Request) -> Response:
    """Every request: TF Serving's REST API under ``/v1`` (any case), the
    Prometheus metrics, and 404 for anything else."""
    raw = request.scope.get("raw_path") or request.url.path.encode()
    path = raw.decode("latin-1").split("?", 1)[0]
    method = request.method
    if method == "OPTIONS" and REST_PATH.fullmatch(path):
        return await cors_preflight(request)
    if not REST_PATH.fullmatch(path):
        if path == METRICS_PATH and method == "GET":
            return await asyncio.to_thread(prometheus_metrics, request)
        return _json({"error": f"Not found: {method} {path}"}, 404)
    try:
        handler, name, version, label = route(method, path)
    except ServingError as exc:
        return _error(exc)
    if handler == "predict":
        return await predict(request, name, version, label)
    if handler == "status":
        return await get_status(request, name, version, label)
    if handler == "metadata":
        return await get_metadata(request, name, version, label)
    return await classify_or_regress(request, handler, name, version, label)


def run_examples(loaded: Loaded, method: str, signature: str, examples: list) -> bytes:
    """Run serialized tf.Examples through a classify or regress signature and
    answer as TF Serving does (``classifier.cc``, ``regressor.cc``: the
    method check, one string input, the ``classes``/``scores`` or
    ``outputs`` tensors)."""
    name = signature or "serving_default"
    if name not in loaded.signatures:
        raise ServingError(400, f"No signature was found with the name: {name}")
    sig = loaded.signatures[name]
    want = f"tensorflow/serving/{method}"
    if sig.method_name != want:
        kind = "classification" if method == "classify" else "regression"
        raise ServingError(
            400,
            f"Expected {kind} signature method_name to be {want}. "
            f"Was: {sig.method_name}",
        )
    if len(sig.inputs) != 1:
        raise ServingError(400, "Expected one input Tensor.")
    ((input_name, _),) = sig.inputs.items()
    batch = np.empty(len(examples), dtype=object)
    batch[:] = examples
    outputs = loaded.run(name, {input_name: batch})
    if method == "regress":
        if "outputs" not in outputs:
            raise ServingError(400, "No regression outputs found in signature")
        return regress_response(outputs["outputs"])
    classes, scores = outputs.get("classes"), outputs.get("scores")
    if classes is None and scores is None:
        raise ServingError(
            400,
            "Expected classification signature outputs to contain at least one "
            'of "classes" or "scores".',
        )
    return classify_response(classes, scores)


async def classify_or_regress(
    request: Request, method: str, name: str, version: int | None, label: str | None
) -> Response:
    """``POST ...:classify`` and ``...:regress``: tf.Example requests
    (``{"examples": [...], "context": {...}}``, see
    :func:`~.protocol.read_examples_request`) run through a signature with
    that method (:func:`run_examples`); TF Serving's errors otherwise."""
    state = server_state(request)
    try:
        body = await read_body(request, state.max_body_bytes, state.body_timeout)
        if request.headers.get("content-encoding", "").lower() == "gzip":
            body = gunzip(body, state.max_body_bytes)
        signature, examples = read_examples_request(body)
        loaded = find_version(state, name, version, label)
        loop = asyncio.get_running_loop()
        answer_body = await loop.run_in_executor(
            state.executor, run_examples, loaded, method, signature, examples
        )
    except ClientDisconnect:
        return _json({"error": "Client closed request"}, 499)
    except ServingError as exc:
        return _error(exc)
    except ValueError as exc:  # inputs the model refuses
        return _json({"error": str(exc)}, 400)
    return Response(answer_body, 200, media_type="application/json")


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
    max_batch: int | None = None,
    value_range: tuple[float, float] | None = None,
    finite_only: bool = False,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    drift_window: int = 1000,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
    workers: int = DEFAULT_WORKERS,
    inline_bytes: int = DEFAULT_INLINE_BYTES,
) -> FastAPI:
    """The FastAPI app serving ``models`` (name → base path). Used in chapter 8.

    Parameters
    ----------
    models
        Model name → base path holding version directories (``1/``,
        ``00000123/``: see :class:`~.backends.ModelVersions`), each a
        SavedModel (any: a cnnlearn export, ``keras.Model.export``,
        ``tf.saved_model.save``) and, for LiteRT, a ``model.tflite``.
    backend
        ``"tflite"`` (LiteRT, no TensorFlow) or ``"savedmodel"``.
    pinned
        Model name → the only version to serve (rollback); others serve their
        highest complete version.
    poll_seconds
        How often the base paths are scanned for new versions (while the app
        runs under a server or a ``with TestClient(app)`` block).
    max_batch, value_range, finite_only
        Model-specific request checks, off by default as in TF Serving
        (:class:`~.protocol.Guards`): the most rows per request (the chapter 8
        server used :data:`DEFAULT_MAX_BATCH`), the ``(low, high)`` range of
        every float input value (``(0, 1)`` for the chapter 8 models), and
        refusing ``NaN`` and ``Infinity``. Each refusal is a 400.
    max_body_bytes
        Larger bodies are refused with 413.
    drift_window
        Images in each model's drift window.
    body_timeout
        Seconds a predict body may take to arrive, in all; then 408.
    workers
        Threads that parse bodies and run the model, off the event loop.
    inline_bytes
        Bodies of at most this many bytes are parsed and run on the event loop
        instead: their work is short, so the stall is short, and the hop to a
        worker thread and back (two thread switches and a contended GIL) would
        be a large share of a single-image request's latency, which the
        chapter 8 benchmark holds to its p99 goal. 0 sends every body to the
        workers.

    The versions present now are loaded before this returns; a model with no
    loadable version yet is served as 404 until one appears. The handlers
    (:func:`predict`, :func:`get_status`, ...) read the app's
    :class:`ServerState` from ``app.state.server``.
    """
    if not models:
        raise ValueError("no models to serve: expected {name: base_path}")
    if (max_batch is not None and max_batch < 1) or max_body_bytes < 1 or workers < 1:
        raise ValueError(
            "max_batch, max_body_bytes, workers must be >= 1: "
            f"got {max_batch}, {max_body_bytes}, {workers}"
        )
    if value_range is not None and not (
        len(value_range) == 2 and value_range[0] <= value_range[1]  # NaN fails
    ):
        raise ValueError(f"value_range must be (low, high), low <= high: {value_range}")
    if not body_timeout > 0 or inline_bytes < 0:  # NaN fails the first test
        raise ValueError(
            f"expected body_timeout > 0 s and inline_bytes >= 0, got "
            f"{body_timeout} s and {inline_bytes}"
        )
    managers = load_models(models, backend, pinned, drift_window)
    app = FastAPI(
        title="cnnlearn model server",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.server = ServerState(
        managers,
        ServerMetrics(managers),
        Guards(max_batch, tuple(value_range) if value_range else None, finite_only),
        max_body_bytes,
        poll_seconds,
        body_timeout,
        workers,
        inline_bytes,
    )
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, internal_error)
    # One route for everything: TF Serving's URLs ignore case and its answer
    # to an unroutable /v1 URL is a 400, which Starlette's router cannot say.
    app.router.add_route("/{path:path}", rest_api, methods=list(HTTP_METHODS))
    return app


def _json_reply(status: int, message: str) -> bytes:
    """A whole HTTP/1.1 answer that closes the connection, for the protocol."""
    body = orjson.dumps({"error": message})
    return b"".join(
        [
            b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status]),
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        ]
    )


_REASONS = {
    400: b"Bad Request",
    408: b"Request Timeout",
    431: b"Request Header Fields Too Large",
}


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, guarded against slow and hostile clients.

    A request's headers must be complete within ``header_timeout`` seconds of
    the connection's opening or of the request's first byte (else JSON 408 and
    close; a connection that sent nothing is just closed), and hold at most
    :data:`MAX_HEADER_BYTES` (else 431); its body must be complete within
    ``body_timeout`` seconds of the headers (else the connection is closed:
    :func:`read_body` answers 408 a little earlier while the app still reads;
    this catches a body that nobody reads, after a 404 for instance). Idle
    keep-alive connections are closed by uvicorn's ``timeout_keep_alive``.
    Malformed HTTP gets a JSON 400 and requests over ``limit_concurrency`` a
    JSON 503 (uvicorn's own answers are plain text). :func:`guarded_protocol`
    makes a subclass with other timeouts. Used by :func:`serve`.
    """

    header_timeout = DEFAULT_HEADER_TIMEOUT
    body_timeout = DEFAULT_BODY_TIMEOUT + 1.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.guard_header_timer = None
        self.guard_body_timer = None
        self.guard_in_headers = True
        self.guard_header_bytes = 0
        self.guard_request_begun = False

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.guard_header_timer = self.loop.call_later(
            self.header_timeout, self.headers_timed_out
        )

    def data_received(self, data: bytes) -> None:
        if self.guard_in_headers:
            self.guard_header_bytes += len(data)
        super().data_received(data)
        if self.guard_in_headers and self.guard_header_bytes > MAX_HEADER_BYTES:
            self.refuse(431, f"request headers over {MAX_HEADER_BYTES} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.guard_in_headers, self.guard_request_begun = True, True
        self.guard_header_bytes = 0  # this chunk's bytes are not counted: bounded
        if self.guard_header_timer is None:  # the next request on a connection
            self.guard_header_timer = self.loop.call_later(
                self.header_timeout, self.headers_timed_out
            )

    def on_headers_complete(self) -> None:
        self.guard_in_headers = False
        self.cancel_timers()
        self.guard_body_timer = self.loop.call_later(
            self.body_timeout, self.body_timed_out
        )
        limit = self.limit_concurrency
        busy = limit is not None and max(len(self.connections), len(self.tasks))
        if limit is None or busy < limit:  # uvicorn's own test
            super().on_headers_complete()
            return
        # Over the limit: uvicorn would answer with its plain-text 503 app;
        # have it start ours instead (it uses self.app when there is no limit).
        app, self.app, self.limit_concurrency = self.app, service_busy, None
        try:
            log.warning("over the concurrency limit of %d: 503", limit)
            super().on_headers_complete()
        finally:
            self.app, self.limit_concurrency = app, limit

    def on_message_complete(self) -> None:
        if self.guard_body_timer is not None:
            self.guard_body_timer.cancel()
            self.guard_body_timer = None
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self.cancel_timers()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """Malformed HTTP: uvicorn's plain-text 400, as JSON."""
        self.refuse(400, f"Malformed request: {msg}")

    def cancel_timers(self) -> None:
        """Stop the header and body timers."""
        for timer in (self.guard_header_timer, self.guard_body_timer):
            if timer is not None:
                timer.cancel()
        self.guard_header_timer = self.guard_body_timer = None

    def refuse(self, status: int, message: str) -> None:
        """Answer ``status`` with a JSON error (unless a response is under way)
        and close the connection."""
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(_json_reply(status, message))
        self.transport.close()

    def headers_timed_out(self) -> None:
        """The header timer fired: 408 if a request has begun, then close."""
        self.guard_header_timer = None
        if not self.guard_request_begun:
            self.transport.close()  # idle since it opened: nothing to answer
            return
        log.warning("headers not received within %g s: 408", self.header_timeout)
        self.refuse(408, f"headers not received within {self.header_timeout:g} s")

    def body_timed_out(self) -> None:
        """The body timer fired: close the connection."""
        self.guard_body_timer = None
        if not self.transport.is_closing():
            log.warning("body not received within %g s: closed", self.body_timeout)
            self.transport.close()


def guarded_protocol(
    header_timeout: float = DEFAULT_HEADER_TIMEOUT,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
) -> type[GuardedProtocol]:
    """:class:`GuardedProtocol` with these timeouts, in seconds (the body's gets
    one more second, so that :func:`read_body`'s 408 comes first)."""
    if not (header_timeout > 0 and body_timeout > 0):  # NaN fails too
        raise ValueError(
            f"timeouts must be > 0 s, got {header_timeout} s and {body_timeout} s"
        )
    attrs = {"header_timeout": header_timeout, "body_timeout": body_timeout + 1.0}
    return type("GuardedProtocol", (GuardedProtocol,), attrs)


def server_config(
    app: FastAPI,
    *,
    log_level: str = "warning",
    header_timeout: float = DEFAULT_HEADER_TIMEOUT,
    keep_alive_timeout: float = DEFAULT_KEEP_ALIVE_TIMEOUT,
    limit_concurrency: int = DEFAULT_LIMIT_CONCURRENCY,
) -> uvicorn.Config:
    """uvicorn's configuration for ``app``: uvloop, :class:`GuardedProtocol`
    with ``header_timeout`` and the app's ``body_timeout``, idle connections
    closed after ``keep_alive_timeout`` seconds, at most ``limit_concurrency``
    connections, no WebSockets, no access log. Used by :func:`serve`."""
    if not keep_alive_timeout > 0 or limit_concurrency < 2:
        raise ValueError(
            "expected keep_alive_timeout > 0 s and limit_concurrency >= 2, got "
            f"{keep_alive_timeout} s and {limit_concurrency}"
        )
    protocol = guarded_protocol(header_timeout, app.state.server.body_timeout)
    return uvicorn.Config(
        app,
        loop="uvloop",
        http=protocol,
        ws="none",
        log_level=log_level,
        access_log=False,
        timeout_keep_alive=keep_alive_timeout,
        limit_concurrency=limit_concurrency,
        timeout_graceful_shutdown=10,
    )


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
    header_timeout: float = DEFAULT_HEADER_TIMEOUT,
    keep_alive_timeout: float = DEFAULT_KEEP_ALIVE_TIMEOUT,
    limit_concurrency: int = DEFAULT_LIMIT_CONCURRENCY,
    **app_kwargs,
) -> None:
    """Serve ``models`` until SIGINT or SIGTERM (a graceful shutdown).

    Binds ``host:port`` (127.0.0.1 unless told otherwise; port 0 picks a free
    port), loads the models (``app_kwargs`` go to :func:`create_app`:
    ``body_timeout``, ``workers``, the guards ``max_batch``, ``value_range``
    and ``finite_only``, ...), writes ``ready_file`` (JSON: url,
    host, port, pid, backend, models) once it accepts connections, and runs
    uvicorn with uvloop and httptools, guarded against slow clients
    (:func:`server_config`: ``header_timeout``, ``keep_alive_timeout`` and
    ``limit_concurrency``, see :class:`GuardedProtocol`). With ``freeze_gc``
    the objects alive once the models are loaded leave the garbage collector's
    reach (``gc.freeze``): a stream of JSON requests triggers full
    collections, and walking the whole web stack and framework each time was
    the server's worst tail latency. Used by ``cnnlearn serve`` and chapter 8.
    """
    app = create_app(models, backend, **app_kwargs)
    config = server_config(
        app,
        log_level=log_level,
        header_timeout=header_timeout,
        keep_alive_timeout=keep_alive_timeout,
        limit_concurrency=limit_concurrency,
    )
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
