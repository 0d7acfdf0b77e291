"""One headline per benchmark, for the book's summary chapter (chapter 10)."""

from __future__ import annotations

import json
from pathlib import Path

from cnnlearn.report import compression
from cnnlearn.report.benchmarks import results_dir as find_results

__all__ = ["SUMMARY_TOPICS", "chapter_summary"]


def _pct(value: float) -> str:
    return f"{100 * value:.2f} %"


def _conv_ops(r: dict) -> str:
    fwd = r["interleaved"]["ratios"]["forward"]
    return (
        f"forward pass vs tf.nn.conv2d: im2col ×{fwd['im2col/tf']:.2f}, "
        f"naive loops ×{fwd['naive/tf']:.0f}"
    )


def _throughput(r: dict) -> str:
    return ", ".join(
        f"{name} {run['tf']['images_per_second']:,.0f} images/s"
        for name, run in r["models"].items()
        if run.get("tf")
    )


def _pipeline(r: dict) -> str:
    ratios = r["ratios"]
    return (
        "training steps/s, sharded TFRecords vs in-memory tf.data: "
        f"×{ratios['train_d_over_b']:.2f}"
    )


def _train_mnist(r: dict) -> str:
    runs = r["runs"]
    return ", ".join(
        f"{name} {_pct(run['final_test_accuracy'])}" for name, run in runs.items()
    )


def _train_speed(r: dict) -> str:
    models = r.get("models", r)
    parts = [
        f"{name}: default plan ×{m['speedup']:.2f} vs plain fit"
        for name, m in models.items()
        if isinstance(m, dict) and "speedup" in m
    ]
    if not parts:
        raise KeyError("speedup")
    return ", ".join(parts)


def _compression(r: dict) -> str:
    measured = compression.goals(r)
    int8, best = measured["int8"], measured["prune_int8"]["best_within_0.3pt"]
    text = (
        f"seed CNN int8 {int8['size_ratio']:.1f}× smaller "
        f"({100 * int8['accuracy_change']:+.2f} points)"
    )
    if best:
        text += (
            f"; {best['method']}: {best['ratio']:.1f}× smaller zipped "
            f"({100 * best['accuracy_change']:+.2f} points"
        )
        if "change_vs_fine_tuned" in best:
            text += (
                f"; {100 * best['change_vs_fine_tuned']:+.2f} against the float "
                "model fine-tuned as long"
            )
        text += ")"
    return text


def _tuning(r: dict) -> str:
    final = r.get("final") or {}
    tested = [
        f"{name} {_pct(run['test_accuracy'])} test"
        for name, run in final.items()
        if isinstance(run, dict) and "test_accuracy" in run
    ]
    if tested:
        return ", ".join(tested)
    return ", ".join(  # searches done, final training not (yet) recorded
        f"{name}: best {_pct(search['best']['val_accuracy'])} validation"
        for name, search in r["searches"].items()
    )


def _distributed(r: dict) -> str:
    return (
        ", ".join(
            f"{name} ×{config['speedup_vs_default']:.2f}"
            for name, config in r["configs"].items()
            if name != "default"
        )
        + " (images/s vs the default strategy)"
    )


def _serving(r: dict) -> str:
    goals = r["goals"]
    return (
        f"best batched {goals['best_batched_images_per_s']:,.0f} images/s, "
        f"p99 with 4 clients {goals['p99_4_clients_ms']:.1f} ms, "
        f"{goals['total_errors']} errors"
    )


def _applications(r: dict) -> str:
    parts = []
    if "fashion" in r:
        parts.append(
            f"Fashion-MNIST {_pct(r['fashion']['runs']['bn_cnn']['test_accuracy'])}"
        )
    if "faces" in r:
        parts.append(f"faces {_pct(r['faces']['mean_test_accuracy'])}")
    if "text" in r:
        parts.append(f"spam F1 {r['text']['mean_f1']:.3f}")
    if "recommend" in r:
        ratio = r["recommend"]["simulator"]["caser_over_popularity_hr"]
        parts.append(f"Caser HR@10 {ratio:.1f}× popularity (simulated)")
    return ", ".join(parts)


# topic: (chapter, question, headline function)
SUMMARY_TOPICS = {
    "conv_ops": ("2", "NumPy convolution vs TensorFlow", _conv_ops),
    "model_throughput": ("2", "images per second of each CNN", _throughput),
    "input_pipeline": ("3", "does streaming from disk slow training?", _pipeline),
    "train_mnist": ("4", "the article's ≈ 98 % on MNIST", _train_mnist),
    "train_speed": ("5", "the fastest honest path on this CPU", _train_speed),
    "distributed": ("5", "multi-worker training with tf.distribute", _distributed),
    "compression": ("6", "what compression buys", _compression),
    "tuning": ("7", "search algorithms at an equal budget", _tuning),
    "serving": ("8", "a TF-Serving-compatible server under load", _serving),
    "applications": ("9", "faces, text, products, recommendation", _applications),
}


def _made(result: dict) -> str:
    """How a result file was made, in a few words (its provenance record)."""
    record = result.get("provenance") or {}
    if record.get("recovered"):
        made = f"before records (committed in {record['committed_in'][:7]})"
    elif record.get("commit"):
        made = f"commit {record['commit'][:7]}, {record['started_at'][:10]}"
        made += " with local changes" if record.get("dirty") else ""
    else:
        made = "unknown"
    return made + ("; busy machine" if record.get("noisy") else "")


def chapter_summary(results_dir: str | Path | None = None) -> list[dict]:
    """One row per benchmark topic: what its chapter measured (chapter 10).

    Reads the local ``benchmarks/results/<topic>.json`` files only (nothing is
    downloaded). A missing file gives the row "not measured yet"; a file whose
    layout this function does not know gives "measured: see chapter N". The
    last column says how the file was made: its commit, or that it predates
    provenance records, and whether the machine was busy.
    """
    directory = find_results(results_dir) or Path("benchmarks/results")
    rows = []
    for topic, (chapter, question, headline) in SUMMARY_TOPICS.items():
        path = directory / f"{topic}.json"
        made = "—"
        if not path.is_file():
            measured = "not measured yet (no result file)"
        else:
            result = json.loads(path.read_text())
            made = _made(result)
            try:
                measured = headline(result)
            except (KeyError, TypeError, IndexError, ValueError, ZeroDivisionError):
                measured = None
            measured = measured or f"measured: see chapter {chapter}"
        rows.append(
            {
                "chapter": chapter,
                "topic": topic,
                "question": question,
                "measured": measured,
                "how it was made": made,
            }
        )
    return rows
