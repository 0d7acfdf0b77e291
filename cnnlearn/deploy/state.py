"""The model server's state: the models, their versions, labels and batchers,
shared by the REST and gRPC front ends (chapter 8).

:class:`ServerState` is what every request reads: one
:class:`~.backends.ModelVersions` per model (each keeps the versions its
policy selects loaded), the metrics, the request guards and, with
``--enable_batching``, the :class:`~.batching.Batchers`. :func:`find_version`
and :func:`version_status` answer "which loaded version does this request
name" and "what is the status of this model's versions" with TF Serving's
words; the REST handlers (:mod:`~.server`) call them, and so does the gRPC
service through :class:`StateSource`, so both ports answer from the same
loaded versions. :func:`apply_config` applies a model config file (TF
Serving's ``--model_config_file``: models added, removed, policies and labels
changed, without a restart) and :func:`poll_models` is one round of the
background poll: the config file when its wait is over, every model's base
path, the batchers of versions no longer served.

No TensorFlow here: the LiteRT server imports this module.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from cnnlearn import progress
from cnnlearn.deploy.backends import Loaded, ModelVersions
from cnnlearn.deploy.batching import Batchers, BatchingMetrics, BatchingParameters
from cnnlearn.deploy.modelconfig import ConfigWatcher, ModelEntry, check_labels
from cnnlearn.deploy.protocol import Guards, ServingError, not_found, status_body
from cnnlearn.deploy.transport import DEFAULT_BODY_TIMEOUT

__all__ = [
    "DEFAULT_INLINE_BYTES",
    "DEFAULT_MAX_BATCH",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_WORKERS",
    "LATENCY_BUCKETS",
    "ServerMetrics",
    "ServerState",
    "StateSource",
    "apply_config",
    "find_version",
    "load_models",
    "model_entries",
    "observe",
    "poll_models",
    "retire_batchers",
    "run_model",
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
#: event loop: see :func:`~.server.create_app`.
DEFAULT_INLINE_BYTES = 64 * 1024
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
log = progress.logger("deploy")


class ServerMetrics:
    """The server's Prometheus metrics, in a registry of its own.

    ``cnnlearn_requests_total`` counts predict answers by status (499: the
    client closed the connection first); ``cnnlearn_model_load_failures_total``
    counts failed loads of model versions, retries included; ``batching``
    holds the batching queues' metrics (:class:`~.batching.BatchingMetrics`).
    ``models`` is the model name → :class:`~.backends.ModelVersions` map
    being served (replaced, never changed in place, when a model config is
    applied).
    Used in chapter 8.
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
        self.batching = BatchingMetrics(self.registry)  # with --enable_batching
        self.models = models
        self.classes: dict[str, np.ndarray] = {}
        self.images: dict[str, int] = {}
        self.lock = threading.Lock()  # worker threads count predictions
        self._children: dict[tuple, object] = {}
        self.registry.register(self)  # collect() below: classes, drift, versions

    def record(self, model: str, version: str, status: int, seconds: float) -> None:
        """Count one predict answer and time it."""
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
        """Add a batch's predicted classes (argmax) to the counts."""
        counts = np.bincount(
            probabilities.argmax(axis=1), minlength=probabilities.shape[1]
        )
        with self.lock:
            known = self.classes.get(model, np.zeros(0, dtype=np.int64))
            if len(counts) > len(known):
                known = np.pad(known, (0, len(counts) - len(known)))
            known[: len(counts)] += counts
            self.classes[model] = known
            self.images[model] = self.images.get(model, 0) + len(probabilities)

    def collect(self):
        """The class counts, images, drift, served versions and load failures."""
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
                counted = self.classes.get(name, np.zeros(0, np.int64)).tolist()
                seen = self.images.get(name, 0)
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
        """Nothing up front: the families are collected on each scrape."""
        return []


