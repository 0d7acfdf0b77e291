"""cnnlearn.deploy.grpc_service: TF Serving's gRPC API, through the official
client stubs of ``tensorflow-serving-api``.

A fake model set follows the serving interface of
:mod:`cnnlearn.deploy.backends` (``version``, ``signatures``, ``run``,
``signature_def_map``): ``half_plus_two`` (TF Serving's test model: y = 0.5 x
+ 2) in versions 1 and 2 (the latter adds 3), labelled ``stable`` and
``canary``, plus a signature with two inputs and a string output. The cases
are those of TF Serving's ``predict_impl_test.cc``,
``get_model_metadata_impl_test.cc`` and ``get_model_status_impl_test.cc``;
the status codes and messages are the ones its sources return.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pytest

pytest.importorskip("tensorflow_serving", reason="needs tensorflow-serving-api")

import grpc  # noqa: E402
import tensorflow as tf  # noqa: E402
from google.protobuf import json_format  # noqa: E402
from tensorflow_serving.apis import (  # noqa: E402
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from cnnlearn.deploy import grpc_service  # noqa: E402
from cnnlearn.deploy.batching import Batchers, BatchingParameters  # noqa: E402

MODEL = "half_plus_two"


@dataclass
class Spec:
    dtype: type
    dtype_name: str
    shape: tuple | None
    tensor_name: str = ""


@dataclass
class Signature:
    inputs: dict
    outputs: dict
    method_name: str = "tensorflow/serving/predict"


def _info(name: str, spec: Spec) -> dict:
    dims = [{"size": str(d), "name": ""} for d in spec.shape or ()]
    shape = {"dim": dims, "unknown_rank": spec.shape is None}
    return {"dtype": spec.dtype_name, "tensor_shape": shape, "name": name}


@dataclass
class FakeVersion:
    """One loaded version, as :mod:`cnnlearn.deploy.backends` describes it."""

    version: int
    fail: bool = False
    calls: list = field(default_factory=list)

    @property
    def signatures(self) -> dict:
        x = Spec(np.float32, "DT_FLOAT", (-1,))
        return {
            "serving_default": Signature({"x": x}, {"y": x}),
            "two": Signature(
                {
                    "a": Spec(np.float32, "DT_FLOAT", (-1, 2)),
                    "b": Spec(np.int64, "DT_INT64", (-1,)),
                },
                {
                    "sum": Spec(np.float64, "DT_DOUBLE", (-1,)),
                    "word": Spec(object, "DT_STRING", (-1,)),
                },
            ),
        }

    def run(self, signature_name: str, inputs: dict) -> dict:
        self.calls.append(len(next(iter(inputs.values()))))
        if self.fail:
            raise RuntimeError("the backend broke")
        if signature_name == "two":
            total = inputs["a"].sum(axis=1, dtype=np.float64) + inputs["b"]
            words = np.array(
                [b"even" if int(t) % 2 == 0 else b"odd" for t in total], object
            )
            return {"sum": total, "word": words}
        return {"y": inputs["x"] * np.float32(0.5) + np.float32(self.version + 1)}

    def signature_def_map(self) -> dict:
        defs = {
            name: {
                "inputs": {k: _info(f"{name}_{k}:0", s) for k, s in sig.inputs.items()},
                "outputs": {
                    k: _info(f"StatefulPartitionedCall:{i}", s)
                    for i, (k, s) in enumerate(sig.outputs.items())
                },
                "method_name": sig.method_name,
                "defaults": {},
            }
            for name, sig in self.signatures.items()
        }
        defs["__saved_model_init_op"] = {
            "inputs": {},
            "outputs": {
                "__saved_model_init_op": {
                    "dtype": "DT_INVALID",
                    "tensor_shape": {"dim": [], "unknown_rank": True},
                    "name": "NoOp",
                }
            },
            "method_name": "",
            "defaults": {},
        }
        return defs


class NotServed(Exception):
    """What the REST server raises for an unknown model or version (a 404)."""

    status = 404

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class FakeSource:
    """A :class:`~cnnlearn.deploy.grpc_service.ModelSource` over fake versions."""

    def __init__(self):
        self.versions = {MODEL: {1: FakeVersion(1), 2: FakeVersion(2)}}
        self.labels = {MODEL: {"stable": 1, "canary": 2}}

    def find(self, name, version, label):
        served = self.versions.get(name, {})
        if label is not None:
            if label not in self.labels.get(name, {}):
                raise ValueError(f"Unrecognized servable version label: {label}")
            version = self.labels[name][label]
        if version is None:
            if not served:
                raise NotServed(f"Servable not found for request: Latest({name})")
            return served[max(served)]
        if version not in served:
            raise NotServed(
                f"Servable not found for request: Specific({name}, {version})"
            )
        return served[version]

    def status(self, name):
        if name not in self.versions:
            raise NotServed(f"Servable not found for request: Latest({name})")
        ok = {"error_code": "OK", "error_message": ""}
        rows = [
            {"version": str(v), "state": "AVAILABLE", "status": ok}
            for v in sorted(self.versions[name], reverse=True)
        ]
        failed = {"error_code": "NOT_FOUND", "error_message": "no saved_model.pb"}
        return {
            "model_version_status": [
                {"version": "3", "state": "END", "status": failed},
                *rows,
            ]
        }


@pytest.fixture(scope="module")
def source():
    return FakeSource()


@pytest.fixture(scope="module")
def channel(source):
    server, port = grpc_service.start_server(source, port=0)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as chan:
        yield chan
    server.stop(None)


@pytest.fixture(scope="module")
def stub(channel):
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="module")
def models(channel):
    return model_service_pb2_grpc.ModelServiceStub(channel)


def request(
    x=(1.0, 2.0, 5.0), name=MODEL, signature="", **spec
) -> predict_pb2.PredictRequest:
    req = predict_pb2.PredictRequest()
    req.model_spec.name = name
    req.model_spec.signature_name = signature
    if "version" in spec:
        req.model_spec.version.value = spec["version"]
    if "label" in spec:
        req.model_spec.version_label = spec["label"]
    if x is not None:
        req.inputs["x"].CopyFrom(tf.make_tensor_proto(np.asarray(x, np.float32)))
    return req


def error(call, req) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call(req, timeout=30)
    return info.value.code(), info.value.details()


def test_predict_with_the_official_stub(stub):
    response = stub.Predict(request(), timeout=30)
    # the latest version (2: y = 0.5 x + 3), answered in float_val like TF Serving
    assert list(response.outputs["y"].float_val) == [3.5, 4.0, 5.5]
    np.testing.assert_array_equal(
        tf.make_ndarray(response.outputs["y"]), [3.5, 4.0, 5.5]
    )
    assert response.model_spec.name == MODEL
    assert response.model_spec.version.value == 2
    assert response.model_spec.signature_name == "serving_default"


def test_versions_and_labels(stub):
    by_number = stub.Predict(request(version=1), timeout=30)
    assert by_number.model_spec.version.value == 1
    assert list(by_number.outputs["y"].float_val) == [2.5, 3.0, 4.5]
    assert (
        stub.Predict(request(label="stable"), timeout=30).model_spec.version.value == 1
    )
    assert (
        stub.Predict(request(label="canary"), timeout=30).model_spec.version.value == 2
    )
    assert error(stub.Predict, request(label="beta")) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Unrecognized servable version label: beta",
    )


def test_unknown_models_and_versions_are_not_found(stub):
    assert error(stub.Predict, request(name="nope")) == (
        grpc.StatusCode.NOT_FOUND,
        "Servable not found for request: Latest(nope)",
    )
    assert error(stub.Predict, request(version=9)) == (
        grpc.StatusCode.NOT_FOUND,
        f"Servable not found for request: Specific({MODEL}, 9)",
    )


def test_missing_or_empty_model_spec(stub):
    # predict_impl_test.cc MissingOrEmptyModelSpec
    assert error(stub.Predict, predict_pb2.PredictRequest()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Missing ModelSpec",
    )
    assert error(stub.Predict, request(name="")) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "ModelSpec has no name specified.",
    )


def test_an_unknown_signature_is_a_failed_precondition(stub):
    assert error(stub.Predict, request(signature="nope")) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        'Serving signature key "nope" not found.',
    )


def test_inputs_that_do_not_match_the_signature(stub):
    # predict_impl_test.cc EmptyInputList, InputTensorsDontMatchModelSpecInputs,
    # InputTensorsHaveWrongType
    code, message = error(stub.Predict, request(x=None))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert message == (
        "input size does not match signature: 0!=1 len({}) != len({x}). "
        "Sent extra: {}. Missing but required: {x}."
    )
    extra = request()
    extra.inputs["z"].CopyFrom(tf.make_tensor_proto(np.zeros(3, np.float32)))
    code, message = error(stub.Predict, extra)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "Sent extra: {z}. Missing but required: {}." in message
    renamed = request(x=None)
    renamed.inputs["key"].CopyFrom(tf.make_tensor_proto(np.array([b"any_key"])))
    assert error(stub.Predict, renamed) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "input tensor alias not found in signature: key. Inputs expected to be in "
        "the set {x}.",
    )
    wrong_type = request(x=None)
    wrong_type.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([b"any_key"])))
    assert error(stub.Predict, wrong_type) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Expects input x to be DT_FLOAT but DT_STRING is provided",
    )
    code, message = error(stub.Predict, request(x=[[1.0, 2.0]]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "input x has shape [1, 2]" in message


def test_an_unparsable_tensor_is_invalid(stub):
    bad = request(x=None)
    bad.inputs["x"].dtype = tf.float32.as_datatype_enum
    bad.inputs["x"].tensor_shape.dim.add(size=2)
    bad.inputs["x"].float_val.extend([1.0, 2.0, 3.0])  # three values for two
    assert error(stub.Predict, bad) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "tensor parsing error: x (ValueError)",
    )


def test_output_filters(stub):
    # predict_impl_test.cc OutputFiltersDontMatchModelSpecOutputs
    req = request()
    req.output_filter.append("output_filter")
    code, message = error(stub.Predict, req)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert message.startswith(
        "output tensor alias not found in signature: output_filter"
    )
    req = request()
    req.output_filter.append("y")
    assert list(stub.Predict(req, timeout=30).outputs) == ["y"]
    req.output_filter.append("y")
    assert error(stub.Predict, req) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "duplicate output tensor alias: y",
    )


def test_several_inputs_dtypes_and_a_string_output(stub):
    req = request(x=None, signature="two")
    req.inputs["a"].CopyFrom(
        tf.make_tensor_proto(np.array([[1, 2], [3, 5]], np.float32))
    )
    req.inputs["b"].CopyFrom(tf.make_tensor_proto(np.array([1, 2], np.int64)))
    req.output_filter.append("word")
    req.output_filter.append("sum")
    response = stub.Predict(req, timeout=30)
    assert list(response.outputs["sum"].double_val) == [4.0, 10.0]
    assert list(response.outputs["word"].string_val) == [b"even", b"even"]
    assert tf.make_ndarray(response.outputs["word"]).tolist() == [b"even", b"even"]
    assert response.model_spec.signature_name == "two"


def test_a_backend_failure_is_internal_and_the_server_keeps_serving(stub, source):
    source.versions[MODEL][1].fail = True
    try:
        assert error(stub.Predict, request(version=1)) == (
            grpc.StatusCode.INTERNAL,
            "Internal error: RuntimeError",
        )
    finally:
        source.versions[MODEL][1].fail = False
    assert stub.Predict(request(version=1), timeout=30).model_spec.version.value == 1


def test_get_model_metadata(stub):
    req = get_model_metadata_pb2.GetModelMetadataRequest()
    req.model_spec.name = MODEL
    req.metadata_field.append("signature_def")
    response = stub.GetModelMetadata(req, timeout=30)
    assert response.model_spec.name == MODEL
    assert response.model_spec.version.value == 2
    defs = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(defs)
    assert set(defs.signature_def) == {
        "serving_default",
        "two",
        "__saved_model_init_op",
    }
    x = defs.signature_def["serving_default"].inputs["x"]
    assert (x.dtype, x.name) == (tf.float32.as_datatype_enum, "serving_default_x:0")
    assert [d.size for d in x.tensor_shape.dim] == [-1]
    assert defs.signature_def["two"].method_name == "tensorflow/serving/predict"
    assert (
        defs.signature_def["__saved_model_init_op"]
        .outputs["__saved_model_init_op"]
        .tensor_shape.unknown_rank
    )


def test_get_model_metadata_errors(stub):
    # get_model_metadata_impl.cc ValidateGetModelMetadataRequest
    req = get_model_metadata_pb2.GetModelMetadataRequest()
    assert error(stub.GetModelMetadata, req)[1] == "Missing ModelSpec"
    req.model_spec.name = MODEL
    assert error(stub.GetModelMetadata, req) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "GetModelMetadataRequest must specify at least one metadata_field",
    )
    req.metadata_field.append("some_field")
    assert error(stub.GetModelMetadata, req) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Metadata field some_field is not supported",
    )
    req = get_model_metadata_pb2.GetModelMetadataRequest()
    req.model_spec.name = "nope"
    req.metadata_field.append("signature_def")
    assert error(stub.GetModelMetadata, req)[0] == grpc.StatusCode.NOT_FOUND


def test_get_model_status(models):
    req = get_model_status_pb2.GetModelStatusRequest()
    req.model_spec.name = MODEL
    rows = models.GetModelStatus(req, timeout=30).model_version_status
    states = get_model_status_pb2.ModelVersionStatus.State
    assert [(r.version, states.Name(r.state)) for r in rows] == [
        (3, "END"),
        (2, "AVAILABLE"),
        (1, "AVAILABLE"),
    ]
    assert rows[0].status.error_message == "no saved_model.pb"
    assert rows[0].status.error_code == 5  # tensorflow.error.NOT_FOUND
    req.model_spec.version.value = 1
    (row,) = models.GetModelStatus(req, timeout=30).model_version_status
    assert (row.version, states.Name(row.state), row.status.error_code) == (
        1,
        "AVAILABLE",
        0,
    )


def test_get_model_status_errors(models):
    # get_model_status_impl.cc, with its messages
    assert error(
        models.GetModelStatus, get_model_status_pb2.GetModelStatusRequest()
    ) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Missing ModelSpec",
    )
    req = get_model_status_pb2.GetModelStatusRequest()
    req.model_spec.name = MODEL
    req.model_spec.version.value = 9
    assert error(models.GetModelStatus, req) == (
        grpc.StatusCode.NOT_FOUND,
        f"Could not find version 9 of model {MODEL}",
    )
    req = get_model_status_pb2.GetModelStatusRequest()
    req.model_spec.name = "nope"
    assert error(models.GetModelStatus, req) == (
        grpc.StatusCode.NOT_FOUND,
        "Could not find any versions of model nope",
    )


def test_classify_is_unimplemented(stub):
    req = classification_pb2.ClassificationRequest()
    req.model_spec.name = MODEL
    assert error(stub.Classify, req)[0] == grpc.StatusCode.UNIMPLEMENTED


def test_a_message_over_the_limit_is_refused(source):
    server, port = grpc_service.start_server(source, max_message_bytes=4096)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as chan:
            small = prediction_service_pb2_grpc.PredictionServiceStub(chan)
            assert small.Predict(request(), timeout=30).model_spec.version.value == 2
            code, _ = error(small.Predict, request(x=np.zeros(10_000)))
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        server.stop(None)


def test_answers_as_tensor_content_when_asked(source):
    server, port = grpc_service.start_server(source, tensor_content=True)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as chan:
            raw = prediction_service_pb2_grpc.PredictionServiceStub(chan)
            y = raw.Predict(request(), timeout=30).outputs["y"]
    finally:
        server.stop(None)
    assert y.tensor_content and not y.float_val
    np.testing.assert_array_equal(tf.make_ndarray(y), [3.5, 4.0, 5.5])


def test_a_port_in_use_is_an_oserror(source):
    server, port = grpc_service.start_server(source)
    try:
        with pytest.raises(OSError, match="cannot listen for gRPC"):
            grpc_service.start_server(source, port=port)
    finally:
        server.stop(None)


def test_tensor_protos_round_trip_in_typed_fields():
    cases = {
        "float_val": np.array([[1.5, -2.0]], np.float32),
        "double_val": np.array([0.1], np.float64),
        "int_val": np.array([0, 255], np.uint8),
        "int64_val": np.array([2**40], np.int64),
        "bool_val": np.array([True, False]),
        "string_val": np.array([b"a", b"bc"], object),
    }
    for field_name, array in cases.items():
        proto = grpc_service.to_tensor_proto(array)
        assert len(getattr(proto, field_name)) == array.size, field_name
        assert not proto.tensor_content
        back = grpc_service.to_ndarray(proto)
        assert back.dtype == array.dtype and back.tolist() == array.tolist()
    text = grpc_service.to_tensor_proto(np.array(["猫"]))
    assert list(text.string_val) == ["猫".encode()]
    half = grpc_service.to_tensor_proto(np.array([1.5], np.float16))  # via TF
    assert grpc_service.to_ndarray(half).tolist() == [1.5]


def test_batched_predict_over_grpc():
    """``run`` through :class:`~cnnlearn.deploy.batching.Batchers` (one queue
    per version): 16 concurrent single-row clients each get their own answer,
    in fewer backend calls than requests."""
    source = FakeSource()
    batchers = Batchers(
        BatchingParameters(max_batch_size=8, batch_timeout_micros=50_000)
    )
    server, port = grpc_service.start_server(source, run=batchers.run)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as chan:
            batched = prediction_service_pb2_grpc.PredictionServiceStub(chan)

            def call(i):
                return batched.Predict(
                    request(x=[float(i)], version=1 + i % 2), timeout=60
                )

            with ThreadPoolExecutor(16) as pool:
                answers = list(pool.map(call, range(64)))
    finally:
        server.stop(None)
        batchers.close()
    assert [list(a.outputs["y"].float_val) for a in answers] == [
        [0.5 * i + 2 + i % 2] for i in range(64)
    ]
    for version in (1, 2):
        calls = source.versions[MODEL][version].calls
        assert sum(calls) == 32 and max(calls) <= 8
        assert len(calls) < 32


class OneVersion:
    """A :class:`~cnnlearn.deploy.grpc_service.ModelSource` over one model's
    :class:`~cnnlearn.deploy.backends.ModelVersions`."""

    def __init__(self, manager):
        self.manager = manager

    def find(self, name, version, label):
        loaded = self.manager.current
        if (
            name != self.manager.name
            or loaded is None
            or version not in (None, loaded.version)
        ):
            raise LookupError(f"Servable not found for request: Latest({name})")
        return loaded

    def status(self, name):
        ok = {"error_code": "OK", "error_message": ""}
        version = str(self.find(name, None, None).version)
        return {
            "model_version_status": [
                {"version": version, "state": "AVAILABLE", "status": ok}
            ]
        }


def test_a_real_exported_seed_cnn_over_grpc(tmp_path_factory, data_dir):
    """A seed CNN exported as the deploy tests export it, loaded by the
    SavedModel backend, answers over gRPC what Keras predicts."""
    from deploy_helpers import build

    from cnnlearn.deploy.backends import ModelVersions

    built = build(tmp_path_factory.getbasetemp() / "deploy", data_dir)
    manager = ModelVersions("mnist", built.base / "mnist", backend="savedmodel")
    manager.poll()
    assert manager.current is not None
    server, port = grpc_service.start_server(OneVersion(manager))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as chan:
            real = prediction_service_pb2_grpc.PredictionServiceStub(chan)
            answers = {}
            for signature, images in [
                ("", built.x_test[:8]),
                ("serving_uint8", built.x_test_uint8[:8]),
            ]:
                req = predict_pb2.PredictRequest()
                req.model_spec.name = "mnist"
                req.model_spec.signature_name = signature
                req.inputs["image"].CopyFrom(tf.make_tensor_proto(images))
                response = real.Predict(req, timeout=60)
                assert response.model_spec.version.value == manager.current.version
                answers[signature] = tf.make_ndarray(response.outputs["probabilities"])
            req = get_model_metadata_pb2.GetModelMetadataRequest()
            req.model_spec.name = "mnist"
            req.metadata_field.append("signature_def")
            defs = get_model_metadata_pb2.SignatureDefMap()
            real.GetModelMetadata(req, timeout=60).metadata["signature_def"].Unpack(
                defs
            )
    finally:
        server.stop(None)
    expected = built.model_a.predict(built.x_test[:8], verbose=0)
    np.testing.assert_allclose(answers[""], expected, atol=1e-5)
    np.testing.assert_allclose(answers["serving_uint8"], expected, atol=1e-5)
    assert {"serving_default", "serving_uint8"} <= set(defs.signature_def)
    image = defs.signature_def["serving_default"].inputs["image"]
    assert image.dtype == tf.float32.as_datatype_enum
    # the gRPC metadata, printed as TF Serving's REST API prints it, is the
    # REST metadata: both answer the same
    printed = json_format.MessageToDict(
        defs,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )
    assert printed["signature_def"] == manager.current.signature_def_map()
