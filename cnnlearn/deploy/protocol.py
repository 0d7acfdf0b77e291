"""TF Serving's REST request and response formats, as pure functions (chapter 8).

:func:`read_predict` turns a ``:predict`` body into one NumPy array per input
of the requested signature, with TF Serving's semantics
(``json_tensor.cc``, ``FillPredictRequestFromJson``): row (``instances``) and
columnar (``inputs``) formats, plain or named, a tensor's shape taken from its
first elements and every list checked against it, each JSON value checked
against the input's dtype (a number for floats, an integer for ints, ``true``
or ``false`` for bools, a string or ``{"b64": ...}`` for strings), and the
error messages of TF Serving's own code. :func:`predict_response` writes the
answer as ``MakeJsonFromTensors`` does (one output: its values; several: an
object per row, or per output). :func:`status_body` and :func:`metadata_body`
build the GET answers. No web framework and no TensorFlow here, so all of it is
tested in-process.

Deviations from TF Serving. Toward refusing (400) what it would serve
wrongly: an integer out of its input's range (TF Serving wraps a uint8 300 to
44 and an int8 200 to -56); bytes after the JSON document (TF Serving ignores
them); a shape that does not fit the signature's known dimensions (refused
here, before the model runs, with the input named); JSON nested deeper than
the parsers' limit (TF Serving's iterative parser takes any depth). And one
for speed: floats are written as the shortest decimal that reads back as the
same float32 or float64 (orjson), where TF Serving writes ``%.6g``, or
``%.9g`` when that does not round-trip (``WriteDecimal``): other digits, the
same values.

:class:`Guards` are the model-specific checks the chapter 8 model server used
to apply to every request (a pixel range, a batch limit, finite values): off
by default, as in TF Serving, and switched on per server.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import orjson
import simdjson

from cnnlearn.deploy.signatures import Signature, TensorSpec

__all__ = [
    "Guards",
    "ParsedRequest",
    "ServingError",
    "decode_json",
    "metadata_body",
    "not_found",
    "parse_predict",
    "parse_version",
    "predict_response",
    "classify_response",
    "read_examples_request",
    "read_predict",
    "regress_response",
    "serialize_example",
    "status_body",
    "to_tensor",
]

DEFAULT_SIGNATURE = "serving_default"
#: The most dimensions a tensor may have: NumPy's limit (``np.ndarray`` has
#: at most 64; TensorFlow's ``TensorShape::MaxDimensions`` is 254, so TF
#: Serving takes deeper lists: a deviation, a 400 here).
MAX_RANK = 64

# TensorFlow's DataTypeString, for the dtypes JSON can fill (AddValueToTensor).
_TF_NAMES = {
    "DT_FLOAT": "float",
    "DT_DOUBLE": "double",
    "DT_INT32": "int32",
    "DT_INT16": "int16",
    "DT_INT8": "int8",
    "DT_UINT8": "uint8",
    "DT_STRING": "string",
    "DT_INT64": "int64",
    "DT_BOOL": "bool",
    "DT_UINT32": "uint32",
    "DT_UINT64": "uint64",
}
_FLOATS = ("DT_FLOAT", "DT_DOUBLE")
# The JSON integers each integer dtype accepts (rapidjson's IsInt, IsInt64,
# IsUint, IsUint64), and the range a value must then fit (a deviation: TF
# Serving stores an int32 into the narrower tensor and lets it wrap).
_INT_JSON = {
    "DT_INT32": (-(2**31), 2**31 - 1),
    "DT_INT16": (-(2**31), 2**31 - 1),
    "DT_INT8": (-(2**31), 2**31 - 1),
    "DT_UINT8": (-(2**31), 2**31 - 1),
    "DT_INT64": (-(2**63), 2**63 - 1),
    "DT_UINT32": (0, 2**32 - 1),
    "DT_UINT64": (0, 2**64 - 1),
}
_NUMPY = {
    "DT_FLOAT": np.float32,
    "DT_DOUBLE": np.float64,
    "DT_INT32": np.int32,
    "DT_INT16": np.int16,
    "DT_INT8": np.int8,
    "DT_UINT8": np.uint8,
    "DT_INT64": np.int64,
    "DT_UINT32": np.uint32,
    "DT_UINT64": np.uint64,
    "DT_BOOL": np.bool_,
}


class ServingError(Exception):
    """A request the server refuses: ``status`` (4xx) and a one-line message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Guards:
    """Model-specific request checks, all off by default (TF Serving has none).

    ``max_batch``: the most rows one request may send (400 over it);
    ``value_range``: ``(low, high)`` that every value of a float input must
    lie in (the chapter 8 models take intensities in [0, 1]); ``finite_only``:
    refuse ``NaN`` and ``Infinity`` in float inputs (TF Serving's REST API
    accepts them).
    """

    max_batch: int | None = None
    value_range: tuple[float, float] | None = None
    finite_only: bool = False


