"""Do the exported formats compute what the Keras model does? (chapter 8)

:func:`parity_check` runs a SavedModel (TensorFlow), a ``.tflite`` file
(LiteRT) or an ``.onnx`` file (ONNX Runtime) on the same images as the Keras
model and reports each format's size and its largest difference from Keras.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnlearn.deploy.export import METADATA_FILE, ONNX_FILE, TFLITE_FILE

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


def parity_check(
    model, images: np.ndarray, paths: dict[str, str | Path]
) -> dict[str, dict]:
    """Compare exported formats with the Keras model on the same ``images``.

    ``paths`` maps a format to its file or directory: ``"saved_model"`` (a
    version directory, run with TensorFlow), ``"tflite"`` (a ``.tflite`` file,
    run with LiteRT) or ``"onnx"`` (a ``.onnx`` file, run with ONNX Runtime).
    Each result row has the format's size in bytes (for a SavedModel without
    the files beside it), the maximum absolute difference of the probabilities
    from Keras' and the fraction of equal argmax predictions. Float formats
    should differ by at most 1e-5. Used in chapter 8.
    """
    runners = {
        "saved_model": _run_saved_model,
        "tflite": _run_tflite,
        "onnx": _run_onnx,
    }
    unknown = sorted(set(paths) - set(runners))
    if unknown:
        raise ValueError(f"unknown formats {unknown}: expected some of {list(runners)}")
    x = np.asarray(images, dtype=np.float32)
    reference = np.asarray(model.predict(x, batch_size=256, verbose=0))
    rows = {}
    for fmt, path in paths.items():
        probs = runners[fmt](Path(path), x)
        rows[fmt] = {
            "bytes": _format_size(Path(path)),
            "max_abs_diff": float(np.abs(probs - reference).max()),
            "argmax_agreement": float(np.mean(probs.argmax(1) == reference.argmax(1))),
        }
    return rows


# Each runner imports its own runtime, only when its format is checked:
# onnxruntime is optional, and this module imports without TensorFlow.


def _run_saved_model(path: Path, x: np.ndarray) -> np.ndarray:
    import cnnlearn._tf  # noqa: F401

    # isort: split
    import tensorflow as tf

    fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    return np.concatenate(
        [
            fn(image=tf.constant(x[i : i + 1024]))["probabilities"].numpy()
            for i in range(0, len(x), 1024)
        ]
    )


def _run_tflite(path: Path, x: np.ndarray) -> np.ndarray:
    from cnnlearn.compress import quantize

    return quantize.predict_tflite(path, x)


def _run_onnx(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(
        str(path), providers=["CPUExecutionProvider"]
    )
    name = session.get_inputs()[0].name
    return np.asarray(session.run(None, {name: x})[0])
