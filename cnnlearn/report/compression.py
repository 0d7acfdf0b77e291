"""Tables and goal checks from ``benchmarks/results/compression.json`` and
``runtimes.json`` (chapter 6).

The benchmark stores one row per (model, method, seed); these functions average
over seeds (accuracy as mean ± standard deviation) and compute the ratios the
chapter quotes, all within that one run.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

__all__ = [
    "distillation_summary",
    "distillation_verdict",
    "fastest_runtimes",
    "goals",
    "runtime_choice",
    "int8_claim",
    "int8_verdicts",
    "runtime_table",
    "peer_table",
    "summarize",
    "summary_table",
]


def summarize(results: dict, model: str = "seed") -> list[dict]:
    """One dict per method of ``model``: seed-averaged numbers, in benchmark order."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in results["rows"]:
        if row["model"] == model:
            groups[row["method"]].append(row)
    summary = []
    for method, rows in groups.items():
        acc = np.array([r["accuracy"] for r in rows])
        entry = {
            "method": method,
            "seeds": len(rows),
            "nonzero_params": int(np.mean([r["nonzero_params"] for r in rows])),
            "accuracy": float(acc.mean()),
            "accuracy_std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
        }
        for key in ("raw_bytes", "gzip_bytes", "latency_ms", "throughput_per_s"):
            if key in rows[0]:
                entry[key] = float(np.mean([r[key] for r in rows]))
        summary.append(entry)
    return summary


def _accuracy(entry: dict) -> str:
    if entry["seeds"] > 1:
        return f"{100 * entry['accuracy']:.2f} ± {100 * entry['accuracy_std']:.2f} %"
    return f"{100 * entry['accuracy']:.2f} %"


def summary_table(results: dict, model: str = "seed") -> list[dict]:
    """The chapter's results table for ``model``, ready for ``markdown_table``.

    Sizes and latencies are of the TFLite file run by LiteRT (one thread);
    the ``keras`` row is the Keras model itself (its accuracy only). The
    ``× smaller`` column divides the float32 TFLite's gzip size by the row's.
    """
    summary = summarize(results, model)
    base = next(e for e in summary if e["method"] == "float32")["gzip_bytes"]
    table = []
    for e in summary:
        tflite = "raw_bytes" in e
        table.append(
            {
                "method": e["method"],
                "nonzero params": f"{e['nonzero_params']:,}",
                "raw KB": f"{e['raw_bytes'] / 1000:.1f}" if tflite else "",
                "gzip KB": f"{e['gzip_bytes'] / 1000:.1f}" if tflite else "",
                "× smaller (gzip)": f"{base / e['gzip_bytes']:.1f}" if tflite else "",
                "test accuracy": _accuracy(e),
                "µs/image (batch 1)": f"{1000 * e['latency_ms']:.0f}" if tflite else "",
                "images/s (batch 64)": f"{e['throughput_per_s']:,.0f}"
                if tflite
                else "",
            }
        )
    return table


