"""Next-item recommendation with Caser, its metrics and baselines (chapter 9).

Leave-last-out: each user's last item is the test target, the rest is history.
Every method scores all items for every user; the target's rank gives
HitRate@k (is it in the top k?) and NDCG@k (``1 / log2(rank + 2)`` when it is,
0 otherwise; rank 0 is the top). Baselines: random scores, global popularity in
the training histories, and, on the simulator, the oracle that knows the true
next-item probabilities (the ceiling).
"""

from __future__ import annotations

from dataclasses import dataclass

import cnnlearn._tf  # noqa: F401  (quiet TensorFlow start-up; before Keras)

# isort: split
import keras
import numpy as np

from cnnlearn import models
from cnnlearn.apps.fitting import fit_ids
from cnnlearn.data.recsys import last_window, sequence_windows

__all__ = [
    "CaserRun",
    "caser_scores",
    "evaluate_scores",
    "hit_rate_at_k",
    "ndcg_at_k",
    "oracle_scores",
    "popularity_scores",
    "random_scores",
    "ranks_of_targets",
    "recommend_items",
    "train_caser",
]


def ranks_of_targets(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank of each row's target among items ``1..n`` (column 0 = padding).

    Rank = the number of items scored higher, plus the tied ones with a lower
    id (ties are broken by item id, the same for every method).
    """
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.int64)
    if scores.ndim != 2 or len(scores) != len(targets):
        raise ValueError(
            f"scores must be (users, items) matching {len(targets)} targets, "
            f"found {scores.shape}"
        )
    if targets.min() < 1 or targets.max() >= scores.shape[1]:
        raise ValueError(f"targets must be item ids in [1, {scores.shape[1] - 1}]")
    valid = scores[:, 1:]
    target_scores = scores[np.arange(len(targets)), targets][:, np.newaxis]
    ids = np.arange(1, scores.shape[1])
    higher = np.sum(valid > target_scores, axis=1)
    tied_before = np.sum((valid == target_scores) & (ids < targets[:, None]), axis=1)
    return higher + tied_before


def hit_rate_at_k(ranks: np.ndarray, k: int = 10) -> float:
    """Share of users whose target is among the top ``k`` (rank < k)."""
    return float(np.mean(np.asarray(ranks) < k))


def ndcg_at_k(ranks: np.ndarray, k: int = 10) -> float:
    """Mean of ``1 / log2(rank + 2)`` for ranks below ``k``, 0 for the others.

    With one relevant item per user the ideal DCG is 1, so this is the NDCG.
    """
    ranks = np.asarray(ranks, dtype=np.float64)
    return float(np.mean(np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)))


def evaluate_scores(scores: np.ndarray, targets: np.ndarray, k: int = 10) -> dict:
    """``{"hr@k": ..., "ndcg@k": ...}`` of a score matrix against the targets."""
    ranks = ranks_of_targets(scores, targets)
    return {f"hr@{k}": hit_rate_at_k(ranks, k), f"ndcg@{k}": ndcg_at_k(ranks, k)}


def popularity_scores(history: list[np.ndarray], n_items: int) -> np.ndarray:
    """Every user gets the same scores: item counts over all training histories."""
    counts = np.bincount(np.concatenate(history), minlength=n_items + 1)
    counts = counts.astype(np.float64)
    counts[0] = -np.inf
    return np.broadcast_to(counts, (len(history), n_items + 1))


def random_scores(n_users: int, n_items: int, seed: int = 0) -> np.ndarray:
    """Uniform random scores: HitRate@k is k / n_items in expectation."""
    scores = np.random.default_rng(seed).random((n_users, n_items + 1))
    scores[:, 0] = -np.inf
    return scores


def oracle_scores(truth: dict, history: list[np.ndarray]) -> np.ndarray:
    """The simulator's true probability of each next item, per user.

    ``P(next = j) = f · [j = successor(last)] + (1 − f) · Σ_c pref[u, c] ·
    P(j | c)``. No model can rank better on average: the ceiling.
    """
    f = truth["follow_probability"]
    n_items = len(truth["category"]) - 1
    per_category = np.zeros((len(truth["members"]), n_items + 1))
    for c, (members, within) in enumerate(zip(truth["members"], truth["within"])):
        per_category[c, members] = within
    users = np.arange(len(history))
    preferences = truth["preferences"][users]
    scores = (1 - f) * preferences @ per_category
    last = np.array([h[-1] for h in history])
    scores[users, truth["successor"][last]] += f
    scores[:, 0] = -np.inf
    return scores


@dataclass
class CaserRun:
    """A trained Caser model and the settings it needs for prediction."""

    model: keras.Model
    window: int
    n_items: int
    history: dict[str, list[float]]
    train_seconds: float
    n_examples: int


def train_caser(
    history: list[np.ndarray],
    n_items: int,
    window: int = 5,
    dim: int = 50,
    epochs: int = 10,
    batch_size: int = 256,
    learning_rate: float = 2e-3,
    seed: int = 0,
    device: str = "auto",
    verbose: int | str = 0,
) -> CaserRun:
    """Train :func:`cnnlearn.models.caser` on every window of the histories.

    Each position of each user's history (test items excluded) is one example:
    the ``window`` items before it and the user predict it, with softmax
    cross-entropy over all items. Used in chapter 9.
    """
    keras.utils.set_random_seed(seed)
    users, windows, targets = sequence_windows(history, window)
    model = models.caser(len(history), n_items, window=window, dim=dim)
    fitted = fit_ids(
        model,
        {"users": users, "items": windows},
        targets,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        device=device,
        verbose=verbose,
    )
    return CaserRun(
        model, window, n_items, fitted.history, fitted.train_seconds, len(targets)
    )


def _predict(model: keras.Model, inputs: dict, batch_size: int = 1024) -> np.ndarray:
    """Direct model calls, batch by batch (no ``predict`` function to retrace)."""
    n = len(inputs["users"])
    return np.concatenate(
        [
            np.array(
                model(
                    {k: v[i : i + batch_size] for k, v in inputs.items()},
                    training=False,
                )
            )
            for i in range(0, n, batch_size)
        ]
    )


def caser_scores(run: CaserRun, history: list[np.ndarray]) -> np.ndarray:
    """Scores of every item for every user, from the last ``window`` items."""
    inputs = {
        "users": np.arange(len(history), dtype=np.int64),
        "items": last_window(history, run.window),
    }
    scores = _predict(run.model, inputs)
    scores[:, 0] = -np.inf
    return scores


def recommend_items(
    run: CaserRun, user: int, history: np.ndarray, k: int = 10
) -> list[tuple[int, float]]:
    """The top ``k`` ``(item, probability)`` for ``user`` after ``history`` (ch. 9).

    Item 0 (the padding id) is never recommended.
    """
    inputs = {
        "users": np.array([user], dtype=np.int64),
        "items": last_window([np.asarray(history)], run.window),
    }
    p = _predict(run.model, inputs)[0]
    p[0] = -np.inf
    top = np.argsort(-p, kind="stable")[:k]
    return [(int(i), float(p[i])) for i in top]
