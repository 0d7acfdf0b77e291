from __future__ import annotations

import csv
import json

import keras_tuner as kt
import numpy as np
import pytest
from conftest import fail_the_commit

from cnnlearn import cli, plots, tune
from cnnlearn.config import RunConfig
from cnnlearn.tune import search


@pytest.mark.parametrize("seed", [0, 1])
def test_search_space_builds_valid_models(seed):
    x = np.random.default_rng(seed).random((4, 28, 28, 1), dtype=np.float32)
    configurations = tune.sample_configurations(6, seed=seed)
    assert len(configurations) == 6
    for values in configurations:
        model = tune.build_model(values)
        assert model.optimizer is not None  # compiled, ready for fit
        probs = np.asarray(model(x))
        assert probs.shape == (4, 10)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
        convs = [layer for layer in model.layers if "conv2d" in layer.name]
        assert len(convs) == values["conv_blocks"]
        assert [c.filters for c in convs] == [
            values[f"filters_{i}"] for i in range(values["conv_blocks"])
        ]
        assert all(c.kernel_size[0] == values["kernel_size"] for c in convs)
        has_bn = any("batch_normalization" in layer.name for layer in model.layers)
        assert has_bn == values["batch_norm"]
        assert type(model.optimizer).__name__.lower() == values["optimizer"]
        assert float(model.optimizer.learning_rate) == pytest.approx(
            values["learning_rate"]
        )
        assert 1e-4 <= values["learning_rate"] <= 1e-2


def test_smallest_model_and_impossible_budget():
    smallest = tune.smallest_params()
    values = tune.sample_configurations(8, seed=0)
    assert len(values) == 8
    assert all(tune.count_params(v) >= smallest for v in values)
    with pytest.raises(ValueError, match="at least one"):
        tune.sample_configurations(0)
    tune.check_budget(smallest)  # exactly the smallest model fits
    with pytest.raises(ValueError, match="impossible"):
        tune.check_budget(smallest - 1)
    with pytest.raises(ValueError, match="impossible"):
        tune.CNNHyperModel(param_budget=100)


class FakeCallback:
    def __init__(self, trial_id="7"):
        self.trial = kt.engine.trial.Trial(kt.HyperParameters(), trial_id=trial_id)


def test_budget_rejects_without_training(tmp_path):
    big = {"conv_blocks": 1, "filters_0": 64, "dense_units": 128}
    hypermodel = tune.CNNHyperModel(param_budget=60_000, verbose=0)
    model = tune.build_model(big)
    assert model.count_params() > 60_000
    x, y = np.zeros((8, 28, 28, 1), np.float32), np.zeros(8, np.int64)
    result = hypermodel.fit(None, model, x, y, callbacks=[FakeCallback()], epochs=1)
    assert result == {
        "val_accuracy": 0.0,
        "params": model.count_params(),
        "epochs": 0,
        "seconds": 0.0,
        "cpu_seconds": 0.0,
    }


def test_budget_penalizes_over_budget_models():
    values = {"conv_blocks": 2, "filters_0": 8, "filters_1": 8, "dense_units": 0}
    model = tune.build_model(values)
    params = model.count_params()
    budget = params // 2  # the model is 100 % over budget
    hypermodel = tune.CNNHyperModel(param_budget=budget, policy="penalize", verbose=0)
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, 64)
    result = hypermodel.fit(
        None, model, x, y, validation_data=(x, y), epochs=1, callbacks=[]
    )
    assert result["epochs"] == 1 and result["params"] == params
    excess = params / budget - 1
    assert result["val_accuracy"] == pytest.approx(result["raw_val_accuracy"] - excess)
    with pytest.raises(ValueError, match="unknown budget policy"):
        tune.CNNHyperModel(policy="ignore")


def test_unknown_algorithm_is_value_error(tmp_path):
    with pytest.raises(ValueError, match="unknown algorithm 'grid'"):
        tune.run_search(RunConfig(), "grid", directory=tmp_path)
    assert not any(tmp_path.iterdir())