NO_GUARDS = Guards()


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


def _float(text: str) -> float:
    """A JSON number as rapidjson reads it: one too big for a double is an error."""
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"Number too big to be stored in double: {text[:20]}")
    return value


def decode_json(body: bytes):
    """Parse a request body; malformed JSON is a 400 (``JSON Parse error``).

    ``NaN``, ``Infinity`` and ``-Infinity`` are numbers, as in TF Serving
    (rapidjson's ``kParseNanAndInfFlag``): orjson refuses them, so a body that
    holds them is parsed again by the standard library's parser. Bytes after
    the document are an error (TF Serving stops at the end of the document
    and ignores them: a deviation, since they may be a second request).
    """
    if not body:
        raise _bad("JSON Parse error: The document is empty")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if b"NaN" in body or b"Infinity" in body:
            try:
                return json.loads(body, parse_float=_float)
            except (ValueError, RecursionError):
                pass
        raise _bad(f"JSON Parse error: {exc}") from None


class ParsedRequest:
    """A validated predict request: the signature, its inputs, the answer's key."""

    __slots__ = ("signature", "inputs", "key")

    def __init__(self, signature: str, inputs: dict, key: str):
        self.signature = signature
        self.inputs = inputs  # input name -> array of the input's dtype
        self.key = key  # "predictions" (row format) or "outputs" (columnar)


def _debug(value) -> str:
    """TF Serving's ``JsonValueToDebugString``: compact JSON, at most 256 bytes."""
    try:
        text = orjson.dumps(value)
    except TypeError:  # NaN and Infinity, from the standard parser
        text = json.dumps(value, separators=(",", ":")).encode()
    return text[:256].decode(errors="replace")


def _json_type(value) -> str:
    if value is None:
        return "Null"
    if value is True or value is False:
        return str(value)
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    return "String" if isinstance(value, str) else "Number"


def _type_error(value, dtype_name: str) -> ServingError:
    return _bad(
        f"JSON Value: {_debug(value)} Type: {_json_type(value)} "
        f"is not of expected type: {_TF_NAMES.get(dtype_name, dtype_name)}"
    )


def _b64(value) -> bytes:
    """``{"b64": ...}`` decoded as ``absl::Base64Unescape`` decodes it: the
    padding may be left out, and ASCII blanks (line breaks every 76 columns)
    are skipped."""
    if not (isinstance(value, dict) and len(value) == 1 and "b64" in value) or (
        not isinstance(value["b64"], str)
    ):
        raise _bad(
            f"JSON Value: {_debug(value)} not formatted correctly for base64 data"
        )
    text = "".join(value["b64"].split())
    if len(text) % 4 == 1 or not text.isascii():
        raise _bad("Unable to base64 decode")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise _bad("Unable to base64 decode") from None


