"""Validating, de-duplicating, cleaning and normalizing image data (chapter 3).

Everything here reports before it changes anything: :func:`validate_images`
lists violations, the ``find_*`` functions list duplicates, and :func:`clean`
returns a log of each row it dropped and why.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "ValidationReport",
    "clean",
    "describe",
    "find_cross_duplicates",
    "find_duplicates",
    "find_near_duplicates",
    "normalization_layer",
    "standardization_stats",
    "validate_images",
]


@dataclass
class ValidationReport:
    """What :func:`validate_images` found. ``bad_rows`` index the offending rows."""

    n: int
    problems: list[str] = field(default_factory=list)
    bad_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        if self.ok:
            return f"{self.n:,} rows: no problems found"
        lines = [f"{self.n:,} rows, {len(self.bad_rows):,} bad:"]
        return "\n".join(lines + [f"  - {p}" for p in self.problems])


def validate_images(
    x: np.ndarray,
    y: np.ndarray,
    *,
    image_shape: tuple[int, ...] = (28, 28),
    num_classes: int = 10,
    value_range: tuple[float, float] = (0, 255),
) -> ValidationReport:
    """Check images and labels and report every violation; fix nothing.

    Checks: equal lengths, the image shape, a numeric dtype, NaN or infinite
    pixels, pixels outside ``value_range``, and labels outside
    ``0..num_classes-1`` or not integers. Row-level problems are collected in
    ``bad_rows`` so :func:`clean` can drop exactly those rows (chapter 3).
    """
    x, y = np.asarray(x), np.asarray(y)
    report = ValidationReport(n=len(x))
    if len(x) != len(y):
        report.problems.append(f"{len(x)} images but {len(y)} labels")
        return report
    if x.shape[1:] != tuple(image_shape):
        report.problems.append(f"image shape {x.shape[1:]}, expected {image_shape}")
        return report
    if not (np.issubdtype(x.dtype, np.number) and np.issubdtype(y.dtype, np.number)):
        report.problems.append(
            f"non-numeric dtypes: images {x.dtype}, labels {y.dtype}"
        )
        return report
    bad = np.zeros(len(x), bool)
    pixels = x.reshape(len(x), -1).astype(np.float64)

    def flag(rows: np.ndarray, what: str) -> None:
        if rows.any():
            first = np.flatnonzero(rows)[:5].tolist()
            report.problems.append(f"{int(rows.sum()):,} rows {what} (e.g. {first})")
            bad[:] |= rows

    flag(~np.isfinite(pixels).all(axis=1), "with NaN or infinite pixels")
    low, high = value_range
    with np.errstate(invalid="ignore"):
        outside = ((pixels < low) | (pixels > high)).any(axis=1)
    flag(outside, f"with pixels outside [{low}, {high}]")
    labels = y.astype(np.float64)
    flag(labels != np.round(labels), "with non-integer labels")
    flag(
        (labels < 0) | (labels >= num_classes),
        f"with labels outside 0..{num_classes - 1}",
    )
    report.bad_rows = np.flatnonzero(bad)
    return report


def _row_hashes(x: np.ndarray) -> np.ndarray:
    """One content hash per image (BLAKE2b of its bytes, as fixed-size strings)."""
    x = np.ascontiguousarray(x)
    return np.array(
        [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in x]
    )


def find_duplicates(x: np.ndarray) -> list[np.ndarray]:
    """Groups of row indices whose images are byte-for-byte identical.

    Only groups of two or more rows are returned, each sorted; content hashes
    make this one pass over the data (chapter 3).
    """
    hashes = _row_hashes(x)
    order = np.argsort(hashes, kind="stable")
    sorted_hashes = hashes[order]
    starts = np.flatnonzero(np.r_[True, sorted_hashes[1:] != sorted_hashes[:-1]])
    groups = np.split(order, starts[1:])
    return [np.sort(g) for g in groups if len(g) > 1]


def find_cross_duplicates(x_a: np.ndarray, x_b: np.ndarray) -> list[tuple[int, int]]:
    """Pairs ``(i, j)`` where ``x_a[i]`` is byte-identical to ``x_b[j]``."""
    dtype = np.result_type(x_a, x_b)  # equal values hash equal across dtypes
    index: dict[bytes, list[int]] = {}
    for i, h in enumerate(_row_hashes(np.asarray(x_a, dtype))):
        index.setdefault(h, []).append(i)
    hashes = _row_hashes(np.asarray(x_b, dtype))
    return [(i, j) for j, h in enumerate(hashes) for i in index.get(h, [])]


def find_near_duplicates(
    x_a: np.ndarray,
    x_b: np.ndarray,
    threshold: float = 0.98,
    chunk: int = 1000,
) -> list[tuple[int, int, float]]:
    """Pairs of near-identical images across two sets, by cosine similarity.

    Each image is mean-centred and scaled to unit length, so similarity 1 means
    the same picture up to brightness and contrast. For every image of ``x_b``
    the most similar image of ``x_a`` is found (a chunked matrix product, so
    memory stays at ``chunk * len(x_a)`` floats); pairs at or above
    ``threshold`` are returned as ``(i_a, j_b, similarity)``, most similar
    first. Exact duplicates come out with similarity 1.0 (chapter 3).
    """

    def unit(x: np.ndarray) -> np.ndarray:
        v = np.asarray(x, np.float32).reshape(len(x), -1)
        v = v - v.mean(axis=1, keepdims=True)
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)

    a, b = unit(x_a), unit(x_b)
    pairs = []
    for start in range(0, len(b), chunk):
        sims = b[start : start + chunk] @ a.T
        best = sims.argmax(axis=1)
        score = sims[np.arange(len(best)), best]
        for j in np.flatnonzero(score >= threshold):
            pairs.append((int(best[j]), start + int(j), float(score[j])))
    return sorted(pairs, key=lambda p: -p[2])


def clean(
    x: np.ndarray,
    y: np.ndarray,
    *,
    exclude: np.ndarray | None = None,
    **validate_kwargs,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Drop invalid rows, repeated images and rows that leak into another split.

    1. rows :func:`validate_images` flags;
    2. all but the first copy of each exact duplicate;
    3. rows identical to an image of ``exclude`` (pass the test images when
       cleaning the training set, so nothing tested on was trained on).

    Returns the kept ``x``, ``y`` and a log of what was removed and why; the
    inputs are not modified (chapter 3).
    """
    report = validate_images(x, y, **validate_kwargs)
    if len(x) != len(y) or (report.problems and not len(report.bad_rows)):
        raise ValueError(f"cannot clean: {'; '.join(report.problems)}")
    drop = np.zeros(len(x), bool)
    drop[report.bad_rows] = True
    repeated = [g[1:] for g in find_duplicates(x)]
    repeats = np.concatenate(repeated) if repeated else np.zeros(0, np.int64)
    drop[repeats] = True
    leaks = np.array(
        sorted({i for i, _ in find_cross_duplicates(x, exclude)})
        if exclude is not None
        else [],
        dtype=np.int64,
    )
    drop[leaks] = True
    log = {
        "rows_in": len(x),
        "invalid": len(report.bad_rows),
        "repeated": len(repeats),
        "leaking": len(leaks),
        "rows_out": int((~drop).sum()),
        "problems": report.problems,
    }
    return x[~drop], y[~drop], log


