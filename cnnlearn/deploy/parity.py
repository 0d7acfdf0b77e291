"""Do the exported formats compute what the Keras model does? (chapter 8)

:func:`parity_check` runs a SavedModel (TensorFlow), a ``.tflite`` file
(LiteRT) or an ``.onnx`` file (ONNX Runtime) on the same images as the Keras
model and reports each format's size and its largest difference from Keras,
after checking that no format holds random or training-only ops.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnlearn.deploy.export import (
    METADATA_FILE,
    ONNX_FILE,
    TFLITE_FILE,
    check_inference_graph,
)

__all__ = ["parity_check"]


def _format_size(path: Path) -> int:
    """Bytes of one format: a file, or a SavedModel without its neighbours.

    A version directory also holds ``model.tflite``, ``model.onnx`` and
    ``assets.extra/``; they are not part of the SavedModel.
    """
    if path.is_file():
        return path.stat().st_size
    extras = {TFLITE_FILE, ONNX_FILE, METADATA_FILE.parts[0]}
    return sum(
        p.stat().st_size
        for p in path.rglob("*")
        if p.is_file() and p.relative_to(path).parts[0] not in extras
    )


def parity_check(model, images, paths: dict[str, str | Path]) -> dict[str, dict]:
    """Compare exported formats with the Keras model on the same ``images``.

    ``paths`` maps a format to its file or directory: ``"saved_model"`` (a
    SavedModel or version directory, run with TensorFlow), ``"tflite"`` (a
    ``.tflite`` file, run with LiteRT) or ``"onnx"`` (a ``.onnx`` file, run with
    ONNX Runtime). ``images`` are float images in [0, 1] for an image model, or
    the inputs of any other model: an array for one input (token ids), a dict
    by input name for several (Caser's ``users`` and ``items``). Each format is
    first checked for training-only ops
    (:func:`cnnlearn.deploy.export.check_inference_graph`: ``ValueError``).
    Each result row has the format's size in bytes (for a SavedModel without
    the files beside it), the maximum absolute difference of the probabilities
    from Keras' and the fraction of equal argmax predictions. Float formats
    should differ by at most 1e-5. Used in chapters 8 and 9.
    """
    runners = {
        "saved_model": _run_saved_model,
        "tflite": _run_tflite,
        "onnx": _run_onnx,
    }
    unknown = sorted(set(paths) - set(runners))
    if unknown:
        raise ValueError(f"unknown formats {unknown}: expected some of {list(runners)}")
    x = _as_inputs(images)
    reference = np.asarray(model.predict(x, batch_size=256, verbose=0))
    rows = {}
    for fmt, path in paths.items():
        check_inference_graph(Path(path))
        probs = runners[fmt](Path(path), x)
        rows[fmt] = {
            "bytes": _format_size(Path(path)),
            "max_abs_diff": float(np.abs(probs - reference).max()),
            "argmax_agreement": float(np.mean(probs.argmax(1) == reference.argmax(1))),
        }
    return rows


def _as_inputs(images):
    """Float arrays as float32, integer ids as they are; a dict entry by entry."""
    if isinstance(images, dict):
        return {name: _as_inputs(value) for name, value in images.items()}
    x = np.asarray(images)
    return x.astype(np.float32) if np.issubdtype(x.dtype, np.floating) else x


def _named(x, names: list[str]) -> dict[str, np.ndarray]:
    """Inputs by the runtime's names: a dict as it is, one array for one name."""
    if isinstance(x, dict):
        missing = sorted(set(names) - set(x))
        if missing:
            raise ValueError(f"inputs {missing} missing: expected {names}")
        return {name: x[name] for name in names}
    if len(names) != 1:
        raise ValueError(f"one input array given: expected a dict for {names}")
    return {names[0]: x}


# Each runner imports its own runtime, only when its format is checked:
# onnxruntime is optional, and this module imports without TensorFlow.


def _run_saved_model(path: Path, x) -> np.ndarray:
    import cnnlearn._tf  # noqa: F401

    # isort: split
    import tensorflow as tf

    fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    inputs = _named(x, list(fn.structured_input_signature[1]))
    n = len(next(iter(inputs.values())))
    return np.concatenate(
        [
            fn(**{k: tf.constant(v[i : i + 1024]) for k, v in inputs.items()})[
                "probabilities"
            ].numpy()
            for i in range(0, n, 1024)
        ]
    )


def _run_tflite(path: Path, x) -> np.ndarray:
    if not isinstance(x, dict) and x.dtype == np.float32:
        from cnnlearn.compress import quantize  # int8 models too

        return quantize.predict_tflite(path, x)
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner()
    names = list(runner.get_input_details())
    outputs = runner(**_named(x, names))
    if len(outputs) != 1:
        raise ValueError(f"{path}: expected one output, found {sorted(outputs)}")
    return np.asarray(next(iter(outputs.values())))


def _run_onnx(path: Path, x) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(
        str(path), providers=["CPUExecutionProvider"]
    )
    names = [i.name for i in session.get_inputs()]
    return np.asarray(session.run(None, _named(x, names))[0])
