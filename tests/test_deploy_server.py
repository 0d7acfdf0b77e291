"""cnnlearn.deploy.server: TF Serving's REST contract, errors, metrics, versions.

Most tests drive the app in-process with FastAPI's TestClient; the ``slow``
ones run ``cnnlearn serve`` as a real uvicorn subprocess, always stopped.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from deploy_helpers import build, build_plain, copy_models, running_server
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from cnnlearn.deploy import client, export, release, server, transport
from cnnlearn.deploy.backends import ModelVersions
from cnnlearn.deploy.signatures import read_signature_defs

MAX_BODY = 2_000_000


@pytest.fixture(scope="module")
def built(tmp_path_factory, data_dir):
    return build(tmp_path_factory.getbasetemp() / "deploy", data_dir)


@pytest.fixture(scope="module")
def api(built):
    app = server.create_app(
        {"mnist": built.base / "mnist"},
        "tflite",
        max_batch=64,
        value_range=(0.0, 1.0),  # the chapter 8 model's guards, switched on
        finite_only=True,
        max_body_bytes=MAX_BODY,
    )
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def expected(built):
    return built.model_a.predict(built.x_test[:16], verbose=0)


def metrics(api) -> dict:
    text = api.get("/monitoring/prometheus/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_status_and_version_status(api):
    want = {
        "model_version_status": [
            {
                "version": "1",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }
    assert api.get("/v1/models/mnist").json() == want
    assert api.get("/v1/models/mnist/versions/1").json() == want


@pytest.mark.parametrize("path", ["/v1/models/mnist", "/v1/models/mnist/versions/1"])
def test_metadata_shows_the_signatures(api, path):
    meta = api.get(f"{path}/metadata").json()
    assert meta["model_spec"] == {"name": "mnist", "signature_name": "", "version": "1"}
    defs = meta["metadata"]["signature_def"]["signature_def"]
    assert set(defs) == {"serving_default", "serving_uint8", "serving_bytes"}
    assert defs["serving_bytes"]["inputs"]["image_bytes"]["dtype"] == "DT_STRING"


def bodies(built):
    x, x8 = built.x_test[:16], built.x_test_uint8[:16]
    b64 = [{"b64": base64.b64encode(i.tobytes()).decode()} for i in x8]
    return {
        "rows": ({"instances": x.tolist()}, "predictions"),
        "named-rows": (
            {"instances": [{"image": i} for i in x.tolist()]},
            "predictions",
        ),
        "columnar": ({"inputs": x.tolist()}, "outputs"),
        "named-columnar": ({"inputs": {"image": x.tolist()}}, "outputs"),
        "uint8": (
            {"signature_name": "serving_uint8", "instances": x8.tolist()},
            "predictions",
        ),
        "b64": ({"signature_name": "serving_bytes", "instances": b64}, "predictions"),
    }


@pytest.mark.parametrize(
    "fmt", ["rows", "named-rows", "columnar", "named-columnar", "uint8", "b64"]
)
@pytest.mark.parametrize("path", ["mnist", "mnist/versions/1"])
def test_predictions_equal_local_predictions(api, built, expected, fmt, path):
    body, key = bodies(built)[fmt]
    response = api.post(f"/v1/models/{path}:predict", json=body)
    assert response.status_code == 200, response.text
    assert set(response.json()) == {key}
    assert response.headers["x-model-version"] == "1"
    np.testing.assert_allclose(response.json()[key], expected, atol=1e-5)


def test_a_batch_of_one_and_of_the_maximum(api, built):
    for n in (1, 5, 64):
        x = np.resize(built.x_test, (n, 28, 28, 1))
        response = api.post("/v1/models/mnist:predict", json={"instances": x.tolist()})
        got = np.asarray(response.json()["predictions"])
        np.testing.assert_allclose(got, built.model_a.predict(x, verbose=0), atol=1e-5)


GOOD = np.zeros((1, 28, 28, 1)).tolist()
GOOD_DOC = {"instances": GOOD}
BOOL_PIXEL = np.zeros((1, 28, 28, 1)).tolist()
BOOL_PIXEL[0][14][14][0] = True
BAD = [
    ("malformed JSON", "POST", "mnist:predict", b'{"instances": [', 400),
    ("NaN", "POST", "mnist:predict", b'{"instances": [NaN]}', 400),
    ("inf", "POST", "mnist:predict", b'{"instances": [[[[1e999]]]]}', 400),
    ("wrong shape", "POST", "mnist:predict", {"instances": [[0.5] * 28]}, 400),
    ("strings", "POST", "mnist:predict", {"instances": [["x"] * 28]}, 400),
    ("wrong dtype", "POST", "mnist:predict", {"instances": [[[[True]]]]}, 400),
    ("empty list", "POST", "mnist:predict", {"instances": []}, 400),
    ("both keys", "POST", "mnist:predict", {"instances": GOOD, "inputs": GOOD}, 400),
    ("over max batch", "POST", "mnist:predict", {"instances": GOOD * 65}, 400),
    ("oversized body", "POST", "mnist:predict", b" " * (MAX_BODY + 1), 413),
    ("unknown model", "POST", "fashion:predict", {"instances": GOOD}, 404),
    ("unknown version", "POST", "mnist/versions/7:predict", {"instances": GOOD}, 404),
    ("bad version", "POST", "mnist/versions/x:predict", {"instances": GOOD}, 400),
    ("superscript version", "GET", "mnist/versions/%C2%B2", None, 400),
    ("superscript predict", "POST", "mnist/versions/%C2%B2:predict", GOOD_DOC, 400),
    ("Arabic-Indic one", "GET", "mnist/versions/%D9%A1", None, 400),
    ("Arabic-Indic metadata", "GET", "mnist/versions/%D9%A1/metadata", None, 400),
    ("Arabic-Indic predict", "POST", "mnist/versions/%D9%A1:predict", GOOD_DOC, 400),
    ("5,000-digit version", "GET", "mnist/versions/" + "1" * 5000, None, 400),
    ("over int64", "GET", "mnist/versions/9223372036854775808", None, 400),
    ("boolean pixel", "POST", "mnist:predict", {"instances": BOOL_PIXEL}, 400),
    ("unknown model status", "GET", "fashion", None, 404),
    ("unknown version metadata", "GET", "mnist/versions/2/metadata", None, 404),
    ("classify without examples", "POST", "mnist:classify", GOOD_DOC, 400),
    ("unknown verb", "POST", "mnist:explain", {"instances": GOOD}, 400),
    ("GET a predict URL", "GET", "mnist:predict", None, 400),
    ("PUT", "PUT", "mnist", None, 400),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [case[1:] for case in BAD],
    ids=[case[0] for case in BAD],
)
def test_bad_requests_get_a_json_error_and_the_server_stays_up(
    api, method, path, body, status
):
    kwargs = {"json": body} if isinstance(body, dict) else {"content": body}
    response = api.request(method, f"/v1/models/{path}", **kwargs)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert set(response.json()) == {"error"} and response.json()["error"]
    assert len(response.json()["error"]) < 400  # a 5,000-digit version is cut
    assert api.get("/v1/models/mnist").status_code == 200


def test_a_boolean_pixel_is_named_in_the_error(api):
    response = api.post("/v1/models/mnist:predict", json={"instances": BOOL_PIXEL})
    assert (
        "JSON Value: true Type: True is not of expected type: float"
        in (response.json()["error"])
    )


def test_unknown_model_is_worded_as_tf_serving_does(api):
    response = api.post("/v1/models/fashion:predict", json={"instances": GOOD})
    assert response.json() == {
        "error": "Servable not found for request: Latest(fashion)"
    }
    response = api.get("/v1/models/mnist/versions/3")
    assert response.json()["error"] == "Could not find version 3 of model mnist"
    response = api.get("/v1/models/mnist/versions/3/metadata")
    assert response.json()["error"] == (
        "Servable not found for request: Specific(mnist, 3)"
    )


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.binary(max_size=200)
    | st.builds(
        lambda d: json.dumps(d).encode(),
        st.dictionaries(
            st.sampled_from(["instances", "inputs", "signature_name", "x"]),
            st.recursive(
                st.none()
                | st.floats(allow_nan=False, allow_infinity=False)
                | st.integers(-300, 300)
                | st.text(max_size=3),
                lambda c: st.lists(c, max_size=3),
                max_leaves=20,
            ),
        ),
    )
)
def test_fuzzed_bodies_get_200_or_a_json_4xx(api, body):
    response = api.post("/v1/models/mnist:predict", content=body)
    assert response.status_code in (200, 400)
    assert set(response.json()) <= {"predictions", "outputs", "error"}


def test_prometheus_metrics(api, built):
    api.post("/v1/models/mnist:predict", json={"instances": built.x_test[:4].tolist()})
    api.post("/v1/models/mnist:predict", json={"instances": []})
    m = metrics(api)
    ok = (
        "cnnlearn_requests_total",
        (("model", "mnist"), ("status", "200"), ("version", "1")),
    )
    bad = (
        "cnnlearn_requests_total",
        (("model", "mnist"), ("status", "400"), ("version", "1")),
    )
    assert m[ok] >= 1 and m[bad] >= 1
    assert m[("cnnlearn_request_latency_seconds_count", (("model", "mnist"),))] >= 2
    classes = {
        labels: v
        for (name, labels), v in m.items()
        if name == "cnnlearn_predicted_class_total"
    }
    assert (
        len(classes) == 10
        and sum(classes.values()) == m[("cnnlearn_images_total", (("model", "mnist"),))]
    )
    assert m[("cnnlearn_model_version", (("model", "mnist"),))] == 1
    stats = {
        dict(labels)["statistic"]
        for (name, labels) in m
        if name == "cnnlearn_input_drift"
    }
    assert stats == {"mean", "std", "ink", "border"}


def drift(api) -> dict:
    return {
        dict(labels)["statistic"]: v
        for (name, labels), v in metrics(api).items()
        if name == "cnnlearn_input_drift"
    }


def test_inverted_inputs_raise_the_drift_gauge(built):
    app = server.create_app({"mnist": built.base / "mnist"}, "tflite", drift_window=200)
    with TestClient(app) as api:
        api.post("/v1/models/mnist:predict", json={"instances": built.x_test.tolist()})
        normal = drift(api)
        inverted = (1.0 - built.x_test).tolist()
        api.post("/v1/models/mnist:predict", json={"instances": inverted})
        shifted = drift(api)
    assert max(normal.values()) < 1.0
    assert shifted["mean"] > 3 and shifted["ink"] > 3


def test_savedmodel_and_litert_backends_agree(built, api):
    app = server.create_app({"mnist": built.base / "mnist"}, "savedmodel")
    body = {"instances": built.x_test[:64].tolist()}
    with TestClient(app) as saved:
        a = saved.post("/v1/models/mnist:predict", json=body).json()["predictions"]
    b = api.post("/v1/models/mnist:predict", json=body).json()["predictions"]
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_several_models_at_once(built, tmp_path):
    export.export_version(built.model_b, tmp_path, "other", train_images=built.x_train)
    app = server.create_app(
        {"mnist": built.base / "mnist", "other": tmp_path / "other"}, "tflite"
    )
    body = {"instances": built.x_test[:8].tolist()}
    with TestClient(app) as api:
        for name, model in (("mnist", built.model_a), ("other", built.model_b)):
            got = api.post(f"/v1/models/{name}:predict", json=body).json()
            want = model.predict(built.x_test[:8], verbose=0)
            np.testing.assert_allclose(got["predictions"], want, atol=1e-5)


def test_new_versions_are_picked_up_and_incomplete_ones_never(built, tmp_path):
    base = copy_models(built, tmp_path / "models")
    model_dir = base / "mnist"
    app = server.create_app({"mnist": model_dir}, "tflite")
    manager = app.state.server.managers["mnist"]
    # A crash mid-export leaves a hidden temporary directory; a hand copy in
    # progress leaves an integer directory without its files. Neither is served.
    (model_dir / ".tmp-9-deadbeef" / "variables").mkdir(parents=True)
    (model_dir / "8" / "variables").mkdir(parents=True)
    assert manager.poll() is False and manager.current.version == 1
    release.remove_version(base, "mnist", 8)
    export.export_version(built.model_b, base, "mnist", train_images=built.x_train)
    assert manager.poll() is True and manager.current.version == 2
    body = {"instances": built.x_test[:8].tolist()}
    with TestClient(app) as api:
        response = api.post("/v1/models/mnist:predict", json=body)
        assert response.headers["x-model-version"] == "2"
        want = built.model_b.predict(built.x_test[:8], verbose=0)
        np.testing.assert_allclose(response.json()["predictions"], want, atol=1e-5)
        assert api.get("/v1/models/mnist/versions/1/metadata").status_code == 404
        old = api.get("/v1/models/mnist/versions/1").json()["model_version_status"]
        assert old[0]["state"] == "END"  # served before: TF Serving lists it so
    release.remove_version(base, "mnist", 2)  # rollback by removing
    assert manager.poll() is True and manager.current.version == 1


def test_a_broken_version_is_skipped_and_the_old_one_keeps_serving(built, tmp_path):
    base = copy_models(built, tmp_path / "models")
    app = server.create_app({"mnist": base / "mnist"}, "tflite")
    manager = app.state.server.managers["mnist"]
    broken = export.export_version(built.model_b, base, "mnist", tflite=b"not a model")
    assert broken.name == "2"
    assert manager.poll() is False and manager.current.version == 1
    assert 2 in manager.failed


def states(api, path: str = "/v1/models/mnist") -> list[tuple[str, str]]:
    rows = api.get(path).json()["model_version_status"]
    return [(row["version"], row["state"]) for row in rows]


def test_a_failed_version_is_retried_with_backoff_and_shown_in_status(built, tmp_path):
    base = copy_models(built, tmp_path / "models")
    app = server.create_app({"mnist": base / "mnist"}, "tflite")
    manager = app.state.server.managers["mnist"]
    export.export_version(built.model_b, base, "mnist", tflite=b"not a model")
    tried = []
    for _ in range(20):
        before = manager.load_failures
        assert manager.poll() is False and manager.current.version == 1
        if manager.load_failures > before:
            tried.append(manager.polls)
    assert np.diff(tried).tolist() == [1, 2, 4, 8]  # 1 poll, then 2, 4, ...
    api = TestClient(app)  # no lifespan: no background polls meanwhile
    assert states(api) == [("2", "END"), ("1", "AVAILABLE")]
    assert states(api, "/v1/models/mnist/versions/2") == [("2", "END")]
    failed = api.get("/v1/models/mnist/versions/2").json()["model_version_status"]
    assert failed[0]["status"]["error_code"] == "INVALID_ARGUMENT"
    assert "ValueError" in failed[0]["status"]["error_message"]
    body = {"instances": GOOD}
    assert api.post("/v1/models/mnist/versions/2:predict", json=body).status_code == 404
    failures = ("cnnlearn_model_load_failures_total", (("model", "mnist"),))
    assert metrics(api)[failures] == len(tried)
    # An atomic replacement by a good copy is served on the next poll, without
    # waiting for the backoff to run out.
    good = export.export_version(built.model_b, tmp_path / "staging", "mnist")
    os.rename(base / "mnist" / "2", tmp_path / "broken")
    os.rename(good, base / "mnist" / "2")
    assert manager.poll() is True and manager.current.version == 2
    # Version 1, served before, stays in the status as END, as in TF Serving.
    assert manager.failed == {}
    assert states(api) == [("2", "AVAILABLE"), ("1", "END")]
    old = api.get("/v1/models/mnist/versions/1").json()["model_version_status"]
    assert old[0]["status"] == {"error_code": "OK", "error_message": ""}


def test_the_backoff_is_capped(tmp_path):
    version = tmp_path / "7"
    (version / export.METADATA_FILE).parent.mkdir(parents=True)
    (version / export.TFLITE_FILE).write_bytes(b"junk")
    (version / export.METADATA_FILE).write_text("{}")
    manager = ModelVersions("m", tmp_path, max_retry_polls=4)
    tried = []
    for _ in range(24):
        before = manager.load_failures
        assert manager.poll() is False and manager.current is None
        if manager.load_failures > before:
            tried.append(manager.polls)
    assert np.diff(tried).tolist() == [1, 2, 4, 4, 4, 4, 4]
    assert manager.failed[7].attempts == len(tried)


def test_a_broken_newest_version_at_start_falls_back_at_once(built, tmp_path):
    base = copy_models(built, tmp_path / "models")
    export.export_version(built.model_b, base, "mnist", tflite=b"not a model")
    app = server.create_app({"mnist": base / "mnist"}, "tflite")
    assert app.state.server.managers["mnist"].current.version == 1
    assert states(TestClient(app)) == [("2", "END"), ("1", "AVAILABLE")]


def test_a_model_with_only_a_broken_version_shows_it(built, tmp_path):
    export.export_version(built.model_b, tmp_path, "mnist", tflite=b"not a model")
    api = TestClient(server.create_app({"mnist": tmp_path / "mnist"}, "tflite"))
    assert states(api) == [("1", "END")]
    assert api.post("/v1/models/mnist:predict", json={"instances": GOOD}).json() == {
        "error": "Servable not found for request: Latest(mnist)"
    }


def asgi_scope(path: str, content_length: int) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-length", str(content_length).encode())],
        "server": ("127.0.0.1", 8501),
        "client": ("127.0.0.1", 40000),
    }


def test_a_client_gone_mid_body_counts_as_499_without_a_traceback(built, caplog):
    app = server.create_app({"mnist": built.base / "mnist"}, "tflite")
    for _ in range(3):
        messages = iter(
            [
                {"type": "http.request", "body": b'{"instances": [', "more_body": True},
                {"type": "http.disconnect"},
            ]
        )

        async def receive(messages=messages):
            return next(messages)

        async def send(message):
            pass

        with caplog.at_level(logging.INFO):
            scope = asgi_scope("/v1/models/mnist:predict", 100_000)
            asyncio.run(app(scope, receive, send))
    counted = {
        dict(labels)["status"]: value
        for (name, labels), value in metrics(TestClient(app)).items()
        if name == "cnnlearn_requests_total"
    }
    assert counted == {"499": 3}
    lines = [r for r in caplog.records if "499" in r.getMessage()]
    assert len(lines) == 3 and "\n" not in lines[0].getMessage()
    assert all(r.exc_info is None for r in caplog.records)


def test_big_bodies_run_in_the_worker_pool_small_ones_inline(built):
    small = json.dumps({"instances": built.x_test[:1].tolist()}).encode()
    big = json.dumps({"instances": built.x_test[:16].tolist()}).encode()
    app = server.create_app(
        {"mnist": built.base / "mnist"}, "tflite", inline_bytes=len(small)
    )
    loaded = app.state.server.managers["mnist"].current
    working, threads = loaded.backend.predict, []

    def recording(signature, images):
        threads.append(threading.current_thread().name)
        return working(signature, images)

    loaded.backend.predict = recording
    with TestClient(app) as api:
        for body in (small, big):
            response = api.post("/v1/models/mnist:predict", content=body)
            assert response.status_code == 200
    assert not threads[0].startswith("cnnlearn-predict")
    assert threads[1].startswith("cnnlearn-predict")


def test_pinning_a_version(built, tmp_path):
    base = copy_models(built, tmp_path / "models")
    export.export_version(built.model_b, base, "mnist", train_images=built.x_train)
    app = server.create_app({"mnist": base / "mnist"}, "tflite", pinned={"mnist": 1})
    assert app.state.server.managers["mnist"].current.version == 1
    with pytest.raises(ValueError, match="not served"):
        server.create_app({"mnist": base / "mnist"}, pinned={"fashion": 1})


def test_create_app_rejects_bad_arguments(built, tmp_path):
    with pytest.raises(ValueError, match="no models"):
        server.create_app({})
    with pytest.raises(ValueError, match="unknown backend"):
        server.create_app({"mnist": built.base / "mnist"}, "onnx")
    with pytest.raises(FileNotFoundError, match="not found"):
        server.create_app({"mnist": tmp_path / "missing"}, "tflite")
    model = {"mnist": built.base / "mnist"}
    for bad in ({"body_timeout": float("nan")}, {"workers": 0}, {"inline_bytes": -1}):
        with pytest.raises(ValueError, match="expected|must be"):
            server.create_app(model, **bad)
    app = server.create_app(model)
    with pytest.raises(ValueError, match="timeouts must be > 0"):
        transport.server_config(app, header_timeout=float("nan"))
    with pytest.raises(ValueError, match="limit_concurrency"):
        transport.server_config(app, limit_concurrency=1)


def test_litert_backend_never_imports_tensorflow(built):
    code = f"""
