"""Running a search, resuming it, and retraining the winner (chapter 7).

A search leaves two kinds of files in its directory. KerasTuner's own state
(``<algorithm>/``: ``oracle.json`` and a ``trial_<id>/trial.json`` per trial)
is written by KerasTuner trial by trial and is not staged: it is the search's
resumable journal, which a tuner made with ``overwrite=False`` reloads
(KerasTuner 1.4's ``Oracle.reload`` reads every ``trial.json`` and queues the
trials that were still running for a retry), so a killed search must find it
as it was. The run's
summary (``trials.csv``, ``best_hparams.json``, ``best_model.keras`` and
``search.json``, written last) is published as one run by
:func:`publish_search`, like ``cnnlearn train``'s run directory.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import cnnlearn._tf  # noqa: F401  (quiet TensorFlow start-up; before Keras)

# isort: split
import keras
import keras_tuner as kt
import numpy as np

from cnnlearn import compute, train
from cnnlearn._io import (
    atomic_path,
    check_keras_file,
    check_output_dir,
    publish_dir,
    staging_dir,
    write_json,
)
from cnnlearn.config import RunConfig, load_data
from cnnlearn.progress import say
from cnnlearn.tune.space import ALGORITHMS, CNNHyperModel, build_model, count_params

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "SEARCH_FILES",
    "SearchResult",
    "fit_and_test",
    "make_tuner",
    "publish_search",
    "retrain",
    "run_search",
    "summarize_trials",
    "trials_table",
]

#: The batch of the trials and the retraining when ``config.batch_size`` is None.
DEFAULT_BATCH_SIZE = 128
#: A search run's summary, published together; ``search.json`` (last) marks it
#: complete.
SEARCH_FILES = ("trials.csv", "best_hparams.json", "best_model.keras", "search.json")


def make_tuner(
    algorithm: str,
    hypermodel: CNNHyperModel,
    directory: str | Path,
    *,
    max_trials: int = 10,
    max_epochs: int = 9,
    executions_per_trial: int = 1,
    seed: int = 0,
    overwrite: bool = False,
) -> kt.Tuner:
    """A KerasTuner tuner that maximizes ``val_accuracy`` (chapter 7).

    ``algorithm`` is ``"hyperband"`` (``max_epochs`` is the most any model
    trains, factor 3, one iteration), ``"random"`` or ``"bayesian"`` (at most
    ``max_trials`` trials; the Bayesian tuner samples 5 at random, then lets its
    Gaussian process choose, where KerasTuner's default would be 3 random
    trials per hyperparameter). The state lives in ``directory/<algorithm>``;
    with ``overwrite=False`` an existing state there is reloaded.

    KerasTuner replaces ``seed=0`` by ``random.randint(1, 10000)``: the search is
    reproducible only if Python's ``random`` is seeded first, as
    :func:`run_search` does with ``keras.utils.set_random_seed(seed)``.
    """
    common = {
        "objective": kt.Objective("val_accuracy", "max"),
        "seed": seed,
        "executions_per_trial": executions_per_trial,
        "directory": str(directory),
        "project_name": algorithm,
        "overwrite": overwrite,
        "max_consecutive_failed_trials": 10,
    }
    if algorithm == "hyperband":
        return kt.Hyperband(hypermodel, max_epochs=max_epochs, factor=3, **common)
    if algorithm == "random":
        return kt.RandomSearch(hypermodel, max_trials=max_trials, **common)
    if algorithm == "bayesian":
        return kt.BayesianOptimization(
            hypermodel, max_trials=max_trials, num_initial_points=5, **common
        )
    raise ValueError(f"unknown algorithm {algorithm!r}: expected one of {ALGORITHMS}")


def trials_table(tuner: kt.Tuner) -> list[dict]:
    """One row per trial, in the order they were created: a tidy table.

    Columns: ``trial``, ``status``, ``continues`` (the Hyperband trial whose
    weights it starts from), the hyperparameters (empty when inactive),
    ``params``, ``epochs`` (trained in this trial), ``val_accuracy`` (the best
    epoch's, before any penalty), ``score``, ``seconds`` and ``cpu_seconds``
    (training and validation only, not the tuner's own work).
    """
    names = [hp.name for hp in tuner.oracle.get_space().space]
    rows = []
    for trial_id in sorted(tuner.oracle.trials, key=int):
        trial = tuner.oracle.trials[trial_id]
        values = trial.hyperparameters.values

        def metric(name, trial=trial):
            found = trial.metrics.exists(name)
            return float(trial.metrics.get_last_value(name)) if found else None

        raw = metric("raw_val_accuracy")
        rows.append(
            {
                "trial": int(trial_id),
                "status": trial.status,
                "continues": values.get("tuner/trial_id", ""),
                **{n: values.get(n, "") for n in names if not n.startswith("tuner/")},
                "params": int(metric("params") or count_params(values)),
                "epochs": int(metric("epochs") or 0),
                "val_accuracy": raw if raw is not None else metric("val_accuracy"),
                "score": None if trial.score is None else float(trial.score),
                "seconds": metric("seconds"),
                "cpu_seconds": metric("cpu_seconds"),
            }
        )
    return rows


def summarize_trials(trials: list[dict]) -> dict:
    """One row that sums up a search's trial table (chapter 7).

    The number of trials, of those rejected for the parameter budget (trained
    no epoch), the epochs spent, and the best trial's validation accuracy and
    size (best by score, which differs under the ``"penalize"`` policy).
    """
    trained = [t for t in trials if t["epochs"]]
    best = max(trained, key=lambda t: t.get("score") or t["val_accuracy"], default=None)
    return {
        "trials": len(trials),
        "rejected": len(trials) - len(trained),
        "epochs": sum(t["epochs"] for t in trials),
        "best val accuracy": "—" if best is None else f"{best['val_accuracy']:.2%}",
        "best params": "—" if best is None else f"{best['params']:,}",
    }


def _write_csv(path: str | Path, rows: list[dict]) -> None:
    """Write dict rows as CSV (the union of their keys as columns), atomically."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


@dataclass
class SearchResult:
    """What :func:`run_search` returns (and writes into ``directory``)."""

    algorithm: str
    trials: list[dict]
    best_hparams: dict
    report: dict
    model: keras.Model | None

    @property
    def epochs_spent(self) -> int:
        return sum(row["epochs"] for row in self.trials)


def fit_and_test(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    epochs: int,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = 0,
    device: str = "auto",
    verbose: int = 0,
) -> dict:
    """Train a compiled ``model`` on all of ``(x, y)``, then test it once.

    No validation hold-out: the search is over. The same loop retrains the
    tuned model and the seed CNN in the benchmark, so they are compared like
    with like. Returns the parameter count, seconds per epoch and accuracies.
    """
    keras.utils.set_random_seed(seed)
    with compute.device_scope(compute.resolve_device(device)):
        history = model.fit(
            x,
            y,
            epochs=epochs,
            batch_size=batch_size,
            callbacks=[train.EpochTimer()],
            verbose=verbose,
        ).history
    evaluation = train.evaluate(model, x_test, y_test)
    seconds = [float(s) for s in history["seconds"]]
    return {
        "params": int(model.count_params()),
        "epochs": epochs,
        "batch_size": batch_size,
        "n_train": len(x),
        "train_seconds": sum(seconds),
        "seconds_per_epoch": seconds,
        "train_accuracy": float(history["accuracy"][-1]),
        "test_accuracy": evaluation.accuracy,
        "test_loss": evaluation.loss,
    }


def retrain(
    values: dict,
    x: np.ndarray,
    y: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    seed: int = 0,
    **kwargs,
) -> tuple[keras.Model, dict]:
    """Build the configuration ``values`` afresh (seeded), train it on ``(x, y)``
    and test it once (:func:`fit_and_test`). Returns the model and the report."""
    keras.utils.set_random_seed(seed)
    model = build_model(values, x.shape[1:])
    return model, fit_and_test(model, x, y, x_test, y_test, seed=seed, **kwargs)


def _search(
    tuner: kt.Tuner,
    algorithm: str,
    max_epochs: int,
    epoch_budget: int | None,
    fit_kwargs: dict,
) -> None:
    """Run the search; random and Bayesian search until ``epoch_budget`` is spent."""
    with warnings.catch_warnings():
        # Hyperband resumes a trial from weights saved without optimizer state.
        warnings.filterwarnings("ignore", "Skipping variable loading for optimizer")
        if algorithm == "hyperband" or epoch_budget is None:
            tuner.search(**fit_kwargs, epochs=max_epochs, verbose=0)
            return
        for _ in range(20):  # each round adds trials; rejected ones cost no epochs
            spent = sum(row["epochs"] for row in trials_table(tuner))
            if spent + max_epochs > epoch_budget:
                return
            more = (epoch_budget - spent) // max_epochs  # never past the budget
            tuner.oracle.max_trials = len(tuner.oracle.trials) + more
            tuner.search(**fit_kwargs, epochs=max_epochs, verbose=0)


def _check_arguments(algorithm: str, max_trials: int, max_epochs: int) -> None:
    if algorithm not in ALGORITHMS:
        raise ValueError(
            f"unknown algorithm {algorithm!r}: expected one of {ALGORITHMS}"
        )
    for name, value in (("max_trials", max_trials), ("max_epochs", max_epochs)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")


def _collect_trials(
    tuner: kt.Tuner, algorithm: str, param_budget: int | None
) -> tuple[list[dict], dict, dict]:
    """The trial table, the best trial's hyperparameters and its record (for
    ``trials.csv`` and ``best_hparams.json``)."""
    trials = trials_table(tuner)
    completed = [t for t in trials if t["status"] == "COMPLETED" and t["epochs"]]
    if not completed:
        raise ValueError(
            f"no trial trained within the parameter budget {param_budget}: "
            "raise the budget or the number of trials"
        )
    best_trial = tuner.oracle.get_best_trials(1)[0]
    best = {
        k: v
        for k, v in best_trial.hyperparameters.values.items()
        if not k.startswith("tuner/")
    }
    row = next(t for t in trials if t["trial"] == int(best_trial.trial_id))
    info = {
        "algorithm": algorithm,
        "trial": row["trial"],
        "hyperparameters": best,
        "params": row["params"],
        "val_accuracy": row["val_accuracy"],
    }
    return trials, best, info


def _search_split(config: RunConfig):
    """The search's training images and its held-out validation set."""
    data = load_data(config)
    (x_fit, y_fit), val = train.split_validation(
        data.x_train, data.y_train, config.validation_split, config.seed
    )
    if val is None:
        raise ValueError("the search needs a validation_split > 0 to rank trials")
    return (x_fit, y_fit), val


def _retrain_or_reuse(
    out: Path, best: dict, epochs: int, batch_size: int, seed: int, verbose: int
):
    """The model a previous run retrained, if it matches; else ``(None, None)``.

    Read from the run published in ``out``: its ``search.json`` describes its
    ``best_model.keras`` (:func:`publish_search` publishes them together)."""
    path, previous = out / "best_model.keras", out / "search.json"
    if not (path.is_file() and previous.is_file()):
        return None, None
    report = json.loads(previous.read_text())
    final = report.get("final") or {}
    same = (
        final.get("hyperparameters") == best
        and final.get("epochs") == epochs
        and final.get("batch_size") == batch_size
        and report.get("seed") == seed
    )
    if not same:
        return None, None
    say(f"best configuration unchanged: reusing {path}", verbose)
    check_keras_file(path)
    return keras.models.load_model(path), final


def _retrain_best(
    config: RunConfig,
    out: Path,
    best: dict,
    *,
    epochs: int,
    batch_size: int,
    verbose: int,
) -> tuple[keras.Model, dict, Path | None]:
    """Retrain ``best`` on the whole training set and test it once, or reuse the
    model a previous run in ``out`` retrained the same way; the path of the
    file reused (``None`` when retrained) comes third."""
    model, final = _retrain_or_reuse(
        out, best, epochs, batch_size, config.seed, verbose
    )
    reused = out / "best_model.keras" if model is not None else None
    if model is None:
        say(f"retraining the best configuration ({epochs} epochs)", verbose)
        full = load_data(config.replace(data_fraction=1.0))
        model, final = retrain(
            best,
            full.x_train,
            full.y_train,
            full.x_test,
            full.y_test,
            epochs=epochs,
            batch_size=batch_size,
            seed=config.seed,
            device=config.device,
        )
    final["hyperparameters"] = best
    say(f"best model: test accuracy {final['test_accuracy']:.4f}", verbose)
    return model, final, reused


def publish_search(
    directory: str | Path,
    trials: list[dict],
    best: dict,
    report: dict,
    model: keras.Model | None = None,
    model_file: str | Path | None = None,
) -> None:
    """Publish a search's summary into ``directory`` as one run (chapter 7).

    ``trials.csv`` (``trials``), ``best_hparams.json`` (``best``),
    ``best_model.keras`` (``model`` saved, or ``model_file`` copied: the file
    of a previous run that is reused) and ``search.json`` (``report``, last)
    are written into a staging directory and published together
    (:func:`cnnlearn._io.publish_dir`), replacing the previous run's; without
    a model the previous ``best_model.keras`` is removed too, as no report
    describes it. If anything fails first, ``directory`` keeps the run it
    had. KerasTuner's state in ``directory/<algorithm>/`` is not touched: it
    is the search's resumable journal (see the module docstring).
    """
    with staging_dir(directory, "search.json") as stage:
        _write_csv(stage / "trials.csv", trials)
        write_json(stage / "best_hparams.json", best)
        if model_file is not None:
            shutil.copy2(model_file, stage / "best_model.keras")
        elif model is not None:
            model.save(stage / "best_model.keras")
        write_json(stage / "search.json", report)
        publish_dir(stage, directory, "search.json", retire=SEARCH_FILES)


def run_search(
    config: RunConfig,
    algorithm: str = "hyperband",
    *,
    directory: str | Path,
    max_trials: int = 10,
    max_epochs: int = 3,
    epoch_budget: int | None = None,
    executions_per_trial: int = 1,
    param_budget: int | None = None,
    budget_policy: str = "reject",
    final_epochs: int = 10,
    retrain_best: bool = True,
    verbose: int = 1,
) -> SearchResult:
    """Search, retrain the best configuration on all training images, test it once.

    This is ``cnnlearn tune`` as a function (chapter 7).

    Parameters
    ----------
    config
        The data and the seed (:class:`~cnnlearn.config.RunConfig`): the search
        trains on ``config.data_fraction`` of the training set, of which
        ``config.validation_split`` is held out for the ``val_accuracy`` it
        ranks by; ``config.batch_size`` (``None``: 128) is the batch of the
        trials and of the retraining; ``config.model`` and ``config.epochs``
        are not used (the search builds its own models, ``max_epochs`` and
        ``final_epochs`` set their epochs).
    algorithm
        ``"hyperband"``, ``"random"`` or ``"bayesian"`` (KerasTuner's tuners).
    directory
        Output directory: the tuner's state (``directory/<algorithm>/``),
        ``trials.csv``, ``best_hparams.json``, ``best_model.keras`` and
        ``search.json``, these four published together once the run is
        complete (:func:`publish_search`). Run again on it and the search
        resumes.
    max_trials, max_epochs
        Random and Bayesian search: at most ``max_trials`` trials of
        ``max_epochs`` epochs each. Hyperband: ``max_epochs`` is the most any
        model trains; it sets the number of trials itself.
    epoch_budget
        Random and Bayesian search: add trials until this many training epochs
        are spent (ignores ``max_trials``). The chapter gives them the epochs
        Hyperband spent: an equal budget.
    param_budget, budget_policy
        Models over ``param_budget`` parameters are rejected or penalized (see
        :class:`CNNHyperModel`). An impossible budget raises ``ValueError``.
    final_epochs, retrain_best
        The retraining of the best configuration on the full training set.
        ``retrain_best=False`` skips it (no model, no test accuracy). If a
        previous run in ``directory`` retrained the same configuration the
        same way, its model is reused, not retrained.
    """
    _check_arguments(algorithm, max_trials, max_epochs)
    check_output_dir(directory)
    compute.resolve_device(config.device)  # fail before loading data
    batch_size = config.batch_size or DEFAULT_BATCH_SIZE
    hypermodel = CNNHyperModel(
        param_budget=param_budget,
        policy=budget_policy,
        batch_size=batch_size,
        verbose=verbose,
    )
    out = Path(directory)
    (x_fit, y_fit), val = _search_split(config)
    keras.utils.set_random_seed(config.seed)
    tuner = make_tuner(
        algorithm,
        hypermodel,
        out,
        max_trials=max_trials,
        max_epochs=max_epochs,
        executions_per_trial=executions_per_trial,
        seed=config.seed,
    )
    say(f"{algorithm} search on {len(x_fit):,} images → {out / algorithm}", verbose)
    start = time.perf_counter()
    fit_kwargs = {"x": x_fit, "y": y_fit, "validation_data": val}
    with compute.device_scope(compute.resolve_device(config.device)):
        _search(tuner, algorithm, max_epochs, epoch_budget, fit_kwargs)
    trials, best, best_info = _collect_trials(tuner, algorithm, param_budget)
    report = {
        "algorithm": algorithm,
        "dataset": config.dataset,
        "data_fraction": config.data_fraction,
        "n_search_train": len(x_fit),
        "n_search_val": len(val[0]),
        "seed": config.seed,
        "param_budget": param_budget,
        "budget_policy": budget_policy,
        "max_trials": max_trials,
        "max_epochs": max_epochs,
        "epoch_budget": epoch_budget,
        "executions_per_trial": executions_per_trial,
        **_costs(trials),
        "search_seconds_this_run": time.perf_counter() - start,
        "best": best_info,
        "config": config.to_dict(),
        "versions": train.versions(),
    }
    model, final, reused = None, None, None
    if retrain_best:
        model, final, reused = _retrain_best(
            config,
            out,
            best,
            epochs=final_epochs,
            batch_size=batch_size,
            verbose=verbose,
        )
    report["final"] = final
    publish_search(out, trials, best_info, report, model, reused)
    return SearchResult(algorithm, trials, best, report, model)


def _costs(trials: list[dict]) -> dict:
    """What the trials cost: their number, epochs, seconds and CPU-minutes."""
    return {
        "trials": len(trials),
        "epochs_spent": sum(t["epochs"] for t in trials),
        "trial_seconds": sum(t["seconds"] or 0.0 for t in trials),
        "trial_cpu_minutes": sum(t["cpu_seconds"] or 0.0 for t in trials) / 60,
    }