def _leaf(value, dtype_name: str):
    """One JSON value as an element of a tensor (``AddValueToTensor``)."""
    if dtype_name == "DT_STRING":
        if isinstance(value, str):
            return value.encode()
        if isinstance(value, dict):
            return _b64(value)
        raise _type_error(value, dtype_name)
    if isinstance(value, bool) or value is None or isinstance(value, (str, dict)):
        if dtype_name == "DT_BOOL" and isinstance(value, bool):
            return value
        raise _type_error(value, dtype_name)
    if dtype_name == "DT_BOOL":
        raise _type_error(value, dtype_name)
    if dtype_name in _FLOATS:
        return value
    if dtype_name not in _INT_JSON:
        raise ServingError(
            501, f"Conversion of JSON Value: {_debug(value)} to type: {dtype_name}"
        )
    low, high = _INT_JSON[dtype_name]
    if not isinstance(value, int) or not low <= value <= high:
        raise _type_error(value, dtype_name)
    info = np.iinfo(_NUMPY[dtype_name])
    if not info.min <= value <= info.max:
        raise _bad(
            f"JSON Value: {value} is out of range for {_TF_NAMES[dtype_name]} "
            f"[{info.min}, {info.max}] (TF Serving would wrap it)"
        )
    return value


def _dense_shape(value) -> list[int]:
    """``GetDenseTensorShape``: the sizes of the first list at each level."""
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if len(shape) > MAX_RANK:
            raise _bad(f"a tensor of over {MAX_RANK} dimensions")
        if not value:
            break
        value = value[0]
    return shape


def _fill(value, shape: list[int], dtype_name: str, out: list, level: int) -> None:
    """``FillTensorProto``: every value at the tensor's rank, every list of
    the size of the first one at its level."""
    rank = len(shape)
    if not isinstance(value, list):
        if level != rank:
            raise _bad(
                f"JSON Value: {_debug(value)} found at incorrect level: "
                f"{level + 1} in the JSON DOM. Expected at level: {rank}"
            )
        out.append(_leaf(value, dtype_name))
        return
    if level >= rank:
        raise _bad(f"Encountered list at unexpected level: {level} expected < {rank}")
    if len(value) != shape[level]:
        raise _bad(
            f"Encountered list at unexpected size: {len(value)} at level: {level} "
            f"expected size: {shape[level]}"
        )
    for item in value:
        _fill(item, shape, dtype_name, out, level + 1)


def _slow_tensor(value, dtype_name: str) -> np.ndarray:
    shape = _dense_shape(value)
    leaves: list = []
    _fill(value, shape, dtype_name, leaves, 0)
    if dtype_name == "DT_STRING":
        array = np.empty(len(leaves), dtype=object)
        array[:] = leaves
        return array.reshape(shape)
    with np.errstate(over="ignore"):  # a float beyond float32 is inf, as in TF
        return np.array(leaves, dtype=_NUMPY[dtype_name]).reshape(shape)


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


def to_tensor(value, dtype_name: str, check_bools: bool = True) -> np.ndarray:
    """A JSON value (a number, a string, nested lists) as a tensor of TF's
    dtype ``dtype_name``, or a 400 in TF Serving's words.

    Numbers take NumPy's fast conversion when it gives the right kind of array
    (and no JSON boolean hides among them, unless ``check_bools`` is off);
    anything else is walked value by value as TF Serving walks it, which finds
    the error to report.
    """
    if dtype_name in _NUMPY and not isinstance(value, dict):
        try:
            array = np.asarray(value)
        except (ValueError, TypeError, OverflowError):  # ragged, huge ints
            array = None
        if array is not None and not (check_bools and _has_bool(value)):
            kind = array.dtype.kind
            if dtype_name == "DT_BOOL":
                fast = kind == "b"
            elif dtype_name in _FLOATS:
                fast = kind in "iuf"
            else:
                info = np.iinfo(_NUMPY[dtype_name])
                fast = kind in "iu" and (
                    array.size == 0
                    or (array.min() >= info.min and array.max() <= info.max)
                )
            if fast and array.ndim <= MAX_RANK:
                with np.errstate(over="ignore"):
                    return array.astype(_NUMPY[dtype_name], copy=False)
    return _slow_tensor(value, dtype_name)