import sys
import numpy as np
from fastapi.testclient import TestClient
from cnnlearn.deploy import server
app = server.create_app({{"mnist": {str(built.base / "mnist")!r}}}, "tflite")
with TestClient(app) as api:
    x = np.zeros((2, 28, 28, 1)).tolist()
    r = api.post("/v1/models/mnist:predict", json={{"instances": x}})
    assert r.status_code == 200, r.text
    assert api.get("/monitoring/prometheus/metrics").status_code == 200
print("tensorflow" in sys.modules)
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


@pytest.mark.slow
def test_hot_version_switch_under_live_traffic(built, tmp_path):
    base = copy_models(built, tmp_path / "models")
    x = built.x_test[:4]
    want = {
        "1": built.model_a.predict(x, verbose=0),
        "2": built.model_b.predict(x, verbose=0),
    }
    body = json.dumps({"instances": x.tolist()}).encode()
    args = ("--backend", "tflite", "--poll-seconds", "0.2")
    with running_server(base / "mnist", tmp_path / "srv", *args) as (url, _):
        seen, failures, stop = [], [], threading.Event()

        def traffic():
            deadline = time.monotonic() + 120  # bounded, whatever happens
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    status, headers, doc = client.request(
                        f"{url}/v1/models/mnist:predict", body
                    )
                    version = headers["x-model-version"]
                    np.testing.assert_allclose(
                        doc["predictions"], want[version], atol=1e-5
                    )
                    seen.append(version)
                except Exception as exc:  # every failure counts
                    failures.append(repr(exc))

        worker = threading.Thread(target=traffic)
        worker.start()
        try:
            while len(seen) < 20 and worker.is_alive():
                time.sleep(0.05)
            export.export_version(
                built.model_b, base, "mnist", train_images=built.x_train
            )
            deadline = time.monotonic() + 60
            while seen[-20:].count("2") < 20 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            stop.set()
            worker.join(timeout=30)
        assert failures == []
        assert seen[0] == "1" and seen[-20:] == ["2"] * 20
        assert client.status(url, "mnist")["model_version_status"][0]["version"] == "2"


