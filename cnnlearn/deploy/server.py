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
``max_body_bytes`` after decompression). Every version that the model's
version policy keeps loaded is served (``/versions/{v}``, or a label that
names it); a request without a version gets the highest. A version served
before and unloaded stays in the status answer as ``END``, as in TF Serving.

Any SavedModel in TF Serving's layout serves (see :mod:`~.backends`): every
signature with its own inputs and outputs, converted from and to JSON with TF
Serving's semantics (:mod:`~.protocol`); the cnnlearn sidecar
(``assets.extra/cnnlearn.json``) is optional and adds labels and drift
monitoring. A version with a checksum manifest is checked before it loads.

Errors are ``{"error": "..."}``: 400 for a bad request (malformed JSON, a value
of the wrong type, a ragged list, a shape the signature cannot take, both
``instances`` and ``inputs``, a version over int64, an unknown version label,
an unroutable URL, malformed HTTP, and, where the server was started with them,
the guards of :class:`~.protocol.Guards`: a batch limit, a value range, finite
values only), 404 for an unknown model or version or any path outside ``/v1``,
408 for a body not received within ``body_timeout``, 413 for a body over
``max_body_bytes``, 431 for headers over :data:`MAX_HEADER_BYTES`, 503 over
``limit_concurrency`` or when a version's batching queue is full, 500 if the
backend fails. A client that closes the connection before its body is in is
counted as 499 (nginx's "client closed request"), logged in one line. Predict
answers carry an ``x-model-version`` header (TF Serving has none; clients may
ignore it). JSON goes through simdjson (plain float batches) or orjson
(everything else, see :func:`~.protocol.read_predict`); nothing is ever
unpickled. Parsing and inference of a body over ``inline_bytes`` run in a
bounded pool of worker threads, so the event loop keeps answering status and
health requests meanwhile. New versions under a model's base path are picked up
by a background poll, without a restart, and a version whose load failed is
retried with backoff and shown in the status API (see
:class:`~.backends.ModelVersions`). The LiteRT backend never imports
TensorFlow.

The server's state (the models, their versions, labels and batching queues)
is in :mod:`~.state`, shared with the gRPC service; uvicorn's guarded
transport (timeouts, JSON answers for malformed HTTP and overload) is in
:mod:`~.transport`. Their public names are importable from here too.

Beyond the REST port, :func:`serve` can start TF Serving's gRPC API
(``grpc_port``: TF Serving's ``--port``; our ``port`` is the REST port, TF
Serving's ``--rest_api_port``) from the same state, read a model config file
(``model_config_file``, re-read every ``config_poll_seconds``) and batch
requests server-side (``batching``), both ports' predict requests going
through one queue per model version.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import os
import re
import signal
import threading
import time
import urllib.parse
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import orjson
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from cnnlearn import progress
from cnnlearn._io import write_json
from cnnlearn.deploy.backends import Loaded
from cnnlearn.deploy.batching import Batchers, BatchingParameters, QueueFullError
from cnnlearn.deploy.modelconfig import ConfigWatcher
from cnnlearn.deploy.protocol import (
    Guards,
    ParsedRequest,
    ServingError,
    classify_response,
    metadata_body,
    predict_response,
    read_examples_request,
    read_predict,
    regress_response,
)
from cnnlearn.deploy.state import (
    DEFAULT_INLINE_BYTES,
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_WORKERS,
    ServerMetrics,
    ServerState,
    StateSource,
    apply_config,
    find_version,
    load_models,
    observe,
    poll_models,
    run_model,
    version_status,
)
from cnnlearn.deploy.transport import (
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_KEEP_ALIVE_TIMEOUT,
    DEFAULT_LIMIT_CONCURRENCY,
    MAX_HEADER_BYTES,
    GuardedProtocol,
    bind,
    guarded_protocol,
    server_config,
    service_busy,
)

__all__ = [
    # defined here
    "CORS_HEADERS",
    "HTTP_METHODS",
    "METRICS_PATH",
    "PREDICT_PATH",
    "REST_PATH",
    "ROUTES",
    "STATUS_PATH",
    "answer",
    "batched_answer",
    "classify_or_regress",
    "cors_preflight",
    "create_app",
    "get_metadata",
    "get_status",
    "gunzip",
    "http_error",
    "internal_error",
    "lifespan",
    "parse_body",
    "poll_forever",
    "predict",
    "prometheus_metrics",
    "read_body",
    "respond",
    "rest_api",
    "route",
    "run_examples",
    "serve",
    "server_state",
    "start_grpc",
    # from cnnlearn.deploy.state and cnnlearn.deploy.transport, where they live
    "DEFAULT_BODY_TIMEOUT",
    "DEFAULT_HEADER_TIMEOUT",
    "DEFAULT_INLINE_BYTES",
    "DEFAULT_KEEP_ALIVE_TIMEOUT",
    "DEFAULT_LIMIT_CONCURRENCY",
    "DEFAULT_MAX_BATCH",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_WORKERS",
    "MAX_HEADER_BYTES",
    "GuardedProtocol",
    "ServerMetrics",
    "ServerState",
    "StateSource",
    "find_version",
    "guarded_protocol",
    "load_models",
    "server_config",
    "service_busy",
    "version_status",
]

log = progress.logger("deploy")


def _json(obj, status: int = 200, headers: dict | None = None) -> Response:
    body = orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, status, headers, media_type="application/json")


def server_state(request: Request) -> ServerState:
    """The :class:`ServerState` of the app answering ``request``."""
    return request.app.state.server


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


def parse_body(
    state: ServerState, loaded: Loaded, body: bytes, gzipped: bool = False
) -> ParsedRequest:
    """A predict body (gunzipped first if ``gzipped``), parsed and checked
    against the version's signatures and the server's guards. Used in
    chapter 8."""
    if gzipped:
        body = gunzip(body, state.max_body_bytes)
    return read_predict(body, loaded.signatures, state.guards)


def respond(
    state: ServerState, name: str, loaded: Loaded, parsed: ParsedRequest, outputs
) -> Response:
    """Feed the drift monitor and the class counts, and build TF Serving's
    answer to ``parsed`` from the model's ``outputs``, with an
    ``x-model-version`` header. Used in chapter 8."""
    observe(state, name, loaded, parsed.inputs, outputs)
    return Response(
        predict_response(outputs, parsed.key),
        200,
        {"x-model-version": str(loaded.version)},
        media_type="application/json",
    )


def answer(
    state: ServerState, name: str, loaded: Loaded, body: bytes, gzipped: bool = False
) -> Response:
    """Parse a predict body against the version's signatures, run it, feed
    the drift monitor and the class counts, and build TF Serving's answer: the
    work :func:`predict` runs in a worker thread (or inline for a small body)
    when the server does not batch. Thread-safe: LiteRT calls are serialized
    by the backend, the monitor and the counts take locks."""
    parsed = parse_body(state, loaded, body, gzipped)
    outputs = loaded.run(parsed.signature, parsed.inputs)
    return respond(state, name, loaded, parsed, outputs)


async def batched_answer(
    state: ServerState,
    batchers: Batchers,
    name: str,
    loaded: Loaded,
    body: bytes,
    gzipped: bool = False,
) -> Response:
    """:func:`answer` through the version's batching queue: the body is
    parsed (inline if small, else in a worker thread), its inputs join a batch
    (:meth:`~.batching.Batchers.submit`, awaited without blocking the event
    loop), and the answer is built from this request's own rows. Used in
    chapter 8."""
    executor = state.executor
    if executor is None or (len(body) <= state.inline_bytes and not gzipped):
        parsed = parse_body(state, loaded, body, gzipped)
    else:
        loop = asyncio.get_running_loop()
        parsed = await loop.run_in_executor(
            executor, parse_body, state, loaded, body, gzipped
        )
    outputs = await batchers.submit(name, loaded, parsed.signature, parsed.inputs)
    return respond(state, name, loaded, parsed, outputs)


async def predict(
    request: Request, name: str, version: int | None, label: str | None = None
) -> Response:
    """``POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict``.

    Reads the body (bounded in size and time), finds the version, and runs
    :func:`answer` (parse ``instances`` or ``inputs`` against its signatures,
    run the backend, answer in the request's format with an
    ``x-model-version`` header) in the worker pool, or inline for a body of at
    most ``inline_bytes``; with batching, :func:`batched_answer` (503 when the
    version's queue is full). Every answer, error or not, is counted and timed
    in the metrics; a client gone before its body is in counts as 499.
    """
    start = time.perf_counter()
    state = server_state(request)
    served = ""
    try:
        body = await read_body(request, state.max_body_bytes, state.body_timeout)
        loaded = find_version(state, name, version, label)
        served = str(loaded.version)
        executor, batchers = state.executor, state.batchers
        gzipped = request.headers.get("content-encoding", "").lower() == "gzip"
        if batchers is not None:
            response = await batched_answer(
                state, batchers, name, loaded, body, gzipped
            )
        elif executor is None or (len(body) <= state.inline_bytes and not gzipped):
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
    except ValueError as exc:  # e.g. a bad Content-Length, a batch too large
        response = _json({"error": str(exc)}, 400)
    except QueueFullError as exc:  # TF Serving's UNAVAILABLE
        response = _json({"error": str(exc)}, 503)
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


async def poll_forever(state: ServerState) -> None:
    """Every ``poll_seconds``: :func:`~.state.poll_models` (the model config
    file when its wait is over, new and old versions under every base path,
    retired batching queues) in a thread, so the event loop keeps serving
    meanwhile; a failed round is logged and the next one tries again."""
    while True:
        await asyncio.sleep(state.poll_seconds)
        try:
            await asyncio.to_thread(poll_models, state)
        except Exception as exc:  # keep polling whatever happens
            log.error("poll failed: %s", exc)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI):
    """While the app runs: the worker pool, the batching queues (with
    ``batching``), a poll for versions, and ``on_ready`` called once. At
    shutdown the queues run what they hold, then close."""
    state: ServerState = app.state.server
    state.executor = ThreadPoolExecutor(state.workers, "cnnlearn-predict")
    if state.batching is not None:
        state.batchers = Batchers(state.batching, state.metrics.batching)
    task = asyncio.create_task(poll_forever(state))
    for callback in state.on_ready:  # e.g. serve() writes its ready file
        callback()
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        batchers, state.batchers = state.batchers, None
        if batchers is not None:
            await asyncio.to_thread(batchers.close)
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
    model_config_file: str | Path | None = None,
    config_poll_seconds: float = 0.0,
    batching: BatchingParameters | None = None,
) -> FastAPI:
    """The FastAPI app serving ``models`` (name → base path), or the models of
    a model config file. Used in chapter 8.

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
    model_config_file
        TF Serving's ``--model_config_file`` (:mod:`~.modelconfig`): the
        models, their version policies and labels, instead of ``models`` and
        ``pinned``. A file that does not parse or validate, or whose labels
        name versions that did not load, is refused here (``ValueError``,
        one line; a missing file: ``FileNotFoundError``), as TF Serving
        refuses to start with it.
    config_poll_seconds
        TF Serving's ``--model_config_file_poll_wait_seconds``: the file is
        re-read this often while the app runs (checked on the version poll,
        so at most every ``poll_seconds``) and a changed, valid one applied
        without a restart (:func:`~.state.apply_config`); a bad new one is
        logged in one line and the config in use keeps serving, as in TF
        Serving's ``PollFilesystemAndReloadConfig``. 0 never re-reads it.
    batching
        TF Serving's ``--enable_batching`` with these
        :class:`~.batching.BatchingParameters`: predict requests (REST, and
        gRPC through :func:`start_grpc`) wait in one queue per model version
        and run in batches (while the app runs, see :func:`lifespan`).
        ``None``: every request runs on its own.

    The versions present now are loaded before this returns; a model with no
    loadable version yet is served as 404 until one appears. The handlers
    (:func:`predict`, :func:`get_status`, ...) read the app's
    :class:`ServerState` from ``app.state.server``.
    """
    if model_config_file is not None and (models or pinned):
        raise ValueError(
            "expected models (or pinned versions) or a model config file, got both"
        )
    if model_config_file is None and not models:
        raise ValueError("no models to serve: expected {name: base_path}")
    if not 0 <= config_poll_seconds < float("inf"):  # NaN fails too
        raise ValueError(
            f"expected config_poll_seconds >= 0, got {config_poll_seconds}"
        )
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
    managers = {}
    if model_config_file is None:
        managers = load_models(models, backend, pinned, drift_window)
    app = FastAPI(
        title="cnnlearn model server",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    state = app.state.server = ServerState(
        managers,
        ServerMetrics(managers),
        Guards(max_batch, tuple(value_range) if value_range else None, finite_only),
        max_body_bytes,
        poll_seconds,
        body_timeout,
        workers,
        inline_bytes,
        backend=backend,
        drift_window=drift_window,
        batching=batching,
    )
    if model_config_file is not None:
        apply = functools.partial(apply_config, state)
        state.watcher = ConfigWatcher(model_config_file, apply, config_poll_seconds)
        state.watcher.check(raise_errors=True)  # a bad file at start: refused
        state.next_config_check = time.monotonic() + config_poll_seconds
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, internal_error)
    # One route for everything: TF Serving's URLs ignore case and its answer
    # to an unroutable /v1 URL is a 400, which Starlette's router cannot say.
    app.router.add_route("/{path:path}", rest_api, methods=list(HTTP_METHODS))
    return app