# --- a first look (chapter 3) ------------------------------------------------


def describe(x: np.ndarray, y: np.ndarray, num_classes: int = 10) -> dict:
    """Summary statistics to read before training: size, class balance, pixels.

    Parameters
    ----------
    x : uint8 images (N, H, W) or (N, H, W, 1), as loaded.
    y : integer labels (N,) in ``[0, num_classes)``.

    Returns
    -------
    dict
        ``n``, ``image_shape``, ``class_counts`` (one per class),
        ``imbalance`` (largest class / smallest class), ``pixel_mean`` and
        ``pixel_std`` on the [0, 1] scale, ``background`` (share of pixels that
        are exactly 0) and ``ink`` (share at half intensity or more, >= 128).
        Used in chapter 3.
    """
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y) or not len(x):
        raise ValueError(f"need as many labels as images (> 0): {len(x)}, {len(y)}")
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"labels must be in [0, {num_classes}), got {y.min()}..")
    counts = np.bincount(y.astype(np.int64), minlength=num_classes)
    mean, std = standardization_stats(x)
    return {
        "n": len(x),
        "image_shape": tuple(int(d) for d in x.shape[1:]),
        "class_counts": counts.tolist(),
        "imbalance": float(counts.max() / max(counts.min(), 1)),
        "pixel_mean": mean,
        "pixel_std": std,
        "background": float((x == 0).mean()),
        "ink": float((x >= 128).mean()),
    }


# --- normalization (chapter 3) ----------------------------------------------


def standardization_stats(x_train: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of the pixels scaled to [0, 1].

    Compute these on the training split only and reuse them for validation,
    test and serving; for MNIST they are the well-known 0.1307 and 0.3081.
    """
    x = np.asarray(x_train, np.float64) / 255.0
    return float(x.mean()), float(x.std())


def normalization_layer(x_train: np.ndarray):
    """A ``keras.layers.Normalization`` holding the training split's statistics.

    Put it first in a model that takes images scaled to [0, 1]: the statistics
    are then saved with the model, so serving standardizes exactly as training
    did (chapter 3).
    """
    # On demand: importing cnnlearn.data loads no TensorFlow.
    import cnnlearn._tf  # noqa: F401  (quiet TensorFlow start-up)

    # isort: split
    import keras

    mean, std = standardization_stats(x_train)
    return keras.layers.Normalization(mean=mean, variance=std**2, name="standardize")
