"""TF Serving's gRPC API: ``PredictionService`` and ``ModelService`` (chapter 8).

``Predict`` and ``GetModelMetadata`` (``tensorflow.serving.PredictionService``)
and ``GetModelStatus`` (``tensorflow.serving.ModelService``) are served with
grpcio on their own port, from the protos and stubs of
``tensorflow-serving-api``, so a client written against ``tensorflow/serving``
(``prediction_service_pb2_grpc.PredictionServiceStub``) works unchanged. Each
request is answered as TF Serving's ``predict_util.cc``,
``get_model_metadata_impl.cc`` and ``get_model_status_impl.cc`` answer it,
status codes and messages included:

=======================  ===============================================
``INVALID_ARGUMENT``     no ``model_spec`` ("Missing ModelSpec"), no model
                         name, inputs that do not match the signature
                         (missing, extra, unparsable, wrong dtype or
                         shape), a bad ``output_filter``, an unknown
                         version label, a batch over ``max_batch_size``
``NOT_FOUND``            an unknown model, or a version not served
``FAILED_PRECONDITION``  an unknown ``signature_name``
``UNAVAILABLE``          the batching queue is full or closed
``INTERNAL``             the backend failed (logged with its traceback)
=======================  ===============================================

The wording is TF Serving's except for a wrong dtype or shape, which TF
Serving leaves to the TensorFlow session ("Expects arg[0] to be float but
string is provided"); here the check names the input and the signature's
``DT_`` dtype or shape.

The service reads the models through a small :class:`ModelSource` (``find``
a loaded version, the REST ``status`` body of a model); the server's is
:class:`~cnnlearn.deploy.state.StateSource`, and
:func:`cnnlearn.deploy.server.start_grpc` (``cnnlearn serve --grpc-port``)
starts this service beside the REST one, so both answer from the same state:
the status and metadata answers are the REST answers' JSON parsed into TF
Serving's protos (``google.protobuf.json_format``), which TF Serving's REST
API prints from the same protos. A loaded version is what
:mod:`cnnlearn.deploy.backends` describes (``version``, ``signatures``,
``run``, ``signature_def_map``).
Tensors go from ``TensorProto`` to NumPy with ``tf.make_ndarray`` (content or
typed fields); answers are written in typed fields (``float_val``, ...), as
TF Serving writes them by default, so clients that read ``float_val``
directly work too. Classify, Regress, MultiInference and
HandleReloadConfigRequest answer ``UNIMPLEMENTED``.

The messages TF Serving's gRPC server accepts may be up to 2 GiB; here the
default limit is :data:`DEFAULT_MAX_MESSAGE_BYTES` (a bound like the REST
server's ``max_body_bytes``), so one request cannot take the server's memory.

This module imports TensorFlow (TF Serving's protos are TensorFlow's): the
LiteRT server imports it only when gRPC is asked for.
"""

from __future__ import annotations

import cnnlearn._tf  # noqa: F401  (quiet TensorFlow start-up)

# isort: split
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from cnnlearn import progress
from cnnlearn.deploy.batching import BatcherClosedError, QueueFullError

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DEFAULT_SIGNATURE",
    "ModelServicer",
    "ModelSource",
    "PredictionServicer",
    "RpcError",
    "get_model_metadata",
    "get_model_status",
    "predict",
    "start_server",
    "to_ndarray",
    "to_tensor_proto",
]

log = progress.logger("deploy")

DEFAULT_SIGNATURE = "serving_default"
#: The largest request message accepted, in bytes.
DEFAULT_MAX_MESSAGE_BYTES = 64 * 2**20

_HTTP_TO_GRPC = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
}


