"""TF Serving's ``--model_config_file``: several models, version policies and
labels, reloaded on change (chapter 8).

The file is a ``tensorflow.serving.ModelServerConfig`` in protobuf text format,
parsed with the real proto from ``tensorflow-serving-api``
(``model_server_config.proto``), so a file that TF Serving reads is read here
and one that it refuses is refused here::

    model_config_list {
      config {
        name: 'mnist'
        base_path: '/models/mnist'
        model_platform: 'tensorflow'
        model_version_policy { specific { versions: 1 versions: 2 } }
        version_labels { key: 'stable' value: 1 }
        version_labels { key: 'canary' value: 2 }
      }
    }

:func:`read_config` turns it into :class:`ModelEntry` rows after the checks
TF Serving's ``ServerCore`` makes (``ValidateModelConfigList``, ``GetPlatform``,
``CreateStoragePathRoutes``), with its wording: a model listed twice, a
relative or empty ``base_path`` (unless ``root_dir``, TF Serving's
``--model_config_list_root_dir``, is given), a missing or unsupported
``model_platform``. An unknown policy or field fails in the text-format parser,
as it does in TF Serving. Stricter than TF Serving, to fail fast: a
``base_path`` that does not exist (TF Serving logs it and keeps polling), a
``specific`` policy with no versions (TF Serving logs a warning and serves
nothing) and a label on a version that a ``specific`` policy never serves are
errors too. :func:`select_versions` applies a policy to the versions found on
disk as ``FileSystemStoragePathSource`` does; :func:`check_labels` and
:func:`resolve_label` are TF Serving's label rules. :class:`ConfigWatcher`
re-reads the file every ``poll_wait_seconds`` (TF Serving's
``--model_config_file_poll_wait_seconds``) and hands a changed, valid config to
a callback; a file that fails to parse or validate is logged and the config in
use stays, as in TF Serving's ``PollFilesystemAndReloadConfig``.

Parsing needs ``tensorflow-serving-api`` (imported inside :func:`parse_config`)
but never imports TensorFlow: its config protos stand alone, so the LiteRT
server can read a config file without loading TensorFlow.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cnnlearn import progress

__all__ = [
    "PLATFORM",
    "ConfigWatcher",
    "ModelEntry",
    "check_labels",
    "parse_config",
    "read_config",
    "resolve_label",
    "select_versions",
]

log = progress.logger("deploy")

#: The only ``model_platform`` served (TF Serving's ``kTensorFlowModelPlatform``).
PLATFORM = "tensorflow"

_PROTO = "tensorflow.serving.ModelServerConfig"


@dataclass(frozen=True)
class ModelEntry:
    """One ``config { ... }`` of a model config file, validated.

    ``policy`` is ``"latest"`` (the default, serving the ``num_versions``
    highest versions), ``"all"`` or ``"specific"`` (serving ``versions``);
    ``labels`` maps a version label to its version. Used in chapter 8.
    """

    name: str
    base_path: Path
    platform: str = PLATFORM
    policy: str = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()
    labels: dict[str, int] = field(default_factory=dict)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _parse_proto(text: str, source: str):
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise ValueError(
            f"{source}: Error parsing text-format {_PROTO}: {_one_line(exc)}"
        ) from None
    return config


def _base_path(model, root_dir: Path | None, source: str) -> Path:
    path = model.base_path
    if "://" in path:
        raise ValueError(
            f"{source}: model {model.name}: base_path {path!r} is a URI; "
            "only local paths are served"
        )
    if root_dir is not None:
        return Path(root_dir) / path
    if not path or not Path(path).is_absolute():
        raise ValueError(
            f"{source}: Expected model {model.name} to have an absolute path or "
            f"URI; got base_path()={path}"
        )
    return Path(path)


def _platform(model, source: str) -> str:
    # model_type is TF Serving's deprecated spelling of the platform.
    if model.model_type and model.model_platform:
        raise ValueError(
            f"{source}: Illegal setting both ModelServerConfig::model_type "
            f"(deprecated) and ModelServerConfig::model_platform, model name is "
            f"{model.name}"
        )
    if model.model_type not in (0, 1):  # 1 is TENSORFLOW
        raise ValueError(
            f"{source}: ModelServerConfig::model_type choice {model.model_type} "
            "not supported."
        )
    platform = PLATFORM if model.model_type == 1 else model.model_platform
    if not platform:
        raise ValueError(
            f"{source}: Illegal setting neither ModelServerConfig::model_type "
            f"(deprecated) nor ModelServerConfig::model_platform, model name is "
            f"{model.name}"
        )
    if platform != PLATFORM:
        raise ValueError(
            f"{source}: Model {model.name} requests unsupported platform "
            f"{platform} (expected {PLATFORM})"
        )
    return platform


def _entry(model, root_dir: Path | None, source: str, check_paths: bool):
    if not model.name:
        raise ValueError(f"{source}: a model config has no name")
    base_path = _base_path(model, root_dir, source)
    if check_paths and not base_path.is_dir():
        raise FileNotFoundError(
            f"{source}: Could not find base path {base_path} for servable {model.name}"
        )
    policy = model.model_version_policy
    choice = policy.WhichOneof("policy_choice") or "latest"
    versions = tuple(policy.specific.versions)
    if choice == "specific" and not versions:
        raise ValueError(
            f"{source}: model {model.name}: model_version_policy specific lists "
            "no versions"
        )
    labels = dict(model.version_labels)
    if choice == "specific":
        for label, version in sorted(labels.items()):
            if version not in versions:
                raise ValueError(
                    f"{source}: model {model.name}: label {label!r} names version "
                    f"{version}, which the specific policy {list(versions)} never "
                    "serves"
                )
    return ModelEntry(
        name=model.name,
        base_path=base_path,
        platform=_platform(model, source),
        policy=choice,
        num_versions=max(policy.latest.num_versions, 1),  # TF: 0 means 1
        versions=versions,
        labels=labels,
    )


def parse_config(
    text: str,
    root_dir: str | Path | None = None,
    source: str = "model config",
    check_paths: bool = True,
) -> tuple[ModelEntry, ...]:
    """The models of a ``ModelServerConfig`` in text format, validated.

    Parameters
    ----------
    text
        The file's contents.
    root_dir
        TF Serving's ``--model_config_list_root_dir``: base paths are joined
        to it (then they may be relative); without it they must be absolute.
    source
        What error messages call the text (the file's path).
    check_paths
        Refuse a ``base_path`` that is not a directory (TF Serving would log
        it and wait for it to appear).

    Returns
    -------
    The :class:`ModelEntry` of every model, in the file's order (an empty
    ``model_config_list`` serves nothing, as in TF Serving).

    Raises
    ------
    ValueError
        Text that does not parse (an unknown policy or field, a bad value) or
        a config that TF Serving would refuse; one line, naming ``source``.
    FileNotFoundError
        A base path that does not exist (with ``check_paths``).

    Used in chapter 8.
    """
    config = _parse_proto(text, source)
    kind = config.WhichOneof("config")
    if kind == "custom_model_config":
        raise ValueError(f"{source}: custom_model_config is not supported")
    names: set[str] = set()
    for model in config.model_config_list.config:
        if model.name in names:
            raise ValueError(
                f"{source}: Illegal to list model {model.name} multiple times in "
                "config list"
            )
        names.add(model.name)
    root = None if root_dir is None else Path(root_dir)
    return tuple(
        _entry(model, root, source, check_paths)
        for model in config.model_config_list.config
    )


def read_config(
    path: str | Path, root_dir: str | Path | None = None, check_paths: bool = True
) -> tuple[ModelEntry, ...]:
    """:func:`parse_config` of the file at ``path`` (``--model_config_file``).

    Raises :class:`FileNotFoundError` if there is no such file. Used in
    chapter 8.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model config file not found")
    return parse_config(path.read_text(), root_dir, str(path), check_paths)


