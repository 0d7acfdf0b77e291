"""Loading the image datasets from their original files (chapters 3 and 4).

The loaders read the *original* IDX files (``.gz`` or raw), check them against the
SHA-256 of the published originals, and fall back to Keras' own download for
readers who are online. Nothing here returns partial data: any problem with a file
raises :class:`DataError` naming the file and what is wrong with it.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import zlib
from pathlib import Path

import numpy as np

__all__ = [
    "CLASS_NAMES",
    "DATASETS",
    "DEBIAN_FASHION_MNIST_DIR",
    "MAX_IDX_BYTES",
    "DataError",
    "check_images",
    "find_dataset_dir",
    "load_dataset",
    "load_idx",
    "preprocess_images",
    "take_fraction",
]

DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

# IDX type codes (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT").
_IDX_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# SHA-256 of the *decompressed* IDX files. Hashing the payload rather than the
# .gz accepts any gzip wrapper around the original bytes. MNIST: the originals
# from yann.lecun.com (their .gz MD5s match torchvision's list). Fashion-MNIST:
# the files of Debian's dataset-fashion-mnist 0.0~git20200523.55506a9, which
# packages github.com/zalandoresearch/fashion-mnist (Debian re-gzipped them).
_SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte": (
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"
        ),
        "train-labels-idx1-ubyte": (
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"
        ),
        "t10k-images-idx3-ubyte": (
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"
        ),
        "t10k-labels-idx1-ubyte": (
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"
        ),
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte": (
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"
        ),
        "train-labels-idx1-ubyte": (
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"
        ),
        "t10k-images-idx3-ubyte": (
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"
        ),
        "t10k-labels-idx1-ubyte": (
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"
        ),
    },
}

DATASETS = tuple(_SHA256)

CLASS_NAMES = {
    "mnist": [str(d) for d in range(10)],
    "fashion_mnist": [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ],
}


class DataError(ValueError):
    """A data file is missing pieces, corrupt, or not what it claims to be."""


# The most payload an IDX file may claim before anything is decompressed: MNIST's
# training images are 47 MB; a header claiming more is refused, not believed.
MAX_IDX_BYTES = 1 << 31


def _open_idx(path: Path):
    """The file as a binary stream, decompressed when it is gzip (by its magic)."""
    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def _read(stream, n: int, path: Path) -> bytes:
    """Up to ``n`` bytes of ``stream``; a broken gzip stream is a :class:`DataError`."""
    try:
        return stream.read(n)
    except EOFError as exc:
        raise DataError(f"{path}: truncated gzip stream ({exc})") from None
    except (OSError, zlib.error) as exc:
        raise DataError(f"{path}: corrupt gzip data ({exc})") from None


def load_idx(
    path: str | os.PathLike, sha256: str | None = None, max_bytes: int = MAX_IDX_BYTES
) -> np.ndarray:
    """Read one IDX file (``.gz`` or raw) into a NumPy array.

    The IDX header is two zero bytes, a type code (0x08 = uint8, ...), the number
    of dimensions, then one big-endian uint32 per dimension. The payload must hold
    exactly ``prod(dims)`` items: a short file is *truncated*, a long one has
    trailing bytes; both raise :class:`DataError`, so partial data never escapes.

    Parameters
    ----------
    path
        The file, compressed with gzip or not (detected from its first bytes).
    sha256
        If given, the expected SHA-256 of the decompressed IDX bytes.
    max_bytes
        The most payload the header may claim. The header is read and checked
        first, and no more than the claimed payload plus one byte is ever
        decompressed, so a gzip bomb costs no more memory than a real file.

    Returns
    -------
    numpy.ndarray
        A writable array in native byte order with the shape from the header.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    DataError
        On a corrupt or truncated gzip stream, a wrong magic number, an unknown
        type code, a payload whose size does not match the header, or a
        SHA-256 mismatch.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    with _open_idx(path) as stream:  # header first: nothing is decompressed blind
        data = _read(stream, 4, path)
        if len(data) < 4:
            raise DataError(f"{path}: truncated: {len(data)} bytes, no IDX header")
        zero, code, ndim = data[:2], data[2], data[3]
        if zero != b"\x00\x00" or code not in _IDX_DTYPES or ndim == 0:
            magic = int.from_bytes(data[:4], "big")
            raise DataError(
                f"{path}: wrong magic number 0x{magic:08x}: expected 0x0000TTNN with "
                f"a known type code TT (one of {sorted(hex(c) for c in _IDX_DTYPES)}) "
                f"and NN >= 1 dimensions"
            )
        data += _read(stream, 4 * ndim, path)
        header = 4 + 4 * ndim
        if len(data) < header:
            raise DataError(f"{path}: truncated header: {ndim} dimensions announced")
        dims = tuple(
            int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)
        )
        dtype = _IDX_DTYPES[code]
        # Python ints: four uint32 dimensions overflow NumPy's int64 (to a
        # negative count, or a small one), never these.
        expected = math.prod(dims) * dtype.itemsize
        if expected > max_bytes:
            raise DataError(
                f"{path}: header {dims} claims {expected} payload bytes, more than "
                f"max_bytes={max_bytes}: refused before decompressing"
            )
        data += _read(stream, expected + 1, path)  # one byte more tells a long file
    found = len(data) - header
    if found < expected:
        raise DataError(
            f"{path}: truncated: header {dims} needs {expected} payload bytes, "
            f"found {found}"
        )
    if found > expected:
        raise DataError(
            f"{path}: size mismatch: header {dims} needs {expected} payload bytes, "
            "and the file has more (trailing bytes; the rest was not read)"
        )
    if sha256 is not None:  # after the format checks, whose messages say more
        digest = hashlib.sha256(data).hexdigest()
        if digest != sha256:
            raise DataError(
                f"{path}: SHA-256 mismatch: expected {sha256}, found {digest} "
                "(not the original file; pass verify=False to load it anyway)"
            )
    try:
        array = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    except ValueError as exc:  # over 64 dimensions, or a zero-size array of a
        # shape NumPy cannot hold ((0, 2**32 - 1, 2**32 - 1, 2**32 - 1))
        raise DataError(
            f"{path}: header {dims} is not an array NumPy can hold ({exc})"
        ) from None
    return array.astype(dtype.newbyteorder("="), copy=True)


