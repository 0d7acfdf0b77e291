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
from cnnlearn.deploy.export import signature_defs
from cnnlearn.deploy.protocol import (
    ServingError,
    decode_json,
    metadata_body,
    parse_predict,
    parse_version,
    read_predict,
    status_body,
)

SIGS = signature_defs()
RNG = np.random.default_rng(0)
X = RNG.random((3, 28, 28, 1), dtype=np.float32)
X8 = (X * 255).astype(np.uint8)
GOOD = X.tolist()


def parse(doc, max_batch=64):
    return read_predict(orjson.dumps(doc), SIGS, max_batch)


def general(body: bytes, max_batch=64):
    return parse_predict(decode_json(body), SIGS, max_batch)


def outcome(read, body: bytes):
    """What a reader makes of a body: the batch, or the error it raises."""
    try:
        parsed = read(body)
    except ServingError as exc:
        return exc.status, exc.message
    return parsed.signature, parsed.key, parsed.images.dtype, parsed.images.tobytes()


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
    np.testing.assert_array_equal(parsed.images, X8 if signature.endswith("8") else X)


@pytest.mark.parametrize("named", [False, True])
def test_b64_bytes_decode_to_uint8(named):
    rows = [{"b64": base64.b64encode(img.tobytes()).decode()} for img in X8]
    if named:
        rows = [{"image_bytes": row} for row in rows]
    parsed = parse({"signature_name": "serving_bytes", "instances": rows})
    assert parsed.signature == "serving_uint8"
    np.testing.assert_array_equal(parsed.images, X8)


BAD = [
    ([], "expected a JSON object"),
    ({}, "Missing 'inputs' or 'instances' key"),
    ({"instances": GOOD, "inputs": GOOD}, "only one of 'inputs' or 'instances'"),
    ({"instances": []}, "empty batch"),
    ({"inputs": []}, "empty batch"),
    ({"instances": "abc"}, "must be a list"),
    ({"instances": [[1, 2, 3]]}, "expected shape [N, 28, 28, 1], got [1, 3]"),
    ({"instances": np.zeros((2, 28, 28)).tolist()}, "got [2, 28, 28]"),
    ({"instances": [["a"] * 28]}, "expected numbers"),
    ({"instances": [None]}, "expected numbers"),
    ({"instances": [[True]]}, "expected numbers"),
    ({"instances": [GOOD[0], GOOD[0][:3]]}, "ragged"),
    ({"instances": (X * 2).tolist()}, "intensities in [0, 1]"),
    ({"instances": GOOD, "signature_name": "nope"}, "'nope' not found"),
    ({"instances": GOOD, "signature_name": 3}, "not found"),
    ({"inputs": {"pixels": GOOD}}, "expected the input 'image'"),
    ({"signature_name": "serving_uint8", "instances": GOOD}, "expected integers"),
    (
        {
            "signature_name": "serving_uint8",
            "instances": (X8.astype(int) + 300).tolist(),
        },
        "[0, 255]",
    ),
    ({"signature_name": "serving_bytes", "instances": [{"b64": "%%%"}]}, "base64"),
    ({"signature_name": "serving_bytes", "instances": [{"b64": "AAAA"}]}, "784"),
    ({"signature_name": "serving_bytes", "instances": [{"b64": 3}]}, "string"),
    ({"signature_name": "serving_bytes", "instances": [[1]]}, '{"b64"'),
    ({"instances": np.zeros((65, 28, 28, 1)).tolist()}, "maximum batch of 64"),
]


@pytest.mark.parametrize(("doc", "message"), BAD)
def test_bad_requests_are_400_with_a_message(doc, message):
    with pytest.raises(ServingError) as info:
        parse(doc)
    assert info.value.status == 400 and message in info.value.message


@pytest.mark.parametrize(
    "body", [b"{", b"", b'{"instances": [NaN]}', b'{"instances": [1e999]}', b"\xff"]
)
def test_malformed_json_nan_and_inf_are_400(body):
    with pytest.raises(ServingError, match="JSON Parse error") as info:
        decode_json(body)
    assert info.value.status == 400


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
        parsed = read_predict(body, SIGS, 64)
    except ServingError as exc:
        assert exc.status == 400 and exc.message
    else:
        assert parsed.images.shape[1:] == (28, 28, 1) and len(parsed.images) >= 1
    assert outcome(lambda b: read_predict(b, SIGS, 64), body) == outcome(general, body)


@pytest.mark.parametrize("body", [b'{"\\u0000": null}', b'{"instances": {"a": 1}}'])
def test_odd_keys_and_values_fail_with_400_on_both_paths(body):
    """simdjson cannot look up some keys (a NUL, found by the fuzz test): the fast
    path must hand such bodies to the general parser, never raise itself."""
    assert outcome(lambda b: read_predict(b, SIGS, 64), body) == outcome(general, body)
    with pytest.raises(ServingError) as error:
        read_predict(body, SIGS, 64)
    assert error.value.status == 400


@pytest.mark.parametrize("key", ["instances", "inputs"])
def test_plain_float_batches_skip_the_general_parser(key, monkeypatch):
    body = json.dumps({key: X.tolist()}, indent=1).encode()  # blanks are fine
    monkeypatch.setattr(protocol, "decode_json", lambda body: pytest.fail("slow"))
    parsed = read_predict(body, SIGS, 64)
    assert parsed.key == ("predictions" if key == "instances" else "outputs")
    np.testing.assert_array_equal(parsed.images, X)


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
    fast = outcome(lambda b: read_predict(b, SIGS, 2), body.encode())
    assert fast == outcome(lambda b: general(b, 2), body.encode())


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
    meta = metadata_body("mnist", 2, SIGS)
    assert meta["model_spec"] == {"name": "mnist", "signature_name": "", "version": "2"}
    default = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    image = default["inputs"]["image"]
    assert image["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in image["tensor_shape"]["dim"]] == ["-1", "28", "28", "1"]
    assert default["outputs"]["probabilities"]["dtype"] == "DT_FLOAT"
    assert default["method_name"] == "tensorflow/serving/predict"


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
    for read in (lambda b: read_predict(b, SIGS, 64), general):
        with pytest.raises(ServingError, match="got a JSON boolean") as info:
            read(body)
        assert info.value.status == 400


def test_a_body_without_booleans_skips_the_walk_for_them(monkeypatch):
    """The walk over every value runs only when the bytes true or false occur."""
    monkeypatch.setattr(protocol, "_has_bool", lambda v: pytest.fail("walked"))
    doc = {"signature_name": "serving_uint8", "instances": X8.tolist()}
    assert read_predict(orjson.dumps(doc), SIGS, 64).images.dtype == np.uint8


def test_an_oversized_batch_is_refused_before_the_general_parser(monkeypatch):
    """orjson would build every value of the body first, holding the GIL."""
    monkeypatch.setattr(protocol, "decode_json", lambda body: pytest.fail("slow"))
    body = orjson.dumps({"instances": np.zeros((65, 28, 28, 1)).tolist()})
    with pytest.raises(ServingError, match="batch of 65 exceeds") as info:
        read_predict(body, SIGS, 64)
    assert info.value.status == 400
    assert outcome(general, body) == (400, info.value.message)
