"""A SavedModel's signature defs, read without TensorFlow (chapter 8).

:func:`read_signature_defs` reads ``saved_model.pb`` with a small reader of
protobuf's wire format (no TensorFlow, no generated protobuf classes: the
LiteRT server reads a SavedModel's signatures too) and returns the
``signature_def`` map of the MetaGraphDef tagged ``serve`` (the one TF Serving
loads) as TF Serving's REST metadata prints it: protobuf's JSON with the
proto field names, fields without presence always printed, int64 as strings
and enums by name (``http_rest_api_util.cc``, ``ToJsonString``).
:func:`signatures_from_defs` turns that map into the :class:`Signature`
objects the server runs requests against.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "DATA_TYPES",
    "INIT_OP_SIGNATURE",
    "NUMPY_DTYPES",
    "PREDICT_METHOD",
    "Signature",
    "TensorSpec",
    "read_signature_defs",
    "signatures_from_defs",
    "tensor_info_json",
]

#: TensorFlow's ``DataType`` enum (``types.proto``), number → name; a number
#: missing here prints as the number, as protobuf's JSON does.
DATA_TYPES = dict(
    enumerate(
        "DT_INVALID DT_FLOAT DT_DOUBLE DT_INT32 DT_UINT8 DT_INT16 DT_INT8 DT_STRING "
        "DT_COMPLEX64 DT_INT64 DT_BOOL DT_QINT8 DT_QUINT8 DT_QINT32 DT_BFLOAT16 "
        "DT_QINT16 DT_QUINT16 DT_UINT16 DT_COMPLEX128 DT_HALF DT_RESOURCE "
        "DT_VARIANT DT_UINT32 DT_UINT64 DT_FLOAT8_E5M2 DT_FLOAT8_E4M3FN "
        "DT_FLOAT8_E4M3FNUZ DT_FLOAT8_E4M3B11FNUZ DT_FLOAT8_E5M2FNUZ DT_INT4 "
        "DT_UINT4 DT_INT2 DT_UINT2 DT_FLOAT4_E2M1FN".split()
    )
)
# The reference types of TF1 graphs: DT_FLOAT_REF is 101, and so on.
DATA_TYPES.update({100 + n: f"{name}_REF" for n, name in DATA_TYPES.items() if n})

#: The dtypes a JSON request can fill (``json_tensor.cc``), as NumPy dtypes;
#: ``DT_STRING`` elements are ``bytes`` in an object array.
NUMPY_DTYPES = {
    "DT_FLOAT": np.dtype(np.float32),
    "DT_DOUBLE": np.dtype(np.float64),
    "DT_HALF": np.dtype(np.float16),
    "DT_INT32": np.dtype(np.int32),
    "DT_INT16": np.dtype(np.int16),
    "DT_INT8": np.dtype(np.int8),
    "DT_UINT8": np.dtype(np.uint8),
    "DT_UINT16": np.dtype(np.uint16),
    "DT_INT64": np.dtype(np.int64),
    "DT_UINT32": np.dtype(np.uint32),
    "DT_UINT64": np.dtype(np.uint64),
    "DT_BOOL": np.dtype(np.bool_),
    "DT_STRING": np.dtype(object),
}

PREDICT_METHOD = "tensorflow/serving/predict"
#: The signature TF2 SavedModels carry for their initializers: listed in the
#: metadata, never served.
INIT_OP_SIGNATURE = "__saved_model_init_op"


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a signature.

    ``dtype_name`` is TensorFlow's (``"DT_FLOAT"``); ``shape`` has ``-1`` for
    an unknown dimension and is ``None`` for an unknown rank; ``tensor_name``
    is the graph tensor (``"serving_default_image:0"``).
    """

    dtype_name: str
    shape: tuple[int, ...] | None
    tensor_name: str = ""

    @property
    def dtype(self) -> np.dtype | None:
        """The NumPy dtype, or ``None`` for one JSON cannot fill."""
        return NUMPY_DTYPES.get(self.dtype_name)


@dataclass(frozen=True, eq=False)
class Signature:
    """A SignatureDef: its method and its named inputs and outputs.

    Compared and hashed by identity: the server caches what it derives from
    each loaded signature (the fast path's input) under the object itself.
    """

    method_name: str
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7
        if shift > 63:
            raise ValueError("malformed protobuf: a varint over 10 bytes")


def _fields(buf: bytes):
    """``(field number, value)`` for each field of one serialized message:
    an int for varints, bytes for everything else."""
    i, end = 0, len(buf)
    while i < end:
        key, i = _varint(buf, i)
        wire = key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            length, i = _varint(buf, i)
            value, i = buf[i : i + length], i + length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, i = buf[i : i + size], i + size
        else:
            raise ValueError(f"malformed protobuf: wire type {wire}")
        if i > end:
            raise ValueError("malformed protobuf: a field runs past its message")
        yield key >> 3, value


def _bytes(value) -> bytes:
    """A length-delimited field's bytes; a varint where bytes belong is an error
    (``bytes(n)`` would allocate ``n`` zero bytes)."""
    if isinstance(value, int):
        raise ValueError("malformed protobuf: a number where bytes belong")
    return bytes(value)


