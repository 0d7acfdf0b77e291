"""Benchmark: what pruning, quantization, fusion and distillation buy on MNIST.

Writes ``benchmarks/results/compression.json``, which chapter 6 reads:

* ``rows``: one row per (model, method, seed) with nonzero parameters, file size
  raw and gzipped, LiteRT test accuracy on all 10,000 test images, latency per
  image at batch 1 and throughput at batch 64 (LiteRT, 1 thread);
* the seed CNN over several seeds: float32, dynamic, int8, float16 TFLite and
  the pruning frontier (unstructured 80-95 %, 2:4 structured), each then int8;
* the strong CNN (one seed): the four modes, batch-norm folding, prune + int8;
* ``peer``: tfmot's pruning on a tf_keras copy of the same trained seed CNN, in
  a subprocess, beside ours with the same schedule;
* ``distillation``: a 12.8k-parameter student, distilled from the strong CNN
  and trained from scratch, over several seeds;
* ``keras_latency``: Keras ``predict`` and a direct call on one image.

    python benchmarks/model_compression.py              # everything, one process
    python benchmarks/model_compression.py --quick      # a smoke run (~3 minutes)
    python benchmarks/model_compression.py --skip strong distill --output a.json
    python benchmarks/model_compression.py --skip seed --output b.json   # in parallel
    python benchmarks/model_compression.py --merge a.json b.json

The committed results file was merged (``--merge``) from two runs on a quiet
machine: one full ``--frontier-epochs 5`` run (about 14 minutes on 2 cores) and a
``--skip seed strong distill`` run that re-measured the latency step after a fix
(the seed CNN section used to overwrite its LiteRT numbers).
Each run records its provenance (commit, command, config, machine, load) and
each row when it was measured and the training plan where it trained. A merged
file has no file-level config: every row carries its part's config, and each
part's provenance is kept under ``provenance["parts"]``. Parts made with
different configs are refused when a row's config is unknown.
Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import defaultdict
from pathlib import Path

import cnnlearn._tf  # noqa: F401

# isort: split
import keras
import numpy as np

from cnnlearn import data, models, train
from cnnlearn._io import write_json
from cnnlearn.compress import (
    count_nonzero,
    distill,
    fuse,
    prune,
    quantize,
    schedules,
    size_report,
    tfmot_peer,
)
from cnnlearn.progress import say
from cnnlearn.report import provenance

RESULTS = Path(__file__).parent / "results" / "compression.json"
FRONTIER = {  # method name: (sparsity, m_by_n)
    "prune 80%": (0.8, None),
    "prune 90%": (0.9, None),
    "prune 95%": (0.95, None),
    "prune 2:4": (0.5, (2, 4)),
}
DENSE_FRONTIER = {  # only the big Dense layer (5408 x 10); the 288 conv weights stay
    "dense 90%": 0.9,
    "dense 93%": 0.93,
    "dense 95%": 0.95,
    "dense 97%": 0.97,
}
# The training plans (cnnlearn.train.fit's plan=); None: compute.plan's choice on
# this machine, which each row records as "plan".
PLANS = {
    "seed_base": None,
    "fine_tune_and_prune": prune.FIT_PLAN,
    "peer_ours": prune.FIT_PLAN,
    "strong": "{'precision': --strong-precision}",
    "student": None,
}


def log(message: str) -> None:
    """A progress line with the time of day (the benchmark runs for hours)."""
    say(f"{time.strftime('%H:%M:%S')} {message}")


def copy_of(model: keras.Model) -> keras.Model:
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def tflite_row(model, method, seed, content, x_test, y_test, name, **extra) -> dict:
    ev = quantize.evaluate_tflite(content, x_test, y_test)
    return {
        "model": name,
        "method": method,
        "seed": seed,
        **count_nonzero(model),
        **{k: ev[k] for k in ("raw_bytes", "gzip_bytes", "accuracy")},
        "latency_ms": ev["latency_ms"],
        "throughput_per_s": ev["throughput_per_s"],
        **extra,
        "measured_at": provenance.measured_at(),
    }


def keras_latency(model: keras.Model, x: np.ndarray, n: int = 50) -> dict:
    one = x[:1]
    model.predict(one, verbose=0)
    times = []
    for i in range(n):
        start = time.perf_counter()
        model.predict(x[i : i + 1], verbose=0)
        times.append(time.perf_counter() - start)
    calls = []
    model(one, training=False)
    for i in range(n):
        start = time.perf_counter()
        np.asarray(model(x[i : i + 1], training=False))
        calls.append(time.perf_counter() - start)
    return {
        "predict_ms": 1000 * float(np.median(times)),
        "call_ms": 1000 * float(np.median(calls)),
        "measured_at": provenance.measured_at(),
    }


def latency_section(xtr, xte, report, repeats: int = 3) -> None:
    """Keras and LiteRT on one image, back to back in this process.

    Latency does not depend on the weights, so a fresh seed CNN serves; the
    measurements alternate ``repeats`` times and the medians are kept.
    """
    log("latency: Keras predict / call vs LiteRT, one image")
    model = models.get_model("seed", seed=0)
    contents = {m: quantize.convert(model, m, xtr[:300]) for m in ("float32", "int8")}
    found: dict[str, list[float]] = defaultdict(list)
    for _ in range(repeats):
        for key, value in keras_latency(model, xte).items():
            if key != "measured_at":
                found[key].append(value)
        for mode, content in contents.items():
            ev = quantize.evaluate_tflite(content, xte[:1000], yte_dummy(1000))
            found[f"litert_{mode}_ms"].append(ev["latency_ms"])
    report["keras_latency"]["seed"] = {
        k: float(np.median(v)) for k, v in found.items()
    } | {
        "load_average": os.getloadavg(),
        "repeats": repeats,
        "measured_at": provenance.measured_at(),
    }


def yte_dummy(n: int) -> np.ndarray:
    """Labels for latency-only runs (accuracy is not looked at)."""
    return np.zeros(n, dtype=np.int64)


def seed_cnn_section(args, xtr, ytr, xte, yte, raw, report, save) -> None:
    rows = report["rows"]
    for seed in args.seed_list or range(args.seeds):
        log(f"seed CNN, seed {seed}: training {args.base_epochs} epochs")
        base = models.get_model("seed", seed=seed)
        result = train.fit(
            base,
            xtr,
            ytr,
            epochs=args.base_epochs,
            batch_size=128,
            seed=seed,
            verbose=0,
        )
        report["train_seconds"].append(result.train_seconds)
        if result.plan is not None:
            report["train_plan"] = {
                "precision": result.plan.precision,
                "steps_per_execution": result.plan.steps_per_execution,
            }
        keras_acc = train.evaluate(base, xte, yte).accuracy
        rows.append(
            {
                "model": "seed",
                "method": "keras",
                "seed": seed,
                **count_nonzero(base),
                "accuracy": keras_acc,
                "plan": result.plan.to_dict(),
                "measured_at": provenance.measured_at(),
            }
        )
        int8 = None
        for mode in quantize.MODES:
            content = quantize.convert(base, mode, xtr[:300])
            rows.append(tflite_row(base, mode, seed, content, xte, yte, "seed"))
            int8 = content if mode == "int8" else int8
        if seed == 0 and not args.no_peer:
            # The latency step measured the seed CNN already, LiteRT beside
            # Keras; without it (--skip latency), Keras alone on this model.
            report["keras_latency"].setdefault("seed", keras_latency(base, xte))
            report["ops"]["seed"] = {
                "keras": fuse.keras_ops(base),
                "tflite_float32": fuse.tflite_ops(quantize.convert(base)),
                "tflite_int8": fuse.tflite_ops(int8),
            }
            peer_section(args, base, xtr, ytr, xte, yte, raw, report)
        save()
        dense = next(
            layer.name
            for layer in prune.prunable_layers(base)
            if isinstance(layer, keras.layers.Dense)
        )
        configs = {}
        if args.frontier in ("all", "uniform"):
            configs.update(FRONTIER)
        if args.frontier in ("all", "dense"):
            configs.update({k: ({dense: v}, None) for k, v in DENSE_FRONTIER.items()})
        # The reference for the frontier: the same fine-tuning as every pruned
        # point (epochs, learning rate, plan), at 0 % sparsity. Pruned models
        # train longer than the baseline; this row shows what that alone buys.
        log(f"seed CNN, seed {seed}: fine-tuned, unpruned")
        tuned = copy_of(base)
        tuning = train.fit(
            tuned,
            xtr,
            ytr,
            epochs=args.frontier_epochs,
            batch_size=128,
            learning_rate=5e-4,  # prune.prune_model's
            seed=seed,
            verbose=0,
            plan=prune.FIT_PLAN,
        )
        for mode in ("float32", "int8"):
            content = quantize.convert(tuned, mode, xtr[:300])
            label = "fine-tuned" + ("" if mode == "float32" else " + int8")
            plan = tuning.plan.to_dict()
            rows.append(
                tflite_row(tuned, label, seed, content, xte, yte, "seed", plan=plan)
            )
        for method, (sparsity, m_by_n) in configs.items():
            log(f"seed CNN, seed {seed}: {method}")
            pruned, pruning = prune.prune_model(
                copy_of(base),
                xtr,
                ytr,
                sparsity,
                epochs=args.frontier_epochs,
                m_by_n=m_by_n,
                seed=seed,
                initial_sparsity=0.0,
            )
            layers = {r["layer"]: r["sparsity"] for r in prune.sparsity_report(pruned)}
            for mode in ("float32", "int8"):
                content = quantize.convert(pruned, mode, xtr[:300])
                label = method if mode == "float32" else f"{method} + int8"
                rows.append(
                    tflite_row(
                        pruned, label, seed, content, xte, yte, "seed", sparsity=layers
                    )
                )
        save()


def peer_section(args, base, xtr, ytr, xte, yte, raw, report) -> None:
    """tfmot (tf_keras, subprocess) and ours, same weights, same schedule."""
    log("peer: tfmot in a subprocess")
    (raw_xtr, raw_ytr), (raw_xte, raw_yte) = raw
    n_train = len(xtr) - int(round(len(xtr) * 0.1))
    steps = -(-n_train // 128) * args.prune_epochs
    end = schedules.ramp_end_step(steps, 10)
    peer = tfmot_peer.run_peer(
        base.get_weights(),
        (raw_xtr, raw_ytr),
        (raw_xte, raw_yte),
        initial_sparsity=0.5,
        final_sparsity=0.8,
        frequency=10,
        end_step=end,
        epochs=args.prune_epochs,
        learning_rate=1e-3,
    )
    peer_model = models.get_model("seed")
    peer_model.set_weights(peer.pop("weights"))
    log("peer: ours, same schedule")
    schedule = schedules.PolynomialDecay(
        initial_sparsity=0.5,
        final_sparsity=0.8,
        begin_step=0,
        end_step=end,
        frequency=10,
    )
    ours = copy_of(base)
    pruning = prune.MagnitudePruning(schedule)
    train.fit(
        ours,
        xtr,
        ytr,
        epochs=args.prune_epochs,
        batch_size=128,
        callbacks=[pruning],
        plan=prune.FIT_PLAN,
        verbose=0,
    )
    ours = prune.strip(ours, pruning)
    sides = {}
    for name, model in (("tfmot", peer_model), ("ours", ours)):
        float32 = quantize.convert(model)
        dynamic = quantize.convert(model, "dynamic")
        sides[name] = {
            "layers": {r["layer"]: r["sparsity"] for r in prune.sparsity_report(model)},
            "accuracy": quantize.evaluate_tflite(float32, xte, yte)["accuracy"],
            **{f"float32_{k}": v for k, v in size_report(float32).items()},
            **{f"dynamic_{k}": v for k, v in size_report(dynamic).items()},
        }
    report["peer"] = {
        "tfmot_process": peer,
        "same_pipeline": sides,
        "schedule": {
            "initial": 0.5,
            "final": 0.8,
            "frequency": 10,
            "end_step": end,
            "steps": steps,
        },
        "measured_at": provenance.measured_at(),
    }


def fit_strong(xtr, ytr, epochs: int, precision: str) -> train.TrainResult:
    """The strong CNN trained with its recipe at batch 128, seed 0 (also used by
    ``benchmarks/runtimes.py``)."""
    spec = models.get_spec("strong")
    return train.fit(
        models.get_model("strong", seed=0),
        xtr,
        ytr,
        epochs=epochs,
        batch_size=128,
        learning_rate=spec.learning_rate,
        lr_schedule=spec.lr_schedule,
        seed=0,
        verbose=0,
        plan={"precision": precision},
    )


def strong_section(args, xtr, ytr, xte, yte, report, save) -> keras.Model:
    rows = report["rows"]
    saved = args.strong_model
    if saved is not None and saved.is_file():
        log(f"strong CNN: loading {saved}")
        strong = keras.models.load_model(saved)
    plan = None
    if saved is None or not saved.is_file():
        log(f"strong CNN: training {args.strong_epochs} epochs")
        result = fit_strong(xtr, ytr, args.strong_epochs, args.strong_precision)
        strong = result.model
        report["strong_train_seconds"] = result.train_seconds
        plan = result.plan.to_dict()
        if saved is not None:
            strong.save(saved)
    rows.append(
        {
            "model": "strong",
            "method": "keras",
            "seed": 0,
            **count_nonzero(strong),
            "accuracy": train.evaluate(strong, xte, yte).accuracy,
            "plan": plan if plan else f"loaded from {saved}",
            "measured_at": provenance.measured_at(),
        }
    )
    for mode in quantize.MODES:
        content = quantize.convert(strong, mode, xtr[:300])
        rows.append(tflite_row(strong, mode, 0, content, xte, yte, "strong"))
    folded = fuse.fold_batchnorm(strong)
    diff = float(
        np.abs(
            strong.predict(xte[:1000], verbose=0)
            - folded.predict(xte[:1000], verbose=0)
        ).max()
    )
    content = quantize.convert(folded)
    rows.append(
        tflite_row(folded, "fold BN", 0, content, xte, yte, "strong", max_abs_diff=diff)
    )
    report["keras_latency"]["strong"] = keras_latency(strong, xte)
    report["keras_latency"]["strong_folded"] = keras_latency(folded, xte)
    report["ops"]["strong"] = {
        "keras": fuse.keras_ops(strong),
        "keras_folded": fuse.keras_ops(folded),
        "tflite_float32": fuse.tflite_ops(quantize.convert(strong)),
        "tflite_float32_folded": fuse.tflite_ops(content),
    }
    save()
    if not args.strong_prune_epochs:
        return strong
    log("strong CNN: prune 80% + int8")
    pruned, _ = prune.prune_model(
        copy_of(strong), xtr, ytr, 0.8, epochs=args.strong_prune_epochs, seed=0
    )
    for mode in ("float32", "int8"):
        content = quantize.convert(pruned, mode, xtr[:300])
        label = "prune 80%" if mode == "float32" else "prune 80% + int8"
        rows.append(tflite_row(pruned, label, 0, content, xte, yte, "strong"))
    save()
    return strong


def distill_section(args, teacher, xtr, ytr, xte, yte, report, save) -> None:
    runs = report["distillation"]["runs"]
    report["distillation"].update(
        teacher_params=int(teacher.count_params()),
        student_params=int(distill.student_cnn().count_params()),
        temperature=args.temperature,
        alpha=args.alpha,
        epochs=args.student_epochs,
    )
    log("student: the teacher's outputs, once")
    targets = distill.soft_targets(teacher, xtr, ytr)  # offline distillation
    for seed in range(args.seeds):
        for kind in ("scratch", "distilled"):
            log(f"student, seed {seed}: {kind}")
            keras.utils.set_random_seed(seed)
            student = distill.student_cnn()
            model, y = student, ytr
            if kind == "distilled":
                model = distill.Distiller(student, None, args.temperature, args.alpha)
                y = targets
            result = train.fit(
                model,
                xtr,
                y,
                epochs=args.student_epochs,
                batch_size=128,
                seed=seed,
                verbose=0,
            )
            content = quantize.convert(student)
            row = tflite_row(student, kind, seed, content, xte, yte, "student")
            plan = result.plan.to_dict()
            runs.append({**row, "train_seconds": result.train_seconds, "plan": plan})
            save()


def part_config(part: dict) -> dict | None:
    """The config a part was made with: its provenance's, else its own (older)."""
    return (part.get("provenance") or {}).get("config") or part.get("config")


