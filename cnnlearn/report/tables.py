"""Markdown tables of benchmark results, one builder per benchmark (chapters 2-9)."""

from __future__ import annotations

from cnnlearn.report import provenance

__all__ = [
    "ablation_table",
    "accuracy_row",
    "applications_table",
    "backends_table",
    "conv_ops_table",
    "faults_table",
    "gpu_section",
    "gpu_table",
    "markdown_table",
    "pipeline_table",
    "batching_table",
    "serving_table",
    "speed_table",
    "throughput_table",
    "training_table",
]


def markdown_table(
    rows: list[dict], floatfmt: str = ".4g", source: dict | None = None
) -> str:
    """Render a list of same-keyed dicts as a Markdown table.

    A ``|`` inside a header or cell (``max |Δp|``) is escaped, so it does not
    split the cell. With ``source``, the result file the rows come from, the
    table is followed by that file's provenance notes
    (:func:`cnnlearn.report.provenance.notes`): a busy machine, a merge, a file
    older than these records.
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
    notes = provenance.notes(source) if source is not None else []
    if notes:
        lines += [""] + [f"> {note}" for note in notes]
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


def _target_row(
    application: str,
    data: str,
    model: str,
    metric: str,
    target: str,
    value: float | str,
    threshold: float | None,
    fmt: str,
) -> dict:
    """One row of :func:`applications_table`; ``met`` compares with ``threshold``."""
    return {
        "application": application,
        "data": data,
        "model": model,
        "metric": metric,
        "target": target,
        "measured": value if isinstance(value, str) else format(value, fmt),
        "met": "—" if threshold is None else ("yes" if value >= threshold else "no"),
    }


def _fashion_rows(fashion: dict) -> list[dict]:
    """Products: the article's CNN and the BN CNN on Fashion-MNIST."""
    rows = []
    for name, label, threshold in (
        ("seed_cnn", "the article's CNN", None),
        ("bn_cnn", "BN CNN", 0.91),
    ):
        if name in fashion["runs"]:
            run = fashion["runs"][name]
            rows.append(
                _target_row(
                    "products",
                    "Fashion-MNIST, 10,000 test images",
                    f"{label}, {run['params']:,} params, {run['epochs']} epochs",
                    "test accuracy",
                    "≥ 91 %" if threshold else "—",
                    run["test_accuracy"],
                    threshold,
                    ".2%",
                )
            )
    return rows


def _faces_rows(faces: dict) -> list[dict]:
    """Face identification (mean and worst split) and verification (ROC AUC)."""
    n = len(faces["runs"])
    identification = _target_row(
        "face identification",
        "AT&T faces, 3 held-out images × 40 people",
        f"face CNN, {faces['params']:,} params, {faces['epochs']} epochs",
        f"accuracy, mean (min) of {n} splits",
        "≥ 95 %",
        faces["mean_test_accuracy"],
        0.95,
        ".2%",
    )
    identification["measured"] += f" ({faces['min_test_accuracy']:.2%})"
    verification = _target_row(
        "face verification",
        "pairs of held-out images",
        "cosine similarity of the embeddings",
        f"ROC AUC, mean of {n} splits",
        "—",
        faces["mean_verification_auc"],
        None,
        ".4f",
    )
    return [identification, verification]


def _text_rows(text: dict) -> list[dict]:
    """SMS spam: the spam F1, mean and worst split."""
    row = _target_row(
        "SMS spam",
        f"{text['distinct']:,} distinct messages, stratified 80/20",
        f"Kim CNN, {text['params']:,} params, {text['epochs']} epochs",
        f"spam F1, mean (min) of {len(text['runs'])} splits",
        "≥ 0.90",
        text["mean_f1"],
        0.90,
        ".3f",
    )
    row["measured"] += f" ({text['min_f1']:.3f})"
    return [row]


