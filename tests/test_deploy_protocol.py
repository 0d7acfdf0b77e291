"""cnnlearn.deploy.protocol: TF Serving's request formats, validated in-process."""

from __future__ import annotations

import base64
import json

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlearn.deploy import protocol
from cnnlearn.deploy.backends import declared_signature_defs
from cnnlearn.deploy.export import signature_defs
from cnnlearn.deploy.protocol import (
    Guards,
    ServingError,
    decode_json,
    metadata_body,
    parse_predict,
    parse_version,
    predict_response,
    read_predict,
    status_body,
)
from cnnlearn.deploy.signatures import Signature, TensorSpec, signatures_from_defs

DEFS = declared_signature_defs(signature_defs())
SIGS = signatures_from_defs(DEFS)
RNG = np.random.default_rng(0)
X = RNG.random((3, 28, 28, 1), dtype=np.float32)
X8 = (X * 255).astype(np.uint8)
GOOD = X.tolist()
#: The chapter 8 server's checks, now options.
GUARDS = Guards(max_batch=64, value_range=(0.0, 1.0), finite_only=True)


def parse(doc, guards=GUARDS):
    return read_predict(orjson.dumps(doc), SIGS, guards)


def general(body: bytes, guards=GUARDS):
    return parse_predict(decode_json(body), SIGS, guards)


def outcome(read, body: bytes):
    """What a reader makes of a body: the inputs, or the error it raises."""
    try:
        parsed = read(body)
    except ServingError as exc:
        return exc.status, exc.message
    arrays = sorted((k, v.dtype.str, v.tobytes()) for k, v in parsed.inputs.items())
    return parsed.signature, parsed.key, arrays


@pytest.mark.parametrize(
    ("doc", "signature", "key"),
    [
        ({"instances": X.tolist()}, "serving_default", "predictions"),
        (
            {"instances": [{"image": x} for x in X.tolist()]},
            "serving_default",
            "predictions",
        ),
        ({"inputs": X.tolist()}, "serving_default", "outputs"),
        ({"inputs": {"image": X.tolist()}}, "serving_default", "outputs"),
        (
            {"signature_name": "serving_uint8", "instances": X8.tolist()},
            "serving_uint8",
            "predictions",
        ),
    ],
    ids=["rows", "named-rows", "columnar", "named-columnar", "uint8"],
)
def test_valid_formats_give_the_same_batch(doc, signature, key):
    parsed = parse(doc)
    assert parsed.signature == signature and parsed.key == key
    want = X8 if signature.endswith("8") else X
    np.testing.assert_array_equal(parsed.inputs["image"], want)
    assert parsed.inputs["image"].dtype == want.dtype


@pytest.mark.parametrize("named", [False, True])
def test_b64_values_decode_to_bytes(named):
    rows = [{"b64": base64.b64encode(img.tobytes()).decode()} for img in X8]
    if named:
        rows = [{"image_bytes": row} for row in rows]
    parsed = parse({"signature_name": "serving_bytes", "instances": rows})
    assert parsed.signature == "serving_bytes"
    assert list(parsed.inputs["image_bytes"]) == [img.tobytes() for img in X8]


