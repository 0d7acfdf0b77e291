"""Benchmark: four ways to feed the seed CNN the MNIST training set (chapter 3).

The feeds, each training its own seed CNN (``models.get_model("seed", seed=0)``,
Adam 1e-3, sparse categorical cross-entropy, batch 128, as ``train.fit`` does):

a. ``numpy``: preprocessed float32 arrays passed to ``Model.fit``;
b. ``tf_data_memory``: ``pipeline.make_dataset`` (uint8 in memory, cache, prefetch);
c. ``tfrecord_sequential``: ``pipeline.tfrecord_dataset`` over 8 GZIP shards,
   one shard at a time (``cycle_length=1``), no prefetch;
d. ``tfrecord_parallel``: the same shards, parallel interleave and prefetch.

All four shuffle; the tf.data ones are seeded (deterministic). One round trains
one epoch per feed, in the order a b c d; the first round is a warm-up (graph
tracing, file cache). Reported: the median over the other rounds, and for the
ratios also the median of each round's own ratio (``*_paired``), which the
machine's drift from round to round disturbs less. Then the pipelines run
alone, without a model: images per second, and CPU seconds per epoch (what
they take from a model that needs every core), with (d) from uncompressed shards
too, to show what GZIP costs. So does augmentation, with and without a seed
(a seeded pipeline augments one batch at a time; see ``cnnlearn.pipeline``).
``background_load`` tells how much of the CPUs other processes (and, on a
virtual machine, the host) took during the run: the noise in the numbers. Writes
``benchmarks/results/input_pipeline.json``; chapter 3 shows it.

    nice python benchmarks/input_pipeline.py              # ~4 minutes on 2 cores
    python benchmarks/input_pipeline.py --rounds 2        # a quick look

Not a test: nothing here asserts a timing. The book reads the numbers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import cnnlearn._tf  # noqa: F401  (quiet TensorFlow start-up; before Keras)

# isort: split
import keras

from cnnlearn import data, models, pipeline, train
from cnnlearn._io import write_json
from cnnlearn.report import provenance

RESULTS = Path(__file__).parent / "results" / "input_pipeline.json"
BATCH_SIZE = 128
FEEDS = {
    "numpy": "float32 NumPy arrays passed to Model.fit",
    "tf_data_memory": "make_dataset: uint8 in memory, cache, shuffle, prefetch",
    "tfrecord_sequential": "tfrecord_dataset: cycle_length=1, no prefetch",
    "tfrecord_parallel": "tfrecord_dataset: parallel interleave, prefetch",
}


def compiled_seed_cnn() -> keras.Model:
    model = models.get_model("seed", seed=0)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def epoch_seconds(model: keras.Model, feed, x_float, y) -> float:
    """Train one epoch; the seconds between its begin and end callbacks."""
    kwargs = dict(epochs=1, callbacks=[train.EpochTimer()], verbose=0)
    if feed is None:
        history = model.fit(x_float, y, batch_size=BATCH_SIZE, **kwargs)
    else:
        history = model.fit(feed, shuffle=False, **kwargs)  # feed shuffles
    return history.history["seconds"][0]


def pass_seconds(ds) -> tuple[float, float]:
    """Wall-clock and CPU seconds (all threads) to iterate one epoch of ``ds``."""
    start, cpu = time.perf_counter(), time.process_time()
    for _ in ds:
        pass
    return time.perf_counter() - start, time.process_time() - cpu


def cpu_seconds() -> tuple[float, float, float] | None:
    """Busy, stolen and total CPU seconds of all cores (Linux /proc/stat)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split()[1:9]]
    except (OSError, ValueError):
        return None
    hz = os.sysconf("SC_CLK_TCK")
    busy = sum(fields) - fields[3] - fields[4] - fields[7]  # not idle/iowait/steal
    return busy / hz, fields[7] / hz, sum(fields) / hz


def background_load(before, after, own_cpu: float) -> dict:
    """What the rest of the machine took while the benchmark ran, a noise gauge."""
    busy, steal, total = (b - a for a, b in zip(before, after))
    return {
        "other_processes_cpu_fraction": max(0.0, busy - own_cpu) / total,
        "cpu_steal_fraction": steal / total,
    }


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def write_shards(x, y, shard_dir: Path, num_shards: int) -> tuple[str, dict]:
    """Write the GZIP shards and check them: their glob pattern and the timings."""
    start = time.perf_counter()
    paths = pipeline.write_tfrecords(x, y, shard_dir, num_shards)
    write_seconds = time.perf_counter() - start
    pattern = str(shard_dir / "train-*")
    start = time.perf_counter()
    pipeline.check_shards(pattern)
    check_seconds = time.perf_counter() - start
    return pattern, {
        "write_seconds": write_seconds,
        "bytes": sum(p.stat().st_size for p in paths),
        "measured_at": provenance.measured_at(),
        "raw_image_bytes": int(x.nbytes),
        "check_shards_seconds": check_seconds,
    }


