"""Item sequences for next-item recommendation (chapter 9).

Two sources of the same shape, one item-id sequence per user (item ids from 1,
0 is padding):

* :func:`load_movielens_100k` reads MovieLens 100K (943 users, 1,682 movies,
  100,000 ratings, ordered by time). Its license forbids redistribution, so it
  is downloaded from GroupLens into the Keras cache for online readers and is
  never part of this repository or its shared data.
* :func:`simulate_sessions` is a documented simulator with *known* latent
  structure, used offline and in CI. See its docstring for what it can and
  cannot show.

:func:`leave_last_out` and :func:`sequence_windows` turn either into the
training windows and held-out last items of Caser (Tang and Wang, 2018).
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnlearn.data.load import DataError

__all__ = [
    "MOVIELENS_100K_URL",
    "Sessions",
    "last_window",
    "leave_last_out",
    "load_movielens_100k",
    "parse_movielens",
    "sequence_windows",
    "simulate_sessions",
]

MOVIELENS_100K_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
_MOVIELENS_100K_MD5 = "0e33842e24a9c977be4e0107933c0723"  # GroupLens' ml-100k.zip.md5


@dataclass
class Sessions:
    """One item sequence per user, oldest first; items are ``1..n_items``.

    ``truth`` holds the simulator's latent structure (``None`` for real data).
    """

    sequences: list[np.ndarray]
    n_items: int
    source: str
    truth: dict | None = field(default=None, repr=False)

    @property
    def n_users(self) -> int:
        return len(self.sequences)


def simulate_sessions(
    n_users: int = 1000,
    n_items: int = 400,
    n_categories: int = 20,
    length: tuple[int, int] = (20, 50),
    follow_probability: float = 0.5,
    preference_concentration: float = 0.1,
    popularity_exponent: float = 1.0,
    seed: int = 0,
) -> Sessions:
    """Simulate user sessions with known latent structure (offline stand-in).

    The generative story, all drawn from ``numpy.random.default_rng(seed)``:

    1. **Items** ``1..n_items`` get a category (equal-sized groups, shuffled)
       and a popularity weight ``1 / rank ** popularity_exponent`` (Zipf, random
       ranks).
    2. **Successors:** within each category the items form a random cycle;
       ``successor[i]`` is the item that "follows" ``i`` (a sequel, the next
       episode, an accessory).
    3. **Users** get category preferences from a Dirichlet with concentration
       ``preference_concentration`` (small values: a few favourite categories).
    4. **Sessions:** the first item is drawn from the user's preferences. Then,
       with probability ``follow_probability``, the next item is the successor
       of the current one (a first-order Markov transition); otherwise a
       category is drawn from the user's preferences and an item from it in
       proportion to popularity. Lengths are uniform in ``length``.

    What it can show: whether a model learns user taste (union-level pattern)
    and item-to-item transitions (point-level pattern) from sequences, and how
    far that is from the best possible ranking (``truth`` holds everything to
    compute it, see ``cnnlearn.apps.recommend.oracle_scores``). What it cannot
    show: anything about real people. Real logs have no single true generator,
    drift over time, cold-start users and items, repeat consumption with other
    dynamics and feedback loops from the recommender itself; numbers on the
    simulator rank methods only under its own assumptions.
    """
    if n_items % n_categories:
        raise ValueError(
            f"n_items ({n_items}) must be a multiple of n_categories ({n_categories})"
        )
    low, high = length
    if not 2 <= low <= high:
        raise ValueError(f"length must be (low, high) with 2 <= low <= high: {length}")
    rng = np.random.default_rng(seed)
    items = np.arange(1, n_items + 1)
    category = np.zeros(n_items + 1, dtype=np.int64)
    category[1:] = rng.permutation(
        np.repeat(np.arange(n_categories), n_items // n_categories)
    )
    popularity = np.zeros(n_items + 1)
    ranks = rng.permutation(np.arange(1, n_items + 1))
    popularity[1:] = 1.0 / ranks.astype(float) ** popularity_exponent
    successor = np.zeros(n_items + 1, dtype=np.int64)
    members = [items[category[1:] == c] for c in range(n_categories)]
    for group in members:
        cycle = rng.permutation(group)
        successor[cycle] = np.roll(cycle, -1)
    within = [popularity[g] / popularity[g].sum() for g in members]
    preferences = rng.dirichlet(
        np.full(n_categories, preference_concentration), n_users
    )
    sequences = []
    for user in range(n_users):
        n = int(rng.integers(low, high + 1))
        seq = np.empty(n, dtype=np.int64)
        for t in range(n):
            if t > 0 and rng.random() < follow_probability:
                seq[t] = successor[seq[t - 1]]
            else:
                c = rng.choice(n_categories, p=preferences[user])
                seq[t] = rng.choice(members[c], p=within[c])
        sequences.append(seq)
    truth = {
        "category": category,
        "popularity": popularity,
        "successor": successor,
        "preferences": preferences,
        "follow_probability": follow_probability,
        "members": members,
        "within": within,
    }
    return Sessions(sequences, n_items, f"simulator(seed={seed})", truth)


def parse_movielens(content: bytes, source: str = "u.data") -> Sessions:
    """Parse MovieLens 100K's ``u.data`` (user, item, rating, timestamp; tabs).

    Each user's items are ordered by timestamp (ties by item id); users become
    rows ``0..n_users-1`` in id order. A malformed line raises
    :class:`DataError` with its number.
    """
    rows = []
    for number, line in enumerate(content.decode("latin-1").splitlines(), start=1):
        fields = line.split("\t")
        try:
            if len(fields) != 4:
                raise ValueError
            rows.append([int(f) for f in fields])
        except ValueError:
            raise DataError(
                f"{source}: line {number}: expected 4 tab-separated integers "
                f"(user, item, rating, timestamp), found {line[:60]!r}"
            ) from None
    if not rows:
        raise DataError(f"{source}: no ratings")
    table = np.array(rows, dtype=np.int64)
    table = table[np.lexsort((table[:, 1], table[:, 3], table[:, 0]))]
    users, starts = np.unique(table[:, 0], return_index=True)
    sequences = np.split(table[:, 1], starts[1:])
    if table[:, 1].min() < 1:
        raise DataError(f"{source}: item ids must start at 1")
    return Sessions(
        list(sequences), int(table[:, 1].max()), f"MovieLens 100K ({source})"
    )


def load_movielens_100k(cache_dir: str | os.PathLike | None = None) -> Sessions:
    """Download MovieLens 100K from GroupLens (MD5-checked) and read its sequences.

    The archive goes to the Keras cache (``~/.keras/datasets``, or
    ``cache_dir``); its license (GroupLens, research use, no redistribution)
    is why the book never ships it. Offline this raises ``OSError``: use
    :func:`simulate_sessions` instead. Used in chapter 9.
    """
    import keras  # on demand, for its download cache: cnnlearn.data loads no TF

    try:
        archive = keras.utils.get_file(
            "ml-100k.zip",
            MOVIELENS_100K_URL,
            file_hash=_MOVIELENS_100K_MD5,
            hash_algorithm="md5",
            cache_dir=None if cache_dir is None else str(cache_dir),
        )
    except Exception as exc:  # Keras raises a bare Exception on a failed fetch
        raise OSError(f"MovieLens 100K download failed ({exc}); offline?") from exc
    with zipfile.ZipFile(archive) as zf:
        content = zf.read("ml-100k/u.data")
    return parse_movielens(content, f"{Path(archive).name}:ml-100k/u.data")


def leave_last_out(sessions: Sessions) -> tuple[list[np.ndarray], np.ndarray]:
    """Each user's history without its last item, and that last item (the test).

    Users with fewer than 2 items cannot be tested and raise ``ValueError``.
    """
    short = [u for u, s in enumerate(sessions.sequences) if len(s) < 2]
    if short:
        raise ValueError(f"{len(short)} users have < 2 items, e.g. user {short[0]}")
    history = [s[:-1] for s in sessions.sequences]
    targets = np.array([s[-1] for s in sessions.sequences], dtype=np.int64)
    return history, targets


def sequence_windows(
    sequences: list[np.ndarray], window: int = 5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training examples ``(users, windows, targets)`` from item sequences.

    For every position ``t >= 1`` of every user's sequence, the window holds the
    ``window`` items before ``t`` (left-padded with 0) and the target is the
    item at ``t``. :func:`last_window` builds the matching input for prediction.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    users, windows, targets = [], [], []
    for user, seq in enumerate(sequences):
        padded = np.concatenate([np.zeros(window, dtype=np.int64), seq])
        for t in range(1, len(seq)):
            users.append(user)
            windows.append(padded[t : t + window])
            targets.append(seq[t])
    return (
        np.array(users, dtype=np.int64),
        np.array(windows, dtype=np.int64).reshape(-1, window),
        np.array(targets, dtype=np.int64),
    )


def last_window(sequences: list[np.ndarray], window: int = 5) -> np.ndarray:
    """The last ``window`` items of every sequence (left-padded with 0)."""
    out = np.zeros((len(sequences), window), dtype=np.int64)
    for row, seq in enumerate(sequences):
        tail = seq[-window:]
        out[row, window - len(tail) :] = tail
    return out
