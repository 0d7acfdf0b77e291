"""Chapter 9 and 10 tables (cnnlearn.report) and figures (cnnlearn.plots)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cnnlearn import plots, report

RESULTS = {
    "fashion": {
        "runs": {
            "seed_cnn": {"params": 54410, "epochs": 3, "test_accuracy": 0.90},
            "bn_cnn": {"params": 400000, "epochs": 10, "test_accuracy": 0.925},
        }
    },
    "faces": {
        "params": 200000,
        "epochs": 60,
        "runs": [{}, {}],
        "mean_test_accuracy": 0.96,
        "min_test_accuracy": 0.94,
        "mean_verification_auc": 0.99,
    },
    "text": {
        "distinct": 5171,
        "params": 600000,
        "epochs": 5,
        "runs": [{}],
        "mean_f1": 0.93,
        "min_f1": 0.93,
    },
    "recommend": {
        "simulator": {
            "source": "simulator(seed=0)",
            "users": 10,
            "items": 20,
            "params": 100,
            "epochs": 1,
            "methods": {"caser": {"hr@10": 0.5}, "popularity": {"hr@10": 0.2}},
            "caser_over_popularity_hr": 2.5,
        },
        "movielens_100k": {"unavailable": "offline"},
        "wall_seconds": 1.0,
    },
}


def test_applications_table_marks_targets():
    rows = report.applications_table(RESULTS)
    met = {(r["application"], r["model"].split(",")[0]): r["met"] for r in rows}
    assert met[("products", "BN CNN")] == "yes"
    assert met[("products", "the article's CNN")] == "—"
    assert met[("face identification", "face CNN")] == "yes"  # the mean decides
    assert met[("SMS spam", "Kim CNN")] == "yes"
    assert met[("next item", "Caser")] == "yes"
    assert len(rows) == 6  # MovieLens unavailable: no row
    assert "96.00% (94.00%)" in [r["measured"] for r in rows]
    assert report.applications_table({}) == []


def test_chapter_summary_one_row_per_topic(tmp_path):
    (tmp_path / "applications.json").write_text(json.dumps(RESULTS))
    (tmp_path / "tuning.json").write_text(json.dumps({"unexpected": 1}))
    rows = report.chapter_summary(tmp_path)
    assert [r["topic"] for r in rows] == list(report.SUMMARY_TOPICS)
    by_topic = {r["topic"]: r["measured"] for r in rows}
    assert by_topic["applications"].startswith("Fashion-MNIST 92.50 %")
    assert "2.5× popularity" in by_topic["applications"]
    assert by_topic["tuning"] == "measured: see chapter 7"
    assert by_topic["train_mnist"].startswith("not measured yet")


def test_chapter_summary_reads_the_repository_results():
    rows = report.chapter_summary()
    by_topic = {r["topic"]: r["measured"] for r in rows}
    assert "seed-b32" in by_topic["train_mnist"]


@pytest.mark.parametrize("predicted", [None, np.array([0, 1, 1])])
def test_plot_face_predictions(predicted):
    images = np.zeros((3, 112, 92), np.uint8)
    fig = plots.plot_face_predictions(images, np.array([0, 1, 2]), predicted)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles[0] == ("s1" if predicted is None else "s1 → s1")
    if predicted is not None:
        assert titles[2] == "s3 → s2"


def test_plot_roc_ranking_recommendation():
    fig = plots.plot_roc({"cnn": (np.array([0, 0.1, 1]), np.array([0, 0.9, 1]), 0.95)})
    assert "AUC 0.950" in fig.axes[0].get_legend().get_texts()[0].get_text()
    fig = plots.plot_ranking({"a": {"hr@10": 0.5, "ndcg@10": 0.3}})
    assert len(fig.axes[0].patches) == 2
    category = np.arange(11) % 3
    fig = plots.plot_recommendation(
        np.array([1, 2, 3]), [(4, 0.5), (5, 0.2)], category, 5
    )
    assert fig.axes[1].patches[1].get_linewidth() == 2.5
