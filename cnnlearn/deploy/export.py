"""Export a trained model for serving: SavedModel, TFLite, ONNX (chapter 8).

:func:`export_version` writes TensorFlow Serving's layout,
``<base>/<model_name>/<version>/`` with ``saved_model.pb`` and ``variables/``,
so ``docker run -p 8501:8501 -v <base>/<model_name>:/models/<model_name>
-e MODEL_NAME=<model_name> tensorflow/serving`` serves it as it is, and so does
``cnnlearn serve``. A version is built in a hidden sibling directory and renamed
into place when complete: a server scanning the base path sees either no
version or a whole one, never a half-written one, even if the export crashes.
Version folders are named and read as TF Serving names and reads them
(:func:`parse_version`: ``00000123`` is version 123). The last file written
is a checksum manifest, ``assets.extra/cnnlearn.sha256`` (SHA-256 of every
other file, :func:`write_manifest`); the server checks a version against it
before loading it (:func:`verify_manifest`), so a changed, missing or planted
file is a failed load, not a silently different model.

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
and provenance. TF Serving ignores all three, and ``cnnlearn serve`` needs
none of them: it serves any SavedModel (the sidecar adds drift monitoring,
class labels under ``"labels"``, and the LiteRT backend's float, uint8 and
bytes signatures for one float ``model.tflite``).
:func:`cnnlearn.deploy.parity.parity_check` compares every format with the
Keras model.

Every format is written from :func:`inference_model`: the model without its
training-only layers (random augmentation and noise), and every artifact is
checked with :func:`check_inference_graph` before it is renamed into place, so
no export holds a random, augmentation or variable-update op. Models that are
not image classifiers (the chapter-9 text CNN and Caser) export too, with
:func:`export_saved_model`, :func:`export_tflite` and :func:`export_onnx`;
:func:`export_version` is for image models.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import inspect
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
    "MANIFEST_FILE",
    "METADATA_FILE",
    "ONNX_FILE",
    "TFLITE_FILE",
    "TRAINING_ONLY_LAYERS",
    "TRAINING_OPS",
    "IntegrityError",
    "check_inference_graph",
    "checksums",
    "export_onnx",
    "export_saved_model",
    "export_tflite",
    "export_version",
    "graph_ops",
    "inference_model",
    "input_signature",
    "is_training_only",
    "list_versions",
    "parse_version",
    "next_version",
    "read_metadata",
    "signature_defs",
    "tflite_bytes",
    "verify_manifest",
    "version_folders",
    "write_manifest",
]

METADATA_FILE = Path("assets.extra") / "cnnlearn.json"
TFLITE_FILE = "model.tflite"
#: The checksum manifest of a version (issue 19): ``sha256sum``'s format, one
#: ``<hex digest>  <path>`` line per file of the version, written last.
MANIFEST_FILE = Path("assets.extra") / "cnnlearn.sha256"
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


def parse_version(name: str) -> int | None:
    """The version number of a version folder's name, or ``None``.

    As TF Serving parses it (``file_system_storage_path_source.cc``,
    ``ParseVersionNumber``: ``absl::SimpleAtoi``): ASCII blanks around it and a
    sign are allowed, then ASCII digits only, within int64; ``00000123`` is
    version 123, and ``1.bak``, ``.tmp-3-ab12`` or ``v2`` are no version.
    """
    text = name.strip(" \t\n\v\f\r")
    digits = text[1:] if text[:1] in ("+", "-") else text
    if not digits or not digits.isascii() or not digits.isdigit():
        return None
    value = int(text)
    return value if -(2**63) <= value < 2**63 else None


def version_folders(model_dir: str | Path) -> dict[int, Path]:
    """The version directories under ``model_dir``: version → folder, ascending.

    Names parse as :func:`parse_version` parses them; anything else (hidden
    temporary directories, files, ``1.bak``) is ignored, as TF Serving ignores
    it. Two folders with one number (``1`` and ``001``): the name that sorts
    last wins, as in TF Serving (it indexes the sorted names and logs
    "Duplicate version directories detected"). Used in chapter 8.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return {}
    found = {}
    for path in sorted(model_dir.iterdir(), key=lambda p: p.name):
        version = parse_version(path.name)
        if version is not None and path.is_dir():
            found[version] = path
    return dict(sorted(found.items()))


def list_versions(model_dir: str | Path) -> list[int]:
    """The version numbers under ``model_dir``, ascending (see
    :func:`version_folders`)."""
    return list(version_folders(model_dir))


