"""cnnlearn.apps.recommend: ranking metrics by hand, baselines, Caser trains."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cnnlearn import data
from cnnlearn.apps import recommend

INF = -np.inf


def test_ranks_by_hand():
    scores = np.array(
        [
            [INF, 0.1, 0.5, 0.3, 0.2],  # target 3: only item 2 is higher -> rank 1
            [INF, 0.9, 0.1, 0.1, 0.1],  # target 4: 1 higher, ties 2, 3 first -> 3
            [9.0, 0.2, 0.2, 0.2, 0.2],  # column 0 (padding) never counts
        ]
    )
    ranks = recommend.ranks_of_targets(scores, np.array([3, 4, 1]))
    np.testing.assert_array_equal(ranks, [1, 3, 0])


def test_hit_rate_and_ndcg_by_hand():
    ranks = np.array([0, 1, 3, 10, 25])
    assert recommend.hit_rate_at_k(ranks, 10) == pytest.approx(3 / 5)
    assert recommend.hit_rate_at_k(ranks, 2) == pytest.approx(2 / 5)
    expected = (1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(5)) / 5
    assert recommend.ndcg_at_k(ranks, 10) == pytest.approx(expected)
    assert recommend.ndcg_at_k(np.array([0, 0]), 10) == 1.0


def test_evaluate_scores_and_errors():
    scores = np.array([[INF, 3.0, 2.0, 1.0]])
    assert recommend.evaluate_scores(scores, np.array([2]), k=1) == {
        "hr@1": 0.0,
        "ndcg@1": 0.0,
    }
    with pytest.raises(ValueError, match="item ids in"):
        recommend.ranks_of_targets(scores, np.array([4]))
    with pytest.raises(ValueError, match="targets"):
        recommend.ranks_of_targets(scores[0], np.array([1]))


def test_baselines():
    history = [np.array([1, 2, 2]), np.array([2, 3])]
    pop = recommend.popularity_scores(history, 4)
    np.testing.assert_array_equal(pop[1], [INF, 1, 3, 1, 0])
    ranks = recommend.ranks_of_targets(pop, np.array([2, 3]))
    np.testing.assert_array_equal(ranks, [0, 2])  # item 3 ties item 1, id 1 first
    rnd = recommend.random_scores(2000, 100, seed=0)
    hr = recommend.hit_rate_at_k(recommend.ranks_of_targets(rnd, np.full(2000, 7)))
    assert 0.07 < hr < 0.13  # 10 / 100 in expectation


@pytest.fixture(scope="module")
def simulated():
    sessions = data.simulate_sessions(
        n_users=300, n_items=100, n_categories=10, length=(10, 30), seed=0
    )
    history, targets = data.leave_last_out(sessions)
    return sessions, history, targets


def test_oracle_probabilities_sum_to_one_and_beat_popularity(simulated):
    sessions, history, targets = simulated
    oracle = recommend.oracle_scores(sessions.truth, history)
    np.testing.assert_allclose(oracle[:, 1:].sum(axis=1), 1.0)
    pop = recommend.popularity_scores(history, sessions.n_items)
    assert (
        recommend.evaluate_scores(oracle, targets)["hr@10"]
        > recommend.evaluate_scores(pop, targets)["hr@10"]
    )


def test_caser_trains_and_beats_popularity(simulated):
    sessions, history, targets = simulated
    run = recommend.train_caser(history, sessions.n_items, epochs=4, seed=0)
    assert run.n_examples == sum(len(h) - 1 for h in history)
    caser = recommend.evaluate_scores(recommend.caser_scores(run, history), targets)
    pop = recommend.evaluate_scores(
        recommend.popularity_scores(history, sessions.n_items), targets
    )
    assert caser["hr@10"] > pop["hr@10"]
    top = recommend.recommend_items(run, 0, history[0], k=5)
    assert len(top) == 5 and all(1 <= item <= 100 for item, _ in top)
    assert [p for _, p in top] == sorted((p for _, p in top), reverse=True)
