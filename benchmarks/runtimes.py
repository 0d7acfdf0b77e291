"""Benchmark: inference runtimes and quantization on this CPU, measured side by side.

Writes ``benchmarks/results/runtimes.json``, which chapter 6 reads. For the
seed CNN and the strong CNN, trained as ``benchmarks/model_compression.py`` trains
them (same epochs, batch, learning rate, schedule and seed), it times

* LiteRT float32, float16, dynamic range and int8, ONNX Runtime float32 and
  int8 (QDQ, per-channel, calibrated on 300 real training images);
* at batch 1 and 256, with 1 and 2 threads,

in interleaved rounds (:func:`cnnlearn.compress.runtimes.time_rounds`): each
round times every (runtime, batch, threads) of a model once, in a new order, and
each number reported is the median over the rounds; int8-over-float32 speedups
are medians of per-round ratios. Accuracy is each runtime's on all 10,000 MNIST
test images. The goals of issue 21 are printed as met or not: the strong CNN's
int8 at least 3x float32's throughput at batch 256 and 2x at batch 1, within 0.2
points of accuracy; for the seed CNN, a verdict per batch size.

    nice python benchmarks/runtimes.py               # quiet machine, ~10 minutes
    python benchmarks/runtimes.py --quick            # a smoke run (~2 minutes)
    python benchmarks/runtimes.py --strong-model strong.keras   # train once, reuse

Why this and not ``compression.json``'s latency and throughput columns: those
time one thread, batch 1 and batch 64, once each, back to back; on this CPU the
int8/float32 ratio of the small seed CNN changes direction with the batch size
(chapter 6 shows it), so one batch size cannot answer "is int8 faster".
Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import cnnlearn._tf  # noqa: F401

# isort: split
import keras
import numpy as np
from model_compression import fit_strong  # benchmarks/ is on the path, as run

from cnnlearn import data, models, train
from cnnlearn._io import write_json
from cnnlearn.compress import runtimes, size_report
from cnnlearn.progress import say
from cnnlearn.report import provenance

RESULTS = Path(__file__).parent / "results" / "runtimes.json"
# Issue 21's goals, for each runtime family's int8 against its float32.
GOALS = {"speedup_batch_256": 3.0, "speedup_batch_1": 2.0, "max_accuracy_drop": 0.002}
FAMILIES = {
    "litert": ("litert-int8", "litert-float32"),
    "onnx": ("onnx-int8", "onnx-float32"),
}


def log(message: str) -> None:
    """A progress line with the time of day."""
    say(f"{time.strftime('%H:%M:%S')} {message}")


def train_seed(xtr, ytr, args) -> keras.Model:
    """The seed CNN as ``model_compression.py``'s seed_cnn_section trains it."""
    log(f"seed CNN: training {args.base_epochs} epochs, seed {args.seed}")
    model = models.get_model("seed", seed=args.seed)
    train.fit(
        model,
        xtr,
        ytr,
        epochs=args.base_epochs,
        batch_size=128,
        seed=args.seed,
        verbose=0,
    )
    return model


def train_strong(xtr, ytr, args) -> keras.Model:
    """The strong CNN as ``benchmarks/model_compression.py``'s strong_section gets it:
    loaded from ``--strong-model`` when that file exists, else trained (and saved
    there when given)."""
    saved = args.strong_model
    if saved is not None and saved.is_file():
        log(f"strong CNN: loading {saved}")
        return keras.models.load_model(saved)
    log(f"strong CNN: training {args.strong_epochs} epochs")
    model = fit_strong(xtr, ytr, args.strong_epochs, args.strong_precision).model
    if saved is not None:
        model.save(saved)
    return model