class IntegrityError(ValueError):
    """A version's files do not match its checksum manifest."""


def checksums(version_dir: str | Path) -> dict[str, str]:
    """SHA-256 of every file under ``version_dir`` (the manifest itself left
    out): relative POSIX path → hex digest, sorted by path."""
    root = Path(version_dir)
    manifest = root / MANIFEST_FILE
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path != manifest:
            digest = hashlib.sha256()
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            found[path.relative_to(root).as_posix()] = digest.hexdigest()
    return found


def write_manifest(version_dir: str | Path) -> Path:
    """Write :data:`MANIFEST_FILE` for every file now in ``version_dir``;
    :func:`export_version` calls it last, once every other file is written.
    Used in chapter 8."""
    lines = [f"{h}  {p}\n" for p, h in checksums(version_dir).items()]
    path = Path(version_dir) / MANIFEST_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines))
    return path


def verify_manifest(version_dir: str | Path) -> bool:
    """Check ``version_dir`` against its manifest: ``False`` if it has none,
    ``True`` if every file matches. Raises :class:`IntegrityError` (naming the
    first file) for a changed, missing or unlisted file or a malformed
    manifest. The server calls it before it loads a version (chapter 8)."""
    path = Path(version_dir) / MANIFEST_FILE
    if not path.is_file():
        return False
    expected = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or not name:
            raise IntegrityError(f"{path}: line {number} is not '<sha256>  <path>'")
        expected[name] = digest
    found = checksums(version_dir)
    for name in sorted(expected.keys() | found.keys()):
        if name not in found:
            raise IntegrityError(f"{version_dir}: {name} is in the manifest, missing")
        if name not in expected:
            raise IntegrityError(f"{version_dir}: {name} is not in the manifest")
        if found[name] != expected[name]:
            raise IntegrityError(
                f"{version_dir}: {name} has SHA-256 {found[name][:12]}..., "
                f"the manifest says {expected[name][:12]}..."
            )
    return True


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


# Layers that change their input only while training; at inference each returns
# its input unchanged, so the inference model leaves them out. Keras' Random*
# layers are listed by name prefix (RandomCrop is not one: its docstring says it
# crops at inference too). Dropout and SpatialDropout stay: their call defaults
# to training=False and exports to no op at all.
TRAINING_ONLY_LAYERS = (
    "AlphaDropout",
    "AugMix",
    "CutMix",
    "GaussianDropout",
    "GaussianNoise",
    "MixUp",
    "RandAugment",
    "Random*",
    "Solarization",
)


def is_training_only(layer) -> bool:
    """Whether ``layer`` is a Keras augmentation or noise layer (chapter 8).

    True for instances (subclasses too) of the Keras layers that
    :data:`TRAINING_ONLY_LAYERS` names: random augmentation, mixing and noise,
    which are the identity at inference.
    """
    return isinstance(layer, _training_only_classes())


@functools.cache
def _training_only_classes() -> tuple[type, ...]:
    import keras

    names = [n for n in TRAINING_ONLY_LAYERS if not n.endswith("*")]
    names += [n for n in dir(keras.layers) if n.startswith("Random")]
    return tuple(
        getattr(keras.layers, n)
        for n in names
        if n != "RandomCrop" and hasattr(keras.layers, n)
    )


def inference_model(model):
    """``model`` without its training-only layers: what every export writes.

    The layers that :func:`is_training_only` names (random augmentation and
    noise, the identity at inference) are left out, in nested models too; every
    other layer is the same object, so the weights are shared, not copied. A
    ``Sequential`` model is rebuilt from its remaining layers, a functional one
    with ``keras.models.clone_model`` (a ``clone_function`` that keeps each
    layer and a ``call_function`` that passes a training-only layer's input
    through). A model with nothing to remove is returned as it is. Its outputs
    equal ``model(x, training=False)``.

    This matters beyond tidiness. Keras' ONNX export (``model.export(...,
    format="onnx")`` with TensorFlow) traces ``model.__call__`` without a
    ``training`` argument; a layer then takes its ``call`` default and stores it
    in the call context for the layers after it, and the Random* layers default
    to ``training=True``. Exported as it is, a model that begins with
    augmentation would augment every request and normalize with batch
    statistics. So a layer that is kept but whose ``call`` defaults to
    ``training=True`` is refused (``ValueError``). Used in chapter 8.
    """
    import keras

    stripped = _strip(model)
    for layer in _all_layers(stripped):
        parameter = inspect.signature(layer.call).parameters.get("training")
        if parameter is not None and parameter.default is True:
            raise ValueError(
                f"layer {layer.name!r} ({type(layer).__name__}) defaults to "
                "training=True and is not a known training-only layer: expected "
                "none in an inference model"
            )
    if not isinstance(stripped, keras.Model):
        raise ValueError(f"expected a keras.Model, got {type(model).__name__}")
    return stripped


