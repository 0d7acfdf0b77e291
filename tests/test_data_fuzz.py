"""Fuzzing cnnlearn.data.load_idx: whatever the bytes, a DataError or an array.

The IDX reader is the first code to touch a downloaded file (chapters 3 and 4).
On arbitrary bytes, raw or gzipped, on real MNIST files with mutated headers,
truncated or padded, and on headers whose dimensions NumPy cannot hold, it may
only return the array its header describes or raise :class:`DataError` naming
the file: never ``MemoryError``, ``IndexError``, ``struct.error``, a plain
``ValueError`` from NumPy, or ``OSError``/``EOFError`` from ``gzip``.
"""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cnnlearn.data import DataError, load_idx

FUZZ = settings(max_examples=150, deadline=None)
# Small enough that a header claiming more is refused before any read: the
# fuzzed files are tiny, and a test must not allocate what a header claims.
MAX_BYTES = 1 << 20
TYPE_CODES = (0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E)
ITEMSIZE = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """One file the examples overwrite (hypothesis runs them one at a time)."""
    return tmp_path_factory.mktemp("fuzz") / "t10k-images-idx3-ubyte"


class RealFiles(dict):
    """File name → bytes, with a short repr for hypothesis' failure reports."""

    def __repr__(self) -> str:
        return f"RealFiles({sorted(self)})"


@pytest.fixture(scope="module")
def real(data_dir) -> RealFiles:
    """Small valid IDX files cut from the real MNIST test set: 5 images (the
    header's count set to 5) and all 10,000 labels."""
    folder = data_dir / "mnist"
    images = gzip.decompress((folder / "t10k-images-idx3-ubyte.gz").read_bytes())
    labels = gzip.decompress((folder / "t10k-labels-idx1-ubyte.gz").read_bytes())
    few = images[:4] + struct.pack(">I", 5) + images[8 : 16 + 5 * 28 * 28]
    return RealFiles(images=few, labels=labels)


def check(path: Path, content: bytes, compress: bool = False) -> None:
    """``load_idx`` on ``content``: a DataError that names the file, or the
    array the header describes, exactly the payload's bytes."""
    path.write_bytes(gzip.compress(content, mtime=0) if compress else content)
    try:
        array = load_idx(path, max_bytes=MAX_BYTES)
    except DataError as exc:
        message = str(exc)
        assert str(path) in message and "\n" not in message
        return
    code, ndim = content[2], content[3]  # it loaded: the header was valid
    dims = struct.unpack(f">{ndim}I", content[4 : 4 + 4 * ndim])
    assert array.shape == dims and array.dtype.itemsize == ITEMSIZE[code]
    assert len(content) == 4 + 4 * ndim + math.prod(dims) * ITEMSIZE[code]
    assert array.dtype.byteorder in "=|" and array.flags.writeable


def header(code: int, dims: tuple[int, ...]) -> bytes:
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


@FUZZ
@given(st.binary(max_size=300), st.booleans())
def test_arbitrary_bytes_raw_or_gzipped(scratch, content, compress):
    check(scratch, content, compress)


@FUZZ
@given(
    st.sampled_from(TYPE_CODES),
    st.lists(st.integers(0, 6) | st.integers(0, 2**32 - 1), min_size=1, max_size=5),
    st.binary(max_size=400),
    st.booleans(),
)
@example(0x08, [0, 2**32 - 1, 2**32 - 1], b"", False)  # zero items, huge shape
@example(0x08, [2**32 - 1] * 4, b"", False)  # a count that overflows int64
@example(0x08, [2**16, 2**16, 2**16, 2**16 + 1], b"", False)  # wraps to 2**64 + ...
@example(0x0E, [2, 3], bytes(48), True)  # valid: float64, gzipped
def test_headers_with_any_dimensions(scratch, code, dims, payload, compress):
    """Counts that overflow 64 bits, zero-size arrays of huge shape, payloads
    that do or do not match."""
    check(scratch, header(code, tuple(dims)) + payload, compress)


@settings(max_examples=50, deadline=None)
@given(st.integers(65, 255), st.integers(0, 3), st.booleans())
@example(255, 0, False)
def test_more_dimensions_than_numpy_holds(scratch, ndim, filler, compress):
    """NumPy arrays have at most 64 dimensions; the header may claim 255."""
    check(scratch, bytes([0, 0, 0x08, ndim]) + bytes([filler]) * (4 * ndim), compress)


MUTATIONS = st.tuples(
    st.sampled_from(["set", "flip", "insert", "delete", "truncate", "append"]),
    st.integers(0, 40),  # where: the header and the first bytes after it
    st.integers(0, 255),
)


def mutate(content: bytes, edits: list[tuple[str, int, int]]) -> bytes:
    data = bytearray(content)
    for kind, where, value in edits:
        where = min(where, len(data))
        if kind == "set" and where < len(data):
            data[where] = value
        elif kind == "flip" and where < len(data):
            data[where] ^= 1 << (value % 8)
        elif kind == "insert":
            data[where:where] = bytes([value])
        elif kind == "delete":
            del data[where : where + 1 + value % 4]
        elif kind == "truncate":
            del data[len(data) - 1 - value % len(data) if data else 0 :]
        elif kind == "append":
            data += bytes([value]) * (1 + value % 7)
    return bytes(data)


@FUZZ
@given(
    st.sampled_from(["images", "labels"]),
    st.lists(MUTATIONS, min_size=1, max_size=4),
    st.booleans(),
)
def test_real_files_with_mutated_headers(real, scratch, which, edits, compress):
    check(scratch, mutate(real[which], edits), compress)


@FUZZ
@given(st.lists(MUTATIONS, min_size=1, max_size=3), st.integers(0, 2**32 - 1))
def test_corrupt_gzip_streams(real, scratch, edits, seed):
    """Damage inside the gzip wrapper or its deflate stream (CRC, length,
    flags, a truncated member) is a DataError too."""
    packed = gzip.compress(real["images"], mtime=0)
    where = np.random.default_rng(seed).integers(len(packed))
    damaged = packed[:where] + mutate(packed[where:], edits)
    if packed[:2] == damaged[:2]:  # else it is read as a raw file: fuzzed above
        scratch.write_bytes(damaged)
        try:
            load_idx(scratch, max_bytes=MAX_BYTES)
        except DataError as exc:
            assert str(scratch) in str(exc)


def test_the_unmutated_files_load(real, scratch):
    """The fuzzed files are valid to begin with (else every case would be an
    error and the properties would prove little)."""
    for name, shape in (("images", (5, 28, 28)), ("labels", (10_000,))):
        for compress in (False, True):
            scratch.write_bytes(
                gzip.compress(real[name], mtime=0) if compress else real[name]
            )
            assert load_idx(scratch).shape == shape