def select_versions(
    entry: ModelEntry, on_disk: Iterable[int], warn: bool = True
) -> list[int]:
    """The versions that ``entry``'s policy serves out of those on disk,
    ascending.

    ``latest``: the ``num_versions`` highest; ``all``: every one;
    ``specific``: those listed that exist (with ``warn``, a listed version
    that is missing is logged, as TF Serving's ``AspireSpecificVersions``
    does; a caller that polls may log it only when it changes). Used in
    chapter 8.
    """
    versions = sorted(set(on_disk))
    if entry.policy == "all":
        return versions
    if entry.policy == "specific":
        missing = sorted(set(entry.versions) - set(versions)) if warn else []
        for version in missing:
            log.warning(
                "Version %d of servable %s, which was requested to be served as a "
                "'specific' version in the servable's version policy, was not "
                "found in the file system",
                version,
                entry.name,
            )
        return [v for v in versions if v in entry.versions]
    return versions[-entry.num_versions :]


def check_labels(
    entry: ModelEntry,
    available: Iterable[int],
    current: dict[str, int] | None = None,
    allow_unavailable: bool = False,
) -> dict[str, int]:
    """``entry``'s labels, if each may be assigned now; TF Serving's
    ``UpdateModelVersionLabelMap``.

    A label must name a version that is ``available`` (loaded and serving),
    so that requests to it never fail while it loads. With
    ``allow_unavailable`` (TF Serving's
    ``--allow_version_labels_for_unavailable_models``) a new label, or one
    that keeps its version (``current`` holds the labels in use), may name
    any version; moving a label still needs its new version available.

    Raises
    ------
    ValueError
        TF Serving's message (a ``FAILED_PRECONDITION`` there), naming the
        first label that may not be assigned.

    Used in chapter 8.
    """
    available = set(available)
    current = current or {}
    for label, version in sorted(entry.labels.items()):
        moved = label in current and current[label] != version
        if version not in available and not (allow_unavailable and not moved):
            raise ValueError(
                f"Request to assign label to version {version} of model "
                f"{entry.name}, which is not currently available for inference"
            )
    return dict(entry.labels)


