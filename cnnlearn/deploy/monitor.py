"""Input statistics and drift for a served model (chapter 8).

At export, :func:`training_statistics` summarizes the training images: for
each per-image statistic of :data:`STATISTICS` (mean intensity, fraction of ink,
ink near the border, ...) the mean and standard deviation over the training
set. It is saved beside the model. At serving time :class:`DriftMonitor` keeps
the same statistics for the last ``window`` images it saw and reports, per
statistic, how far their mean has moved from training, in units of the
training spread. Digits drawn inverted (white background) move ``mean``
and ``ink`` by several units; digits pushed off-centre move ``border``.

No TensorFlow here: the LiteRT server imports this module.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

__all__ = [
    "STATISTICS",
    "DriftMonitor",
    "alert_fires",
    "image_statistics",
    "training_statistics",
]

#: The per-image statistics, in [0, 1] for images in [0, 1].
STATISTICS = ("mean", "std", "ink", "border")
_INK = 0.5  # a pixel counts as ink above this intensity
_BORDER = 4  # pixels: the frame that centred MNIST digits leave nearly empty


def _border_mask(height: int, width: int) -> np.ndarray:
    mask = np.ones((height, width), dtype=bool)
    mask[_BORDER:-_BORDER, _BORDER:-_BORDER] = False
    return mask


def _gray(images: np.ndarray) -> np.ndarray:
    """Float32 ``(N, H, W)`` in [0, 1] from float or uint8, with or without C."""
    x = np.asarray(images)
    x = x * np.float32(1 / 255) if x.dtype == np.uint8 else x.astype(np.float32)
    if x.ndim == 4:
        x = x.mean(axis=-1) if x.shape[-1] > 1 else x[..., 0]
    if x.ndim != 3:
        raise ValueError(f"expected images (N, H, W[, C]), got shape {x.shape}")
    return x


def image_statistics(images: np.ndarray) -> np.ndarray:
    """Per-image statistics, one row per image, one column per :data:`STATISTICS`.

    Parameters
    ----------
    images
        Float images in [0, 1] or uint8 images, ``(N, H, W)`` or ``(N, H, W, C)``.

    Returns
    -------
    np.ndarray
        ``(N, 4)`` float64: mean intensity, standard deviation of the
        intensities, fraction of pixels above 0.5 ("ink") and mean intensity of
        the 4-pixel frame around the image ("border").
    """
    x = _gray(images)
    flat = x.reshape(len(x), -1)
    border = x[:, _border_mask(*x.shape[1:])]
    return np.stack(
        [flat.mean(1), flat.std(1), (flat > _INK).mean(1), border.mean(1)], axis=1
    ).astype(np.float64)


def training_statistics(images: np.ndarray) -> dict[str, dict[str, float]]:
    """Mean and standard deviation of each per-image statistic over ``images``.

    Saved at export (``assets.extra/cnnlearn.json``) as the reference that
    :class:`DriftMonitor` compares live traffic with. Used in chapter 8.
    """
    stats = image_statistics(images)
    if len(stats) < 2:
        raise ValueError(f"need at least 2 images for statistics, got {len(stats)}")
    return {
        name: {"mean": float(stats[:, i].mean()), "std": float(stats[:, i].std())}
        for i, name in enumerate(STATISTICS)
    }


class DriftMonitor:
    """Live input statistics over a sliding window, against the training ones.

    ``update(images)`` is cheap (a few NumPy reductions per request) and
    thread-safe; ``drift()`` is computed when asked, e.g. when Prometheus
    scrapes. The drift of a statistic is ``|live mean - training mean| /
    training std``: 0 when live inputs look like training inputs, several units
    when they do not.

    Parameters
    ----------
    reference
        What :func:`training_statistics` returned.
    window
        How many of the most recent images count.
    """

    def __init__(self, reference: dict[str, dict[str, float]], window: int = 1000):
        missing = [s for s in STATISTICS if s not in reference]
        if missing:
            raise ValueError(f"reference statistics lack {missing}: got {reference}")
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.reference = reference
        self.window = window
        self._mean = np.array([reference[s]["mean"] for s in STATISTICS])
        self._std = np.array([max(reference[s]["std"], 1e-6) for s in STATISTICS])
        self._buffer = np.zeros((window, len(STATISTICS)))
        self._next = 0
        self._count = 0
        self._pending: list[np.ndarray] = []
        self._pending_count = 0
        self._lock = threading.Lock()

    def update(self, images: np.ndarray) -> None:
        """Add a batch of images (float in [0, 1], or uint8).

        Cheap on purpose, since it runs on every request: the batch is only
        queued. Statistics are computed for many images at once, when the
        queue holds two windows' worth or when someone asks (a scrape).
        """
        with self._lock:
            self._pending.append(images)
            self._pending_count += len(images)
            if self._pending_count > 2 * self.window:
                self._flush()

    def _flush(self) -> None:  # call with the lock held
        if not self._pending:
            return
        batches, need = [], self.window
        for batch in reversed(self._pending):  # only the newest `window` count
            batches.append(batch[-need:])
            need -= len(batches[-1])
            if need <= 0:
                break
        self._pending.clear()
        self._pending_count = 0
        if len(batches) == 1:
            images = batches[0]
        else:
            images = np.concatenate([_gray(b) for b in batches[::-1]])
        self._add(image_statistics(images))

    def add_statistics(self, stats: np.ndarray) -> None:
        """Add rows of :func:`image_statistics` (computed elsewhere)."""
        with self._lock:
            self._flush()
            self._add(stats)

    def _add(self, stats: np.ndarray) -> None:  # call with the lock held
        stats = stats[-self.window :]
        n = len(stats)
        end = self._next + n
        if end <= self.window:
            self._buffer[self._next : end] = stats
        else:
            first = self.window - self._next
            self._buffer[self._next :] = stats[:first]
            self._buffer[: n - first] = stats[first:]
        self._next = end % self.window
        self._count = min(self._count + n, self.window)

    @property
    def count(self) -> int:
        """How many images the window holds now."""
        with self._lock:
            self._flush()
            return self._count

    def live_means(self) -> dict[str, float]:
        """Mean of each statistic over the window (NaN before any image)."""
        with self._lock:
            self._flush()
            if self._count == 0:
                return {s: float("nan") for s in STATISTICS}
            means = self._buffer[: self._count].mean(axis=0)
        return dict(zip(STATISTICS, means.tolist()))

    def drift(self) -> dict[str, float]:
        """``|live - training| / training std`` per statistic (0.0 before any image)."""
        live = self.live_means()
        if np.isnan(live[STATISTICS[0]]):
            return {s: 0.0 for s in STATISTICS}
        values = np.abs(np.array([live[s] for s in STATISTICS]) - self._mean)
        return dict(zip(STATISTICS, (values / self._std).tolist()))

    def reset(self) -> None:
        """Forget the window (e.g. after a new model version with new statistics)."""
        with self._lock:
            self._pending.clear()
            self._pending_count = 0
            self._next = 0
            self._count = 0


def alert_fires(
    times: Sequence[float],
    values: Sequence[float],
    threshold: float,
    for_seconds: float = 0.0,
) -> bool:
    """Would a Prometheus rule ``value > threshold`` with ``for: for_seconds`` fire?

    Each ``(time, value)`` pair is one evaluation of the rule, e.g. one scrape.
    Prometheus keeps an alert *pending* while the condition holds and fires it
    once it has held, at consecutive evaluations, for at least ``for_seconds``;
    an evaluation where it fails resets the clock. With ``for_seconds=0`` one
    evaluation above the threshold fires. Chapter 8 checks its drift demo with
    it: phases that last seconds never fire a ``for: 10m`` rule.

    Parameters
    ----------
    times
        Evaluation times in seconds, non-decreasing.
    values
        The expression's value at each time (e.g. the largest drift gauge).
    threshold
        The condition is ``value > threshold``.
    for_seconds
        How long the condition must hold before the alert fires.

    Returns
    -------
    bool
        True if the alert fires at some evaluation.
    """
    if len(times) != len(values):
        raise ValueError(f"{len(times)} times but {len(values)} values")
    if for_seconds < 0:
        raise ValueError(f"for_seconds must be >= 0, got {for_seconds}")
    if any(later < earlier for earlier, later in zip(times, times[1:])):
        raise ValueError("times must be non-decreasing")
    since = None  # when the condition started to hold
    for time, value in zip(times, values):
        if value > threshold:
            since = time if since is None else since
            if time - since >= for_seconds:
                return True
        else:
            since = None
    return False
