"""Fuzzing the request parser of cnnlearn.deploy.protocol (chapter 8).

:func:`~cnnlearn.deploy.protocol.read_predict` turns a ``:predict`` body into
one array per input of the requested signature, and
:func:`~cnnlearn.deploy.protocol.parse_version` a URL's version into an int64.
Whatever a client sends, they may only return or raise their documented
:class:`ServingError` with a 4xx status and a one-line message (never
``RecursionError``, ``OverflowError``, a NumPy ``ValueError`` ..., which the
server would answer with a 500), with the chapter's guards on and off. Valid
requests, in every format TF Serving accepts, round-trip exactly. No web
server: the parser is pure.
"""

from __future__ import annotations

import base64
import json

import numpy as np
import orjson
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cnnlearn.deploy.backends import declared_signature_defs
from cnnlearn.deploy.export import signature_defs
from cnnlearn.deploy.protocol import (
    Guards,
    ParsedRequest,
    ServingError,
    parse_version,
    read_predict,
)
from cnnlearn.deploy.signatures import signatures_from_defs

FUZZ = settings(max_examples=200, deadline=None)
# Small images: more shapes per second.
SIGS = signatures_from_defs(declared_signature_defs(signature_defs((4, 4, 1))))
MAX_BATCH = 3  # small: "over the maximum batch" is reached too
GUARDS = Guards(max_batch=MAX_BATCH, value_range=(0.0, 1.0), finite_only=True)
NO_GUARDS = Guards()  # TF Serving's: any batch, any float, NaN included


def outcome(body: bytes, guards: Guards = GUARDS) -> ParsedRequest | None:
    """The parsed request, or ``None`` after a documented 4xx refusal."""
    try:
        parsed = read_predict(body, SIGS, guards)
    except ServingError as exc:
        assert 400 <= exc.status < 500, (exc.status, exc.message)
        assert exc.message and "\n" not in exc.message
        return None
    signature = SIGS[parsed.signature]
    assert set(parsed.inputs) == set(signature.inputs)
    assert parsed.key in ("predictions", "outputs")
    for name, array in parsed.inputs.items():
        spec = signature.inputs[name]
        assert isinstance(array, np.ndarray) and array.dtype == spec.dtype
        assert array.ndim == len(spec.shape)
        assert all(w < 0 or g == w for g, w in zip(array.shape, spec.shape))
        if guards is GUARDS:
            assert len(array) <= MAX_BATCH  # 0 rows: an empty columnar input
            if array.dtype.kind == "f":
                assert np.isfinite(array).all()
                assert array.min() >= 0 and array.max() <= 1
    return parsed


# The pieces JSON bodies are made of, with the protocol's words among them.
TOKENS = st.sampled_from(
    [b"{", b"}", b"[", b"]", b",", b":", b" ", b"\n", b'"instances"', b'"inputs"']
    + [b'"image"', b'"image_bytes"', b'"b64"', b'"signature_name"']
    + [b'"serving_default"', b'"serving_uint8"', b'"serving_bytes"', b'"AAAA"']
    + [b"0", b"1", b"0.5", b"-1", b"255", b"256", b"1e400", b"-0", b"1e-400"]
    + [b"123456789012345678901234567890", b"NaN", b"Infinity", b"-Infinity"]
    + [b"true", b"false", b"null", b'"\\u0000"', b'"\\ud800"', b'"', b"\\"]
)


@FUZZ
@given(st.binary(max_size=200))
@example(b"")
@example(b"\xff\xfe{")
def test_arbitrary_bytes(body):
    outcome(body)
    outcome(body, NO_GUARDS)


@FUZZ
@given(st.lists(TOKENS, max_size=60).map(b"".join))
def test_json_ish_bytes(body):
    outcome(body)
    outcome(body, NO_GUARDS)


@settings(max_examples=30, deadline=None)
@given(
    st.integers(1, 200_000),
    st.sampled_from([b"[", b"{", b'[{"image":']),
    st.sampled_from(["instances", "inputs"]),
    st.booleans(),
)
def test_deep_nesting(depth, opener, key, closed):
    """Nesting past every parser's recursion limit: simdjson's, orjson's,
    NumPy's 64 dimensions, Python's own."""
    closer = {b"[": b"]", b"{": b"}"}.get(opener, b"}]")
    inner = b"0" if opener == b"[" else b'"a":0' if opener == b"{" else b"0"
    body = opener * depth + inner + (closer * depth if closed else b"")
    outcome(b'{"%s":' % key.encode() + body + b"}", NO_GUARDS)


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.floats()  # NaN and infinities: orjson writes them as null
    | st.integers(-(2**70), 2**70)
    | st.text(max_size=8)
    | st.sampled_from([0.0, 1.0, 0.5, 255, 256, -1]),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(
            st.sampled_from(
                ["instances", "inputs", "image", "image_bytes", "b64", "signature_name"]
            )
            | st.text(max_size=4),
            children,
            max_size=4,
        )
    ),
    max_leaves=60,
)


