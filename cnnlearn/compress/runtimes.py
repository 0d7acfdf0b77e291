"""Inference runtimes side by side: LiteRT and ONNX Runtime, timed fairly (chapter 6).

Chapter 6 asks whether quantization makes inference faster. The answer depends on
the runtime, the batch size and the number of threads, and a machine shared with
other work makes one timing of one configuration worth little. This module
builds every runtime's model from one Keras model, makes one timed call per
(runtime, batch, threads) and times all of them in *interleaved rounds*: each
round visits every call once, in a new order, so a burst of outside load slows
all of them rather than one. Ratios (int8 over float32) are taken round by round
and their median reported.

The runtimes (:data:`RUNTIMES`):

* LiteRT (``ai_edge_litert``) running the flatbuffers of
  :func:`cnnlearn.compress.quantize.convert`: float32, float16, dynamic range,
  full int8;
* ONNX Runtime (CPU) running ``model.export(format="onnx")``
  (:func:`cnnlearn.deploy.export.export_onnx`) in float32, and the same graph
  quantized by ``onnxruntime.quantization.quantize_static``: QDQ format, int8
  weights per output channel, int8 activations calibrated on real images
  (:func:`onnx_int8`).

What a timed call covers: the runtime alone. Its input is prepared before the
clock starts (quantized to int8 for LiteRT's int8 model, as a camera's uint8
pixels would be on a device) and its raw output tensor is fetched but not
dequantized. ONNX Runtime's QDQ model takes float32 and quantizes inside the
graph, so that work is inside its clock. ``float_io=True`` puts LiteRT's
NumPy quantization and dequantization inside the clock as well.

``benchmarks/runtimes.py`` writes the table chapter 6 shows
(``benchmarks/results/runtimes.json``). ONNX Runtime is an optional dependency
(``cnnlearn[dev]``): it is imported where it is used.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path

import numpy as np

from cnnlearn.compress.affine import from_output_tensor, to_input_tensor
from cnnlearn.compress.common import quiet
from cnnlearn.deploy.export import inference_model

__all__ = [
    "LITERT_MODES",
    "ONNX_QUANTIZATION",
    "RUNTIMES",
    "CalibrationReader",
    "accuracy",
    "build_artifacts",
    "litert_call",
    "make_call",
    "onnx_call",
    "onnx_int8",
    "onnx_session",
    "predict",
    "ratios",
    "summarize",
    "time_rounds",
]

# runtime name -> cnnlearn.compress.quantize mode, for the LiteRT ones
LITERT_MODES = {
    "litert-float32": "float32",
    "litert-float16": "float16",
    "litert-dynamic": "dynamic",
    "litert-int8": "int8",
}
RUNTIMES = (*LITERT_MODES, "onnx-float32", "onnx-int8")
# How onnx_int8 calls quantize_static (recorded in the result file).
ONNX_QUANTIZATION = {
    "quant_format": "QDQ",
    "per_channel": True,
    "activation_type": "QInt8",
    "weight_type": "QInt8",
    "calibrate_method": "MinMax",
    "pre_process": "onnxruntime.quantization.shape_inference.quant_pre_process",
}


class CalibrationReader:
    """Feeds real images to ``quantize_static``'s calibration, a batch at a time.

    ONNX Runtime's ``CalibrationDataReader`` is an abstract class that accepts
    any object with a ``get_next`` method, so this one needs no import of
    ``onnxruntime``. Used in chapter 6.
    """

    def __init__(self, images: np.ndarray, input_name: str, batch_size: int = 32):
        images = np.asarray(images, dtype=np.float32)
        if len(images) == 0:
            raise ValueError("calibration needs at least one image, got none")
        self.batches: Iterator[np.ndarray] = iter(
            [images[i : i + batch_size] for i in range(0, len(images), batch_size)]
        )
        self.input_name = input_name

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next batch as ONNX Runtime's input dict, or None when done."""
        batch = next(self.batches, None)
        return None if batch is None else {self.input_name: batch}