def _candidate_dirs(name: str, data_dir: str | os.PathLike | None) -> list[Path]:
    if data_dir is not None:
        base = Path(data_dir)
        return [base, base / name]
    dirs = []
    env = os.environ.get("CNNLEARN_DATA_DIR")
    if env:
        dirs.append(Path(env) / name)
    if name == "fashion_mnist":
        dirs.append(DEBIAN_FASHION_MNIST_DIR)
    return dirs


def _find_file(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    return None


def find_dataset_dir(
    name: str, data_dir: str | os.PathLike | None = None
) -> Path | None:
    """Return the first local directory that holds all four IDX files of ``name``.

    The search order is ``data_dir`` (or ``data_dir/<name>``), then
    ``$CNNLEARN_DATA_DIR/<name>``, then, for Fashion-MNIST, the directory of
    Debian's ``dataset-fashion-mnist`` package. ``None`` means nothing local was
    found.
    """
    _check_name(name)
    stems = [stem for pair in _SPLIT_FILES.values() for stem in pair]
    for directory in _candidate_dirs(name, data_dir):
        if all(_find_file(directory, stem) for stem in stems):
            return directory
    return None


def _check_name(name: str) -> None:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}: expected one of {DATASETS}")


def _load_split(
    name: str, directory: Path, split: str, verify: bool
) -> tuple[np.ndarray, np.ndarray]:
    """One split's images and labels; every error names the file it is about."""
    paths = [_find_file(directory, stem) for stem in _SPLIT_FILES[split]]
    for stem, path in zip(_SPLIT_FILES[split], paths):
        if path is None:  # gone since find_dataset_dir looked
            raise FileNotFoundError(f"IDX file not found: {directory / stem}[.gz]")
    arrays = [
        load_idx(path, _SHA256[name][stem] if verify else None)
        for stem, path in zip(_SPLIT_FILES[split], paths)
    ]
    for path, array, what in zip(paths, arrays, ("images", "labels")):
        if array.dtype != np.uint8:  # a cast would wrap values (263 -> 7)
            raise DataError(
                f"{path}: {split} {what} must be uint8 (IDX type 0x08), found "
                f"{array.dtype}"
            )
    images, labels = arrays
    if images.ndim != 3:
        raise DataError(f"{paths[0]}: images must be 3-D, found shape {images.shape}")
    if labels.ndim != 1:
        raise DataError(f"{paths[1]}: labels must be 1-D, found shape {labels.shape}")
    if len(images) != len(labels):
        raise DataError(
            f"{paths[0]} and {paths[1]}: image/label count mismatch in the {split} "
            f"split: {len(images)} images, {len(labels)} labels"
        )
    return images, labels


