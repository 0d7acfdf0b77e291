from __future__ import annotations

import gzip
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import require

from cnnlearn import data
from cnnlearn.data import DataError

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
STEMS = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
]


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    header = bytes([0, 0, code, array.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    dtype = {0x08: "u1", 0x0C: ">i4", 0x0D: ">f4"}[code]
    return header + array.astype(dtype).tobytes()


def write_dataset(directory: Path, n_train=6, n_test=4, n_train_labels=None) -> Path:
    """A tiny but well-formed data set in IDX .gz files."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    sizes = {"train": (n_train, n_train_labels or n_train), "t10k": (n_test, n_test)}
    for prefix, (n_images, n_labels) in sizes.items():
        images = rng.integers(0, 256, (n_images, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n_labels, dtype=np.uint8)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            path = directory / f"{prefix}-{kind}-ubyte.gz"
            path.write_bytes(gzip.compress(idx_bytes(array)))
    return directory


# --- the real files ---------------------------------------------------------


def test_real_mnist_shapes_counts_and_pixels(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert x_train.dtype == y_train.dtype == np.uint8
    assert np.bincount(y_train).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(y_test).tolist() == MNIST_TEST_COUNTS
    assert x_train.mean() / 255 == pytest.approx(0.1307, abs=1e-4)
    assert x_train.std() / 255 == pytest.approx(0.3081, abs=1e-4)


def test_real_mnist_matches_published_sha256(data_dir):
    """The files on disk hash to the SHA256SUMS shipped with them."""
    sums = dict(
        reversed(line.split())
        for line in (data_dir / "mnist" / "SHA256SUMS").read_text().splitlines()
    )
    for stem in STEMS:
        raw = gzip.decompress((data_dir / "mnist" / f"{stem}.gz").read_bytes())
        assert hashlib.sha256(raw).hexdigest() == sums[stem]
        assert data.load._SHA256["mnist"][stem] == sums[stem]


def test_fashion_mnist_from_debian_package():
    require(
        data.DEBIAN_FASHION_MNIST_DIR.is_dir(),
        "Debian's dataset-fashion-mnist is not installed",
    )
    (x_train, y_train), (x_test, y_test) = data.load_dataset("fashion_mnist")
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert np.bincount(y_train).tolist() == [6000] * 10
    assert np.bincount(y_test).tolist() == [1000] * 10


def test_cnnlearn_data_dir_env_is_used(data_dir, monkeypatch):
    monkeypatch.setenv("CNNLEARN_DATA_DIR", str(data_dir))
    assert data.find_dataset_dir("mnist") == data_dir / "mnist"


def test_data_dir_may_be_the_parent_or_the_dataset_dir(data_dir):
    assert data.find_dataset_dir("mnist", data_dir) == data_dir / "mnist"
    assert data.find_dataset_dir("mnist", data_dir / "mnist") == data_dir / "mnist"


# --- load_idx ---------------------------------------------------------------


@pytest.mark.parametrize("code", [0x08, 0x0C, 0x0D])
def test_load_idx_round_trip_raw_and_gz(tmp_path, code):
    array = np.arange(24).reshape(2, 3, 4)
    raw = idx_bytes(array, code)
    (tmp_path / "a").write_bytes(raw)
    (tmp_path / "a.gz").write_bytes(gzip.compress(raw))
    for name in ("a", "a.gz"):
        loaded = data.load_idx(tmp_path / name)
        np.testing.assert_array_equal(loaded, array)
        assert loaded.dtype.isnative and loaded.flags.writeable


def write(tmp_path: Path, content: bytes, name="bad.gz") -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


GOOD = idx_bytes(np.zeros((5, 28, 28), np.uint8))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (GOOD[:-10], "truncated"),
        (GOOD[:10], "truncated header"),
        (b"\x00\x00", "truncated"),
        (GOOD + b"\x00" * 7, "size mismatch"),
        (b"\x01\x02" + GOOD[2:], "wrong magic"),
        (GOOD[:2] + b"\x07" + GOOD[3:], "wrong magic"),  # unknown type code
        (GOOD[:3] + b"\x00" + GOOD[4:], "wrong magic"),  # zero dimensions
        (gzip.compress(GOOD)[:-20], "truncated gzip"),
        (gzip.compress(GOOD)[:12] + b"\xff" * 40, "corrupt gzip"),
    ],
)
def test_load_idx_rejects_bad_files(tmp_path, content, message):
    path = write(tmp_path, content)
    with pytest.raises(DataError, match=message) as info:
        data.load_idx(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_a_gzip_bomb_is_refused_before_it_is_decompressed(tmp_path):
    """A small gzip of a huge stream: the header is checked first, and no more
    than the claimed payload plus one byte is ever decompressed."""
    bomb = gzip.compress(GOOD + b"\x00" * (64 << 20), compresslevel=9)
    assert len(bomb) < (1 << 20)  # 64 MiB of zeros in well under 1 MiB
    path = write(tmp_path, bomb, "train-images-idx3-ubyte.gz")
    with pytest.raises(DataError, match="the rest was not read"):
        data.load_idx(path)
    huge = GOOD[:4] + (1 << 20).to_bytes(4, "big") + GOOD[8:16]  # 2^20 x 28 x 28
    path = write(tmp_path, gzip.compress(huge), "claims-too-much.gz")
    with pytest.raises(DataError, match="refused before decompressing"):
        data.load_idx(path, max_bytes=data.MAX_IDX_BYTES // 4)


def test_load_idx_checks_sha256(tmp_path):
    path = write(tmp_path, GOOD, "x")
    data.load_idx(path, hashlib.sha256(GOOD).hexdigest())
    with pytest.raises(DataError, match="SHA-256 mismatch"):
        data.load_idx(path, "0" * 64)


def test_load_idx_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        data.load_idx(tmp_path / "nope")


# --- load_dataset -----------------------------------------------------------


def test_modified_files_fail_verification_unless_opted_out(tmp_path):
    directory = write_dataset(tmp_path / "mnist")
    with pytest.raises(DataError, match="SHA-256 mismatch"):
        data.load_dataset("mnist", tmp_path)
    (x_train, y_train), (x_test, _) = data.load_dataset("mnist", tmp_path, verify=False)
    assert x_train.shape == (6, 28, 28) and y_train.shape == (6,)
    assert x_test.shape == (4, 28, 28)
    assert directory == data.find_dataset_dir("mnist", tmp_path)


def test_image_label_count_mismatch(tmp_path):
    write_dataset(tmp_path, n_train=6, n_train_labels=5)
    with pytest.raises(DataError, match="count mismatch.*6 images, 5 labels") as e:
        data.load_dataset("mnist", tmp_path, verify=False)
    names = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
    assert all(str(tmp_path / name) in str(e.value) for name in names)


def test_split_errors_name_their_file(tmp_path):
    """Wrong shapes and types name the file, and labels that do not fit in
    uint8 are refused, not wrapped (263 would read as 7), even unverified."""
    labels = tmp_path / "train-labels-idx1-ubyte.gz"
    images = tmp_path / "train-images-idx3-ubyte.gz"
    write_dataset(tmp_path)
    labels.write_bytes(gzip.compress(idx_bytes(np.full(6, 263), code=0x0C)))
    with pytest.raises(DataError, match=f"{labels}: train labels must be uint8"):
        data.load_dataset("mnist", tmp_path, verify=False)
    write_dataset(tmp_path)
    labels.write_bytes(gzip.compress(idx_bytes(np.zeros((6, 1), np.uint8))))
    with pytest.raises(DataError, match=f"{labels}: labels must be 1-D"):
        data.load_dataset("mnist", tmp_path, verify=False)
    write_dataset(tmp_path)
    images.write_bytes(gzip.compress(idx_bytes(np.zeros((6, 784), np.uint8))))
    with pytest.raises(DataError, match=f"{images}: images must be 3-D"):
        data.load_dataset("mnist", tmp_path, verify=False)


def test_raw_files_are_found_too(tmp_path, data_dir):
    """Decompressed originals load and verify like the .gz ones."""
    for stem in STEMS:
        with gzip.open(data_dir / "mnist" / f"{stem}.gz") as src:
            with open(tmp_path / stem, "wb") as dst:
                shutil.copyfileobj(src, dst)
    (_, y_train), _ = data.load_dataset("mnist", tmp_path)
    assert np.bincount(y_train).tolist() == MNIST_TRAIN_COUNTS


def test_corrupt_real_file_names_it(tmp_path, data_dir):
    for stem in STEMS:
        shutil.copy(data_dir / "mnist" / f"{stem}.gz", tmp_path)
    target = tmp_path / "t10k-labels-idx1-ubyte.gz"
    target.write_bytes(target.read_bytes()[:-100])
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz"):
        data.load_dataset("mnist", tmp_path)


def test_explicit_data_dir_without_files_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        data.load_dataset("mnist", tmp_path)


def test_no_local_copy_and_no_network_is_a_clear_error(monkeypatch, tmp_path):
    import keras

    def offline():
        raise Exception("URL fetch failure: no network")  # what Keras raises

    monkeypatch.setenv("CNNLEARN_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(keras.datasets.mnist, "load_data", offline)
    with pytest.raises(FileNotFoundError, match="no local copy.*download failed"):
        data.load_dataset("mnist")


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        data.load_dataset("cifar")


# --- preprocessing ----------------------------------------------------------


def test_preprocess_images():
    x = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)
    out = data.preprocess_images(x)
    assert out.shape == (1, 2, 2, 1) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, :, :, 0], [[0, 1], [0.2, 0.4]])
    assert data.preprocess_images(out.astype(np.uint8)).shape == (1, 2, 2, 1)
    with pytest.raises(ValueError, match="uint8"):
        data.preprocess_images(out)


def test_take_fraction_is_seeded_and_sized():
    x, y = np.arange(1000), np.arange(1000) % 10
    a, b = data.take_fraction(x, y, 0.1, seed=1), data.take_fraction(x, y, 0.1, 1)
    np.testing.assert_array_equal(a[0], b[0])
    assert len(a[0]) == 100 and (a[0] % 10 == a[1]).all()
    assert not np.array_equal(a[0], data.take_fraction(x, y, 0.1, seed=2)[0])
    assert data.take_fraction(x, y, 1.0)[0] is x
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="fraction"):
            data.take_fraction(x, y, bad)