class ModelSource(Protocol):
    """What the gRPC service reads: the server's models.

    ``find(name, version, label)`` returns the loaded version a request names
    (``version`` and ``label`` both ``None``: the latest one served) or
    raises: an exception with ``status`` 404 or a :class:`LookupError` for an
    unknown model or version (``NOT_FOUND``), one with ``status`` 400 or a
    :class:`ValueError` for a bad request such as an unknown label
    (``INVALID_ARGUMENT``). ``status(name)`` returns the REST status body of
    every version of ``name`` (``{"model_version_status": [...]}``) or raises
    the same way. Used in chapter 8.
    """

    def find(self, name: str, version: int | None, label: str | None) -> Any: ...

    def status(self, name: str) -> dict: ...


#: ``run(model_name, loaded, signature_name, inputs) -> outputs``: how a
#: request is run (the default calls ``loaded.run``; the server passes one
#: that goes through its batcher and updates its metrics).
Runner = Callable[[str, Any, str, dict[str, np.ndarray]], dict[str, np.ndarray]]


class RpcError(Exception):
    """A request answered with a gRPC error: ``code`` and a one-line
    ``message``, as TF Serving words it. Used in chapter 8."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _invalid(message: str) -> RpcError:
    return RpcError(grpc.StatusCode.INVALID_ARGUMENT, message)


def _as_rpc_error(exc: Exception, from_source: bool = False) -> RpcError:
    """The gRPC error for an exception from the model source (``from_source``:
    a :class:`LookupError` is an unknown model) or from running a request (a
    :class:`ValueError` is the client's, anything else the server's)."""
    if isinstance(exc, RpcError):
        return exc
    message = " ".join(str(getattr(exc, "message", exc)).split())
    status = getattr(exc, "status", None)
    if isinstance(status, int) and status in _HTTP_TO_GRPC:
        return RpcError(_HTTP_TO_GRPC[status], message)
    if isinstance(exc, QueueFullError | BatcherClosedError):
        return RpcError(grpc.StatusCode.UNAVAILABLE, message)
    if from_source and isinstance(exc, LookupError):
        if isinstance(exc, KeyError) and exc.args:  # str(KeyError) adds quotes
            message = " ".join(str(exc.args[0]).split())
        return RpcError(grpc.StatusCode.NOT_FOUND, message)
    if isinstance(exc, ValueError):
        return _invalid(message)
    if isinstance(exc, TimeoutError):
        return RpcError(grpc.StatusCode.DEADLINE_EXCEEDED, message)
    log.error("gRPC request failed", exc_info=exc)
    return RpcError(grpc.StatusCode.INTERNAL, f"Internal error: {type(exc).__name__}")


def to_ndarray(proto: tensor_pb2.TensorProto, alias: str = "") -> np.ndarray:
    """The NumPy array of a ``TensorProto`` (``tensor_content`` or typed
    fields; a field shorter than the shape is filled with its last value, as
    TensorFlow's ``Tensor::FromProto`` does). Raises :class:`RpcError`
    ``INVALID_ARGUMENT`` ("tensor parsing error: <alias>") for a proto that
    does not make a tensor. Used in chapter 8."""
    try:
        return tf.make_ndarray(proto)
    except Exception as exc:  # TF raises TypeError, ValueError or its own
        raise _invalid(
            f"tensor parsing error: {alias} ({type(exc).__name__})"
        ) from None


# NumPy kind/size -> the TensorProto field TF Serving's AsProtoField fills.
_FIELDS = {
    np.dtype(np.float32): "float_val",
    np.dtype(np.float64): "double_val",
    np.dtype(np.int32): "int_val",
    np.dtype(np.int16): "int_val",
    np.dtype(np.int8): "int_val",
    np.dtype(np.uint8): "int_val",
    np.dtype(np.uint16): "int_val",
    np.dtype(np.int64): "int64_val",
    np.dtype(np.uint32): "uint32_val",
    np.dtype(np.uint64): "uint64_val",
    np.dtype(np.bool_): "bool_val",
}


def to_tensor_proto(
    array: np.ndarray, tensor_content: bool = False
) -> tensor_pb2.TensorProto:
    """A ``TensorProto`` of ``array`` with its values in the typed field
    (``float_val``, ``int_val``, ``string_val``, ...), as TF Serving writes
    answers by default (``Tensor::AsProtoField``), or, with
    ``tensor_content``, as raw bytes in ``tensor_content`` (TF Serving's
    ``--enable_serialization_as_tensor_content``: smaller and faster for big
    outputs). Dtypes without a typed field here go through
    ``tf.make_tensor_proto``. Strings are bytes (``str`` is UTF-8 encoded).
    Used in chapter 8."""
    array = np.asarray(array)
    field = _FIELDS.get(array.dtype)
    is_text = array.dtype.kind in "OSU"
    if (field is None or tensor_content) and not is_text:
        return tf.make_tensor_proto(array)
    dtype = tf.string if is_text else tf.as_dtype(array.dtype)
    proto = tensor_pb2.TensorProto(dtype=dtype.as_datatype_enum)
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    values = array.ravel().tolist()
    if is_text:
        values = [v.encode() if isinstance(v, str) else bytes(v) for v in values]
        field = "string_val"
    getattr(proto, field).extend(values)
    return proto


def _signature(loaded, name: str):
    key = name or DEFAULT_SIGNATURE
    if key not in loaded.signatures:
        raise RpcError(
            grpc.StatusCode.FAILED_PRECONDITION,
            f'Serving signature key "{key}" not found.',
        )
    return key, loaded.signatures[key]


def _check_input_names(sent: set[str], expected: set[str]) -> None:
    """TF Serving's ``VerifyRequestInputsSize`` and ``GetInputValues``."""
    if len(sent) != len(expected):
        raise _invalid(
            f"input size does not match signature: {len(sent)}!={len(expected)} "
            f"len({{{','.join(sorted(sent))}}}) != "
            f"len({{{','.join(sorted(expected))}}}). "
            f"Sent extra: {{{','.join(sorted(sent - expected))}}}. "
            f"Missing but required: {{{','.join(sorted(expected - sent))}}}."
        )
    extra = sorted(sent - expected)
    if extra:
        raise _invalid(
            f"input tensor alias not found in signature: {extra[0]}. Inputs "
            f"expected to be in the set {{{','.join(sorted(expected))}}}."
        )


def _check_input(alias: str, array: np.ndarray, spec) -> None:
    got = types_pb2.DataType.Name(tf.as_dtype(array.dtype).as_datatype_enum)
    if got != spec.dtype_name:
        raise _invalid(
            f"Expects input {alias} to be {spec.dtype_name} but {got} is provided"
        )
    shape = spec.shape
    if shape is None:  # unknown rank
        return
    if len(array.shape) != len(shape) or any(
        want not in (-1, None) and want != got for got, want in zip(array.shape, shape)
    ):
        wanted = [-1 if d is None else d for d in shape]
        raise _invalid(
            f"input {alias} has shape {list(array.shape)}; the signature expects "
            f"{wanted} (-1: any size)"
        )


def _inputs(request, signature) -> dict[str, np.ndarray]:
    sent, expected = set(request.inputs), set(signature.inputs)
    _check_input_names(sent, expected)
    inputs = {}
    for alias in sorted(sent):
        array = to_ndarray(request.inputs[alias], alias)
        _check_input(alias, array, signature.inputs[alias])
        inputs[alias] = array
    return inputs


def _output_names(request, signature) -> list[str]:
    """TF Serving's ``PreProcessPrediction``: the filter, checked, or all."""
    names: list[str] = []
    for alias in request.output_filter:
        if alias not in signature.outputs:
            raise _invalid(
                f"output tensor alias not found in signature: {alias} Outputs "
                f"expected to be in the set {{{','.join(sorted(signature.outputs))}}}."
            )
        if alias in names:
            raise _invalid(f"duplicate output tensor alias: {alias}")
        names.append(alias)
    return names or list(signature.outputs)


def _find(source: ModelSource, spec) -> Any:
    """The loaded version a ``ModelSpec`` names (TF Serving's
    ``ServableRequestFromModelSpec``)."""
    if not spec.name:
        raise _invalid("ModelSpec has no name specified.")
    choice = spec.WhichOneof("version_choice")
    version = spec.version.value if choice == "version" else None
    label = spec.version_label if choice == "version_label" else None
    try:
        return source.find(spec.name, version, label)
    except Exception as exc:
        raise _as_rpc_error(exc, from_source=True) from None


def _default_run(name: str, loaded, signature: str, inputs: dict) -> dict:
    return loaded.run(signature, inputs)


def predict(
    source: ModelSource,
    request: predict_pb2.PredictRequest,
    run: Runner | None = None,
    tensor_content: bool = False,
) -> predict_pb2.PredictResponse:
    """Answer a ``PredictRequest`` as TF Serving's ``RunPredict`` does.

    Finds the version, checks the signature, the input names (all of the
    signature's, no others), each input's dtype and shape and the
    ``output_filter``, runs ``run`` (default: ``loaded.run``) and answers the
    outputs asked for with the ``model_spec`` that ran (name, version,
    signature name), in typed fields or, with ``tensor_content``, as raw
    bytes (:func:`to_tensor_proto`). Raises :class:`RpcError`. Used in
    chapter 8.
    """
    if not request.HasField("model_spec"):
        raise _invalid("Missing ModelSpec")
    loaded = _find(source, request.model_spec)
    key, signature = _signature(loaded, request.model_spec.signature_name)
    inputs = _inputs(request, signature)
    names = _output_names(request, signature)
    try:
        outputs = (run or _default_run)(request.model_spec.name, loaded, key, inputs)
    except Exception as exc:
        raise _as_rpc_error(exc) from None
    response = predict_pb2.PredictResponse()
    response.model_spec.name = request.model_spec.name
    response.model_spec.version.value = loaded.version
    response.model_spec.signature_name = key
    for name in names:
        if name not in outputs:
            raise RpcError(
                grpc.StatusCode.INTERNAL, f"the backend gave no output {name}"
            )
        response.outputs[name].CopyFrom(to_tensor_proto(outputs[name], tensor_content))
    return response


def get_model_metadata(
    source: ModelSource, request: get_model_metadata_pb2.GetModelMetadataRequest
) -> get_model_metadata_pb2.GetModelMetadataResponse:
    """Answer a ``GetModelMetadataRequest`` as TF Serving does: the version's
    ``SignatureDefMap`` packed in ``metadata["signature_def"]``, only
    ``"signature_def"`` supported as a field. Raises :class:`RpcError`. Used
    in chapter 8."""
    if not request.HasField("model_spec"):
        raise _invalid("Missing ModelSpec")
    if not request.metadata_field:
        raise _invalid(
            "GetModelMetadataRequest must specify at least one metadata_field"
        )
    for field in request.metadata_field:
        if field != "signature_def":
            raise _invalid(f"Metadata field {field} is not supported")
    loaded = _find(source, request.model_spec)
    defs = get_model_metadata_pb2.SignatureDefMap()
    json_format.ParseDict(
        {"signature_def": loaded.signature_def_map()}, defs, ignore_unknown_fields=True
    )
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = request.model_spec.name
    response.model_spec.version.value = loaded.version
    response.metadata["signature_def"].Pack(defs)
    return response


def get_model_status(
    source: ModelSource, request: get_model_status_pb2.GetModelStatusRequest
) -> get_model_status_pb2.GetModelStatusResponse:
    """Answer a ``GetModelStatusRequest`` as TF Serving's
    ``GetModelStatusImpl`` does: every version's state (or the one asked
    for), ``NOT_FOUND`` in TF Serving's words for a model or version it does
    not know. A version label is ignored, as there. Raises
    :class:`RpcError`. Used in chapter 8."""
    if not request.HasField("model_spec"):
        raise _invalid("Missing ModelSpec")
    spec = request.model_spec
    try:
        rows = source.status(spec.name)["model_version_status"]
    except Exception as exc:
        error = _as_rpc_error(exc, from_source=True)
        if error.code != grpc.StatusCode.NOT_FOUND:
            raise error from None
        rows = []
    if spec.HasField("version"):
        rows = [r for r in rows if int(r["version"]) == spec.version.value]
        if not rows:
            raise RpcError(
                grpc.StatusCode.NOT_FOUND,
                f"Could not find version {spec.version.value} of model {spec.name}",
            )
    if not rows:
        raise RpcError(
            grpc.StatusCode.NOT_FOUND,
            f"Could not find any versions of model {spec.name}",
        )
    response = get_model_status_pb2.GetModelStatusResponse()
    json_format.ParseDict(
        {"model_version_status": rows}, response, ignore_unknown_fields=True
    )
    return response


def _answer(context: grpc.ServicerContext, handler: Callable, *args):
    try:
        return handler(*args)
    except RpcError as exc:
        context.abort(exc.code, exc.message)
    except Exception as exc:  # a bug must answer INTERNAL, not kill the thread
        error = _as_rpc_error(exc)
        context.abort(error.code, error.message)


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """``tensorflow.serving.PredictionService``: :func:`predict` and
    :func:`get_model_metadata` over ``source``; ``run`` and
    ``tensor_content`` as for :func:`predict`. Used in chapter 8."""

    def __init__(
        self,
        source: ModelSource,
        run: Runner | None = None,
        tensor_content: bool = False,
    ):
        self.source = source
        self.run = run
        self.tensor_content = tensor_content

    def Predict(self, request, context):  # noqa: N802  (gRPC's method name)
        return _answer(
            context, predict, self.source, request, self.run, self.tensor_content
        )

    def GetModelMetadata(self, request, context):  # noqa: N802
        return _answer(context, get_model_metadata, self.source, request)


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """``tensorflow.serving.ModelService``: :func:`get_model_status` over
    ``source`` (``HandleReloadConfigRequest`` is ``UNIMPLEMENTED``). Used in
    chapter 8."""

    def __init__(self, source: ModelSource):
        self.source = source

    def GetModelStatus(self, request, context):  # noqa: N802
        return _answer(context, get_model_status, self.source, request)


def start_server(
    source: ModelSource,
    host: str = "127.0.0.1",
    port: int = 0,
    run: Runner | None = None,
    max_workers: int = 16,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    tensor_content: bool = False,
) -> tuple[grpc.Server, int]:
    """Start both services on ``host:port`` (port 0: a free one).

    Parameters
    ----------
    source
        The :class:`ModelSource` to answer from.
    host, port
        Where to listen (TF Serving's ``--port`` listens on all interfaces;
        here loopback unless asked).
    run
        How a predict request runs (see :func:`predict`).
    max_workers
        Threads answering requests.
    max_message_bytes
        The largest request accepted (``RESOURCE_EXHAUSTED`` over it).
    tensor_content
        Answer tensors as raw ``tensor_content`` (see :func:`to_tensor_proto`).

    Returns
    -------
    The started ``grpc.Server`` (``server.stop(grace)`` stops it) and the
    port it listens on.

    Raises
    ------
    OSError
        The address cannot be bound.

    Used in chapter 8.
    """
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", -1),
        ("grpc.so_reuseport", 0),  # a port in use is an error, not shared
    ]
    executor = ThreadPoolExecutor(max_workers, thread_name_prefix="grpc")
    server = grpc.server(executor, options=options)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(source, run, tensor_content), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(
        ModelServicer(source), server
    )
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as exc:  # grpcio >= 1.5x raises instead of returning 0
        raise OSError(f"cannot listen for gRPC on {address}: {exc}") from None
    if not bound:
        raise OSError(f"cannot listen for gRPC on {address}")
    server.start()
    log.info("gRPC listening on %s:%d", host, bound)
    return server, bound
