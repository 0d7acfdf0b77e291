"""cnnlearn.deploy.batching: TF Serving's server-side batching, with fake models.

Each fake ``run`` records the batches it is given, so the tests assert which
requests went together and what each caller got back, never how long it took.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from cnnlearn.deploy.batching import (
    Batcher,
    BatcherClosedError,
    Batchers,
    BatchingMetrics,
    BatchingParameters,
    QueueFullError,
    batch_rows,
    parse_batching_parameters,
    read_batching_parameters,
)

HOUR = 3600 * 10**6  # microseconds: a timeout no test waits for


class Recorder:
    """A model that doubles ``x`` and names the batch each row ran in."""

    def __init__(self, gate: threading.Event | None = None, fail: bool = False):
        self.sizes: list[int] = []
        self.signatures: list[str] = []
        self.gate = gate  # when set, each batch waits for it (to fill a queue)
        self.started = threading.Event()  # set once a batch is running
        self.fail = fail
        self.lock = threading.Lock()

    def __call__(self, signature: str, inputs: dict) -> dict:
        self.started.set()
        if self.gate is not None:
            self.gate.wait()
        x = inputs["x"]
        with self.lock:
            self.sizes.append(len(x))
            self.signatures.append(signature)
            number = len(self.sizes)
        if self.fail:
            raise RuntimeError(f"batch {number} failed")
        return {"y": x * 2, "batch": np.full(len(x), number)}


def rows(first: int, n: int = 1) -> dict:
    return {"x": np.arange(first, first + n, dtype=np.float32)[:, None]}


@pytest.fixture
def batcher_factory():
    made = []

    def make(run, **params):
        batcher = Batcher(run, BatchingParameters(**params), name="test")
        made.append(batcher)
        return batcher

    yield make
    for batcher in made:
        batcher.close()


def test_concurrent_threads_get_exactly_their_own_rows(batcher_factory):
    model = Recorder()
    batcher = batcher_factory(model, max_batch_size=8, batch_timeout_micros=50_000)
    sizes = [1, 2, 3] * 20  # 120 rows in requests of 1 to 3

    def call(i):
        x = rows(100 * i, sizes[i])
        return x, batcher.submit_blocking(x)

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(call, range(len(sizes))))
    for x, out in answers:
        np.testing.assert_array_equal(out["y"], x["x"] * 2)
        assert len(set(out["batch"])) == 1  # a request is never split
    assert sum(model.sizes) == sum(sizes)
    assert max(model.sizes) <= 8
    assert len(model.sizes) < len(sizes)  # some requests did share a batch


def test_asyncio_callers_get_exactly_their_own_rows(batcher_factory):
    model = Recorder()
    batcher = batcher_factory(model, max_batch_size=4, batch_timeout_micros=HOUR)

    async def main():
        return await asyncio.gather(*(batcher.submit(rows(i)) for i in range(12)))

    answers = asyncio.run(main())
    for i, out in enumerate(answers):
        np.testing.assert_array_equal(out["y"], rows(i)["x"] * 2)
    # 12 single-row requests, full batches of 4 that never wait for the timeout
    assert model.sizes == [4, 4, 4]


def test_a_full_batch_runs_at_once_and_a_partial_one_waits(batcher_factory):
    model = Recorder()
    batcher = batcher_factory(model, max_batch_size=3, batch_timeout_micros=HOUR)
    first = batcher.enqueue(rows(0))
    second = batcher.enqueue(rows(1))
    with pytest.raises(TimeoutError):
        first.result(timeout=0.2)  # waits for more requests (an hour's timeout)
    third = batcher.enqueue(rows(2))  # the batch is full: it runs now
    outs = [f.result(timeout=60) for f in (first, second, third)]
    assert model.sizes == [3]
    assert [int(o["y"][0, 0]) for o in outs] == [0, 2, 4]


def test_a_lone_request_runs_once_its_timeout_passes(batcher_factory):
    model = Recorder()
    batcher = batcher_factory(model, max_batch_size=64, batch_timeout_micros=20_000)
    out = batcher.submit_blocking(rows(7), timeout=60)
    np.testing.assert_array_equal(out["y"], [[14.0]])
    assert model.sizes == [1]  # it did not wait for the batch to fill


def test_close_runs_what_is_queued_and_refuses_more(batcher_factory):
    model = Recorder()
    batcher = batcher_factory(model, max_batch_size=64, batch_timeout_micros=HOUR)
    futures = [batcher.enqueue(rows(i)) for i in range(3)]
    batcher.close()
    assert [int(f.result(timeout=0)["y"][0, 0]) for f in futures] == [0, 2, 4]
    assert model.sizes == [3]
    with pytest.raises(BatcherClosedError, match="closed"):
        batcher.enqueue(rows(0))


def test_an_error_reaches_every_caller_of_the_batch(batcher_factory):
    model = Recorder(fail=True)
    batcher = batcher_factory(model, max_batch_size=3, batch_timeout_micros=HOUR)
    futures = [batcher.enqueue(rows(i)) for i in range(3)]
    errors = []
    for future in futures:
        with pytest.raises(RuntimeError, match="batch 1 failed") as info:
            future.result(timeout=60)
        errors.append(info.value)
    assert len(set(map(id, errors))) == 1  # the batch's one error, for all three
    # the batcher keeps working after a failed batch
    model.fail = False
    out = batcher.submit_blocking(rows(5, 3), timeout=60)
    np.testing.assert_array_equal(out["y"][:, 0], [10, 12, 14])


def test_max_batch_size_is_respected_and_requests_are_never_split(batcher_factory):
    model = Recorder()
    batcher = batcher_factory(model, max_batch_size=5, batch_timeout_micros=HOUR)
    futures = [batcher.enqueue(rows(10 * i, n)) for i, n in enumerate([2, 2, 2, 3])]
    # 2 + 2 fit; the third (2) would make 6 > 5, so it starts a new batch,
    # which the fourth (3) fills to 5 exactly: both batches run at once
    for i, future in enumerate(futures):
        out = future.result(timeout=60)
        np.testing.assert_array_equal(
            out["y"][:, 0], 2 * (10 * i + np.arange(len(out["y"])))
        )
    assert model.sizes == [4, 5]
    with pytest.raises(
        ValueError, match="Task size 6 is larger than maximum input batch size 5"
    ):
        batcher.enqueue(rows(0, 6))


def test_the_queue_refuses_work_once_max_enqueued_batches_wait(batcher_factory):
    gate = threading.Event()
    model = Recorder(gate=gate)
    batcher = batcher_factory(
        model, max_batch_size=1, batch_timeout_micros=0, max_enqueued_batches=2
    )
    running = batcher.enqueue(rows(0))
    assert model.started.wait(60)  # the thread runs it, blocked on the gate
    queued = [batcher.enqueue(rows(1)), batcher.enqueue(rows(2))]
    with pytest.raises(QueueFullError, match="queue to which this task was submitted"):
        batcher.enqueue(rows(3))
    gate.set()
    assert [int(f.result(timeout=60)["y"][0, 0]) for f in [running, *queued]] == [
        0,
        2,
        4,
    ]


def test_different_signatures_and_shapes_never_share_a_batch(batcher_factory):
    model = Recorder()
    batcher = batcher_factory(model, max_batch_size=8, batch_timeout_micros=HOUR)
    a = batcher.enqueue(rows(0), "serving_default")
    b = batcher.enqueue(rows(1), "other")
    c = batcher.enqueue({"x": np.zeros((1, 2), np.float32)}, "serving_default")
    d = batcher.enqueue(rows(2), "serving_default")
    batcher.close()
    assert [f.result(timeout=0)["y"].shape for f in (a, b, c, d)] == [
        (1, 1),
        (1, 1),
        (1, 2),
        (1, 1),
    ]
    assert sorted(zip(model.signatures, model.sizes)) == [
        ("other", 1),
        ("serving_default", 1),
        ("serving_default", 2),
    ]


def test_a_cancelled_asyncio_caller_is_left_out_of_its_batch(batcher_factory):
    model = Recorder()
    batcher = batcher_factory(model, max_batch_size=8, batch_timeout_micros=HOUR)

    async def main():
        gone = asyncio.ensure_future(batcher.submit(rows(0)))
        await asyncio.sleep(0)  # let it enqueue
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        stays = asyncio.ensure_future(batcher.submit(rows(1)))
        await asyncio.sleep(0)
        await asyncio.to_thread(batcher.close)
        return await stays

    out = asyncio.run(main())
    np.testing.assert_array_equal(out["y"], [[2.0]])
    assert model.sizes == [1]


def test_outputs_without_the_batch_dimension_fail_the_batch(batcher_factory):
    batcher = batcher_factory(
        lambda sig, x: {"y": np.zeros(3)}, max_batch_size=2, batch_timeout_micros=HOUR
    )
    futures = [batcher.enqueue(rows(i)) for i in range(2)]
    for future in futures:
        with pytest.raises(ValueError, match="expected 2"):
            future.result(timeout=60)


@pytest.mark.parametrize(
    "inputs, message",
    [
        ({}, "at least one input tensor"),
        ({"x": np.float32(1)}, "at least one dimension"),
        ({"x": np.zeros((2, 1)), "z": np.zeros((3, 1))}, "equal 0th-dimension size"),
    ],
)
def test_batch_rows_refuses_what_tf_serving_refuses(inputs, message):
    with pytest.raises(ValueError, match=message):
        batch_rows(inputs)


@pytest.mark.parametrize(
    "params",
    [
        {"max_batch_size": 0},
        {"num_batch_threads": 0},
        {"max_enqueued_batches": 0},
        {"batch_timeout_micros": -1},
    ],
)
def test_bad_parameters_are_refused(params):
    with pytest.raises(ValueError, match="must be >= "):
        BatchingParameters(**params)


def test_batching_never_imports_tensorflow():
    code = """
