"""What the compression modules share (chapter 6): sizes, counts, copies and a
quiet block for the TFLite converter's chatter.

NumPy only, by design: the model export that the LiteRT server imports
(:mod:`cnnlearn.deploy`) uses :func:`quiet` without loading TensorFlow, so
nothing here imports Keras or TensorFlow at module level.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

__all__ = [
    "copy_model",
    "count_nonzero",
    "gzip_size",
    "quiet",
    "read_bytes",
    "size_report",
]


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence stdout, stderr (also C++ writes to fd 2) and warnings for a block.

    The TFLite converter and the LiteRT interpreter print MLIR notes, "Saved
    artifact" listings and delegate banners; chapters and the CLI stay readable.
    ``CNNLEARN_VERBOSE=1`` keeps them.
    """
    if os.environ.get("CNNLEARN_VERBOSE"):
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    loggers = [logging.getLogger(name) for name in ("tensorflow", "absl")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:  # "Assets written to ..." comes through logging
        logger.setLevel(logging.ERROR)
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        with (
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def read_bytes(model: str | os.PathLike | bytes) -> bytes:
    """The bytes of a serialized model given as bytes or as a path."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model)
    path = Path(model)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    return path.read_bytes()


def gzip_size(data: str | os.PathLike | bytes, level: int = 9) -> int:
    """Size in bytes of ``data`` (bytes or a file) after gzip at ``level``.

    Zeroed weights cost almost nothing once compressed: this is how pruning
    shows up in a file's size (the raw flatbuffer stores every zero).
    """
    return len(gzip.compress(read_bytes(data), compresslevel=level, mtime=0))


def size_report(data: str | os.PathLike | bytes) -> dict[str, int]:
    """``{"raw_bytes": ..., "gzip_bytes": ...}`` of a serialized model."""
    raw = read_bytes(data)
    return {"raw_bytes": len(raw), "gzip_bytes": gzip_size(raw)}


def count_nonzero(model) -> dict[str, int]:
    """Total and nonzero weights of a Keras model (every variable, not only kernels).

    Non-trainable statistics (batch-norm moving means and variances) count too,
    since they are stored in the file.
    """
    total = nonzero = 0
    for weight in model.weights:
        value = np.asarray(weight.numpy() if hasattr(weight, "numpy") else weight)
        total += value.size
        nonzero += int(np.count_nonzero(value))
    return {"params": total, "nonzero_params": nonzero}


def copy_model(model):
    """A fresh, uncompiled copy of a Keras model with the same weights.

    Compression methods that train (pruning, distillation) change a model in
    place; copy it first to keep the original for comparison.
    """
    import keras  # here, not above: this module stays NumPy-only (see its doc)

    try:  # from the config: no optimizer, no compile state
        clone = type(model).from_config(model.get_config())
    except (NotImplementedError, TypeError, ValueError):
        clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone
