"""TF Serving's REST request and response formats, as pure functions (chapter 8).

:func:`read_predict` turns a ``:predict`` body into one NumPy batch, or raises
:class:`ServingError` with the HTTP status and a message in TF Serving's words;
:func:`status_body` and :func:`metadata_body` build the GET answers. No web
framework and no TensorFlow here, so all of it is tested in-process.
"""

from __future__ import annotations

import base64
import binascii
from functools import lru_cache

import numpy as np
import orjson
import simdjson

__all__ = [
    "ParsedRequest",
    "ServingError",
    "decode_json",
    "metadata_body",
    "not_found",
    "parse_predict",
    "parse_version",
    "read_predict",
    "status_body",
]

_DTYPES = {"DT_FLOAT": np.float32, "DT_UINT8": np.uint8, "DT_STRING": bytes}


class ServingError(Exception):
    """A request the server refuses: ``status`` (4xx) and a one-line message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def not_found(model: str, version: int | None = None) -> ServingError:
    """404 as TF Serving words it for an unknown model or version."""
    what = f"Latest({model})" if version is None else f"Specific({model}, {version})"
    return ServingError(404, f"Servable not found for request: {what}")


def _bad(message: str) -> ServingError:
    return ServingError(400, message)


# The most digits a version may have: TF Serving's versions are int64.
_MAX_VERSION_DIGITS = 19


def parse_version(text: str) -> int:
    """The ``/versions/{v}`` part of a URL as an int64, or a 400.

    Only ASCII digits count: ``str.isdigit`` and ``int`` also accept other
    scripts' digits (U+0661, the Arabic-Indic one, would be version 1) and
    superscripts (which ``int`` then refuses), and ``int`` refuses strings of
    over 4,300 digits; TF Serving parses the version as an int64.
    """
    if (
        not text.isascii()
        or not text.isdigit()
        or len(text) > _MAX_VERSION_DIGITS
        or int(text) >= 2**63
    ):
        shown = text if len(text) <= 24 else f"{text[:24]}... ({len(text)} chars)"
        raise _bad(f"version must be an int64 in ASCII digits, got {shown!r}")
    return int(text)


def decode_json(body: bytes):
    """Parse a request body; malformed JSON (NaN and Infinity included) is a 400."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _bad(f"JSON Parse error: {exc}") from None


class ParsedRequest:
    """A validated predict request: the signature, one batch, the answer's key."""

    __slots__ = ("signature", "images", "key")

    def __init__(self, signature: str, images: np.ndarray, key: str):
        self.signature = signature  # "serving_default" or "serving_uint8"
        self.images = images  # float32 in [0, 1] or uint8, (N, H, W, C)
        self.key = key  # "predictions" (row format) or "outputs" (columnar)


def _named(values, name: str, where: str):
    """Unwrap ``{"image": x}`` (the named form) to ``x``."""
    if isinstance(values, dict) and not (len(values) == 1 and "b64" in values):
        if set(values) != {name}:
            raise _bad(f"{where}: expected the input {name!r}, got {sorted(values)}")
        return values[name]
    return values


def _rows(instances: list, name: str) -> list:
    if instances and isinstance(instances[0], dict) and name in instances[0]:
        return [_named(row, name, "instances") for row in instances]
    return instances


def _decode_b64(values, shape: tuple[int, ...]) -> np.ndarray:
    size = int(np.prod(shape))
    chunks = []
    for value in values:
        if not (isinstance(value, dict) and set(value) == {"b64"}):
            raise _bad('expected binary values as {"b64": "<base64 string>"}')
        if not isinstance(value["b64"], str):
            raise _bad("the b64 value must be a string")
        try:
            raw = base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _bad(f"Unable to base64 decode: {exc}") from None
        if len(raw) != size:
            raise _bad(f"expected {size} raw uint8 pixels per image, got {len(raw)}")
        chunks.append(raw)
    return np.frombuffer(b"".join(chunks), dtype=np.uint8).reshape(-1, *shape)


def _has_bool(values) -> bool:
    """Whether a decoded JSON value holds ``true`` or ``false`` anywhere."""
    stack = [values]
    while stack:
        value = stack.pop()
        if value is True or value is False:
            return True
        if isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, dict):
            stack.extend(value.values())
    return False


