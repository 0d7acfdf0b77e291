"""The ``cnnlearn`` command: a thin layer over the package's functions.

Every verb writes a JSON report into its output directory, shows progress on
stderr, prints a one-line summary on stdout, and on bad input exits non-zero
with a one-line message instead of a traceback.

Its parts: :mod:`cnnlearn.cli._args` (argument types and the run-configuration
group every run verb shares), :mod:`cnnlearn.cli.compress` and
:mod:`cnnlearn.cli.deploy` (those verbs). They are the command's internals, so
the package exports only :func:`build_parser` and :func:`main`.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

from cnnlearn import __version__
from cnnlearn.cli import compress, deploy
from cnnlearn.cli._args import (
    Parser,
    add_backend_argument,
    add_run_arguments,
    bounded,
    positive,
    run_config,
)
from cnnlearn.config import RunConfig, use_backend
from cnnlearn.progress import say

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``cnnlearn`` parser: one sub-parser per verb."""
    parser = Parser(prog="cnnlearn", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=__version__)
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=Parser)
    _add_train(verbs)
    _add_launch(verbs)
    _add_book(verbs)
    _add_tune(verbs)
    _add_evaluate(verbs)
    compress.add_verb(verbs)
    deploy.add_verbs(verbs)
    return parser


def _add_train(verbs) -> None:
    """``train`` (chapter 4; its plan and distributed options, chapter 5)."""
    train = verbs.add_parser("train", help="train a model, evaluate it, save it")
    add_run_arguments(train)
    train.add_argument("--checkpoint", action="store_true")
    train.add_argument("--tensorboard", action="store_true")
    train.add_argument("--early-stopping", type=positive, metavar="PATIENCE")
    train.add_argument("--output", required=True, help="run directory")
    add_backend_argument(train)
    _add_plan_options(train)
    _add_distributed_options(train)


def _add_plan_options(train: argparse.ArgumentParser) -> None:
    """``train``'s overrides of the training plan (:func:`cnnlearn.compute.plan`)."""
    plan = train.add_argument_group("training plan (chapter 5)")
    plan.add_argument(
        "--precision",
        choices=["float32", "mixed_bfloat16", "mixed_float16"],
        help="default: the training plan's choice for this machine; "
        "float32 for distributed runs",
    )
    plan.add_argument(
        "--steps-per-execution", type=positive, help="default: the plan's"
    )
    plan.add_argument(
        "--batch-scale",
        type=positive,
        help="train with this multiple of --batch-size (Adam's rate x its square "
        "root); 1 keeps --batch-size; default: the plan's",
    )
    plan.add_argument(
        "--jit-compile",
        choices=["on", "off"],
        help="XLA; default: the plan's (on for GPU/TPU, off on CPU)",
    )


def _add_distributed_options(train: argparse.ArgumentParser) -> None:
    """``train``'s tf.distribute options (:mod:`cnnlearn.distribute`)."""
    distributed = train.add_argument_group("distributed runs (chapter 5)")
    distributed.add_argument(
        "--strategy",
        default="auto",
        choices=["auto", "mirrored", "multi_worker", "tpu"],
        help="tf.distribute strategy; auto: Model.fit, or multi_worker when "
        "TF_CONFIG describes a cluster",
    )
    distributed.add_argument("--steps-per-epoch", type=positive, help="cut epochs")
    distributed.add_argument(
        "--checkpoint-every",
        type=positive,
        metavar="STEPS",
        help="also checkpoint every STEPS steps",
    )


def _add_launch(verbs) -> None:
    """``launch`` (chapter 5)."""
    launch = verbs.add_parser(
        "launch", help="run a command as N local workers with TF_CONFIG"
    )
    launch.add_argument("--workers", type=positive, default=2)
    launch.add_argument(
        "--timeout", type=bounded(0, 86400, "seconds", open_low=True), default=600.0
    )
    launch.add_argument(
        "--output", help="for launch.json and worker logs; default: the command's"
    )
    launch.add_argument("command", nargs=argparse.REMAINDER, help="-- train ...")