def resolve_label(labels: dict[str, dict[str, int]], model: str, label: str) -> int:
    """The version that ``label`` names for ``model``; ``labels`` maps each
    model to its label map. Raises :class:`ValueError` with TF Serving's
    message (``INVALID_ARGUMENT``, a 400) for a label it does not know. Used
    in chapter 8."""
    version = labels.get(model, {}).get(label)
    if version is None:
        raise ValueError(f"Unrecognized servable version label: {label}")
    return version


class ConfigWatcher:
    """Re-reads a model config file and applies it when it changes.

    Parameters
    ----------
    path
        The ``--model_config_file``.
    apply
        Called with the new models (a tuple of :class:`ModelEntry`) by the
        first :meth:`check` and whenever the file holds a valid config other
        than the one applied. If it raises, the error is logged and the file
        is tried again at the next check (the server keeps the config in use,
        as TF Serving does when ``ReloadConfig`` fails).
    poll_wait_seconds
        TF Serving's ``--model_config_file_poll_wait_seconds``: how often
        :meth:`start`'s thread checks; 0 or less never polls.
    root_dir, check_paths
        As for :func:`parse_config`.

    ``models`` is the config applied last, ``last_error`` the one-line reason
    the last :meth:`check` applied nothing (``None`` after one that applied a
    config). The server (:func:`cnnlearn.deploy.state.apply_config`) calls
    :meth:`check` from its version poll rather than :meth:`start`'s thread.

    Used in chapter 8.
    """

    def __init__(
        self,
        path: str | Path,
        apply: Callable[[tuple[ModelEntry, ...]], None],
        poll_wait_seconds: float = 0.0,
        root_dir: str | Path | None = None,
        check_paths: bool = True,
    ):
        self.path = Path(path)
        self.apply = apply
        self.poll_wait_seconds = poll_wait_seconds
        self.root_dir = root_dir
        self.check_paths = check_paths
        self.models: tuple[ModelEntry, ...] | None = None  # the config applied
        self.reloads = 0  # configs applied, the first included
        self.errors = 0  # distinct failures to read, parse, validate or apply
        self.last_error: str | None = None  # why the last check applied nothing
        self._applied: bytes | None = None  # digest of the file applied
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def check(self, raise_errors: bool = False) -> bool:
        """Read the file; apply it if it differs from the config in use and is
        valid; return whether a config was applied. A file that cannot be
        read, parsed, validated or applied is logged (once while the error
        stays the same) and tried again at the next check, so a base path
        created later is picked up without touching the file; with
        ``raise_errors`` (the server's first check: a bad file at start is
        fatal, as in TF Serving) the error is raised instead, one line:
        :class:`FileNotFoundError` for a missing file, :class:`ValueError`
        for a bad one, or what ``apply`` raised."""
        with self._lock:
            try:
                if not self.path.is_file():
                    raise FileNotFoundError(f"{self.path}: model config file not found")
                data = self.path.read_bytes()
                digest = hashlib.sha256(data).digest()
                if digest == self._applied:
                    return False
                models = parse_config(
                    data.decode(), self.root_dir, str(self.path), self.check_paths
                )
                self.apply(models)
            except Exception as exc:  # a bad file must not stop the server
                if raise_errors:
                    raise
                message = _one_line(f"model config {self.path} not applied: {exc}")
                if message != self.last_error:
                    self.errors += 1
                    log.error("%s", message)
                self.last_error = message
                return False
            self._applied = digest
            self.last_error = None
            self.models = models
            self.reloads += 1
            log.info("model config %s applied: %d models", self.path, len(models))
            return True

    def _run(self) -> None:
        while not self._stop.wait(self.poll_wait_seconds):
            self.check()

    @property
    def polling(self) -> bool:
        """Whether :meth:`start`'s thread is running."""
        return self._thread is not None

    def start(self) -> None:
        """Poll in a daemon thread every ``poll_wait_seconds`` (if positive)."""
        if self.poll_wait_seconds > 0 and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name="model-config-poll", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop :meth:`start`'s thread and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
