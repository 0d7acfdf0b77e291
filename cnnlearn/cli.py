"""The ``cnnlearn`` command: a thin layer over the package's functions.

Every verb writes a JSON report into its output directory, shows progress on
stderr, prints a one-line summary on stdout, and on bad input exits non-zero
with a one-line message instead of a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

from cnnlearn import __version__

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not usage + message
        self.exit(EXIT_BAD_INPUT, f"cnnlearn: error: {message}\n")


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cnnlearn", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=__version__)
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)

    train = verbs.add_parser("train", help="train a model, evaluate it, save it")
    train.add_argument("--model", default="seed", help="seed, lenet5 or strong")
    train.add_argument("--dataset", default="mnist", help="mnist or fashion_mnist")
    train.add_argument("--epochs", type=_positive, help="default: the model's")
    train.add_argument("--batch-size", type=_positive, help="default: the model's")
    train.add_argument("--data-dir", help="directory with the IDX files")
    train.add_argument("--data-fraction", type=_fraction, default=1.0)
    train.add_argument("--validation-split", type=float, default=0.1)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default="auto", help="auto, cpu or gpu")
    train.add_argument("--checkpoint", action="store_true")
    train.add_argument("--tensorboard", action="store_true")
    train.add_argument("--early-stopping", type=_positive, metavar="PATIENCE")
    train.add_argument("--output", required=True, help="run directory")

    evaluate = verbs.add_parser("evaluate", help="evaluate a saved .keras model")
    evaluate.add_argument("--model", required=True, help="path to model.keras")
    evaluate.add_argument("--dataset", default="mnist")
    evaluate.add_argument("--data-dir")
    evaluate.add_argument("--output", help="default: the model's directory")
    return parser


def _train(args) -> str:
    from cnnlearn import train

    metrics = train.run(
        args.model,
        args.dataset,
        output_dir=args.output,
        epochs=args.epochs,
        batch_size=args.batch_size,
        data_dir=args.data_dir,
        data_fraction=args.data_fraction,
        seed=args.seed,
        validation_split=args.validation_split,
        device=args.device,
        checkpoint=args.checkpoint,
        tensorboard=args.tensorboard,
        early_stopping_patience=args.early_stopping,
        verbose=1,
    )
    return (
        f"test_accuracy={metrics['test_accuracy']:.4f} "
        f"test_loss={metrics['test_loss']:.4f} epochs={metrics['epochs']} "
        f"train_seconds={metrics['train_seconds']:.1f} → {args.output}/metrics.json"
    )


def _evaluate(args) -> str:
    from cnnlearn import train

    report = train.evaluate_saved(args.model, args.dataset, args.data_dir, args.output)
    return f"test_accuracy={report['accuracy']:.4f} test_loss={report['loss']:.4f}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import cnnlearn._tf  # noqa: F401  (after parsing: --help stays instant)

    verb = {"train": _train, "evaluate": _evaluate}[args.verb]
    try:
        with contextlib.redirect_stdout(sys.stderr):  # Keras progress → stderr
            summary = verb(args)
    except (ValueError, OSError) as exc:  # DataError is a ValueError
        message = " ".join(str(exc).split())  # one line, whatever the source
        print(f"cnnlearn {args.verb}: error: {message}", file=sys.stderr)
        return 1
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