def onnx_int8(float_model: Path, output: Path, calibration: np.ndarray) -> Path:
    """Quantize an ONNX model to int8 (QDQ, per channel), calibrated on images.

    Parameters
    ----------
    float_model
        A float32 ONNX file with one image input.
    output
        Where the quantized model goes.
    calibration
        Float32 preprocessed images, shaped like the model input: real training
        images, whose activation ranges (min and max) set the int8 scales.

    Returns
    -------
    Path
        ``output``. The settings are :data:`ONNX_QUANTIZATION`. Used in chapter 6.
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    name = onnx.load(str(float_model)).graph.input[0].name
    prepared = Path(output).with_suffix(".pre.onnx")
    with quiet():
        quant_pre_process(str(float_model), str(prepared))
        quantize_static(
            str(prepared),
            str(output),
            CalibrationReader(calibration, name),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
        )
    prepared.unlink()
    return Path(output)


def build_artifacts(
    model, calibration: np.ndarray, runtimes: tuple[str, ...] = RUNTIMES
) -> dict[str, bytes]:
    """Every runtime's serialized model, built from one Keras model.

    LiteRT flatbuffers come from :func:`cnnlearn.compress.quantize.convert`
    (int8 calibrated on the first 300 of ``calibration``), the ONNX models from
    :func:`cnnlearn.deploy.export.export_onnx` and :func:`onnx_int8` (calibrated
    on the same images). Augmentation layers are left out first
    (:func:`cnnlearn.deploy.export.inference_model`). Returns ``{runtime: bytes}``.
    Used in chapter 6.
    """
    from cnnlearn.compress import quantize

    unknown = sorted(set(runtimes) - set(RUNTIMES))
    if unknown:
        raise ValueError(f"unknown runtimes {unknown}: expected some of {RUNTIMES}")
    model = inference_model(model)
    calibration = np.asarray(calibration, dtype=np.float32)[:300]
    artifacts = {
        runtime: quantize.convert(model, LITERT_MODES[runtime], calibration)
        for runtime in runtimes
        if runtime in LITERT_MODES
    }
    if not {"onnx-float32", "onnx-int8"} & set(runtimes):
        return artifacts
    from cnnlearn.deploy.export import export_onnx

    with tempfile.TemporaryDirectory() as tmp:
        float32 = export_onnx(model, Path(tmp) / "float32.onnx")
        if "onnx-float32" in runtimes:
            artifacts["onnx-float32"] = float32.read_bytes()
        if "onnx-int8" in runtimes:
            int8 = onnx_int8(float32, Path(tmp) / "int8.onnx", calibration)
            artifacts["onnx-int8"] = int8.read_bytes()
    return {runtime: artifacts[runtime] for runtime in runtimes}


def litert_call(
    content: bytes, x: np.ndarray, threads: int, *, float_io: bool = False
) -> Callable[[], np.ndarray]:
    """One LiteRT inference on the batch ``x``, ready to time.

    The interpreter is built with ``num_threads=threads`` and its input resized
    to ``len(x)`` once (``resize_tensor_input`` then ``allocate_tensors``), so
    a call only sets the input, invokes and reads the output. Used in chapter 6.
    """
    from ai_edge_litert.interpreter import Interpreter

    with quiet():  # the XNNPACK banner goes to stderr from C++
        interpreter = Interpreter(model_content=content, num_threads=threads)
    inp = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(inp["index"], list(x.shape), strict=False)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    x = np.asarray(x, dtype=np.float32)
    prepared = to_input_tensor(x, inp)

    def call() -> np.ndarray:
        interpreter.set_tensor(inp["index"], to_input_tensor(x, inp))
        interpreter.invoke()
        return from_output_tensor(interpreter.get_tensor(out["index"]), out)

    def call_prepared() -> np.ndarray:
        interpreter.set_tensor(inp["index"], prepared)
        interpreter.invoke()
        return interpreter.get_tensor(out["index"])

    return call if float_io else call_prepared


def onnx_session(content: bytes, threads: int, *, spin: bool = False):
    """An ONNX Runtime CPU session with ``threads`` intra-op threads.

    One inter-op thread, sequential execution, every graph optimization.
    ``spin=False`` stops idle worker threads from spinning, which on a 2-core
    machine would take CPU from the next call timed in the round. Used in
    chapter 6.
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.graph_optimization_level = level
    options.add_session_config_entry(
        "session.intra_op.allow_spinning", "1" if spin else "0"
    )
    return onnxruntime.InferenceSession(
        content, options, providers=["CPUExecutionProvider"]
    )


def onnx_call(
    content: bytes, x: np.ndarray, threads: int, *, spin: bool = False
) -> Callable[[], np.ndarray]:
    """One ONNX Runtime inference on the batch ``x``, ready to time (chapter 6)."""
    session = onnx_session(content, threads, spin=spin)
    feed = {session.get_inputs()[0].name: np.asarray(x, dtype=np.float32)}

    def call() -> np.ndarray:
        return session.run(None, feed)[0]

    return call


def make_call(
    runtime: str, content: bytes, x: np.ndarray, threads: int, **options
) -> Callable[[], np.ndarray]:
    """The timed call for ``runtime`` (one of :data:`RUNTIMES`) on batch ``x``.

    ``options`` go to :func:`litert_call` (``float_io``) or :func:`onnx_call`
    (``spin``). Used in chapter 6.
    """
    if runtime in LITERT_MODES:
        return litert_call(content, x, threads, float_io=options.get("float_io", False))
    if runtime in ("onnx-float32", "onnx-int8"):
        return onnx_call(content, x, threads, spin=options.get("spin", False))
    raise ValueError(f"unknown runtime {runtime!r}: expected one of {RUNTIMES}")