def goals(results: dict) -> dict:
    """The issue's goals, measured: each with the numbers behind it.

    * ``int8``: float32/int8 TFLite size ratio (raw) and the accuracy change;
    * ``prune_int8``: every prune + int8 point with its gzip ratio to the
      float32 TFLite (gzip) and its accuracy change, and the smallest one
      within 0.3 points. Where the benchmark also fine-tuned the float model
      without pruning (the ``fine-tuned`` row: as many extra epochs as every
      pruned point had), each point's change against it too, and the smallest
      point within 0.3 points of that stricter reference;
    * ``latency``: Keras ``predict`` on one image over LiteRT int8 at batch 1.
    """
    seed = {e["method"]: e for e in summarize(results, "seed")}
    f32, int8 = seed["float32"], seed["int8"]
    tuned = seed.get("fine-tuned")
    frontier = []
    for method, e in seed.items():
        if method.endswith(" + int8") and not method.startswith("fine-tuned"):
            point = {
                "method": method,
                "gzip_bytes": e["gzip_bytes"],
                "ratio": f32["gzip_bytes"] / e["gzip_bytes"],
                "accuracy_change": e["accuracy"] - f32["accuracy"],
            }
            if tuned is not None:
                point["change_vs_fine_tuned"] = e["accuracy"] - tuned["accuracy"]
            frontier.append(point)

    def smallest_within(key: str):
        within = [p for p in frontier if p.get(key, -1) >= -0.003 - 1e-9]
        return max(within, key=lambda p: p["ratio"]) if within else None

    timing = results["keras_latency"]["seed"]
    keras_ms = timing["predict_ms"]
    # measured back to back with Keras when the benchmark did (its latency step)
    litert_ms = timing.get("litert_int8_ms", int8["latency_ms"])
    return {
        "int8": {
            "size_ratio": f32["raw_bytes"] / int8["raw_bytes"],
            "accuracy_change": int8["accuracy"] - f32["accuracy"],
        },
        "prune_int8": {
            "frontier": frontier,
            "best_within_0.3pt": smallest_within("accuracy_change"),
            "fine_tuned_accuracy": None if tuned is None else tuned["accuracy"],
            "best_within_0.3pt_of_fine_tuned": smallest_within("change_vs_fine_tuned"),
        },
        "latency": {
            "keras_predict_ms": keras_ms,
            "keras_call_ms": timing["call_ms"],
            "litert_int8_ms": litert_ms,
            "litert_float32_ms": timing.get("litert_float32_ms"),
            "predict_over_litert_int8": keras_ms / litert_ms,
            "load_average": timing.get("load_average"),
        },
    }


def peer_table(results: dict) -> list[dict]:
    """tfmot (tf_keras, its own process) beside ours, same weights and schedule."""
    peer = results["peer"]
    sides = peer["same_pipeline"]
    names = list(sides["ours"]["layers"])  # the same layers, in the same order
    rows = []
    for name, side in sides.items():
        values = list(side["layers"].values())
        rows.append(
            {
                "pruning": name,
                **{f"{k} sparsity": f"{100 * v:.2f} %" for k, v in zip(names, values)},
                "float32 TFLite gzip": f"{side['float32_gzip_bytes']:,} B",
                "dynamic TFLite gzip": f"{side['dynamic_gzip_bytes']:,} B",
                "test accuracy": f"{100 * side['accuracy']:.2f} %",
            }
        )
    return rows


def distillation_summary(results: dict) -> list[dict]:
    """Student from scratch vs distilled: mean ± std test accuracy over seeds."""
    dist = results["distillation"]
    rows = []
    for kind in ("scratch", "distilled"):
        acc = np.array([r["accuracy"] for r in dist["runs"] if r["method"] == kind])
        if len(acc) == 0:
            continue
        rows.append(
            {
                "student": kind,
                "params": f"{dist['student_params']:,}",
                "seeds": len(acc),
                "test accuracy": f"{100 * acc.mean():.2f} ± "
                f"{100 * (acc.std(ddof=1) if len(acc) > 1 else 0):.2f} %",
                "mean": float(acc.mean()),
                "std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
                "per seed": " ".join(f"{100 * a:.2f}" for a in acc),
            }
        )
    return rows


def distillation_verdict(rows: list[dict]) -> dict:
    """Did distillation help? The gain and a verdict built from the numbers.

    ``rows`` is :func:`distillation_summary`'s (``scratch`` and ``distilled``).
    The gain is the difference of the mean test accuracies; it counts as a gain
    or a loss only when it is larger than the larger of the two standard
    deviations over seeds, else the verdict is that no difference was measured.
    Chapter 6 prints the verdict next to the article's claim that distillation
    improves performance.
    """
    by_kind = {r["student"]: r for r in rows}
    scratch, distilled = by_kind["scratch"], by_kind["distilled"]
    gain = distilled["mean"] - scratch["mean"]
    spread = max(scratch.get("std", 0.0), distilled.get("std", 0.0))
    if gain > spread:
        verdict = "a gain larger than the spread between seeds"
    elif gain < -spread:
        verdict = "a loss larger than the spread between seeds"
    else:
        verdict = "no difference beyond the spread between seeds"
    return {"gain": gain, "spread": spread, "verdict": verdict}


