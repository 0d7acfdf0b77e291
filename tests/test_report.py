from __future__ import annotations

import json

import pytest

from cnnlearn import models, report


def test_markdown_table():
    table = report.markdown_table([{"a": 1, "b": 0.123456}, {"a": 2, "b": "x"}])
    assert table.splitlines() == [
        "| a | b |",
        "|---|---|",
        "| 1 | 0.1235 |",
        "| 2 | x |",
    ]
    with pytest.raises(ValueError):
        report.markdown_table([])
    escaped = report.markdown_table([{"max |d|": "a|b"}]).splitlines()
    assert escaped[0] == "| max \\|d\\| |" and escaped[2] == "| a\\|b |"


def test_accuracy_row_formats_numbers_and_keeps_quotes():
    row = report.accuracy_row("run", 0.99123, 0.9812, 2.345)
    assert row == {
        "": "run",
        "train accuracy": "0.9912",
        "test accuracy": "98.12%",
        "ms/step": "2.35",
    }
    assert report.accuracy_row("article", "1.0000", "≈ 98 %", "2")["ms/step"] == "2"


def test_committed_training_benchmark_is_complete_and_meets_its_targets():
    """The chapter reads this file; it must hold every run the table shows."""
    results = report.load_benchmark("train_mnist")
    runs = results["runs"]
    assert {"seed-b32", "seed-b128", "lenet5-b128", "strong-b128"} <= set(runs)
    for name, run in runs.items():
        assert run["params"] == models.get_model(run["model"]).count_params(), name
        assert len(run["test_accuracy"]) == run["epochs"] == len(run["train_accuracy"])
    assert runs["seed-b32"]["epochs"] == 10
    assert runs["seed-b32"]["final_test_accuracy"] >= 0.98
    assert max(runs["seed-b32"]["test_accuracy"][:3]) >= 0.98
    assert runs["strong-b128"]["final_test_accuracy"] >= 0.994
    assert len(report.training_table(results)) == len(runs)


def test_missing_benchmark_names_the_script(tmp_path):
    with pytest.raises(FileNotFoundError, match="benchmarks/nope.py"):
        report.load_benchmark("nope", tmp_path)


def test_chapter_2_benchmarks_have_their_tables():
    throughput = report.load_benchmark("model_throughput")
    rows = report.throughput_table(throughput)
    assert [r["model"] for r in rows] == ["seed", "lenet5", "strong"]
    assert (
        rows[0]["NumPy naive images/s"] != "—"
        and rows[2]["NumPy naive images/s"] == "—"
    )
    for name, run in throughput["models"].items():
        assert run["params"] == models.get_model(name).count_params()
    conv = report.conv_ops_table(report.load_benchmark("conv_ops"))
    assert [r["pass"] for r in conv] == ["forward", "backward"]
    assert {"naive ms", "im2col ms", "tf ms"} <= set(conv[0])


def test_applications_table_has_a_row_per_part_that_ran():
    results = report.load_benchmark("applications")
    rows = report.applications_table(results)
    apps = [r["application"] for r in rows]
    assert apps[:4] == [
        "products",
        "products",
        "face identification",
        "face verification",
    ]
    assert "SMS spam" in apps and "next item" in apps
    assert {r["met"] for r in rows} <= {"yes", "no", "—"}
    assert (
        report.applications_table({k: results[k] for k in ("text",)})[0]["application"]
        == "SMS spam"
    )
    assert report.applications_table({}) == []


def test_pipeline_table_reads_the_four_feeds():
    rows = report.pipeline_table(report.load_benchmark("input_pipeline"))
    assert [r["feed"][:3] for r in rows] == ["(a)", "(b)", "(c)", "(d)"]
    assert rows[1]["vs (b)"] == 1.0 and rows[0]["pipeline alone, images/s"] == "—"


def test_speed_and_ablation_tables():
    run = {
        "params": 54_410,
        "batch_size": 32,
        "seeds": [0, 1, 2],
        "epochs": 3,
        "speedup": 2.5,
        "plain": {"median_seconds_per_epoch": 10.0, "mean_test_accuracy": 0.98},
        "default": {"median_seconds_per_epoch": 4.0, "mean_test_accuracy": 0.981},
        "plan": {"batch_size": 128},
    }
    plain = {"batch_size": 32}
    ablation = {
        "plain": {
            "median_seconds": 10.0,
            "speedup": 1.0,
            "test_accuracy": 0.9,
            "plan": plain,
        }
    }
    results = {"models": {"seed": run}, "ablation": ablation}
    (row,) = report.speed_table(results)
    assert row["speedup"] == "2.50×" and row["default accuracy"] == "98.10%"
    assert row["seeds × epochs"] == "3 × 3" and "54,410" in row["model"]
    assert row["batch"] == "32 → 128"
    (ablated,) = report.ablation_table(results)
    assert ablated["s/epoch"] == 10.0 and ablated["batch"] == 32
    run["plan"]["batch_size"] = 32
    assert report.speed_table(results)[0]["batch"] == "32"