def _check_spec(name: str, array: np.ndarray, spec: TensorSpec) -> None:
    """A shape that cannot fit the signature's input is a 400 (a deviation:
    TF Serving lets the model fail on it)."""
    shape = spec.shape
    if shape is None:
        return
    if array.ndim != len(shape) or any(
        want >= 0 and got != want for got, want in zip(array.shape, shape)
    ):
        want = ",".join(map(str, shape))
        got = ",".join(map(str, array.shape))
        raise _bad(f"input {name!r}: expected shape [{want}], got [{got}]")


def _apply_guards(inputs: dict, signature: Signature, guards: Guards) -> None:
    for name, array in inputs.items():
        rows = array.shape[0] if array.ndim else 1
        if guards.max_batch is not None and rows > guards.max_batch:
            raise _bad(
                f"batch of {rows} exceeds the maximum batch of {guards.max_batch}"
            )
        if array.dtype.kind != "f" or not array.size:
            continue
        if guards.finite_only and not np.isfinite(array).all():
            raise _bad(f"input {name!r}: NaN or infinite values")
        if guards.value_range is not None:
            low, high = guards.value_range
            if not (array.min() >= low and array.max() <= high):
                raise _bad(f"input {name!r}: expected values in [{low:g}, {high:g}]")


def _is_b64(value) -> bool:
    return (
        isinstance(value, dict)
        and len(value) == 1
        and isinstance(value.get("b64"), str)
    )


def _signature_of(doc: dict, signatures: dict) -> tuple[str, Signature]:
    name = doc.get("signature_name", DEFAULT_SIGNATURE)
    if not isinstance(name, str):
        raise _bad(
            f"JSON Value: {_debug(doc)} not formatted correctly. "
            "'signature_name' key must be a string value."
        )
    name = name or DEFAULT_SIGNATURE  # TF Serving: "" is the default
    if name not in signatures:
        raise _bad(f'Serving signature name: "{name}" not found in signature def')
    signature = signatures[name]
    if not signature.inputs:
        raise _bad(f"Failed to get input map for signature: {name}")
    return name, signature


def _instances(rows: list, signature: Signature, check_bools: bool) -> dict:
    """``FillTensorMapFromInstancesList``: one tensor per input, batched."""
    names = sorted(signature.inputs)
    objects = isinstance(rows[0], dict) and not _is_b64(rows[0])
    if not isinstance(rows[0], dict) and len(names) > 1:
        raise _bad(
            "instances is a plain list, but expecting list of objects as multiple "
            "input tensors required as per tensorinfo_map"
        )
    columns: dict[str, list] = {name: [] for name in names}
    for index, row in enumerate(rows):
        row_object = isinstance(row, dict) and not _is_b64(row)
        if objects and not row_object:
            raise _bad(f"Expecting object but got list at item {index} of input list")
        if not objects and row_object:
            raise _bad(
                f"Expecting value/list but got object at item {index} of input list"
            )
        if not objects:
            columns[names[0]].append(row)
            continue
        for key in row:
            if key not in signature.inputs:
                raise _bad(
                    f"Failed to process element: {index} key: {key} of 'instances' "
                    f"list. Error: INVALID_ARGUMENT: JSON object: does not have "
                    f"named input: {key}"
                )
        if set(row) != set(names):
            raise _bad(
                f"Failed to process element: {index} of 'instances' list. JSON "
                f"object: {_debug(row)} keys must be equal to: {','.join(names)}"
            )
        for key in names:
            columns[key].append(row[key])
    return {
        name: _batch(
            values, signature.inputs[name].dtype_name, check_bools, objects and name
        )
        for name, values in columns.items()
    }


