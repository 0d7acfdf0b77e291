"""Input pipelines that scale past memory (chapter 3).

Both pipelines yield batches of float32 images ``(B, H, W, C)`` in [0, 1] and
int64 labels: :func:`make_dataset` from arrays in memory, :func:`tfrecord_dataset`
streaming the sharded files of :func:`write_tfrecords`. TensorFlow reports a
damaged TFRecord file without its name (``DataLossError: corrupted record at
N``), and some truncated ones not at all; :func:`check_shards` names the file.
"""

from cnnlearn.pipeline.arrays import (
    AUGMENTATIONS,
    augmentation,
    batch_to_float,
    finish_pipeline,
    make_dataset,
)
from cnnlearn.pipeline.tfrecords import (
    check_shards,
    count_records,
    tfrecord_dataset,
    write_tfrecords,
)

__all__ = [
    "AUGMENTATIONS",
    "augmentation",
    "batch_to_float",
    "check_shards",
    "count_records",
    "finish_pipeline",
    "make_dataset",
    "tfrecord_dataset",
    "write_tfrecords",
]
