"""Chapter 4's training on a GPU, on JAX and on PyTorch (chapters 4 and 5).

Runs where TensorFlow is absent: a GPU machine image with JAX or PyTorch, plus
Keras and cnnlearn (the core needs neither TensorFlow nor the serving stack) and
the four original MNIST files. Each backend trains in its own process with the
training plan's choices for the GPU (precision by compute capability, XLA on
JAX, data parallelism over every GPU JAX sees) and writes, per backend and
model, the plan, seconds per epoch, test accuracy on all 10,000 images and the
achieved training FLOP/s (chapter 5's compute floor), stamped with the GPU's
name, into ``benchmarks/results/gpu.json``. Chapters 4 and 5 show it; until it
exists they say "not measured yet".

On the GPU machine, from a checkout (a few minutes)::

    pip install keras-*.whl            # or: pip install "keras>=3.3,<4"
    pip install --no-deps -e .         # cnnlearn's core, without TensorFlow
    pip install pyyaml matplotlib      # the core's other needs
    mkdir -p data/mnist && cp /path/to/*-ubyte.gz data/mnist/
    python benchmarks/gpu.py --data-dir data --output benchmarks/results/gpu.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "gpu.json"
BACKENDS = ("jax", "torch")
EPOCHS = {"seed": 3, "strong": 3}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", choices=BACKENDS)
    parser.add_argument("--models", nargs="+", default=list(EPOCHS))
    parser.add_argument("--epochs", type=int, help="default: 3 per model")
    parser.add_argument("--data-dir", help="default: $CNNLEARN_DATA_DIR")
    parser.add_argument("--data-fraction", type=float, default=1.0)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--device", default="gpu", help="cpu: a smoke test only")
    parser.add_argument("--worker", choices=BACKENDS, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def gpu_name(backend: str, device: str = "gpu") -> str:
    """The GPU's name as the backend reports it."""
    if device != "gpu":
        import platform

        return f"{device}: {platform.processor() or platform.machine()}"
    if backend == "jax":
        import jax

        return jax.devices("gpu")[0].device_kind
    import torch

    return torch.cuda.get_device_name(0)


def worker(args) -> None:
    """``--worker BACKEND``: train each model on the GPU, print the rows as JSON."""
    os.environ["KERAS_BACKEND"] = args.worker  # before Keras is imported
    from backends import load, train_one  # benchmarks/ is on the path, as run

    from cnnlearn import train
    from cnnlearn.report import provenance

    arrays = load(args)
    rows = {}
    for name in args.models:
        epochs = args.epochs or EPOCHS[name]
        row = train_one(name, epochs, arrays, None, None, args.device)
        row["training_flops_per_second"] = (
            row["training_flops_per_epoch"] / row["seconds_per_epoch"]
        )
        row["measured_at"] = provenance.measured_at()
        rows[name] = row
    print(
        json.dumps(
            {
                "device_name": gpu_name(args.worker, args.device),
                "rows": rows,
                "versions": train.versions(),
            }
        )
    )


def run_backend(backend: str, args) -> dict:
    command = [sys.executable, __file__, "--worker", backend, "--models", *args.models]
    command += ["--data-fraction", str(args.data_fraction), "--device", args.device]
    command += ["--epochs", str(args.epochs)] if args.epochs else []
    command += ["--data-dir", args.data_dir] if args.data_dir else []
    print(f"{backend}: training {', '.join(args.models)}", file=sys.stderr, flush=True)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1][:500]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    from cnnlearn._io import write_json
    from cnnlearn.report import provenance

    backends = args.backends or [
        b for b in BACKENDS if importlib.util.find_spec(b) is not None
    ]
    if not backends:
        raise SystemExit("neither jax nor torch is installed")
    config = {
        "backends": backends,
        "models": args.models,
        "epochs": {n: args.epochs or EPOCHS[n] for n in args.models},
        "data_fraction": args.data_fraction,
        "device": args.device,
        "plan": "compute.plan's choice on this GPU (each row records it)",
    }
    os.environ.setdefault("KERAS_BACKEND", backends[0])  # provenance imports Keras
    record = provenance.start(config)
    results = {backend: run_backend(backend, args) for backend in backends}
    provenance.finish(record)
    report = {"provenance": record, "machine": provenance.machine()}
    write_json(args.output, {**report, "results": results})
    for backend, found in results.items():
        if "error" in found:
            print(f"{backend}: failed: {found['error']}")
            continue
        for name, row in found["rows"].items():
            print(
                f"{backend} on {found['device_name']}: {name} "
                f"{row['seconds_per_epoch']:.2f} s/epoch, test accuracy "
                f"{row['test_accuracy']:.4f}, "
                f"{row['training_flops_per_second'] / 1e12:.2f} TFLOP/s"
            )


if __name__ == "__main__":
    main()
