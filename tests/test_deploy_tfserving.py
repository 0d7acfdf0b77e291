"""TF Serving's own test cases, ported: the request and answer formats
(``json_tensor_test.cc``) and the REST handler's routing, status codes and
error phrases (``http_rest_api_handler_test.cc``), as TF Serving's own tests
would check them. Where this server deliberately refuses what TF Serving
accepts, the test says so and checks the refusal."""

from __future__ import annotations

import gzip
import math

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

from cnnlearn.deploy import protocol, server
from cnnlearn.deploy.protocol import ServingError, predict_response, read_predict
from cnnlearn.deploy.signatures import Signature, TensorSpec


def signature(**dtypes: str) -> dict[str, Signature]:
    """A ``serving_default`` with inputs of these dtypes and unknown shapes,
    as the TensorInfoMaps of ``json_tensor_test.cc`` (``dtype: DT_INT32``)."""
    inputs = {name: TensorSpec(dtype, None) for name, dtype in dtypes.items()}
    return {"serving_default": Signature("tensorflow/serving/predict", inputs, {})}


def parse(body: str, **dtypes: str) -> protocol.ParsedRequest:
    return read_predict(body.encode(), signature(**dtypes))


def refused(body: str, **dtypes: str) -> str:
    with pytest.raises(ServingError) as info:
        parse(body, **dtypes)
    assert info.value.status == 400
    return info.value.message


def test_single_unnamed_tensor():
    parsed = parse('{"instances": [[1,2],[3,4],[5,6]]}', default="DT_INT32")
    assert parsed.key == "predictions"
    got = parsed.inputs["default"]
    assert got.dtype == np.int32 and got.tolist() == [[1, 2], [3, 4], [5, 6]]


def test_deeply_nested_json_is_refused_not_parsed():
    """TF Serving parses 500,000 nested brackets in an unused key (rapidjson's
    iterative parser); here the JSON parsers stop at a depth limit: a
    deviation, a 400 rather than the work."""
    body = '{"instances":[1], "nested":' + "[" * 5000 + "]" * 5000 + "}"
    assert "JSON Parse error" in refused(body, default="DT_INT32")
    body = '{"signature_name":' + "[" * 5000 + "]" * 5000 + "}"
    assert refused(body, default="DT_INT32")


@pytest.mark.parametrize(
    ("dtype", "want"), [("DT_FLOAT", np.float32), ("DT_DOUBLE", np.float64)]
)
def test_mixed_ints_and_floats_for_a_float_tensor(dtype, want):
    parsed = parse('{"instances": [1, 2.0, 3, 4, 5.003, 0.007, 0.0]}', default=dtype)
    got = parsed.inputs["default"]
    assert got.dtype == want
    np.testing.assert_array_equal(got, np.array([1, 2, 3, 4, 5.003, 0.007, 0], want))


def test_float_tensor_with_precision_loss():
    for body in ('{"instances": [1435774380]}', '{"instances": [1435774380.0]}'):
        got = parse(body, default="DT_FLOAT").inputs["default"]
        assert got.tolist() == [float(np.float32(1435774380))]


def test_float_tensor_beyond_float_range_is_inf_or_zero():
    biggest, tiniest = np.finfo(np.float64).max, np.finfo(np.float64).tiny
    for value, want in ((biggest, math.inf), (-biggest, -math.inf), (tiniest, 0.0)):
        body = f'{{"instances": [{float(value)!r}]}}'
        assert parse(body, default="DT_FLOAT").inputs["default"].tolist() == [want]


def test_single_unnamed_tensor_with_signature():
    sigs = {"predict_images": signature(default="DT_INT32")["serving_default"]}
    body = b'{"signature_name": "predict_images", "instances": [[1,2]]}'
    parsed = read_predict(body, sigs)
    assert parsed.signature == "predict_images"
    assert parsed.inputs["default"].tolist() == [[1, 2]]


