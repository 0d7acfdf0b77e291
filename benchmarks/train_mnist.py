"""Benchmark: train the chapter 4 models on the full MNIST training set.

Records seconds per epoch, steps per second and test accuracy after every epoch
to ``benchmarks/results/train_mnist.json``; chapter 4 shows that file. Like the
source article, each run trains on all 60,000 training images (no validation
hold-out) and reports the 10,000 test images after each epoch.

    python benchmarks/train_mnist.py                 # every run (~15 CPU-minutes)
    python benchmarks/train_mnist.py --only seed-b32 --epochs 2   # a quick look

Not a test: nothing here asserts a timing. The book reads the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import keras
import numpy as np

from cnnlearn import data, models, train
from cnnlearn._io import write_json

RESULTS = Path(__file__).parent / "results" / "train_mnist.json"

# name: (registered model, batch size, epochs)
RUNS = {
    "seed-b32": ("seed", 32, 10),
    "seed-b128": ("seed", 128, 10),
    "lenet5-b128": ("lenet5", 128, 10),
    "strong-b128": ("strong", 128, 15),
}


class TestAccuracy(keras.callbacks.Callback):
    """Evaluates on the test set after each epoch (outside the epoch timer)."""

    def __init__(self, x, y):
        super().__init__()
        self.x, self.y, self.values = x, y, []

    def on_epoch_end(self, epoch, logs=None):
        _, accuracy = self.model.evaluate(self.x, self.y, batch_size=1024, verbose=0)
        self.values.append(float(accuracy))


def bench(name: str, epochs: int | None, seed: int, data_dir: str | None) -> dict:
    model_name, batch_size, default_epochs = RUNS[name]
    epochs = epochs or default_epochs
    spec = models.get_spec(model_name)
    (x_train, y_train), (x_test, y_test) = data.load_dataset("mnist", data_dir)
    x_train, x_test = data.preprocess_images(x_train), data.preprocess_images(x_test)
    test_accuracy = TestAccuracy(x_test, y_test)
    result = train.fit(
        models.get_model(model_name, seed=seed),
        x_train,
        y_train,
        epochs=epochs,
        batch_size=batch_size,
        validation_split=0.0,
        learning_rate=spec.learning_rate,
        lr_schedule=spec.lr_schedule,
        seed=seed,
        callbacks=[test_accuracy],
        verbose=2,
    )
    steps = -(-len(x_train) // batch_size)
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
    report = json.loads(args.output.read_text()) if args.output.exists() else {}
    report.setdefault("runs", {})
    for name in names:
        start = time.perf_counter()
        report["runs"][name] = bench(name, args.epochs, args.seed, args.data_dir)
        print(
            f"{name}: {report['runs'][name]['final_test_accuracy']:.4f} "
            f"in {time.perf_counter() - start:.0f} s",
            flush=True,
        )
        report["machine"] = {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            **train.versions(),
        }
        report["seed"] = args.seed
        args.output.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.output, report)  # after every run: partial progress is kept


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
