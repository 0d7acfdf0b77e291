"""Benchmark: the seed CNN's first convolution in NumPy (naive, im2col) and in TF.

Times the forward and backward pass of the layer Conv2D(32, 3×3, valid) on a batch
of 64 real MNIST test images (float32, scaled to [0, 1]; 28×28×1 → 26×26×32) for
three implementations: ``cnnlearn.ops`` with ``method="naive"`` (Python loops over
output positions and kernel taps), ``cnnlearn.ops`` with ``method="im2col"`` (one
matrix product) and ``tf.nn.conv2d`` in a ``tf.function`` (backward:
``tf.GradientTape`` in a ``tf.function``). After a warm-up, the three take turns
(tf, naive, im2col, tf, ...) so that drifts in the machine's speed hit them alike;
the naive loops run fewer times. Then each runs the same number of times back to
back, which flatters TF: its threads stay awake between its own calls, not while
NumPy runs in between. Medians and ratios of both go to
``benchmarks/results/conv_ops.json``; chapter 2 shows that file.

    nice python benchmarks/conv_ops.py              # about 10 s on 2 CPU cores
    python benchmarks/conv_ops.py --repeats 5 --naive-repeats 2   # a quick look

Not a test: nothing here asserts a timing. The book reads the numbers.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from cnnlearn import data, models, ops
from cnnlearn._io import write_json
from cnnlearn.report import provenance

RESULTS = Path(__file__).parent / "results" / "conv_ops.json"
METHODS = ("naive", "im2col", "tf")


def make_functions(x: np.ndarray, w: np.ndarray, b: np.ndarray, dout: np.ndarray):
    """``{(method, "forward" | "backward"): zero-argument callable}``."""
    xt, wt, bt, doutt = (tf.constant(a) for a in (x, w, b, dout))

    @tf.function
    def tf_forward(x, w, b):
        return tf.nn.conv2d(x, w, 1, "VALID") + b

    @tf.function
    def tf_backward(x, w, b, dout):
        with tf.GradientTape() as tape:
            tape.watch([x, w, b])
            out = tf.nn.conv2d(x, w, 1, "VALID") + b
        return tape.gradient(out, [x, w, b], output_gradients=dout)

    functions = {
        ("tf", "forward"): lambda: tf_forward(xt, wt, bt),
        ("tf", "backward"): lambda: tf_backward(xt, wt, bt, doutt),
    }
    for method in ("naive", "im2col"):
        functions[method, "forward"] = lambda m=method: ops.conv2d(x, w, b, method=m)
        functions[method, "backward"] = lambda m=method: ops.conv2d_backward(
            dout, x, w, method=m
        )
    return functions


def time_once(fn) -> float:
    start = time.perf_counter()
    fn()
    return 1000 * (time.perf_counter() - start)


def max_differences(functions) -> dict:
    """Largest |NumPy - TF| over each result, relative to TF's largest |value|.

    A sanity check. Float32 sums over 43,264 positions (``dw``, ``db``) differ in
    their last bits with the order of summation, hence relative.
    """
    found = {}
    for direction in ("forward", "backward"):
        reference = functions["tf", direction]()
        reference = [reference] if direction == "forward" else reference
        for method in ("naive", "im2col"):
            got = functions[method, direction]()
            got = [got] if direction == "forward" else got
            found[f"{method}_{direction}"] = max(
                float(np.max(np.abs(g - np.asarray(r))) / np.max(np.abs(r)))
                for g, r in zip(got, reference)
            )
    return found


def summarize(samples: dict) -> dict:
    """Median milliseconds per (method, direction), the ratios, the raw samples."""
    median = {
        d: {m: statistics.median(samples[m, d]) for m in METHODS}
        for d in ("forward", "backward")
    }
    ratios = {
        d: {
            "im2col/tf": median[d]["im2col"] / median[d]["tf"],
            "naive/tf": median[d]["naive"] / median[d]["tf"],
            "naive/im2col": median[d]["naive"] / median[d]["im2col"],
        }
        for d in median
    }
    samples_ms = {f"{m}_{d}": values for (m, d), values in samples.items()}
    return {"median_ms": median, "ratios": ratios, "samples_ms": samples_ms}


def bench(repeats: int, naive_repeats: int, batch: int, data_dir: str | None) -> dict:
    _, (x_test, _) = data.load_dataset("mnist", data_dir)
    x = data.preprocess_images(x_test[:batch])
    conv = models.get_model("seed", seed=0).layers[0]
    w, b = np.asarray(conv.kernel), np.random.default_rng(0).normal(0, 0.1, 32)
    b = b.astype(np.float32)  # the model's bias starts at 0; any values will do
    dout = np.random.default_rng(1).standard_normal((batch, 26, 26, 32))
    functions = make_functions(x, w, b, dout.astype(np.float32))
    for fn in functions.values():  # warm-up: tracing, caches, allocator
        fn()
    counts = {key: naive_repeats if key[0] == "naive" else repeats for key in functions}
    interleaved = {key: [] for key in functions}
    for r in range(repeats):
        for key, fn in functions.items():
            if r < counts[key]:
                interleaved[key].append(time_once(fn))
    interleaved_at = provenance.measured_at()
    # The same calls again, each method on its own: TF's thread pool stays awake
    # between calls here, which it does not when NumPy runs in between.
    back_to_back = {
        key: [time_once(fn) for _ in range(counts[key])]
        for key, fn in functions.items()
    }
    back_to_back_at = provenance.measured_at()
    return {
        "layer": {
            "input_shape": list(x.shape),
            "kernel_shape": list(w.shape),
            "output_shape": [batch, 26, 26, 32],
            "stride": 1,
            "padding": "valid",
            "dtype": "float32",
            "forward_flops": 2 * batch * 26 * 26 * 32 * 3 * 3 * 1,
            "images": "MNIST test images 0..batch-1, scaled to [0, 1]",
        },
        "repeats": {method: counts[method, "forward"] for method in METHODS},
        "interleaved": summarize(interleaved) | {"measured_at": interleaved_at},
        "back_to_back": summarize(back_to_back) | {"measured_at": back_to_back_at},
        "max_relative_difference_vs_tf": max_differences(functions),
        "notes": (
            "tf: tf.nn.conv2d + bias in a tf.function; backward: tf.GradientTape "
            "in a tf.function returning (dx, dw, db) for a fixed random dout. "
            "NumPy backward: cnnlearn.ops.conv2d_backward. One call per sample; "
            "'interleaved': the six (method, direction) pairs take turns; "
            "'back_to_back': each pair's calls in a row. Medians of the samples. "
            "tf_intra_op_threads 0 means TF's default (one per core)."
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--naive-repeats", type=int, default=11)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--data-dir")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if min(args.repeats, args.naive_repeats, args.batch) < 1:
        parser.error("--repeats, --naive-repeats and --batch must be >= 1")
    threads = tf.config.threading.get_intra_op_parallelism_threads()
    config = {k: v for k, v in vars(args).items() if k != "output"}
    config["tf_intra_op_threads"] = threads
    record = provenance.start(config)
    report = bench(args.repeats, args.naive_repeats, args.batch, args.data_dir)
    report["provenance"] = record
    report["machine"] = {**provenance.machine(), "tf_intra_op_threads": threads}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    provenance.finish(report["provenance"])
    write_json(args.output, report)
    for mode, d in itertools.product(
        ("interleaved", "back_to_back"), ("forward", "backward")
    ):
        ms, ratio = report[mode]["median_ms"][d], report[mode]["ratios"][d]
        print(
            f"{mode:12} {d:8}  naive {ms['naive']:6.1f} ms  "
            f"im2col {ms['im2col']:5.2f} ms  tf {ms['tf']:5.2f} ms  "
            f"im2col/tf {ratio['im2col/tf']:.2f}  naive/tf {ratio['naive/tf']:.0f}"
        )


if __name__ == "__main__":
    main()