def predict(
    runtime: str, content: bytes, x: np.ndarray, *, batch_size: int = 256
) -> np.ndarray:
    """Float probabilities of ``runtime``'s model on all of ``x`` (chapter 6)."""
    x = np.asarray(x, dtype=np.float32)
    if runtime in LITERT_MODES:
        from cnnlearn.compress import quantize

        return quantize.predict_tflite(content, x, batch_size=batch_size)
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}: expected one of {RUNTIMES}")
    session = onnx_session(content, 1)
    name = session.get_inputs()[0].name
    chunks = [
        session.run(None, {name: x[i : i + batch_size]})[0]
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(chunks).astype(np.float32)


def accuracy(runtime: str, content: bytes, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of ``runtime``'s model on ``(x, y)`` (chapter 6)."""
    y = np.asarray(y).astype(np.int64).ravel()
    if len(x) != len(y) or len(y) == 0:
        raise ValueError(
            f"x and y must be non-empty and of one length, got {len(x)} and {len(y)}"
        )
    return float(np.mean(predict(runtime, content, x).argmax(axis=-1) == y))


def time_rounds(
    calls: dict[Hashable, Callable[[], object]],
    images: dict[Hashable, int],
    *,
    rounds: int = 7,
    target_seconds: float = 0.05,
    seed: int = 0,
) -> dict[Hashable, list[float]]:
    """Seconds per image of every call, in interleaved rounds.

    Parameters
    ----------
    calls
        ``{key: call}``: each call runs one batch (:func:`make_call`).
    images
        ``{key: images per call}`` (the batch size).
    rounds
        How many times every call is timed; each round visits all of them
        once, in a new random order (seeded by ``seed``).
    target_seconds
        Each timing repeats its call until about this long: the repeat count
        is set once per call, after two warm-up calls, from one timed call.

    Returns
    -------
    dict
        ``{key: [seconds per image, one per round]}``; :func:`summarize` and
        :func:`ratios` read it. Used in chapter 6.
    """
    if rounds < 1 or target_seconds <= 0:
        raise ValueError(
            f"expected rounds >= 1 and target_seconds > 0, got {rounds}, "
            f"{target_seconds}"
        )
    missing = sorted(map(str, set(calls) - set(images)))
    if missing:
        raise ValueError(f"no image count for calls {missing}")
    repeats = {}
    for key, call in calls.items():
        call()
        call()
        start = time.perf_counter()
        call()
        once = max(time.perf_counter() - start, 1e-7)
        repeats[key] = max(1, math.ceil(target_seconds / once))
    rng = np.random.default_rng(seed)
    keys = list(calls)
    found: dict[Hashable, list[float]] = {key: [] for key in keys}
    for _ in range(rounds):
        for i in rng.permutation(len(keys)):
            key, n = keys[i], repeats[keys[i]]
            call = calls[key]
            start = time.perf_counter()
            for _ in range(n):
                call()
            elapsed = time.perf_counter() - start
            found[key].append(elapsed / (n * images[key]))
    return found


def summarize(seconds_per_image: list[float]) -> dict:
    """Median images per second and µs per image over rounds, with the spread.

    ``spread`` is the interquartile range of the rounds over their median: 0.1
    means the middle half of the rounds lie within 10 % of each other.
    Used in chapter 6.
    """
    s = np.asarray(seconds_per_image, dtype=np.float64)
    if s.size == 0 or not np.all(s > 0):
        raise ValueError(f"expected positive timings, got {s.tolist()}")
    median = float(np.median(s))
    q1, q3 = np.percentile(s, [25, 75])
    return {
        "images_per_s": 1.0 / median,
        "us_per_image": 1e6 * median,
        "spread": float((q3 - q1) / median),
        "rounds": int(s.size),
    }


def ratios(faster: list[float], baseline: list[float]) -> dict:
    """How many times faster ``faster`` ran than ``baseline``, round by round.

    Both are :func:`time_rounds` lists from the same rounds; each round's ratio
    is baseline time over ``faster``'s time (above 1: faster). Returns the
    median, minimum and maximum ratio. Used in chapter 6.
    """
    a, b = np.asarray(faster, float), np.asarray(baseline, float)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(
            f"expected two timings of the same rounds, got {a.size} and {b.size}"
        )
    r = b / a
    return {"median": float(np.median(r)), "min": float(r.min()), "max": float(r.max())}
