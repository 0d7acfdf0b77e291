"""The search space and the parameter budget (chapter 7).

:func:`search_space` builds a CNN from KerasTuner hyperparameters;
:class:`CNNHyperModel` wraps it with a parameter budget and records each trial's
size, epochs and seconds.
"""

from __future__ import annotations

import random
import time

import cnnlearn._tf  # noqa: F401  (quiet TensorFlow start-up; before Keras)

# isort: split
import keras
import keras_tuner as kt
from keras import layers

from cnnlearn.progress import say

__all__ = [
    "ALGORITHMS",
    "BUDGET_POLICIES",
    "CNNHyperModel",
    "build_model",
    "check_budget",
    "count_params",
    "sample_configurations",
    "search_space",
    "smallest_params",
    "space_table",
]

ALGORITHMS = ("hyperband", "random", "bayesian")
BUDGET_POLICIES = ("reject", "penalize")
MAX_BLOCKS = 3
FILTERS = (8, 16, 32, 64)
KERNELS = (3, 5)
DENSE_UNITS = (0, 16, 32, 64)  # 0: the softmax sits right after the convolutions
OPTIMIZERS = ("adam", "rmsprop", "sgd")

InputShape = tuple[int, int, int]


def search_space(
    hp: kt.HyperParameters,
    input_shape: InputShape = (28, 28, 1),
    num_classes: int = 10,
) -> keras.Model:
    """Build and compile the CNN that the hyperparameters ``hp`` describe.

    Each block is Conv2D (``same`` padding) → optional batch norm → ReLU →
    2×2 max pooling. Then dropout, an optional hidden Dense layer and the
    softmax. The filters of block ``i`` exist only when there are at least
    ``i + 1`` blocks (KerasTuner conditional scopes), so the tuners do not
    waste samples on settings that change nothing. Used in chapter 7.
    """
    blocks = hp.Int("conv_blocks", 1, MAX_BLOCKS)
    kernel = hp.Choice("kernel_size", list(KERNELS))
    batch_norm = hp.Boolean("batch_norm")
    model = keras.Sequential([keras.Input(input_shape)], name="tuned_cnn")
    for i in range(MAX_BLOCKS):
        with hp.conditional_scope("conv_blocks", list(range(i + 1, MAX_BLOCKS + 1))):
            filters = hp.Choice(f"filters_{i}", list(FILTERS))
        if i >= blocks:
            continue
        model.add(
            layers.Conv2D(filters, kernel, padding="same", use_bias=not batch_norm)
        )
        if batch_norm:
            model.add(layers.BatchNormalization())
        model.add(layers.ReLU())
        model.add(layers.MaxPooling2D(2))
    model.add(layers.Flatten())
    model.add(layers.Dropout(hp.Float("dropout", 0.0, 0.5, step=0.1)))
    units = hp.Choice("dense_units", list(DENSE_UNITS))
    if units:
        model.add(layers.Dense(units, activation="relu"))
    model.add(layers.Dense(num_classes, activation="softmax"))
    learning_rate = hp.Float("learning_rate", 1e-4, 1e-2, sampling="log")
    optimizer = hp.Choice("optimizer", list(OPTIMIZERS))
    model.compile(
        optimizer=_optimizer(optimizer, learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def space_table(input_shape: InputShape = (28, 28, 1), num_classes: int = 10):
    """The search space as table rows: name, kind, values, when it applies."""
    hp = kt.HyperParameters()
    search_space(hp, input_shape, num_classes)
    rows = []
    for h in hp.space:
        config = h.get_config()
        if isinstance(h, kt.engine.hyperparameters.Choice):
            values = ", ".join(str(v) for v in config["values"])
        elif isinstance(h, kt.engine.hyperparameters.Boolean):
            values = "False, True"
        else:
            step = f" step {config['step']}" if config.get("step") else ""
            scale = f" ({config['sampling']})" if config.get("sampling") else ""
            values = f"{config['min_value']} … {config['max_value']}{step}{scale}"
        conditions = [c.get_config() for c in h.conditions]
        when = "; ".join(
            f"{c['name']} in {', '.join(map(str, c['values']))}" for c in conditions
        )
        rows.append(
            {
                "hyperparameter": h.name,
                "kind": type(h).__name__,
                "values": values,
                "active when": when or "always",
            }
        )
    return rows


def sample_configurations(n: int, seed: int = 0) -> list[dict]:
    """``n`` configurations drawn by KerasTuner's random-search sampler.

    The same ``seed`` gives the same configurations, in every process, and the
    same first ones as :func:`cnnlearn.tune.run_search`'s random search with that
    seed (chapter 7). KerasTuner's oracle replaces a false seed (``0``) by
    ``random.randint(1, 10000)``; like ``run_search``, which seeds Python's
    ``random`` before it builds a tuner, we seed it while sampling, and then put
    its previous state back.
    """
    if n < 1:
        raise ValueError(f"n must be at least one configuration, got {n}")
    state = random.getstate()
    random.seed(seed)
    try:
        hp = kt.HyperParameters()
        search_space(hp)  # registers the space, conditional scopes included
        oracle = kt.oracles.RandomSearchOracle(
            objective="val_accuracy", max_trials=n, seed=seed, hyperparameters=hp
        )
        return [oracle.populate_space(str(i))["values"] for i in range(n)]
    finally:
        random.setstate(state)


def _optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    if name == "adam":
        return keras.optimizers.Adam(learning_rate)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=0.9, nesterov=True)
    raise ValueError(f"unknown optimizer {name!r}: expected one of {OPTIMIZERS}")


def _hp_from_values(values: dict) -> kt.HyperParameters:
    hp = kt.HyperParameters()
    hp.values.update({k: v for k, v in values.items() if not k.startswith("tuner/")})
    return hp


def build_model(values: dict, input_shape: InputShape = (28, 28, 1), num_classes=10):
    """A fresh, compiled model from a dict of hyperparameter values.

    ``values`` is what ``best_hparams.json`` holds; names it lacks take the
    search space's defaults. Used in chapter 7 to rebuild the best model.
    """
    return search_space(_hp_from_values(values), input_shape, num_classes)


def count_params(values: dict, input_shape: InputShape = (28, 28, 1), num_classes=10):
    """The parameter count of the model that ``values`` describe."""
    return int(build_model(values, input_shape, num_classes).count_params())


def smallest_params(input_shape: InputShape = (28, 28, 1), num_classes: int = 10):
    """The fewest parameters any model in the search space has.

    Parameters grow with the filters, the kernel, batch norm and the dense
    units, so the smallest model uses the smallest of each; only the number of
    blocks can go either way (a block adds a convolution but quarters what
    the classifier sees), so every count is tried.
    """
    base = {
        "kernel_size": min(KERNELS),
        "batch_norm": False,
        "dense_units": min(DENSE_UNITS),
        **{f"filters_{i}": min(FILTERS) for i in range(MAX_BLOCKS)},
    }
    return min(
        count_params({**base, "conv_blocks": b}, input_shape, num_classes)
        for b in range(1, MAX_BLOCKS + 1)
    )


def check_budget(
    param_budget: int | None,
    input_shape: InputShape = (28, 28, 1),
    num_classes: int = 10,
) -> None:
    """Raise ``ValueError`` if no model in the search space fits the budget."""
    if param_budget is None:
        return
    smallest = smallest_params(input_shape, num_classes)
    if param_budget < smallest:
        raise ValueError(
            f"parameter budget {param_budget:,} is impossible: the smallest model "
            f"in the search space has {smallest:,} parameters"
        )


class CNNHyperModel(kt.HyperModel):
    """:func:`search_space` with a parameter budget and per-trial bookkeeping.

    ``fit`` returns the trial's best ``val_accuracy`` together with its
    parameter count, epochs, wall-clock seconds and CPU seconds (the process's,
    all cores), which KerasTuner stores in
    the trial's file (so a resumed search still knows them). Over the budget,
    ``policy="reject"`` skips training and scores the trial 0 (it costs no
    epochs, and the Bayesian tuner learns to avoid the region);
    ``policy="penalize"`` trains it and subtracts ``penalty`` times the
    fraction by which it is over the budget. Used in chapter 7.
    """

    def __init__(
        self,
        input_shape: InputShape = (28, 28, 1),
        num_classes: int = 10,
        param_budget: int | None = None,
        policy: str = "reject",
        penalty: float = 1.0,
        batch_size: int = 128,
        verbose: int = 1,
    ):
        if policy not in BUDGET_POLICIES:
            raise ValueError(f"unknown budget policy {policy!r}: {BUDGET_POLICIES}")
        check_budget(param_budget, input_shape, num_classes)
        super().__init__(name="cnn", tunable=True)
        self.input_shape, self.num_classes = input_shape, num_classes
        self.param_budget, self.policy, self.penalty = param_budget, policy, penalty
        self.batch_size, self.verbose = batch_size, verbose

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        return search_space(hp, self.input_shape, self.num_classes)

    def fit(self, hp, model, x, y, *, callbacks=(), **kwargs) -> dict:
        params = int(model.count_params())
        over = self.param_budget is not None and params > self.param_budget
        trial_id = next(
            (c.trial.trial_id for c in callbacks if hasattr(c, "trial")), "?"
        )
        if over and self.policy == "reject":
            for cb in callbacks:  # Hyperband may continue it: leave it weights
                if hasattr(cb, "filepath") and hasattr(cb, "objective"):
                    model.save_weights(cb.filepath)
            say(f"trial {trial_id}: {params:,} params > budget, rejected", self.verbose)
            return {
                "val_accuracy": 0.0,
                "params": params,
                "epochs": 0,
                "seconds": 0.0,
                "cpu_seconds": 0.0,
            }
        kwargs.setdefault("batch_size", self.batch_size)
        kwargs["verbose"] = 0
        start, cpu_start = time.perf_counter(), time.process_time()
        history = model.fit(x, y, callbacks=list(callbacks), **kwargs).history
        seconds = time.perf_counter() - start
        cpu_seconds = time.process_time() - cpu_start
        raw = float(max(history["val_accuracy"]))
        score = raw
        if over:
            score -= self.penalty * (params / self.param_budget - 1.0)
        say(
            f"trial {trial_id}: {params:,} params, {len(history['loss'])} epochs, "
            f"val_accuracy {raw:.4f}, {seconds:.1f} s",
            self.verbose,
        )
        return {
            "val_accuracy": score,
            "raw_val_accuracy": raw,
            "params": params,
            "epochs": len(history["loss"]),
            "seconds": seconds,
            "cpu_seconds": cpu_seconds,
        }
