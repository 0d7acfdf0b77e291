"""Benchmark: data-parallel training of the seed CNN on this machine (chapter 5).

The same global batch (128 real MNIST images) and the same loop,
``distribute.distributed_fit``, under:

a. ``default``: the default strategy, one process, one device;
b. ``mirrored_2_logical_cpus``: ``MirroredStrategy`` over the CPU split into two
   logical devices (``distribute.use_logical_cpus(2)``), 2 replicas of 64;
c. ``two_workers_loopback``: ``MultiWorkerMirroredStrategy``, two processes on
   127.0.0.1 started by ``distribute.launch_workers``, 64 images each, ring
   all-reduce;
d. ``default_bf16`` and ``default_xla``: (a) with the ``mixed_bfloat16`` policy,
   and with XLA (``jit_compile=True``).

Each configuration runs in a fresh process (logical devices and collectives
must be set before TensorFlow starts). It trains ``--epochs`` epochs of
``--steps`` steps; the first epoch (graph tracing) is dropped and the median of
the others gives steps/s and images/s. Rounds alternate the configurations and
the report keeps the median over rounds.

Then the compute time per step that the chapter's scaling *model* needs: the
seed CNN at 128 images per worker (from (a)), and ResNet-50 (25.6 M parameters,
224×224 inputs, synthetic images: only the time matters) at ``--resnet-batch``
per worker. Writes ``benchmarks/results/distributed.json``.

    nice python benchmarks/distributed.py            # ~6 minutes on 2 cores
    python benchmarks/distributed.py --rounds 1 --steps 10 --skip-resnet

Not a test: nothing here asserts a timing. The book reads the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "distributed.json"
GLOBAL_BATCH = 128
CONFIGS = {
    "default": "default strategy, 1 process, 1 device",
    "mirrored_2_logical_cpus": "MirroredStrategy, 2 logical CPUs, 1 process",
    "two_workers_loopback": "MultiWorkerMirroredStrategy, 2 processes, 127.0.0.1",
    "default_bf16": "default strategy, mixed_bfloat16",
    "default_xla": "default strategy, jit_compile=True",
}


def one(config: str, steps: int, epochs: int, data_dir: str | None, out: str) -> None:
    """Run one configuration in this (fresh) process; the chief writes ``out``."""
    from cnnlearn import distribute

    if config == "mirrored_2_logical_cpus":
        distribute.use_logical_cpus(2)
    strategy = distribute.get_strategy(
        "cpu", multi_worker=config == "two_workers_loopback"
    )
    if config == "default_bf16":
        distribute.set_global_precision("mixed_bfloat16")
    from cnnlearn import data, models

    (x, y), _ = data.load_dataset("mnist", data_dir)
    n = GLOBAL_BATCH * steps
    x, y = data.preprocess_images(x[:n]), y[:n]
    history = distribute.distributed_fit(
        lambda: models.get_model("seed", seed=0),
        (x, y),
        strategy,
        epochs,
        global_batch_size=GLOBAL_BATCH,
        jit_compile=config == "default_xla",
        verbose=False,
    )
    if distribute.is_chief(strategy):
        seconds = history["seconds"][1:]
        Path(out).write_text(
            json.dumps(
                {
                    "epoch_seconds": history["seconds"],
                    "seconds_per_epoch": statistics.median(seconds),
                    "replicas": history.replicas,
                    "strategy": type(strategy).__name__,
                    "final_loss": history["loss"][-1],
                }
            )
        )


def resnet_seconds(batch: int, steps: int) -> dict:
    """Seconds per training step of ResNet-50 on synthetic 224×224 images."""
    import cnnlearn._tf  # noqa: F401

    # isort: split
    import keras
    import numpy as np

    model = keras.applications.ResNet50(weights=None, input_shape=(224, 224, 3))
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.random((batch, 224, 224, 3), dtype=np.float32)
    y = rng.integers(0, 1000, batch)
    model.train_on_batch(x, y)  # tracing
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - start)
    return {
        "params": int(model.count_params()),
        "batch": batch,
        "seconds_per_step": float(statistics.median(times)),
        "steps_timed": steps,
        "measured_at": _measured_at(),
    }


def run_config(config: str, args, tmp: Path) -> dict:
    out = tmp / f"{config}.json"
    out.unlink(missing_ok=True)
    worker = [
        __file__, "--one", config, "--steps", str(args.steps),
        "--epochs", str(args.epochs), "--result", str(out),
        *(["--data-dir", args.data_dir] if args.data_dir else []),
    ]  # fmt: skip
    start = time.perf_counter()
    if config == "two_workers_loopback":
        from cnnlearn import distribute

        result = distribute.launch_workers(worker, 2, timeout=900, sink=sys.stderr)
        if not result.ok:
            raise RuntimeError(f"{config}: {result.failed}")
    else:
        subprocess.run([sys.executable, *worker], check=True, timeout=900)
    found = json.loads(out.read_text())
    found["process_seconds"] = time.perf_counter() - start
    found["measured_at"] = _measured_at()
    return found


def _measured_at() -> str:
    from cnnlearn.report import provenance

    return provenance.measured_at()


def summarize(rounds: list[dict], steps: int) -> dict:
    table = {}
    for config, description in CONFIGS.items():
        runs = [r[config] for r in rounds if config in r]
        if not runs:
            continue
        seconds = statistics.median(r["seconds_per_epoch"] for r in runs)
        table[config] = {
            "description": description,
            "replicas": runs[0]["replicas"],
            "strategy": runs[0]["strategy"],
            "ms_per_step": 1000 * seconds / steps,
            "steps_per_second": steps / seconds,
            "images_per_second": steps * GLOBAL_BATCH / seconds,
            "rounds": [r["seconds_per_epoch"] for r in runs],
            "measured_at": runs[-1]["measured_at"],  # its last round
        }
    base = table["default"]["images_per_second"]
    for row in table.values():
        row["speedup_vs_default"] = row["images_per_second"] / base
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=40, help="steps per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="the first is dropped")
    parser.add_argument("--resnet-batch", type=int, default=8)
    parser.add_argument("--resnet-steps", type=int, default=3)
    parser.add_argument("--skip-resnet", action="store_true")
    parser.add_argument("--data-dir")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--one", choices=list(CONFIGS), help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        return one(args.one, args.steps, args.epochs, args.data_dir, args.result)

    from cnnlearn._io import write_json
    from cnnlearn.report import provenance

    config = {
        k: v for k, v in vars(args).items() if k not in ("output", "one", "result")
    }
    config |= {
        "global_batch": GLOBAL_BATCH,
        "configs": CONFIGS,
        "model": "seed",
        "precision": "float32 (mixed_bfloat16 in default_bf16)",
        "jit_compile": "False (True in default_xla)",
    }
    record = provenance.start(config)
    start, load_before = time.perf_counter(), os.getloadavg()
    rounds = []
    with tempfile.TemporaryDirectory(prefix="cnnlearn-dist-") as tmp:
        for i in range(args.rounds):
            order = list(CONFIGS) if i % 2 == 0 else list(CONFIGS)[::-1]
            rounds.append({c: run_config(c, args, Path(tmp)) for c in order})
            print(f"round {i + 1}/{args.rounds} done", file=sys.stderr)
    configs = summarize(rounds, args.steps)
    compute = {
        "seed": {
            "params": 54_410,
            "batch": GLOBAL_BATCH,
            "seconds_per_step": configs["default"]["ms_per_step"] / 1000,
            "measured_at": configs["default"]["measured_at"],
        }
    }
    if not args.skip_resnet:
        code = (
            "import json, sys; sys.path.insert(0, sys.argv[1]); import distributed; "
            "print(json.dumps(distributed.resnet_seconds(int(sys.argv[2]), "
            "int(sys.argv[3]))))"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code, str(Path(__file__).parent),
             str(args.resnet_batch), str(args.resnet_steps)],
            capture_output=True, text=True, check=True, timeout=1800,
        )  # fmt: skip
        compute["resnet50"] = json.loads(proc.stdout.strip().splitlines()[-1])
    report = {
        "global_batch": GLOBAL_BATCH,
        "steps_per_epoch": args.steps,
        "epochs": args.epochs,
        "rounds": args.rounds,
        "configs": configs,
        "compute": compute,
        # chapter 5 prints it; the same loads, all three, are in "provenance"
        "load_average_before_after": [load_before[0], os.getloadavg()[0]],
        "machine": provenance.machine(),
        "total_seconds": time.perf_counter() - start,
        "provenance": record,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    provenance.finish(record)
    write_json(args.output, report)
    speed = {k: round(v["speedup_vs_default"], 2) for k, v in configs.items()}
    print(f"images/s relative to the default strategy: {speed} → {args.output}")


if __name__ == "__main__":
    main()
