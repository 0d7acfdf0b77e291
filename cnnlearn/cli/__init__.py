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
from cnnlearn.cli import compress, deploy
from cnnlearn.cli._args import Parser, fraction, positive

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="cnnlearn", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=__version__)
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=Parser)

    train = verbs.add_parser("train", help="train a model, evaluate it, save it")
    train.add_argument("--model", default="seed", help="seed, lenet5 or strong")
    train.add_argument("--dataset", default="mnist", help="mnist or fashion_mnist")
    train.add_argument("--epochs", type=positive, help="default: the model's")
    train.add_argument("--batch-size", type=positive, help="default: the model's")
    train.add_argument("--data-dir", help="directory with the IDX files")
    train.add_argument("--data-fraction", type=fraction, default=1.0)
    train.add_argument("--validation-split", type=float, default=0.1)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default="auto", help="auto, cpu or gpu")
    train.add_argument("--checkpoint", action="store_true")
    train.add_argument("--tensorboard", action="store_true")
    train.add_argument("--early-stopping", type=positive, metavar="PATIENCE")
    train.add_argument("--output", required=True, help="run directory")
    train.add_argument(
        "--strategy",
        default="auto",
        choices=["auto", "mirrored", "multi_worker", "tpu"],
        help="tf.distribute strategy (chapter 5); auto: Model.fit, or "
        "multi_worker when TF_CONFIG describes a cluster",
    )
    train.add_argument(
        "--precision",
        choices=["float32", "mixed_bfloat16", "mixed_float16"],
        help="default: the training plan's choice for this machine (chapter 5); "
        "float32 for distributed runs",
    )
    train.add_argument(
        "--steps-per-execution", type=positive, help="default: the plan's"
    )
    train.add_argument(
        "--batch-scale",
        type=positive,
        help="train with this multiple of --batch-size (Adam's rate x its square "
        "root); 1 keeps --batch-size; default: the plan's",
    )
    train.add_argument(
        "--jit-compile",
        choices=["on", "off"],
        help="XLA; default: the plan's (on for GPU/TPU, off on CPU)",
    )
    train.add_argument(
        "--steps-per-epoch", type=positive, help="cut epochs (distributed runs)"
    )
    train.add_argument(
        "--checkpoint-every",
        type=positive,
        metavar="STEPS",
        help="distributed runs also checkpoint every STEPS steps",
    )

    launch = verbs.add_parser(
        "launch", help="run a command as N local workers with TF_CONFIG"
    )
    launch.add_argument("--workers", type=positive, default=2)
    launch.add_argument("--timeout", type=float, default=600.0, help="seconds")
    launch.add_argument(
        "--output", help="for launch.json and worker logs; default: the command's"
    )
    launch.add_argument("command", nargs=argparse.REMAINDER, help="-- train ...")

    book = verbs.add_parser("book", help="execute chapters with papermill")
    book_verbs = book.add_subparsers(dest="book_verb", required=True)
    book_run = book_verbs.add_parser("run", help="run chapters, write summary.json")
    book_run.add_argument("chapters", nargs="*", help="e.g. 04 or 04_mnist_training")
    book_run.add_argument("--device", default="auto", help="auto, cpu, gpu or tpu")
    book_run.add_argument("--precision", help="injected where a chapter has it")
    book_run.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    book_run.add_argument("--output-dir", "--output", dest="output", required=True)
    book_run.add_argument("--timeout", type=float, default=1800.0, help="per cell")

    tune = verbs.add_parser("tune", help="search hyperparameters (KerasTuner)")
    tune.add_argument(
        "--algorithm", default="hyperband", choices=["hyperband", "random", "bayesian"]
    )
    tune.add_argument("--max-trials", type=positive, default=10, help="random/bayes")
    tune.add_argument("--max-epochs", type=positive, default=3)
    tune.add_argument("--epoch-budget", type=positive, help="random/bayes: epochs")
    tune.add_argument("--data-fraction", type=fraction, default=0.2)
    tune.add_argument("--executions-per-trial", type=positive, default=1)
    tune.add_argument("--param-budget", type=positive, help="most parameters")
    tune.add_argument(
        "--budget-policy", default="reject", choices=["reject", "penalize"]
    )
    tune.add_argument("--batch-size", type=positive, default=128)
    tune.add_argument("--final-epochs", type=positive, default=10)
    tune.add_argument("--no-retrain", action="store_true", help="search only")
    tune.add_argument("--dataset", default="mnist")
    tune.add_argument("--data-dir")
    tune.add_argument("--seed", type=int, default=0)
    tune.add_argument("--device", default="auto", help="auto, cpu or gpu")
    tune.add_argument("--output", required=True, help="search directory (resumes)")

    evaluate = verbs.add_parser("evaluate", help="evaluate a saved .keras model")
    evaluate.add_argument("--model", required=True, help="path to model.keras")
    evaluate.add_argument("--dataset", default="mnist")
    evaluate.add_argument("--data-dir")
    evaluate.add_argument("--output", help="default: the model's directory")
    compress.add_verb(verbs)
    deploy.add_verbs(verbs)
    return parser


