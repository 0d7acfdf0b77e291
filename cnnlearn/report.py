"""Benchmark results and tables for the chapters.

Heavy runs live in ``benchmarks/`` and write ``benchmarks/results/<topic>.json``;
chapters read those files through :func:`load_benchmark` instead of retraining.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = [
    "RESULTS_URL",
    "accuracy_row",
    "conv_ops_table",
    "load_benchmark",
    "markdown_table",
    "pipeline_table",
    "throughput_table",
    "training_table",
]

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
    """Render a list of same-keyed dicts as a Markdown table."""
    if not rows:
        raise ValueError("no rows to render")
    headers = list(rows[0])

    def cell(value) -> str:
        return format(value, floatfmt) if isinstance(value, float) else str(value)

    lines = [
        "| " + " | ".join(headers) + " |",
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
