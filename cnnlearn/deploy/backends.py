"""Model backends and version management for the server (chapter 8).

A backend runs one exported version: :class:`TFLiteBackend` through
``ai_edge_litert`` (no TensorFlow import: it starts fast and small) or
:class:`SavedModelBackend` through TensorFlow. :class:`ModelVersions` watches a
model's base path like TF Serving's file-system source: it serves the versions
its version policy selects (TF Serving's default: the highest complete one;
``latest`` N, ``all`` or ``specific`` from a model config file, or a pinned
one), loads a new version while the old ones keep serving, then unloads those
that left the policy, so requests never fail during a switch. A version that
fails to load is retried with exponential backoff (:class:`LoadFailure`).

The serving interface (what every front end calls: REST, gRPC, batching)
------------------------------------------------------------------------
``ModelVersions(name, base_path, backend="tflite" | "savedmodel")`` watches one
model; ``poll()`` loads new versions; ``loaded`` maps each served version to
its :class:`Loaded`, ``current`` is the highest (``None`` while nothing
loads), ``find(version)`` the one a request names; ``retired`` holds the
versions served before (``END``); ``failed`` maps a version whose load failed
to its :class:`LoadFailure`. A :class:`Loaded` has:

``version: int``
    The version number (folder ``00000123`` is version 123, as in TF Serving).
``signatures: dict[str, Signature]``
    Every SignatureDef of the SavedModel, by name (``"serving_default"``, ...),
    except ``__saved_model_init_op`` (that one is in the metadata only).
    ``Signature.method_name`` is ``"tensorflow/serving/predict"`` (or
    ``.../classify``, ``.../regress``); ``Signature.inputs`` and
    ``Signature.outputs`` map each tensor's name (the key clients use) to a
    :class:`TensorSpec`: ``dtype`` (a NumPy dtype; ``object`` for
    ``DT_STRING``, whose elements are ``bytes``), ``dtype_name``
    (``"DT_FLOAT"``), ``shape`` (a tuple, ``-1`` for an unknown dimension;
    ``None`` for an unknown rank) and ``tensor_name``
    (``"serving_default_image:0"``).
``run(signature_name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]``
    Runs one signature: ``inputs`` holds every input of the signature, each
    already of its spec's dtype (batch-major); the answer holds every output.
    Thread-safe. Raises :class:`KeyError` for an unknown signature and
    :class:`ValueError` for inputs that do not fit it (a client's error: 400);
    anything else is the backend failing (500).
``signature_def_map() -> dict``
    The ``signature_def`` map as TF Serving's REST metadata prints it (JSON
    names of ``SignatureDef``, ``__saved_model_init_op`` included).
``metadata: dict``, ``class_labels: list[str] | None``, ``monitor``
    The optional cnnlearn sidecar (``assets.extra/cnnlearn.json``; ``{}``
    without one), its class names (``"labels"``), and the drift monitor it
    configures.

``ModelVersions.version_labels`` maps TF Serving's version labels
(``/labels/stable``) to version numbers; a model config sets it.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnlearn import progress
from cnnlearn.compress.affine import from_output_tensor, to_input_tensor
from cnnlearn.deploy.export import (
    MANIFEST_FILE,
    METADATA_FILE,
    TFLITE_FILE,
    IntegrityError,
    verify_manifest,
    version_folders,
)
from cnnlearn.deploy.modelconfig import ModelEntry, select_versions
from cnnlearn.deploy.monitor import DriftMonitor
from cnnlearn.deploy.signatures import (
    NUMPY_DTYPES,
    PREDICT_METHOD,
    Signature,
    TensorSpec,
    read_signature_defs,
    signatures_from_defs,
)

__all__ = [
    "BACKENDS",
    "MAX_RETRY_POLLS",
    "LoadFailure",
    "Loaded",
    "ModelVersions",
    "SavedModelBackend",
    "TFLiteBackend",
    "declared_signature_defs",
    "error_code",
    "policy_with_pin",
    "tflite_signature_defs",
]

log = progress.logger("deploy")

#: The longest wait, in polls, before a version that failed to load is retried.
MAX_RETRY_POLLS = 32

_DTYPE_NAMES = {dtype: name for name, dtype in NUMPY_DTYPES.items()}


def _tensor_json(dtype_name: str, shape, tensor_name: str) -> dict:
    dims = [{"size": str(int(d)), "name": ""} for d in shape]
    return {
        "name": tensor_name,
        "dtype": dtype_name,
        "tensor_shape": {"dim": dims, "unknown_rank": False},
    }


def declared_signature_defs(declared: dict) -> dict:
    """The ``signature_def`` map (JSON) of the signatures a cnnlearn sidecar
    declares (``export.signature_defs``): what the LiteRT backend serves for a
    cnnlearn export, tensor names as the SavedModel names them."""
    defs = {}
    for sig, d in declared.items():
        defs[sig] = {
            side: {
                k: _tensor_json(v["dtype"], v["shape"], f"{sig}_{k}:0")
                for k, v in d[side].items()
            }
            for side in ("inputs", "outputs")
        }
        defs[sig].update(method_name=PREDICT_METHOD, defaults={})
    return dict(sorted(defs.items()))


def _detail_json(detail: dict, name: str | None = None) -> dict:
    dtype = _DTYPE_NAMES.get(np.dtype(detail["dtype"]), "DT_STRING")
    return _tensor_json(dtype, detail["shape"], name or detail["name"])


def _legacy_name(tensor_name: str) -> str:
    """TF Serving's ``TfToTfLiteLegacyTensorName``: the name up to its first
    ``:`` (``x:0`` is ``x``)."""
    return tensor_name.split(":", 1)[0]


def tflite_signature_defs(interpreter) -> dict:
    """The ``signature_def`` map (JSON) of a LiteRT model, as TF Serving's
    ``TfLiteSession`` builds it: the model's own SignatureDefs, or, if it has
    none, one ``serving_default`` over its input and output tensors (named
    without their ``:0``). Shapes are the tensors' allocated dims."""
    defs = {}
    for key in interpreter.get_signature_list():
        runner = interpreter.get_signature_runner(key)
        defs[key] = {
            "inputs": {
                k: _detail_json(d) for k, d in runner.get_input_details().items()
            },
            "outputs": {
                k: _detail_json(d) for k, d in runner.get_output_details().items()
            },
        }
    if not defs:
        defs["serving_default"] = {
            side: {_legacy_name(d["name"]): _detail_json(d) for d in details}
            for side, details in (
                ("inputs", interpreter.get_input_details()),
                ("outputs", interpreter.get_output_details()),
            )
        }
    for d in defs.values():
        d.update(method_name=PREDICT_METHOD, defaults={})
    return dict(sorted(defs.items()))


