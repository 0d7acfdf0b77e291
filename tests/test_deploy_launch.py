"""cnnlearn.deploy.launch: the server subprocess and the load generator."""

from __future__ import annotations

import json

import pytest
from deploy_helpers import build

from cnnlearn.deploy import client, launch


def test_a_server_that_cannot_start_is_reported(tmp_path):
    with pytest.raises(RuntimeError, match="server exited with 1"):
        launch.start_server(tmp_path / "missing", tmp_path / "srv", timeout=120)


@pytest.mark.slow
def test_start_load_traffic_stop(tmp_path_factory, tmp_path, data_dir):
    built = build(tmp_path_factory.getbasetemp() / "deploy", data_dir)
    server = launch.start_server(built.base / "mnist", tmp_path / "srv")
    with server:
        assert server.running and server.url.startswith("http://127.0.0.1:")
        body = json.dumps(client.predict_body(built.x_test[:1])).encode()
        request = launch.http_request("/v1/models/mnist:predict", body)
        result = launch.load(server.url, request, clients=2, seconds=1, warmup=0.2)
        assert result["requests"] > 0 and result["errors"] == 0
        assert result["p50_ms"] <= result["p99_ms"]
        bad = launch.http_request("/v1/models/mnist:predict", b"{}")
        result = launch.load(server.url, bad, clients=1, seconds=0.5, warmup=0)
        assert result["requests"] == 0 and result["errors"] > 0
        assert result["first_errors"][0].startswith("400")
        with launch.BackgroundTraffic(server.url, "mnist", {"instances": []}) as t:
            assert t.wait_for("1", consecutive=3, timeout=2) is False
        assert t.failures and not t.versions
        with launch.BackgroundTraffic(
            server.url, "mnist", client.predict_body(built.x_test_uint8[:2], "b64")
        ) as traffic:
            assert traffic.wait_for("1", consecutive=3, timeout=60)
        assert traffic.failures == []
    assert not server.running and server.process.returncode == 0


def test_benchmark_rows():
    run = {
        "p50_ms": 1.234,
        "p99_ms": None,
        "requests_per_s": 10.4,
        "images_per_s": 332.8,
        "server_cpu_ms_per_request": 0.5,
        "errors": 0,
    }
    results = {
        "scenarios": {"b": {"clients": 4, "batch": 32, "encoding": "b64"}},
        "servers": {"ours": {"b": run}},
    }
    (row,) = launch.benchmark_rows(results)
    assert row["server"] == "ours" and row["batch"] == 32 and row["p50 ms"] == 1.23
    assert row["p99 ms"] == "—" and row["images/s"] == 333
