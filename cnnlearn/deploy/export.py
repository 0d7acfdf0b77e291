"""Export a trained model for serving: SavedModel, TFLite, ONNX (chapter 8).

:func:`export_version` writes TensorFlow Serving's layout,
``<base>/<model_name>/<version>/`` with ``saved_model.pb`` and ``variables/``,
so ``docker run -p 8501:8501 -v <base>/<model_name>:/models/<model_name>
-e MODEL_NAME=<model_name> tensorflow/serving`` serves it as it is, and so does
``cnnlearn serve``. A version is built in a hidden sibling directory and renamed
into place when complete: a server scanning the base path sees either no
version or a whole one, never a half-written one, even if the export crashes.

The serving signatures (what TF Serving's ``/metadata`` shows):

``serving_default``
    input ``image``: float32 ``[N, 28, 28, 1]`` in [0, 1];
    output ``probabilities``: float32 ``[N, 10]``.
``serving_uint8``
    input ``image``: uint8 ``[N, 28, 28, 1]``, raw pixels 0-255; the scaling to
    [0, 1] (and any normalization layer inside the model) runs in the graph.
``serving_bytes``
    input ``image_bytes``: string ``[N]``, each the 784 raw bytes of one uint8
    image; this is what TF Serving's ``{"b64": ...}`` JSON values feed.

Beside the SavedModel, the version directory holds ``model.tflite`` (the float
model, or a chapter-6 variant, for the LiteRT backend; TF Serving's
``--prefer_tflite_model`` reads the same file), optionally ``model.onnx``
(:func:`export_onnx`: input ``image``, output ``probabilities``, for ONNX
Runtime) and ``assets.extra/cnnlearn.json``: the signatures, the
training-input statistics for drift monitoring (:mod:`cnnlearn.deploy.monitor`)
and provenance. TF Serving ignores all three.
:func:`cnnlearn.deploy.parity.parity_check` compares every format with the
Keras model.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
import uuid
import warnings
from pathlib import Path

import numpy as np

from cnnlearn._io import atomic_path
from cnnlearn.compress.common import quiet
from cnnlearn.deploy.monitor import training_statistics

__all__ = [
    "METADATA_FILE",
    "ONNX_FILE",
    "TFLITE_FILE",
    "export_onnx",
    "export_tflite",
    "export_version",
    "list_versions",
    "next_version",
    "read_metadata",
    "signature_defs",
    "tflite_bytes",
]

METADATA_FILE = Path("assets.extra") / "cnnlearn.json"
TFLITE_FILE = "model.tflite"
ONNX_FILE = "model.onnx"


def signature_defs(image_shape: tuple[int, ...] = (28, 28, 1), classes: int = 10):
    """The serving signatures as plain data: name → inputs/outputs → dtype, shape.

    Shapes use -1 for the batch dimension. Both server backends answer
    ``/metadata`` from this (see the module docstring).
    """
    shape = [-1, *image_shape]
    out = {"probabilities": {"dtype": "DT_FLOAT", "shape": [-1, classes]}}
    return {
        "serving_default": {
            "inputs": {"image": {"dtype": "DT_FLOAT", "shape": shape}},
            "outputs": out,
        },
        "serving_uint8": {
            "inputs": {"image": {"dtype": "DT_UINT8", "shape": shape}},
            "outputs": out,
        },
        "serving_bytes": {
            "inputs": {"image_bytes": {"dtype": "DT_STRING", "shape": [-1]}},
            "outputs": out,
        },
    }


def list_versions(model_dir: str | Path) -> list[int]:
    """The integer version directories under ``model_dir``, ascending.

    Anything else (hidden temporary directories, files, ``1.bak``) is ignored,
    as TF Serving ignores it.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    return sorted(
        int(p.name)
        for p in model_dir.iterdir()
        if p.is_dir() and p.name.isdigit() and p.name == str(int(p.name))
    )


def next_version(base_path: str | Path, model_name: str) -> int:
    """One more than the highest version of ``model_name`` (1 if there is none)."""
    versions = list_versions(Path(base_path) / model_name)
    return versions[-1] + 1 if versions else 1