@pytest.mark.slow
def test_graceful_shutdown_removes_the_ready_file(built, tmp_path):
    out = tmp_path / "srv"
    with running_server(built.base / "mnist", out, "--backend", "tflite") as (
        url,
        proc,
    ):
        assert (
            client.status(url, "mnist")["model_version_status"][0]["state"]
            == "AVAILABLE"
        )
        proc.terminate()
        assert proc.wait(timeout=30) == 0
    assert not (out / "server.json").exists()


def test_a_backend_failure_is_a_json_500_and_the_server_stays_up(built):
    app = server.create_app({"mnist": built.base / "mnist"}, "tflite")
    loaded = app.state.server.managers["mnist"].current

    def broken(signature, images):
        raise RuntimeError("interpreter exploded (simulated)")

    body = {"instances": built.x_test[:2].tolist()}
    with TestClient(app) as api:
        working = loaded.backend.predict
        loaded.backend.predict = broken
        response = api.post("/v1/models/mnist:predict", json=body)
        assert response.status_code == 500
        assert response.json() == {"error": "Internal error: RuntimeError"}
        loaded.backend.predict = working
        assert api.post("/v1/models/mnist:predict", json=body).status_code == 200
        api.post("/v1/models/no-such-model:predict", json=body)
        models = {
            labels[0][1]
            for (name, labels) in metrics(api)
            if name == "cnnlearn_requests_total"
        }
        assert models == {"mnist", "_unknown"}


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    return build_plain(tmp_path_factory.getbasetemp() / "plain-models")