def test_chapter_summary_says_how_each_file_was_made(tmp_path):
    record = {"commit": "abc1234" + "0" * 33, "started_at": "2026-12-06T09:00:00Z"}
    made = {
        "conv_ops": {**record, "noisy": True, "dirty": True},
        "tuning": {"recovered": True, "committed_in": "1d385a2" + "0" * 33},
    }
    for topic, provenance in made.items():
        (tmp_path / f"{topic}.json").write_text(json.dumps({"provenance": provenance}))
    rows = {r["topic"]: r["how it was made"] for r in report.chapter_summary(tmp_path)}
    assert rows["conv_ops"] == (
        "commit abc1234, 2026-12-06 with local changes; busy machine"
    )
    assert rows["tuning"] == "before records (committed in 1d385a2)"
    assert rows["serving"] == "—"


def test_serving_table():
    run = {
        "p50_ms": 1.234,
        "p99_ms": None,
        "requests_per_s": 10.4,
        "images_per_s": 332.8,
        "server_cpu_ms_per_request": 0.5,
        "errors": 0,
    }
    results = {
        "scenarios": {"b": {"clients": 4, "batch": 32, "encoding": "b64"}},
        "servers": {"ours": {"b": run}},
    }
    (row,) = report.serving_table(results)
    assert row["server"] == "ours" and row["batch"] == 32 and row["p50 ms"] == 1.23
    assert row["p99 ms"] == "—" and row["images/s"] == 333
    assert row["protocol"] == "rest"


def test_batching_table_compares_each_backend_with_itself_unbatched():
    def run(rate, p99):
        return {"requests_per_s": rate, "p99_ms": p99}

    results = {
        "scenarios": {"many": {"clients": 16, "batch": 1, "protocol": "grpc"}},
        "servers": {
            "cnnlearn_savedmodel": {"many": run(1000.0, 20.0)},
            "cnnlearn_savedmodel_batching": {"many": run(2500.0, 9.0)},
        },
        "goals": {
            "batching": {
                "savedmodel many": {
                    "throughput_x_unbatched": 2.5,
                    "p99_ms": 9.0,
                    "p99_bound_ms": 2.6,
                    "batcher_p99_ms": 2.5,
                }
            }
        },
    }
    (row,) = report.batching_table(results)
    assert (row["backend"], row["protocol"], row["clients"]) == (
        "savedmodel",
        "grpc",
        16,
    )
    assert row["requests/s unbatched"] == 1000 and row["requests/s batched"] == 2500
    assert row["× unbatched"] == 2.5 and row["p99 bound ms"] == 2.6
    assert row["client p99 ms"] == 9.0 and row["p99 in batcher ms"] == 2.5


def test_faults_table():
    health = {"checks": 40, "failed": 0, "p50_ms": 1.0, "max_ms": 12.345}
    results = {
        "scenarios": {
            "trickled_headers": {
                "title": "50 clients trickling headers",
                "description": "...",
                "answers": {"408": 50},
                "answer_seconds_max": 2.0412,
                "ok": True,
                "error_message": "headers not received within 2 s",
                "health": health,
            },
            "thirty_mb_bodies": {
                "title": "4 clients sending 30 MB bodies",
                "description": "...",
                "answers": {"200": 3, "503": 1},
                "answer_seconds_max": None,
                "ok": False,
                "body_mb": 30.0,
                "rss_before_mb": 90.2,
                "peak_mb": 400.7,
                "health": {**health, "failed": 2, "max_ms": None},
            },
        }
    }
    first, second = report.faults_table(results)
    assert first["server answered"] == "408 ×50" and first["within s"] == 2.04
    assert first["health checks answered"] == "40/40"
    assert first["slowest health check ms"] == 12.3 and first["as expected"] == "yes"
    assert first["detail"] == "headers not received within 2 s"
    assert second["server answered"] == "200 ×3, 503" and second["within s"] == "—"
    assert second["health checks answered"] == "38/40"
    assert second["as expected"] == "**no**"
    assert second["detail"] == "server memory 90 MB → peak 401 MB (30 MB bodies)"
    assert report.markdown_table([first, second]).count("\n") == 3


def test_committed_faults_benchmark_shows_what_the_chapter_says():
    """Chapter 8 prints this file's table and says no hostile client caused a
    500: the file must hold every scenario, measured, and back that line."""
    results = report.load_benchmark("faults")
    scenarios = results["scenarios"]
    assert {"trickled_headers", "thirty_mb_bodies", "half_written_version"} <= set(
        scenarios
    )
    assert results["goals"]["no_500"] and results["goals"]["server_alive"]
    assert "500" not in results["metrics_after"]["requests_by_status"]
    assert all(run["health"]["checks"] > 0 for run in scenarios.values())
    assert len(report.faults_table(results)) == len(scenarios)
    assert results["provenance"]["commit"] and results["provenance"]["finished_at"]
