"""Benchmark results and tables for the chapters.

Heavy runs live in ``benchmarks/`` and write ``benchmarks/results/<topic>.json``;
chapters read those files through :func:`load_benchmark` instead of retraining
and show them with the table builders of :mod:`~cnnlearn.report.tables`.
:mod:`~cnnlearn.report.summary` gives chapter 10 one headline per benchmark;
:func:`show_source` puts the package's own code on a chapter's page.

Public API: the package re-exports the names of :mod:`~.benchmarks`,
:mod:`~.source`, :mod:`~.summary` and :mod:`~.tables`. Four modules are
exposed as modules instead, because their names read only with the module's
name in front (the exception in :mod:`cnnlearn`'s rule):
:mod:`~.claims` (the claims ledger: ``report.claims.check``),
:mod:`~.provenance` (a benchmark run's record: ``report.provenance.start``),
:mod:`~.compression` (chapter 6's tables: ``report.compression.summarize``) and
:mod:`~.speed` (chapter 5's speedrun and best-CNN tables).
"""

from cnnlearn.report import claims, compression, provenance, speed
from cnnlearn.report.benchmarks import (
    RESULTS_URL,
    find_benchmark,
    load_benchmark,
    results_dir,
)
from cnnlearn.report.source import show_source
from cnnlearn.report.summary import SUMMARY_TOPICS, chapter_summary
from cnnlearn.report.tables import (
    ablation_table,
    accuracy_row,
    applications_table,
    backends_table,
    batching_table,
    conv_ops_table,
    faults_table,
    gpu_section,
    gpu_table,
    markdown_table,
    pipeline_table,
    serving_table,
    speed_table,
    throughput_table,
    training_table,
)

__all__ = [
    "RESULTS_URL",
    "SUMMARY_TOPICS",
    "ablation_table",
    "accuracy_row",
    "applications_table",
    "backends_table",
    "batching_table",
    "chapter_summary",
    "claims",
    "compression",
    "conv_ops_table",
    "faults_table",
    "find_benchmark",
    "gpu_section",
    "gpu_table",
    "load_benchmark",
    "markdown_table",
    "pipeline_table",
    "provenance",
    "speed",
    "results_dir",
    "serving_table",
    "show_source",
    "speed_table",
    "throughput_table",
    "training_table",
]
