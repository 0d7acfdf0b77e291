from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from cnnlearn import data, models, train
from cnnlearn.config import RunConfig


@pytest.fixture(scope="module")
def small(mnist):
    """6,000 real training and 2,000 real test images."""
    (x_train, y_train), (x_test, y_test) = mnist
    x_train, y_train = data.take_fraction(x_train, y_train, 0.1, seed=0)
    return (
        (data.preprocess_images(x_train), y_train),
        (data.preprocess_images(x_test[:2000]), y_test[:2000]),
    )


@pytest.fixture(scope="module")
def trained(small):
    (x, y), _ = small
    return train.fit(models.seed_cnn(), x, y, epochs=2, batch_size=32, verbose=0)


def test_short_run_beats_chance_by_far(small, trained):
    _, (x_test, y_test) = small
    evaluation = train.evaluate(trained.model, x_test, y_test)
    assert evaluation.accuracy > 0.85  # chance is 0.1
    assert trained.epochs == 2 and len(trained.history["seconds"]) == 2
    assert trained.n_train == 5400 and trained.n_val == 600
    assert "val_accuracy" in trained.history


def test_same_seed_same_run(small):
    (x, y), _ = small
    runs = [
        train.fit(
            models.get_model("seed", seed=3), x[:1000], y[:1000], seed=3, verbose=0
        )
        for _ in range(2)
    ]
    for a, b in zip(*(r.model.get_weights() for r in runs)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_evaluate_against_hand_computed_numbers():
    """A softmax-only model predicts argmax(x): every number can be checked."""
    model = keras.Sequential([keras.Input((3,)), keras.layers.Softmax()])
    x = np.log(
        np.array(
            [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6]],
            dtype=np.float32,
        )
    )
    y = np.array([0, 1, 1, 2])
    ev = train.evaluate(model, x, y, class_names=["a", "b", "c"])
    assert ev.accuracy == 0.75
    expected = [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    np.testing.assert_array_equal(ev.confusion_matrix, expected)
    assert ev.loss == pytest.approx(-np.mean(np.log([0.7, 0.8, 0.3, 0.6])), rel=1e-5)
    a, b, c = ev.per_class
    assert (a["class"], a["precision"], a["recall"]) == ("a", 0.5, 1.0)
    assert (b["precision"], b["recall"], b["support"]) == (1.0, 0.5, 2)
    assert b["f1"] == pytest.approx(2 / 3)
    assert c["f1"] == 1.0
    assert json.loads(json.dumps(ev.report()))["confusion_matrix"][1] == [1, 1, 0]
    with pytest.raises(ValueError, match="labels must be in"):
        train.evaluate(model, x, np.array([0, 1, 1, 3]))


def test_split_validation_is_disjoint_and_seeded():
    x, y = np.arange(100), np.arange(100)
    (x_tr, _), (x_val, _) = train.split_validation(x, y, 0.2, seed=5)
    assert len(x_val) == 20 and set(x_tr).isdisjoint(x_val)
    assert sorted([*x_tr, *x_val]) == list(range(100))
    np.testing.assert_array_equal(x_val, train.split_validation(x, y, 0.2, 5)[1][0])
    assert train.split_validation(x, y, 0.0)[1] is None
    with pytest.raises(ValueError, match="validation fraction"):
        train.split_validation(x, y, 1.0)


def test_bad_arguments_fail_before_training(small):
    (x, y), _ = small
    with pytest.raises(ValueError, match="need an output_dir"):
        train.fit(models.seed_cnn(), x, y, checkpoint=True)
    with pytest.raises(ValueError, match="lr_schedule"):
        train.fit(models.seed_cnn(), x, y, lr_schedule="step")
    with pytest.raises(ValueError, match="epochs"):
        train.fit(models.seed_cnn(), x, y, epochs=0)


def test_run_training_checks_its_config_before_loading_data(tmp_path):
    missing = str(tmp_path / "no-data")  # loading first would fail differently
    with pytest.raises(ValueError, match="unknown model 'vgg'"):
        train.run_training(RunConfig("vgg", data_dir=missing), output_dir=tmp_path)
    with pytest.raises(ValueError, match="device='tpu' was asked for"):
        train.run_training(
            RunConfig(device="tpu", data_dir=missing), output_dir=tmp_path
        )
    with pytest.raises(ValueError, match="unknown device 'npu'"):
        RunConfig(device="npu")
    assert not any(tmp_path.iterdir())


def test_callbacks_write_checkpoints_and_logs(small, tmp_path):
    (x, y), _ = small
    result = train.fit(
        models.seed_cnn(),
        x[:640],
        y[:640],
        epochs=3,
        lr_schedule="cosine",
        output_dir=tmp_path,
        checkpoint=True,
        tensorboard=True,
        early_stopping_patience=1,
        verbose=0,
    )
    assert (tmp_path / "checkpoints" / "best.keras").is_file()
    assert any((tmp_path / "logs").rglob("events.out.tfevents.*"))
    assert 1 <= result.epochs <= 3


def test_save_run_writes_the_run_atomically(small, trained, tmp_path):
    _, (x_test, y_test) = small
    evaluation = train.evaluate(trained.model, x_test, y_test)
    metrics = train.save_run(tmp_path, trained, evaluation, model="seed", seed=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "history.json",
        "metrics.json",
        "model.keras",
    ]
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk == metrics
    for key in ("test_accuracy", "test_loss", "epochs", "batch_size", "params"):
        assert key in on_disk
    assert on_disk["params"] == 54_410 and on_disk["n_test"] == 2000
    assert on_disk["train_seconds"] > 0
    reloaded = keras.models.load_model(tmp_path / "model.keras")
    assert train.evaluate(reloaded, x_test, y_test).accuracy == evaluation.accuracy
    history = json.loads((tmp_path / "history.json").read_text())
    assert len(history["loss"]) == 2
    config = RunConfig("seed", data_fraction=0.1, seed=3)
    metrics = train.save_run(tmp_path / "c", trained, evaluation, config, note="n")
    assert (metrics["model"], metrics["data_fraction"], metrics["seed"]) == (
        "seed",
        0.1,
        3,
    )
    assert metrics["config"] == config.to_dict() and metrics["note"] == "n"


def test_plan_is_used_and_recorded(small, trained, tmp_path):
    plan = trained.plan
    assert plan.pipeline == "tf.data" and plan.batch_size == 32
    assert plan.steps_per_execution == 32 and not plan.jit_compile
    # whatever the training precision, the returned model computes in float32
    assert all(
        layer.compute_dtype == "float32" for layer in trained.model._flatten_layers()
    )
    _, (x_test, y_test) = small
    metrics = train.save_run(
        tmp_path, trained, train.evaluate(trained.model, x_test, y_test)
    )
    assert metrics["plan"]["precision"] == plan.precision
    assert json.loads((tmp_path / "metrics.json").read_text())["plan"] == plan.to_dict()


def test_plan_overrides_reach_keras(small):
    (x, y), _ = small
    overrides = {"pipeline": "numpy", "steps_per_execution": 5, "precision": "float32"}
    seen = []

    class StepsPerCall(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen.append(self.model.steps_per_execution)

    result = train.fit(
        models.seed_cnn(),
        x[:640],
        y[:640],
        epochs=1,
        verbose=0,
        plan=overrides,
        callbacks=[StepsPerCall()],
    )
    assert seen == [5]
    assert isinstance(result.model.optimizer, keras.optimizers.Adam)  # kept
    assert result.plan.reasons["pipeline"] == "set by the caller"
    assert result.plan.to_dict() | overrides == result.plan.to_dict()


def test_default_path_matches_plain_fit_accuracy(mnist, small):
    """The plan's path (tf.data, 4x the batch with Adam's rate x2,
    steps_per_execution, bf16 where native) learns as well as plain fit(numpy)
    in float32 at batch 32: same model, data, epoch and seed. 30,000 real images
    are enough for the plan to grow the batch (it keeps 200 steps an epoch)."""
    (x_train, y_train), _ = mnist
    x, y = data.preprocess_images(x_train[:30_000]), y_train[:30_000]
    _, (x_test, y_test) = small
    accuracy, plans = {}, {}
    for name, plan in {"plain": train.PLAIN, "planned": None}.items():
        result = train.fit(
            models.get_model("seed", seed=0),
            x,
            y,
            epochs=1,
            batch_size=32,
            verbose=0,
            plan=plan,
        )
        accuracy[name] = train.evaluate(result.model, x_test, y_test).accuracy
        plans[name] = result.plan
    assert (plans["plain"].batch_size, plans["planned"].batch_size) == (32, 128)
    assert accuracy["plain"] > 0.9  # chance is 0.1
    assert accuracy["planned"] > accuracy["plain"] - 0.01, accuracy


def test_one_cycle_warms_up_then_anneals():
    schedule = train.fitting.OneCycle(1e-2, total_steps=100, warmup=0.25)
    lr = [float(schedule(step)) for step in range(100)]
    assert lr[0] == pytest.approx(1e-2 / 25)
    assert max(lr) == pytest.approx(1e-2) and int(np.argmax(lr)) == 25
    assert all(a <= b for a, b in zip(lr[:25], lr[1:26]))  # rising
    assert all(a >= b for a, b in zip(lr[25:], lr[26:]))  # falling
    assert lr[-1] == pytest.approx(1e-2 / 1e4, rel=1e-3)
    assert train.fitting.OneCycle(**schedule.get_config()).get_config() == (
        schedule.get_config()
    )
    with pytest.raises(ValueError, match="warmup"):
        train.fitting.OneCycle(1e-2, total_steps=100, warmup=1.0)


def test_smoothed_crossentropy_by_hand():
    p = np.array([[0.7, 0.2, 0.1]], dtype=np.float32)
    loss = train.fitting.smoothed_sparse_crossentropy(0.3)
    target = np.array([0.8, 0.1, 0.1])  # 0.7 on the label + 0.3 / 3 everywhere
    expected = -np.sum(target * np.log(p[0]))
    assert float(np.mean(loss(np.array([0]), p))) == pytest.approx(expected, 1e-5)
    plain = train.fitting.smoothed_sparse_crossentropy(0.0)
    assert float(np.mean(plain(np.array([0]), p))) == pytest.approx(-np.log(0.7))
    with pytest.raises(ValueError, match="label_smoothing"):
        train.fitting.smoothed_sparse_crossentropy(1.0)


def test_one_cycle_and_label_smoothing_train(small):
    (x, y), (x_test, y_test) = small
    stop = train.fitting.EvaluateEachEpoch(x_test, y_test, stop_at=0.0)
    result = train.fit(
        models.get_model("speedrun", seed=0),
        x,
        y,
        epochs=3,
        batch_size=64,
        learning_rate=1e-2,
        lr_schedule="one_cycle",
        label_smoothing=0.1,
        verbose=0,
        callbacks=[stop],
    )
    assert result.epochs == 1 and len(stop.values) == 1  # stop_at reached
    assert result.model.loss == "sparse_categorical_crossentropy"  # plain again
    # one epoch of three, stopped at the peak learning rate: far above chance
    assert train.evaluate(result.model, x_test, y_test).accuracy > 0.8