import sys
import numpy as np
from cnnlearn.deploy.batching import Batcher
batcher = Batcher(lambda signature, inputs: {"y": inputs["x"] + 1})
assert batcher.submit_blocking({"x": np.zeros((2, 1))})["y"].shape == (2, 1)
batcher.close()
print("tensorflow" in sys.modules)
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


class FakeVersion:
    """A loaded version (``version`` and ``run``) that adds its version."""

    def __init__(self, version: int):
        self.version = version
        self.sizes: list[int] = []

    def run(self, signature: str, inputs: dict) -> dict:
        self.sizes.append(len(inputs["x"]))
        return {"y": inputs["x"] + self.version}


def test_batchers_keep_one_queue_per_version():
    batchers = Batchers(BatchingParameters(max_batch_size=4, batch_timeout_micros=HOUR))
    v1, v2 = FakeVersion(1), FakeVersion(2)
    try:
        assert batchers.get("m", v1) is batchers.get("m", v1)
        assert batchers.get("m", v1) is not batchers.get("m", v2)
        with ThreadPoolExecutor(16) as pool:
            answers = list(
                pool.map(
                    lambda i: batchers.run("m", (v1, v2)[i % 2], "", rows(i)), range(16)
                )
            )
    finally:
        batchers.close()
    for i, out in enumerate(answers):
        assert out["y"][0, 0] == i + 1 + i % 2  # answered by the version it named
    assert v1.sizes == [4, 4] and v2.sizes == [4, 4]  # never mixed