def datasets(x, y, pattern: str, verify: bool = False) -> dict:
    """Feeds b, c and d: seeded training pipelines over the same images."""
    common = dict(batch_size=BATCH_SIZE, training=True, seed=0, verify=verify)
    return {
        "tf_data_memory": pipeline.make_dataset(
            x, y, BATCH_SIZE, training=True, seed=0
        ),
        "tfrecord_sequential": pipeline.tfrecord_dataset(
            pattern, cycle_length=1, prefetch=False, **common
        ),
        "tfrecord_parallel": pipeline.tfrecord_dataset(pattern, **common),
    }


def timed_rounds(rounds: int, items: dict, measure, progress=None) -> dict:
    """``measure(item)`` for each item in turn, ``rounds + 1`` times.

    The first round is a warm-up and is not kept; ``progress(round, name,
    value)``, if given, hears every measurement.
    """
    kept = {name: [] for name in items}
    for r in range(rounds + 1):
        for name, item in items.items():
            value = measure(item)
            if r > 0:
                kept[name].append(value)
            if progress is not None:
                progress(r, name, value)
    return kept


def train_rounds(feeds: dict, x_float, y, rounds: int, steps: int) -> dict:
    """Seconds per training epoch of each feed, each with its own seed CNN."""
    runs = {name: (compiled_seed_cnn(), feed) for name, feed in feeds.items()}

    def progress(r: int, name: str, s: float) -> None:
        print(f"round {r} {name}: {steps / s:.1f} steps/s", flush=True)

    def one_epoch(run) -> float:
        model, feed = run
        return epoch_seconds(model, feed, x_float, y)

    return timed_rounds(rounds, runs, one_epoch, progress)


def train_section(seconds: dict, steps: int, measured_at: str) -> dict:
    """The ``train`` part of the result: each feed's epochs and steps/s."""
    return {
        name: {
            "description": FEEDS[name],
            "seconds_per_epoch": times,
            "steps_per_second": [steps / s for s in times],
            "median_steps_per_second": steps / median(times),
            "measured_at": measured_at,
        }
        for name, times in seconds.items()
    }


def alone_section(pass_times: dict, n_images: int, measured_at: str) -> dict:
    """The ``pipeline_only`` part: each pipeline's epochs without a model."""
    return {
        name: {
            "seconds_per_epoch": [wall for wall, _ in times],
            "median_images_per_second": n_images / median([w for w, _ in times]),
            "cpu_seconds_per_epoch": [cpu for _, cpu in times],
            "median_cpu_seconds_per_epoch": median([c for _, c in times]),
            "measured_at": measured_at,
        }
        for name, times in pass_times.items()
    }


def augmentation_section(aug_times: dict, n_images: int, measured_at: str) -> dict:
    """The ``augmentation_pipeline_only`` part, seeded against unseeded."""
    return {
        name: {
            "images": n_images,
            "seconds": times,
            "median_images_per_second": n_images / median(times),
            "measured_at": measured_at,
        }
        for name, times in aug_times.items()
    }


def ratios_section(seconds: dict, train: dict, alone: dict, augment: dict) -> dict:
    """Feed against feed: medians, and same-round ratios (``*_paired``)."""
    sps = {k: v["median_steps_per_second"] for k, v in train.items()}
    ips = {k: v["median_images_per_second"] for k, v in alone.items()}
    pairs = {"d": "tfrecord_parallel", "c": "tfrecord_sequential"}
    pairs.update(b="tf_data_memory", a="numpy")
    ratios = {}
    for top, bottom in ("db", "cb", "ba", "da"):
        num, den = pairs[top], pairs[bottom]
        ratios[f"train_{top}_over_{bottom}"] = sps[num] / sps[den]
        # Same-round ratios, robust to the machine's drift from round to round.
        ratios[f"train_{top}_over_{bottom}_paired"] = median(
            [b / a for a, b in zip(seconds[num], seconds[den])]
        )
    cpu = "median_cpu_seconds_per_epoch"
    rate = "median_images_per_second"
    return {
        **ratios,
        "pipeline_d_over_b": ips["tfrecord_parallel"] / ips["tf_data_memory"],
        "pipeline_c_over_b": ips["tfrecord_sequential"] / ips["tf_data_memory"],
        "pipeline_cpu_d_over_b": (
            alone["tfrecord_parallel"][cpu] / alone["tf_data_memory"][cpu]
        ),
        "augment_seeded_over_unseeded": (
            augment["geometric_seed_0"][rate] / augment["geometric_seed_None"][rate]
        ),
    }