def read_metadata(version_dir: str | Path) -> dict:
    """The ``assets.extra/cnnlearn.json`` that :func:`export_version` wrote."""
    path = Path(version_dir) / METADATA_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; was {version_dir} exported here?")
    return json.loads(path.read_text())


def _check_model(model) -> tuple[tuple[int, ...], int]:
    shape = tuple(model.input_shape[1:])
    classes = int(model.output_shape[-1])
    if len(shape) != 3 or None in shape:
        raise ValueError(f"expected an image model (H, W, C) input, got {shape}")
    return shape, classes


def _write_saved_model(model, path: Path, image_shape: tuple[int, ...]) -> None:
    # TensorFlow is imported where it is used: the LiteRT server imports this
    # module (for its file names) and must run without it.
    import cnnlearn._tf  # noqa: F401

    # isort: split
    import keras
    import tensorflow as tf

    def predict(x):
        return {"probabilities": model(x, training=False)}

    def from_uint8(image):
        return predict(tf.cast(image, tf.float32) / 255.0)

    def from_bytes(image_bytes):
        pixels = tf.io.decode_raw(image_bytes, tf.uint8)
        return from_uint8(tf.reshape(pixels, [-1, *image_shape]))

    archive = keras.export.ExportArchive()
    archive.track(model)
    spec = [None, *image_shape]
    archive.add_endpoint(
        "serving_default",
        lambda image: predict(image),
        input_signature=[tf.TensorSpec(spec, tf.float32, name="image")],
    )
    archive.add_endpoint(
        "serving_uint8",
        from_uint8,
        input_signature=[tf.TensorSpec(spec, tf.uint8, name="image")],
    )
    archive.add_endpoint(
        "serving_bytes",
        from_bytes,
        input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")],
    )
    with quiet():
        archive.write_out(str(path), verbose=False)


def tflite_bytes(model, mode: str = "float32", representative_data=None) -> bytes:
    """Convert ``model`` to a TFLite flatbuffer with chapter 6's converter.

    ``mode`` is ``"float32"``, ``"dynamic"``, ``"float16"`` or ``"int8"``
    (``int8`` needs ``representative_data``: float images in [0, 1]).
    """
    from cnnlearn.compress.quantize import convert  # TensorFlow: see above

    with quiet():
        return convert(model, mode=mode, representative_data=representative_data)


def export_tflite(
    model, path: str | Path, mode: str = "float32", representative_data=None
) -> Path:
    """Write ``model`` as a TFLite file at ``path`` (atomically); return the path."""
    flatbuffer = tflite_bytes(model, mode, representative_data)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_bytes(flatbuffer)
    return path


def _require_tf2onnx() -> None:
    if importlib.util.find_spec("tf2onnx") is None:
        raise ImportError(
            "ONNX export needs the tf2onnx package (pip install tf2onnx, or "
            "cnnlearn[dev]), which Keras' model.export(format='onnx') converts with"
        )


def export_onnx(model, path: str | Path) -> Path:
    """Write ``model`` as ONNX with ``model.export(format="onnx")``, atomically.

    The ONNX graph has one input ``image`` (float32 ``[N, H, W, C]`` in [0, 1],
    like ``serving_default``) and one output ``probabilities``. The input
    signature is given explicitly, so a model that was just loaded and never
    called exports too. Run it with ``onnxruntime``. Used in chapter 8.

    (``tf2onnx.convert.from_keras`` does not work with Keras 3 models; Keras'
    own export converts through ``tf2onnx.convert.from_function``.) ``tf2onnx``
    is in ``cnnlearn``'s ``dev`` extra, not a core dependency: without it this
    raises ``ImportError`` and writes nothing.
    """
    _require_tf2onnx()
    import cnnlearn._tf  # noqa: F401

    # isort: split
    import onnx
    import tensorflow as tf

    image_shape, _ = _check_model(model)
    signature = [tf.TensorSpec([None, *image_shape], tf.float32, name="image")]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with quiet(), warnings.catch_warnings():
            # Keras' tf2onnx patch probes np.object, which NumPy 2 warns about.
            warnings.simplefilter("ignore", FutureWarning)
            model.export(
                str(tmp), format="onnx", verbose=False, input_signature=signature
            )
        graph_model = onnx.load(str(tmp))
        _rename_output(graph_model.graph, "probabilities")
        onnx.checker.check_model(graph_model)
        onnx.save(graph_model, str(tmp))
    return path