def _add_book(verbs) -> None:
    """``book run`` (chapter 5) and the editions' verbs (:func:`_add_editions`)."""
    book = verbs.add_parser("book", help="run chapters; build and check the editions")
    book_verbs = book.add_subparsers(dest="book_verb", required=True)
    _add_editions(book_verbs)
    run = book_verbs.add_parser("run", help="run chapters, write summary.json")
    run.add_argument("chapters", nargs="*", help="e.g. 04 or 04_mnist_training")
    run.add_argument("--device", default="auto", help="auto, cpu, gpu or tpu")
    add_backend_argument(run)
    run.add_argument("--precision", help="injected where a chapter has it")
    run.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    run.add_argument("--output-dir", "--output", dest="output", required=True)
    run.add_argument(
        "--timeout",
        type=bounded(0, 86400, "seconds", open_low=True),
        default=1800.0,
        help="per cell",
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="list per chapter what would run on the device; run nothing",
    )


def _add_editions(book_verbs) -> None:
    """``book check-translations``, ``translation-status``, ``zh-site``, ``pdf``."""
    book_verbs.add_parser(
        "check-translations",
        help="fail on a stale or missing translated cell (book/zh/*.yml)",
    )
    status = book_verbs.add_parser(
        "translation-status",
        help="each stale or missing cell: its id, hash and English source",
    )
    status.add_argument("pages", nargs="*", help="e.g. 01, index; default: all")
    status.add_argument("--no-source", action="store_true", help="ids only")
    site = book_verbs.add_parser("zh-site", help="build the Chinese site")
    pdf = book_verbs.add_parser("pdf", help="build cnnlearn-en.pdf, cnnlearn-zh.pdf")
    pdf.add_argument("editions", nargs="*", help="en, zh; default: both")
    pdf.add_argument("--output", default="_build/pdf", help="default: _build/pdf")
    for parser in (site, pdf):
        parser.add_argument(
            "--executed",
            help="a root holding book/<chapter>.ipynb with outputs; default: "
            "_build/jupyter_execute after `make book`, else the committed book",
        )


def _add_tune(verbs) -> None:
    """``tune`` (chapter 7): it searches models, so it takes no ``--model``."""
    tune = verbs.add_parser("tune", help="search hyperparameters (KerasTuner)")
    add_run_arguments(
        tune,
        skip=("model", "validation_split", "epochs"),
        data_fraction=0.2,
        batch_size=128,
    )
    tune.add_argument(
        "--algorithm", default="hyperband", choices=["hyperband", "random", "bayesian"]
    )
    tune.add_argument("--max-trials", type=positive, default=10, help="random/bayes")
    tune.add_argument("--max-epochs", type=positive, default=3)
    tune.add_argument("--epoch-budget", type=positive, help="random/bayes: epochs")
    tune.add_argument("--executions-per-trial", type=positive, default=1)
    tune.add_argument("--param-budget", type=positive, help="most parameters")
    tune.add_argument(
        "--budget-policy", default="reject", choices=["reject", "penalize"]
    )
    tune.add_argument("--final-epochs", type=positive, default=10)
    tune.add_argument("--no-retrain", action="store_true", help="search only")
    tune.add_argument("--output", required=True, help="search directory (resumes)")


def _add_evaluate(verbs) -> None:
    """``evaluate`` (chapter 4)."""
    evaluate = verbs.add_parser("evaluate", help="evaluate a saved .keras model")
    evaluate.add_argument("--model", required=True, help="path to model.keras")
    evaluate.add_argument("--dataset", default="mnist")
    evaluate.add_argument("--data-dir")
    evaluate.add_argument("--output", help="default: the model's directory")
    add_backend_argument(evaluate)


# The verbs import what they run when they run: ``--help`` stays instant and
# ``serve`` (the LiteRT server) never loads TensorFlow.


