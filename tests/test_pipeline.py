"""Input pipelines (chapter 3): in-memory tf.data, TFRecord shards, augmentation."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from cnnlearn import pipeline
from cnnlearn.data import DataError
from cnnlearn.pipeline import tfrecords


@pytest.fixture(scope="module")
def small(mnist):
    """512 real MNIST training images (uint8) with their labels."""
    (x_train, y_train), _ = mnist
    return x_train[:512], y_train[:512]


def collect(ds) -> tuple[np.ndarray, np.ndarray]:
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(images), np.concatenate(labels)


def as_uint8(images: np.ndarray) -> np.ndarray:
    return np.round(images[..., 0] * 255).astype(np.uint8)


def rows(images: np.ndarray, labels: np.ndarray) -> list[tuple[int, bytes]]:
    """(label, image bytes) pairs, sorted: compares data sets in any order."""
    return sorted(zip(labels.tolist(), [im.tobytes() for im in images]))


def strided(a: np.ndarray, n: int) -> np.ndarray:
    """The order of ``n`` shards read one after the other."""
    return np.concatenate([a[i::n] for i in range(n)])


def order(ds) -> list[int]:
    """The labels of one epoch; tests that need the order use indices as labels."""
    return [int(v) for _, y in ds for v in y.numpy()]


# --- make_dataset -----------------------------------------------------------


def test_make_dataset_shapes_dtypes_and_range(small):
    x, y = small
    batches = list(pipeline.make_dataset(x, y, batch_size=100))
    assert [len(b[0]) for b in batches] == [100] * 5 + [12]
    images, labels = batches[0]
    assert images.shape == (100, 28, 28, 1) and images.dtype.name == "float32"
    assert labels.dtype.is_integer
    images, labels = collect(batches)
    assert images.min() == 0.0 and images.max() == 1.0
    np.testing.assert_array_equal(as_uint8(images), x)  # training=False keeps order
    np.testing.assert_array_equal(labels, y)
    assert x.dtype == np.uint8  # the conversion happened inside the pipeline


def test_make_dataset_accepts_scaled_floats(small):
    x, y = small
    floats = x[..., np.newaxis].astype(np.float32) / 255
    images, _ = collect(pipeline.make_dataset(floats, y, batch_size=256))
    np.testing.assert_array_equal(images, floats)


def test_make_dataset_shuffles_every_example_once_per_epoch(small):
    x, index = small[0], np.arange(len(small[0]))
    ds = pipeline.make_dataset(x, index, batch_size=64, training=True, seed=0)
    first, second = order(ds), order(ds)
    assert sorted(first) == sorted(second) == list(index)
    assert first != list(index) and first != second  # reshuffled each epoch
    images, labels = collect(ds)
    np.testing.assert_array_equal(as_uint8(images), x[labels])  # pairs intact


def test_make_dataset_order_is_seeded(small):
    x, index = small[0], np.arange(len(small[0]))

    def epochs(seed):
        ds = pipeline.make_dataset(x, index, batch_size=64, training=True, seed=seed)
        return order(ds), order(ds)

    assert epochs(0) == epochs(0)
    assert epochs(0) != epochs(1)


def test_make_dataset_rejects_length_mismatch(small):
    x, y = small
    with pytest.raises(ValueError, match="differ in length: 512 and 511"):
        pipeline.make_dataset(x, y[:-1])


# --- augmentation -----------------------------------------------------------


def test_augmentation_keeps_shape_and_is_seeded(small):
    batch = small[0][:64, ..., np.newaxis].astype(np.float32) / 255
    one = np.asarray(pipeline.augmentation("geometric", seed=3)(batch, training=True))
    two = np.asarray(pipeline.augmentation("geometric", seed=3)(batch, training=True))
    other = np.asarray(pipeline.augmentation("geometric", seed=4)(batch, training=True))
    assert one.shape == batch.shape and one.dtype == np.float32
    np.testing.assert_array_equal(one, two)
    assert not np.array_equal(one, batch) and not np.array_equal(one, other)
    assert 0.0 <= one.min() and one.max() <= 1.0 + 1e-6
    none = pipeline.augmentation("none")(batch, training=True)
    np.testing.assert_array_equal(np.asarray(none), batch)


def test_augmentation_kinds():
    flips = pipeline.augmentation("flips", seed=0)
    names = [type(layer).__name__ for layer in flips.layers]
    assert names == ["RandomRotation", "RandomTranslation", "RandomZoom", "RandomFlip"]
    assert "RandomFlip" not in [
        type(layer).__name__ for layer in pipeline.augmentation().layers
    ]
    flip = pipeline.augmentation("flip", seed=0)
    assert [type(layer).__name__ for layer in flip.layers] == ["RandomFlip"]
    with pytest.raises(ValueError, match="'crop'.*'none', 'flip', 'geometric'"):
        pipeline.augmentation("crop")


def test_augmented_pipeline_is_seeded(small):
    x, y = small

    def images(seed):
        ds = pipeline.make_dataset(
            x, y, batch_size=64, training=True, augment="geometric", seed=seed
        )
        return collect(ds)[0]

    first = images(0)
    assert first.shape == (512, 28, 28, 1) and first.dtype == np.float32
    np.testing.assert_array_equal(first, images(0))
    assert not np.array_equal(first, images(1))


# --- TFRecord shards --------------------------------------------------------


@pytest.fixture(scope="module")
def shards(mnist, tmp_path_factory):
    """1,000 real training images in 3 uneven GZIP shards."""
    (x_train, y_train), _ = mnist
    x, y = x_train[:1000], y_train[:1000]
    paths = pipeline.write_tfrecords(x, y, tmp_path_factory.mktemp("rt"), 3)
    return x, y, paths


def test_write_tfrecords_names_counts_and_no_leftovers(shards):
    _, _, paths = shards
    names = [f"train-0000{i}-of-00003.tfrecord.gz" for i in range(3)]
    assert [p.name for p in paths] == names
    assert sorted(p.name for p in paths[0].parent.iterdir()) == names  # no temps
    assert [pipeline.count_records([p]) for p in paths] == [334, 333, 333]
    assert pipeline.count_records(str(paths[0].parent / "train-*")) == 1000


def test_tfrecord_round_trip_is_bit_exact(shards):
    x, y, paths = shards
    ds = pipeline.tfrecord_dataset(paths, batch_size=128, cycle_length=1)
    assert int(ds.cardinality()) == 8  # known, from the verification pass
    images, labels = collect(ds)
    assert images.shape == (1000, 28, 28, 1) and images.dtype == np.float32
    assert labels.dtype == np.int64
    # One shard after the other: shard i holds examples i::3.
    np.testing.assert_array_equal(as_uint8(images), strided(x, 3))
    np.testing.assert_array_equal(labels, strided(y, 3))


def test_examples_serialize_in_a_fixed_key_order():
    """The shards' bytes must not depend on the protobuf map's order (it can vary
    between processes): an Example built with its features in the reverse order,
    serialized deterministically, is byte for byte what write_tfrecords writes."""
    import tensorflow as tf

    image = np.arange(12, dtype=np.uint8).reshape(2, 3, 2)
    ints = {"label": 7, "channels": 2, "width": 3, "height": 2}
    feature = {
        "image": tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[image.tobytes()])
        )
    }
    feature |= {
        k: tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))
        for k, v in ints.items()
    }
    reverse = tf.train.Example(features=tf.train.Features(feature=feature))
    written = tfrecords._example(image, 7)
    assert written == reverse.SerializeToString(deterministic=True)
    assert tf.train.Example.FromString(written) == reverse


def test_tfrecord_default_interleave_reads_everything(shards):
    x, y, paths = shards
    ds = pipeline.tfrecord_dataset(str(paths[0].parent / "*"), 100, cycle_length=3)
    images, labels = collect(ds)
    assert rows(as_uint8(images), labels) == rows(x, y)
    again = collect(pipeline.tfrecord_dataset(paths, 100, cycle_length=3))
    np.testing.assert_array_equal(again[0], images)  # a fixed order
    np.testing.assert_array_equal(again[1], labels)
    unverified = pipeline.tfrecord_dataset(paths, verify=False)
    assert int(unverified.cardinality()) < 0  # unknown without the check


@pytest.mark.parametrize("compression", ["", "ZLIB"])
def test_other_compressions_round_trip(small, tmp_path, compression):
    x, y = small
    paths = pipeline.write_tfrecords(x, y, tmp_path, 2, "t", compression)
    assert (
        paths[0].name
        == "t-00000-of-00002.tfrecord" + {"": "", "ZLIB": ".zz"}[compression]
    )
    ds = pipeline.tfrecord_dataset(paths, 64, cycle_length=1, compression=compression)
    images, labels = collect(ds)
    np.testing.assert_array_equal(as_uint8(images), strided(x, 2))
    np.testing.assert_array_equal(labels, strided(y, 2))


def test_training_stream_is_shuffled_seeded_and_complete(small, tmp_path):
    x, index = small[0], np.arange(len(small[0]))
    pipeline.write_tfrecords(x, index, tmp_path, 4)

    def stream(seed, window=100):
        return pipeline.tfrecord_dataset(
            str(tmp_path / "train-*"),
            50,
            training=True,
            seed=seed,
            shuffle_buffer=window,
        )

    ds = stream(0)
    first, second = order(ds), order(ds)
    assert sorted(first) == sorted(second) == list(index)
    assert first != list(index) and first != second
    assert order(stream(0)) == first and order(stream(1)) != first
    # A window holding several shards' blocks mixes them (shard i has i::4).
    _, labels = next(iter(stream(0, window=512)))
    assert len(set(labels.numpy() % 4)) > 1
    augmented = pipeline.tfrecord_dataset(
        str(tmp_path / "*"), 50, training=True, augment="flips", seed=0
    )
    images, labels = collect(augmented)
    assert images.shape == (512, 28, 28, 1) and sorted(labels) == list(index)


def test_rewrite_replaces_complete_shards(small, tmp_path):
    x, y = small
    pipeline.write_tfrecords(x[:256], y[:256], tmp_path, 2)
    pipeline.write_tfrecords(x[256:], y[256:], tmp_path, 2)
    images, labels = collect(pipeline.tfrecord_dataset(str(tmp_path / "*"), 64))
    assert rows(as_uint8(images), labels) == rows(x[256:], y[256:])


def test_failed_write_leaves_no_partial_shard(small, tmp_path, monkeypatch):
    x, y = small
    real, calls = tfrecords._example, []

    def failing(image, label):
        calls.append(1)
        if len(calls) == 300:  # in the middle of shard 1 (shard 0 holds 256)
            raise RuntimeError("disk full")
        return real(image, label)

    monkeypatch.setattr(tfrecords, "_example", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        pipeline.write_tfrecords(x, y, tmp_path, 2)
    assert [p.name for p in tmp_path.iterdir()] == ["train-00000-of-00002.tfrecord.gz"]
    assert pipeline.count_records(str(tmp_path / "*")) == 256


def test_write_tfrecords_rejects_non_uint8_and_writes_nothing(small, tmp_path):
    x, y = small
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="uint8"):
        pipeline.write_tfrecords(x.astype(np.float32) / 255, y, out)
    assert not out.exists()
    with pytest.raises(ValueError, match="integer labels"):
        pipeline.write_tfrecords(x, y[:-1], out)
    assert not out.exists()


def test_workers_read_disjoint_halves(small, tmp_path):
    x, index = small[0], np.arange(len(small[0]))
    pipeline.write_tfrecords(x, index, tmp_path, 4)
    pattern = str(tmp_path / "train-*")
    seen = [
        order(pipeline.tfrecord_dataset(pattern, 64, num_workers=2, worker_index=w))
        for w in (0, 1)
    ]
    assert len(seen[0]) == len(seen[1]) == 256
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == list(index)
    with pytest.raises(ValueError, match="5 workers but only 4 files"):
        pipeline.tfrecord_dataset(pattern, num_workers=5, worker_index=0)
    with pytest.raises(ValueError, match="worker_index 2"):
        pipeline.tfrecord_dataset(pattern, num_workers=2, worker_index=2)


def test_missing_files_are_named(tmp_path):
    pattern = str(tmp_path / "nothing-*.tfrecord.gz")
    with pytest.raises(FileNotFoundError, match="nothing-"):
        pipeline.tfrecord_dataset(pattern)
    with pytest.raises(FileNotFoundError, match="gone.tfrecord"):
        pipeline.check_shards([tmp_path / "gone.tfrecord.gz"])


def truncate(raw: bytes) -> bytes:
    return raw[: len(raw) // 2]


def flip_middle(raw: bytes) -> bytes:
    middle = len(raw) // 2
    return (
        raw[:middle]
        + bytes(b ^ 0xFF for b in raw[middle : middle + 16])
        + raw[middle + 16 :]
    )


@pytest.mark.parametrize("compression", ["GZIP", ""])
@pytest.mark.parametrize("damage", [truncate, flip_middle])
def test_bad_shard_is_named(small, tmp_path, compression, damage):
    x, y = small
    paths = pipeline.write_tfrecords(x, y, tmp_path, 3, compression=compression)
    bad = paths[1]
    bad.write_bytes(damage(bad.read_bytes()))
    pattern = str(tmp_path / "train-*")
    with pytest.raises(DataError, match="corrupt or truncated") as info:
        pipeline.tfrecord_dataset(pattern, compression=compression)
    assert bad.name in str(info.value)
    assert "function_node" not in str(info.value)
    with pytest.raises(DataError, match=bad.name):
        pipeline.check_shards([paths[0], bad], compression=compression)
    pipeline.check_shards([paths[0], paths[2]], compression=compression)  # fine


def cut_in_header(raw: bytes) -> bytes:
    """Ten whole records and 5 bytes of the next one's 12-byte header."""
    record = int.from_bytes(raw[:8], "little") + 16  # all MNIST records: one size
    return raw[: 10 * record + 5]