def _batch(values: list, dtype_name: str, check_bools: bool, key: str | bool):
    """The instances of one input as one tensor: every instance of the first
    one's shape (``AddInstanceItem``), stacked. ``key`` names the input when
    the instances are objects (TF Serving's messages then name it too)."""
    try:
        return to_tensor(values, dtype_name, check_bools)
    except ServingError:
        pass  # find which instance differs, and say it as TF Serving does
    first = None
    where = f" key: {key}" if key else ""
    for index, value in enumerate(values):
        try:
            shape = _dense_shape(value)
            leaves: list = []
            _fill(value, shape, dtype_name, leaves, 0)
        except ServingError as exc:
            raise _bad(
                f"Failed to process element: {index}{where} of 'instances' list. "
                f"Error: INVALID_ARGUMENT: {exc.message}"
            ) from None
        if first is None:
            first = (len(leaves), shape)
        elif len(leaves) != first[0]:
            raise _bad(
                f"Failed to process element: {index}{where} of 'instances' list. "
                f"Error: INVALID_ARGUMENT: Expecting tensor size: {first[0]} but got: "
                f"{len(leaves)}"
            )
        elif shape != first[1]:
            raise _bad(
                f"Failed to process element: {index}{where} of 'instances' list. "
                f"Error: INVALID_ARGUMENT: Expecting shape {_shape_text(first[1])} but "
                f"got: {_shape_text(shape)}"
            )
    return _slow_tensor(values, dtype_name)


def _shape_text(shape: list[int]) -> str:
    return "[" + ",".join(map(str, shape)) + "]"


def _columns(value, signature: Signature, check_bools: bool) -> dict:
    """``FillTensorMapFromInputsMap``: a plain value for one input, else an
    object with every input (other keys are ignored, as TF Serving does)."""
    if not isinstance(value, dict) or _is_b64(value):
        if len(signature.inputs) > 1:
            raise _bad(
                "inputs is a plain value/list, but expecting an object as multiple "
                "input tensors required as per tensorinfo_map"
            )
        ((name, spec),) = signature.inputs.items()
        return {name: to_tensor(value, spec.dtype_name, check_bools)}
    inputs = {}
    for name in sorted(signature.inputs):
        if name not in value:
            raise _bad(f"Missing named input: {name} in 'inputs' object.")
        spec = signature.inputs[name]
        inputs[name] = to_tensor(value[name], spec.dtype_name, check_bools)
    return inputs


def _check_rows(value, signature: Signature, guards: Guards) -> None:
    """The batch limit on a columnar request, before any value is converted
    (what the fast path says too)."""
    if guards.max_batch is None:
        return
    if isinstance(value, dict) and not _is_b64(value):
        columns = [value.get(name) for name in signature.inputs]
    else:
        columns = [value]
    for column in columns:
        if isinstance(column, list) and len(column) > guards.max_batch:
            raise _bad(
                f"batch of {len(column)} exceeds the maximum batch of "
                f"{guards.max_batch}"
            )


def parse_predict(
    doc, signatures: dict, guards: Guards = NO_GUARDS, check_bools: bool = True
) -> ParsedRequest:
    """Validate a decoded ``:predict`` body against the model's signatures.

    ``signatures`` maps names to :class:`~.signatures.Signature`. TF Serving's
    row format ``{"instances": [...]}`` and columnar format ``{"inputs": ...}``
    (never both), each plain or named, with an optional ``"signature_name"``
    (``""`` or none: ``serving_default``); then the shapes are checked against
    the signature and ``guards`` applied. ``check_bools=False`` skips the walk
    for JSON booleans among numbers, for a caller that knows there are none
    (:func:`read_predict`: a body without the bytes ``true`` and ``false``).
    """
    if not isinstance(doc, dict):
        raise _bad(f"JSON Value: {_debug(doc)} Is not object")
    name, signature = _signature_of(doc, signatures)
    if "instances" in doc:
        if "inputs" in doc:
            raise _bad(
                f"JSON Value: {_debug(doc)} Not formatted correctly expecting only "
                "one of 'inputs' or 'instances' keys to exist "
            )
        rows, key = doc["instances"], "predictions"
        if not isinstance(rows, list):
            raise _bad(
                f"JSON Value: {_debug(doc)} Expecting 'instances' to be an list/array"
            )
        if not rows:
            raise _bad(f"JSON Value: {_debug(doc)} No values in 'instances' array")
        if guards.max_batch is not None and len(rows) > guards.max_batch:
            raise _bad(
                f"batch of {len(rows)} exceeds the maximum batch of {guards.max_batch}"
            )
        inputs = _instances(rows, signature, check_bools)
    elif "inputs" in doc:
        _check_rows(doc["inputs"], signature, guards)
        inputs, key = _columns(doc["inputs"], signature, check_bools), "outputs"
    else:
        raise _bad("Missing 'inputs' or 'instances' key")
    for input_name, array in inputs.items():
        _check_spec(input_name, array, signature.inputs[input_name])
    _apply_guards(inputs, signature, guards)
    return ParsedRequest(name, inputs, key)


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64: ten bytes, two's complement
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


