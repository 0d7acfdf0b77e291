"""Benchmark results and tables for the chapters.

Heavy runs live in ``benchmarks/`` and write ``benchmarks/results/<topic>.json``;
chapters read those files through :func:`load_benchmark` instead of retraining.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = [
    "RESULTS_URL",
    "ablation_table",
    "accuracy_row",
    "conv_ops_table",
    "load_benchmark",
    "markdown_table",
    "pipeline_table",
    "speed_table",
    "throughput_table",
    "training_table",
]
__all__ += ["applications_table", "chapter_summary", "SUMMARY_TOPICS"]

RESULTS_DIR = Path(__file__).resolve().parent.parent / "benchmarks" / "results"
RESULTS_URL = (
    "https://raw.githubusercontent.com/cnnlearn/cnnlearn/main/benchmarks/results/"
)


def load_benchmark(topic: str, results_dir: str | Path | None = None) -> dict:
    """Read ``benchmarks/results/<topic>.json``.

    It is looked for in ``results_dir``, then in the repository this package was
    installed from (``pip install -e .``); a package installed without the
    repository (Colab, say) downloads the published file instead.
    """
    directory = Path(results_dir) if results_dir is not None else RESULTS_DIR
    path = directory / f"{topic}.json"
    if not path.is_file():
        if results_dir is not None:
            raise FileNotFoundError(
                f"{path} not found: run `python benchmarks/{topic}.py` to make it"
            )
        import keras

        url = f"{RESULTS_URL}{topic}.json"
        path = Path(keras.utils.get_file(f"cnnlearn-{topic}.json", url))
    return json.loads(path.read_text())


def markdown_table(rows: list[dict], floatfmt: str = ".4g") -> str:
    """Render a list of same-keyed dicts as a Markdown table.

    A ``|`` inside a header or cell (``max |Δp|``) is escaped, so it does not
    split the cell.
    """
    if not rows:
        raise ValueError("no rows to render")
    headers = list(rows[0])

    def cell(value) -> str:
        text = format(value, floatfmt) if isinstance(value, float) else str(value)
        return text.replace("|", "\\|")

    lines = [
        "| " + " | ".join(map(cell, headers)) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(cell(row[h]) for h in headers) + " |" for row in rows]
    return "\n".join(lines)


def training_table(results: dict) -> list[dict]:
    """One row per run of ``benchmarks/train_mnist.py``, ready for a table."""
    return [
        {
            "run": name,
            "params": f"{run['params']:,}",
            "batch": run["batch_size"],
            "epochs": run["epochs"],
            "s/epoch": round(run["median_seconds_per_epoch"], 1),
            "ms/step": round(run["ms_per_step"], 2),
            "test accuracy": f"{100 * run['final_test_accuracy']:.2f} %",
        }
        for name, run in results["runs"].items()
    ]


def accuracy_row(
    label: str, train_accuracy, test_accuracy, ms_per_step
) -> dict[str, str]:
    """One row of a "claim against measurement" table (chapter 4).

    Floats are formatted (accuracies as percentages); strings, such as a
    number quoted from the article, pass through unchanged.
    """

    def fmt(value, spec: str) -> str:
        return format(value, spec) if isinstance(value, float) else str(value)

    return {
        "": label,
        "train accuracy": fmt(train_accuracy, ".4f"),
        "test accuracy": fmt(test_accuracy, ".2%"),
        "ms/step": fmt(ms_per_step, ".2f"),
    }


def throughput_table(results: dict) -> list[dict]:
    """Rows of ``benchmarks/model_throughput.py``'s result (chapter 2)."""

    def rate(run: dict | None, key: str, spec: str) -> str:
        return "—" if run is None else format(run[key], spec)

    return [
        {
            "model": name,
            "params": f"{run['params']:,}",
            "MFLOPs/image": round(run["mflops_per_image"], 2),
            "TF images/s": rate(run["tf"], "images_per_second", ",.0f"),
            "TF GFLOP/s": rate(run["tf"], "gflops_per_second", ".1f"),
            "NumPy im2col images/s": rate(
                run.get("numpy_im2col"), "images_per_second", ",.0f"
            ),
            "NumPy naive images/s": rate(
                run.get("numpy_naive"), "images_per_second", ",.0f"
            ),
        }
        for name, run in results["models"].items()
    ]


def conv_ops_table(results: dict, mode: str = "interleaved") -> list[dict]:
    """Median milliseconds of ``benchmarks/conv_ops.py``, per direction (chapter 2)."""
    timings = results[mode]
    return [
        {
            "pass": direction,
            **{
                f"{m} ms": round(ms, 2)
                for m, ms in timings["median_ms"][direction].items()
            },
            "im2col / tf": round(timings["ratios"][direction]["im2col/tf"], 2),
            "naive / tf": round(timings["ratios"][direction]["naive/tf"], 1),
        }
        for direction in ("forward", "backward")
    ]


def pipeline_table(results: dict) -> list[dict]:
    """Rows of ``benchmarks/input_pipeline.py``'s result, feeds (a) to (d) (chapter 3).

    Training steps per second of the same model and batch for each feed, its
    ratio to the in-memory tf.data feed (b), and the pipeline alone, no model.
    """
    base = results["train"]["tf_data_memory"]["median_steps_per_second"]
    rows = []
    for letter, (feed, run) in zip("abcd", results["train"].items()):
        alone = results["pipeline_only"].get(feed)
        rows.append(
            {
                "feed": f"({letter}) {run['description']}",
                "train steps/s": round(run["median_steps_per_second"], 1),
                "vs (b)": round(run["median_steps_per_second"] / base, 2),
                "pipeline alone, images/s": "—"
                if alone is None
                else f"{alone['median_images_per_second']:,.0f}",
            }
        )
    return rows


