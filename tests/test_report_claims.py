from __future__ import annotations

import json

import pytest
from test_book_numbers import MEASURED

from cnnlearn.report import claims

LEDGER = claims.load_claims()


@pytest.mark.parametrize("claim", LEDGER, ids=lambda c: c.get("id", "?"))
def test_every_verdict_is_backed_by_its_evidence(claim):
    assert claims.check(claim) == []


def test_ledger_ids_are_unique_and_reasons_type_no_measurements():
    ids = [c["id"] for c in LEDGER]
    assert len(ids) == len(set(ids))
    typed = [c["id"] for c in LEDGER if MEASURED.search(c.get("why", ""))]
    assert not typed, f"a why states a measured number: {typed}"


def test_ledger_table_shows_the_evidence_values():
    rows = claims.ledger_table()
    assert len(rows) == len(LEDGER)
    assert not [r for r in rows if "|" in r["evidence"]]  # no table inside the table
    accuracy = next(r for r, c in zip(rows, LEDGER) if c["id"] == "accuracy-98")
    assert accuracy["verdict"] == "holds"
    assert (
        "train_mnist, test accuracy: 0.98" in accuracy["evidence"]
        and ">= 0.975" in accuracy["evidence"]
    )


@pytest.fixture
def results(tmp_path):
    (tmp_path / "t.json").write_text(json.dumps({"a": {"x": 0.9, "y": 0.8}}))
    return tmp_path


def entry(verdict, *evidence, **extra):
    base = {"id": "t", "section": "s", "claim": "c", "chapter": "04"}
    return {**base, "verdict": verdict, "evidence": list(evidence), **extra}


def test_check_catches_a_verdict_its_evidence_contradicts(results, tmp_path):
    high = {"result": "t", "key": ["a", "x"], "expect": ">= 0.85"}
    low = {"result": "t", "key": ["a", "y"], "expect": ">= 0.85"}
    vs = {"result": "t", "key": ["a", "x"], "expect": '> ["a", "y"]'}
    assert claims.check(entry("holds", high, vs), tmp_path, results) == []
    assert claims.check(entry("holds", high, low), tmp_path, results)
    assert claims.check(entry("refuted", low), tmp_path, results) == []
    assert claims.check(entry("refuted", high), tmp_path, results)
    assert claims.check(entry("holds"), tmp_path, results) == ["holds: no evidence"]
    assert claims.check(entry("not testable"), tmp_path, results)
    assert not claims.check(entry("not testable", why="no GPU"), tmp_path, results)
    missing = {"result": "t", "key": ["a", "z"], "expect": "> 1"}
    assert "evidence" in claims.check(entry("holds", missing), tmp_path, results)[0]
    assert claims.check(entry("maybe", high), tmp_path, results)


def test_cell_evidence_must_be_compared_and_show_its_text(tmp_path):
    cell = {
        "cell_type": "code",
        "id": "abc",
        "metadata": {"tags": []},
        "outputs": [{"output_type": "stream", "name": "stdout", "text": "flips: -4%"}],
    }
    glue = {
        "output_type": "display_data",
        "metadata": {"scrapbook": {"name": "ch4_acc"}},
        "data": {claims.GLUE_MIME: "0.9803"},
    }
    nb = {"cells": [cell, {"cell_type": "code", "id": "g", "outputs": [glue]}]}
    (tmp_path / "04_x.ipynb").write_text(json.dumps(nb))
    shows = {"cell": "abc", "chapter": "04", "shows": "flips"}
    assert "not compared" in claims.check(entry("corrected", shows), tmp_path)[0]
    cell["metadata"]["tags"] = ["nbval-check-output"]
    (tmp_path / "04_x.ipynb").write_text(json.dumps(nb))
    assert claims.check(entry("corrected", shows), tmp_path) == []
    assert claims.check(entry("refuted", shows), tmp_path) == []  # shown otherwise
    wrong = {**shows, "shows": "rotations"}
    assert "does not show" in claims.check(entry("corrected", wrong), tmp_path)[0]
    glued = {"glue": "ch4_acc", "chapter": "04", "expect": ">= 0.98"}
    assert claims.evaluate(glued, tmp_path) == (0.9803, True)