_FEATURE_KINDS = {1: "bytes", 2: "float", 3: "int64"}


def _feature_value(value, name: str) -> tuple[int, object]:
    """One JSON value of a tf.Example feature (``AddValueToFeature``):
    ``(kind, value)`` with kind 1 bytes, 2 float, 3 int64."""
    if value is True or value is False:
        return 3, int(value)
    if isinstance(value, str):
        return 1, value.encode()
    if _is_b64(value):
        return 1, _b64(value)
    if isinstance(value, float):
        return 2, value
    if isinstance(value, int):
        if value >= 2**64:  # rapidjson reads it as a double
            return 2, float(value)
        if value >= 2**63:
            raise _bad(
                f"Feature: {name} has uint64_t element. Only int64_t is supported."
            )
        return 3, value
    raise _bad(
        f"Feature: {name} has element with unexpected JSON type: {_json_type(value)}"
    )


def _feature(name: str, content) -> bytes:
    """A serialized ``tensorflow.Feature`` from a JSON value or list."""
    kind, values = 0, []
    for value in content if isinstance(content, list) else [content]:
        if isinstance(value, list):
            raise _bad(f"Feature: {name} has element with unexpected JSON type: Array")
        found, item = _feature_value(value, name)
        if kind and found != kind:
            raise _bad(
                f"Unexpected element type in feature: {name} expecting type: "
                f"{_FEATURE_KINDS[kind]}"
            )
        kind = found
        values.append(item)
    if not kind:
        return b""
    if kind == 1:
        inner = b"".join(_length_delimited(1, v) for v in values)
    elif kind == 2:
        inner = _length_delimited(1, np.asarray(values, "<f4").tobytes())
    else:
        inner = _length_delimited(1, b"".join(_varint(v) for v in values))
    return _length_delimited(kind, inner)


def serialize_example(obj) -> bytes:
    """A JSON object as a serialized ``tensorflow.Example``, as TF Serving
    builds it (``MakeExampleFromJsonObject``): strings and ``{"b64"}`` are
    bytes, numbers with a fraction or exponent floats, integers and booleans
    int64, one kind per feature."""
    if not isinstance(obj, dict):
        raise _bad(f"Example must be JSON object but got JSON {_json_type(obj)}")
    entries = b"".join(
        _length_delimited(
            1,
            _length_delimited(1, name.encode())
            + _length_delimited(2, _feature(name, content)),
        )
        for name, content in obj.items()
    )
    return _length_delimited(1, entries)  # Example.features