def _all_layers(model) -> list:
    """Every layer of ``model``, nested models' layers included."""
    found = []
    for layer in getattr(model, "layers", []):
        found.append(layer)
        found.extend(_all_layers(layer))
    return found


def _strip(model):
    """``model`` rebuilt without training-only layers (itself if it has none)."""
    import keras

    if _skipped(model) or not any(map(is_training_only, _all_layers(model))):
        return model  # nothing to remove, or nothing but (the caller drops it)
    if isinstance(model, keras.Sequential):
        kept = [_strip(layer) for layer in model.layers if not _skipped(layer)]
        spec = model.inputs[0]
        head = keras.Input(batch_shape=spec.shape, dtype=spec.dtype)
        return keras.Sequential([head, *kept], name=model.name)
    if isinstance(model, keras.Model):

        def call(layer, *args, **kwargs):
            return args[0] if _skipped(layer) else layer(*args, **kwargs)

        return keras.models.clone_model(
            model, clone_function=_strip, call_function=call
        )
    return model


def _skipped(layer) -> bool:
    """A training-only layer, or a nested model of nothing else (augmentation)."""
    if is_training_only(layer):
        return True
    inner = getattr(layer, "layers", None)
    return bool(inner) and all(_skipped(x) for x in inner)


def _check_model(model) -> tuple[tuple[int, ...], int]:
    shape = tuple(model.input_shape[1:])
    classes = int(model.output_shape[-1])
    if len(shape) != 3 or None in shape:
        raise ValueError(f"expected an image model (H, W, C) input, got {shape}")
    return shape, classes


def _is_image_model(model) -> bool:
    """One float input shaped (N, H, W, C), as :func:`export_version` needs."""
    if len(model.inputs) != 1:
        return False
    spec = model.inputs[0]
    shape = tuple(spec.shape[1:])
    return len(shape) == 3 and None not in shape and "float" in str(spec.dtype)


def input_signature(model) -> dict:
    """The exported inputs of ``model``: name → ``tf.TensorSpec``, batch ``None``.

    An image model has one input, ``image`` (float32 ``[N, H, W, C]``, as
    ``serving_default`` takes it); any other model keeps its Keras input names
    and dtypes (``tokens`` for the text CNN, ``users`` and ``items`` for
    Caser). Used in chapters 8 and 9.
    """
    import cnnlearn._tf  # noqa: F401

    # isort: split
    import tensorflow as tf

    if _is_image_model(model):
        shape = [None, *model.inputs[0].shape[1:]]
        return {"image": tf.TensorSpec(shape, tf.float32, name="image")}
    return {
        t.name: tf.TensorSpec([None, *t.shape[1:]], t.dtype, name=t.name)
        for t in model.inputs
    }


def _call(model, tensors: dict):
    """``model``'s inference-mode output on named tensors (see input_signature)."""
    import keras

    if len(model.inputs) == 1:
        inputs = next(iter(tensors.values()))
    else:
        inputs = keras.tree.map_structure(lambda t: tensors[t.name], model.input)
    return model(inputs, training=False)


def _write_saved_model(model, path: Path) -> None:
    # TensorFlow is imported where it is used: the LiteRT server imports this
    # module (for its file names) and must run without it.
    import cnnlearn._tf  # noqa: F401

    # isort: split
    import keras
    import tensorflow as tf

    model = inference_model(model)
    specs = input_signature(model)

    def predict(*tensors):
        return {"probabilities": _call(model, dict(zip(specs, tensors)))}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", predict, list(specs.values()))
    if _is_image_model(model):
        image_shape = specs["image"].shape[1:]

        def from_uint8(image):
            return predict(tf.cast(image, tf.float32) / 255.0)

        def from_bytes(image_bytes):
            pixels = tf.io.decode_raw(image_bytes, tf.uint8)
            return from_uint8(tf.reshape(pixels, [-1, *image_shape]))

        spec = [None, *image_shape]
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
    check_inference_graph(path)