BAD = [
    ([], "JSON Value: [] Is not object"),
    ({}, "Missing 'inputs' or 'instances' key"),
    ({"instances": GOOD, "inputs": GOOD}, "only one of 'inputs' or 'instances'"),
    ({"instances": []}, "No values in 'instances' array"),
    ({"instances": "abc"}, "Expecting 'instances' to be an list/array"),
    ({"instances": [[1, 2, 3]]}, "expected shape [-1,28,28,1], got [1,3]"),
    ({"instances": np.zeros((2, 28, 28)).tolist()}, "got [2,28,28]"),
    ({"instances": [["a"] * 28]}, 'JSON Value: "a" Type: String is not of expected'),
    ({"instances": [None]}, "JSON Value: null Type: Null is not of expected type"),
    ({"instances": [[True]]}, "Type: True is not of expected type: float"),
    ({"instances": [GOOD[0], GOOD[0][:3]]}, "Expecting tensor size"),
    ({"instances": (X * 2).tolist()}, "expected values in [0, 1]"),
    ({"instances": GOOD, "signature_name": "nope"}, '"nope" not found'),
    ({"instances": GOOD, "signature_name": 3}, "must be a string value"),
    ({"inputs": {"pixels": GOOD}}, "Missing named input: image in 'inputs' object."),
    (
        {"signature_name": "serving_uint8", "instances": GOOD},
        "Type: Number is not of expected type: uint8",
    ),
    (
        {
            "signature_name": "serving_uint8",
            "instances": (X8.astype(int) + 300).tolist(),
        },
        "out of range for uint8 [0, 255] (TF Serving would wrap it)",
    ),
    ({"signature_name": "serving_bytes", "instances": [{"b64": "%%%"}]}, "base64"),
    (
        {"signature_name": "serving_bytes", "instances": [{"b64": 3}]},
        "key: b64 of 'instances' list. Error: INVALID_ARGUMENT: JSON object: "
        "does not have named input: b64",
    ),
    (
        {"signature_name": "serving_bytes", "instances": [[1]]},
        "JSON Value: 1 Type: Number is not of expected type: string",
    ),
    ({"instances": np.zeros((65, 28, 28, 1)).tolist()}, "maximum batch of 64"),
]


@pytest.mark.parametrize(("doc", "message"), BAD)
def test_bad_requests_are_400_with_a_message(doc, message):
    with pytest.raises(ServingError) as info:
        parse(doc)
    assert info.value.status == 400 and message in info.value.message


@pytest.mark.parametrize("body", [b"{", b"", b'{"instances": [1e999]}', b"\xff"])
def test_malformed_json_is_400(body):
    with pytest.raises(ServingError, match="JSON Parse error") as info:
        decode_json(body)
    assert info.value.status == 400


def test_nan_and_infinity_are_numbers_as_in_tf_serving():
    doc = decode_json(b'{"instances": [NaN, Infinity, -Infinity, 1.5]}')
    assert np.isnan(doc["instances"][0]) and doc["instances"][1:] == [
        float("inf"),
        float("-inf"),
        1.5,
    ]
    with pytest.raises(ServingError, match="JSON Parse error"):
        decode_json(b'{"instances": [NaN, 1e999]}')  # too big for a double


def test_the_old_model_specific_checks_are_off_by_default():
    """TF Serving has no batch limit, no value range and takes NaN."""
    big = (X * 3).tolist()
    parsed = parse({"instances": big}, Guards())
    np.testing.assert_allclose(parsed.inputs["image"], X * 3, rtol=1e-6)
    body = b'{"instances": [[[[NaN]]]]}'
    sig = Signature("p", {"x": TensorSpec("DT_FLOAT", (-1, 1, 1, 1))}, {})
    nan = read_predict(body, {"serving_default": sig}).inputs["x"]
    assert np.isnan(nan).all()
    with pytest.raises(ServingError, match="NaN or infinite"):
        read_predict(body, {"serving_default": sig}, Guards(finite_only=True))


JSON = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["instances", "inputs", "image", "b64", "signature_name"])
            | st.text(max_size=5),
            children,
            max_size=4,
        )
    ),
    max_leaves=30,
)


@settings(max_examples=150, deadline=None)
@given(JSON)
def test_fuzzed_bodies_parse_or_fail_with_400(doc):
    try:
        body = orjson.dumps(doc)
    except orjson.JSONEncodeError:  # e.g. integers over 64 bits
        return
    try:
        parsed = read_predict(body, SIGS, GUARDS)
    except ServingError as exc:
        assert exc.status in (400, 501) and exc.message
    else:
        for name, array in parsed.inputs.items():
            spec = SIGS[parsed.signature].inputs[name]
            assert array.dtype == spec.dtype and array.ndim == len(spec.shape)
    assert outcome(lambda b: read_predict(b, SIGS, GUARDS), body) == outcome(
        general, body
    )


