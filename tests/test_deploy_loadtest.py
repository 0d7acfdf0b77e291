"""cnnlearn.deploy.loadtest: the server subprocess and the load generator."""

from __future__ import annotations

import json

import pytest
from deploy_helpers import build

from cnnlearn.deploy import client, loadtest


def test_a_server_that_cannot_start_is_reported(tmp_path):
    with pytest.raises(RuntimeError, match="server exited with 1"):
        loadtest.start_server(tmp_path / "missing", tmp_path / "srv", timeout=120)


def test_histogram_quantile_is_the_bucket_it_falls_in():
    inf = float("inf")
    before = {0.001: 10.0, 0.002: 10.0, inf: 10.0}
    after = {0.001: 60.0, 0.002: 109.0, inf: 110.0}  # 100 more: 50, 49 and 1
    assert loadtest.histogram_quantile(before, after, 0.5) == 0.001
    assert loadtest.histogram_quantile(before, after, 0.99) == 0.002
    assert loadtest.histogram_quantile(before, after, 1.0) == inf
    assert loadtest.histogram_quantile(after, after, 0.99) is None
    assert loadtest.histogram_quantile({}, {}, 0.99) is None


@pytest.mark.slow
def test_start_load_traffic_stop(tmp_path_factory, tmp_path, data_dir):
    built = build(tmp_path_factory.getbasetemp() / "deploy", data_dir)
    server = loadtest.start_server(built.base / "mnist", tmp_path / "srv")
    with server:
        assert server.running and server.url.startswith("http://127.0.0.1:")
        body = json.dumps(client.predict_body(built.x_test[:1])).encode()
        request = loadtest.http_request("/v1/models/mnist:predict", body)
        latency, readings = "cnnlearn_request_latency_seconds", []

        def read_metrics():
            readings.append(loadtest.histogram(server.url, latency))

        result = loadtest.load(
            server.url, request, clients=2, seconds=1, warmup=0.2, at_warm=read_metrics
        )
        assert result["requests"] > 0 and result["errors"] == 0
        assert result["p50_ms"] <= result["p99_ms"]
        after = loadtest.histogram(server.url, latency)
        (before,) = readings  # read once, when counting started
        counted = after[float("inf")] - before[float("inf")]
        assert result["requests"] / 2 <= counted <= result["requests"] + 2
        assert loadtest.histogram_quantile(before, after, 0.99) is not None
        assert loadtest.histogram(server.url, "no_such_metric") == {}
        bad = loadtest.http_request("/v1/models/mnist:predict", b"{}")
        result = loadtest.load(server.url, bad, clients=1, seconds=0.5, warmup=0)
        assert result["requests"] == 0 and result["errors"] > 0
        assert result["first_errors"][0].startswith("400")
        with loadtest.BackgroundTraffic(server.url, "mnist", {"instances": []}) as t:
            assert t.wait_for("1", consecutive=3, timeout=2) is False
        assert t.failures and not t.versions
        with loadtest.BackgroundTraffic(
            server.url, "mnist", client.predict_body(built.x_test_uint8[:2], "b64")
        ) as traffic:
            assert traffic.wait_for("1", consecutive=3, timeout=60)
        assert traffic.failures == []
    assert not server.running and server.process.returncode == 0


@pytest.mark.slow
def test_grpc_load_counts_answers_and_errors(tmp_path_factory, tmp_path, data_dir):
    tf = pytest.importorskip("tensorflow")
    from tensorflow_serving.apis import predict_pb2

    built = build(tmp_path_factory.getbasetemp() / "deploy", data_dir)
    server = loadtest.start_server(
        built.base / "mnist", tmp_path / "srv", extra_args=("--grpc-port", "0")
    )
    with server:
        assert server.grpc_target.startswith("127.0.0.1:")
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "mnist"
        request.inputs["image"].CopyFrom(tf.make_tensor_proto(built.x_test[:1]))
        result = loadtest.load_grpc(
            server.grpc_target, request, clients=2, seconds=1, warmup=0.2
        )
        assert result["requests"] > 0 and result["errors"] == 0
        assert result["p50_ms"] <= result["p99_ms"]
        request.model_spec.name = "fashion"
        result = loadtest.load_grpc(
            server.grpc_target, request, clients=1, seconds=0.3, warmup=0
        )
        assert result["requests"] == 0 and result["errors"] > 0
        assert result["first_errors"][0].startswith("NOT_FOUND")
    plain = loadtest.start_server(built.base / "mnist", tmp_path / "plain")
    with plain:
        assert plain.grpc_target is None