def test_base64_scalars_lists_and_named():
    hello = '{"b64": "aGVsbG8="}'
    world = '{"b64": "d29ybGQ="}'
    scalars = parse(f'{{"instances": [{hello}, {world}]}}', default="DT_STRING")
    assert scalars.inputs["default"].tolist() == [b"hello", b"world"]
    lists = parse(f'{{"instances": [[{hello}], [{world}]]}}', default="DT_STRING")
    assert lists.inputs["default"].tolist() == [[b"hello"], [b"world"]]
    named = f'{{"instances": [{{"default": [[{hello}], [{world}]]}}]}}'
    got = parse(named, default="DT_STRING").inputs["default"]
    assert got.shape == (1, 2, 1) and got.tolist() == [[[b"hello"], [b"world"]]]


def test_base64_as_tf_decodes_it():
    """absl::Base64Unescape: padding optional, line breaks skipped."""
    text = "aGVsbG8gd29ybGQgaGVsbG8gd29ybGQ"  # no padding
    wrapped = "aGVsbG8g\\nd29ybGQg\\r\\naGVsbG8gd29ybGQ="
    for b64 in (text, wrapped):
        body = f'{{"inputs": {{"b64": "{b64}"}}}}'
        got = parse(body, default="DT_STRING").inputs["default"]
        assert got.shape == () and got.item() == b"hello world hello world"
    assert refused('{"inputs": {"b64": "a"}}', default="DT_STRING") == (
        "Unable to base64 decode"
    )
    plain = parse('{"inputs": "plain text"}', default="DT_STRING").inputs["default"]
    assert plain.item() == b"plain text"


MULTI = {
    "int_tensor": "DT_INT32",
    "str_tensor": "DT_STRING",
    "float_tensor": "DT_FLOAT",
    "dbl_tensor": "DT_DOUBLE",
}


def test_multiple_named_tensors_with_nan_and_infinity():
    body = """{"instances": [
        {"int_tensor": [[1,2],[3,4],[5,6]], "str_tensor": ["foo", "bar"],
         "float_tensor": [1.0, NaN], "dbl_tensor": [NaN]},
        {"int_tensor": [[7,8],[9,0],[1,2]], "str_tensor": ["baz", "bat"],
         "float_tensor": [2.0, Infinity], "dbl_tensor": [2.0]}]}"""
    inputs = parse(body, **MULTI).inputs
    assert inputs["int_tensor"].shape == (2, 3, 2)
    assert inputs["int_tensor"].ravel().tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2]
    assert inputs["str_tensor"].tolist() == [[b"foo", b"bar"], [b"baz", b"bat"]]
    floats = inputs["float_tensor"]
    assert floats.dtype == np.float32 and floats.shape == (2, 2)
    assert np.isnan(floats[0, 1]) and floats[1, 1] == np.inf
    assert inputs["dbl_tensor"].dtype == np.float64
    assert inputs["dbl_tensor"].shape == (2, 1)


def test_columnar_single_and_named():
    for body in (
        '{"inputs": {"int_tensor": [[[1,2],[3,4],[5,6]]]}}',
        '{"inputs": [[[1,2],[3,4],[5,6]]]}',
    ):
        parsed = parse(body, int_tensor="DT_INT32")
        assert parsed.key == "outputs"
        assert parsed.inputs["int_tensor"].shape == (1, 3, 2)
    body = """{"inputs": {"int_tensor": [[[1,2],[3,4],[5,6]]],
        "str_tensor": ["foo", "bar"], "bin_tensor": {"b64": "aGVsbG8="}}}"""
    inputs = parse(
        body, int_tensor="DT_INT32", str_tensor="DT_STRING", bin_tensor="DT_STRING"
    ).inputs
    assert inputs["str_tensor"].tolist() == [b"foo", b"bar"]
    assert inputs["bin_tensor"].shape == () and inputs["bin_tensor"].item() == b"hello"


@pytest.mark.parametrize(
    ("body", "phrase"),
    [
        ("", "document is empty"),
        ('{"signature_name": 5, "instances": [[1,2]]}', "must be a string value"),
        ('{"instances": [[1,2]], "inputs": [[1,2]]}', "Not formatted correctly"),
        ('{"instances": [[1,2],[3,4],[5,6,7]]}', "Expecting tensor size"),
        ('{"instances": [[1,2],[3,4],[[5,6]]]}', "Expecting shape"),
        ('{"instances": [1, [1]]}', "Expecting shape"),
        ('{"instances": [[1,2],["a", "b"]]}', "not of expected type"),
    ],
)
def test_single_unnamed_tensor_errors(body, phrase):
    assert phrase in refused(body, default="DT_INT32")