def read_examples_request(body: bytes) -> tuple[str, list[bytes]]:
    """A ``:classify`` or ``:regress`` body as TF Serving reads it
    (``FillClassifyRegressRequestFromJson``): its signature name (``""`` for
    the default) and the serialized tf.Examples, each with the ``context``
    example's features before its own (TF Serving concatenates the two
    serializations, so the example's own features win). The messages say
    "classify" for both methods, as TF Serving's do."""
    doc = decode_json(body)
    if not isinstance(doc, dict):
        raise _bad(f"JSON Value: {_debug(doc)} Is not object")
    name = doc.get("signature_name", "")
    if not isinstance(name, str):
        raise _bad(
            f"JSON Value: {_debug(doc)} not formatted correctly. "
            "'signature_name' key must be a string value."
        )
    context = serialize_example(doc["context"]) if "context" in doc else b""
    if "examples" not in doc:
        raise _bad(
            f"JSON Value: {_debug(doc)} When method is classify, key 'examples' "
            "is expected and was not found"
        )
    if not isinstance(doc["examples"], list):
        raise _bad(
            f"JSON Value: {_debug(doc)} Expecting 'examples' value to be an list/array"
        )
    if not doc["examples"]:
        raise _bad(f"JSON Value: {_debug(doc)} 'examples' value is an empty array")
    return name, [context + serialize_example(e) for e in doc["examples"]]


def classify_response(classes, scores) -> bytes:
    """``{"results": [[[label, score], ...], ...]}`` from a classify
    signature's ``classes`` (bytes) and ``scores`` outputs, either may be
    ``None`` (``MakeJsonFromClassificationResult``: a missing label is
    ``""``, a missing score 0)."""
    some = classes if classes is not None else scores
    rows = []
    for i in range(len(some)):
        count = len(some[i])
        labels = [_text(c) for c in classes[i]] if classes is not None else [""] * count
        values = [float(v) for v in scores[i]] if scores is not None else [0.0] * count
        rows.append([[label, value] for label, value in zip(labels, values)])
    return _dumps_nonfinite({"results": rows})


def regress_response(values: np.ndarray) -> bytes:
    """``{"results": [value, ...]}`` from a regress signature's ``outputs``."""
    return _dumps_nonfinite({"results": np.asarray(values, float).reshape(-1)})


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


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


@lru_cache(maxsize=64)
def _fast_input(signature: Signature) -> tuple[str, tuple[int, ...]] | None:
    """The one float input of a signature and its shape after the batch
    dimension, if the fast path can read it."""
    if len(signature.inputs) != 1:
        return None
    ((name, spec),) = signature.inputs.items()
    shape = spec.shape
    if spec.dtype_name != "DT_FLOAT" or not shape or shape[0] != -1:
        return None
    if any(d < 0 for d in shape[1:]):
        return None
    return name, tuple(shape[1:])


def _read_plain_floats(body: bytes, signatures: dict, guards: Guards):
    """The fast path for the common body: ``{"instances"|"inputs": <floats>}``
    for a ``serving_default`` with one float input of known shape.

    simdjson copies the numbers straight into a buffer, where ``orjson`` plus
    ``np.asarray`` build and walk about 800 Python lists per 28×28 image
    (chapter 8 times both). The buffer is flat, so the shape is proven on the
    text: with every number and blank deleted, the body must equal the skeleton
    of a regular ``(N, *input shape)`` array, and the count must be exact (``[]``
    and ``[0.5]`` share a skeleton). A batch over ``guards.max_batch`` is
    refused here with the general path's message; anything else returns
    ``None``, valid or not, and takes the general path and its error messages.
    """
    signature = signatures.get(DEFAULT_SIGNATURE)
    found = _fast_input(signature) if signature is not None else None
    if found is None:
        return None
    name, shape = found
    max_batch = guards.max_batch
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
        if (
            max_batch is not None
            and len(values) > max_batch
            and not isinstance(values[0], simdjson.Object)
        ):
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
    if rest or count < 1 or (max_batch is not None and count > max_batch):
        return None
    if body.translate(None, _NUMBER_AND_SPACE) != _skeleton(key, (count, *shape)):
        return None
    with np.errstate(over="ignore"):
        array = flat.astype(np.float32).reshape(count, *shape)
    if guards.value_range is not None or guards.finite_only:
        try:
            _apply_guards({name: array}, signature, guards)
        except ServingError:
            return None  # the general path says it
    key = "predictions" if key == "instances" else "outputs"
    return ParsedRequest(DEFAULT_SIGNATURE, {name: array}, key)


