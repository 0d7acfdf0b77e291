"""The AT&T (ORL) Database of Faces: PGM reader, loader and split (chapter 9).

40 subjects × 10 grayscale images of 92×112 pixels, taken 1992-94 at the Olivetti
Research Laboratory, Cambridge. Acknowledgement, as its terms ask: *AT&T
Laboratories Cambridge*; reference: F. Samaria and A. Harter, "Parameterisation
of a stochastic model for human face identification", 2nd IEEE Workshop on
Applications of Computer Vision, 1994.

:func:`load_att_faces` reads the original PGM files (``$CNNLEARN_DATA_DIR/att_faces``
or ``data_dir``) and checks them against the SHA-256 of the originals. Online
readers without the files get scikit-learn's ``fetch_olivetti_faces``: the same
people, but a *resampled 64×64* rendering, not the original pixels (the result
says so in ``source``).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlearn.data.load import DataError

__all__ = [
    "ATT_FACES_ACKNOWLEDGEMENT",
    "Faces",
    "find_faces_dir",
    "load_att_faces",
    "read_pgm",
    "split_per_subject",
]

ATT_FACES_ACKNOWLEDGEMENT = (
    "The ORL Database of Faces, AT&T Laboratories Cambridge (F. Samaria and "
    "A. Harter, 2nd IEEE Workshop on Applications of Computer Vision, 1994)."
)
N_SUBJECTS, N_PER_SUBJECT = 40, 10
HEIGHT, WIDTH = 112, 92

# SHA-256 over the 400 per-file SHA-256 hex digests, in the order s1/1.pgm,
# s1/2.pgm, ..., s40/10.pgm (each file's digest is in the data's SHA256SUMS).
_COMBINED_SHA256 = "d462d714f7704673575137a9d094acf95510dde0d9b47af17d24a86cf7e9cd3a"


@dataclass
class Faces:
    """Face images ``(N, H, W)`` uint8, labels ``(N,)`` (subject ``sK`` → ``K-1``)."""

    images: np.ndarray
    labels: np.ndarray
    source: str


def _pgm_tokens(data: bytes, path: Path, count: int) -> tuple[list[bytes], int]:
    """The first ``count`` whitespace-separated header tokens, skipping comments."""
    tokens, i = [], 0
    while len(tokens) < count:
        while i < len(data) and data[i : i + 1].isspace():
            i += 1
        if i < len(data) and data[i : i + 1] == b"#":
            while i < len(data) and data[i : i + 1] not in (b"\n", b"\r"):
                i += 1
            continue
        start = i
        while i < len(data) and not data[i : i + 1].isspace():
            i += 1
        if start == i:
            raise DataError(f"{path}: truncated PGM header: {tokens}")
        tokens.append(data[start:i])
    return tokens, i


def read_pgm(path: str | os.PathLike) -> np.ndarray:
    """Read a binary (P5) or ASCII (P2) PGM file as a ``(H, W)`` uint8 array.

    Values with a maxval other than 255 are rescaled to 0..255. Anything else (a
    wrong magic number, a bad header, a short or long pixel payload) raises
    :class:`DataError` naming the file. Used in chapter 9.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"PGM file not found: {path}")
    data = path.read_bytes()
    magic = data[:2]
    if magic not in (b"P5", b"P2"):
        raise DataError(
            f"{path}: not a PGM file: magic {magic!r}, expected b'P5'/b'P2'"
        )
    tokens, end = _pgm_tokens(data, path, 4)
    try:
        width, height, maxval = (int(t) for t in tokens[1:])
    except ValueError:
        raise DataError(f"{path}: bad PGM header {tokens!r}") from None
    if width < 1 or height < 1 or not 0 < maxval < 65536:
        raise DataError(f"{path}: bad PGM header: {width}x{height}, maxval {maxval}")
    n = width * height
    if magic == b"P2":
        values = data[end:].split()
        if len(values) != n:
            raise DataError(
                f"{path}: header {width}x{height} needs {n} values, found {len(values)}"
            )
        pixels = np.array([int(v) for v in values], dtype=np.int64)
    else:
        payload = data[end + 1 :]  # exactly one whitespace byte after maxval
        dtype = np.dtype("u1") if maxval < 256 else np.dtype(">u2")
        expected = n * dtype.itemsize
        if len(payload) != expected:
            kind = "truncated" if len(payload) < expected else "size mismatch"
            raise DataError(
                f"{path}: {kind}: header {width}x{height} (maxval {maxval}) needs "
                f"{expected} pixel bytes, found {len(payload)}"
            )
        pixels = np.frombuffer(payload, dtype=dtype).astype(np.int64)
    if pixels.max(initial=0) > maxval:
        raise DataError(f"{path}: pixel value {pixels.max()} above maxval {maxval}")
    if maxval != 255:
        pixels = np.round(pixels * (255.0 / maxval))
    return pixels.astype(np.uint8).reshape(height, width)