def test_a_retired_version_runs_unbatched_and_a_reload_gets_a_new_queue():
    batchers = Batchers(BatchingParameters(max_batch_size=8, batch_timeout_micros=HOUR))
    old, new = FakeVersion(1), FakeVersion(1)  # version 1, loaded twice
    first = batchers.get("m", old)
    assert batchers.get("m", new) is not first  # the reload: a new queue
    with pytest.raises(BatcherClosedError):
        first.enqueue(rows(0))  # the old one was closed
    batchers.retire({"m": [new]})
    assert batchers.get("m", old) is None
    # a request that still holds the retired version runs on it, unbatched
    assert batchers.run("m", old, "", rows(5))["y"][0, 0] == 6
    out = asyncio.run(batchers.submit("m", old, "", rows(7)))
    assert out["y"][0, 0] == 8
    assert old.sizes == [1, 1]
    live = batchers.get("m", new)
    batchers.retire({})  # everything: shutdown
    with pytest.raises(BatcherClosedError):
        live.enqueue(rows(0))
    assert batchers.get("m", new) is None


def test_batchers_submit_from_the_event_loop():
    batchers = Batchers(BatchingParameters(max_batch_size=3, batch_timeout_micros=HOUR))
    version = FakeVersion(10)

    async def main():
        calls = (batchers.submit("m", version, "", rows(i)) for i in range(6))
        return await asyncio.gather(*calls)

    try:
        answers = asyncio.run(main())
    finally:
        batchers.close()
    assert [int(a["y"][0, 0]) for a in answers] == [10, 11, 12, 13, 14, 15]
    assert version.sizes == [3, 3]