def measure_model(name, model, xtr, xte, yte, args) -> tuple[list[dict], dict]:
    """Every runtime of one model: accuracy, sizes, then the interleaved timings."""
    log(f"{name}: building {len(args.runtimes)} runtimes")
    artifacts = runtimes.build_artifacts(model, xtr[:300], tuple(args.runtimes))
    keras_accuracy = train.evaluate(model, xte, yte).accuracy
    accuracies = {r: runtimes.accuracy(r, c, xte, yte) for r, c in artifacts.items()}
    calls, images = {}, {}
    for runtime, content in artifacts.items():
        for batch in args.batches:
            for threads in args.threads:
                key = (runtime, batch, threads)
                x = np.resize(xte, (batch, *xte.shape[1:])).astype(np.float32)
                calls[key] = runtimes.make_call(
                    runtime, content, x, threads, float_io=args.float_io
                )
                images[key] = batch
    log(f"{name}: timing {len(calls)} calls x {args.rounds} rounds")
    load_before = os.getloadavg()
    times = runtimes.time_rounds(
        calls, images, rounds=args.rounds, target_seconds=args.target_seconds
    )
    rows = [
        {
            "model": name,
            "runtime": runtime,
            "batch": batch,
            "threads": threads,
            **runtimes.summarize(times[(runtime, batch, threads)]),
            "accuracy": accuracies[runtime],
            "keras_accuracy": keras_accuracy,
            **size_report(artifacts[runtime]),
            "measured_at": provenance.measured_at(),
        }
        for runtime, batch, threads in calls
    ]
    context = {"load_average": {"before": load_before, "after": os.getloadavg()}}
    return rows, {"times": times, "context": context}


def speedups(name: str, times: dict, args) -> list[dict]:
    """int8 over float32, per runtime family, batch and threads (per-round ratios)."""
    found = []
    for family, (int8, float32) in FAMILIES.items():
        if int8 not in args.runtimes or float32 not in args.runtimes:
            continue
        for batch in args.batches:
            for threads in args.threads:
                ratio = runtimes.ratios(
                    times[(int8, batch, threads)], times[(float32, batch, threads)]
                )
                found.append(
                    {
                        "model": name,
                        "family": family,
                        "batch": batch,
                        "threads": threads,
                        "int8_over_float32": ratio,
                    }
                )
    return found


def verdicts(rows: list[dict], speeds: list[dict]) -> list[dict]:
    """Issue 21's goals, met or not; and the seed CNN's verdict per batch size."""
    accuracy = {(r["model"], r["runtime"]): r["accuracy"] for r in rows}
    found = []
    for s in speeds:
        int8, float32 = FAMILIES[s["family"]]
        drop = accuracy[(s["model"], float32)] - accuracy[(s["model"], int8)]
        ratio = s["int8_over_float32"]["median"]
        verdict = {**s, "accuracy_drop": drop}
        if s["model"] == "strong":
            need = GOALS.get(f"speedup_batch_{s['batch']}")
            verdict["goal"] = (
                f">= {need}x float32, drop <= {100 * GOALS['max_accuracy_drop']:.1f} "
                "points"
                if need
                else None
            )
            verdict["met"] = (
                bool(ratio >= need and drop <= GOALS["max_accuracy_drop"])
                if need
                else None
            )
        else:
            verdict["goal"], verdict["met"] = None, None
        verdict["verdict"] = "faster" if ratio > 1 else "slower"
        found.append(verdict)
    return found


def print_table(rows: list[dict]) -> None:
    """Images per second (median over rounds) and accuracy, one line per runtime."""
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        columns = list(dict.fromkeys((r["batch"], r["threads"]) for r in mine))
        head = "".join(f"  b{b:<3d} t{t}" for b, t in columns)
        say(f"{model + ': images/s':24s}{head}   accuracy")
        for runtime in dict.fromkeys(r["runtime"] for r in mine):
            found = {
                (r["batch"], r["threads"]): r for r in mine if r["runtime"] == runtime
            }
            cells = "".join(f"{found[c]['images_per_s']:>9.0f}" for c in columns)
            accuracy = found[columns[0]]["accuracy"]
            say(f"  {runtime:22s}{cells}   {100 * accuracy:.2f} %")


