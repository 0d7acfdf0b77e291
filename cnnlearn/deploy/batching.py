"""Server-side batching, like TF Serving's ``--enable_batching`` (chapter 8).

A :class:`Batcher` sits in front of one model version's
``run(signature_name, inputs)``: callers submit their own small requests;
the batcher joins those that arrive close together into one batch along the
first (batch) dimension, runs the batch once, and hands each caller exactly
its own rows of every output. One batcher per model version is TF Serving's
"one queue per model version" (``SharedBatchScheduler``: each queue behaves
like a ``BasicBatchScheduler``). The parameters are TF Serving's
``BatchingParameters`` (``--batching_parameters_file``), in the same units:

``max_batch_size``
    The most rows in one batch. A request of more rows is refused with TF
    Serving's message, "Task size N is larger than maximum input batch size
    M" (``INVALID_ARGUMENT``, a 400): large-batch splitting is off, as by
    default in TF Serving.
``batch_timeout_micros``
    How long a batch that is not full waits for more requests, counted from
    its first request. 0 (TF Serving's default) runs a batch as soon as a
    batch thread is free, so batches still form while all threads are busy.
``max_enqueued_batches``
    The most batches waiting for a thread, the open ones included; past it a
    request is refused with :class:`QueueFullError` (TF Serving's
    ``UNAVAILABLE``, "The batch scheduling queue to which this task was
    submitted is full", a 503).
``num_batch_threads``
    Batches run at the same time (threads of this batcher).
``thread_pool_name``
    The ``thread_pool_name`` label of the queuing-latency metric.

A batch is closed when it is full, when its timeout has passed and a thread
is free, or when the batcher is closed (:meth:`Batcher.close` runs what is
queued, then stops). Requests are only batched with requests for the same
signature whose inputs have the same names, dtypes and non-batch dimensions.
TF Serving puts all requests for a signature in one batch and, when their
shapes differ, fails the whole batch ("Tensors with name 'x' from different
tasks have different shapes and padding is turned off"); here such a request
goes to a batch of its own kind, so one odd request cannot fail the others.
If a batch fails, every request in it gets the error.

With :class:`BatchingMetrics`, each request's wait is recorded as TF Serving
records it (``/tensorflow/serving/batching_session/queuing_latency``: from
joining the queue until its batch starts, in microseconds, TF Serving's
buckets), so TF Serving's dashboards and alerts read this server too; and its
whole time in the batcher, the wait plus the batch's run, in
``cnnlearn_batching_latency_seconds``, which is what ``batch_timeout_micros``
bounds (chapter 8's benchmark compares its 99th percentile with the timeout
plus one batch's run).

:meth:`Batcher.submit` is for the event loop (``await batcher.submit(inputs)``;
a caller that is cancelled before its batch starts is left out of it) and
:meth:`Batcher.submit_blocking` for threads (gRPC's handlers).
:class:`Batchers` keeps one batcher per served version, for a server: its
``run`` is the gRPC service's ``run`` hook, its ``submit`` the REST
handlers'. No TensorFlow here.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnlearn import progress

__all__ = [
    "DEFAULT_SIGNATURE",
    "Batcher",
    "BatcherClosedError",
    "Batchers",
    "BatchingMetrics",
    "BatchingParameters",
    "QueueFullError",
    "batch_rows",
    "parse_batching_parameters",
    "read_batching_parameters",
]

log = progress.logger("deploy")

#: The signature a request without one runs (TF Serving's default).
DEFAULT_SIGNATURE = "serving_default"

Run = Callable[[str, dict[str, np.ndarray]], dict[str, np.ndarray]]


class QueueFullError(RuntimeError):
    """A request refused because ``max_enqueued_batches`` batches are waiting
    (TF Serving's ``UNAVAILABLE``). Used in chapter 8."""


class BatcherClosedError(RuntimeError):
    """A request refused because its batcher is closed (its version is being
    unloaded; ``UNAVAILABLE``). Used in chapter 8."""


@dataclass(frozen=True)
class BatchingParameters:
    """TF Serving's ``BatchingParameters``, with its ``SharedBatchScheduler``
    defaults except ``num_batch_threads`` (TF Serving: one per core; here 1,
    since one backend call already uses the cores). Used in chapter 8."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = 1
    thread_pool_name: str = "batch_threads"

    def __post_init__(self):
        for name in ("max_batch_size", "max_enqueued_batches", "num_batch_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_timeout_micros < 0:
            raise ValueError(
                f"batch_timeout_micros must be >= 0, got {self.batch_timeout_micros}"
            )


# TF Serving's BatchingParameters message (session_bundle_config.proto, fields
# 1-7), built here: tensorflow-serving-api does not ship that proto.
_BATCHING_FIELDS = (
    ("max_batch_size", 1, "Int64Value"),
    ("batch_timeout_micros", 2, "Int64Value"),
    ("max_enqueued_batches", 3, "Int64Value"),
    ("num_batch_threads", 4, "Int64Value"),
    ("thread_pool_name", 5, "StringValue"),
    ("allowed_batch_sizes", 6, "repeated int64"),
    ("pad_variable_length_inputs", 7, "bool"),
)


def _batching_proto():
    """The ``tensorflow.serving.BatchingParameters`` message class."""
    from google.protobuf import (
        descriptor_pb2,
        descriptor_pool,
        message_factory,
        wrappers_pb2,
    )

    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    file = descriptor_pb2.FileDescriptorProto(
        name="cnnlearn/batching_parameters.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    message = file.message_type.add(name="BatchingParameters")
    kinds = descriptor_pb2.FieldDescriptorProto
    for name, number, kind in _BATCHING_FIELDS:
        field_proto = message.field.add(name=name, number=number, json_name=name)
        if kind.endswith("Value"):
            field_proto.type = kinds.TYPE_MESSAGE
            field_proto.type_name = f".google.protobuf.{kind}"
            field_proto.label = kinds.LABEL_OPTIONAL
        elif kind == "bool":
            field_proto.type, field_proto.label = kinds.TYPE_BOOL, kinds.LABEL_OPTIONAL
        else:
            field_proto.type, field_proto.label = kinds.TYPE_INT64, kinds.LABEL_REPEATED
    pool.Add(file)
    found = pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters")
    return message_factory.GetMessageClass(found)


def parse_batching_parameters(
    text: str, source: str = "batching parameters"
) -> BatchingParameters:
    """:class:`BatchingParameters` from TF Serving's ``BatchingParameters``
    in protobuf text format (``--batching_parameters_file``), e.g.::

        max_batch_size { value: 32 }
        batch_timeout_micros { value: 2000 }
        max_enqueued_batches { value: 100 }
        num_batch_threads { value: 1 }

    A field left out keeps :class:`BatchingParameters`' default
    (``thread_pool_name``: ``"batch_threads"``, TF Serving's). Raises
    :class:`ValueError` in one line naming ``source`` for text that does not
    parse (an unknown field, such as those newer TF Serving versions added,
    fails here), a value out of range, and for ``allowed_batch_sizes`` and
    ``pad_variable_length_inputs``, which this server does not do (it never
    pads a batch). Used in chapter 8.
    """
    from google.protobuf import text_format

    proto = _batching_proto()()
    try:
        text_format.Parse(text, proto)
    except text_format.ParseError as exc:
        message = " ".join(str(exc).split())
        raise ValueError(
            f"{source}: Error parsing text-format "
            f"tensorflow.serving.BatchingParameters: {message}"
        ) from None
    for unsupported in ("allowed_batch_sizes", "pad_variable_length_inputs"):
        if getattr(proto, unsupported):
            raise ValueError(
                f"{source}: {unsupported} is not supported (batches are not padded)"
            )
    values = {
        name: getattr(proto, name).value
        for name, _, kind in _BATCHING_FIELDS
        if kind.endswith("Value") and proto.HasField(name)
    }
    try:
        return BatchingParameters(**values)
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None


def read_batching_parameters(path: str | Path) -> BatchingParameters:
    """:func:`parse_batching_parameters` of the file at ``path``; raises
    :class:`FileNotFoundError` if there is none. Used in chapter 8."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: batching parameters file not found")
    return parse_batching_parameters(path.read_text(), str(path))


def batch_rows(inputs: dict[str, np.ndarray]) -> int:
    """The rows of a request: the first dimension that all its inputs share.

    Raises :class:`ValueError` with TF Serving's messages (``batching_util``'s
    ``ComputeTensorBatchSize``) for no inputs, a scalar input, or inputs whose
    first dimensions differ. Used in chapter 8.
    """
    if not inputs:
        raise ValueError("Batching Run() must have at least one input tensor")
    sizes = set()
    for array in inputs.values():
        if np.ndim(array) == 0:
            raise ValueError(
                "Batching Run() input tensors must have at least one dimension"
            )
        sizes.add(np.shape(array)[0])
    if len(sizes) > 1:
        raise ValueError(
            "Batching Run() input tensors must have equal 0th-dimension size"
        )
    return sizes.pop()


#: TF Serving's queuing-latency buckets (``Buckets::Exponential(100, 1.2,
#: 52)``, microseconds) and this server's for the time in the batcher.
QUEUING_BUCKETS_MICROS = tuple(100 * 1.2**i for i in range(52))
BATCHING_LATENCY_BUCKETS = (
    *(i / 4000 for i in range(1, 41)),  # every 0.25 ms up to 10 ms
    0.02,
    0.05,
    0.1,
    0.25,
    1.0,
)


class BatchingMetrics:
    """The batchers' Prometheus metrics, in ``registry`` (the server's):
    TF Serving's ``:tensorflow:serving:batching_session:queuing_latency``
    (microseconds from joining the queue until the batch starts, by
    ``thread_pool_name``) and ``cnnlearn_batching_latency_seconds`` (the wait
    plus the batch's run, by model). Used in chapter 8."""

    def __init__(self, registry):
        from prometheus_client import Histogram

        self.queuing = Histogram(
            ":tensorflow:serving:batching_session:queuing_latency",
            "Distribution of wall time spent (in microseconds) in queuing",
            ["thread_pool_name"],
            buckets=QUEUING_BUCKETS_MICROS,
            registry=registry,
        )
        self.latency = Histogram(
            "cnnlearn_batching_latency_seconds",
            "Time from joining a batching queue until the outputs are ready",
            ["model"],
            buckets=BATCHING_LATENCY_BUCKETS,
            registry=registry,
        )


@dataclass
class _Task:
    inputs: dict[str, np.ndarray]
    rows: int
    future: Future = field(default_factory=Future)
    enqueued: float = field(default_factory=time.perf_counter)


@dataclass
class _Batch:
    signature: str
    key: tuple
    deadline: float
    tasks: list[_Task] = field(default_factory=list)
    rows: int = 0


def _key(signature: str, inputs: dict[str, np.ndarray]) -> tuple:
    return (
        signature,
        tuple(
            sorted(
                (k, np.asarray(v).dtype.str, np.shape(v)[1:]) for k, v in inputs.items()
            )
        ),
    )


class Batcher:
    """Joins concurrent requests to one model version into batches.

    Parameters
    ----------
    run
        The version's ``run(signature_name, inputs) -> outputs`` (see
        :mod:`cnnlearn.deploy.backends`): every output must keep the batch
        dimension first.
    params
        :class:`BatchingParameters`.
    name
        What the log and the threads call this batcher (``"mnist/3"``).
    metrics
        :class:`BatchingMetrics` to record each request's wait and time in
        the batcher, under the model name ``model``; none by default.

    Used in chapter 8.
    """

    def __init__(
        self,
        run: Run,
        params: BatchingParameters | None = None,
        name: str = "",
        metrics: BatchingMetrics | None = None,
        model: str = "",
    ):
        self.run = run
        self.params = params or BatchingParameters()
        self.name = name
        self._timers = None
        if metrics is not None:
            self._timers = (
                metrics.queuing.labels(self.params.thread_pool_name),
                metrics.latency.labels(model or name),
            )
        self.batches_run = 0  # batches run, failed ones included
        self.rows_run = 0
        self._cond = threading.Condition()
        self._open: dict[tuple, _Batch] = {}  # one open batch per kind of request
        self._ready: deque[_Batch] = deque()  # closed, waiting for a thread
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"batch-{name}-{i}", daemon=True)
            for i in range(self.params.num_batch_threads)
        ]
        for thread in self._threads:
            thread.start()

    # -- callers -------------------------------------------------------------

    def enqueue(
        self, inputs: dict[str, np.ndarray], signature: str = DEFAULT_SIGNATURE
    ) -> Future:
        """Queue one request; its :class:`~concurrent.futures.Future` gets
        the outputs for exactly its rows, or the batch's error.

        Raises
        ------
        ValueError
            Inputs without a shared batch dimension, or more rows than
            ``max_batch_size``.
        QueueFullError
            ``max_enqueued_batches`` batches are waiting already.
        BatcherClosedError
            The batcher is closed.
        """
        rows = batch_rows(inputs)
        limit = self.params.max_batch_size
        if rows > limit:
            raise ValueError(
                f"Task size {rows} is larger than maximum input batch size {limit}"
            )
        task = _Task(inputs, rows)
        key = _key(signature, inputs)
        with self._cond:
            if self._closed:
                raise BatcherClosedError(f"batcher {self.name!r} is closed")
            batch = self._open.get(key)
            # A batch thread only needs waking when there is something new for
            # it: a batch to run, or a new open batch (a deadline to wait for).
            # Not for a request that joins an open batch: each wake-up costs a
            # thread switch and a turn of the GIL, per request.
            wake = False
            if batch is not None and batch.rows + rows > limit:
                self._close(batch)
                batch, wake = None, True
            if batch is None:
                batch, wake = self._start(signature, key), True
            batch.tasks.append(task)
            batch.rows += rows
            if batch.rows == limit:
                self._close(batch)
                wake = True
            if wake:
                self._cond.notify()
        return task.future

    def submit_blocking(
        self,
        inputs: dict[str, np.ndarray],
        signature: str = DEFAULT_SIGNATURE,
        timeout: float | None = None,
    ) -> dict[str, np.ndarray]:
        """:meth:`enqueue` and wait (in a thread) for this request's outputs;
        the batch's error is raised here."""
        return self.enqueue(inputs, signature).result(timeout)

    async def submit(
        self, inputs: dict[str, np.ndarray], signature: str = DEFAULT_SIGNATURE
    ) -> dict[str, np.ndarray]:
        """:meth:`enqueue` and await this request's outputs without blocking
        the event loop; the batch's error is raised here. A cancelled caller
        whose batch has not started is left out of it."""
        return await asyncio.wrap_future(self.enqueue(inputs, signature))

    def close(self) -> None:
        """Run every queued request now (open batches no longer wait), refuse
        new ones, and wait for the threads to finish."""
        with self._cond:
            self._closed = True
            for batch in list(self._open.values()):
                self._close(batch)
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()

    # -- the queue (called with the lock held) -------------------------------

    def _start(self, signature: str, key: tuple) -> _Batch:
        if len(self._ready) + len(self._open) >= self.params.max_enqueued_batches:
            raise QueueFullError(
                "The batch scheduling queue to which this task was submitted is "
                f"full; currently {len(self._ready) + len(self._open)} batches "
                f"enqueued and max_enqueued_batches is "
                f"{self.params.max_enqueued_batches}"
            )
        deadline = time.monotonic() + self.params.batch_timeout_micros / 1e6
        batch = self._open[key] = _Batch(signature, key, deadline)
        return batch

    def _close(self, batch: _Batch) -> None:
        del self._open[batch.key]
        self._ready.append(batch)

    def _next(self) -> _Batch | None:
        """The batch a free thread runs next, waiting for one; ``None`` once
        the batcher is closed and empty."""
        while True:
            if self._ready:
                return self._ready.popleft()
            if self._open:
                first = min(self._open.values(), key=lambda b: b.deadline)
                wait = first.deadline - time.monotonic()
                if wait <= 0:
                    del self._open[first.key]
                    return first
                self._cond.wait(wait)
            elif self._closed:
                return None
            else:
                self._cond.wait()

    # -- the batch threads ---------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._cond:
                batch = self._next()
            if batch is None:
                return
            self._process(batch)

    def _process(self, batch: _Batch) -> None:
        # A caller cancelled before this point is dropped; after it, it cannot
        # be cancelled any more, so every result below can be set.
        tasks = [t for t in batch.tasks if t.future.set_running_or_notify_cancel()]
        if not tasks:
            return
        started = time.perf_counter()
        rows = sum(t.rows for t in tasks)
        try:
            names = tasks[0].inputs.keys()
            merged = {
                k: np.concatenate([np.asarray(t.inputs[k]) for t in tasks])
                if len(tasks) > 1
                else np.asarray(tasks[0].inputs[k])
                for k in names
            }
            outputs = self.run(batch.signature, merged)
            for key, value in outputs.items():
                if np.ndim(value) == 0 or np.shape(value)[0] != rows:
                    raise ValueError(
                        f"Batched output tensor {key!r} has 0th dimension "
                        f"{np.shape(value)[:1]}; expected {rows}, the batch's rows"
                    )
        except Exception as exc:  # every caller of this batch gets the error
            for task in tasks:
                task.future.set_exception(exc)
        else:
            start = 0
            for task in tasks:
                stop = start + task.rows
                task.future.set_result({k: v[start:stop] for k, v in outputs.items()})
                start = stop
        finally:
            with self._cond:
                self.batches_run += 1
                self.rows_run += rows
            if self._timers is not None:
                self._record(tasks, started)

    def _record(self, tasks: list[_Task], started: float) -> None:
        queuing, latency = self._timers
        done = time.perf_counter()
        for task in tasks:
            queuing.observe(1e6 * (started - task.enqueued))
            latency.observe(done - task.enqueued)


