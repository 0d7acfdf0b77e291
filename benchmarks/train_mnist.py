"""Benchmark: train the chapter 4 models on the full MNIST training set.

Records seconds per epoch, steps per second and test accuracy after every epoch
to ``benchmarks/results/train_mnist.json``; chapter 4 shows that file. Like the
source article, each run trains on all 60,000 training images (no validation
hold-out) and reports the 10,000 test images after each epoch.

    python benchmarks/train_mnist.py                 # every run (~15 CPU-minutes)
    python benchmarks/train_mnist.py --only seed-b32 --epochs 2   # a quick look

Every run trains with the pinned plan :data:`PLAN` (``train.PLAIN``: the run's
own batch size, float32, plain ``fit(numpy)``, one step per execution),
whatever :func:`cnnlearn.compute.plan` would pick on this machine, so a
run named ``seed-b32`` trains at batch 32. Each run records the plan it trained
with (device included), its config and when it was measured. ``--only``
replaces those runs and keeps the others, each with its own config; the file's
provenance is the latest run's, its notes say which runs came from which run.

Not a test: nothing here asserts a timing. The book reads the numbers.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import keras
import numpy as np

from cnnlearn import models, train
from cnnlearn._io import write_json
from cnnlearn.config import RunConfig, load_data
from cnnlearn.report import provenance

RESULTS = Path(__file__).parent / "results" / "train_mnist.json"

# name: (registered model, batch size, epochs)
RUNS = {
    "seed-b32": ("seed", 32, 10),
    "seed-b128": ("seed", 128, 10),
    "lenet5-b128": ("lenet5", 128, 10),
    "strong-b128": ("strong", 128, 15),
}
# Every run's training plan: the recipe's batch exactly, float32, fit(numpy).
PLAN = train.PLAIN


class TestAccuracy(keras.callbacks.Callback):
    """Evaluates on the test set after each epoch (outside the epoch timer)."""

    def __init__(self, x, y):
        super().__init__()
        self.x, self.y, self.values = x, y, []

    def on_epoch_end(self, epoch, logs=None):
        _, accuracy = self.model.evaluate(self.x, self.y, batch_size=1024, verbose=0)
        self.values.append(float(accuracy))


def run_config(name: str, epochs: int | None, seed: int) -> dict:
    """What decides run ``name``'s numbers: model, batch, epochs, seed, plan."""
    model_name, batch_size, default_epochs = RUNS[name]
    return {
        "model": model_name,
        "batch_size": batch_size,
        "epochs": epochs or default_epochs,
        "seed": seed,
        "plan": PLAN,
    }


def bench(name: str, epochs: int | None, seed: int, data_dir: str | None) -> dict:
    config = run_config(name, epochs, seed)
    model_name, batch_size, epochs = (
        config[k] for k in ("model", "batch_size", "epochs")
    )
    spec = models.get_spec(model_name)
    run = load_data(RunConfig(data_dir=data_dir))  # all of MNIST, in order
    test_accuracy = TestAccuracy(run.x_test, run.y_test)
    result = train.fit(
        models.get_model(model_name, seed=seed),
        run.x_train,
        run.y_train,
        epochs=epochs,
        batch_size=batch_size,
        validation_split=0.0,
        learning_rate=spec.learning_rate,
        lr_schedule=spec.lr_schedule,
        seed=seed,
        callbacks=[test_accuracy],
        verbose=2,
        plan=PLAN,
    )
    if result.batch_size != batch_size:  # the plan must not grow the batch
        raise RuntimeError(f"{name} trained at batch {result.batch_size}")
    steps = -(-len(run.x_train) // batch_size)
    seconds = result.history["seconds"]
    return {
        "model": model_name,
        "params": int(result.model.count_params()),
        "batch_size": batch_size,
        "epochs": epochs,
        "steps_per_epoch": steps,
        "seconds_per_epoch": seconds,
        "median_seconds_per_epoch": result.seconds_per_epoch,
        "ms_per_step": 1000 * result.seconds_per_epoch / steps,
        "steps_per_second": [steps / s for s in seconds],
        "train_accuracy": result.history["accuracy"],
        "test_accuracy": test_accuracy.values,
        "final_test_accuracy": test_accuracy.values[-1],
        "plan": result.plan.to_dict(),
        "config": config,
        "measured_at": provenance.measured_at(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help=f"comma-separated subset of {list(RUNS)}")
    parser.add_argument("--epochs", type=int, help="override every run's epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(RUNS)
    unknown = set(names) - set(RUNS)
    if unknown:
        parser.error(f"unknown runs {sorted(unknown)}; known: {list(RUNS)}")
    config = {k: v for k, v in vars(args).items() if k != "output"}
    config["runs"] = {name: run_config(name, args.epochs, args.seed) for name in names}
    record = provenance.start(config)
    report = json.loads(args.output.read_text()) if args.output.exists() else {}
    report.setdefault("runs", {})
    kept = [name for name in report["runs"] if name not in names]
    provenance.mark_sources(record, report.get("provenance"), names, kept)
    report["provenance"] = record
    for name in names:
        start = time.perf_counter()
        report["runs"][name] = bench(name, args.epochs, args.seed, args.data_dir)
        print(
            f"{name}: {report['runs'][name]['final_test_accuracy']:.4f} "
            f"in {time.perf_counter() - start:.0f} s",
            flush=True,
        )
        report["machine"] = provenance.machine()
        report["seed"] = args.seed
        args.output.parent.mkdir(parents=True, exist_ok=True)
        provenance.finish(report["provenance"])
        write_json(args.output, report)  # after every run: partial progress is kept


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