def encode(doc) -> bytes:
    """``doc`` as JSON: orjson's, or the standard library's for what orjson
    refuses (integers over 64 bits); NaN and infinities as orjson writes them
    (``null``) or as Python does (``NaN``, which is not JSON)."""
    try:
        return orjson.dumps(doc)
    except orjson.JSONEncodeError:
        return json.dumps(doc).encode()


@FUZZ
@given(
    JSON,
    st.sampled_from(["instances", "inputs", None]),
    st.sampled_from(["serving_default", "serving_uint8", "serving_bytes", 7, None]),
)
def test_arbitrary_json_values(value, key, signature):
    """Any JSON value, alone or where the protocol looks: under ``instances``
    or ``inputs``, with any ``signature_name``."""
    doc = value if key is None else {key: value}
    if signature is not None and isinstance(doc, dict):
        doc = {**doc, "signature_name": signature}
    outcome(encode(doc))
    outcome(encode(doc), NO_GUARDS)


@st.composite
def valid_requests(draw):
    """A valid request in one of TF Serving's formats, with the batch it holds."""
    n = draw(st.integers(1, MAX_BATCH))
    kind = draw(st.sampled_from(["float", "uint8", "bytes"]))
    pixels = draw(st.lists(st.integers(0, 255), min_size=16 * n, max_size=16 * n))
    raw = np.asarray(pixels, np.uint8).reshape(n, 4, 4, 1)
    if kind == "float":
        scale = draw(st.sampled_from([255.0, 256.0, 1000.0]))
        images, name = (raw / scale).astype(np.float32), "serving_default"
        values = images.tolist()
    elif kind == "uint8":
        images, name, values = raw, "serving_uint8", raw.tolist()
    else:
        images, name = raw, "serving_bytes"  # the backend decodes the bytes
        values = [{"b64": base64.b64encode(x.tobytes()).decode()} for x in raw]
    columnar, named = draw(st.booleans()), draw(st.booleans())
    input_name = next(iter(SIGS[name].inputs))
    if columnar:
        doc = {"inputs": {input_name: values} if named else values}
    else:
        rows = [{input_name: v} for v in values] if named else values
        doc = {"instances": rows}
    if name != "serving_default" or draw(st.booleans()):
        doc["signature_name"] = name
    indent = draw(st.sampled_from([None, 0, 2]))
    body = json.dumps(doc, indent=indent).encode()
    return body, images, name, "outputs" if columnar else "predictions"


@FUZZ
@given(valid_requests(), st.booleans())
def test_valid_requests_round_trip(request, guarded):
    body, images, signature, key = request
    parsed = outcome(body, GUARDS if guarded else NO_GUARDS)
    assert parsed is not None, body[:200]
    assert (parsed.signature, parsed.key) == (signature, key)
    (array,) = parsed.inputs.values()
    if signature == "serving_bytes":
        assert list(array) == [x.tobytes() for x in images]
    else:
        assert array.dtype == images.dtype
        np.testing.assert_array_equal(array, images)


@FUZZ
@given(st.text(max_size=30) | st.from_regex(r"\A[0-9]{1,25}\Z"))
@example("\u00b2")  # a superscript two: isdigit() says yes, int() says no
@example("\u0661")  # an Arabic-Indic one: int() reads it as 1
@example("9" * 5000)  # past int()'s 4,300-digit limit
@example(str(2**63))
def test_versions(text):
    """A version is an int64 in at most 19 ASCII digits; anything else is a 400."""
    int64 = text.isascii() and text.isdigit() and len(text) <= 19
    int64 = int64 and int(text) < 2**63
    try:
        version = parse_version(text)
    except ServingError as exc:
        assert exc.status == 400 and "\n" not in exc.message
        assert len(exc.message) < 200  # a 5,000-digit version is not echoed
        assert not int64
    else:
        assert int64 and version == int(text)