def _train(args) -> str:
    from cnnlearn import distribute, train

    if args.strategy != "auto" or len(distribute.task_info().get("cluster", {})):
        return _train_distributed(args)
    jit = {"on": True, "off": False, None: None}[args.jit_compile]
    overrides = {"precision": args.precision, "jit_compile": jit}
    overrides["steps_per_execution"] = args.steps_per_execution
    overrides["batch_scale"] = args.batch_scale
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
        plan={k: v for k, v in overrides.items() if v is not None},
    )
    return (
        f"test_accuracy={metrics['test_accuracy']:.4f} "
        f"test_loss={metrics['test_loss']:.4f} epochs={metrics['epochs']} "
        f"train_seconds={metrics['train_seconds']:.1f} → {args.output}/metrics.json"
    )


def _train_distributed(args) -> str:
    from cnnlearn import distribute

    strategy = "multi_worker" if args.strategy == "auto" else args.strategy
    metrics = distribute.run(
        args.model,
        args.dataset,
        output_dir=args.output,
        strategy=strategy,
        device=args.device,
        precision=args.precision or "float32",
        epochs=args.epochs,
        batch_size=args.batch_size,
        data_dir=args.data_dir,
        data_fraction=args.data_fraction,
        seed=args.seed,
        validation_split=args.validation_split,
        steps_per_epoch=args.steps_per_epoch,
        checkpoint_every=args.checkpoint_every,
    )
    return (
        f"test_accuracy={metrics['test_accuracy']:.4f} "
        f"strategy={metrics['strategy']} replicas={metrics['replicas']} "
        f"steps={metrics['initial_step']}->{metrics['final_step']} → {args.output}"
    )


def _launch(args) -> str:
    from cnnlearn import launch

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    output = args.output
    if output is None and "--output" in command[:-1]:
        output = command[command.index("--output") + 1]
    if output is None:
        raise ValueError("launch needs --output, or a command with --output")
    result = launch.launch(
        command, args.workers, timeout=args.timeout, output_dir=output
    )
    if not result.ok:
        logs = f"{output}/worker_<i>.log"  # the C++ log lines are there only
        raise ValueError(f"{result.failed} (see {output}/launch.json and {logs})")
    return f"{result.workers} workers ok in {result.seconds:.1f} s → {output}"


def _book(args) -> str:
    from cnnlearn import runner

    summary = runner.run_book(
        args.chapters,
        output_dir=args.output,
        device=args.device,
        precision=args.precision,
        params=runner.parse_params(args.param),
        timeout=args.timeout,
    )
    failed = [r["chapter"] for r in summary["chapters"] if not r["ok"]]
    if failed:
        raise ValueError(
            f"chapters failed: {', '.join(failed)} (see {args.output}/summary.json)"
        )
    n = len(summary["chapters"])
    return f"{n} chapters ok → {args.output}/summary.json"


def _tune(args) -> str:
    from cnnlearn import tune

    result = tune.run_search(
        args.algorithm,
        directory=args.output,
        max_trials=args.max_trials,
        max_epochs=args.max_epochs,
        epoch_budget=args.epoch_budget,
        data_fraction=args.data_fraction,
        executions_per_trial=args.executions_per_trial,
        seed=args.seed,
        param_budget=args.param_budget,
        budget_policy=args.budget_policy,
        batch_size=args.batch_size,
        final_epochs=args.final_epochs,
        retrain_best=not args.no_retrain,
        dataset=args.dataset,
        data_dir=args.data_dir,
        device=args.device,
    )
    best, final = result.report["best"], result.report["final"]
    test = f" test_accuracy={final['test_accuracy']:.4f}" if final else ""
    return (
        f"trials={len(result.trials)} best_val_accuracy={best['val_accuracy']:.4f} "
        f"params={best['params']}{test} → {args.output}/best_hparams.json"
    )


def _evaluate(args) -> str:
    from cnnlearn import train

    report = train.evaluate_saved(args.model, args.dataset, args.data_dir, args.output)
    return f"test_accuracy={report['accuracy']:.4f} test_loss={report['loss']:.4f}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.verb != "serve":  # the LiteRT server runs without TensorFlow
        import cnnlearn._tf  # noqa: F401  (after parsing: --help stays instant)

    verb = {
        "train": _train,
        "evaluate": _evaluate,
        "launch": _launch,
        "book": _book,
        "tune": _tune,
        "compress": compress.compress,
        "serve": deploy.serve,
        "deploy": deploy.deploy,
    }[args.verb]
    try:
        with contextlib.redirect_stdout(sys.stderr):  # Keras progress → stderr
            summary = verb(args)
    except (ValueError, OSError) as exc:  # DataError is a ValueError
        message = " ".join(str(exc).split())  # one line, whatever the source
        print(f"cnnlearn {args.verb}: error: {message}", file=sys.stderr)
        return 1
    print(summary)
    return 0