def test_a_plain_keras_export_serves_as_tf_serving_serves_it(plain):
    """keras.Model.export() in 00000123/ and 00000124/, no cnnlearn sidecar."""
    app = server.create_app({"half": plain.keras_base}, "savedmodel")
    with TestClient(app) as api:
        status = api.get("/v1/models/half").json()["model_version_status"]
        assert [(s["version"], s["state"]) for s in status] == [("124", "AVAILABLE")]
        meta = api.get("/v1/models/half/versions/124/metadata").json()
        assert meta["model_spec"]["version"] == "124"
        defs = meta["metadata"]["signature_def"]["signature_def"]
        assert defs == read_signature_defs(plain.keras_base / "00000124")
        assert {"serving_default", "__saved_model_init_op"} <= set(defs)
        (name,) = defs["serving_default"]["inputs"]
        x = np.random.default_rng(0).random((5, 4), dtype=np.float32)
        want = plain.keras_model.predict(x, verbose=0)
        for body, key in (
            ({"instances": x.tolist()}, "predictions"),
            ({"instances": [{name: row} for row in x.tolist()]}, "predictions"),
            ({"inputs": x.tolist()}, "outputs"),
            ({"inputs": {name: x.tolist()}}, "outputs"),
            ({"signature_name": "", "inputs": x.tolist()}, "outputs"),
        ):
            response = api.post("/v1/models/half:predict", json=body)
            assert response.status_code == 200, response.text
            np.testing.assert_allclose(response.json()[key], want, atol=1e-6)
        gone = api.post("/v1/models/half/versions/123:predict", json={"inputs": []})
        assert gone.status_code == 404


