"""``cnnlearn compress`` (chapter 6)."""

from __future__ import annotations

import argparse

from cnnlearn.cli._args import fraction, positive

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
    compress.add_argument("--epochs", type=positive, default=2, help="prune, distill")
    compress.add_argument("--teacher", help="distill: the teacher's model.keras")
    compress.add_argument("--dataset", default="mnist")
    compress.add_argument("--data-dir")
    compress.add_argument("--data-fraction", type=fraction, default=1.0)
    compress.add_argument("--seed", type=int, default=0)
    compress.add_argument("--output", required=True, help="output directory")


def compress(args) -> str:
    from cnnlearn.compress.apply import compress_saved

    report = compress_saved(
        args.model,
        args.method,
        args.output,
        sparsity=args.sparsity,
        epochs=args.epochs,
        teacher_path=args.teacher,
        dataset=args.dataset,
        data_dir=args.data_dir,
        data_fraction=args.data_fraction,
        seed=args.seed,
    )
    result = report["compressed"]
    return (
        f"accuracy={result['accuracy']:.4f} gzip_bytes={result['gzip_bytes']} "
        f"({report['gzip_ratio']:.2f}x smaller) → {args.output}/report.json"
    )
