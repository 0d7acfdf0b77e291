"""``cnnlearn compress`` (chapter 6)."""

from __future__ import annotations

import argparse

from cnnlearn.cli._args import add_run_arguments, run_config

__all__ = ["add_verb", "compress"]


def _sparsity(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def add_verb(verbs) -> None:
    """``compress`` (chapter 6)."""
    compress = verbs.add_parser("compress", help="prune, quantize, fuse or distill")
    compress.add_argument("--model", required=True, help="path to model.keras")
    compress.add_argument(
        "--method",
        required=True,
        choices=["prune", "dynamic", "int8", "float16", "fuse", "distill"],
    )
    compress.add_argument("--sparsity", type=_sparsity, default=0.8, help="prune")
    compress.add_argument("--teacher", help="distill: the teacher's model.keras")
    compress.add_argument("--output", required=True, help="output directory")
    add_run_arguments(
        compress,
        skip=("model", "validation_split", "batch_size"),
        helps={"epochs": "prune, distill: fine-tuning epochs"},
        epochs=2,
    )


def compress(args) -> str:
    from cnnlearn.compress.apply import compress_saved  # see cnnlearn.cli

    report = compress_saved(
        args.model,
        args.method,
        args.output,
        run_config(args),
        sparsity=args.sparsity,
        teacher_path=args.teacher,
    )
    result = report["compressed"]
    return (
        f"accuracy={result['accuracy']:.4f} gzip_bytes={result['gzip_bytes']} "
        f"({report['gzip_ratio']:.2f}x smaller) → {args.output}/report.json"
    )
