"""The seed and strong CNNs on TensorFlow, JAX and PyTorch (chapter 4, 多后端).

Keras 3 runs one model definition on three backends. This benchmark trains
both CNNs on each installed backend, on this machine, in one run, and writes
``benchmarks/results/backends.json``: test accuracy on all 10,000 MNIST test
images and seconds per epoch, with the gap to TensorFlow and the goal (within
0.3 points of TensorFlow) printed as met or not.

Each backend runs in its own process (Keras reads ``KERAS_BACKEND`` once), from
the same initial weights (built once and saved; every backend loads the file)
on the same batches in the same order (``pipeline.SeededBatches``), in float32.
What differs is the backend's arithmetic and its random generator, which
draws the dropout masks and the strong CNN's augmentation.

    python benchmarks/backends.py                     # every installed backend
    python benchmarks/backends.py --backends tensorflow jax --quick
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "backends.json"
BACKENDS = ("tensorflow", "jax", "torch")
EPOCHS = {"seed": 3, "strong": 2}
BATCH = 128
GOAL_POINTS = 0.3  # accuracy within this many points of TensorFlow's


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", choices=BACKENDS)
    parser.add_argument("--models", nargs="+", default=list(EPOCHS))
    parser.add_argument("--data-fraction", type=float, default=1.0)
    parser.add_argument("--epochs", type=int, help="default: 3 seed, 2 strong")
    parser.add_argument("--quick", action="store_true", help="1 epoch on 10 %%")
    parser.add_argument("--data-dir")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--worker", choices=BACKENDS, help=argparse.SUPPRESS)
    parser.add_argument("--init", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.data_fraction, args.epochs = 0.1, 1
    return args


def load(args):
    """MNIST as float images, the training share seeded by seed 0."""
    from cnnlearn import data

    (x, y), (xt, yt) = data.load_dataset("mnist", args.data_dir)
    x, y = data.take_fraction(x, y, args.data_fraction, 0)
    return data.preprocess_images(x), y, data.preprocess_images(xt), yt


def save_initial_weights(names: list[str], directory: Path) -> None:
    """Every model's seed-0 weights, once, for all backends to start from."""
    from cnnlearn import models

    for name in names:
        models.get_model(name, seed=0).save_weights(directory / f"{name}.weights.h5")


PARITY_PLAN = {"pipeline": "batches", "precision": "float32", "batch_scale": 1}


def train_one(
    name: str,
    epochs: int,
    arrays,
    init: Path | None = None,
    plan: dict | None = PARITY_PLAN,
    device: str = "auto",
) -> dict:
    """One model on this process's backend, from ``init``'s weights if given;
    its accuracy, timing, plan and training FLOPs per epoch (also used by
    ``benchmarks/gpu.py``, with the default plan on a GPU)."""
    from cnnlearn import models, ops, train

    x, y, xt, yt = arrays
    spec = models.get_spec(name)
    model = models.get_model(name, seed=0)
    if init is not None:
        model.load_weights(init / f"{name}.weights.h5")
    result = train.fit(
        model,
        x,
        y,
        epochs=epochs,
        batch_size=BATCH,
        learning_rate=spec.learning_rate,
        lr_schedule=spec.lr_schedule,
        seed=0,
        verbose=0,
        device=device,
        plan=plan,
    )
    evaluation = train.evaluate(result.model, xt, yt)
    return {
        "test_accuracy": evaluation.accuracy,
        "test_loss": evaluation.loss,
        "epochs": result.epochs,
        "epoch_seconds": result.history["seconds"],
        "seconds_per_epoch": result.seconds_per_epoch,
        "plan": result.plan.to_dict(),
        "training_flops_per_epoch": ops.training_flops(model) * result.n_train,
    }


def worker(args) -> None:
    """``--worker BACKEND``: train every model, print the rows as JSON."""
    os.environ["KERAS_BACKEND"] = args.worker  # before Keras is imported
    from cnnlearn import train
    from cnnlearn.report import provenance

    arrays = load(args)
    rows = {
        name: train_one(name, args.epochs or EPOCHS[name], arrays, args.init)
        for name in args.models
    }
    versions = train.versions()
    for row in rows.values():
        row["versions"] = versions
        row["measured_at"] = provenance.measured_at()
    print(json.dumps(rows))


def run_backend(backend: str, args, init: Path) -> dict:
    """One backend's worker process; its rows."""
    command = [sys.executable, __file__, "--worker", backend, "--init", str(init)]
    command += ["--models", *args.models, "--data-fraction", str(args.data_fraction)]
    command += ["--epochs", str(args.epochs)] if args.epochs else []
    command += ["--data-dir", args.data_dir] if args.data_dir else []
    print(f"{backend}: training {', '.join(args.models)}", file=sys.stderr, flush=True)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{backend} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(results: dict) -> dict:
    """Each backend's accuracy gap to TensorFlow and speed ratio, per model."""
    base = results.get("tensorflow", {})
    out = {}
    for backend, rows in results.items():
        for name, row in rows.items():
            ref = base.get(name)
            if ref is None:
                continue
            gap = 100 * (row["test_accuracy"] - ref["test_accuracy"])
            out.setdefault(name, {})[backend] = {
                "accuracy_points_vs_tensorflow": gap,
                "seconds_ratio_vs_tensorflow": row["seconds_per_epoch"]
                / ref["seconds_per_epoch"],
                "goal_met": abs(gap) <= GOAL_POINTS,
            }
    return out


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    from cnnlearn._io import write_json
    from cnnlearn.report import provenance

    backends = args.backends or [
        b for b in BACKENDS if importlib.util.find_spec(b) is not None
    ]
    config = {
        "backends": backends,
        "models": args.models,
        "epochs": {n: args.epochs or EPOCHS[n] for n in args.models},
        "batch_size": BATCH,
        "data_fraction": args.data_fraction,
        "plan": PARITY_PLAN,
        "initial_weights": "models.get_model(name, seed=0), saved once, loaded by all",
        "goal_points": GOAL_POINTS,
    }
    record = provenance.start(config)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        save_initial_weights(args.models, Path(tmp))
        for backend in backends:
            results[backend] = run_backend(backend, args, Path(tmp))
    provenance.finish(record)
    report = {
        "provenance": record,
        "machine": provenance.machine(),
        "results": results,
        "comparison": compare(results),
    }
    write_json(args.output, report)
    for name, rows in report["comparison"].items():
        for backend, row in rows.items():
            met = "met" if row["goal_met"] else "NOT met"
            print(
                f"{name} on {backend}: {row['accuracy_points_vs_tensorflow']:+.2f} "
                f"points vs TensorFlow (goal ±{GOAL_POINTS}: {met}), "
                f"{row['seconds_ratio_vs_tensorflow']:.2f}x its s/epoch"
            )


if __name__ == "__main__":
    main()
