"""Model backends and version management for the server (chapter 8).

A backend runs one exported version: :class:`TFLiteBackend` through
``ai_edge_litert`` (no TensorFlow import: it starts fast and small) or
:class:`SavedModelBackend` through TensorFlow. :class:`ModelVersions` watches a
model's base path like TF Serving's file-system source: it serves the highest
complete version (or a pinned one), loads a new version while the old one keeps
serving, then swaps, so requests never fail during a switch. A version that
fails to load is retried with exponential backoff (:class:`LoadFailure`).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlearn import progress
from cnnlearn.compress.affine import from_output_tensor, to_input_tensor
from cnnlearn.deploy.export import METADATA_FILE, TFLITE_FILE, list_versions
from cnnlearn.deploy.monitor import DriftMonitor

__all__ = [
    "BACKENDS",
    "MAX_RETRY_POLLS",
    "LoadFailure",
    "Loaded",
    "ModelVersions",
    "SavedModelBackend",
    "TFLiteBackend",
    "error_code",
]

log = progress.logger("deploy")

#: The longest wait, in polls, before a version that failed to load is retried.
MAX_RETRY_POLLS = 32


class TFLiteBackend:
    """``model.tflite`` of a version directory, run with LiteRT.

    One interpreter per power-of-two batch size (a batch of 5 runs padded to
    8), created on first use, so a request never pays for ``allocate_tensors``
    twice. Calls are serialized with a lock: interpreters are not thread-safe.
    """

    name = "tflite"
    required_file = TFLITE_FILE

    def __init__(self, version_dir: Path, num_threads: int = 1):
        # Imported here: a SavedModel server never loads LiteRT beside TensorFlow.
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter_class = Interpreter
        self._content = (Path(version_dir) / TFLITE_FILE).read_bytes()
        self._num_threads = num_threads
        self._buckets: dict[int, tuple] = {}
        self._lock = threading.Lock()
        self._bucket(1)  # a broken file fails here, at load, not on a request

    def _bucket(self, size: int) -> tuple:
        found = self._buckets.get(size)
        if found is None:
            interpreter = self._interpreter_class(
                model_content=self._content, num_threads=self._num_threads
            )
            inp = interpreter.get_input_details()[0]
            out = interpreter.get_output_details()[0]
            interpreter.resize_tensor_input(
                inp["index"], [size, *inp["shape"][1:]], strict=False
            )
            interpreter.allocate_tensors()
            found = self._buckets[size] = (interpreter, inp, out)
        return found

    def predict(self, signature: str, images: np.ndarray) -> np.ndarray:
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


class SavedModelBackend:
    """The SavedModel of a version directory, its signatures run by TensorFlow."""

    name = "savedmodel"
    required_file = "saved_model.pb"

    def __init__(self, version_dir: Path):
        # TensorFlow only here: the LiteRT server must run without it.
        import cnnlearn._tf  # noqa: F401

        # isort: split
        import tensorflow as tf

        self._tf = tf
        loaded = tf.saved_model.load(str(version_dir))
        self._loaded = loaded  # keeps the variables alive
        self._signatures = dict(loaded.signatures)
        for name in ("serving_default", "serving_uint8"):
            if name not in self._signatures:
                raise ValueError(f"{version_dir}: SavedModel lacks signature {name}")

    def predict(self, signature: str, images: np.ndarray) -> np.ndarray:
        out = self._signatures[signature](image=self._tf.constant(images))
        return out["probabilities"].numpy()


BACKENDS = {"tflite": TFLiteBackend, "savedmodel": SavedModelBackend}


@dataclass
class Loaded:
    """One loaded version: its backend, metadata and drift monitor."""

    version: int
    backend: object
    metadata: dict
    monitor: DriftMonitor | None


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
        TF Serving's ``--model_base_path``: it holds ``1/``, ``2/``, ...
    backend
        ``"tflite"`` or ``"savedmodel"``.
    pinned
        Serve this version only (rollback by pinning); ``None`` serves the
        highest complete version (TF Serving's "latest" policy).
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
    """

    def __init__(
        self,
        name: str,
        base_path: str | Path,
        backend: str = "tflite",
        pinned: int | None = None,
        drift_window: int = 1000,
        max_retry_polls: int = MAX_RETRY_POLLS,
    ):
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}: expected {list(BACKENDS)}")
        self.name = name
        self.base_path = Path(base_path)
        self.backend = backend
        self.pinned = pinned
        self.drift_window = drift_window
        self.max_retry_polls = max_retry_polls
        self.current: Loaded | None = None
        self.failed: dict[int, LoadFailure] = {}  # versions on disk that failed
        self.load_failures = 0  # failed loads since start, for the metrics
        self.polls = 0
        self._poll_lock = threading.Lock()

    def _complete(self, version: int) -> bool:
        directory = self.base_path / str(version)
        required = BACKENDS[self.backend].required_file
        files = (directory / required, directory / METADATA_FILE)
        return all(f.is_file() for f in files)

    def _files(self, version: int) -> tuple:
        """What identifies the contents of a version folder cheaply: the inode,
        size and modification time of the folder and of its required files."""
        directory = self.base_path / str(version)
        required = BACKENDS[self.backend].required_file
        found = []
        for path in (directory, directory / required, directory / METADATA_FILE):
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

    def target(self, skip: frozenset[int] = frozenset()) -> int | None:
        """The version that should be served now, or ``None``.

        A version whose load failed is left out until its retry is due (then
        it is tried again), as are those in ``skip``; one no longer on disk is
        forgotten.
        """
        versions = [v for v in list_versions(self.base_path) if self._complete(v)]
        for version in set(self.failed) - set(versions):
            del self.failed[version]
        if self.pinned is not None:
            versions = [self.pinned] if self.pinned in versions else []
        versions = [v for v in versions if v not in skip and self._due(v)]
        return versions[-1] if versions else None

    def poll(self) -> bool:
        """Load the target version if it changed; return whether it did.

        The current version keeps serving while the new one loads. A version
        that fails to load is logged, remembered in :attr:`failed` and retried
        with backoff (see the class docstring); meanwhile the next version down
        is served if none is. Each version is tried at most once per poll.
        """
        with self._poll_lock:
            self.polls += 1
            tried: set[int] = set()
            while True:
                target = self.target(frozenset(tried))
                current = self.current
                if target == (current.version if current else None):
                    return False
                if target is None:  # removed from disk: unload, as TF Serving does
                    self.current = None
                    log.warning("%s: nothing to serve in %s", self.name, self.base_path)
                    return True
                tried.add(target)
                files = self._files(
                    target
                )  # before the load: a change during it counts
                try:
                    self.current = self._load(target)
                except Exception as exc:  # a broken version must not stop the server
                    self._failed(target, exc, files)
                    continue
                self.failed.pop(target, None)
                log.info("%s: serving version %d", self.name, target)
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
        directory = self.base_path / str(version)
        metadata = json.loads((directory / METADATA_FILE).read_text())
        backend = BACKENDS[self.backend](directory)
        stats = metadata.get("input_statistics")
        monitor = DriftMonitor(stats, self.drift_window) if stats else None
        return Loaded(version, backend, metadata, monitor)
