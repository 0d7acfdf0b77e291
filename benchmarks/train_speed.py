"""Benchmark: plain ``fit(numpy)`` in float32 against cnnlearn's default plan.

The same model, data, epochs and seed, trained both ways with
``cnnlearn.train.fit`` (``plan=train.PLAIN`` for the plain path, the default
:func:`cnnlearn.compute.plan` otherwise). Runs alternate A B, B A, A B over the
seeds; each run's first epoch (graph tracing) is a warm-up and the median of
the others is its epoch time. Every run is a fresh Python process: a run never
inherits the graphs, memory or garbage-collector load of the runs before it.
Also measured here, for chapter 5:

* an ablation on the seed CNN: each of the plan's choices turned on alone;
* the compute floor: FLOPs per epoch (chapter 2's counter, ×3 for the
  backward pass) over the CPU's peak measured by a large matmul in this run.

The plain path is pinned (``train.PLAIN``); the default path is whatever
:func:`cnnlearn.compute.plan` picks on this machine, and each run records the
plan it trained with (batch size, precision, ...). ``--merge`` re-measures some
models and keeps the others, each model with its own config and measured_at;
the notes say which came from which run.

Writes ``benchmarks/results/train_speed.json``. Not a test: nothing asserts a
timing; the book reads the numbers.

    python benchmarks/train_speed.py                   # ~12 minutes on 2 cores
    python benchmarks/train_speed.py --models seed --seeds 1 --epochs 2  # a look
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import cnnlearn._tf  # noqa: F401

# isort: split
import numpy as np
import tensorflow as tf

from cnnlearn import compute, models, ops, train
from cnnlearn._io import write_json
from cnnlearn.config import RunConfig, load_data
from cnnlearn.report import provenance

RESULTS = Path(__file__).parent / "results" / "train_speed.json"
EPOCHS = {"seed": 3, "strong": 2}  # per run: one warm-up epoch, then timed ones
# label: the default plan's choices turned on (the rest as in train.PLAIN)
ABLATION = {
    "plain fit(numpy), float32": (),
    "batch size only": ("batch_scale",),
    "tf.data pipeline only": ("pipeline",),
    "steps_per_execution only": ("steps_per_execution",),
    "precision only": ("precision",),
    "default plan (all)": (
        "batch_scale",
        "pipeline",
        "steps_per_execution",
        "precision",
    ),
}


def one_run(name, x, y, x_test, y_test, epochs, seed, plan) -> dict:
    """Train and test ``name`` once, in this process."""
    spec = models.get_spec(name)
    result = train.fit(
        models.get_model(name, seed=seed),
        x,
        y,
        epochs=epochs,
        batch_size=spec.batch_size,
        validation_split=0.0,
        learning_rate=spec.learning_rate,
        lr_schedule=spec.lr_schedule,
        seed=seed,
        verbose=0,
        plan=plan,
    )
    accuracy = train.evaluate(result.model, x_test, y_test).accuracy
    seconds = result.history["seconds"]
    return {
        "seed": seed,
        "seconds_per_epoch": seconds,
        "median_seconds": statistics.median(seconds[1:]),
        "test_accuracy": accuracy,
        "plan": result.plan.to_dict(),
    }


def isolated_run(name, epochs, seed, plan, data_dir) -> dict:
    """:func:`one_run` in a fresh Python process; its JSON comes back on stdout."""
    job = {"name": name, "epochs": epochs, "seed": seed, "plan": plan}
    command = [sys.executable, __file__, "--child", json.dumps(job)]
    if data_dir:
        command += ["--data-dir", str(data_dir)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"run {job} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(name, seeds, epochs, data_dir) -> dict:
    """Plain (A) and default (B) runs, alternating A B / B A over the seeds."""
    runs = {"plain": [], "default": []}
    for i, seed in enumerate(seeds):
        order = ["plain", "default"] if i % 2 == 0 else ["default", "plain"]
        for path in order:
            plan = train.PLAIN if path == "plain" else None
            runs[path].append(isolated_run(name, epochs, seed, plan, data_dir))
            last = runs[path][-1]
            print(
                f"{name} seed {seed} {path}: {last['median_seconds']:.2f} s/epoch, "
                f"{last['test_accuracy']:.4f}",
                flush=True,
            )
    summary = {}
    for path, rs in runs.items():
        summary[path] = {
            "median_seconds_per_epoch": statistics.median(
                s for r in rs for s in r["seconds_per_epoch"][1:]
            ),
            "mean_test_accuracy": float(np.mean([r["test_accuracy"] for r in rs])),
            "test_accuracies": [r["test_accuracy"] for r in rs],
        }
    plain, default = summary["plain"], summary["default"]
    return {
        "model": name,
        "params": int(models.get_model(name).count_params()),
        "batch_size": models.get_spec(name).batch_size,
        "epochs": epochs,
        "seeds": list(seeds),
        "runs": runs,
        **summary,
        "speedup": plain["median_seconds_per_epoch"]
        / default["median_seconds_per_epoch"],
        "accuracy_difference": default["mean_test_accuracy"]
        - plain["mean_test_accuracy"],
        "plan": runs["default"][0]["plan"],
        # --merge can put models measured in different runs in one file
        "measured_at": provenance.measured_at(),
    }


def ablation(arrays, epochs, data_dir) -> dict:
    """Each choice of the default plan alone, on the seed CNN, seed 0."""
    full = compute.plan(
        models.get_model("seed"),
        arrays[:2],
        batch_size=models.get_spec("seed").batch_size,
    )
    rows = {}
    for label, choices in ABLATION.items():
        plan = {**train.PLAIN, **{k: getattr(full, k) for k in choices}}
        run = isolated_run("seed", epochs, 0, plan, data_dir)
        rows[label] = {
            "median_seconds": run["median_seconds"],
            "test_accuracy": run["test_accuracy"],
            "plan": run["plan"],
            "measured_at": provenance.measured_at(),
        }
        print(f"ablation {label}: {run['median_seconds']:.2f} s/epoch", flush=True)
    base = rows["plain fit(numpy), float32"]["median_seconds"]
    for row in rows.values():
        row["speedup"] = base / row["median_seconds"]
    return rows


def peak_flops(n: int = 2048, repeats: int = 10) -> dict:
    """FLOP/s of an n×n matmul in float32 and bfloat16 (best of ``repeats``)."""
    found = {}
    for dtype in (tf.float32, tf.bfloat16):
        a = tf.random.normal((n, n), dtype=tf.float32)
        a = tf.cast(a, dtype)
        matmul = tf.function(lambda m: tf.linalg.matmul(m, m))
        matmul(a).numpy()  # trace and warm up
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            matmul(a).numpy()
            best = min(best, time.perf_counter() - start)
        found[dtype.name] = 2 * n**3 / best
    return found


def floor(speed: dict, n_train: int, peaks: dict) -> dict:
    """How far the measured epochs are from the arithmetic floor."""
    model = models.get_model(speed["model"])
    forward = ops.model_flops(model)
    flops = ops.training_flops(model) * n_train  # forward + backward, counted
    precision = speed["plan"]["precision"]
    peak = peaks["bfloat16" if precision == "mixed_bfloat16" else "float32"]
    default = speed["default"]["median_seconds_per_epoch"]
    return {
        "model": speed["model"],
        "forward_flops_per_image": forward,
        "training_flops_per_image": flops // n_train,
        "flops_per_epoch": flops,
        "peak_flops_per_second": peaks,
        "floor_seconds_per_epoch": flops / peak,
        "default_seconds_per_epoch": default,
        "plain_seconds_per_epoch": speed["plain"]["median_seconds_per_epoch"],
        "default_over_floor": default * peak / flops,
        "measured_at": provenance.measured_at(),  # the peaks: this run's
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="seed,strong")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, help="override the epochs per run")
    parser.add_argument("--no-ablation", action="store_true")
    parser.add_argument(
        "--merge", action="store_true", help="update the models run in --output"
    )
    parser.add_argument("--data-dir")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--child", help=argparse.SUPPRESS)  # one isolated run
    args = parser.parse_args()
    mnist = load_data(RunConfig(data_dir=args.data_dir))  # all of MNIST, in order
    arrays = (mnist.x_train, mnist.y_train, mnist.x_test, mnist.y_test)
    if args.child:
        job = json.loads(args.child)
        run = one_run(job["name"], *arrays, job["epochs"], job["seed"], job["plan"])
        print(json.dumps(run))
        return
    names = list(filter(None, args.models.split(",")))  # "": only the floor
    config = {k: v for k, v in vars(args).items() if k not in ("output", "child")}
    config |= {
        "epochs_per_model": {n: args.epochs or EPOCHS[n] for n in names},
        "ablation_epochs": None if args.no_ablation else args.epochs or EPOCHS["seed"],
        "plans": {
            "plain": train.PLAIN,
            "default": "compute.plan's choice on this machine (each run records it)",
            "ablation": {label: list(choices) for label, choices in ABLATION.items()},
        },
    }
    record = provenance.start(config)
    previous = {}
    if args.merge and args.output.exists():
        previous = json.loads(args.output.read_text())
    report = {
        **previous,
        "machine": {
            **provenance.machine(),
            "native_bf16": compute.native_bf16(compute.cpu_flags()),
        },
        "models": previous.get("models", {}),
        "provenance": record,
    }
    fresh = [*names, *([] if args.no_ablation else ["ablation"]), "floor"]
    kept = [n for n in report["models"] if n not in names]
    if "ablation" in report and args.no_ablation:
        kept.append("ablation")
    provenance.mark_sources(record, previous.get("provenance"), fresh, kept)
    for name in names:
        epochs = args.epochs or EPOCHS[name]
        report["models"][name] = compare(name, range(args.seeds), epochs, args.data_dir)
        report["models"][name]["config"] = config
        provenance.finish(record)
        write_json(args.output, report)  # partial progress is kept
    if not args.no_ablation:
        report["ablation"] = ablation(
            arrays, args.epochs or EPOCHS["seed"], args.data_dir
        )
        for row in report["ablation"].values():
            row["config"] = config
    peaks = peak_flops()  # once, for every model
    report["floor"] = {
        name: floor(speed, len(mnist.x_train), peaks)
        for name, speed in report["models"].items()
    }
    provenance.finish(record)
    write_json(args.output, report)
    for name, speed in report["models"].items():
        print(
            f"{name}: {speed['speedup']:.2f}x faster, accuracy "
            f"{speed['plain']['mean_test_accuracy']:.4f} -> "
            f"{speed['default']['mean_test_accuracy']:.4f}"
        )


if __name__ == "__main__":
    main()