@pytest.fixture(scope="module")
def lite(tmp_path_factory):
    """A plain LiteRT model (4 features, 3 classes) and its Keras original."""
    from deploy_helpers import build_plain

    return build_plain(tmp_path_factory.getbasetemp() / "plain-models")


def counting_app(lite, params: BatchingParameters):
    """The server over ``lite`` with batching; the list of each model call's
    rows."""
    from cnnlearn.deploy import server

    app = server.create_app({"lite": lite.tflite_base}, "tflite", batching=params)
    loaded = app.state.server.managers["lite"].current
    calls: list[int] = []
    real = loaded.backend.run

    def counted(signature, inputs):
        calls.append(len(next(iter(inputs.values()))))
        return real(signature, inputs)

    loaded.backend.run = counted  # what the version's batcher calls
    return app, calls


def post_one(url: str, row: list) -> tuple[list, str]:
    import json
    import urllib.request

    request = urllib.request.Request(
        f"{url}/v1/models/lite:predict", json.dumps({"instances": [row]}).encode()
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())["predictions"], response.headers[
            "x-model-version"
        ]


def test_each_request_s_wait_and_time_in_the_batcher_are_recorded():
    """TF Serving's queuing latency (microseconds until the batch starts, by
    thread pool) and the time until the outputs are ready, once per request:
    a lone request waits out the whole batch timeout."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    params = BatchingParameters(
        max_batch_size=4, batch_timeout_micros=50_000, thread_pool_name="pool"
    )
    batcher = Batcher(Recorder(), params, "m/1", BatchingMetrics(registry), model="m")
    try:
        batcher.submit_blocking(rows(0), timeout=60)
        with ThreadPoolExecutor(4) as pool:  # a full batch: no timeout to wait
            list(pool.map(lambda i: batcher.submit_blocking(rows(i)), range(4)))
    finally:
        batcher.close()
    queuing = ":tensorflow:serving:batching_session:queuing_latency"
    value = registry.get_sample_value
    assert value(f"{queuing}_count", {"thread_pool_name": "pool"}) == 5
    in_batcher = {"model": "m"}
    assert value("cnnlearn_batching_latency_seconds_count", in_batcher) == 5
    # the lone request waited >= 50 ms; the full batch's four did not wait for it
    assert value(f"{queuing}_bucket", {"thread_pool_name": "pool", "le": "+Inf"}) == 5
    slow = 5 - value(
        "cnnlearn_batching_latency_seconds_bucket", {**in_batcher, "le": "0.05"}
    )
    assert slow >= 1
    assert value(f"{queuing}_sum", {"thread_pool_name": "pool"}) >= 50_000
    assert value("cnnlearn_batching_latency_seconds_sum", in_batcher) >= 0.05


def test_concurrent_single_image_rest_requests_share_model_calls(lite):
    """16 clients, one row each, batches of at most 8 that wait until full:
    two model calls, and every client gets its own row's answer."""
    from deploy_helpers import threaded_server

    params = BatchingParameters(max_batch_size=8, batch_timeout_micros=HOUR)
    app, calls = counting_app(lite, params)
    x = np.random.default_rng(3).random((16, 4), dtype=np.float32)
    with threaded_server(app) as (host, port):
        url = f"http://{host}:{port}"
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda i: post_one(url, x[i].tolist()), range(16)))
    assert calls == [8, 8]  # fewer model calls than requests
    registry = app.state.server.metrics.registry
    count = registry.get_sample_value(
        ":tensorflow:serving:batching_session:queuing_latency_count",
        {"thread_pool_name": "batch_threads"},
    )
    assert count == 16  # TF Serving's metric, one sample per request
    want = lite.keras_model.predict(x, verbose=0)
    for i, (predictions, version) in enumerate(answers):
        assert version == "7"
        np.testing.assert_allclose(predictions[0], want[i], atol=1e-5)
    assert app.state.server.batchers is None  # closed at shutdown