@pytest.mark.parametrize(
    ("compression", "damage"),
    [("GZIP", lambda raw: raw[:-3]), ("", cut_in_header)],
    ids=["gzip-trailer", "record-header"],
)
def test_truncation_tensorflow_reads_as_a_clean_end_is_found(
    small, tmp_path, compression, damage
):
    import tensorflow as tf

    x, y = small
    path = pipeline.write_tfrecords(x, y, tmp_path, 1, compression=compression)[0]
    path.write_bytes(damage(path.read_bytes()))
    read = sum(1 for _ in tf.data.TFRecordDataset(str(path), compression))
    assert 0 < read <= 512  # no error from TensorFlow
    with pytest.raises(DataError, match=f"{path.name}: corrupt or truncated"):
        pipeline.check_shards([path], compression=compression)


def test_model_trains_on_tfrecords(small, tmp_path):
    import keras

    from cnnlearn import models

    x, y = small
    pipeline.write_tfrecords(x, y, tmp_path, 2)
    ds = pipeline.tfrecord_dataset(str(tmp_path / "*"), 64, training=True, seed=0)
    model = models.get_model("seed", seed=0)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    history = model.fit(ds, epochs=2, shuffle=False, verbose=0).history
    assert history["loss"][1] < history["loss"][0]


def test_masked_crc32c_matches_tensorflows_record_headers(small, tmp_path):
    # the CRC-32C check value of "123456789" is 0xE3069283, masked as TFRecord does
    crc = 0xE3069283
    masked = ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF
    assert tfrecords.masked_crc32c(b"123456789") == masked
    x, y = small
    path = pipeline.write_tfrecords(x[:3], y[:3], tmp_path, 1, compression="")[0]
    raw = path.read_bytes()
    record = int.from_bytes(raw[:8], "little") + 16
    for start in range(0, len(raw), record):  # every header TF wrote
        header = raw[start : start + 12]
        assert tfrecords.masked_crc32c(header[:8]) == int.from_bytes(
            header[8:], "little"
        )