class Batchers:
    """One :class:`Batcher` per served model version, made on first use: the
    server's ``--enable_batching``.

    A loaded version (see :mod:`cnnlearn.deploy.backends`: ``version`` and
    ``run``) gets its own queue, as in TF Serving; a version loaded again
    (its files replaced) is a new loaded object and gets a new queue.
    :meth:`retire`, called after each version switch, closes the queues of
    versions no longer served; a request that found such a version just
    before (it still holds it) runs unbatched on it, so no request fails
    during a switch.

    Used in chapter 8.
    """

    def __init__(
        self,
        params: BatchingParameters | None = None,
        metrics: BatchingMetrics | None = None,
    ):
        self.params = params or BatchingParameters()
        self.metrics = metrics
        self._batchers: dict[tuple[str, int], tuple[object, Batcher]] = {}
        # Retired versions, by id; weak, so a retired model is not kept alive.
        self._retired: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
        self._lock = threading.Lock()

    def get(self, name: str, loaded) -> Batcher | None:
        """The batcher of ``loaded`` (a version of model ``name``); ``None``
        once that version is retired."""
        key = (name, loaded.version)
        with self._lock:
            if self._retired.get(id(loaded)) is loaded:
                return None
            found = self._batchers.get(key)
            if found is not None and found[0] is loaded:
                return found[1]
            batcher = Batcher(
                loaded.run,
                self.params,
                f"{name}/{loaded.version}",
                self.metrics,
                model=name,
            )
            self._batchers[key] = (loaded, batcher)
            if found is not None:  # this version was loaded again
                self._retired[id(found[0])] = found[0]
        if found is not None:
            found[1].close()
        return batcher

    def run(
        self, name: str, loaded, signature: str, inputs: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Run a request through its version's batcher, blocking (for
        threads: the gRPC service's ``run``)."""
        batcher = self.get(name, loaded)
        if batcher is not None:
            try:
                return batcher.submit_blocking(inputs, signature)
            except BatcherClosedError:
                pass  # retired meanwhile: run it on the version it found
        return loaded.run(signature, inputs)

    async def submit(
        self, name: str, loaded, signature: str, inputs: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Run a request through its version's batcher without blocking the
        event loop (the REST handlers)."""
        batcher = self.get(name, loaded)
        if batcher is not None:
            try:
                return await batcher.submit(inputs, signature)
            except BatcherClosedError:
                pass
        return await asyncio.to_thread(loaded.run, signature, inputs)

    def retire(self, served: dict[str, list]) -> None:
        """Close the batchers of every version not in ``served`` (model name
        to its loaded versions), after running what they hold. Blocking: from
        an event loop, call it through ``asyncio.to_thread``."""
        with self._lock:
            gone = [
                (key, loaded, batcher)
                for key, (loaded, batcher) in self._batchers.items()
                if not any(loaded is kept for kept in served.get(key[0], ()))
            ]
            for key, loaded, _ in gone:
                del self._batchers[key]
                self._retired[id(loaded)] = loaded
        for _, _, batcher in gone:
            batcher.close()

    def close(self) -> None:
        """Close every batcher (at shutdown)."""
        self.retire({})