def merge(paths: list[Path], output: Path) -> None:
    """Combine the files of runs made with ``--skip`` into one results file.

    Every row (and distillation run, latency and peer section) keeps the config
    of the part that measured it; the merged file has no config of its own, and
    its provenance keeps each part's under ``"parts"``. Parts with different
    configs are refused when one of them does not say its config.
    """
    record = provenance.start({"merge": [str(p) for p in paths]})
    parts = [json.loads(Path(p).read_text()) for p in paths]
    record["parts"] = [
        {"file": Path(path).name, **(part.get("provenance") or {})}
        | {"config": part_config(part)}
        for path, part in zip(paths, parts)
    ]
    notes = [  # what each part's own record says (busy machine, older file...)
        f"{Path(path).name}: {line}"
        for path, part in zip(paths, parts)
        for line in provenance.notes({"provenance": part.get("provenance")})
    ]
    for part in parts:
        config = part_config(part)
        if config is None:
            continue
        for row in [*part["rows"], *part["distillation"]["runs"]]:
            row.setdefault("config", config)
        for section in [*part["keras_latency"].values(), part.get("peer")]:
            if section is not None:
                section.setdefault("config", config)
    rows = provenance.merge_rows([row for part in parts for row in part["rows"]], parts)
    merged = parts[0]
    merged.pop("config", None)
    for part in parts[1:]:
        merged["train_seconds"] += part["train_seconds"]
        for key in ("keras_latency", "ops"):
            merged[key] = {**merged[key], **part[key]}
        if "load_average" in part["keras_latency"].get("seed", {}):  # --skip ... only
            merged["keras_latency"]["seed"] = part["keras_latency"]["seed"]
        if part["distillation"]["runs"]:
            merged["distillation"] = part["distillation"]
        for key in ("peer", "train_plan", "strong_train_seconds"):
            if key in part:
                merged[key] = part[key]
        merged["total_seconds"] = max(merged["total_seconds"], part["total_seconds"])
    seen, merged["rows"] = set(), []
    for row in rows:  # a seed run twice counts once
        key = (row["model"], row["method"], row["seed"])
        if key not in seen:
            seen.add(key)
            merged["rows"].append(row)
    merged["merged_from"] = [Path(p).name for p in paths]
    machines = {json.dumps(part.get("machine"), sort_keys=True) for part in parts}
    record["notes"] = [
        f"Merged from {len(parts)} runs ({', '.join(merged['merged_from'])}): each "
        "row keeps its own run's config and measured_at; each run's provenance "
        "is under provenance['parts']."
    ]
    if len(machines) > 1:
        record["notes"].append(
            "The parts ran on different machines; the file's machine is the first "
            "part's (each part's is under provenance['parts'])."
        )
    record["notes"] += notes
    merged["provenance"] = provenance.finish(record)
    write_json(output, merged)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--seed-list", type=int, nargs="+", help="seed CNN seeds (default: all)"
    )
    parser.add_argument("--base-epochs", type=int, default=3)
    parser.add_argument(
        "--prune-epochs", type=int, default=2, help="the tfmot cross-check's"
    )
    parser.add_argument(
        "--frontier-epochs", type=int, default=2, help="fine-tuning while pruning"
    )
    parser.add_argument("--strong-epochs", type=int, default=2)
    parser.add_argument("--strong-prune-epochs", type=int, default=0)
    parser.add_argument("--student-epochs", type=int, default=2)
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--alpha", type=float, default=0.1)
    parser.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=["latency", "seed", "strong", "distill"],
    )
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument(
        "--frontier", default="all", choices=["all", "uniform", "dense"]
    )
    parser.add_argument("--no-peer", action="store_true", help="skip the tfmot run")
    parser.add_argument(
        "--strong-precision", default="float32", help="the strong CNN's training"
    )
    parser.add_argument(
        "--strong-model", type=Path, help="load the strong CNN from here, or save it"
    )
    parser.add_argument("--data-dir")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--merge", nargs="+", type=Path, help="combine these results files"
    )
    args = parser.parse_args()
    if args.merge:
        merge(args.merge, args.output)
        return
    if args.quick:
        args.seeds, args.base_epochs, args.prune_epochs = 1, 1, 1
        args.frontier_epochs = 1
        args.strong_epochs = args.strong_prune_epochs = args.student_epochs = 1
        args.seeds = 2

    config = {
        k: str(v) if isinstance(v, Path) else v
        for k, v in vars(args).items()
        if k not in ("output", "data_dir", "merge")
    }
    config |= {
        "train_images": 6000 if args.quick else 60000,
        "litert_threads": 1,
        "frontier_methods": {k: [v[0], v[1]] for k, v in FRONTIER.items()},
        "dense_frontier": DENSE_FRONTIER,
        "plans": PLANS,
    }
    record = provenance.start(config)
    raw = data.load_dataset("mnist", args.data_dir)
    (x_train, y_train), (x_test, y_test) = raw
    if args.quick:
        x_train, y_train = x_train[:6000], y_train[:6000]
        raw = ((x_train, y_train), raw[1])
    xtr, xte = data.preprocess_images(x_train), data.preprocess_images(x_test)
    start = time.perf_counter()
    report = {
        "config": config,
        "provenance": record,
        "machine": provenance.machine(),
        "litert_threads": 1,
        "rows": [],
        "train_seconds": [],
        "keras_latency": {},
        "ops": {},
        "distillation": {"runs": []},
    }

    def save() -> None:
        report["total_seconds"] = time.perf_counter() - start
        args.output.parent.mkdir(parents=True, exist_ok=True)
        provenance.finish(report["provenance"])
        write_json(args.output, report)

    if "latency" not in args.skip:
        latency_section(xtr, xte, report)
        save()
    if "seed" not in args.skip:
        seed_cnn_section(args, xtr, y_train, xte, y_test, raw, report, save)
    if "strong" not in args.skip:
        teacher = strong_section(args, xtr, y_train, xte, y_test, report, save)
        if "distill" not in args.skip:
            distill_section(args, teacher, xtr, y_train, xte, y_test, report, save)
    save()
    log(f"done in {report['total_seconds']:.0f} s → {args.output}")


if __name__ == "__main__":
    main()