def export_saved_model(model, path: str | Path) -> Path:
    """Write :func:`inference_model` of ``model`` as a SavedModel at ``path``.

    An image model gets the three serving signatures of the module docstring;
    any other model one, ``serving_default``, with the inputs of
    :func:`input_signature` and the output ``probabilities``. The directory is
    written beside ``path`` and renamed into place when complete and checked
    (:func:`check_inference_graph`); an existing ``path`` is an error
    (``FileExistsError``). Used in chapters 8 and 9.
    """
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists: expected a new directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        _write_saved_model(model, tmp)
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def tflite_bytes(model, mode: str = "float32", representative_data=None) -> bytes:
    """Convert :func:`inference_model` of ``model`` to a TFLite flatbuffer.

    ``mode`` is ``"float32"``, ``"dynamic"``, ``"float16"`` or ``"int8"``
    (``int8`` needs ``representative_data``: float images in [0, 1]); a model
    with one input goes through chapter 6's converter. TensorFlow's
    ``TFLiteConverter.from_keras_model`` fails on a model with several inputs
    (Caser), so such a model is converted from its ``serving_default``
    SavedModel signature (which calls it with ``training=False``), in
    ``float32`` only. The flatbuffer is checked
    with :func:`check_inference_graph`. Used in chapters 8 and 9.
    """
    from cnnlearn.compress.quantize import MODES, convert  # TensorFlow: see above

    model = inference_model(model)
    if len(model.inputs) == 1:
        with quiet():
            flatbuffer = convert(
                model, mode=mode, representative_data=representative_data
            )
    elif mode != "float32":
        raise ValueError(
            f"mode {mode!r} for a model with {len(model.inputs)} inputs: expected "
            f"'float32' (the other {MODES} need chapter 6's one-input converter)"
        )
    else:
        flatbuffer = _tflite_from_saved_model(model)
    check_inference_graph(flatbuffer, name="TFLite flatbuffer")
    return flatbuffer


def _tflite_from_saved_model(model) -> bytes:
    import tempfile

    import cnnlearn._tf  # noqa: F401

    # isort: split
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp:
        _write_saved_model(model, Path(tmp) / "saved_model")
        with quiet():
            converter = tf.lite.TFLiteConverter.from_saved_model(
                str(Path(tmp) / "saved_model"), signature_keys=["serving_default"]
            )
            return bytes(converter.convert())


def export_tflite(
    model, path: str | Path, mode: str = "float32", representative_data=None
) -> Path:
    """Write ``model`` as a TFLite file at ``path`` (atomically); return the path.

    The file is :func:`tflite_bytes`: the inference model, checked. Used in
    chapter 8.
    """
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
    """Write :func:`inference_model` of ``model`` as ONNX, atomically.

    The graph's inputs are :func:`input_signature`'s (an image model's is
    ``image``: float32 ``[N, H, W, C]`` in [0, 1], like ``serving_default``);
    its one output is ``probabilities``. The input signature is given
    explicitly, so a model that was just loaded and never called exports too.
    The graph must pass ``onnx.checker`` and :func:`check_inference_graph`
    before it is renamed into place. Run it with ``onnxruntime``. Used in
    chapter 8.

    Keras' ``model.export(format="onnx")`` converts with tf2onnx
    (``tf2onnx.convert.from_keras`` does not work with Keras 3 models).
    ``tf2onnx`` is in ``cnnlearn``'s ``dev`` extra, not a core dependency:
    without it this raises ``ImportError`` and writes nothing.
    """
    _require_tf2onnx()
    import cnnlearn._tf  # noqa: F401

    # isort: split
    import onnx

    model = inference_model(model)
    specs = input_signature(model)
    signature = [specs if len(model.inputs) > 1 else next(iter(specs.values()))]
    if len(model.inputs) > 1 and not isinstance(model.input, dict):
        raise ValueError(
            f"expected one input or a dict of named inputs, got {model.input}"
        )
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
        check_inference_graph(graph_model, name=str(path))
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


# Op types an inference graph must not have, matched in upper case without
# underscores: random numbers (TF StatelessRandomUniformV2, TFLite
# RANDOM_UNIFORM, ONNX RandomNormalLike, Bernoulli, Multinomial), the image
# warp that augmentation runs (ImageProjectiveTransformV3), variable updates
# (AssignVariableOp: batch norm in training mode) and, in a flatbuffer,
# variables that were never frozen into constants (VAR_HANDLE: read as NaN).
TRAINING_OPS = (
    "RANDOM",
    "MULTINOMIAL",
    "BERNOULLI",
    "TRUNCATEDNORMAL",
    "RNGSKIP",
    "RNGREADANDSKIP",
    "IMAGEPROJECTIVETRANSFORM",
    "ASSIGN",
    "VARHANDLE",
)