def read_trials(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_tiny_search_writes_artifacts_and_resumes(tmp_path, data_dir, capsys):
    out = tmp_path / "tune"
    # seed 2: its first sample fits the budget
    config = RunConfig(data_fraction=0.02, data_dir=data_dir, seed=2)
    kwargs = dict(directory=out, max_epochs=1, param_budget=60_000, final_epochs=1)
    first = tune.run_search(config, "random", max_trials=2, **kwargs)
    assert [t["trial"] for t in first.trials] == [0, 1]
    assert all(t["params"] <= 60_000 for t in first.trials if t["epochs"])
    trained = [t for t in first.trials if t["epochs"]]
    assert trained and all(t["epochs"] == 1 and t["seconds"] > 0 for t in trained)
    assert all(t["cpu_seconds"] > 0 for t in trained)
    for name in ("trials.csv", "best_hparams.json", "best_model.keras", "search.json"):
        assert (out / name).is_file(), name
    best = json.loads((out / "best_hparams.json").read_text())
    assert best["params"] <= 60_000 and 0 < best["val_accuracy"] <= 1
    assert tune.count_params(best["hyperparameters"]) == best["params"]
    report = json.loads((out / "search.json").read_text())
    # 2 % of 60,000 images, a tenth of them held out to rank the trials
    assert (report["n_search_train"], report["n_search_val"]) == (1080, 120)
    assert report["config"] == config.to_dict()
    assert report["final"]["n_train"] == 60_000  # retrained on all of it
    assert report["final"]["batch_size"] == tune.DEFAULT_BATCH_SIZE
    assert report["final"]["test_accuracy"] > 0.5
    assert first.model.count_params() == best["params"]
    assert len(read_trials(out / "trials.csv")) == 2
    stamps = {p: p.stat().st_mtime_ns for p in (out / "random").glob("trial_*/*")}
    capsys.readouterr()

    second = tune.run_search(config, "random", max_trials=3, **kwargs)
    log = capsys.readouterr().err  # progress lines go to stderr
    assert [t["trial"] for t in second.trials] == [0, 1, 2]  # continued, not restarted
    assert second.trials[:2] == first.trials  # finished trials were read back
    assert "trial 0:" not in log and "trial 1:" not in log and "trial 2:" in log
    for path, stamp in stamps.items():  # and their files not rewritten
        assert path.stat().st_mtime_ns == stamp, path
    assert len(read_trials(out / "trials.csv")) == 3
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--algorithm", "grid"], "invalid choice: 'grid'"),
        (["--max-epochs", "0"], "--max-epochs: must be >= 1"),
        (["--data-fraction", "0"], "must be in (0, 1]"),
    ],
)
def test_cli_bad_arguments_exit_2(capsys, tmp_path, args, message):
    with pytest.raises(SystemExit) as info:
        cli.main(["tune", *args, "--output", str(tmp_path)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_cli_impossible_budget_exits_1(capsys, tmp_path):
    out = tmp_path / "out"
    assert cli.main(["tune", "--param-budget", "500", "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert "parameter budget 500 is impossible" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_space_table_lists_every_hyperparameter():
    rows = {row["hyperparameter"]: row for row in tune.space_table()}
    assert set(rows) >= {"conv_blocks", "kernel_size", "batch_norm", "dropout"}
    assert {"dense_units", "learning_rate", "optimizer", "filters_0"} <= set(rows)
    assert "(log)" in rows["learning_rate"]["values"]
    assert rows["filters_2"]["active when"] == "conv_blocks in 3"


def test_tuning_plots_skip_rejected_trials():
    rows = [
        {"params": 90_000, "epochs": 0, "val_accuracy": 0.0, "seconds": 0.0},
        {"params": 30_000, "epochs": 1, "val_accuracy": 0.9, "seconds": 2.0},
        {"params": 40_000, "epochs": 3, "val_accuracy": 0.95, "seconds": 5.0},
    ]
    fig = plots.plot_trials({"random": rows, "hyperband": rows[1:]}, 54_410)
    scatter = fig.axes[0].collections[0]
    assert len(scatter.get_offsets()) == 2  # the rejected trial is not drawn
    fig = plots.plot_search_progress({"random": rows})
    x, y = fig.axes[0].lines[0].get_data()
    np.testing.assert_allclose(x, [0, 1, 4])
    np.testing.assert_allclose(y, [100, 10, 5])


def test_summarize_counts_rejected_trials_and_epochs():
    rows = [
        {"params": 90_000, "epochs": 0, "val_accuracy": 0.0, "score": 0.0},
        {"params": 30_000, "epochs": 1, "val_accuracy": 0.9, "score": 0.9},
        {"params": 40_000, "epochs": 3, "val_accuracy": 0.95, "score": 0.95},
    ]
    assert tune.summarize_trials(rows) == {
        "trials": 3,
        "rejected": 1,
        "epochs": 4,
        "best val accuracy": "95.00%",
        "best params": "40,000",
    }


def test_sample_configurations_are_reproducible_whatever_the_global_state():
    """KerasTuner draws seed=0's real seed from Python's random: not ours."""
    import random

    draws = []
    for state in (1, 2):
        random.seed(state)
        draws.append(tune.sample_configurations(6, seed=0))
    assert draws[0] == draws[1]
    assert tune.sample_configurations(6, seed=1) != draws[0]
    random.seed(3)
    expected = random.random()
    random.seed(3)
    tune.sample_configurations(2, seed=0)
    assert random.random() == expected  # the caller's random state is kept


def test_a_search_summary_is_published_whole_or_not_at_all(tmp_path, monkeypatch):
    """The four summary files go in together, search.json last; a failure
    mid-publish leaves the previous summary byte for byte, and KerasTuner's
    journal (``<algorithm>/``) is never touched."""
    out = tmp_path / "tune"
    journal = out / "random" / "oracle.json"
    journal.parent.mkdir(parents=True)
    journal.write_text('{"ongoing_trials": {}}')
    trials = [{"trial": 0, "epochs": 1, "val_accuracy": 0.5}]
    model = tune.build_model(tune.sample_configurations(1, seed=0)[0])

    def files():
        return {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    search.publish_search(out, trials, {"trial": 0}, {"run": 1}, model)
    first = files()
    assert sorted(first) == sorted(search.SEARCH_FILES)
    with monkeypatch.context() as failing:
        fail_the_commit(failing)
        with pytest.raises(OSError, match="injected"):
            search.publish_search(out, trials * 2, {"trial": 1}, {"run": 2})
    names = sorted(p.name for p in out.iterdir())
    assert files() == first and names == sorted([*first, "random"])  # none staged

    # no model this time (retrain_best=False): the old one goes with its report
    search.publish_search(out, trials * 2, {"trial": 1}, {"run": 2})
    assert sorted(files()) == ["best_hparams.json", "search.json", "trials.csv"]
    assert json.loads((out / "search.json").read_text()) == {"run": 2}
    assert len(read_trials(out / "trials.csv")) == 2
    assert journal.read_text() == '{"ongoing_trials": {}}'
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]