def speed_table(results: dict) -> list[dict]:
    """Plain ``fit(numpy)`` against the default plan (``train_speed.json``, ch. 5)."""
    rows = []
    for name, run in results["models"].items():
        plain, default = run["plain"], run["default"]
        batches = (run["batch_size"], run["plan"]["batch_size"])
        rows.append(
            {
                "model": f"{name} ({run['params']:,} params)",
                "batch": " → ".join(map(str, dict.fromkeys(batches))),
                "plain s/epoch": round(plain["median_seconds_per_epoch"], 2),
                "default s/epoch": round(default["median_seconds_per_epoch"], 2),
                "speedup": f"{run['speedup']:.2f}×",
                "plain accuracy": f"{plain['mean_test_accuracy']:.2%}",
                "default accuracy": f"{default['mean_test_accuracy']:.2%}",
                "seeds × epochs": f"{len(run['seeds'])} × {run['epochs']}",
            }
        )
    return rows


def ablation_table(results: dict) -> list[dict]:
    """Each choice of the default plan alone, seed CNN (``train_speed.json``)."""
    return [
        {
            "configuration": label,
            "batch": row["plan"]["batch_size"],
            "s/epoch": round(row["median_seconds"], 2),
            "speedup": f"{row['speedup']:.2f}×",
            "test accuracy": f"{row['test_accuracy']:.2%}",
        }
        for label, row in results["ablation"].items()
    ]


def applications_table(results: dict) -> list[dict]:
    """The targets of chapter 9 against ``benchmarks/applications.py``'s result.

    One row per application that the result file holds (a part that was not
    run yet is left out); ``met`` says whether the measured value reaches the
    target.
    """
    rows = []

    def add(application, data, model, metric, target, value, threshold, fmt):
        rows.append(
            {
                "application": application,
                "data": data,
                "model": model,
                "metric": metric,
                "target": target,
                "measured": value if isinstance(value, str) else format(value, fmt),
                "met": "—"
                if threshold is None
                else ("yes" if value >= threshold else "no"),
            }
        )

    if "fashion" in results:
        runs = results["fashion"]["runs"]
        for name, label, threshold in (
            ("seed_cnn", "the article's CNN", None),
            ("bn_cnn", "BN CNN", 0.91),
        ):
            if name in runs:
                run = runs[name]
                add(
                    "products",
                    "Fashion-MNIST, 10,000 test images",
                    f"{label}, {run['params']:,} params, {run['epochs']} epochs",
                    "test accuracy",
                    "≥ 91 %" if threshold else "—",
                    run["test_accuracy"],
                    threshold,
                    ".2%",
                )
    if "faces" in results:
        faces = results["faces"]
        n = len(faces["runs"])
        add(
            "face identification",
            "AT&T faces, 3 held-out images × 40 people",
            f"face CNN, {faces['params']:,} params, {faces['epochs']} epochs",
            f"accuracy, mean (min) of {n} splits",
            "≥ 95 %",
            faces["mean_test_accuracy"],
            0.95,
            ".2%",
        )
        rows[-1]["measured"] += f" ({faces['min_test_accuracy']:.2%})"
        add(
            "face verification",
            "pairs of held-out images",
            "cosine similarity of the embeddings",
            f"ROC AUC, mean of {n} splits",
            "—",
            faces["mean_verification_auc"],
            None,
            ".4f",
        )
    if "text" in results:
        t = results["text"]
        n = len(t["runs"])
        add(
            "SMS spam",
            f"{t['distinct']:,} distinct messages, stratified 80/20",
            f"Kim CNN, {t['params']:,} params, {t['epochs']} epochs",
            f"spam F1, mean (min) of {n} splits",
            "≥ 0.90",
            t["mean_f1"],
            0.90,
            ".3f",
        )
        rows[-1]["measured"] += f" ({t['min_f1']:.3f})"
    if "recommend" in results:
        for source, r in results["recommend"].items():
            if not isinstance(r, dict) or "methods" not in r:
                continue
            m = r["methods"]
            ratio = r["caser_over_popularity_hr"]
            add(
                "next item",
                f"{r['source']}: {r['users']:,} users, {r['items']:,} items",
                f"Caser, {r['params']:,} params, {r['epochs']} epochs",
                "HR@10 (popularity, ratio)",
                "≥ 2× popularity" if source == "simulator" else "—",
                f"{m['caser']['hr@10']:.3f} ({m['popularity']['hr@10']:.3f}, "
                f"{ratio:.1f}×)",
                None,
                "",
            )
            if source == "simulator":
                rows[-1]["met"] = "yes" if ratio >= 2 else "no"
    return rows


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
    from cnnlearn.compress.results import goals

    measured = goals(r)
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


def chapter_summary(results_dir: str | Path | None = None) -> list[dict]:
    """One row per benchmark topic: what its chapter measured (chapter 10).

    Reads the local ``benchmarks/results/<topic>.json`` files only (nothing is
    downloaded). A missing file gives the row "not measured yet"; a file whose
    layout this function does not know gives "measured: see chapter N".
    """
    directory = Path(results_dir) if results_dir is not None else RESULTS_DIR
    rows = []
    for topic, (chapter, question, headline) in SUMMARY_TOPICS.items():
        path = directory / f"{topic}.json"
        if not path.is_file():
            measured = "not measured yet (no result file)"
        else:
            try:
                measured = headline(json.loads(path.read_text()))
            except (KeyError, TypeError, IndexError, ValueError, ZeroDivisionError):
                measured = None
            measured = measured or f"measured: see chapter {chapter}"
        rows.append(
            {
                "chapter": chapter,
                "topic": topic,
                "question": question,
                "measured": measured,
            }
        )
    return rows
