"""Post-training quantization to TFLite and evaluation with LiteRT (chapter 6).

:func:`convert` turns a Keras 3 model into a TFLite flatbuffer in one of four
modes; :func:`evaluate_tflite` runs a flatbuffer on a whole test set with the
LiteRT interpreter (``ai_edge_litert``, not TensorFlow) and measures accuracy,
latency per image at batch 1 and throughput at batch 64. The arithmetic the
int8 kernels use is in :mod:`cnnlearn.compress.affine`. Chapter 8 exports its
TFLite models through :func:`convert`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import cnnlearn._tf  # noqa: F401  (quiet TensorFlow start-up; before Keras)

# isort: split
import keras
import numpy as np
from ai_edge_litert.interpreter import Interpreter

from cnnlearn.compress.affine import from_output_tensor, to_input_tensor
from cnnlearn.compress.common import quiet, read_bytes, size_report

__all__ = [
    "MODES",
    "convert",
    "evaluate_tflite",
    "predict_tflite",
    "tensor_details",
]

MODES = ("float32", "dynamic", "int8", "float16")


def convert(
    model: keras.Model,
    mode: str = "float32",
    representative_data: np.ndarray | None = None,
    *,
    num_calibration: int = 300,
) -> bytes:
    """Convert ``model`` to a TFLite flatbuffer and return its bytes.

    Parameters
    ----------
    model
        A Keras 3 model taking float32 NHWC images.
    mode
        ``"float32"`` (no quantization); ``"dynamic"`` (int8 weights, float
        activations, quantized on the fly); ``"int8"`` (full integer: weights
        and activations int8, int8 input and output, calibrated on
        ``representative_data``); ``"float16"`` (weights stored as float16).
    representative_data
        Float32 preprocessed images ``(N, H, W, C)``, as the model sees them.
        Required for ``"int8"``; the first ``num_calibration`` are used to find
        each activation's range.
    num_calibration
        How many representative images calibrate the int8 ranges.

    Returns
    -------
    bytes
        The flatbuffer; write it to a ``.tflite`` file or pass it to
        :func:`evaluate_tflite`. Used in chapters 6 and 8.
    """
    if mode not in MODES:
        raise ValueError(f"unknown quantization mode {mode!r}: expected one of {MODES}")
    if not isinstance(model, keras.Model):
        raise ValueError(f"expected a keras.Model, got {type(model).__name__}")
    import tensorflow as tf  # the converter needs TF, whatever the Keras backend

    rep = None
    if mode == "int8":
        if representative_data is None:
            raise ValueError("mode='int8' needs representative_data (float32 images)")
        rep = np.asarray(representative_data)
        if rep.dtype != np.float32 or rep.ndim != len(model.input_shape):
            raise ValueError(
                "representative_data must be float32 preprocessed images shaped "
                f"like the model input {model.input_shape}, got {rep.dtype} {rep.shape}"
            )
        if len(rep) == 0:
            raise ValueError("representative_data is empty")
        rep = rep[:num_calibration]

    with quiet():
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        if mode != "float32":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if mode == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if mode == "int8":

            def representative_dataset():
                for image in rep:
                    yield [image[np.newaxis]]

            converter.representative_dataset = representative_dataset
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        return bytes(converter.convert())


def _interpreter(content: bytes, num_threads: int | None) -> Interpreter:
    with quiet():  # the XNNPACK banner goes to stderr from C++
        interpreter = Interpreter(model_content=content, num_threads=num_threads)
        interpreter.allocate_tensors()
    return interpreter


def _set_batch(interpreter, batch: int, shape: tuple[int, ...]) -> None:
    index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(index, [batch, *shape], strict=False)
    interpreter.allocate_tensors()


def _invoke(interpreter, x: np.ndarray) -> np.ndarray:
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    interpreter.set_tensor(inp["index"], to_input_tensor(x, inp))
    interpreter.invoke()
    return from_output_tensor(interpreter.get_tensor(out["index"]), out)


def _predict(interpreter, x: np.ndarray, batch_size: int) -> np.ndarray:
    shape = tuple(x.shape[1:])
    outputs = []
    _set_batch(interpreter, batch_size, shape)
    for start in range(0, len(x), batch_size):
        chunk = x[start : start + batch_size]
        if len(chunk) != batch_size:
            _set_batch(interpreter, len(chunk), shape)
        outputs.append(_invoke(interpreter, chunk))
    return np.concatenate(outputs)


def predict_tflite(
    model: str | Path | bytes,
    x: np.ndarray,
    *,
    batch_size: int = 256,
    num_threads: int | None = None,
) -> np.ndarray:
    """The float outputs of a TFLite model on float32 images, run by LiteRT.

    int8 inputs and outputs are quantized and dequantized with the tensors'
    own scale and zero point. Used by :func:`evaluate_tflite` and chapter 8's
    parity check and deploy gate.
    """
    x = np.asarray(x, dtype=np.float32)
    return _predict(_interpreter(read_bytes(model), num_threads), x, batch_size)


def evaluate_tflite(
    model: str | Path | bytes,
    x: np.ndarray,
    y: np.ndarray,
    *,
    batch_size: int = 250,
    latency_images: int = 300,
    throughput_batch: int = 64,
    throughput_batches: int = 20,
    num_threads: int | None = 1,
) -> dict:
    """Run a TFLite model on ``(x, y)`` with LiteRT; accuracy, latency, sizes.

    Parameters
    ----------
    model
        A ``.tflite`` path or the flatbuffer bytes from :func:`convert`.
    x, y
        Float32 preprocessed images (as for the Keras model) and int labels.
        For int8 models the images are quantized with the input tensor's
        scale and zero point, exactly as a device would.
    batch_size
        Batch used for the accuracy pass over all of ``x``.
    latency_images
        How many single images (batch 1) are timed, after a warm-up.
    throughput_batch, throughput_batches
        Throughput is measured on this many batches of this size.
    num_threads
        LiteRT CPU threads; 1 by default (an edge device, steadier timings).

    Returns
    -------
    dict
        ``accuracy``, ``n``, ``latency_ms`` (median per image at batch 1),
        ``latency_ms_p90``, ``throughput_per_s`` (images per second at
        ``throughput_batch``), ``input_dtype``, ``raw_bytes`` and
        ``gzip_bytes``. Used in chapters 6 and 8.
    """
    content = read_bytes(model)
    x = np.asarray(x)
    y = np.asarray(y).astype(np.int64).ravel()
    if x.dtype != np.float32:
        raise ValueError(f"expected float32 preprocessed images, got {x.dtype}")
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(
            f"x and y must be non-empty and of one length: {len(x)}, {len(y)}"
        )
    interpreter = _interpreter(content, num_threads)
    shape = tuple(x.shape[1:])
    expected = tuple(int(s) for s in interpreter.get_input_details()[0]["shape"][1:])
    if shape != expected:
        raise ValueError(f"model expects images shaped {expected}, got {shape}")

    probabilities = _predict(interpreter, x, batch_size)
    accuracy = float(np.mean(probabilities.argmax(axis=-1) == y))

    _set_batch(interpreter, 1, shape)
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]["index"]
    n_latency = min(latency_images, len(x))
    singles = to_input_tensor(x[:n_latency], inp)  # quantized before the clock starts
    for i in range(min(20, n_latency)):  # warm-up
        _invoke(interpreter, x[i : i + 1])
    times = []
    for i in range(n_latency):
        start = time.perf_counter()
        interpreter.set_tensor(inp["index"], singles[i : i + 1])
        interpreter.invoke()
        interpreter.get_tensor(out)
        times.append(time.perf_counter() - start)

    batch = x[:throughput_batch]
    if len(batch) < throughput_batch:
        batch = np.resize(batch, (throughput_batch, *shape)).astype(np.float32)
    _set_batch(interpreter, throughput_batch, shape)
    _invoke(interpreter, batch)
    start = time.perf_counter()
    for _ in range(throughput_batches):
        _invoke(interpreter, batch)
    elapsed = time.perf_counter() - start

    return {
        "accuracy": accuracy,
        "n": int(len(x)),
        "latency_ms": 1000 * float(np.median(times)),
        "latency_ms_p90": 1000 * float(np.percentile(times, 90)),
        "throughput_per_s": throughput_batch * throughput_batches / elapsed,
        "throughput_batch": throughput_batch,
        "num_threads": num_threads,
        "input_dtype": np.dtype(interpreter.get_input_details()[0]["dtype"]).name,
        **size_report(content),
    }


def tensor_details(model: str | os.PathLike | bytes) -> list[dict]:
    """Name, dtype, shape and quantization (scale, zero point) of every tensor.

    Shows where an int8 model keeps float scales (per output channel for
    convolution kernels) and int32 biases. Used in chapter 6.
    """
    interpreter = _interpreter(read_bytes(model), 1)
    rows = []
    for detail in interpreter.get_tensor_details():
        q = detail.get("quantization_parameters", {})
        rows.append(
            {
                "name": detail["name"],
                "dtype": np.dtype(detail["dtype"]).name,
                "shape": [int(s) for s in detail["shape"]],
                "scales": np.asarray(q.get("scales", [])).tolist(),
                "zero_points": np.asarray(q.get("zero_points", [])).tolist(),
            }
        )
    return rows
