"""Import TensorFlow without its start-up chatter on stderr.

TF 2.18+ prints oneDNN and CUDA notes from C++ before its logging starts,
ignoring TF_CPP_MIN_LOG_LEVEL (abseil/abseil-cpp#1718). They clutter every CLI
error and every notebook, and they land in whichever notebook cell happens to be
running, which makes stored outputs unstable. Importing this module imports
TensorFlow once with file descriptor 2 pointed at /dev/null; modules that
import Keras import this first. ``CNNLEARN_VERBOSE=1`` keeps the chatter.
"""

from __future__ import annotations

import importlib.util
import os
import sys


def import_tensorflow_quietly() -> None:
    """Import TensorFlow and discover its devices with stderr silenced."""
    if (
        os.environ.get("CNNLEARN_VERBOSE")
        or "tensorflow" in sys.modules
        or os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow"
        or importlib.util.find_spec("tensorflow") is None
    ):
        return
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


import_tensorflow_quietly()