@pytest.mark.parametrize("body", [b'{"\\u0000": null}', b'{"instances": {"a": 1}}'])
def test_odd_keys_and_values_fail_with_400_on_both_paths(body):
    """simdjson cannot look up some keys (a NUL, found by the fuzz test): the fast
    path must hand such bodies to the general parser, never raise itself."""
    assert outcome(lambda b: read_predict(b, SIGS, GUARDS), body) == outcome(
        general, body
    )
    with pytest.raises(ServingError) as error:
        read_predict(body, SIGS, GUARDS)
    assert error.value.status == 400


@pytest.mark.parametrize("key", ["instances", "inputs"])
def test_plain_float_batches_skip_the_general_parser(key, monkeypatch):
    body = json.dumps({key: X.tolist()}, indent=1).encode()  # blanks are fine
    monkeypatch.setattr(protocol, "decode_json", lambda body: pytest.fail("slow"))
    parsed = read_predict(body, SIGS, GUARDS)
    assert parsed.key == ("predictions" if key == "instances" else "outputs")
    np.testing.assert_array_equal(parsed.inputs["image"], X)


def _reshape(doc: list, rng: np.random.Generator) -> list:
    """Break a nested list somewhere: drop, add, wrap or unwrap one element."""
    node = doc
    while isinstance(node[0], list) and rng.random() < 0.8:
        node = node[rng.integers(len(node))]
    i = int(rng.integers(len(node)))
    change = rng.integers(5)
    if change == 0:
        del node[i]
    elif change == 1:
        node.insert(i, node[i])
    elif change == 2:
        node[i] = [node[i]]
    elif change == 3 and isinstance(node[i], list) and node[i]:
        node[i] = node[i][0]
    else:
        node[i] = []
    return doc


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 3),
    st.sampled_from(["instances", "inputs"]),
    st.integers(0, 2**32 - 1),
    st.booleans(),
    st.sampled_from([0.0, 1.0, -0.5, 1.5, 7]),
)
def test_fast_and_general_paths_agree_on_near_miss_arrays(
    n, key, seed, break_shape, fill
):
    """Ragged, deeper, shallower, empty-leaf and out-of-range arrays alike."""
    rng = np.random.default_rng(seed)
    images = X[:n].tolist()
    if break_shape:
        images = _reshape(images, rng)
    else:
        images[0][int(rng.integers(28))][int(rng.integers(28))][0] = fill
    body = json.dumps({key: images}, indent=[None, 0, 2][rng.integers(3)])  # blanks
    guards = Guards(max_batch=2, value_range=(0.0, 1.0))
    fast = outcome(lambda b: read_predict(b, SIGS, guards), body.encode())
    assert fast == outcome(lambda b: general(b, guards), body.encode())


