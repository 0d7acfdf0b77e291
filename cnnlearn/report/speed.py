"""Tables of the 99.6 % CNN and the 99 % speedrun (速通) results (chapter 5).

Each builder takes a result file as :func:`cnnlearn.report.find_benchmark`
returns it (``best_cnn`` from ``benchmarks/best_cnn.py``, ``speedrun`` from
``benchmarks/speedrun.py``); the ``*_section`` functions also take ``None``, a
file not made yet, and then say so instead of printing a number that did not
run.
"""

from __future__ import annotations

from cnnlearn.report import provenance
from cnnlearn.report.tables import markdown_table

__all__ = [
    "BEST_CNN_GOALS",
    "SPEEDRUN_RULES",
    "best_cnn_section",
    "best_cnn_summary",
    "best_cnn_table",
    "choice_table",
    "goals_table",
    "speedrun_ablation_table",
    "speedrun_curves",
    "speedrun_section",
    "speedrun_summary",
    "speedrun_table",
]

# The rules and goals of chapter 5's two benchmarks, in one place: the scripts
# (benchmarks/speedrun.py, benchmarks/best_cnn.py) run by them, the chapter
# states them.
SPEEDRUN_RULES = {
    "target": 0.99,  # test accuracy the recipe's mean over the seeds must reach
    "val_target": 0.991,  # the chosen epochs must reach this on the held-out share
    "val_share": 0.1,  # of the training images, held out to choose the epochs
    "speedup_goal": 4.0,  # times faster than keras-io's mnist_convnet to target
    "seeds": 5,
}
BEST_CNN_GOALS = {"mean_accuracy": 0.9955, "best_accuracy": 0.996, "time_ratio": 0.6}

NOT_MEASURED = (
    "*{what}: not measured yet.* `benchmarks/{script}.py` writes "
    "`benchmarks/results/{script}.json` (`make benchmarks` runs it); this page "
    "shows it once it exists."
)


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.2%}"


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def goals_table(results: dict) -> list[dict]:
    """The goals a result file printed, each with its value, target and verdict."""
    return [
        {
            "goal": row["goal"],
            "value": "never reached" if row["value"] is None else f"{row['value']:.4g}",
            "target": row["target"],
            "verdict": "met" if row["met"] else "not met",
        }
        for row in results["goals"]
    ]


def _run_row(label: str, run: dict) -> dict:
    return {
        "run": label,
        "params": f"{run['params']:,}",
        "epochs": run["epochs"],
        "precision": run["plan"]["precision"],
        "batch": run["plan"]["batch_size"],
        "wall s": _seconds(run["wall_seconds"]),
        "final test accuracy": _percent(run["final_test_accuracy"]),
    }


def best_cnn_table(results: dict) -> list[dict]:
    """One row per run of ``best_cnn.json``: the strong CNN, then each seed of
    the candidate, with its wall time and final-epoch test accuracy."""
    strong = results["strong"]
    rows = [_run_row(f"{strong['model']} (today's recipe)", strong)]
    name = results["candidate"]["model"]
    rows += [
        _run_row(f"{name}, seed {run['seed']}", run)
        for run in results["candidate"]["runs"]
    ]
    return rows


def speedrun_table(results: dict) -> list[dict]:
    """The keras-io baseline (time to its first epoch at 99.0 %) and each seed
    of the recipe (its fixed epochs), from ``speedrun.json``."""
    base = results["baseline"]
    rows = [
        {
            **_run_row("keras-io mnist_convnet", base),
            "epochs": base["epochs_to_target"] or f"> {base['epochs']}",
            "wall s": _seconds(base["seconds_to_target"]),
        }
    ]
    rows += [
        _run_row(f"speedrun, seed {run['job']['seed']}", run)
        for run in results["recipe"]["runs"]
    ]
    return rows


def choice_table(results: dict) -> list[dict]:
    """Stage 1 of the speedrun: each (variant, epochs) run on the validation
    split (the test set unseen), its accuracy and seconds, and the one chosen."""
    chosen = results["choice"]["chosen"]
    return [
        {
            "configuration": row["variant"],
            "epochs": row["epochs"],
            "validation accuracy": _percent(row["val_accuracy"]),
            "wall s": _seconds(row["wall_seconds"]),
            "chosen": "yes"
            if (row["variant"], row["epochs"]) == (chosen["variant"], chosen["epochs"])
            else "",
        }
        for row in results["choice"]["candidates"]
    ]