def test_every_signature_of_a_multi_signature_savedmodel_serves(plain):
    app = server.create_app({"multi": plain.multi_base}, "savedmodel")
    with TestClient(app) as api:

        def post(body):
            return api.post("/v1/models/multi:predict", json=body)

        rows = [{"x": [1.0, 2.0], "k": 3}, {"x": [0.5, 0.0], "k": -1}]
        assert post({"instances": rows}).json() == {
            "predictions": [
                {"y": [5.0, 7.0], "k_plus_one": 4},
                {"y": [0.0, -1.0], "k_plus_one": 0},
            ]
        }
        columns = {"inputs": {"x": [[1.0, 2.0]], "k": [3], "ignored": 1}}
        assert post(columns).json() == {
            "outputs": {"y": [[5.0, 7.0]], "k_plus_one": [4]}
        }
        words = ["ab", {"b64": base64.b64encode(b"xyz").decode()}]
        assert post({"signature_name": "strings", "instances": words}).json() == {
            "predictions": [
                {"length": 2, "upper_bytes": {"b64": base64.b64encode(b"AB").decode()}},
                {
                    "length": 3,
                    "upper_bytes": {"b64": base64.b64encode(b"XYZ").decode()},
                },
            ]
        }
        flip = {"signature_name": "flip", "inputs": [True, False]}
        assert post(flip).json() == {"outputs": [False, True]}
        bad = post({"instances": [{"x": [1.0, 2.0], "k": 1.5}]})
        assert bad.status_code == 400
        assert (
            "JSON Value: 1.5 Type: Number is not of expected type: int64"
            in (bad.json()["error"])
        )
        missing = post({"inputs": {"x": [[1.0, 2.0]]}})
        assert missing.json() == {"error": "Missing named input: k in 'inputs' object."}
        meta = api.get("/v1/models/multi/metadata").json()
        defs = meta["metadata"]["signature_def"]["signature_def"]
        assert set(defs) == {
            "serving_default",
            "strings",
            "flip",
            "__saved_model_init_op",
        }
        assert defs["strings"]["inputs"]["s"]["dtype"] == "DT_STRING"
        assert defs["flip"]["method_name"] == "tensorflow/serving/predict"