@pytest.mark.parametrize(
    ("body", "phrase"),
    [
        (
            """{"instances": [
            {"int_tensor": [[1,2],[3,4],[5,6]], "str_tensor": ["foo", "bar"]},
            {"int_tensor": [[[7,8],[9,0],[1,2]]], "str_tensor": ["baz", "bat"]}]}""",
            "Expecting shape",
        ),
        (
            """{"instances": [
            {"int_tensor": [[1,2],[3,4],[5,6],[7,8]], "str_tensor": ["foo", "bar"]},
            {"int_tensor": [[7,8],[9,0],[1,2]], "str_tensor": ["baz", "bat"]}]}""",
            "Expecting tensor size",
        ),
        (
            """{"instances": [
            {"int_tensor": [[1,2],[3,4],[5,6]], "str_tensor": ["foo", "bar"]},
            [1, 20, 30],
            {"int_tensor": [[[7,8],[9,0],[1,2]]], "str_tensor": ["baz", "bat"]}]}""",
            "Expecting object but got list",
        ),
    ],
)
def test_multiple_named_tensor_errors(body, phrase):
    assert phrase in refused(body, int_tensor="DT_INT32", str_tensor="DT_STRING")


def test_a_list_then_an_object_is_refused():
    body = '{"instances": [["baz", "bar"], {"str_tensor": ["baz", "bat"]}]}'
    assert "Expecting value/list but got object" in refused(
        body, str_tensor="DT_STRING"
    )


def test_booleans_and_unsigned_ints():
    parsed = parse('{"inputs": [true, false]}', default="DT_BOOL")
    assert parsed.inputs["default"].tolist() == [True, False]
    assert "not of expected type: bool" in refused('{"inputs": [1]}', default="DT_BOOL")
    big = parse('{"inputs": [18446744073709551615]}', default="DT_UINT64")
    assert big.inputs["default"].tolist() == [2**64 - 1]
    assert "not of expected type: uint32" in refused(
        '{"inputs": [-1]}', default="DT_UINT32"
    )


@pytest.mark.parametrize(
    ("dtype", "value"),
    [("DT_UINT8", 300), ("DT_UINT8", -1), ("DT_INT8", 200), ("DT_INT16", 40000)],
)
def test_narrow_ints_out_of_range_are_refused_not_wrapped(dtype, value):
    """A deviation: TF Serving reads any int32 into a uint8 tensor and lets it
    wrap (300 becomes 44); here it is a 400."""
    message = refused(f'{{"inputs": [{value}]}}', default=dtype)
    assert "out of range" in message and "would wrap" in message


def test_bytes_after_the_document_are_refused():
    """A deviation: rapidjson stops at the end of the document
    (kParseStopWhenDoneFlag) and TF Serving ignores what follows."""
    body = '{"inputs": [1]} {"inputs": [2]}'
    assert "JSON Parse error" in refused(body, default="DT_INT32")


def test_answers_from_tensors():
    """``FromJsonSingleTensor``, ``...ScalarTensor``, ``...BytesTensor``,
    ``...NonFinite`` and the errors."""
    ints = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2], np.int32).reshape(2, 3, 2)
    rows = [[[1, 2], [3, 4], [5, 6]], [[7, 8], [9, 0], [1, 2]]]
    out = {"int_tensor": ints}
    assert orjson.loads(predict_response(out, "predictions")) == {"predictions": rows}
    assert orjson.loads(predict_response(out, "outputs")) == {"outputs": rows}
    scalars = {"int_tensor": np.arange(1, 6, dtype=np.int32)}
    assert orjson.loads(predict_response(scalars, "predictions")) == {
        "predictions": [1, 2, 3, 4, 5]
    }
    strings = np.array([[b"hello", b"world"], [b"tf", b"serving"]], dtype=object)
    assert orjson.loads(
        predict_response({"str_tensor_bytes": strings}, "predictions")
    ) == {
        "predictions": [
            [{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}],
            [{"b64": "dGY="}, {"b64": "c2VydmluZw=="}],
        ]
    }
    odd = np.array([[np.nan, np.inf], [3, -np.inf]], np.float32)
    text = predict_response({"float_tensor": odd}, "predictions").decode()
    assert text.replace(" ", "") == '{"predictions":[[NaN,Infinity],[3.0,-Infinity]]}'
    with pytest.raises(ServingError, match="empty tensor map"):
        predict_response({}, "predictions")