class TFLiteBackend:
    """``model.tflite`` of a version directory, run with LiteRT.

    Two modes. For a cnnlearn export (its sidecar declares the signatures of
    ``export.signature_defs``) it serves those signatures through the one
    float model in the file: ``serving_uint8`` scales its pixels by 1/255 and
    ``serving_bytes`` decodes each string to raw pixels first, in NumPy (a
    TFLite flatbuffer cannot hold TensorFlow's ``DecodeRaw``), and a quantized
    model's int8 tensors are quantized and dequantized here, so every variant
    answers in float. One interpreter per power-of-two batch size (a batch of
    5 runs padded to 8), created on first use, so a request never pays for
    ``allocate_tensors`` twice. Any other model file is served as TF Serving's
    ``--prefer_tflite_model`` serves it (``tflite_session.cc``): its own
    SignatureDefs (or a ``serving_default`` over its tensors), its own dtypes,
    through LiteRT's signature runners. Calls are serialized with a lock:
    interpreters are not thread-safe.
    """

    name = "tflite"
    required_file = TFLITE_FILE

    def __init__(
        self, version_dir: Path, num_threads: int = 1, declared: dict | None = None
    ):
        # Imported here: a SavedModel server never loads LiteRT beside TensorFlow.
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter_class = Interpreter
        self._content = (Path(version_dir) / TFLITE_FILE).read_bytes()
        self._num_threads = num_threads
        self._buckets: dict[int, tuple] = {}
        self._lock = threading.Lock()
        probe = self._new()  # a broken file fails here, at load, not on a request
        self.declared = declared is not None
        if self.declared:
            self._defs = declared_signature_defs(declared)
            self._image_shape = tuple(
                declared["serving_default"]["inputs"]["image"]["shape"][1:]
            )
            self._bucket(1)
        else:
            self._defs = tflite_signature_defs(probe)
            self._probe = probe
            self._runners: dict[str, object] = {}
        self.signatures = signatures_from_defs(self._defs)
        if not self.declared:  # any batch size: the batch dimension is free
            self.signatures = {k: _free_batch(s) for k, s in self.signatures.items()}

    def _new(self):
        return self._interpreter_class(
            model_content=self._content, num_threads=self._num_threads
        )

    def signature_def_map(self) -> dict:
        """The ``signature_def`` map, as TF Serving prints it."""
        return self._defs

    def _bucket(self, size: int) -> tuple:
        found = self._buckets.get(size)
        if found is None:
            interpreter = self._new()
            inp = interpreter.get_input_details()[0]
            out = interpreter.get_output_details()[0]
            interpreter.resize_tensor_input(
                inp["index"], [size, *inp["shape"][1:]], strict=False
            )
            interpreter.allocate_tensors()
            found = self._buckets[size] = (interpreter, inp, out)
        return found

    def predict(self, signature: str, images: np.ndarray) -> np.ndarray:
        """Probabilities for a batch of images (declared mode): float32 in
        [0, 1] for ``serving_default``, uint8 for ``serving_uint8``."""
        x = images
        if signature == "serving_uint8":
            x = images.astype(np.float32) * np.float32(1 / 255)
        n = len(x)
        size = 1 << (n - 1).bit_length()
        if size != n:
            x = np.concatenate([x, np.zeros((size - n, *x.shape[1:]), x.dtype)])
        with self._lock:
            interpreter, inp, out = self._bucket(size)
            interpreter.set_tensor(inp["index"], to_input_tensor(x, inp))
            interpreter.invoke()
            y = interpreter.get_tensor(out["index"])[:n]
        return from_output_tensor(y, out)

    def _decode_bytes(self, values: np.ndarray) -> np.ndarray:
        size = int(np.prod(self._image_shape))
        flat = values.reshape(-1)
        for value in flat:
            if len(value) != size:
                raise ValueError(
                    f"expected {size} raw uint8 pixels per image, got {len(value)}"
                )
        raw = np.frombuffer(b"".join(flat), dtype=np.uint8)
        return raw.reshape(len(flat), *self._image_shape)

    def run(self, signature: str, inputs: dict) -> dict:
        """Run ``signature`` (see the module docstring's serving interface)."""
        spec = self.signatures[signature]  # KeyError: not served
        if set(inputs) != set(spec.inputs):
            raise ValueError(f"expected inputs {sorted(spec.inputs)}")
        if not self.declared:
            return self._run_runner(signature, inputs)
        if signature == "serving_bytes":
            images = self._decode_bytes(inputs["image_bytes"])
            return {"probabilities": self.predict("serving_uint8", images)}
        return {"probabilities": self.predict(signature, inputs["image"])}

    def _run_runner(self, signature: str, inputs: dict) -> dict:
        with self._lock:
            if not self._probe.get_signature_list():  # TF Serving's mock default
                return self._run_tensors(inputs)
            runner = self._runners.get(signature)
            if runner is None:
                runner = self._runners[signature] = self._new().get_signature_runner(
                    signature
                )
            try:
                out = runner(**inputs)
            except RuntimeError as exc:  # LiteRT's shape and type errors
                raise ValueError(str(exc).splitlines()[0]) from None
            return {k: np.array(v) for k, v in out.items()}

    def _run_tensors(self, inputs: dict) -> dict:
        interpreter = self._probe
        names = {_legacy_name(d["name"]): d for d in interpreter.get_input_details()}
        for name, value in inputs.items():
            detail = names[name]
            if tuple(detail["shape"]) != value.shape:
                interpreter.resize_tensor_input(detail["index"], value.shape)
        try:
            interpreter.allocate_tensors()
            for name, value in inputs.items():
                interpreter.set_tensor(names[name]["index"], value)
            interpreter.invoke()
        except (RuntimeError, ValueError) as exc:
            raise ValueError(str(exc).splitlines()[0]) from None
        return {
            _legacy_name(d["name"]): np.array(interpreter.get_tensor(d["index"]))
            for d in interpreter.get_output_details()
        }


