"""Input pipelines that scale past memory (chapter 3).

Both ``tf.data`` pipelines yield batches of float32 images ``(B, H, W, C)`` in
[0, 1] and int64 labels: :func:`make_dataset` from arrays in memory,
:func:`tfrecord_dataset` streaming the sharded files of :func:`write_tfrecords`.
TensorFlow reports a damaged TFRecord file without its name (``DataLossError:
corrupted record at N``), and some truncated ones not at all;
:func:`check_shards` names the file.

:func:`augmentation` and :class:`SeededBatches` run on every Keras backend. The
``tf.data`` names are TensorFlow's own: they are imported when first used, so
``from cnnlearn import pipeline`` works without TensorFlow, and using one of
them there is a one-line ImportError.
"""

import importlib

from cnnlearn._tf import require_tensorflow
from cnnlearn.pipeline.batches import (
    AUGMENTATIONS,
    SeededBatches,
    augmentation,
    images_to_float,
)

# The TensorFlow modules, and the names each one exports.
_LAZY = {
    "cnnlearn.pipeline.arrays": ("batch_to_float", "finish_pipeline", "make_dataset"),
    "cnnlearn.pipeline.tfrecords": (
        "check_shards",
        "count_records",
        "tfrecord_dataset",
        "write_tfrecords",
    ),
}

__all__ = [
    "AUGMENTATIONS",
    "SeededBatches",
    "augmentation",
    "batch_to_float",
    "check_shards",
    "count_records",
    "finish_pipeline",
    "images_to_float",
    "make_dataset",
    "tfrecord_dataset",
    "write_tfrecords",
]


def __getattr__(name: str):
    """Import a TensorFlow name on first use (PEP 562)."""
    for module, names in _LAZY.items():
        if name in names:
            require_tensorflow(f"cnnlearn.pipeline.{name} and the other tf.data names")
            return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module 'cnnlearn.pipeline' has no attribute {name!r}")