def _to_array(
    values, dtype, name: str, shape: tuple[int, ...], check_bools: bool = True
) -> np.ndarray:
    # NumPy reads [0.5, true] as [0.5, 1.0]; TF Serving refuses a boolean for a
    # number ("Type: True is not of expected type: float", json_tensor.cc).
    if check_bools and _has_bool(values):
        kind = "DT_UINT8" if dtype is np.uint8 else "DT_FLOAT"
        raise _bad(f"input {name!r} is {kind}: expected numbers, got a JSON boolean")
    try:
        array = np.asarray(values)
    except (ValueError, TypeError, OverflowError):  # ragged nesting, huge ints
        raise _bad(f"input {name!r}: ragged or mixed nested lists") from None
    if array.dtype.kind not in "iuf":
        raise _bad(f"input {name!r}: expected numbers, got JSON {array.dtype.kind!r}")
    if array.shape[1:] != shape or array.ndim != len(shape) + 1:
        want = ", ".join(["N", *map(str, shape)])
        got = ", ".join(map(str, array.shape))
        raise _bad(f"input {name!r}: expected shape [{want}], got [{got}]")
    if dtype is np.uint8:
        if array.dtype.kind == "f":
            raise _bad(f"input {name!r} is DT_UINT8: expected integers, got floats")
        if array.size and (array.min() < 0 or array.max() > 255):
            raise _bad(f"input {name!r} is DT_UINT8: values must be in [0, 255]")
        return array.astype(np.uint8)
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise _bad(f"input {name!r}: NaN or infinite values")
    if array.size and (array.min() < 0.0 or array.max() > 1.0):
        raise _bad(f"input {name!r}: expected intensities in [0, 1]")
    return array


def parse_predict(
    doc, signatures: dict, max_batch: int, check_bools: bool = True
) -> ParsedRequest:
    """Validate a decoded ``:predict`` body against the model's signatures.

    Accepts TF Serving's row format ``{"instances": [...]}`` and columnar format
    ``{"inputs": ...}`` (never both), each plain or named (``{"image": ...}``),
    with an optional ``"signature_name"``. Binary inputs (``serving_bytes``) come
    as ``{"b64": ...}`` values and are decoded to uint8 images here. A JSON
    boolean among numbers is a 400, as in TF Serving; ``check_bools=False``
    skips that walk over every value, for a caller that knows there are none
    (:func:`read_predict`: a body without the bytes ``true`` and ``false``).
    """
    if not isinstance(doc, dict):
        raise _bad("expected a JSON object with 'instances' or 'inputs'")
    if "instances" in doc and "inputs" in doc:
        raise _bad(
            "Not formatted correctly expecting only one of 'inputs' or "
            "'instances' keys to exist"
        )
    if "instances" not in doc and "inputs" not in doc:
        raise _bad("Missing 'inputs' or 'instances' key")
    name = doc.get("signature_name", "serving_default")
    if not isinstance(name, str) or name not in signatures:
        raise _bad(f"Serving signature name: {name!r} not found in signature def")
    (input_name, spec), *_ = signatures[name]["inputs"].items()
    if "instances" in doc:
        values, key = doc["instances"], "predictions"
        if not isinstance(values, list):
            raise _bad("'instances' must be a list, one entry per example")
        values = _rows(values, input_name)
    else:
        values, key = _named(doc["inputs"], input_name, "inputs"), "outputs"
    if not isinstance(values, list):
        raise _bad(f"input {input_name!r}: expected a list (a batch of examples)")
    if not values:
        raise _bad(f"input {input_name!r}: empty batch, expected at least 1 example")
    if len(values) > max_batch:
        raise _bad(f"batch of {len(values)} exceeds the maximum batch of {max_batch}")
    dtype = _DTYPES[spec["dtype"]]
    image_shape = tuple(signatures["serving_default"]["inputs"]["image"]["shape"][1:])
    if dtype is bytes:
        return ParsedRequest("serving_uint8", _decode_b64(values, image_shape), key)
    images = _to_array(values, dtype, input_name, image_shape, check_bools)
    return ParsedRequest(name, images, key)


# What a number can be made of, plus JSON whitespace: deleting these from a body
# leaves its skeleton of brackets, commas and keys.
_NUMBER_AND_SPACE = b"0123456789.eE+- \t\n\r"


@lru_cache(maxsize=256)
def _skeleton(key: str, shape: tuple[int, ...]) -> bytes:
    """The skeleton of ``{key: <numbers of this shape>}`` with numbers deleted."""
    inner = b""
    for size in reversed(shape):
        inner = b"[" + b",".join([inner] * size) + b"]"
    return (b'{"%s":%s}' % (key.encode(), inner)).translate(None, _NUMBER_AND_SPACE)


def _read_plain_floats(body: bytes, signatures: dict, max_batch: int):
    """The fast path for the common body: ``{"instances"|"inputs": <floats>}``.

    simdjson copies the numbers straight into a buffer, where ``orjson`` plus
    ``np.asarray`` build and walk about 800 Python lists per 28×28 image
    (chapter 8 times both). The buffer is flat, so the shape is proven on the
    text: with every number and blank deleted, the body must equal the skeleton
    of a regular ``(N, *image shape)`` array, and the count must be exact (``[]``
    and ``[0.5]`` share a skeleton). A batch over ``max_batch`` is refused here
    with the general path's message; anything else returns ``None``, valid or
    not, and takes the general path and its error messages.
    """
    spec = signatures["serving_default"]["inputs"]["image"]
    if spec["dtype"] != "DT_FLOAT":
        return None
    shape = tuple(spec["shape"][1:])
    try:
        doc = simdjson.Parser().parse(body)
        if not isinstance(doc, simdjson.Object) or len(doc) != 1:
            return None
        (key,) = doc.keys()
        if key not in ("instances", "inputs"):
            return None
        values = doc[key]
        if not isinstance(values, simdjson.Array):
            return None
        if len(values) > max_batch and not isinstance(values[0], simdjson.Object):
            # What parse_predict says too, before any number is read: an
            # oversized batch never reaches orjson, which holds the GIL while
            # it builds every value of the body.
            raise _bad(
                f"batch of {len(values)} exceeds the maximum batch of {max_batch}"
            )
        flat = np.frombuffer(values.as_buffer(of_type="d"), dtype=np.float64)
    except (TypeError, ValueError, RuntimeError, KeyError):  # not numbers, bad JSON
        return None
    count, rest = divmod(flat.size, int(np.prod(shape)))
    if rest or not 1 <= count <= max_batch:
        return None
    if body.translate(None, _NUMBER_AND_SPACE) != _skeleton(key, (count, *shape)):
        return None
    images = flat.astype(np.float32).reshape(count, *shape)
    if not np.isfinite(images).all() or images.min() < 0.0 or images.max() > 1.0:
        return None
    return ParsedRequest(
        "serving_default", images, "predictions" if key == "instances" else "outputs"
    )


def read_predict(body: bytes, signatures: dict, max_batch: int) -> ParsedRequest:
    """Decode and validate a raw ``:predict`` body: what the server calls.

    Plain float batches take :func:`_read_plain_floats`; every other body, and
    every bad one, goes through :func:`decode_json` and :func:`parse_predict`,
    so the answer and the error message do not depend on the path taken. The
    fast path never sees a boolean (``true`` and ``false`` break the skeleton);
    the general one looks for booleans only when the body holds those bytes.
    """
    parsed = _read_plain_floats(body, signatures, max_batch)
    if parsed is None:
        bools = b"true" in body or b"false" in body
        parsed = parse_predict(decode_json(body), signatures, max_batch, bools)
    return parsed


def status_body(
    versions: list[int], failed: dict[int, tuple[str, str]] | None = None
) -> dict:
    """``GET /v1/models/{name}``: TF Serving's ``model_version_status``.

    ``versions`` are served (``AVAILABLE``); ``failed`` maps a version whose
    load failed to its ``(error_code, error_message)``, shown as TF Serving
    shows a servable whose load failed: state ``END`` with the load's error
    (``get_model_status_impl.cc``: the state and ``ToStatusProto(health)``).
    Newest version first.
    """
    rows = {v: ("AVAILABLE", "OK", "") for v in versions}
    for version, (code, message) in (failed or {}).items():
        rows.setdefault(version, ("END", code, message))
    return {
        "model_version_status": [
            {
                "version": str(v),
                "state": rows[v][0],
                "status": {"error_code": rows[v][1], "error_message": rows[v][2]},
            }
            for v in sorted(rows, reverse=True)
        ]
    }


def _tensor_info(signature: str, name: str, spec: dict) -> dict:
    return {
        "dtype": spec["dtype"],
        "tensor_shape": {
            "dim": [{"size": str(d), "name": ""} for d in spec["shape"]],
            "unknown_rank": False,
        },
        "name": f"{signature}_{name}:0",
    }


def metadata_body(model: str, version: int, signatures: dict) -> dict:
    """``GET .../metadata``: TF Serving's model spec and signature defs."""
    defs = {
        sig: {
            "inputs": {k: _tensor_info(sig, k, v) for k, v in d["inputs"].items()},
            "outputs": {k: _tensor_info(sig, k, v) for k, v in d["outputs"].items()},
            "method_name": "tensorflow/serving/predict",
        }
        for sig, d in signatures.items()
    }
    return {
        "model_spec": {"name": model, "signature_name": "", "version": str(version)},
        "metadata": {"signature_def": {"signature_def": defs}},
    }
