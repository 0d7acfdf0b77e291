"""TensorFlow, where the package needs it: imported quietly, and only then.

The core (data, models, train, ops, plots, the training CLI) runs on any
Keras 3 backend, TensorFlow absent included (chapter 4, 多后端). The parts
that are TensorFlow's own (tf.data and TFRecords, ``tf.distribute``, TFLite,
SavedModel) get it through :func:`require_tensorflow`, which says in one line
what is missing instead of a ``ModuleNotFoundError`` from deep inside.

TF 2.18+ prints oneDNN and CUDA notes from C++ before its logging starts,
ignoring TF_CPP_MIN_LOG_LEVEL (abseil/abseil-cpp#1718). They clutter every CLI
error and every notebook, and they land in whichever notebook cell happens to be
running, which makes stored outputs unstable. Importing this module imports
TensorFlow once with file descriptor 2 pointed at /dev/null when it is the Keras
backend; modules that import Keras import this first. ``CNNLEARN_VERBOSE=1``
keeps the chatter.
"""

from __future__ import annotations

import importlib.util
import os
import sys

__all__ = ["backend_name", "import_tensorflow_quietly", "require_tensorflow"]


def backend_name() -> str:
    """The Keras backend this process will use, read without importing Keras."""
    return os.environ.get("KERAS_BACKEND", "tensorflow")


def import_tensorflow_quietly() -> None:
    """Import TensorFlow and discover its devices with stderr silenced."""
    if (
        os.environ.get("CNNLEARN_VERBOSE")
        or "tensorflow" in sys.modules
        or backend_name() != "tensorflow"
        or importlib.util.find_spec("tensorflow") is None
    ):
        return
    _import_silenced()


def _import_silenced() -> None:
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow as tf

        tf.config.list_physical_devices()  # device discovery logs, too
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def require_tensorflow(feature: str):
    """The ``tensorflow`` module, for ``feature``; a one-line ImportError without it.

    Parameters
    ----------
    feature
        What needs TensorFlow, for the message (``"tf.data pipelines"``).
    """
    if sys.modules.get("tensorflow") is None:
        try:
            found = importlib.util.find_spec("tensorflow") is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise ImportError(
                f"{feature} need TensorFlow, which is not installed (Keras backend "
                f"{backend_name()}): pip install 'tensorflow>=2.16,<3'"
            )
        if not os.environ.get("CNNLEARN_VERBOSE"):
            _import_silenced()
    import tensorflow as tf

    return tf


import_tensorflow_quietly()