def _huge_record_shard(compression: str) -> bytes:
    """76 bytes: a record claiming 2**40 bytes, its length CRC valid."""
    length = (1 << 40).to_bytes(8, "little")
    crc = tfrecords.masked_crc32c(length).to_bytes(4, "little")
    raw = length + crc + bytes(64)
    return gzip.compress(raw) if compression == "GZIP" else raw


@pytest.mark.parametrize("compression", ["", "GZIP"])
def test_a_huge_length_field_is_refused_before_tensorflow_reads(tmp_path, compression):
    """TensorFlow's reader trusts the length (a segmentation fault on this
    shard); the header walk refuses it first, naming the file, also when the
    caller turns verification off."""
    path = tmp_path / "evil.tfrecord"
    path.write_bytes(_huge_record_shard(compression))
    with pytest.raises(DataError, match=r"evil\.tfrecord: .*claims 1099511627776"):
        pipeline.check_shards([path], compression=compression)
    with pytest.raises(DataError, match=r"evil\.tfrecord: .*claims 1099511627776"):
        pipeline.tfrecord_dataset([path], compression=compression, verify=False)


def test_a_length_field_failing_its_crc_is_refused(small, tmp_path):
    x, y = small
    path = pipeline.write_tfrecords(x[:8], y[:8], tmp_path, 1, compression="")[0]
    raw = bytearray(path.read_bytes())
    record = int.from_bytes(raw[:8], "little") + 16
    raw[3 * record] ^= 0x01  # record 3 is one byte longer, says its length field
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="record 3: its length field fails its CRC"):
        pipeline.check_shards([path], compression="")
