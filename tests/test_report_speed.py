from __future__ import annotations

import pytest

from cnnlearn.report import speed

PLAN = {"precision": "mixed_bfloat16", "batch_size": 256}


def run(seed: int, wall: float, accuracies: list[float], **extra) -> dict:
    """A run as the benchmarks write it, with a per-epoch curve."""
    times = [wall * (i + 1) / len(accuracies) for i in range(len(accuracies))]
    return {
        "model": "wide_bn",
        "seed": seed,
        "job": {"seed": seed},
        "params": 34_402,
        "epochs": len(accuracies),
        "plan": PLAN,
        "wall_seconds": wall,
        "test_accuracy": accuracies,
        "final_test_accuracy": accuracies[-1],
        "curve": [[t, a] for t, a in zip(times, accuracies, strict=True)],
        **extra,
    }


def goal(label: str, value, met: bool) -> dict:
    return {"goal": label, "value": value, "target": ">= 4", "met": met}


@pytest.fixture
def best():
    return {
        "strong": {**run(0, 1000.0, [0.99, 0.9948]), "model": "strong"},
        "candidate": {
            "model": "wide_bn",
            "runs": [run(s, 500.0 + s, [0.995, 0.996 + s / 1e4]) for s in range(3)],
        },
        "goals": [goal("best", 0.9962, True), goal("time", 0.61, False)],
        "provenance": {"noisy": True, "machine": {"cpu_count": 2}},
    }


@pytest.fixture
def speedrun():
    base = run(0, 0.0, [0.975, 0.985, 0.9905], epochs_to_target=3)
    base |= {"seconds_to_target": 90.0, "wall_seconds": 90.0}
    ablation = {
        "recipe (all)": run(0, 20.0, [0.985, 0.991]),
        "no batch norm": run(0, 18.5, [0.97, 0.9855]),
    }
    return {
        "choice": {
            "candidates": [
                {
                    "variant": "bn",
                    "epochs": 1,
                    "val_accuracy": 0.986,
                    "wall_seconds": 9.0,
                },
                {
                    "variant": "bn",
                    "epochs": 2,
                    "val_accuracy": 0.9912,
                    "wall_seconds": 18.0,
                },
                {
                    "variant": "no bn",
                    "epochs": 1,
                    "val_accuracy": 0.9911,
                    "wall_seconds": 8.0,
                },
            ],
            "chosen": {"variant": "no bn", "epochs": 1},
        },
        "baseline": base,
        "recipe": {"runs": [run(s, 20.0, [0.985, 0.991]) for s in range(2)]},
        "ablation": ablation,
        "goals": [goal("speed-up", 4.5, True), goal("never", None, False)],
    }


def test_best_cnn_table_lists_strong_then_each_seed(best):
    rows = speed.best_cnn_table(best)
    assert [r["run"] for r in rows] == [
        "strong (today's recipe)",
        "wide_bn, seed 0",
        "wide_bn, seed 1",
        "wide_bn, seed 2",
    ]
    assert rows[0]["wall s"] == "1000.0" and rows[0]["final test accuracy"] == "99.48%"
    assert rows[3]["final test accuracy"] == "99.62%"


def test_goals_table_says_met_or_not(best, speedrun):
    rows = speed.goals_table(best)
    assert [(r["value"], r["verdict"]) for r in rows] == [
        ("0.9962", "met"),
        ("0.61", "not met"),
    ]
    assert speed.goals_table(speedrun)[1]["value"] == "never reached"


def test_speedrun_table_times_the_baseline_to_its_target(speedrun):
    rows = speed.speedrun_table(speedrun)
    assert rows[0]["run"] == "keras-io mnist_convnet"
    assert (rows[0]["epochs"], rows[0]["wall s"]) == (3, "90.0")
    assert [r["run"] for r in rows[1:]] == ["speedrun, seed 0", "speedrun, seed 1"]
    never = {**speedrun["baseline"], "epochs_to_target": None}
    never["seconds_to_target"] = None
    row = speed.speedrun_table({**speedrun, "baseline": never})[0]
    assert (row["epochs"], row["wall s"]) == ("> 3", "—")


def test_choice_marks_the_chosen_configuration_and_epochs(speedrun):
    rows = speed.choice_table(speedrun)
    chosen = [(r["configuration"], r["epochs"], r["chosen"]) for r in rows]
    assert chosen == [("bn", 1, ""), ("bn", 2, ""), ("no bn", 1, "yes")]
    assert rows[1]["validation accuracy"] == "99.12%" and rows[2]["wall s"] == "8.0"


def test_ablation_says_what_each_ingredient_buys(speedrun):
    rows = speed.speedrun_ablation_table(speedrun)
    assert rows[0]["Δ s"] == "+0.0" and rows[0]["Δ points"] == "+0.00"
    assert (rows[1]["Δ s"], rows[1]["Δ points"]) == ("-1.5", "-0.55")


def test_curves_are_seconds_and_accuracies(speedrun):
    curves = speed.speedrun_curves(speedrun)
    assert list(curves) == [
        "keras-io mnist_convnet",
        "speedrun, seed 0",
        "speedrun, seed 1",
    ]
    seconds, accuracy = curves["speedrun, seed 1"]
    assert seconds == [10.0, 20.0] and accuracy == [0.985, 0.991]


def test_sections_without_results_say_not_measured():
    for section, script in [
        (speed.best_cnn_section, "best_cnn"),
        (speed.speedrun_section, "speedrun"),
    ]:
        text = section(None)
        assert "not measured yet" in text and f"benchmarks/{script}.py" in text
        assert not any(ch.isdigit() for ch in text.replace("99.6", ""))


def test_sections_with_results_show_tables_and_notes(best, speedrun):
    text = speed.best_cnn_section(best)
    assert "| wide_bn, seed 2 |" in text and "busy machine" in text
    text = speed.speedrun_section(speedrun)
    assert "| no batch norm |" in text and "| keras-io mnist_convnet |" in text
    assert text.count("\n|---") == 4  # choice, runs, goals, ablation
    no_ablation = speed.speedrun_section({**speedrun, "ablation": {}})
    assert no_ablation.count("\n|---") == 3


def test_best_cnn_summary_states_accuracies_times_and_goals(best):
    text = speed.best_cnn_summary(best)
    assert "Over 3 seeds `wide_bn`" in text
    assert "mean test accuracy of 99.61% (best 99.62%)" in text
    assert "in 501.0 s on average, against 1000.0 s and 99.48%" in text
    assert "best >= 4: met; time >= 4: not met." in text
    assert "Measured on a busy machine" in text  # the file's provenance notes
    assert "not measured yet" in speed.best_cnn_summary(None)


def test_summary_states_the_choice_and_each_goal(speedrun):
    results = {
        **speedrun,
        "goals": [goal("accuracy", 0.991, True), goal("speed-up", 4.5, True)],
    }
    text = speed.speedrun_summary(results)
    assert "**no bn**, 1 epoch." in text
    assert "mean test accuracy of 99.10%" in text and "in 20.0 s" in text
    assert "4.5× faster than keras-io's 90.0 s" in text
    missed = {**results, "goals": [goal("a", 0.98, False), goal("s", None, False)]}
    text = speed.speedrun_summary(missed)
    assert "never reached the target" in text and text.count("not met") == 2