@dataclass
class ServerState:
    """What the request handlers read: the app's ``app.state.server``.

    ``managers`` maps each model name to its :class:`~.backends.ModelVersions`
    (replaced as a whole when a model config is applied, so a reader never
    sees it half changed); ``removed`` holds the models a config dropped (their
    versions listed as ``END``); ``on_ready`` are called once the app accepts
    connections (``serve`` writes its ready file there); ``executor`` is the
    worker pool and ``batchers`` the batching queues (with ``batching``) while
    the app runs (:func:`~.server.lifespan`), ``None`` otherwise (then
    everything runs inline and unbatched); ``watcher`` re-reads the model
    config file, if there is one. Used in chapter 8.
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
    backend: str = "tflite"
    drift_window: int = 1000
    batching: BatchingParameters | None = None
    batchers: Batchers | None = None
    watcher: ConfigWatcher | None = None
    next_config_check: float = 0.0
    removed: dict[str, ModelVersions] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)


def find_version(
    state: ServerState, name: str, version: int | None, label: str | None = None
) -> Loaded:
    """The loaded version of model ``name`` that a URL asks for.

    ``version`` is the URL's ``/versions/{v}`` number and ``label`` its
    ``/labels/{label}``, both ``None`` for the highest version served (TF
    Serving's ``Latest``). Raises :class:`~.protocol.ServingError`: 400 for a
    label the model does not have (TF Serving's "Unrecognized servable
    version label"), 404 for an unknown model or a version not loaded. Used
    in chapter 8.
    """
    manager = state.managers.get(name)
    if label is not None:
        if manager is None:
            raise not_found(name)
        if label not in manager.version_labels:
            raise ServingError(400, f"Unrecognized servable version label: {label}")
        version = manager.version_labels[label]
    loaded = manager.find(version) if manager is not None else None
    if loaded is None:
        raise not_found(name, version)
    return loaded


def version_status(
    state: ServerState, name: str, version: int | None, label: str | None = None
) -> dict:
    """TF Serving's status answer for model ``name``: the versions served
    (``AVAILABLE``), those served before (``END``, OK) and those whose load
    failed (``END``, with the error), or only the version the URL names
    (``version`` or ``label``). A model that a config file dropped lists its
    versions as ``END``. Raises :class:`~.protocol.ServingError` with TF
    Serving's words (``get_model_status_impl.cc``): 404 "Could not find any
    versions of model ..." or "Could not find version ... of model ...".
    Used in chapter 8.
    """
    manager = state.managers.get(name) or state.removed.get(name)
    if label is not None and manager is not None:
        if label not in manager.version_labels:
            raise ServingError(400, f"Unrecognized servable version label: {label}")
        version = manager.version_labels[label]
    if manager is None:
        if version is None:
            raise ServingError(404, f"Could not find any versions of model {name}")
        raise ServingError(404, f"Could not find version {version} of model {name}")
    available = sorted(manager.loaded)
    failed = {v: ("OK", "") for v in manager.retired.copy()}
    failed.update(
        (v, (failure.error_code, failure.message))
        for v, failure in manager.failed.copy().items()  # a copy: polls change it
    )
    if version is not None:
        available = [v for v in available if v == version]
        failed = {v: why for v, why in failed.items() if v == version}
        if not available and not failed:
            raise ServingError(404, f"Could not find version {version} of model {name}")
    if not available and not failed:
        raise ServingError(404, f"Could not find any versions of model {name}")
    return status_body(available, failed)


class StateSource:
    """The gRPC service's :class:`~.grpc_service.ModelSource` over a
    :class:`ServerState`: ``find`` is :func:`find_version` and ``status``
    :func:`version_status`, so gRPC answers from the versions REST serves,
    with the same errors (a :class:`~.protocol.ServingError`'s ``status``
    becomes the gRPC code). Used in chapter 8."""

    def __init__(self, state: ServerState):
        self.state = state

    def find(self, name: str, version: int | None, label: str | None) -> Loaded:
        """The loaded version a ``ModelSpec`` names."""
        return find_version(self.state, name, version, label)

    def status(self, name: str) -> dict:
        """The REST status body of every version of ``name``."""
        return version_status(self.state, name, None)


def observe(
    state: ServerState, name: str, loaded: Loaded, inputs: dict, outputs: dict
) -> None:
    """Feed the drift monitor (the first image-like input: numbers, at least
    3-D) and the predicted-class counts (a single 2-D float output). Used in
    chapter 8."""
    if loaded.monitor is not None:
        for array in inputs.values():
            if array.dtype.kind in "uif" and array.ndim >= 3:
                loaded.monitor.update(array)
                break
    if len(outputs) == 1:
        (out,) = outputs.values()
        if out.dtype.kind == "f" and out.ndim == 2 and out.shape[1] > 0:
            state.metrics.count_predictions(name, out)


def run_model(
    state: ServerState, name: str, loaded: Loaded, signature: str, inputs: dict
) -> dict:
    """Run a request on ``loaded`` (a version of model ``name``): through its
    batching queue while batching runs, else directly; then :func:`observe`.
    Blocking: the gRPC service's ``run`` (``functools.partial(run_model,
    state)``). Used in chapter 8."""
    batchers = state.batchers
    if batchers is not None:
        outputs = batchers.run(name, loaded, signature, inputs)
    else:
        outputs = loaded.run(signature, inputs)
    observe(state, name, loaded, inputs, outputs)
    return outputs


def retire_batchers(state: ServerState) -> None:
    """Close the batching queues of versions no longer loaded (after running
    what they hold). Blocking. Used in chapter 8."""
    batchers = state.batchers
    if batchers is not None:
        served = {n: list(m.loaded.values()) for n, m in state.managers.items()}
        batchers.retire(served)


def model_entries(
    models: dict[str, str | Path], pinned: dict[str, int] | None = None
) -> tuple[ModelEntry, ...]:
    """The :class:`~.modelconfig.ModelEntry` of each model given as name →
    base path (``cnnlearn serve --model-base-path`` or ``--model``): TF
    Serving's default policy, the latest version, or the ``pinned`` one.
    Raises :class:`ValueError` for a pinned model that is not served. Used in
    chapter 8."""
    pinned = pinned or {}
    unknown = set(pinned) - set(models)
    if unknown:
        raise ValueError(f"pinned models {sorted(unknown)} are not served")
    return tuple(
        ModelEntry(
            name,
            Path(path),
            policy="specific" if name in pinned else "latest",
            versions=(pinned[name],) if name in pinned else (),
        )
        for name, path in models.items()
    )


def load_models(
    models: dict[str, str | Path],
    backend: str,
    pinned: dict[str, int] | None,
    drift_window: int,
) -> dict[str, ModelVersions]:
    """One :class:`~.backends.ModelVersions` per model, its versions present
    now loaded. Raises :class:`FileNotFoundError` for a missing base path and
    :class:`ValueError` for a pinned model that is not served. Used in
    chapter 8."""
    managers = {}
    for entry in model_entries(models, pinned):
        if not entry.base_path.is_dir():
            raise FileNotFoundError(f"model base path {entry.base_path} not found")
        manager = ModelVersions(
            entry.name,
            entry.base_path,
            backend,
            (pinned or {}).get(entry.name),
            drift_window,
        )
        manager.poll()
        managers[entry.name] = manager
    return managers


def _manager_for(state: ServerState, entry: ModelEntry) -> ModelVersions:
    """The manager of ``entry``: the one serving it now, given the new
    policy, or a new one (a new model, or one whose base path moved)."""
    manager = state.managers.get(entry.name) or state.removed.get(entry.name)
    if manager is not None and manager.base_path == entry.base_path:
        manager.configure(entry)
        return manager
    if manager is not None:
        manager.unload_all()
    return ModelVersions(
        entry.name,
        entry.base_path,
        state.backend,
        drift_window=state.drift_window,
        policy=entry,
    )


def apply_config(state: ServerState, entries: tuple[ModelEntry, ...]) -> None:
    """Serve exactly the models of a model config: TF Serving's
    ``ServerCore::ReloadConfig``.

    A new model is added and its versions loaded; a model still listed gets
    its new policy (versions loaded and unloaded by a poll, now); a model no
    longer listed is unloaded (its versions ``END``); then the labels are
    checked and set, all or none, as TF Serving's
    ``UpdateModelVersionLabelMap`` does (:func:`~.modelconfig.check_labels`:
    a label must name a loaded version). Raises :class:`ValueError` (TF
    Serving's ``FAILED_PRECONDITION`` message) if a label cannot be set: the
    models are served, every label keeps its old version, and the
    :class:`~.modelconfig.ConfigWatcher` tries the file again at its next
    check. The file's syntax and rules were checked before this is called
    (:func:`~.modelconfig.parse_config`), so a bad file changes nothing.

    One deviation, on purpose: TF Serving checks the labels before it loads
    the new config's versions (``ServerCore::ReloadConfig``), so a label on
    a version that the same file brings fails there (unless it runs with
    ``--allow_version_labels_for_unavailable_models``); here the versions
    load first, then the labels are checked. Used in chapter 8.
    """
    with state.lock:
        managers = {}
        for entry in entries:
            manager = _manager_for(state, entry)
            manager.poll()
            managers[entry.name] = manager
        removed = {n: m for n, m in state.managers.items() if n not in managers}
        for manager in removed.values():
            manager.unload_all()
        state.removed = {
            **{n: m for n, m in state.removed.items() if n not in managers},
            **removed,
        }
        state.managers = managers
        state.metrics.models = managers
        retire_batchers(state)
        labels = {
            entry.name: check_labels(  # ValueError: no label changes at all
                entry, managers[entry.name].loaded, managers[entry.name].version_labels
            )
            for entry in entries
        }
        for name, found in labels.items():
            managers[name].version_labels = found


def poll_models(state: ServerState) -> None:
    """One round of the background poll (blocking: run it in a thread): the
    model config file if its wait is over (:class:`~.modelconfig.ConfigWatcher`,
    which applies a changed, valid one with :func:`apply_config`), then every
    model's base path (new versions loaded, old ones unloaded), then the
    batching queues of versions no longer served closed. A model whose poll
    fails is logged and polled again next round. Used in chapter 8."""
    with state.lock:
        watcher = state.watcher
        now = time.monotonic()
        if watcher is not None and watcher.poll_wait_seconds > 0:
            if now >= state.next_config_check:
                state.next_config_check = now + watcher.poll_wait_seconds
                watcher.check()
        for manager in list(state.managers.values()):
            try:
                manager.poll()
            except Exception as exc:  # keep polling whatever happens
                log.error("%s: poll failed: %s", manager.name, exc)
        retire_batchers(state)