def find_faces_dir(data_dir: str | os.PathLike | None = None) -> Path | None:
    """``data_dir`` (or ``data_dir/att_faces``), else ``$CNNLEARN_DATA_DIR/att_faces``.

    Returns the first directory holding ``s1/1.pgm``, or ``None``.
    """
    if data_dir is not None:
        candidates = [Path(data_dir), Path(data_dir) / "att_faces"]
    else:
        env = os.environ.get("CNNLEARN_DATA_DIR")
        candidates = [Path(env) / "att_faces"] if env else []
    for directory in candidates:
        if (directory / "s1" / "1.pgm").is_file():
            return directory
    return None


def _check_sums(directory: Path, digests: list[str], files: list[Path]) -> None:
    combined = hashlib.sha256("".join(digests).encode()).hexdigest()
    if combined == _COMBINED_SHA256:
        return
    sums = directory / "SHA256SUMS"
    bad = []
    if sums.is_file():
        expected = dict(
            reversed(line.split(maxsplit=1))
            for line in sums.read_text().splitlines()
            if line.strip()
        )
        bad = [
            str(f)
            for f, d in zip(files, digests)
            if expected.get(f.relative_to(directory).as_posix()) != d
        ]
    raise DataError(
        f"{directory}: the PGM files are not the AT&T originals (SHA-256 mismatch"
        + (f" in {', '.join(bad[:5])}" if bad else "")
        + "; pass verify=False to load them anyway)"
    )


def _load_olivetti() -> Faces:
    from sklearn.datasets import fetch_olivetti_faces  # optional dependency

    bunch = fetch_olivetti_faces()
    images = np.round(bunch.images * 255).astype(np.uint8)
    return Faces(
        images,
        bunch.target.astype(np.int64),
        "sklearn fetch_olivetti_faces (resampled 64x64 version, not the original PGM)",
    )


def load_att_faces(
    data_dir: str | os.PathLike | None = None,
    *,
    verify: bool = True,
    download: bool = True,
) -> Faces:
    """Load the 400 AT&T faces as uint8 ``(400, 112, 92)`` with labels 0..39.

    Looks in ``data_dir`` (or ``data_dir/att_faces``), else in
    ``$CNNLEARN_DATA_DIR/att_faces``. Without local files and with ``download``,
    falls back to ``sklearn.datasets.fetch_olivetti_faces``: the same 40 people
    as a *resampled 64×64* version (``Faces.source`` says which one you got).
    With ``verify``, the 400 files must be the originals (SHA-256), and a
    mismatch names the files that differ. Used in chapter 9.
    """
    directory = find_faces_dir(data_dir)
    if directory is None:
        if data_dir is not None or not download:
            raise FileNotFoundError(
                f"AT&T faces not found (expected s1/1.pgm ... s40/10.pgm in "
                f"{data_dir or '$CNNLEARN_DATA_DIR/att_faces'})"
            )
        return _load_olivetti()
    files = [
        directory / f"s{s}" / f"{i}.pgm"
        for s in range(1, N_SUBJECTS + 1)
        for i in range(1, N_PER_SUBJECT + 1)
    ]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{directory}: {len(missing)} of the 400 PGM files are missing, "
            f"e.g. {missing[0]}"
        )
    images = [read_pgm(f) for f in files]
    shapes = {im.shape for im in images}
    if shapes != {(HEIGHT, WIDTH)}:
        odd = next(f for f, im in zip(files, images) if im.shape != (HEIGHT, WIDTH))
        raise DataError(f"{odd}: expected {WIDTH}x{HEIGHT} pixels, found {shapes}")
    if verify:
        digests = [hashlib.sha256(f.read_bytes()).hexdigest() for f in files]
        _check_sums(directory, digests, files)
    labels = np.repeat(np.arange(N_SUBJECTS), N_PER_SUBJECT)
    return Faces(np.stack(images), labels, f"AT&T PGM originals in {directory}")


def split_per_subject(
    labels: np.ndarray, n_train: int = 7, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices with ``n_train`` random images of every subject in train.

    The rest of each subject's images go to test (7 / 3 for AT&T faces), so
    every subject is seen in training and tested on images it never saw.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for subject in np.unique(labels):
        index = rng.permutation(np.flatnonzero(labels == subject))
        if len(index) <= n_train:
            raise ValueError(
                f"subject {subject} has {len(index)} images; n_train={n_train} "
                "leaves none for testing"
            )
        train.extend(index[:n_train])
        test.extend(index[n_train:])
    return np.sort(train), np.sort(test)