def _recommend_rows(recommend: dict) -> list[dict]:
    """Next item: Caser's HR@10 against popularity, one row per data source.

    Only the simulator has a target (twice popularity's hit rate).
    """
    rows = []
    for source, r in recommend.items():
        if not isinstance(r, dict) or "methods" not in r:
            continue
        m, ratio = r["methods"], r["caser_over_popularity_hr"]
        row = _target_row(
            "next item",
            f"{r['source']}: {r['users']:,} users, {r['items']:,} items",
            f"Caser, {r['params']:,} params, {r['epochs']} epochs",
            "HR@10 (popularity, ratio)",
            "≥ 2× popularity" if source == "simulator" else "—",
            f"{m['caser']['hr@10']:.3f} ({m['popularity']['hr@10']:.3f}, {ratio:.1f}×)",
            None,
            "",
        )
        if source == "simulator":
            row["met"] = "yes" if ratio >= 2 else "no"
        rows.append(row)
    return rows


_APPLICATION_PARTS = (
    ("fashion", _fashion_rows),
    ("faces", _faces_rows),
    ("text", _text_rows),
    ("recommend", _recommend_rows),
)


def applications_table(results: dict) -> list[dict]:
    """The targets of chapter 9 against ``benchmarks/applications.py``'s result.

    One row per application that the result file holds (a part that was not
    run yet is left out); ``met`` says whether the measured value reaches the
    target.
    """
    return [
        row
        for part, rows in _APPLICATION_PARTS
        if part in results
        for row in rows(results[part])
    ]


def serving_table(results: dict) -> list[dict]:
    """Table rows of ``benchmarks/results/serving.json``, one per server and scenario.

    Used in chapter 8 with :func:`markdown_table`.
    """
    rows = []
    for server, runs in results["servers"].items():
        for name, run in runs.items():
            scenario = results["scenarios"][name]
            rows.append(
                {
                    "server": server,
                    "clients": scenario["clients"],
                    "batch": scenario["batch"],
                    "encoding": scenario["encoding"],
                    "protocol": scenario.get("protocol", "rest"),
                    "p50 ms": _round(run["p50_ms"], 2),
                    "p99 ms": _round(run["p99_ms"], 2),
                    "requests/s": round(run["requests_per_s"]),
                    "images/s": round(run["images_per_s"]),
                    "server CPU ms/request": _round(
                        run["server_cpu_ms_per_request"], 3
                    ),
                    "errors": run["errors"],
                }
            )
    return rows


def batching_table(results: dict) -> list[dict]:
    """Server-side batching in ``serving.json``: per backend and scenario, the
    requests/s without and with ``--enable-batching``, their ratio, and the
    batched p99, at the client and in the batcher (the wait for a batch plus
    its run), against its bound (the batch timeout plus one full batch's
    compute on that backend). Used in chapter 8."""
    rows = []
    for key, goal in results["goals"]["batching"].items():
        backend, scenario = key.split(" ", 1)
        plain = results["servers"][f"cnnlearn_{backend}"][scenario]
        batched = results["servers"][f"cnnlearn_{backend}_batching"][scenario]
        rows.append(
            {
                "backend": backend,
                "protocol": results["scenarios"][scenario].get("protocol", "rest"),
                "clients": results["scenarios"][scenario]["clients"],
                "requests/s unbatched": round(plain["requests_per_s"]),
                "requests/s batched": round(batched["requests_per_s"]),
                "× unbatched": round(goal["throughput_x_unbatched"], 2),
                "client p99 ms": _round(goal["p99_ms"], 2),
                "p99 in batcher ms": _round(goal.get("batcher_p99_ms"), 2),
                "p99 bound ms": round(goal["p99_bound_ms"], 2),
            }
        )
    return rows


def _round(value: float | None, digits: int):
    return "—" if value is None else round(value, digits)