def speedrun_ablation_table(results: dict) -> list[dict]:
    """What each ingredient buys: the chosen recipe with one ingredient changed
    at a time, with its wall time and accuracy and the change from the recipe."""
    ablation = results["ablation"]
    full = ablation["recipe (all)"]
    rows = []
    for label, run in ablation.items():
        points = 100 * (run["final_test_accuracy"] - full["final_test_accuracy"])
        rows.append(
            {
                "recipe": label,
                "wall s": _seconds(run["wall_seconds"]),
                "Δ s": f"{run['wall_seconds'] - full['wall_seconds']:+.1f}",
                "test accuracy": _percent(run["final_test_accuracy"]),
                "Δ points": f"{points:+.2f}",
            }
        )
    return rows


def speedrun_curves(results: dict) -> dict[str, tuple[list[float], list[float]]]:
    """Test accuracy against training seconds, one curve per run to plot:
    the baseline and each seed of the recipe (evaluation time excluded)."""
    runs = {"keras-io mnist_convnet": results["baseline"]}
    runs |= {f"speedrun, seed {r['job']['seed']}": r for r in results["recipe"]["runs"]}
    return {
        label: ([t for t, _ in run["curve"]], [a for _, a in run["curve"]])
        for label, run in runs.items()
    }


def best_cnn_section(results: dict | None) -> str:
    """Markdown for ``best_cnn.json``: the runs, then the goals; or a line
    saying it is not measured yet when ``results`` is ``None``."""
    if results is None:
        return NOT_MEASURED.format(what="The 99.6 % CNN", script="best_cnn")
    return (
        markdown_table(best_cnn_table(results))
        + "\n\n"
        + markdown_table(goals_table(results), source=results)
    )


def best_cnn_summary(results: dict | None) -> str:
    """One paragraph of ``best_cnn.json`` for chapter 4: the candidate's mean
    and best final test accuracy over its seeds and its wall time against the
    strong CNN's in the same run, with every goal met or not and what the
    reader should know of how it was measured (:func:`provenance.notes`); a
    line saying it is not measured yet when ``results`` is ``None``."""
    if results is None:
        return NOT_MEASURED.format(what="The 99.6 % CNN", script="best_cnn")
    runs, strong = results["candidate"]["runs"], results["strong"]
    finals = [r["final_test_accuracy"] for r in runs]
    seconds = sum(r["wall_seconds"] for r in runs) / len(runs)
    baseline = _seconds(strong["wall_seconds"])
    verdicts = "; ".join(
        f"{g['goal']} {g['target']}: {'met' if g['met'] else 'not met'}"
        for g in results["goals"]
    )
    said = " ".join(provenance.notes(results))
    return (
        f"Over {len(runs)} seeds `{results['candidate']['model']}` ended at a mean "
        f"test accuracy of {sum(finals) / len(finals):.2%} (best {max(finals):.2%}) "
        f"in {_seconds(seconds)} s on average, against {baseline} "
        f"s and {_percent(strong['final_test_accuracy'])} for the strong CNN in the "
        f"same run. Goals: {verdicts}." + (f" *{said}*" if said else "")
    )


def speedrun_summary(results: dict) -> str:
    """One paragraph of ``speedrun.json``: the configuration chosen on the
    validation split, the mean test accuracy and the speed-up, each against
    its goal."""
    chosen = results["choice"]["chosen"]
    runs = results["recipe"]["runs"]
    mean = sum(r["final_test_accuracy"] for r in runs) / len(runs)
    seconds = sum(r["wall_seconds"] for r in runs) / len(runs)
    accuracy_goal, speed_goal = results["goals"]
    speedup = speed_goal["value"]
    base = results["baseline"]["seconds_to_target"]
    faster = (
        "keras-io's recipe never reached the target"
        if speedup is None
        else f"{speedup:.1f}× faster than keras-io's {_seconds(base)} s to the target"
    )
    verdict = {True: "met", False: "not met"}
    return (
        f"Chosen on the validation split: **{chosen['variant']}**, "
        f"{chosen['epochs']} epoch{'s' if chosen['epochs'] > 1 else ''}. Over "
        f"{len(runs)} seeds it reached a mean test accuracy of {mean:.2%} "
        f"(goal {accuracy_goal['target']}: {verdict[accuracy_goal['met']]}) in "
        f"{_seconds(seconds)} s on average, {faster} (goal "
        f"{speed_goal['target']}×: {verdict[speed_goal['met']]})."
    )


def speedrun_section(results: dict | None) -> str:
    """Markdown for ``speedrun.json``: a summary, the choice of configuration
    and epochs, the runs, the goals and the ablation; or a line saying it is
    not measured yet."""
    if results is None:
        return NOT_MEASURED.format(what="The speedrun", script="speedrun")
    parts = [choice_table(results), speedrun_table(results)]
    parts += [goals_table(results)]
    if results.get("ablation"):
        parts.append(speedrun_ablation_table(results))
    tables = [markdown_table(rows) for rows in parts[:-1]]
    last = markdown_table(parts[-1], source=results)
    return "\n\n".join([speedrun_summary(results), *tables, last])