def test_rest_and_grpc_requests_share_one_queue_per_version(lite):
    """4 REST and 4 gRPC single-row requests to the same version fill one
    batch of 8 together."""
    pytest.importorskip("tensorflow_serving", reason="needs tensorflow-serving-api")
    import grpc
    import tensorflow as tf
    from deploy_helpers import threaded_server
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from cnnlearn.deploy import server

    params = BatchingParameters(max_batch_size=8, batch_timeout_micros=HOUR)
    app, calls = counting_app(lite, params)
    loaded = app.state.server.managers["lite"].current
    (name,) = loaded.signatures["serving_default"].inputs
    x = np.random.default_rng(4).random((8, 4), dtype=np.float32)
    with threaded_server(app) as (host, port):
        grpc_server, grpc_port = server.start_grpc(app.state.server)
        try:
            with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

                def by_grpc(i):
                    request = predict_pb2.PredictRequest()
                    request.model_spec.name = "lite"
                    request.inputs[name].CopyFrom(tf.make_tensor_proto(x[i : i + 1]))
                    response = stub.Predict(request, timeout=60)
                    (out,) = response.outputs.values()
                    return tf.make_ndarray(out)[0]

                def either(i):
                    if i % 2:
                        return by_grpc(i)
                    return post_one(f"http://{host}:{port}", x[i].tolist())[0][0]

                with ThreadPoolExecutor(8) as pool:
                    answers = list(pool.map(either, range(8)))
        finally:
            grpc_server.stop(None)
    assert calls == [8]
    want = lite.keras_model.predict(x, verbose=0)
    np.testing.assert_allclose(np.asarray(answers, np.float32), want, atol=1e-5)


def test_tf_servings_batching_parameters_file(tmp_path):
    """The text format of TF Serving's batching guide; unset fields keep the
    defaults; thread_pool_name names the queuing metric's pool."""
    path = tmp_path / "batching.config"
    path.write_text(
        "max_batch_size { value: 32 }\n"
        "batch_timeout_micros { value: 2000 }\n"
        "max_enqueued_batches { value: 100 }\n"
        'thread_pool_name { value: "model_server_batch_threads" }\n'
    )
    assert read_batching_parameters(path) == BatchingParameters(
        max_batch_size=32,
        batch_timeout_micros=2000,
        max_enqueued_batches=100,
        num_batch_threads=1,
        thread_pool_name="model_server_batch_threads",
    )
    assert parse_batching_parameters("") == BatchingParameters()
    with pytest.raises(FileNotFoundError, match="not found"):
        read_batching_parameters(tmp_path / "missing")


@pytest.mark.parametrize(
    "text, message",
    [
        ("max_batch_size: 8", 'Expected "{"'),
        ("max_batch_sise { value: 8 }", 'no field named "max_batch_sise"'),
        ("num_batch_threads { value: 0 }", "num_batch_threads must be >= 1"),
        ("allowed_batch_sizes: 8", "allowed_batch_sizes is not supported"),
        ("pad_variable_length_inputs: true", "is not supported"),
    ],
)
def test_bad_batching_parameters_are_one_line_errors(text, message):
    with pytest.raises(ValueError) as info:
        parse_batching_parameters(text, "b.config")
    assert message in str(info.value) and "\n" not in str(info.value)
    assert str(info.value).startswith("b.config: ")