def runtime_table(results: dict, model: str) -> list[dict]:
    """``benchmarks/runtimes.py``'s images per second (medians over interleaved
    rounds) for one model: a row per runtime, a column per batch size and thread
    count, with the runtime's accuracy on the test images and its file size."""
    mine = [r for r in results["rows"] if r["model"] == model]
    if not mine:
        raise ValueError(f"no runtime rows for model {model!r}")
    columns = list(dict.fromkeys((r["batch"], r["threads"]) for r in mine))
    table = []
    for runtime in dict.fromkeys(r["runtime"] for r in mine):
        found = {(r["batch"], r["threads"]): r for r in mine if r["runtime"] == runtime}
        row = {"runtime": runtime}
        for batch, threads in columns:
            label = f"b{batch} t{threads} img/s"
            row[label] = f"{found[(batch, threads)]['images_per_s']:,.0f}"
        first = found[columns[0]]
        row["accuracy"] = f"{first['accuracy']:.2%}"
        row["bytes"] = f"{first['raw_bytes']:,}"
        table.append(row)
    return table


def int8_verdicts(results: dict, family: str = "litert") -> list[dict]:
    """int8 against float32 in ``family``'s runtime, per model and batch size:
    the median per-round speed-up at each thread count, and whether int8 was
    faster at all of them (``"faster"``), slower at all (``"slower"``) or
    neither (``"mixed"``)."""
    rows: dict = {}
    for s in results["speedups"]:
        if s["family"] != family:
            continue
        row = rows.setdefault(
            (s["model"], s["batch"]),
            {"model": s["model"], "batch": s["batch"], "speedups": {}},
        )
        row["speedups"][s["threads"]] = s["int8_over_float32"]["median"]
    for row in rows.values():
        ups = list(row["speedups"].values())
        row["verdict"] = (
            "faster" if min(ups) > 1 else "slower" if max(ups) < 1 else "mixed"
        )
    return list(rows.values())


def int8_claim(verdicts: list[dict]) -> str:
    """The article's claim that quantization speeds inference up, judged per
    model and batch size from :func:`int8_verdicts`, as one Markdown sentence."""
    words = {
        "faster": "holds (int8 faster at every thread count)",
        "slower": "fails (int8 slower at every thread count)",
        "mixed": "depends on the thread count",
    }
    parts = [
        f"for the {v['model']} CNN at batch {v['batch']} it {words[v['verdict']]}"
        for v in verdicts
    ]
    return "The claim that int8 makes inference faster: " + "; ".join(parts) + "."


def fastest_runtimes(results: dict) -> list[dict]:
    """The runtime with the most images per second for each model, batch size
    and thread count of ``benchmarks/runtimes.py``'s result, and how many times
    the runner-up's speed it ran at (chapter 6: whether the server should offer
    another runtime)."""
    settings: dict = {}
    for r in results["rows"]:
        key = (r["model"], r["batch"], r["threads"])
        settings.setdefault(key, []).append(r)
    found = []
    for (model, batch, threads), rows in settings.items():
        first, second = sorted(rows, key=lambda r: -r["images_per_s"])[:2]
        found.append(
            {
                "model": model,
                "batch": batch,
                "threads": threads,
                "fastest": first["runtime"],
                "over_next": first["images_per_s"] / second["images_per_s"],
                "next": second["runtime"],
            }
        )
    return found


def runtime_choice(fastest: list[dict]) -> str:
    """One Markdown sentence from :func:`fastest_runtimes`: which runtime family
    won how many settings, and so whether the model server needs another
    runtime than LiteRT (chapter 6)."""
    families = [f["fastest"].split("-")[0] for f in fastest]
    onnx = families.count("onnx")
    if onnx == 0:
        return (
            f"LiteRT was the fastest runtime in all {len(fastest)} settings "
            "measured, so the model server keeps LiteRT as its fast backend."
        )
    wins = [f"{f['model']} b{f['batch']} t{f['threads']}" for f in fastest
            if f["fastest"].startswith("onnx")]  # fmt: skip
    return (
        f"ONNX Runtime was the fastest in {onnx} of {len(fastest)} settings "
        f"({', '.join(wins)}): a case for serving it too."
    )