def backends_table(results: dict) -> list[dict]:
    """Rows of ``benchmarks/backends.py``'s result: each model on each Keras
    backend, from the same weights on the same batches (chapter 4)."""
    rows = []
    for name, by_backend in results["comparison"].items():
        for backend, cmp in by_backend.items():
            run = results["results"][backend][name]
            gap = cmp["accuracy_points_vs_tensorflow"]
            rows.append(
                {
                    "model": name,
                    "backend": f"{backend} {run['versions'].get(backend, '')}".strip(),
                    "epochs": run["epochs"],
                    "test accuracy": f"{run['test_accuracy']:.2%}",
                    "Δ vs TensorFlow (points)": f"{gap:+.2f}",
                    "s/epoch": round(run["seconds_per_epoch"], 1),
                    "× TensorFlow's time": round(cmp["seconds_ratio_vs_tensorflow"], 2),
                    "XLA": run["plan"]["jit_compile"],
                    "steps/call": run["plan"]["steps_per_execution"],
                }
            )
    return rows


def gpu_table(results: dict) -> list[dict]:
    """Rows of ``benchmarks/gpu.py``'s result: chapter 4's models trained on a
    GPU with each backend's plan (chapters 4 and 5); failed backends say why."""
    rows = []
    for backend, found in results["results"].items():
        if "error" in found:
            rows.append({"backend": backend, "GPU": "failed: " + found["error"]})
            continue
        for name, run in found["rows"].items():
            plan = run["plan"]
            rows.append(
                {
                    "backend": backend,
                    "GPU": found["device_name"],
                    "model": name,
                    "precision": plan["precision"],
                    "batch": plan["batch_size"],
                    "s/epoch": round(run["seconds_per_epoch"], 2),
                    "test accuracy": f"{run['test_accuracy']:.2%}",
                    "TFLOP/s": round(run["training_flops_per_second"] / 1e12, 2),
                }
            )
    return rows


def gpu_section(results: dict | None) -> str:
    """Markdown for ``benchmarks/gpu.py``'s result (see :func:`gpu_table`), or a
    line saying it is not measured yet when ``results`` is ``None`` (chapters 4
    and 5; :func:`cnnlearn.report.find_benchmark` gives ``None`` for a missing
    file). Never a number that did not run."""
    if results is None:
        return (
            "*GPU: not measured yet.* `benchmarks/gpu.py` writes "
            "`benchmarks/results/gpu.json` on a machine with a GPU and JAX or "
            "PyTorch (its docstring says how); this page shows it once it exists."
        )
    return markdown_table(gpu_table(results), ".3g", source=results)


def _answers(answers: dict) -> str:
    """``{"408": 50}`` as ``408 ×50``; a single answer without the count."""
    return ", ".join(
        key if count == 1 else f"{key} ×{count:g}" for key, count in answers.items()
    )


def _fault_detail(run: dict) -> str:
    """The one number a scenario of ``benchmarks/faults.py`` adds, in words."""
    if run.get("peak_mb") is not None:
        return (
            f"server memory {run['rss_before_mb']:.0f} MB → peak "
            f"{run['peak_mb']:.0f} MB ({run['body_mb']:.0f} MB bodies)"
        )
    if run.get("idle_seconds_until_closed") is not None:
        return f"closed after {run['idle_seconds_until_closed']:.1f} s idle"
    if run.get("seconds_until_served") is not None:
        return (
            f"load failure shown, then v2 served "
            f"{run['seconds_until_served']:.1f} s after the replacement"
        )
    return run.get("error_message") or run.get("failed") or ""


def faults_table(results: dict) -> list[dict]:
    """Rows of ``benchmarks/faults.py``'s result, one per hostile scenario
    (chapter 8): what the server answered (an HTTP status, or ``closed``),
    after how many seconds at most, how many of the health checks sent
    meanwhile it answered and the slowest, and whether all was as expected.
    Use with :func:`markdown_table`.
    """
    rows = []
    for run in results["scenarios"].values():
        health = run["health"]
        rows.append(
            {
                "hostile client": run.get("title", run["description"]),
                "server answered": _answers(run.get("answers", {})) or "—",
                "within s": _round(run.get("answer_seconds_max"), 2),
                "health checks answered": (
                    f"{health['checks'] - health['failed']}/{health['checks']}"
                ),
                "slowest health check ms": _round(health["max_ms"], 1),
                "as expected": "yes" if run["ok"] else "**no**",
                "detail": _fault_detail(run),
            }
        )
    return rows