def graph_ops(artifact) -> set[str]:
    """The op types of an exported artifact, as its runtime names them.

    ``artifact`` is a SavedModel directory (the ops of every serving
    signature's graph and the functions it calls, loaded with TensorFlow), a
    ``.tflite`` file or flatbuffer bytes (the operator codes, read with
    LiteRT's flatbuffer schema; a TensorFlow op kept by Select TF ops shows as
    ``Flex<op>``), or a ``.onnx`` file or ``onnx.ModelProto`` (every node's
    ``op_type``, subgraphs included). Used in chapter 8.
    """
    if isinstance(artifact, bytes):
        return _tflite_ops(artifact)
    if not isinstance(artifact, str | Path):
        return _onnx_ops(artifact.graph)
    path = Path(artifact)
    if path.is_dir():
        return _saved_model_ops(path)
    if path.suffix == ".tflite":
        return _tflite_ops(path.read_bytes())
    if path.suffix == ".onnx":
        import onnx

        return _onnx_ops(onnx.load(str(path)).graph)
    raise ValueError(
        f"{path}: expected a SavedModel directory, a .tflite or an .onnx file"
    )


def check_inference_graph(artifact, name: str | None = None) -> set[str]:
    """Refuse an artifact with random, augmentation or training ops.

    Returns :func:`graph_ops` of ``artifact`` when none of them matches
    :data:`TRAINING_OPS`; otherwise raises ``ValueError`` naming the artifact
    (``name``, by default its path) and those ops. Every export in this module
    checks what it wrote. Used in chapter 8.
    """
    ops = graph_ops(artifact)
    bad = sorted(
        op for op in ops if any(p in op.upper().replace("_", "") for p in TRAINING_OPS)
    )
    if bad:
        label = name or (str(artifact) if isinstance(artifact, str | Path) else "model")
        raise ValueError(
            f"{label}: random or training-only ops {', '.join(bad)}: expected "
            "an inference graph (export inference_model(model))"
        )
    return ops


def _saved_model_ops(path: Path) -> set[str]:
    import cnnlearn._tf  # noqa: F401

    # isort: split
    import tensorflow as tf

    ops = set()
    for function in tf.saved_model.load(str(path)).signatures.values():
        graph = function.graph.as_graph_def()
        ops.update(node.op for node in graph.node)
        for library_function in graph.library.function:
            ops.update(node.op for node in library_function.node_def)
    return ops


def _tflite_ops(flatbuffer: bytes) -> set[str]:
    from ai_edge_litert import schema_py_generated as schema

    if flatbuffer[4:8] != b"TFL3":
        raise ValueError(
            "expected a TFLite flatbuffer (identifier TFL3), got other bytes"
        )
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if k.isupper()}
    model = schema.Model.GetRootAs(flatbuffer, 0)
    ops = set()
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == schema.BuiltinOperator.CUSTOM:
            ops.add(code.CustomCode().decode())
        else:
            ops.add(names.get(builtin, f"BUILTIN_{builtin}"))
    return ops


def _onnx_ops(graph) -> set[str]:
    ops = set()
    for node in graph.node:
        ops.add(node.op_type)
        for attribute in node.attribute:
            for subgraph in [attribute.g, *attribute.graphs]:
                ops |= _onnx_ops(subgraph)
    return ops


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
    directory is removed and no version appears. Every format is written from
    :func:`inference_model` and checked with :func:`check_inference_graph`,
    except given TFLite bytes, written as they are (:func:`tflite_bytes`
    checked them if it made them; the server tests publish broken ones on
    purpose); ``keras_model`` and ``params`` in
    ``cnnlearn.json`` describe ``model`` as given.
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
    model_name_keras, params = model.name, int(model.count_params())
    model = inference_model(model)  # once; the exports below find nothing more
    final = model_dir / str(version)
    if final.exists() or version in version_folders(model_dir):
        existing = version_folders(model_dir).get(version, final)
        raise FileExistsError(f"{existing} exists: versions are never overwritten")
    tmp = model_dir / f".tmp-{version}-{uuid.uuid4().hex[:8]}"
    try:
        _write_saved_model(model, tmp)
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
            "keras_model": model_name_keras,
            "params": params,
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
        write_manifest(tmp)  # last: it covers every file above
        os.rename(tmp, final)  # atomic; fails if another exporter took `version`
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