def _free_batch(signature: Signature) -> Signature:
    """A LiteRT signature whose tensors' first dimension is any batch size
    (LiteRT reports the allocated size, 1; requests may send more)."""

    def free(spec: TensorSpec) -> TensorSpec:
        if not spec.shape:
            return spec
        return TensorSpec(spec.dtype_name, (-1, *spec.shape[1:]), spec.tensor_name)

    return Signature(
        signature.method_name,
        {k: free(v) for k, v in signature.inputs.items()},
        {k: free(v) for k, v in signature.outputs.items()},
    )


class SavedModelBackend:
    """The SavedModel of a version directory, every signature run by TensorFlow.

    The signatures and the metadata are read from ``saved_model.pb``
    (:func:`~.signatures.read_signature_defs`), so any SavedModel serves:
    ``keras.Model.export``, ``tf.saved_model.save`` with several signatures,
    a cnnlearn export.
    """

    name = "savedmodel"
    required_file = "saved_model.pb"

    def __init__(self, version_dir: Path, declared: dict | None = None):
        # TensorFlow only here: the LiteRT server must run without it.
        import cnnlearn._tf  # noqa: F401

        # isort: split
        import tensorflow as tf

        self._tf = tf
        self._defs = read_signature_defs(version_dir)
        self.signatures = signatures_from_defs(self._defs)
        loaded = tf.saved_model.load(str(version_dir), tags=["serve"])
        self._loaded = loaded  # keeps the variables alive
        self._functions = dict(loaded.signatures)
        missing = set(self.signatures) - set(self._functions)
        if missing:
            raise ValueError(f"{version_dir}: signatures {sorted(missing)} not loaded")

    def signature_def_map(self) -> dict:
        """The ``signature_def`` map, as TF Serving prints it."""
        return self._defs

    def run(self, signature: str, inputs: dict) -> dict:
        """Run ``signature`` (see the module docstring's serving interface)."""
        function = self._functions[signature]  # KeyError: not served
        tf = self._tf
        try:
            tensors = {k: tf.constant(v) for k, v in inputs.items()}
            out = function(**tensors)
        except (TypeError, ValueError, tf.errors.InvalidArgumentError) as exc:
            raise ValueError(str(exc).strip().splitlines()[0]) from None
        return {k: v.numpy() for k, v in out.items()}

    def predict(self, signature: str, images: np.ndarray) -> np.ndarray:
        """Probabilities for a batch of images, for a cnnlearn export."""
        return self.run(signature, {"image": images})["probabilities"]