def print_verdicts(found: list[dict]) -> None:
    for v in found:
        ratio = v["int8_over_float32"]["median"]
        line = (
            f"{v['model']:6s} {v['family']:6s} batch {v['batch']:3d} "
            f"threads {v['threads']}: int8 {ratio:.2f}x float32 ({v['verdict']}), "
            f"accuracy drop {100 * v['accuracy_drop']:+.2f} points"
        )
        if v["met"] is not None:
            line += f" - goal {v['goal']}: {'MET' if v['met'] else 'NOT MET'}"
        say(line)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-epochs", type=int, default=3, help="seed CNN")
    parser.add_argument("--seed", type=int, default=0, help="the seed CNN's")
    parser.add_argument("--strong-epochs", type=int, default=2)
    parser.add_argument("--strong-precision", default="float32")
    parser.add_argument(
        "--strong-model", type=Path, help="load the strong CNN from here, or save it"
    )
    parser.add_argument("--models", nargs="+", default=["seed", "strong"])
    parser.add_argument(
        "--runtimes",
        nargs="+",
        default=list(runtimes.RUNTIMES),
        choices=runtimes.RUNTIMES,
    )
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 256])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--target-seconds", type=float, default=0.1)
    parser.add_argument(
        "--float-io", action="store_true", help="LiteRT int8 (de)quantizes in the clock"
    )
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--data-dir")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.base_epochs = args.strong_epochs = 1
        args.rounds, args.target_seconds = 2, 0.02
    bad = [n for n in (*args.batches, *args.threads, args.rounds) if n < 1]
    if bad or args.target_seconds <= 0 or set(args.models) - {"seed", "strong"}:
        parser.error(
            "expected batches, threads and rounds >= 1, target seconds > 0 and "
            f"models from seed, strong; got {args}"
        )
    if args.output.is_dir():
        parser.error(f"--output must be a file path, got the directory {args.output}")
    return args


def main() -> None:
    args = parse_args()
    config = {
        k: str(v) if isinstance(v, Path) else v
        for k, v in vars(args).items()
        if k not in ("output", "data_dir")
    }
    config |= {
        "train_images": 6000 if args.quick else 60000,
        "test_images": 1000 if args.quick else 10000,
        "calibration_images": 300,
        "onnx_quantization": runtimes.ONNX_QUANTIZATION,
        "onnx_spinning": False,
        "timed_call": "LiteRT int8 input quantized before the clock"
        + (" (no: --float-io)" if args.float_io else ""),
        "goals": GOALS,
    }
    record = provenance.start(config)
    (x_train, y_train), (x_test, y_test) = data.load_dataset("mnist", args.data_dir)
    if args.quick:
        x_train, y_train = x_train[:6000], y_train[:6000]
        x_test, y_test = x_test[:1000], y_test[:1000]
    xtr, xte = data.preprocess_images(x_train), data.preprocess_images(x_test)
    report = {
        "config": config,
        "provenance": record,
        "machine": provenance.machine(),
        "rows": [],
        "speedups": [],
        "verdicts": [],
        "load": {},
    }

    def save() -> None:
        provenance.finish(report["provenance"])
        args.output.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.output, report)

    trainers = {"seed": train_seed, "strong": train_strong}
    for name in args.models:
        model = trainers[name](xtr, y_train, args)
        rows, timing = measure_model(name, model, xtr, xte, y_test, args)
        report["rows"] += rows
        report["speedups"] += speedups(name, timing["times"], args)
        report["load"][name] = timing["context"]["load_average"]
        save()
    report["verdicts"] = verdicts(report["rows"], report["speedups"])
    save()
    print_table(report["rows"])
    print_verdicts(report["verdicts"])
    log(f"done → {args.output}")


if __name__ == "__main__":
    main()
