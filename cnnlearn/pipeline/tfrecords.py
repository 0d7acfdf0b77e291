"""Sharded TFRecord files: write, check, count and stream them (chapter 3).

TensorFlow reports a damaged TFRecord file without its name (``DataLossError:
corrupted record at N``), and some truncated ones not at all; :func:`check_shards`
names the file.
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import cnnlearn._tf  # noqa: F401  (quiet TensorFlow start-up; before Keras)

# isort: split
import keras
import tensorflow as tf

from cnnlearn import data
from cnnlearn._io import atomic_path
from cnnlearn.data import DataError
from cnnlearn.pipeline.arrays import batch_to_float, finish_pipeline

__all__ = [
    "check_shards",
    "count_records",
    "masked_crc32c",
    "tfrecord_dataset",
    "write_tfrecords",
]

_SUFFIXES = {"GZIP": ".gz", "ZLIB": ".zz", "": ""}  # compression -> file suffix
_WBITS = {"GZIP": 16 + zlib.MAX_WBITS, "ZLIB": zlib.MAX_WBITS}
Files = str | os.PathLike | Sequence[str | os.PathLike]


def _check_compression(compression: str | None) -> str:
    compression = (compression or "").upper()
    if compression not in _SUFFIXES:
        raise ValueError(f"unknown compression {compression!r}: GZIP, ZLIB or ''")
    return compression


def _example(image: np.ndarray, label: int) -> bytes:
    """One image as a serialized ``tf.train.Example``.

    Serialized deterministically (the feature map's keys sorted): protobuf writes
    map entries in an order that can change from process to process, which would
    change the compressed shards' bytes and sizes from run to run.
    """
    ints = dict(zip(("height", "width", "channels"), image.shape), label=label)
    feature = {
        k: tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))
        for k, v in ints.items()
    }
    raw = tf.train.BytesList(value=[image.tobytes()])
    feature["image"] = tf.train.Feature(bytes_list=raw)
    return tf.train.Example(
        features=tf.train.Features(feature=feature)
    ).SerializeToString(deterministic=True)


def write_tfrecords(
    x: np.ndarray,
    y: np.ndarray,
    out_dir: str | os.PathLike,
    num_shards: int = 4,
    prefix: str = "train",
    compression: str | None = "GZIP",
) -> list[Path]:
    """Write uint8 images and labels to sharded TFRecord files (chapter 3).

    Each image is a ``tf.train.Example`` with ``image`` (the raw uint8 bytes),
    ``label``, ``height``, ``width`` and ``channels`` (int64). Shard ``i`` of
    ``n`` holds examples ``i::n``: strided, so every shard samples the whole
    set and the sizes differ by one at most. Files are named
    ``{prefix}-00000-of-00004.tfrecord.gz``. Each shard is written under a
    hidden temporary name and renamed when complete, replacing any shard of
    the same name, so a reader never sees half a shard; a failed call can still
    leave the shards before the failure renewed and the later ones not.

    Returns the shards' paths, in order.
    """
    x, y = data.check_images(x), np.asarray(y)
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"expected {len(x)} integer labels, got {y.dtype} {y.shape}")
    if not 1 <= num_shards <= len(x):
        raise ValueError(f"num_shards must be in [1, {len(x)}], got {num_shards}")
    compression = _check_compression(compression)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    options = tf.io.TFRecordOptions(compression_type=compression)
    paths = []
    for i in range(num_shards):
        name = f"{prefix}-{i:05d}-of-{num_shards:05d}.tfrecord{_SUFFIXES[compression]}"
        with (
            atomic_path(out / name) as tmp,
            tf.io.TFRecordWriter(str(tmp), options) as writer,
        ):
            for image, label in zip(x[i::num_shards], y[i::num_shards]):
                writer.write(_example(image, int(label)))
        paths.append(out / name)
    return paths


def _list_files(files: Files) -> list[str]:
    """Sorted shard names from a glob pattern or a list; hidden files skipped."""
    if isinstance(files, str | os.PathLike):
        pattern = os.fspath(files)
        try:
            found = tf.io.gfile.glob(pattern)
        except tf.errors.NotFoundError:
            found = []
        found = sorted(f for f in found if not os.path.basename(f).startswith("."))
        if not found:
            raise FileNotFoundError(f"no TFRecord files match {pattern!r}")
        return found
    found = sorted(os.fspath(f) for f in files)
    if not found:
        raise ValueError("no TFRecord files given")
    for f in found:
        if not tf.io.gfile.exists(f):
            raise FileNotFoundError(f"TFRecord shard not found: {f}")
    return found


def _tf_message(exc: tf.errors.OpError) -> str:
    """The first line of a TF error, without the ``{{function_node ...}}`` noise."""
    text = re.sub(r"^\{\{.*?\}\}\s*", "", (exc.message or "").strip())
    text = text.splitlines()[0] if text else type(exc).__name__
    return re.sub(r"\s*\[Op:.*$", "", text)


def _bad(path: str, reason: str) -> DataError:
    return DataError(f"{path}: corrupt or truncated TFRecord shard: {reason}")


def _crc_table() -> list[int]:
    """The CRC-32C (Castagnoli, reflected 0x82F63B78) byte table."""
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        table.append(crc)
    return table


_CRC32C = _crc_table()


def masked_crc32c(data: bytes) -> int:
    """TFRecord's checksum of ``data``: CRC-32C, rotated right by 15 bits plus
    0xA282EAD8 (``Mask`` in TensorFlow's ``tsl/lib/hash/crc32c.h``). Used in
    chapter 3 to check a record's length field before TensorFlow reads it."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


class _Inflated:
    """A compressed shard as a stream that reads and skips decompressed bytes,
    never holding more than a few MiB of them (a record may claim any size)."""

    def __init__(self, f, compression: str, path: str) -> None:
        self.f, self.path = f, path
        self.buffer, self.at = b"", 0  # decompressed bytes, and where we are
        self.decoder = zlib.decompressobj(_WBITS[compression])

    def _pull(self) -> bool:
        data = self.decoder.unconsumed_tail or self.f.read(1 << 20)
        if not data or self.decoder.eof:
            return False
        try:
            more = self.decoder.decompress(data, 1 << 22)
        except zlib.error as exc:
            raise _bad(self.path, str(exc)) from None
        self.buffer, self.at = self.buffer[self.at :] + more, 0
        return True

    def read(self, n: int) -> bytes:
        while len(self.buffer) - self.at < n and self._pull():
            pass
        out = self.buffer[self.at : self.at + n]
        self.at += len(out)
        return out

    def skip(self, n: int) -> int:
        skipped = 0
        while skipped < n and (self.at < len(self.buffer) or self._pull()):
            take = min(n - skipped, len(self.buffer) - self.at)
            self.at, skipped = self.at + take, skipped + take
        return skipped


class _Plain:
    """An uncompressed shard: headers read, payloads sought over."""

    def __init__(self, f) -> None:
        self.f, self.pos = f, 0

    def read(self, n: int) -> bytes:
        data = self.f.read(n)
        self.pos += len(data)
        return data

    def skip(self, n: int) -> int:
        self.pos += n
        self.f.seek(self.pos)
        return n


def _walk(path: str, compression: str, limit: int | None = None) -> int:
    """Count records by their headers, checked before TensorFlow reads any.

    Each record is a uint64 length, the masked CRC-32C of those 8 bytes, the
    data and its CRC. Every length field must pass its CRC and fit in what is
    left of the file (uncompressed: checked against the file size, payloads
    sought over; compressed: the payloads are decompressed and dropped), so
    a record claiming 2**40 bytes is a clean :class:`DataError`, not a crash
    in TensorFlow's reader. Stops after ``limit`` records if given.
    """
    with tf.io.gfile.GFile(path, "rb") as f:
        size = None if compression else f.size()
        stream = _Inflated(f, compression, path) if compression else _Plain(f)
        count = 0
        while limit is None or count < limit:
            header = stream.read(12)
            if not header:
                break
            if len(header) < 12:
                raise _bad(path, f"{len(header)} bytes of a cut-off record header "
                                 f"after {count} records")  # fmt: skip
            length, crc = struct.unpack("<QI", header)
            if masked_crc32c(header[:8]) != crc:
                raise _bad(path, f"record {count}: its length field fails its CRC")
            if size is not None and stream.pos + length + 4 > size:
                left = size - stream.pos
                raise _bad(path, f"record {count} claims {length} bytes; the file "
                                 f"has {left} left")  # fmt: skip
            if stream.skip(length + 4) < length + 4:
                raise _bad(path, f"record {count} claims {length} bytes; the "
                                 f"{compression} stream ends first")  # fmt: skip
            count += 1
        if compression and limit is None and not stream.decoder.eof:
            raise _bad(path, f"{compression} stream ends after {count} whole records")
    return count


def _add_batch(n: tf.Tensor, batch: tf.Tensor) -> tf.Tensor:
    return n + tf.size(batch, out_type=tf.int64)


def _count(path: str, compression: str) -> int:
    try:
        _walk(path, compression)  # the headers first: TF trusts the lengths
        batches = tf.data.TFRecordDataset(path, compression).batch(4096)
        count = int(batches.reduce(np.int64(0), _add_batch))  # checks the CRCs
    except tf.errors.NotFoundError:
        raise FileNotFoundError(f"TFRecord shard not found: {path}") from None
    except tf.errors.OpError as exc:
        raise _bad(path, _tf_message(exc)) from None
    return count


def count_records(files: Files, compression: str | None = "GZIP") -> int:
    """Total records in the shards, checked as by :func:`check_shards` (chapter 3)."""
    compression = _check_compression(compression)
    return sum(_count(f, compression) for f in _list_files(files))


def check_shards(files: Files, compression: str | None = "GZIP") -> None:
    """Read every shard once; raise ``DataError`` naming a bad one (chapter 3).

    Two passes per file: first a walk over the record headers
    (:func:`masked_crc32c` of each length field, and the length against what
    is left of the file) before TensorFlow reads a record, since its reader
    trusts the length and a huge one crashes the process; it also finds the
    cuts TF reads as a clean end (inside a record's header, or in the gzip
    trailer). Then TensorFlow's reader checks the record CRCs and the
    compressed data. A GZIP or
    ZLIB shard ends with a trailer, so any cut shows; an uncompressed one cut
    exactly between two records is a valid, shorter file. The cost is one read
    of the data (``benchmarks/results/input_pipeline.json`` has the seconds for
    MNIST). Raises ``FileNotFoundError`` for a missing file and
    :class:`~cnnlearn.data.DataError`
    ``"{path}: corrupt or truncated TFRecord shard: {reason}"`` for a bad one.
    """
    count_records(files, compression)


def _image_shape(files: list[str], compression: str) -> tuple[int, int, int]:
    """``(height, width, channels)`` from the first record of the shards."""
    keys = ("height", "width", "channels")
    spec = {k: tf.io.FixedLenFeature([], tf.int64) for k in keys}
    for path in files:
        _walk(path, compression, limit=1)  # what TF reads next is checked first
        try:
            for record in tf.data.TFRecordDataset(path, compression).take(1):
                parsed = tf.io.parse_single_example(record, spec)
                return tuple(int(parsed[k]) for k in keys)
        except tf.errors.OpError as exc:
            raise DataError(f"{path}: not an image shard: {_tf_message(exc)}") from None
    raise DataError(f"no records in {files}")


def _shuffle_windows(windows: tf.data.Dataset, seed: int | None) -> tf.data.Dataset:
    """Permute the images inside each window, with new random keys each epoch.

    One ``stateless_shuffle`` per window of thousands of images replaces the
    per-image work of ``unbatch → shuffle → batch``.
    """
    keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)

    def permute(window, key):
        images, labels = window
        order = tf.random.experimental.stateless_shuffle(
            tf.range(tf.shape(labels)[0]), seed=tf.stack([key, 0])
        )
        return tf.gather(images, order), tf.gather(labels, order)

    return tf.data.Dataset.zip(windows, keys).map(permute)


def tfrecord_dataset(
    pattern_or_paths: Files,
    batch_size: int = 32,
    training: bool = False,
    augment: str | keras.Layer = "none",
    cycle_length: int | None = None,
    cache: bool | str = False,
    prefetch: bool = True,
    seed: int | None = None,
    num_workers: int = 1,
    worker_index: int = 0,
    compression: str | None = "GZIP",
    shuffle_buffer: int = 10_000,
    verify: bool = True,
) -> tf.data.Dataset:
    """Stream shards written by :func:`write_tfrecords` (chapter 3).

    files (sorted; this worker's share; shuffled when training) → parallel
    ``interleave`` of ``TFRecordDataset``, each shard parsed 256 records per
    ``parse_example`` call into blocks of uint8 images → optional cache →
    shuffle (training: windows of ``shuffle_buffer`` images, each permuted by
    one op) → ``rebatch`` → float32 ``(B, H, W, C)`` in [0, 1], int64 labels →
    augmentation (training) → prefetch. Memory holds one window and a few
    batches, never the data set. No step handles single images: on a 2-core
    machine the pipeline competes with the model for the same cores, and
    per-image work in ``unbatch → shuffle → batch`` would cost about as much
    CPU again as decompressing and parsing (``benchmarks/input_pipeline.py``).

    Parameters
    ----------
    pattern_or_paths
        A glob pattern (also ``gs://...``) or a list of files; sorted, and
        hidden files (the writer's temporaries) skipped.
    batch_size, training, augment, prefetch, seed
        As in :func:`make_dataset`. A training pipeline without a seed takes
        records in whatever order they arrive, which is faster.
    cycle_length
        Shards read at once (``None``: one per core).
    cache
        ``True`` keeps the decoded uint8 images in memory after the first
        epoch, a path keeps them on disk; off, since the data may not fit.
    num_workers, worker_index
        Distributed training: this worker reads files ``worker_index::num_workers``
        of the sorted list, so the workers' shares are disjoint and cover all.
    compression
        ``"GZIP"`` (the writer's default), ``"ZLIB"`` or ``""``.
    shuffle_buffer
        Images per shuffle window. A window holds consecutive blocks of the
        interleaved shards, whose order is shuffled too; its images are
        permuted anew each epoch (seeded by ``seed``). Like a shuffle buffer of
        that size, it mixes nearby records, not the whole data set.
    verify
        :func:`check_shards` this worker's files first: one extra pass over
        them, but a bad shard fails now and by name, not mid-training as an
        anonymous ``DataLossError`` (or not at all, if truncated), and the
        dataset knows its length (Keras shows the steps per epoch and does not
        warn that the "input ran out of data"). Turn it off for huge data.
    """
    compression = _check_compression(compression)
    files = _list_files(pattern_or_paths)
    if not 0 <= worker_index < num_workers:
        raise ValueError(f"worker_index {worker_index} not in [0, {num_workers})")
    if num_workers > len(files):
        raise ValueError(
            f"{num_workers} workers but only {len(files)} files: write at least as "
            "many shards as workers"
        )
    files = files[worker_index::num_workers]
    records = count_records(files, compression) if verify else None
    shape = _image_shape(files, compression)
    spec = {"image": tf.io.FixedLenFeature([], tf.string)}
    spec["label"] = tf.io.FixedLenFeature([], tf.int64)

    def read(path: tf.Tensor) -> tf.data.Dataset:
        """One shard as uint8 images: 256 records per ``parse_example`` call."""

        def parse(serialized: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            parsed = tf.io.parse_example(serialized, spec)
            raw = tf.io.decode_raw(parsed["image"], tf.uint8)
            return tf.reshape(raw, (-1, *shape)), parsed["label"]

        return tf.data.TFRecordDataset(path, compression).batch(256).map(parse)

    ds = tf.data.Dataset.from_tensor_slices(files)
    if training:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.interleave(
        read,
        cycle_length=cycle_length,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=seed is not None or not training,
    )
    if cache:
        ds = ds.cache() if cache is True else ds.cache(os.fspath(cache))
    if training:
        ds = _shuffle_windows(ds.rebatch(shuffle_buffer), seed)
    ds = ds.rebatch(batch_size)
    if records is not None:  # Keras can then show the steps per epoch
        steps = -(-records // batch_size)
        ds = ds.apply(tf.data.experimental.assert_cardinality(steps))
    ds = ds.map(batch_to_float, num_parallel_calls=tf.data.AUTOTUNE)
    return finish_pipeline(ds, training, augment, seed, prefetch)
