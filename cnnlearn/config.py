"""One run configuration for every run verb (chapters 4-8).

:class:`RunConfig` holds what ``cnnlearn train``, ``tune``, ``compress`` and
``deploy`` share: which model on which data, how much of it, the seed, the
epochs and batch, the device and the training-plan overrides.
:func:`load_data` turns it into the arrays a run trains and tests on, the one
load → ``take_fraction`` → preprocess sequence of the package. The CLI builds a
config once from its shared argument group (:mod:`cnnlearn.cli._args`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: the CLI imports this module before --help
    import numpy as np

__all__ = [
    "BACKENDS",
    "DEVICES",
    "RunConfig",
    "RunData",
    "check_device_name",
    "load_data",
    "use_backend",
]

# The Keras 3 backends the book runs on, and the module each one needs.
BACKENDS = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}

# The book's one device vocabulary: every chapter's ``device`` parameter, every
# CLI verb's ``--device``, every run routine. :func:`check_device_name` checks a
# name; :func:`cnnlearn.compute.resolve_device` also checks that the device is
# there and maps it to the one a run uses.
DEVICES = ("auto", "cpu", "gpu", "tpu")


def check_device_name(device: str) -> str:
    """``device`` in lower case if it is one of :data:`DEVICES`, else a one-line
    :class:`ValueError` that lists them."""
    name = str(device).lower()
    if name not in DEVICES:
        raise ValueError(
            f"unknown device {device!r}: expected one of {', '.join(DEVICES)}"
        )
    return name


def use_backend(name: str) -> str:
    """Make ``name`` this process's Keras backend (``KERAS_BACKEND``).

    Keras reads the variable once, when it is first imported: call this
    before. A name outside :data:`BACKENDS`, a backend whose library is not
    installed, or Keras already running on another backend is a one-line
    :class:`ValueError`. Used by ``cnnlearn <verb> --backend`` and ``cnnlearn
    book run --backend``, which starts each chapter's kernel with it (chapter 4).
    """
    if name not in BACKENDS:
        raise ValueError(
            f"unknown backend {name!r}: expected one of {', '.join(BACKENDS)}"
        )
    if importlib.util.find_spec(BACKENDS[name]) is None:
        raise ValueError(
            f"backend {name!r} needs {BACKENDS[name]}, which is not installed"
        )
    keras = sys.modules.get("keras")
    if keras is not None and keras.config.backend() != name:
        raise ValueError(
            f"Keras already runs on {keras.config.backend()} in this process: "
            f"start a new one with KERAS_BACKEND={name}"
        )
    os.environ["KERAS_BACKEND"] = name
    return name


@dataclass(frozen=True)
class RunConfig:
    """What a run trains on and how.

    Parameters
    ----------
    model : str
        A registered model (:data:`cnnlearn.models.MODELS`).
    dataset : str
        ``"mnist"`` or ``"fashion_mnist"``.
    data_dir : str or Path, optional
        The IDX files' directory; default ``$CNNLEARN_DATA_DIR``, then Keras'
        download (:func:`cnnlearn.data.load_dataset`).
    data_fraction : float
        The seeded share of the training set a run uses, in (0, 1].
    seed : int
        Seeds the fraction, the validation split, the weights and the shuffles.
    validation_split : float
        The share of the (fractioned) training set held out, in [0, 1).
    epochs, batch_size : int, optional
        ``None``: the model's :class:`~cnnlearn.models.ModelSpec` defaults.
    device : str
        One of :data:`DEVICES`.
    plan : dict
        Overrides of :func:`cnnlearn.compute.plan`'s choices (precision,
        batch_scale, ...), for the runs that use a training plan.
    """

    model: str = "seed"
    dataset: str = "mnist"
    data_dir: str | Path | None = None
    data_fraction: float = 1.0
    seed: int = 0
    validation_split: float = 0.1
    epochs: int | None = None
    batch_size: int | None = None
    device: str = "auto"
    plan: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 < self.data_fraction <= 1.0:
            raise ValueError(
                f"data_fraction must be in (0, 1], got {self.data_fraction}"
            )
        if not 0.0 <= self.validation_split < 1.0:
            raise ValueError(
                f"validation_split must be in [0, 1), got {self.validation_split}"
            )
        check_device_name(self.device)
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")

    def replace(self, **changes) -> RunConfig:
        """A copy with ``changes`` applied (and checked)."""
        return dataclasses.replace(self, **changes)

    def resolved(self) -> RunConfig:
        """A copy whose ``epochs`` and ``batch_size`` are the model's defaults
        where they are ``None`` (an unknown model raises :class:`ValueError`)."""
        from cnnlearn import models  # on demand: Keras, after the CLI parsed its args

        spec = models.get_spec(self.model)
        return self.replace(
            epochs=self.epochs or spec.epochs,
            batch_size=self.batch_size or spec.batch_size,
        )

    def to_dict(self) -> dict:
        """The config as JSON-ready values, for a run's report."""
        values = dataclasses.asdict(self)
        if values["data_dir"] is not None:
            values["data_dir"] = str(values["data_dir"])
        return values


@dataclass
class RunData:
    """The arrays a run trains and tests on: images preprocessed to float32
    NHWC in [0, 1] (:func:`cnnlearn.data.preprocess_images`), labels as given."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]


def load_data(config: RunConfig) -> RunData:
    """Load ``config.dataset``, keep its seeded ``data_fraction`` of the training
    set and preprocess both splits: the one load sequence of every run verb."""
    from cnnlearn import data  # on demand, as above

    (x_train, y_train), (x_test, y_test) = data.load_dataset(
        config.dataset, config.data_dir
    )
    x_train, y_train = data.take_fraction(
        x_train, y_train, config.data_fraction, config.seed
    )
    return RunData(
        data.preprocess_images(x_train),
        y_train,
        data.preprocess_images(x_test),
        y_test,
        data.CLASS_NAMES[config.dataset],
    )