BACKENDS = {"tflite": TFLiteBackend, "savedmodel": SavedModelBackend}


@dataclass
class Loaded:
    """One loaded version: see the module docstring's serving interface."""

    version: int
    backend: object
    metadata: dict = field(default_factory=dict)
    monitor: DriftMonitor | None = None
    class_labels: list[str] | None = None

    @property
    def signatures(self) -> dict[str, Signature]:
        """Every servable signature, by name."""
        return self.backend.signatures

    def run(self, signature_name: str, inputs: dict) -> dict:
        """Run one signature: input name → array in, output name → array out."""
        return self.backend.run(signature_name, inputs)

    def signature_def_map(self) -> dict:
        """The ``signature_def`` map as TF Serving's REST metadata prints it."""
        return self.backend.signature_def_map()


@dataclass
class LoadFailure:
    """Why a version did not load, and when :class:`ModelVersions` tries again.

    ``error_code`` and ``message`` are what the status API shows (TF Serving's
    ``StatusProto``); ``retry_at`` is the poll of the next try; ``files`` is
    what the version's files looked like at the failed try (a changed folder is
    retried on the next poll, without waiting).
    """

    error_code: str
    message: str
    attempts: int
    retry_at: int
    files: tuple


def error_code(exc: BaseException) -> str:
    """The ``tensorflow.error.Code`` name for a failed load."""
    if isinstance(exc, IntegrityError):  # files that do not match the manifest
        return "DATA_LOSS"
    if isinstance(exc, FileNotFoundError):
        return "NOT_FOUND"
    if isinstance(exc, ValueError):  # a corrupt model file, a bad metadata.json
        return "INVALID_ARGUMENT"
    return "UNKNOWN"