def start_grpc(state: ServerState, host: str = "127.0.0.1", port: int = 0, **options):
    """Start TF Serving's gRPC API (:mod:`~.grpc_service`: PredictionService
    and ModelService) on ``host:port`` (0: a free port), answering from
    ``state`` (:class:`~.state.StateSource`) and running predict requests
    with :func:`~.state.run_model` (through the batching queues while the app
    batches); ``options`` go to :func:`~.grpc_service.start_server`
    (``max_workers``, ``max_message_bytes``, ``tensor_content``). Returns
    ``(grpc.Server, port)``; ``server.stop(grace)`` stops it. Imports
    TensorFlow (TF Serving's protos are TensorFlow's). Used in chapter 8."""
    from cnnlearn.deploy import grpc_service  # TensorFlow only when asked

    run = functools.partial(run_model, state)
    return grpc_service.start_server(StateSource(state), host, port, run, **options)


def serve(
    models: dict[str, str | Path],
    backend: str = "tflite",
    *,
    host: str = "127.0.0.1",
    port: int = 8501,
    grpc_port: int | None = None,
    ready_file: str | Path | None = None,
    log_level: str = "warning",
    freeze_gc: bool = True,
    header_timeout: float = DEFAULT_HEADER_TIMEOUT,
    keep_alive_timeout: float = DEFAULT_KEEP_ALIVE_TIMEOUT,
    limit_concurrency: int = DEFAULT_LIMIT_CONCURRENCY,
    **app_kwargs,
) -> None:
    """Serve ``models`` until SIGINT or SIGTERM (a graceful shutdown).

    Loads the models (``app_kwargs`` go to :func:`create_app`:
    ``model_config_file`` and ``config_poll_seconds`` instead of ``models``,
    ``batching``, ``body_timeout``, ``workers``, the guards ``max_batch``,
    ``value_range`` and ``finite_only``, ...), starts the gRPC API on
    ``grpc_port`` if given (:func:`start_grpc`; TF Serving's ``--port``,
    while ``port`` is the REST port, TF Serving's ``--rest_api_port``), binds
    ``host:port`` (127.0.0.1 unless told otherwise; port 0 picks a free
    port), writes ``ready_file`` (JSON: url, host, port, grpc_port, pid,
    backend, models) once it accepts connections, and runs uvicorn with
    uvloop and httptools, guarded against slow clients
    (:func:`~.transport.server_config`: ``header_timeout``,
    ``keep_alive_timeout`` and ``limit_concurrency``, see
    :class:`~.transport.GuardedProtocol`). At shutdown uvicorn stops first
    (the batching queues run what they hold), then the gRPC server, after at
    most 5 s for the calls in flight. With ``freeze_gc`` the objects alive
    once the models are loaded leave the garbage collector's reach
    (``gc.freeze``): a stream of JSON requests triggers full collections, and
    walking the whole web stack and framework each time was the server's
    worst tail latency. Used by ``cnnlearn serve`` and chapter 8.
    """
    app = create_app(models, backend, **app_kwargs)
    state: ServerState = app.state.server
    config = server_config(
        app,
        log_level=log_level,
        header_timeout=header_timeout,
        keep_alive_timeout=keep_alive_timeout,
        limit_concurrency=limit_concurrency,
    )
    grpc_server, grpc_bound = None, None
    if grpc_port is not None:
        grpc_server, grpc_bound = start_grpc(state, host, grpc_port)
    try:
        if freeze_gc:  # see the docstring; measured in benchmarks/serving.py
            gc.collect()
            gc.freeze()
        sock = bind(host, port)
        bound_port = sock.getsockname()[1]
        url = f"http://{host if ':' not in host else f'[{host}]'}:{bound_port}"

        def ready():
            if ready_file is None:
                return
            served = {
                name: {
                    "base_path": str(m.base_path),
                    "version": m.current.version if m.current else None,
                    "versions": sorted(m.loaded),
                }
                for name, m in state.managers.items()
            }
            info = {"url": url, "host": host, "port": bound_port, "pid": os.getpid()}
            info.update(grpc_port=grpc_bound, backend=backend, models=served)
            write_json(ready_file, info)

        state.on_ready.append(ready)
        _run_uvicorn(config, sock, ready_file)
    finally:
        if grpc_server is not None:
            grpc_server.stop(5).wait()


def _run_uvicorn(config: uvicorn.Config, sock, ready_file) -> None:
    """Run uvicorn on ``sock`` until SIGINT or SIGTERM; then close the socket
    and remove the ready file."""
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
