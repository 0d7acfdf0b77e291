"""Benchmark results and tables for the chapters.

Heavy runs live in ``benchmarks/`` and write ``benchmarks/results/<topic>.json``;
chapters read those files through :func:`load_benchmark` instead of retraining
and show them with the table builders of :mod:`~cnnlearn.report.tables`.
:mod:`~cnnlearn.report.summary` gives chapter 10 one headline per benchmark.
"""

from cnnlearn.report import claims, provenance
from cnnlearn.report.results import RESULTS_DIR, RESULTS_URL, load_benchmark
from cnnlearn.report.summary import SUMMARY_TOPICS, chapter_summary
from cnnlearn.report.tables import (
    ablation_table,
    accuracy_row,
    applications_table,
    conv_ops_table,
    markdown_table,
    pipeline_table,
    speed_table,
    throughput_table,
    training_table,
)

__all__ = [
    "RESULTS_DIR",
    "RESULTS_URL",
    "SUMMARY_TOPICS",
    "ablation_table",
    "accuracy_row",
    "applications_table",
    "chapter_summary",
    "claims",
    "conv_ops_table",
    "load_benchmark",
    "markdown_table",
    "pipeline_table",
    "provenance",
    "speed_table",
    "throughput_table",
    "training_table",
]