def test_float_answers_read_back_as_the_same_float32():
    """TF Serving writes ``%.6g`` or ``%.9g`` (``WriteDecimal``); this server
    writes the shortest decimal of the float32: other digits, the same
    float32 value (a documented deviation, for speed)."""
    values = np.array([9000000, 999999, 0.5, 0.0003, 0.00003, 555557.5], np.float32)
    got = orjson.loads(predict_response({"f": values}, "outputs"))["outputs"]
    assert np.array_equal(np.array(got, np.float32), values)


# The REST handler (http_rest_api_handler_test.cc), on a half-plus-two model
# like TF Serving's test model: y = 0.5 * x + 2.


@pytest.fixture(scope="module")
def half_plus_two(tmp_path_factory):
    import cnnlearn._tf  # noqa: F401

    # isort: split
    import tensorflow as tf

    class HalfPlusTwo(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec(None, tf.float32, name="x")])
        def predict(self, x):
            return {"y": 0.5 * x + 2.0}

    base = tmp_path_factory.mktemp("tfs") / "half_plus_two"
    module = HalfPlusTwo()
    tf.saved_model.save(
        module, str(base / "00000123"), signatures={"serving_default": module.predict}
    )
    return base


@pytest.fixture(scope="module")
def api(half_plus_two):
    app = server.create_app({"default": half_plus_two}, "savedmodel")
    app.state.server.managers["default"].version_labels = {"stable": 123}
    with TestClient(app) as client:
        yield client


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/foo"),
        ("POST", "/v1/foo"),
        ("GET", "/v1/models/debug/model_name"),
        ("POST", "/v1/models"),
        ("GET", "/v1/models/foo:predict"),
        ("GET", "/v1/models/foo/version/50:predict"),
        ("POST", "/v1/models/foo/version/50:regress"),
        ("POST", "/v1/models/foo/versions/HELLO:regress"),
        ("POST", "/v1/models/foo/metadata"),
        ("POST", "/v1/models/foo/label/some_label:regress"),
        ("POST", "/v1/models/foo/versions/50/labels/some_label:regress"),
        ("POST", "/v1/models/foo/versions/some_label:regress"),
        ("POST", "/v1/models/default:PREDICT"),  # the verb's case counts
        ("DELETE", "/v1/models/default"),
    ],
)
def test_unsupported_api_calls_are_malformed_requests(api, method, path):
    response = api.request(method, path)
    assert response.status_code == 400
    assert response.json() == {"error": f"Malformed request: {method} {path}"}


def test_missing_model_name_and_unconvertible_version(api):
    assert api.get("/v1/models").json() == {"error": "Missing model name in request."}
    path = f"/v1/models/foo/versions/{2**64 - 1}:regress"
    response = api.post(path, content=b"{}")
    assert response.status_code == 400
    assert "Failed to convert version" in response.json()["error"]


def test_paths_outside_v1_are_not_found(api):
    assert api.get("/statuspage").status_code == 404
    assert api.get("/index").status_code == 404


def test_predict_model_name_version_errors(api):
    for path in ("/v1/models/foo:predict", "/v1/models/foo/versions/50:predict"):
        assert api.post(path, json={"instances": [1]}).status_code == 404
    response = api.post(
        "/v1/models/default/versions/99:predict", json={"instances": [1]}
    )
    assert response.status_code == 404


def test_predict_request_errors(api):
    path = "/v1/models/default:predict"
    empty = api.post(path, content=b"")
    assert empty.status_code == 400
    assert "JSON Parse error: The document is empty" in empty.json()["error"]
    bad = api.post(path, content=b"instances = [1, 2]")
    assert bad.status_code == 400 and "JSON Parse error" in bad.json()["error"]
    strings = api.post(path, json={"instances": ["x", "y"]})
    assert "not of expected type: float" in strings.json()["error"]
    label = api.post("/v1/models/default/labels/nope:predict", json={"instances": [1]})
    assert label.status_code == 400
    assert "Unrecognized servable version label" in label.json()["error"]
    name = api.post(path, json={"signature_name": 100})
    assert "'signature_name' key must be a string value." in name.json()["error"]


