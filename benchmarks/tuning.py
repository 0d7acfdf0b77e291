"""Benchmark: Hyperband, random search and Bayesian optimization at an equal budget.

KerasTuner searches the space of ``cnnlearn.tune.search_space`` on 10 % of the
MNIST training set (a fifth of that held out for ``val_accuracy``), with a
parameter budget equal to the seed CNN's 54,410: over-budget models are
rejected before they train. Hyperband runs first (``max_epochs`` 9, factor 3);
random search and Bayesian optimization then get the epochs Hyperband spent, in
trials of 3 epochs: the same total number of training epochs.

Then the seed CNN and the best configuration found (with ``--retrain all``,
each algorithm's best) are trained with the same loop
(``tune.fit_and_test``) and the same budget, ``--final-epochs`` (3) epochs at
batch 128 on all 60,000 training images (no hold-out), and tested once on the
10,000 test images. ``train_mnist.json``'s ``seed-b128`` run used the same batch;
its test accuracy after as many epochs is quoted beside ours. Costs are CPU-minutes
(the process's CPU time, both cores) and wall-clock minutes. Writes
``benchmarks/results/tuning.json``; chapter 7 shows it.

    nice python benchmarks/tuning.py     # ~60 min on 2 cores shared with 5 jobs
    python benchmarks/tuning.py --data-fraction 0.02 --max-epochs 3 \
        --trial-epochs 1 --final-epochs 1 --retrain best   # a quick look

Not a test: nothing here asserts a timing. The book reads the numbers.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cnnlearn._tf  # noqa: F401  (quiet TensorFlow start-up; before Keras)

# isort: split
import keras

from cnnlearn import models, report, tune
from cnnlearn._io import write_json
from cnnlearn.config import RunConfig, load_data
from cnnlearn.report import provenance

RESULTS = Path(__file__).parent / "results" / "tuning.json"
SETTINGS = ("data_fraction", "validation_split", "param_budget", "seed")
SETTINGS += ("hyperband_max_epochs", "trial_epochs", "batch_size")
REPO = Path(__file__).resolve().parent.parent


def timed(fn, *args, **kwargs):
    """``fn``'s result, wall seconds and this process's CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-fraction", type=float, default=0.1)
    parser.add_argument("--validation-split", type=float, default=0.2)
    parser.add_argument("--max-epochs", type=int, default=9, help="Hyperband's")
    parser.add_argument("--trial-epochs", type=int, default=3, help="random/bayes")
    parser.add_argument("--final-epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--retrain", choices=["best", "all"], default="best")
    parser.add_argument("--data-dir")
    parser.add_argument(
        "--directory", type=Path, default=REPO / "runs" / "benchmarks" / "tuning"
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--searches-from",
        type=Path,
        help="retrain only: take the searches from this results file",
    )
    args = parser.parse_args()
    config = {
        k: str(v) if isinstance(v, Path) else v
        for k, v in vars(args).items()
        if k != "output"
    }
    config |= {
        "algorithms": list(tune.ALGORITHMS),
        "budget_policy": "reject",
        "training": "Model.fit(numpy), float32, Adam; batch --batch-size",
    }
    record = provenance.start(config)

    seed_params = models.get_model("seed").count_params()
    config["param_budget"] = int(seed_params)
    result: dict = {
        "description": "KerasTuner at an equal epoch budget; best models vs seed CNN",
        "dataset": "mnist",
        "data_fraction": args.data_fraction,
        "validation_split": args.validation_split,
        "param_budget": seed_params,
        "budget_policy": "reject",
        "hyperband_max_epochs": args.max_epochs,
        "trial_epochs": args.trial_epochs,
        "final_epochs": args.final_epochs,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "searches": {},
        "final": {},
        "provenance": record,
    }

    def save() -> None:
        result["machine"] = provenance.machine()
        args.output.parent.mkdir(parents=True, exist_ok=True)
        provenance.finish(record)
        write_json(args.output, result)  # after every stage: progress is kept

    search_config = RunConfig(
        data_dir=args.data_dir,
        data_fraction=args.data_fraction,
        seed=args.seed,
        validation_split=args.validation_split,
        batch_size=args.batch_size,
    )
    common = dict(
        directory=args.directory, param_budget=seed_params, retrain_best=False
    )
    # A search that a previous run finished is reloaded, not retrained (the tuner
    # resumes): keep the cost that run measured instead of the reload's.
    previous = json.loads(args.output.read_text()) if args.output.exists() else {}
    same = all(previous.get(k) == result[k] for k in SETTINGS)
    budget = None
    if args.searches_from:
        source = json.loads(args.searches_from.read_text())
        earlier = source.get("provenance") or {}
        result["searches"] = source["searches"]
        for search in result["searches"].values():  # that run's, not this one's
            search.setdefault("config", earlier.get("config"))
            search.setdefault("measured_at", None)  # unknown: an older file
        record["notes"] = [
            f"The searches come from {args.searches_from.name} "
            f"({earlier.get('started_at') or 'made before provenance records'}), "
            "each with that run's config; the final trainings from this run."
        ]
    for algorithm in tune.ALGORITHMS if not args.searches_from else ():
        kwargs = (
            {"max_epochs": args.max_epochs}
            if algorithm == "hyperband"
            else {"max_epochs": args.trial_epochs, "epoch_budget": budget}
        )
        # Only a tuner directory left by an earlier run can make this a reload.
        resumed = (Path(args.directory) / algorithm).exists()
        found, wall, cpu = timed(
            tune.run_search, search_config, algorithm, **common, **kwargs
        )
        if algorithm == "hyperband":
            budget = found.epochs_spent
        trials = found.trials
        result["searches"][algorithm] = {
            "trials": trials,
            "n_trials": len(trials),
            "n_rejected": sum(t["epochs"] == 0 for t in trials),
            "epochs_spent": found.epochs_spent,
            "trial_seconds": sum(t["seconds"] or 0.0 for t in trials),
            "wall_minutes": wall / 60,
            "cpu_minutes": cpu / 60,
            "best": found.report["best"],
            "n_search_train": found.report["n_search_train"],
            "n_search_val": found.report["n_search_val"],
            "measured_at": provenance.measured_at(),
        }
        done = previous.get("searches", {}).get(algorithm) if same else None
        spent = (len(trials), found.epochs_spent)
        if resumed and done and (done["n_trials"], done["epochs_spent"]) == spent:
            for key in ("wall_minutes", "cpu_minutes"):
                result["searches"][algorithm][key] = done[key]
            result["searches"][algorithm]["measured_at"] = done.get("measured_at")
            cpu = done["cpu_minutes"] * 60
            record.setdefault("notes", []).append(
                f"The {algorithm} search was reloaded from the tuner's directory: "
                "its cost is the earlier run's that trained it (same settings)."
            )
        elif resumed:
            record.setdefault("notes", []).append(
                f"The {algorithm} search resumed in the tuner's directory: its cost "
                "counts only the trials this run trained; delete the directory "
                "to measure it whole."
            )
        print(
            f"{algorithm}: {len(trials)} trials, {found.epochs_spent} epochs, "
            f"best val {found.report['best']['val_accuracy']:.4f}, "
            f"{cpu / 60:.1f} CPU-min",
            flush=True,
        )
        save()

    full = load_data(RunConfig(data_dir=args.data_dir, seed=args.seed))
    arrays = (full.x_train, full.y_train, full.x_test, full.y_test)
    final = dict(epochs=args.final_epochs, batch_size=args.batch_size, seed=args.seed)
    keras.utils.set_random_seed(args.seed)
    seed_cnn = models.get_model("seed", seed=args.seed)
    seed_cnn.compile(
        optimizer=keras.optimizers.Adam(models.get_spec("seed").learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    searches = result["searches"]
    ranked = sorted(searches, key=lambda a: -searches[a]["best"]["val_accuracy"])
    result["best_algorithm"] = ranked[0]
    runs = {"seed CNN": (None, seed_cnn)}
    for algorithm in ranked[: 1 if args.retrain == "best" else None]:
        runs[f"tuned ({algorithm})"] = (
            searches[algorithm]["best"]["hyperparameters"],
            None,
        )
    for name, (values, model) in runs.items():
        if model is None:
            (model, run), wall, cpu = timed(tune.retrain, values, *arrays, **final)
        else:
            run, wall, cpu = timed(tune.fit_and_test, model, *arrays, **final)
        run.update(hyperparameters=values, cpu_minutes=cpu / 60, wall_minutes=wall / 60)
        run["measured_at"] = provenance.measured_at()
        result["final"][name] = run
        print(f"{name}: {run['params']:,} params, test {run['test_accuracy']:.4f}")
        save()

    baseline = report.load_benchmark("train_mnist")["runs"].get("seed-b128")
    if baseline and len(baseline["test_accuracy"]) >= args.final_epochs:
        # The same model, batch and epoch count in chapter 4's benchmark.
        result["train_mnist_seed_b128"] = {
            "params": baseline["params"],
            "batch_size": baseline["batch_size"],
            "epochs": args.final_epochs,
            "test_accuracy": baseline["test_accuracy"][args.final_epochs - 1],
            "source": "benchmarks/results/train_mnist.json",
            "measured_at": baseline.get("measured_at"),  # that file's run
            "config": baseline.get("config"),
        }
    save()


if __name__ == "__main__":
    main()