def test_status_and_metadata_bodies_follow_tf_serving():
    assert status_body([1]) == {
        "model_version_status": [
            {
                "version": "1",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }
    meta = metadata_body("mnist", 2, DEFS)
    assert meta["model_spec"] == {"name": "mnist", "signature_name": "", "version": "2"}
    default = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    image = default["inputs"]["image"]
    assert image["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in image["tensor_shape"]["dim"]] == ["-1", "28", "28", "1"]
    assert default["outputs"]["probabilities"]["dtype"] == "DT_FLOAT"
    assert default["method_name"] == "tensorflow/serving/predict"
    assert default["defaults"] == {}
    assert image["name"] == "serving_default_image:0"


def test_a_failed_version_shows_as_tf_serving_shows_a_failed_load():
    failed = {3: ("INVALID_ARGUMENT", "ValueError: not a model")}
    assert status_body([2], failed)["model_version_status"] == [
        {
            "version": "3",
            "state": "END",
            "status": {
                "error_code": "INVALID_ARGUMENT",
                "error_message": "ValueError: not a model",
            },
        },
        {
            "version": "2",
            "state": "AVAILABLE",
            "status": {"error_code": "OK", "error_message": ""},
        },
    ]
    assert [r["state"] for r in status_body([], failed)["model_version_status"]] == [
        "END"
    ]


@pytest.mark.parametrize(
    ("text", "version"),
    [("0", 0), ("1", 1), ("007", 7), ("9223372036854775807", 2**63 - 1)],
)
def test_versions_are_int64_in_ascii_digits(text, version):
    assert parse_version(text) == version


@pytest.mark.parametrize(
    "text",
    [
        "\u00b2",  # superscript two: str.isdigit() says yes, int() says no
        "\u0661",  # Arabic-Indic one: int() reads it as 1
        "\uff11",  # fullwidth one
        "1" * 5000,  # int() refuses over 4,300 digits
        "9223372036854775808",  # 2**63: over int64
        "-1",
        "+1",
        "1.0",
        " 1",
        "",
        "x",
    ],
)
def test_other_versions_are_a_400_with_a_short_message(text):
    with pytest.raises(ServingError, match="ASCII digits") as info:
        parse_version(text)
    assert info.value.status == 400 and len(info.value.message) < 120


def _with_a_boolean(images: list, value=True) -> list:
    images[0][3][4][0] = value
    return images


@pytest.mark.parametrize(
    "doc",
    [
        {"instances": _with_a_boolean(X.tolist())},
        {"inputs": {"image": _with_a_boolean(X.tolist(), False)}},
        {"instances": [{"image": x} for x in _with_a_boolean(X.tolist())]},
        {"signature_name": "serving_uint8", "instances": _with_a_boolean(X8.tolist())},
        {"instances": [[[[True]] * 28] * 28]},
    ],
    ids=["rows", "named-columnar", "named-rows", "uint8", "all-booleans"],
)
def test_booleans_among_numbers_are_refused_as_tf_serving_does(doc):
    """NumPy would read them as 1.0 and 0.0 (or 1 and 0)."""
    body = orjson.dumps(doc)
    for read in (lambda b: read_predict(b, SIGS, GUARDS), general):
        with pytest.raises(ServingError, match="is not of expected type") as info:
            read(body)
        assert info.value.status == 400


def test_a_body_without_booleans_skips_the_walk_for_them(monkeypatch):
    """The walk over every value runs only when the bytes true or false occur."""
    monkeypatch.setattr(protocol, "_has_bool", lambda v: pytest.fail("walked"))
    doc = {"signature_name": "serving_uint8", "instances": X8.tolist()}
    assert read_predict(orjson.dumps(doc), SIGS).inputs["image"].dtype == np.uint8


def test_an_oversized_batch_is_refused_before_the_general_parser(monkeypatch):
    """orjson would build every value of the body first, holding the GIL."""
    body = orjson.dumps({"instances": np.zeros((65, 28, 28, 1)).tolist()})
    want = outcome(general, body)
    monkeypatch.setattr(protocol, "decode_json", lambda body: pytest.fail("slow"))
    with pytest.raises(ServingError, match="batch of 65 exceeds") as info:
        read_predict(body, SIGS, GUARDS)
    assert info.value.status == 400
    assert want == (400, info.value.message)


def test_answers_are_written_as_tf_serving_writes_them():
    one = {"probabilities": np.array([[0.25, 0.75]], np.float32)}
    assert orjson.loads(predict_response(one, "predictions")) == {
        "predictions": [[0.25, 0.75]]
    }
    assert orjson.loads(predict_response(one, "outputs")) == {"outputs": [[0.25, 0.75]]}
    two = {"a": np.array([1, 2]), "b_bytes": np.array([b"x", b"y"], dtype=object)}
    assert orjson.loads(predict_response(two, "predictions")) == {
        "predictions": [
            {"a": 1, "b_bytes": {"b64": "eA=="}},
            {"a": 2, "b_bytes": {"b64": "eQ=="}},
        ]
    }
    two["b"] = two.pop("b_bytes")
    assert orjson.loads(predict_response(two, "outputs")) == {
        "outputs": {"a": [1, 2], "b": ["x", "y"]}
    }
    nan = {"y": np.array([[np.nan, np.inf, -np.inf]], np.float32)}
    assert b"[[NaN, Infinity, -Infinity]]" in predict_response(nan, "predictions")
    with pytest.raises(ServingError, match="inconsistent batch size"):
        predict_response({"a": np.zeros(2), "b": np.zeros(3)}, "predictions")
