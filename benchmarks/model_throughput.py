"""Benchmark: inference throughput of the book's CNNs, in TensorFlow and in NumPy.

For each registered model (seed, lenet5, strong) it records the MFLOPs of one
image's forward pass (``cnnlearn.ops.model_flops``), the images per second of
TensorFlow inference at batch 256 (a ``tf.function`` of ``model(x,
training=False)``) and the GFLOP/s that achieves, and the same for the NumPy
implementation ``cnnlearn.ops.forward`` (``method="im2col"`` for every model,
``method="naive"`` for the seed CNN only: its loops take seconds per batch on the
larger models). One timed run pushes 10 batches of 256 real MNIST test images
through a model; after a warm-up, the runs of all (model, engine) pairs are
interleaved and the median run counts. The weights are the freshly initialised
ones (seed 0): the arithmetic, and so the speed, does not depend on their values.
Writes ``benchmarks/results/model_throughput.json``; chapter 2 shows it.

    nice python benchmarks/model_throughput.py      # under a minute on 2 CPU cores
    python benchmarks/model_throughput.py --repeats 2 --numpy-repeats 1  # a look

Not a test: nothing here asserts a timing. The book reads the numbers.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from cnnlearn import compute, data, models, ops
from cnnlearn._io import write_json
from cnnlearn.report import provenance

RESULTS = Path(__file__).parent / "results" / "model_throughput.json"
MODELS = ("seed", "lenet5", "strong")


def engines(model) -> dict:
    """``{engine: batch -> probabilities}`` for one model."""

    @tf.function
    def tf_infer(x):
        return model(x, training=False)

    found = {
        "tf": lambda x: tf_infer(tf.constant(x)).numpy(),
        "numpy_im2col": lambda x: ops.forward(model, x, method="im2col"),
    }
    if model.name == "seed_cnn":
        found["numpy_naive"] = lambda x: ops.forward(model, x, method="naive")
    return found


def time_run(fn, batches: list[np.ndarray]) -> float:
    start = time.perf_counter()
    for batch in batches:
        fn(batch)
    return time.perf_counter() - start


def bench(args) -> dict:
    _, (x_test, _) = data.load_dataset("mnist", args.data_dir)
    x = data.preprocess_images(x_test[: args.batch_size * args.batches])
    if len(x) != args.batch_size * args.batches:
        raise SystemExit(f"the test set has only {len(x_test)} images")
    batches = np.split(x, args.batches)
    built = {name: models.get_model(name, seed=0) for name in MODELS}
    runs = {(name, e): fn for name in MODELS for e, fn in engines(built[name]).items()}
    agreement = {}
    for (name, engine), fn in runs.items():  # warm-up (tracing) and sanity check
        out = fn(batches[0])
        if engine != "tf":
            reference = runs[name, "tf"](batches[0])
            agreement[f"{name}_{engine}"] = float(np.max(np.abs(out - reference)))
    samples = {key: [] for key in runs}
    for r in range(args.repeats):
        for (name, engine), fn in runs.items():
            if engine == "tf" or r < args.numpy_repeats:
                samples[name, engine].append(time_run(fn, batches))
    measured_at = provenance.measured_at()  # the runs of all models interleave
    images = len(x)
    results = {}
    for name in MODELS:
        flops = ops.model_flops(built[name])
        row = {
            "params": int(built[name].count_params()),
            "mflops_per_image": flops / 1e6,
            "measured_at": measured_at,
        }
        for (model_name, engine), seconds in samples.items():
            if model_name == name:
                per_second = images / statistics.median(seconds)
                row[engine] = {
                    "images_per_second": per_second,
                    "gflops_per_second": per_second * flops / 1e9,
                    "runs": len(seconds),
                    "run_seconds": seconds,
                }
        results[name] = row
    return {
        "batch_size": args.batch_size,
        "images_per_run": images,
        "models": results,
        "max_abs_probability_difference_vs_tf": agreement,
        "notes": (
            "tf: tf.function of model(x, training=False), output fetched with "
            ".numpy(); numpy_*: cnnlearn.ops.forward. FLOPs count a multiply-add "
            "as 2 (see cnnlearn.ops.layer_costs). Median of the timed runs."
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed runs (tf)")
    parser.add_argument("--numpy-repeats", type=int, default=5, help="for NumPy")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--batches", type=int, default=10, help="per timed run")
    parser.add_argument("--data-dir")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if min(args.repeats, args.numpy_repeats, args.batch_size, args.batches) < 1:
        parser.error("--repeats, --numpy-repeats, --batch-size, --batches: >= 1")
    config = {k: v for k, v in vars(args).items() if k != "output"}
    config |= {"models": list(MODELS), "device": compute.resolve_device()}
    record = provenance.start(config)
    report = bench(args)
    report["provenance"] = record
    report["machine"] = {**provenance.machine(), "device": config["device"]}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    provenance.finish(report["provenance"])
    write_json(args.output, report)
    print(f"{'model':8} {'MFLOPs':>7} {'engine':13} {'images/s':>9} {'GFLOP/s':>8}")
    for name, row in report["models"].items():
        for engine in ("tf", "numpy_im2col", "numpy_naive"):
            if engine in row:
                e = row[engine]
                print(
                    f"{name:8} {row['mflops_per_image']:7.2f} {engine:13} "
                    f"{e['images_per_second']:9.0f} {e['gflops_per_second']:8.2f}"
                )


if __name__ == "__main__":
    main()