def _int64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _map_entries(entries: list[bytes]) -> dict[str, bytes]:
    found = {}
    for entry in entries:
        fields = dict(_fields(entry))
        found[_bytes(fields.get(1, b"")).decode()] = _bytes(fields.get(2, b""))
    return found


def _shape_json(buf: bytes) -> dict:
    dims, unknown = [], False
    for number, value in _fields(buf):
        if number == 2:
            dim = dict(_fields(value))
            size = _int64(dim.get(1, 0))
            dims.append({"size": str(size), "name": _bytes(dim.get(2, b"")).decode()})
        elif number == 3:
            unknown = bool(value)
    return {"dim": dims, "unknown_rank": unknown}


def tensor_info_json(buf: bytes) -> dict:
    """A serialized ``TensorInfo`` as protobuf's JSON (see the module docstring)."""
    info: dict = {"dtype": "DT_INVALID"}
    for number, value in _fields(buf):
        if number == 1:
            info["name"] = _bytes(value).decode()
        elif number == 2:
            info["dtype"] = DATA_TYPES.get(value, value)
        elif number == 3:
            info["tensor_shape"] = _shape_json(value)
        elif number == 4:  # CooSparse: three tensor names
            names = dict(_fields(value))
            keys = ("values_tensor_name", "indices_tensor_name")
            keys += ("dense_shape_tensor_name",)
            info["coo_sparse"] = {
                key: _bytes(names.get(i + 1, b"")).decode()
                for i, key in enumerate(keys)
            }
        elif number == 5:  # CompositeTensor: not servable over REST
            info["composite_tensor"] = {}
    return info


def _defaults_json(entries: dict[str, bytes]) -> dict:
    """``SignatureDef.defaults`` (TensorProtos) as JSON: through protobuf's own
    printer where TensorBoard's copy of the protos is installed, else only
    their dtype and shape (few SavedModels set defaults at all)."""
    if not entries:
        return {}
    try:
        from google.protobuf import json_format
        from tensorboard.compat.proto import tensor_pb2
    except ImportError:
        out = {}
        for key, buf in entries.items():
            fields = dict(_fields(buf))
            out[key] = {"dtype": DATA_TYPES.get(fields.get(1, 0), "DT_INVALID")}
            if 2 in fields:
                out[key]["tensor_shape"] = _shape_json(fields[2])
        return out
    return {
        key: json_format.MessageToDict(
            tensor_pb2.TensorProto.FromString(buf),
            preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True,
        )
        for key, buf in entries.items()
    }


def _signature_json(buf: bytes) -> dict:
    inputs, outputs, defaults, method = [], [], [], ""
    for number, value in _fields(buf):
        if number == 1:
            inputs.append(value)
        elif number == 2:
            outputs.append(value)
        elif number == 3:
            method = _bytes(value).decode()
        elif number == 4:
            defaults.append(value)
    return {
        "inputs": {k: tensor_info_json(v) for k, v in _map_entries(inputs).items()},
        "outputs": {k: tensor_info_json(v) for k, v in _map_entries(outputs).items()},
        "method_name": method,
        "defaults": _defaults_json(_map_entries(defaults)),
    }


def _meta_graph_tags(buf: bytes) -> list[str]:
    for number, value in _fields(buf):
        if number == 1:  # meta_info_def
            return [_bytes(v).decode() for n, v in _fields(value) if n == 4]
    return []


def read_signature_defs(path: str | Path, tag: str = "serve") -> dict:
    """The ``signature_def`` map of a SavedModel, as TF Serving prints it.

    ``path`` is ``saved_model.pb`` or the directory holding it; ``tag`` picks
    the MetaGraphDef (TF Serving loads ``serve``). Raises
    :class:`FileNotFoundError` without the file and :class:`ValueError` for a
    file that is not a SavedModel or has no MetaGraphDef tagged ``tag``.
    Used in chapter 8.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "saved_model.pb"
    data = path.read_bytes()
    try:
        graphs = [_bytes(value) for number, value in _fields(data) if number == 2]
        tagged = [g for g in graphs if tag in _meta_graph_tags(g)]
        entries = [v for n, v in _fields(tagged[0]) if n == 5] if tagged else []
        defs = {k: _signature_json(v) for k, v in _map_entries(entries).items()}
    except (IndexError, ValueError, TypeError) as exc:  # UnicodeDecodeError too
        raise ValueError(f"{path}: not a SavedModel ({exc})") from None
    if not tagged:
        raise ValueError(f"{path}: no MetaGraphDef tagged {tag!r}")
    return dict(sorted(defs.items()))


def _spec(info: dict) -> TensorSpec:
    shape_json = info.get("tensor_shape")
    if shape_json is None or shape_json.get("unknown_rank"):
        shape = None
    else:
        shape = tuple(int(d["size"]) for d in shape_json["dim"])
    return TensorSpec(str(info.get("dtype")), shape, info.get("name", ""))


def signatures_from_defs(defs: dict) -> dict[str, Signature]:
    """The servable signatures of a ``signature_def`` map (JSON, as
    :func:`read_signature_defs` returns it): all but ``__saved_model_init_op``."""
    return {
        name: Signature(
            d.get("method_name", ""),
            {k: _spec(v) for k, v in d.get("inputs", {}).items()},
            {k: _spec(v) for k, v in d.get("outputs", {}).items()},
        )
        for name, d in defs.items()
        if name != INIT_OP_SIGNATURE
    }