def read_predict(
    body: bytes, signatures: dict, guards: Guards = NO_GUARDS
) -> ParsedRequest:
    """Decode and validate a raw ``:predict`` body: what the server calls.

    Plain float batches take :func:`_read_plain_floats`; every other body, and
    every bad one, goes through :func:`decode_json` and :func:`parse_predict`,
    so the answer and the error message do not depend on the path taken. The
    fast path never sees a boolean (``true`` and ``false`` break the skeleton);
    the general one looks for booleans only when the body holds those bytes.
    """
    parsed = _read_plain_floats(body, signatures, guards)
    if parsed is None:
        bools = b"true" in body or b"false" in body
        parsed = parse_predict(decode_json(body), signatures, guards, bools)
    return parsed


def _jsonable(name: str, array: np.ndarray):
    """An output array as orjson can write it: strings decoded, or as
    ``{"b64": ...}`` for an output whose name ends in ``_bytes`` (TF Serving's
    ``IsNamedTensorBytes``)."""
    if array.dtype.kind not in "OSU":
        return array
    as_b64 = name.endswith("_bytes")

    def one(value):
        raw = value if isinstance(value, bytes) else str(value).encode()
        if as_b64:
            return {"b64": base64.b64encode(raw).decode()}
        return raw.decode(errors="replace")

    return np.frompyfunc(one, 1, 1)(array).tolist() if array.ndim else one(array.item())


def _dumps(doc) -> bytes:
    try:
        return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError:
        return json.dumps(doc, default=lambda a: a.tolist()).encode()


def predict_response(outputs: dict, key: str) -> bytes:
    """The JSON answer to a predict request (``MakeJsonFromTensors``).

    ``key`` is ``"predictions"`` (row format: one entry per row, the output's
    values for one output, an object of outputs for several; every output
    must have the same first dimension) or ``"outputs"`` (columnar: the
    output's values, or an object of outputs). Non-finite floats are written
    ``NaN``, ``Infinity`` and ``-Infinity``, as TF Serving writes them.
    """
    if not outputs:
        raise ServingError(500, "Cannot convert empty tensor map to JSON")
    names = sorted(outputs)
    values = {n: _jsonable(n, np.asarray(outputs[n])) for n in names}
    if key == "outputs":
        doc = {key: values[names[0]] if len(names) == 1 else values}
    else:
        batch = None
        for n in names:
            shape = np.shape(outputs[n])
            if not shape:
                raise ServingError(500, f"Tensor name: {n} has no shape information ")
            if batch is not None and shape[0] != batch:
                raise ServingError(
                    500,
                    f"Tensor name: {n} has inconsistent batch size: {shape[0]} "
                    f"expecting: {batch}",
                )
            batch = shape[0]
        if len(names) == 1:
            doc = {key: values[names[0]]}
        else:
            doc = {key: [{n: values[n][i] for n in names} for i in range(batch)]}
    if any(
        isinstance(v, np.ndarray) and v.dtype.kind == "f" and not np.isfinite(v).all()
        for v in values.values()
    ):
        return _dumps_nonfinite(doc)
    return _dumps(doc)


def _dumps_nonfinite(doc) -> bytes:
    """JSON with ``NaN`` and ``Infinity``, which orjson writes as ``null``."""

    def plain(value):
        if isinstance(value, np.ndarray):
            return value.tolist()
        if isinstance(value, np.generic):
            return value.item()
        raise TypeError(type(value).__name__)

    return json.dumps(doc, default=plain).encode()


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


def metadata_body(model: str, version: int, signature_defs: dict) -> dict:
    """``GET .../metadata``: TF Serving's model spec and ``signature_def`` map
    (``get_model_metadata_impl.cc``, printed by ``http_rest_api_util.cc``)."""
    return {
        "model_spec": {"name": model, "signature_name": "", "version": str(version)},
        "metadata": {"signature_def": {"signature_def": signature_defs}},
    }