def load_dataset(
    name: str = "mnist",
    data_dir: str | os.PathLike | None = None,
    *,
    verify: bool = True,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Load MNIST or Fashion-MNIST as uint8 arrays (used in chapters 3 and 4).

    Where the files are looked for, in order:

    1. ``data_dir`` itself or ``data_dir/<name>`` when ``data_dir`` is given
       (then nothing else is tried: a missing file is an error);
    2. ``$CNNLEARN_DATA_DIR/<name>/``;
    3. ``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist``,
       Fashion-MNIST only);
    4. Keras' download (``keras.datasets.<name>.load_data``), for readers online.

    Parameters
    ----------
    name
        ``"mnist"`` or ``"fashion_mnist"``.
    data_dir
        A directory with the four original IDX files (``.gz`` or raw).
    verify
        Check local files against the SHA-256 of the originals. A mismatch
        raises :class:`DataError`; pass ``False`` to load modified files.

    Returns
    -------
    ((x_train, y_train), (x_test, y_test))
        Images ``(N, 28, 28)`` and labels ``(N,)``, all ``uint8``.
    """
    _check_name(name)
    directory = find_dataset_dir(name, data_dir)
    if directory is not None:
        return (
            _load_split(name, directory, "train", verify),
            _load_split(name, directory, "test", verify),
        )
    if data_dir is not None:
        stems = [f"{s}[.gz]" for pair in _SPLIT_FILES.values() for s in pair]
        raise FileNotFoundError(
            f"{data_dir}: expected the {name} IDX files {', '.join(stems)} in this "
            f"directory or in {Path(data_dir) / name}"
        )
    import keras  # deferred: the local path needs no framework

    try:
        (x_train, y_train), (x_test, y_test) = getattr(keras.datasets, name).load_data()
    except Exception as exc:  # Keras raises a bare Exception on a failed fetch
        looked = [str(d) for d in _candidate_dirs(name, None)] or ["nowhere"]
        raise FileNotFoundError(
            f"{name}: no local copy (looked in {', '.join(looked)}; set "
            f"CNNLEARN_DATA_DIR or pass data_dir) and Keras' download failed: {exc}"
        ) from exc
    return (x_train, y_train.astype(np.uint8)), (x_test, y_test.astype(np.uint8))


def preprocess_images(x: np.ndarray) -> np.ndarray:
    """Scale uint8 images to float32 in [0, 1] and add a channel axis (NHWC).

    ``(N, 28, 28)`` uint8 becomes ``(N, 28, 28, 1)`` float32. Images that already
    have a channel axis keep it. Used in chapter 4.
    """
    return check_images(x).astype(np.float32) / np.float32(255.0)


def check_images(x: np.ndarray) -> np.ndarray:
    """Return uint8 images as ``(N, H, W, C)``, adding a missing channel axis.

    Raises ``ValueError`` for another dtype or number of dimensions.
    """
    x = np.asarray(x)
    if x.dtype != np.uint8:
        raise ValueError(f"expected uint8 images in [0, 255], found dtype {x.dtype}")
    if x.ndim == 3:
        x = x[..., np.newaxis]
    if x.ndim != 4:
        raise ValueError(f"expected images (N, H, W) or (N, H, W, C), got {x.shape}")
    return x


def take_fraction(
    x: np.ndarray, y: np.ndarray, fraction: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Return a random, seed-determined ``fraction`` of ``(x, y)``.

    ``fraction=1.0`` returns the arrays unchanged, in their original order. The
    chapters' ``data_fraction`` parameter goes through here.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length: {len(x)} and {len(y)}")
    if fraction == 1.0:
        return x, y
    n = max(1, int(round(len(x) * fraction)))
    index = np.sort(np.random.default_rng(seed).permutation(len(x))[:n])
    return x[index], y[index]
