"""cnnlearn.data.recsys: the session simulator, MovieLens parsing, windows."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlearn import data


def small(seed=0, **kwargs):
    return data.simulate_sessions(
        n_users=50, n_items=60, n_categories=6, length=(5, 12), seed=seed, **kwargs
    )


def test_simulator_is_reproducible_with_a_seed():
    a, b, c = small(0), small(0), small(1)
    assert all(np.array_equal(x, y) for x, y in zip(a.sequences, b.sequences))
    np.testing.assert_array_equal(a.truth["preferences"], b.truth["preferences"])
    assert not all(
        len(x) == len(y) and np.array_equal(x, y)
        for x, y in zip(a.sequences, c.sequences)
    )


def test_simulator_structure():
    s = small(follow_probability=1.0)
    truth = s.truth
    assert s.n_users == 50 and s.n_items == 60 and s.source.startswith("simulator")
    assert all(5 <= len(seq) <= 12 for seq in s.sequences)
    assert all(seq.min() >= 1 and seq.max() <= 60 for seq in s.sequences)
    # successors stay inside their category and form a cycle over it
    assert np.array_equal(
        truth["category"][truth["successor"][1:]], truth["category"][1:]
    )
    assert sorted(truth["successor"][1:]) == list(range(1, 61))
    # with follow_probability 1 every step is the successor of the one before
    for seq in s.sequences:
        np.testing.assert_array_equal(seq[1:], truth["successor"][seq[:-1]])
    np.testing.assert_allclose(truth["preferences"].sum(axis=1), 1.0)


def test_simulator_rejects_bad_arguments():
    with pytest.raises(ValueError, match="multiple of n_categories"):
        data.simulate_sessions(n_items=10, n_categories=3)
    with pytest.raises(ValueError, match="length"):
        data.simulate_sessions(length=(1, 5))


def test_leave_last_out_and_windows_by_hand():
    sessions = data.Sessions([np.array([3, 1, 4, 1, 5]), np.array([2, 7])], 7, "hand")
    history, targets = data.leave_last_out(sessions)
    np.testing.assert_array_equal(targets, [5, 7])
    np.testing.assert_array_equal(history[0], [3, 1, 4, 1])
    users, windows, y = data.sequence_windows(history, window=2)
    np.testing.assert_array_equal(users, [0, 0, 0])  # user 1's history is one item
    np.testing.assert_array_equal(windows, [[0, 3], [3, 1], [1, 4]])
    np.testing.assert_array_equal(y, [1, 4, 1])
    np.testing.assert_array_equal(data.last_window(history, 3), [[1, 4, 1], [0, 0, 2]])
    with pytest.raises(ValueError, match="< 2 items"):
        data.leave_last_out(data.Sessions([np.array([1])], 1, "short"))


def test_parse_movielens_orders_by_time():
    content = b"2\t10\t4\t300\n1\t5\t3\t200\n2\t11\t5\t100\n1\t6\t1\t100\n"
    sessions = data.parse_movielens(content, "u.data")
    assert sessions.n_users == 2 and sessions.n_items == 11
    np.testing.assert_array_equal(sessions.sequences[0], [6, 5])
    np.testing.assert_array_equal(sessions.sequences[1], [11, 10])


@pytest.mark.parametrize("line", [b"1\t2\t3\n", b"1\t2\tx\t4\n"])
def test_parse_movielens_malformed_line(line):
    with pytest.raises(data.DataError, match="u.data: line 2: expected 4"):
        data.parse_movielens(b"1\t2\t3\t4\n" + line, "u.data")