def test_a_plain_tflite_file_serves_with_its_own_signatures(plain):
    """TF Serving's --prefer_tflite_model: the file's SignatureDefs, no sidecar."""
    app = server.create_app({"lite": plain.tflite_base}, "tflite")
    with TestClient(app) as api:
        defs = api.get("/v1/models/lite/metadata").json()["metadata"]
        defs = defs["signature_def"]["signature_def"]
        assert set(defs) == {"serving_default"}
        (name,) = defs["serving_default"]["inputs"]
        x = np.random.default_rng(1).random((3, 4), dtype=np.float32)
        want = plain.keras_model.predict(x, verbose=0)
        for body, key in (
            ({"instances": x.tolist()}, "predictions"),
            ({"inputs": {name: x.tolist()}}, "outputs"),
        ):
            response = api.post("/v1/models/lite:predict", json=body)
            assert response.status_code == 200, response.text
            np.testing.assert_allclose(response.json()[key], want, atol=1e-5)
        wrong = api.post("/v1/models/lite:predict", json={"instances": [[1.0, 2.0]]})
        assert wrong.status_code == 400


def test_a_version_whose_files_do_not_match_its_manifest_is_refused(built, tmp_path):
    """Issue 19: a bit flip in model.tflite is a failed load (DATA_LOSS), retried."""
    base = copy_models(built, tmp_path / "models")
    version = export.export_version(built.model_b, base, "mnist")
    model = version / export.TFLITE_FILE
    content = model.read_bytes()
    flipped = bytearray(content)
    flipped[len(flipped) // 2] ^= 0x01
    model.write_bytes(bytes(flipped))
    app = server.create_app({"mnist": base / "mnist"}, "tflite")
    api = TestClient(app)
    assert states(api) == [("2", "END"), ("1", "AVAILABLE")]
    status = api.get("/v1/models/mnist/versions/2").json()["model_version_status"][0]
    assert status["status"]["error_code"] == "DATA_LOSS"
    assert "model.tflite has SHA-256" in status["status"]["error_message"]
    model.write_bytes(content)  # repaired: loaded on the next poll
    manager = app.state.server.managers["mnist"]
    assert manager.poll() is True and manager.current.version == 2
