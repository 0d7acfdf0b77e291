"""The server as a TF Serving drop-in: REST and gRPC (the official stubs of
``tensorflow-serving-api``) from one state, driven by a model config file.

One server serves three models that a TF Serving user might have: ``half``, a
plain ``keras.Model.export()`` SavedModel in versions 123 and 124 with the
labels ``stable`` and ``canary``; ``multi``, a ``tf.saved_model.save`` model
with several signatures whose inputs have different names; ``mnist``, a
cnnlearn export. For the same request, the REST answer and the gRPC answer
hold the same numbers. The ``slow`` test runs ``cnnlearn serve`` with TF
Serving's flags as a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

pytest.importorskip("tensorflow_serving", reason="needs tensorflow-serving-api")

import grpc  # noqa: E402
import tensorflow as tf  # noqa: E402
from conftest import REPO  # noqa: E402
from deploy_helpers import build, build_plain, threaded_server  # noqa: E402
from tensorflow_serving.apis import (  # noqa: E402
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from cnnlearn import cli  # noqa: E402
from cnnlearn.deploy import server  # noqa: E402


def config_file(path, models: dict) -> str:
    """Write a ModelServerConfig of ``name -> (base_path, extra fields)``."""
    configs = "".join(
        f"config {{ name: '{name}' base_path: '{base}' model_platform: "
        f"'tensorflow' {extra} }} "
        for name, (base, extra) in models.items()
    )
    path.write_text(f"model_config_list {{ {configs}}}")
    return str(path)


HALF = (
    "model_version_policy { all {} } "
    "version_labels { key: 'stable' value: 123 } "
    "version_labels { key: 'canary' value: 124 }"
)


@pytest.fixture(scope="module")
def models(tmp_path_factory, data_dir):
    root = tmp_path_factory.getbasetemp()
    plain = build_plain(root / "plain-models")
    built = build(root / "deploy", data_dir)
    path = config_file(
        root / "dropin.config",
        {
            "half": (plain.keras_base, HALF),
            "multi": (plain.multi_base, ""),
            "mnist": (built.base / "mnist", ""),
        },
    )
    return plain, built, path


@pytest.fixture(scope="module")
def both(models):
    """``(rest_url, PredictionServiceStub, ModelServiceStub)`` of one server."""
    app = server.create_app({}, "savedmodel", model_config_file=models[2])
    with threaded_server(app) as (host, port):
        grpc_server, grpc_port = server.start_grpc(app.state.server)
        try:
            with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                yield (
                    f"http://{host}:{port}",
                    prediction_service_pb2_grpc.PredictionServiceStub(channel),
                    model_service_pb2_grpc.ModelServiceStub(channel),
                )
        finally:
            grpc_server.stop(None)


def rest(url: str, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{url}{path}", data=data)
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def grpc_predict(stub, name: str, inputs: dict, signature: str = "", **spec):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = signature
    if "version" in spec:
        request.model_spec.version.value = spec["version"]
    if "label" in spec:
        request.model_spec.version_label = spec["label"]
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    response = stub.Predict(request, timeout=60)
    outputs = {k: tf.make_ndarray(v) for k, v in response.outputs.items()}
    return response.model_spec.version.value, outputs


def same(rest_values, grpc_array: np.ndarray) -> None:
    """The REST numbers are the gRPC numbers, exactly."""
    np.testing.assert_array_equal(
        np.asarray(rest_values, dtype=grpc_array.dtype), grpc_array
    )


def test_a_plain_keras_export_with_versions_and_labels(both, models):
    url, stub, model_stub = both
    plain = models[0]
    meta = rest(url, "/v1/models/half/metadata")
    (name,) = meta["metadata"]["signature_def"]["signature_def"]["serving_default"][
        "inputs"
    ]
    x = np.random.default_rng(0).random((5, 4), dtype=np.float32)
    answers = {}
    for suffix, spec, version in [
        ("", {}, 124),
        ("/versions/123", {"version": 123}, 123),
        ("/labels/stable", {"label": "stable"}, 123),
        ("/labels/canary", {"label": "canary"}, 124),
    ]:
        body = rest(url, f"/v1/models/half{suffix}:predict", {"inputs": x.tolist()})
        served, outputs = grpc_predict(stub, "half", {name: x}, **spec)
        assert served == version
        (out,) = outputs.values()
        same(body["outputs"], out)
        answers[suffix] = out
    np.testing.assert_array_equal(answers["/labels/canary"], answers[""])
    np.testing.assert_array_equal(answers["/labels/stable"], answers["/versions/123"])
    assert not np.allclose(answers["/versions/123"], answers[""])  # other weights
    want = plain.keras_model.predict(x, verbose=0)  # version 124's model
    np.testing.assert_allclose(answers[""], want, atol=1e-6)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "half"
    status = model_stub.GetModelStatus(request, timeout=60).model_version_status
    by_grpc = [(s.version, s.state) for s in status]
    by_rest = rest(url, "/v1/models/half")["model_version_status"]
    available = get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert by_grpc == [(124, available), (123, available)]
    assert [(int(r["version"]), r["state"]) for r in by_rest] == [
        (124, "AVAILABLE"),
        (123, "AVAILABLE"),
    ]


def test_a_multi_signature_savedmodel(both):
    url, stub, _ = both
    x = np.array([[1.0, 2.0], [0.5, 0.0]], np.float32)
    k = np.array([3, -1], np.int64)
    body = rest(
        url, "/v1/models/multi:predict", {"inputs": {"x": x.tolist(), "k": k.tolist()}}
    )
    _, outputs = grpc_predict(stub, "multi", {"x": x, "k": k})
    same(body["outputs"]["y"], outputs["y"])
    same(body["outputs"]["k_plus_one"], outputs["k_plus_one"])
    np.testing.assert_array_equal(outputs["y"], [[5.0, 7.0], [0.0, -1.0]])
    b = np.array([True, False])
    body = rest(
        url,
        "/v1/models/multi:predict",
        {"signature_name": "flip", "inputs": {"b": b.tolist()}},
    )
    _, outputs = grpc_predict(stub, "multi", {"b": b}, signature="flip")
    same(body["outputs"], outputs["not"])
    np.testing.assert_array_equal(outputs["not"], [False, True])


def test_a_cnnlearn_export(both, models):
    url, stub, _ = both
    built = models[1]
    x = built.x_test[:4].astype(np.float32)
    body = rest(url, "/v1/models/mnist:predict", {"inputs": {"image": x.tolist()}})
    _, outputs = grpc_predict(stub, "mnist", {"image": x})
    same(body["outputs"], outputs["probabilities"])
    want = built.model_a.predict(x, verbose=0)
    np.testing.assert_allclose(outputs["probabilities"], want, atol=1e-5)


def test_tf_servings_flag_spellings_parse():
    parser = cli.build_parser()
    args = parser.parse_args(
        [
            "serve",
            "--model_config_file",
            "m.config",
            "--model_config_file_poll_wait_seconds",
            "30",
            "--grpc_port",
            "0",
            "--enable_batching",
            "--batching_parameters_file",
            "b.config",
        ]
    )
    assert (args.model_config_file, args.model_config_file_poll_wait_seconds) == (
        "m.config",
        30.0,
    )
    assert (args.grpc_port, args.enable_batching) == (0, True)
    assert args.batching_parameters_file == "b.config"
    dashed = parser.parse_args(
        ["serve", "--model-config-file", "m", "--grpc-port", "9"]
    )
    assert (dashed.model_config_file, dashed.grpc_port) == ("m", 9)


@pytest.mark.parametrize(
    "flags, message",
    [
        (
            ["--batching-parameters-file", "b.config"],
            "batching_parameters_file is set without setting",
        ),
        (["--model-config-file", "m.config"], "give it without --model-base-path"),
    ],
)
def test_flag_combinations_that_are_refused(tmp_path, capsys, flags, message):
    argv = ["serve", "--model-base-path", str(tmp_path), "--port", "0", *flags]
    assert cli.main(argv) == 1
    lines = [x for x in capsys.readouterr().err.splitlines() if message in x]
    assert len(lines) == 1 and lines[0].startswith("cnnlearn serve: error:")


@pytest.mark.slow
def test_cnnlearn_serve_with_tf_servings_flags(models, tmp_path):
    """``cnnlearn serve --model-config-file ... --grpc-port 0 --enable-batching
    --batching-parameters-file ...``: both ports answer, and SIGTERM stops
    both (exit 0)."""
    batching = tmp_path / "batching.config"
    batching.write_text("max_batch_size { value: 8 } batch_timeout_micros { value: 0 }")
    out = tmp_path / "srv"
    cmd = [sys.executable, "-m", "cnnlearn.cli", "serve", "--port", "0"]
    cmd += ["--model-config-file", models[2], "--grpc-port", "0", "--enable-batching"]
    cmd += ["--batching-parameters-file", str(batching), "--output", str(out)]
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 120
        while not (out / "server.json").is_file():
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "server not ready"
            time.sleep(0.2)
        ready = json.loads((out / "server.json").read_text())
        assert ready["models"]["half"]["versions"] == [123, 124]
        x = np.zeros((1, 4), np.float32)
        body = rest(
            ready["url"],
            "/v1/models/half/labels/stable:predict",
            {"inputs": x.tolist()},
        )
        with grpc.insecure_channel(f"127.0.0.1:{ready['grpc_port']}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            meta = rest(ready["url"], "/v1/models/half/metadata")
            (name,) = meta["metadata"]["signature_def"]["signature_def"][
                "serving_default"
            ]["inputs"]
            served, outputs = grpc_predict(stub, "half", {name: x}, label="stable")
        assert served == 123
        (out_array,) = outputs.values()
        same(body["outputs"], out_array)
        proc.terminate()
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=15)
        log.close()