@pytest.mark.parametrize(
    ("path", "body", "want"),
    [
        (
            "/v1/models/default:predict",
            {"instances": [[1.0, 2.0], [3.0, 4.0]]},
            {"predictions": [[2.5, 3.0], [3.5, 4.0]]},
        ),
        (
            "/v1/models/default/versions/123:predict",
            {"instances": [1.0, 2.0]},
            {"predictions": [2.5, 3.0]},
        ),
        (
            "/v1/models/default/labels/stable:predict",
            {"instances": [1.0, 2.0]},
            {"predictions": [2.5, 3.0]},
        ),
        (
            "/v1/models/default/versions/123:predict",
            {"signature_name": "serving_default", "instances": [3.0, 4.0]},
            {"predictions": [3.5, 4.0]},
        ),
        (
            "/v1/models/default/versions/123:predict",
            {"signature_name": "serving_default", "inputs": [3.0, 4.0]},
            {"outputs": [3.5, 4.0]},
        ),
        ("/V1/MODELS/default:predict", {"inputs": [0.0]}, {"outputs": [2.0]}),
    ],
)
def test_predict(api, path, body, want):
    response = api.post(path, json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == want


def test_get_status(api):
    want = {
        "model_version_status": [
            {
                "version": "123",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }
    for path in (
        "/v1/models/default",
        "/v1/models/default/versions/123",
        "/v1/models/default/labels/stable",
        "/v1/MODELS/default",
    ):
        assert api.get(path).json() == want, path
    assert api.get("/v1/models/foo").json() == {
        "error": "Could not find any versions of model foo"
    }


def test_metadata_is_the_savedmodel_signature_def_map(api, half_plus_two):
    from cnnlearn.deploy.signatures import read_signature_defs

    for path in (
        "/v1/models/default/metadata",
        "/v1/models/default/versions/123/metadata",
    ):
        meta = api.get(path).json()
        assert meta["model_spec"] == {
            "name": "default",
            "signature_name": "",
            "version": "123",
        }
        defs = meta["metadata"]["signature_def"]["signature_def"]
        assert defs == read_signature_defs(half_plus_two / "00000123")
    labelled = api.get("/v1/models/default/labels/stable/metadata").json()
    assert labelled["model_spec"]["version"] == "123"  # the label is not echoed
    assert "version_label" not in labelled["model_spec"]


def test_classify_and_regress_need_signatures_with_those_methods(api):
    body = {"examples": [{"x": 80.0}]}
    response = api.post("/v1/models/default:regress", json=body)
    assert response.status_code == 400
    assert response.json() == {
        "error": "Expected regression signature method_name to be "
        "tensorflow/serving/regress. Was: tensorflow/serving/predict"
    }
    response = api.post("/v1/models/default:classify", json=body)
    assert "Expected classification signature method_name" in response.json()["error"]
    missing = api.post("/v1/models/default:regress", json={"instances": [1]})
    assert (
        "When method is classify, key 'examples' is expected"
        in (missing.json()["error"])
    )
    unknown = api.post(
        "/v1/models/default:classify", json={**body, "signature_name": "nope"}
    )
    assert unknown.json() == {"error": "No signature was found with the name: nope"}


def test_gzip_bodies_are_read(api):
    body = gzip.compress(orjson.dumps({"inputs": [1.0, 2.0]}))
    response = api.post(
        "/v1/models/default:predict",
        content=body,
        headers={"content-encoding": "gzip"},
    )
    assert response.json() == {"outputs": [2.5, 3.0]}
    broken = api.post(
        "/v1/models/default:predict",
        content=b"not gzip",
        headers={"content-encoding": "gzip"},
    )
    assert broken.status_code == 400


def test_a_gzip_bomb_is_refused_without_inflating_it():
    bomb = gzip.compress(b" " * 10_000_000)
    with pytest.raises(ServingError) as info:
        server.gunzip(bomb, 1_000_000)
    assert info.value.status == 413


def test_cors_preflight(api):
    ok = api.options(
        "/v1/models/default:predict", headers={"origin": "https://example.com"}
    )
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "*"
    refused_preflight = api.options("/v1/models/default:predict")
    assert refused_preflight.status_code == 400
    assert refused_preflight.json() == {
        "error": "Origin header is missing in CORS preflight"
    }


@pytest.fixture(scope="module")
def examples_model(tmp_path_factory):
    """TF Serving's half-plus-two with ``regress_x_to_y`` and
    ``classify_x_to_y``: signatures over serialized tf.Examples, built with
    the TF1 SavedModel builder (TF2's save marks every signature predict)."""
    import cnnlearn._tf  # noqa: F401

    # isort: split
    import tensorflow as tf

    v1 = tf.compat.v1
    base = tmp_path_factory.mktemp("tfs") / "examples"
    with tf.Graph().as_default(), v1.Session() as session:
        serialized = v1.placeholder(tf.string, [None], name="tf_example")
        features = {"x": tf.io.FixedLenFeature([1], tf.float32)}
        y = 0.5 * tf.io.parse_example(serialized, features)["x"] + 2.0
        x = v1.placeholder(tf.float32, [None], name="x")
        builder = v1.saved_model.Builder(str(base / "1"))
        builder.add_meta_graph_and_variables(
            session,
            ["serve"],
            signature_def_map={
                "regress_x_to_y": v1.saved_model.regression_signature_def(
                    serialized, y
                ),
                "classify_x_to_y": v1.saved_model.classification_signature_def(
                    serialized, None, y
                ),
                "serving_default": v1.saved_model.predict_signature_def(
                    {"x": x}, {"y": 0.5 * x + 2.0}
                ),
            },
        )
        builder.save()
    return base


def test_classify_and_regress_with_tf_examples(examples_model):
    app = server.create_app({"default": examples_model}, "savedmodel")
    with TestClient(app) as api:
        regress = {"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}]}
        response = api.post("/v1/models/default:regress", json=regress)
        assert response.status_code == 200, response.text
        assert response.json() == {"results": [42.0]}
        classify = {"signature_name": "classify_x_to_y", "examples": [{"x": 20.0}]}
        response = api.post("/v1/models/default:classify", json=classify)
        assert response.json() == {"results": [[["", 12.0]]]}
        context = {
            "signature_name": "regress_x_to_y",
            "context": {"x": 10.0},
            "examples": [{}, {"x": 80.0}],
        }
        response = api.post("/v1/models/default:regress", json=context)
        assert response.json() == {"results": [7.0, 42.0]}
        mixed = {"signature_name": "regress_x_to_y", "examples": [{"x": [1.0, "a"]}]}
        response = api.post("/v1/models/default:regress", json=mixed)
        assert response.status_code == 400
        assert response.json() == {
            "error": "Unexpected element type in feature: x expecting type: float"
        }
        wrong = api.post(
            "/v1/models/default:classify",
            json={"signature_name": "regress_x_to_y", "examples": [{"x": 1.0}]},
        )
        assert wrong.json()["error"].startswith(
            "Expected classification signature method_name"
        )


def test_examples_serialize_as_tensorflow_reads_them():
    import cnnlearn._tf  # noqa: F401

    # isort: split
    import tensorflow as tf

    obj = {
        "f": [1.5, 2.0],
        "i": [3, -4],
        "b": True,
        "s": "text",
        "raw": {"b64": "aGVsbG8="},
    }
    example = tf.train.Example.FromString(protocol.serialize_example(obj))
    feature = example.features.feature
    assert list(feature["f"].float_list.value) == [1.5, 2.0]
    assert list(feature["i"].int64_list.value) == [3, -4]
    assert list(feature["b"].int64_list.value) == [1]
    assert list(feature["s"].bytes_list.value) == [b"text"]
    assert list(feature["raw"].bytes_list.value) == [b"hello"]
    with pytest.raises(ServingError, match="has element with unexpected JSON type"):
        protocol.serialize_example({"n": None})
    with pytest.raises(ServingError, match="Only int64_t is supported"):
        protocol.serialize_example({"u": 2**63})