def bench(args, shard_dir: Path) -> dict:
    """The four phases, in order: write the shards, train on each feed, run the
    pipelines alone, run augmentation alone."""
    (x, y), _ = data.load_dataset("mnist", args.data_dir)
    x_float = data.preprocess_images(x)
    steps = -(-len(x) // BATCH_SIZE)
    pattern, tfrecords = write_shards(x, y, shard_dir, args.shards)

    feeds = {"numpy": None, **datasets(x, y, pattern, verify=True)}
    seconds = train_rounds(feeds, x_float, y, args.rounds, steps)
    # The feeds take turns, round by round: one time for all.
    train_results = train_section(seconds, steps, provenance.measured_at())

    alone = datasets(x, y, pattern)
    raw_dir = shard_dir / "uncompressed"  # what GZIP costs in CPU
    pipeline.write_tfrecords(x, y, raw_dir, args.shards, compression="")
    alone["tfrecord_parallel_uncompressed"] = pipeline.tfrecord_dataset(
        str(raw_dir / "train-*"), BATCH_SIZE, True, seed=0, compression=""
    )
    pass_times = timed_rounds(args.rounds, alone, pass_seconds)
    alone_results = alone_section(pass_times, len(x), provenance.measured_at())

    n_aug = args.augment_images
    augmented = {
        f"geometric_seed_{seed}": pipeline.make_dataset(
            x[:n_aug], y[:n_aug], BATCH_SIZE, True, "geometric", seed=seed
        )
        for seed in (0, None)
    }
    aug_times = timed_rounds(args.rounds, augmented, lambda ds: pass_seconds(ds)[0])
    aug_results = augmentation_section(aug_times, n_aug, provenance.measured_at())
    return {
        "settings": {
            "model": "seed",
            "batch_size": BATCH_SIZE,
            "n_train": len(x),
            "steps_per_epoch": steps,
            "timed_rounds": args.rounds,
            "warmup_rounds": 1,
            "shuffle": "all feeds; tf.data feeds seeded (seed=0)",
            "num_shards": args.shards,
            "compression": "GZIP",
            "parallel_cycle_length": "None (one shard per core)",
            "tfrecord_shuffle_buffer": 10_000,
        },
        "tfrecords": tfrecords,
        "train": train_results,
        "pipeline_only": alone_results,
        "augmentation_pipeline_only": aug_results,
        "ratios": ratios_section(seconds, train_results, alone_results, aug_results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8, help="timed rounds")
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--augment-images", type=int, default=10_000)
    parser.add_argument("--data-dir")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    config = {k: v for k, v in vars(args).items() if k != "output"}
    config |= {
        "model": "seed (seed=0), Adam 1e-3, float32, Model.fit",
        "batch_size": BATCH_SIZE,
        "feeds": FEEDS,
        "compression": "GZIP",
    }
    record = provenance.start(config)
    start, own, before = time.perf_counter(), time.process_time(), cpu_seconds()
    with tempfile.TemporaryDirectory(prefix="cnnlearn-shards-") as tmp:
        report = bench(args, Path(tmp))
    if before is not None and (after := cpu_seconds()) is not None:
        own_cpu = time.process_time() - own
        report["background_load"] = background_load(before, after, own_cpu)
    report["machine"] = provenance.machine()
    report["total_seconds"] = time.perf_counter() - start
    report["provenance"] = provenance.finish(record)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.output, report)
    ratios = report["ratios"]
    print(
        f"d/b {ratios['train_d_over_b']:.3f} (paired by round "
        f"{ratios['train_d_over_b_paired']:.3f}, pipeline alone "
        f"{ratios['pipeline_d_over_b']:.2f}); written to {args.output}"
    )


if __name__ == "__main__":
    main()