def _rename_output(graph, name: str) -> None:
    """Give the graph's single output (tf2onnx calls it ``Identity:0``) a name."""
    if len(graph.output) != 1:
        raise ValueError(f"expected one ONNX output, found {len(graph.output)}")
    old = graph.output[0].name
    for node in graph.node:
        for i, value in enumerate(node.output):
            if value == old:
                node.output[i] = name
        for i, value in enumerate(node.input):
            if value == old:
                node.input[i] = name
    graph.output[0].name = name


def export_version(
    model,
    base_path: str | Path,
    model_name: str,
    version: int | None = None,
    *,
    train_images: np.ndarray | None = None,
    tflite: str | bytes | None = "float32",
    onnx: bool = False,
    info: dict | None = None,
) -> Path:
    """Export ``model`` as ``<base_path>/<model_name>/<version>/``, atomically.

    Parameters
    ----------
    model
        A Keras image classifier taking float images in [0, 1].
    base_path, model_name
        Where: TF Serving's ``--model_base_path`` is ``base_path/model_name``.
    version
        An integer; default :func:`next_version`. An existing version is an
        error (``FileExistsError``), never overwritten.
    train_images
        Float training images in [0, 1]; their statistics are saved for drift
        monitoring, and a sample of them calibrates an ``int8`` TFLite model.
    tflite
        ``"float32"``, a chapter-6 mode (``"dynamic"``, ``"float16"``,
        ``"int8"``), the bytes of a converted model, or ``None`` for no
        ``model.tflite`` (then only the SavedModel backend can serve it).
    onnx
        Also write ``model.onnx`` (:func:`export_onnx`) into the version, for
        ONNX Runtime or Triton. Off by default: it needs ``tf2onnx``, which
        only the ``dev`` extra installs, and neither server backend reads it.
    info
        More provenance for ``cnnlearn.json`` (accuracy, training run, ...).

    Returns
    -------
    Path
        The version directory.

    Everything is written into ``<model_name>/.tmp-<version>-<random>/`` first
    and renamed to ``<version>`` only when complete; on any error the temporary
    directory is removed and no version appears.
    """
    if not model_name or "/" in model_name or model_name.startswith("."):
        raise ValueError(f"model_name must be a plain directory name: {model_name!r}")
    image_shape, classes = _check_model(model)
    model_dir = Path(base_path) / model_name
    model_dir.mkdir(parents=True, exist_ok=True)
    version = next_version(base_path, model_name) if version is None else version
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"version must be an integer >= 1, got {version!r}")
    if onnx:
        _require_tf2onnx()  # before anything is written
    final = model_dir / str(version)
    if final.exists():
        raise FileExistsError(f"{final} exists: versions are never overwritten")
    tmp = model_dir / f".tmp-{version}-{uuid.uuid4().hex[:8]}"
    try:
        _write_saved_model(model, tmp, image_shape)
        tflite_mode = None
        if isinstance(tflite, bytes):
            (tmp / TFLITE_FILE).write_bytes(tflite)
            tflite_mode = "given"
        elif tflite is not None:
            sample = None if train_images is None else train_images[:500]
            (tmp / TFLITE_FILE).write_bytes(tflite_bytes(model, tflite, sample))
            tflite_mode = tflite
        if onnx:
            export_onnx(model, tmp / ONNX_FILE)
        metadata = {
            "model_name": model_name,
            "version": version,
            "keras_model": model.name,
            "params": int(model.count_params()),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "image_shape": list(image_shape),
            "classes": classes,
            "signatures": signature_defs(image_shape, classes),
            "tflite": tflite_mode,
            "onnx": ONNX_FILE if onnx else None,
            "input_statistics": None
            if train_images is None
            else training_statistics(train_images),
            **(info or {}),
        }
        (tmp / METADATA_FILE).parent.mkdir(parents=True, exist_ok=True)
        (tmp / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
        os.rename(tmp, final)  # atomic; fails if another exporter took `version`
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