class ModelVersions:
    """The versions of one model that the server serves.

    Parameters
    ----------
    name
        The model name in URLs.
    base_path
        TF Serving's ``--model_base_path``: it holds ``1/``, ``2/``, ... or
        ``00000123/`` (version 123), parsed as TF Serving parses them
        (:func:`~.export.version_folders`). A version is complete when it
        holds its backend's file (``saved_model.pb`` or ``model.tflite``);
        the cnnlearn sidecar is optional, and a checksum manifest, if there
        is one, must match before the version loads.
    backend
        ``"tflite"`` (``model.tflite``, run with LiteRT, as TF Serving's
        ``--prefer_tflite_model`` runs it; unlike TF Serving, a version
        without one is not served from its SavedModel, which would need
        TensorFlow) or ``"savedmodel"``.
    pinned
        Serve this version only (rollback by pinning): a ``specific`` policy
        of one version.
    drift_window
        Images in the drift monitor's window.
    max_retry_polls
        A version that fails to load is tried again 1 poll later, then 2, 4,
        ... polls, at most ``max_retry_polls`` apart, and on the next poll if
        its files changed. TF Serving retries a failed load too
        (``--max_num_load_retries``, ``--load_retry_interval_micros``), at a
        fixed interval and a bounded number of times; here a version folder
        that was half-written and is then replaced is served whenever that
        happens, while an older version keeps serving meanwhile.
    policy
        The model's :class:`~.modelconfig.ModelEntry` (a model config file's
        ``config``): its version policy (``latest`` N, ``all``,
        ``specific``) picks the versions kept loaded, from the complete ones
        on disk (:func:`~.modelconfig.select_versions`). ``None``: TF
        Serving's default, the latest one. Its labels are not applied here
        (the server checks them first: :attr:`version_labels`).

    Every version the policy selects is loaded and served (:attr:`loaded`);
    :attr:`current` is the highest, the one a request without a version gets
    (TF Serving's ``Latest``). A version that leaves the policy (a newer one
    arrived, the policy changed, its folder was removed) is unloaded and
    listed as ``END`` (:attr:`retired`), as TF Serving lists it. Used in
    chapter 8.
    """

    def __init__(
        self,
        name: str,
        base_path: str | Path,
        backend: str = "tflite",
        pinned: int | None = None,
        drift_window: int = 1000,
        max_retry_polls: int = MAX_RETRY_POLLS,
        policy: ModelEntry | None = None,
    ):
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}: expected {list(BACKENDS)}")
        self.name = name
        self.base_path = Path(base_path)
        self.backend = backend
        self.pinned = pinned
        self.drift_window = drift_window
        self.max_retry_polls = max_retry_polls
        self.policy = policy_with_pin(
            policy or ModelEntry(name, self.base_path), pinned
        )
        self.loaded: dict[int, Loaded] = {}  # replaced, never changed in place
        self.version_labels: dict[str, int] = {}  # TF Serving's version labels
        self.retired: set[int] = set()  # served once, then unloaded: END
        self.failed: dict[int, LoadFailure] = {}  # versions on disk that failed
        self.load_failures = 0  # failed loads since start, for the metrics
        self.polls = 0
        self._missing: tuple[int, ...] = ()  # specific versions not on disk
        self._poll_lock = threading.Lock()

    @property
    def current(self) -> Loaded | None:
        """The highest loaded version (TF Serving's ``Latest``), or ``None``."""
        loaded = self.loaded
        return loaded[max(loaded)] if loaded else None

    def find(self, version: int | None) -> Loaded | None:
        """The loaded ``version`` (``None``: :attr:`current`), or ``None``."""
        return self.current if version is None else self.loaded.get(version)

    def configure(self, policy: ModelEntry) -> None:
        """Use ``policy`` from the next :meth:`poll` on (a reloaded model
        config; :attr:`pinned` still applies)."""
        with self._poll_lock:
            self.policy = policy_with_pin(policy, self.pinned)

    def unload_all(self) -> bool:
        """Unload every version (the model left the config): each is listed
        as ``END`` from now on. Return whether any was loaded."""
        with self._poll_lock:
            gone, self.loaded = self.loaded, {}
            self.retired.update(gone)
            self.version_labels = {}
        for version in sorted(gone):
            log.info("%s: version %d unloaded", self.name, version)
        return bool(gone)

    def _folder(self, version: int) -> Path:
        found = version_folders(self.base_path).get(version)
        return found if found is not None else self.base_path / str(version)

    def _complete(self, folder: Path) -> bool:
        return (folder / BACKENDS[self.backend].required_file).is_file()

    def _files(self, version: int) -> tuple:
        """What identifies the contents of a version folder cheaply: its name,
        and the inode, size and modification time of the folder and of its
        required file, sidecar and manifest."""
        directory = self._folder(version)
        required = BACKENDS[self.backend].required_file
        found: list = [directory.name]
        for path in (
            directory,
            directory / required,
            directory / METADATA_FILE,
            directory / MANIFEST_FILE,
        ):
            try:
                st = path.stat()
            except OSError:
                found.append(None)
            else:
                found.append((st.st_ino, st.st_size, st.st_mtime_ns))
        return tuple(found)

    def _due(self, version: int) -> bool:
        failure = self.failed.get(version)
        return (
            failure is None
            or self.polls >= failure.retry_at
            or self._files(version) != failure.files
        )

    def wanted(self, skip: frozenset[int] = frozenset()) -> list[int]:
        """The versions that should be served now, ascending.

        The policy applied to the complete versions on disk, leaving out those
        in ``skip`` and those whose load failed until their retry is due (then
        they are tried again): with ``latest``, the next versions down take
        their place, so a broken newest version never leaves the model
        without one. A failed version no longer on disk is forgotten.
        """
        folders = version_folders(self.base_path)
        complete = [v for v, folder in folders.items() if self._complete(folder)]
        for version in set(self.failed) - set(complete):
            del self.failed[version]
        eligible = [
            v for v in complete if v not in skip and (v in self.loaded or self._due(v))
        ]
        policy = self.policy
        if policy.policy == "latest":
            return select_versions(policy, eligible, warn=False)
        missing = tuple(sorted(set(policy.versions) - set(complete)))
        if policy.policy == "specific" and missing != self._missing:
            for version in missing:  # logged when it changes, not every poll
                log.warning(
                    "%s: version %d, which the specific policy serves, is not in %s",
                    self.name,
                    version,
                    self.base_path,
                )
        self._missing = missing
        eligible_set = set(eligible)
        chosen = select_versions(policy, complete, warn=False)
        return [v for v in chosen if v in eligible_set]

    def poll(self) -> bool:
        """Load the versions the policy wants and unload the others; return
        whether the served versions changed.

        The versions being served keep serving while new ones load, and are
        unloaded only after. A version that fails to load is logged,
        remembered in :attr:`failed` and retried with backoff (see the class
        docstring); meanwhile the policy picks from the others (with
        ``latest``, the next one down). Each version is tried at most once
        per poll.
        """
        with self._poll_lock:
            self.polls += 1
            failed: set[int] = set()  # this poll's failures: not tried again
            changed = False
            while True:
                wanted = self.wanted(frozenset(failed))
                missing = [v for v in wanted if v not in self.loaded]
                if not missing:
                    break
                for version in reversed(missing):  # newest first
                    if self._try_load(version):
                        changed = True
                    else:
                        failed.add(version)
            gone = sorted(set(self.loaded) - set(wanted))
            if gone:
                self.loaded = {v: x for v, x in self.loaded.items() if v not in gone}
                self.retired.update(gone)  # TF Serving lists them as END
                for version in gone:
                    log.info("%s: version %d unloaded", self.name, version)
                if not self.loaded:
                    log.warning("%s: nothing to serve in %s", self.name, self.base_path)
            return changed or bool(gone)

    def _try_load(self, version: int) -> bool:
        """Load ``version`` into :attr:`loaded`; return whether it loaded."""
        files = self._files(version)  # before the load: a change during it counts
        try:
            loaded = self._load(version)
        except Exception as exc:  # a broken version must not stop the server
            self._failed(version, exc, files)
            return False
        self.loaded = {**self.loaded, version: loaded}
        self.failed.pop(version, None)
        self.retired.discard(version)
        log.info("%s: serving version %d", self.name, version)
        return True

    def _failed(self, version: int, exc: Exception, files: tuple) -> None:
        before = self.failed.get(version)
        attempts = before.attempts + 1 if before else 1
        wait = min(2 ** min(attempts - 1, 30), self.max_retry_polls)
        message = f"{type(exc).__name__}: {exc}".splitlines()[0]
        self.failed[version] = LoadFailure(
            error_code(exc), message, attempts, self.polls + wait, files
        )
        self.load_failures += 1
        log.error(
            "%s: version %d failed to load (try %d; next in %d polls): %s",
            self.name,
            version,
            attempts,
            wait,
            message,
        )

    def _load(self, version: int) -> Loaded:
        """Check the version's manifest (if it has one), read its sidecar (if
        it has one), then load the backend."""
        directory = self._folder(version)
        verify_manifest(directory)  # IntegrityError: a failed load, retried
        sidecar = directory / METADATA_FILE
        metadata = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
        if not isinstance(metadata, dict):
            raise ValueError(f"{sidecar}: expected a JSON object")
        declared = metadata.get("signatures") if self.backend == "tflite" else None
        if declared is not None:
            backend = TFLiteBackend(directory, declared=declared)
        else:
            backend = BACKENDS[self.backend](directory)
        stats = metadata.get("input_statistics")
        monitor = DriftMonitor(stats, self.drift_window) if stats else None
        names = metadata.get("labels")
        if names is not None and not (
            isinstance(names, list) and all(isinstance(x, str) for x in names)
        ):
            raise ValueError(f"{sidecar}: 'labels' must be a list of strings")
        return Loaded(version, backend, metadata, monitor, names)


def policy_with_pin(policy: ModelEntry, pinned: int | None) -> ModelEntry:
    """``policy``, or, with a ``pinned`` version, a ``specific`` policy of
    that version only (``cnnlearn serve --pin-version``). Used in chapter 8."""
    if pinned is None:
        return policy
    return dataclasses.replace(policy, policy="specific", versions=(pinned,))