def _train(args) -> str:
    import os

    from cnnlearn import train

    jit = {"on": True, "off": False, None: None}[args.jit_compile]
    overrides = {
        "precision": args.precision,
        "jit_compile": jit,
        "steps_per_execution": args.steps_per_execution,
        "batch_scale": args.batch_scale,
    }
    config = run_config(
        args, plan={k: v for k, v in overrides.items() if v is not None}
    )
    if args.strategy != "auto" or os.environ.get("TF_CONFIG", "").strip():
        return _train_distributed(args, config)
    metrics = train.run_training(
        config,
        output_dir=args.output,
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


def _train_distributed(args, config: RunConfig) -> str:
    import keras

    if keras.config.backend() != "tensorflow":
        raise ValueError(
            f"--strategy and TF_CONFIG run tf.distribute, on the TensorFlow backend "
            f"only (not {keras.config.backend()}); on JAX one process spreads a "
            "batch over its devices (the training plan's devices)"
        )
    from cnnlearn.distribute.runs import run_distributed

    metrics = run_distributed(
        config,
        output_dir=args.output,
        strategy="multi_worker" if args.strategy == "auto" else args.strategy,
        precision=args.precision or "float32",
        steps_per_epoch=args.steps_per_epoch,
        checkpoint_every=args.checkpoint_every,
    )
    return (
        f"test_accuracy={metrics['test_accuracy']:.4f} "
        f"strategy={metrics['strategy']} replicas={metrics['replicas']} "
        f"steps={metrics['initial_step']}->{metrics['final_step']} → {args.output}"
    )


def _launch(args) -> str:
    from cnnlearn.distribute import launch

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    output = args.output
    if output is None and "--output" in command[:-1]:
        output = command[command.index("--output") + 1]
    if output is None:
        raise ValueError("launch needs --output, or a command with --output")
    result = launch.launch_workers(
        command, args.workers, timeout=args.timeout, output_dir=output
    )
    if not result.ok:
        logs = f"{output}/worker_<i>.log"  # the C++ log lines are there only
        raise ValueError(f"{result.failed} (see {output}/launch.json and {logs})")
    return f"{result.workers} workers ok in {result.seconds:.1f} s → {output}"


def _book(args) -> str:
    from cnnlearn import book

    if args.book_verb != "run":
        return _book_editions(args)
    if args.dry_run:
        return _book_dry_run(args)
    summary = book.run_book(
        args.chapters,
        output_dir=args.output,
        device=args.device,
        precision=args.precision,
        params=book.parse_params(args.param),
        timeout=args.timeout,
        backend=args.keras_backend,
    )
    failed = [r["chapter"] for r in summary["chapters"] if not r["ok"]]
    if failed:
        raise ValueError(
            f"chapters failed: {', '.join(failed)} (see {args.output}/summary.json)"
        )
    n = len(summary["chapters"])
    return f"{n} chapters ok → {args.output}/summary.json"


def _book_dry_run(args) -> str:
    """``book run --dry-run``: the parameters and the device use of each chapter,
    on stderr and in ``plan.json``; nothing runs and no device is needed."""
    from pathlib import Path

    from cnnlearn import book
    from cnnlearn._io import write_json

    steps = book.check_parameters(
        book.find_chapters(args.chapters),
        args.device,
        args.precision,
        book.parse_params(args.param),
    )
    plan = [{k: v for k, v in s.items() if k != "path"} for s in steps]
    for step in plan:
        use = step["device_use"]
        say(f"{step['chapter']}: on {args.device}: {use['device']}; CPU: {use['cpu']}")
    Path(args.output).mkdir(parents=True, exist_ok=True)
    write_json(
        Path(args.output) / "plan.json", {"device": args.device, "chapters": plan}
    )
    return f"{len(plan)} chapters planned, nothing run → {args.output}/plan.json"


def _book_editions(args) -> str:
    """The editions' verbs: check and list translations, build the zh site and
    the PDFs, all from the checkout the working directory is in."""
    from cnnlearn import book, translation

    root = book.book_dir().parent
    if args.book_verb == "check-translations":
        problems = translation.check_translations(root)
        if problems:
            raise ValueError(
                f"{len(problems)} translation problem(s) (cnnlearn book "
                f"translation-status lists the cells): {'; '.join(problems)}"
            )
        allowed = ", ".join(translation.UNTRANSLATED) or "none"
        return f"every translated page is up to date (untranslated: {allowed})"
    if args.book_verb == "translation-status":
        return _translation_status(root, args.pages, sources=not args.no_source)
    if args.book_verb == "zh-site":
        site = book.build_zh_site(root, executed=args.executed)
        return f"the Chinese site is in {site}/index.html"
    editions = args.editions or ["en", "zh"]
    unknown = sorted(set(editions) - {"en", "zh"})
    if unknown:
        raise ValueError(f"unknown edition(s) {', '.join(unknown)}: expected en, zh")
    pdfs = [
        book.build_pdf(root, lang, executed=args.executed, output_dir=args.output)
        for lang in editions
    ]
    return " ".join(str(p) for p in pdfs)


def _translation_status(root, names: list[str], *, sources: bool) -> str:
    """``book translation-status``: per page its counts, then each stale or
    missing cell (:func:`cnnlearn.translation.status_lines`)."""
    from cnnlearn import translation

    pages = translation.toc_pages(root)
    if names:
        wanted = [n.removesuffix(".ipynb").removesuffix(".md") for n in names]
        pages = [p for p in pages if any(p.stem.split("_")[0] == n or p.stem == n
                                         for n in wanted)]  # fmt: skip
        if len(pages) < len(set(wanted)):
            raise ValueError(f"unknown page(s) in {names}: expected e.g. 01 or index")
    lines = []
    for page in pages:
        status = translation.page_status(page)
        counts = ", ".join(
            f"{len(status[k])} {k}" for k in ("missing", "stale", "orphans")
        )
        note = " (in UNTRANSLATED)" if page.stem in translation.UNTRANSLATED else ""
        lines.append(f"{page.name}: {counts}{note}")
        lines += translation.status_lines(status, sources=sources)
    return "\n".join(lines)


def _tune(args) -> str:
    from cnnlearn import tune

    result = tune.run_search(
        run_config(args),
        args.algorithm,
        directory=args.output,
        max_trials=args.max_trials,
        max_epochs=args.max_epochs,
        epoch_budget=args.epoch_budget,
        executions_per_trial=args.executions_per_trial,
        param_budget=args.param_budget,
        budget_policy=args.budget_policy,
        final_epochs=args.final_epochs,
        retrain_best=not args.no_retrain,
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
    """Run ``cnnlearn`` with ``argv``; the exit status (0 ok, 1 bad input or a
    failed run, 2 bad arguments)."""
    args = build_parser().parse_args(argv)
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
        if getattr(args, "keras_backend", None):
            use_backend(args.keras_backend)  # before anything imports Keras
        # The LiteRT server runs without TensorFlow; the editions' verbs need none.
        if args.verb != "serve" and getattr(args, "book_verb", "run") == "run":
            import cnnlearn._tf  # noqa: F401  (after parsing: --help stays instant)
        with contextlib.redirect_stdout(sys.stderr):  # Keras progress → stderr
            summary = verb(args)
    except KeyboardInterrupt as exc:  # TrainingInterrupted, or a second Ctrl-C
        say(f"cnnlearn {args.verb}: {exc or 'interrupted'}")
        return 130
    except (ValueError, OSError, ImportError) as exc:  # DataError: a ValueError
        message = " ".join(str(exc).split())  # one line, whatever the source
        say(f"cnnlearn {args.verb}: error: {message}")
        return 1
    print(summary)
    return 0
