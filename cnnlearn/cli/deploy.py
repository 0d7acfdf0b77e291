"""``cnnlearn serve`` and ``cnnlearn deploy`` (chapter 8)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from cnnlearn.cli._args import add_run_arguments, bounded, port, positive, run_config
from cnnlearn.progress import say

__all__ = ["PROTECTIONS", "add_verbs", "connections", "deploy", "nonnegative", "serve"]

#: The server's protections as ``serve`` options: each is the keyword of
#: cnnlearn.deploy.server.serve of the same name (``--header-timeout`` →
#: ``header_timeout``). Left out, the server's own defaults apply (its
#: DEFAULT_* constants, not repeated here: one source).
PROTECTIONS = (
    "header_timeout",
    "body_timeout",
    "keep_alive_timeout",
    "limit_concurrency",
    "workers",
    "inline_bytes",
)
_SECONDS = bounded(0, 3600, "seconds", open_low=True)


def nonnegative(text: str) -> int:
    """An integer >= 0: a byte count where 0 means "none" (chapter 8)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 bytes, got {text}")
    return value


def connections(text: str) -> int:
    """An open-connection limit: an integer >= 2, the least the server
    accepts (``cnnlearn.deploy.transport.server_config``). Used in chapter 8."""
    value = positive(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be >= 2 connections, got {text}")
    return value


def _add_protections(serve) -> None:
    """``serve``'s options for the server's protections against slow, idle and
    greedy clients (see cnnlearn.deploy.transport.GuardedProtocol)."""
    group = serve.add_argument_group(
        "protections", "left out: the server's defaults (cnnlearn.deploy.server)"
    )
    group.add_argument(
        "--header-timeout",
        type=_SECONDS,
        help="seconds to receive a request's headers; then 408 and close",
    )
    group.add_argument(
        "--body-timeout",
        type=_SECONDS,
        help="seconds to receive a predict body after its headers; then 408",
    )
    group.add_argument(
        "--keep-alive-timeout",
        type=_SECONDS,
        help="seconds an idle keep-alive connection stays open",
    )
    group.add_argument(
        "--limit-concurrency",
        type=connections,
        help="open connections at most; more get a JSON 503",
    )
    group.add_argument(
        "--workers",
        type=positive,
        help="threads that parse large bodies and run the model",
    )
    group.add_argument(
        "--inline-bytes",
        type=nonnegative,
        help="bodies up to this size run on the event loop; 0: all to the workers",
    )


def _add_tf_serving(serve) -> None:
    """``serve``'s TF Serving options: a model config file, gRPC, batching.
    Each also takes TF Serving's own spelling (``--model_config_file``)."""
    group = serve.add_argument_group("TF Serving's model config, gRPC and batching")
    group.add_argument(
        "--model-config-file",
        "--model_config_file",
        dest="model_config_file",
        metavar="FILE",
        help="a ModelServerConfig in text format: models, version policies, "
        "labels (instead of --model-base-path and --model)",
    )
    group.add_argument(
        "--model-config-file-poll-wait-seconds",
        "--model_config_file_poll_wait_seconds",
        dest="model_config_file_poll_wait_seconds",
        type=bounded(0, 86400, "seconds"),
        default=0.0,
        metavar="SECONDS",
        help="re-read the model config file this often (on the next version "
        "poll, see --poll-seconds); 0: never",
    )
    group.add_argument(
        "--grpc-port",
        "--grpc_port",
        dest="grpc_port",
        type=port,
        metavar="PORT",
        help="also serve TF Serving's gRPC API here (TF Serving's --port); "
        "0: a free port",
    )
    group.add_argument(
        "--enable-batching",
        "--enable_batching",
        dest="enable_batching",
        action="store_true",
        help="batch predict requests server-side, one queue per model version",
    )
    group.add_argument(
        "--batching-parameters-file",
        "--batching_parameters_file",
        dest="batching_parameters_file",
        metavar="FILE",
        help="TF Serving's BatchingParameters in text format (max_batch_size, "
        "batch_timeout_micros, max_enqueued_batches, num_batch_threads)",
    )


def _add_serve(verbs) -> None:
    """``serve``: its models, ports, guards, TF Serving options, protections."""
    serve = verbs.add_parser(
        "serve", help="serve models over TF Serving's REST (and gRPC) API"
    )
    serve.add_argument("--model-base-path", help="the model's versions 1/, 2/, ...")
    serve.add_argument("--model-name", default="mnist")
    serve.add_argument("--model", action="append", default=[], metavar="NAME=DIR")
    serve.add_argument("--backend", choices=["savedmodel", "tflite"])
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument(
        "--port",
        type=port,
        default=8501,
        help="the REST port (TF Serving's --rest_api_port; its --port is gRPC's, "
        "here --grpc-port); 0: a free port",
    )
    serve.add_argument("--pin-version", type=positive, help="serve only this one")
    serve.add_argument(
        "--poll-seconds", type=bounded(0, 86400, "seconds", open_low=True), default=1.0
    )
    guards = serve.add_argument_group(
        "input guards (off by default, as in TF Serving; chapter 8 turns them on)"
    )
    guards.add_argument("--max-batch", type=positive, help="most instances a request")
    guards.add_argument(
        "--value-range",
        nargs=2,
        type=bounded(-math.inf, math.inf),
        metavar=("LOW", "HIGH"),
        help="refuse input values outside [LOW, HIGH] (pixels: 0 1)",
    )
    guards.add_argument(
        "--finite-only", action="store_true", help="refuse NaN and infinite inputs"
    )
    _add_tf_serving(serve)
    serve.add_argument("--max-body-bytes", type=positive, default=32 * 1024 * 1024)
    serve.add_argument("--output", help="writes server.json (url, pid) when ready")
    serve.add_argument(
        "--no-gc-freeze",
        dest="freeze_gc",
        action="store_false",
        help="leave start-up objects to the garbage collector (for benchmarks)",
    )
    _add_protections(serve)


def add_verbs(verbs) -> None:
    """``serve`` and ``deploy`` (chapter 8)."""
    _add_serve(verbs)

    deploy = verbs.add_parser("deploy", help="evaluate, gate and publish a version")
    deploy.add_argument("--base-path", required=True, help="versions go to NAME/N/")
    deploy.add_argument("--model-name", default="mnist")
    deploy.add_argument("--model", help=".keras file; default: train --train-model")
    deploy.add_argument("--train-model", default="seed")
    add_run_arguments(
        deploy,
        skip=("model", "validation_split", "batch_size"),
        helps={"epochs": "--train-model's epochs"},
        epochs=1,
    )
    deploy.add_argument("--min-accuracy", type=bounded(0, 1), default=0.97)
    deploy.add_argument(
        "--max-size-mb", type=bounded(0, math.inf, "MB", open_low=True), default=5.0
    )
    deploy.add_argument("--compress", choices=["dynamic", "float16", "int8"])
    deploy.add_argument("--serve", action="store_true", help="then serve it")
    deploy.add_argument("--backend", choices=["savedmodel", "tflite"])
    deploy.add_argument("--port", type=port, default=8501)
    deploy.add_argument("--output", required=True, help="deploy_report.json")


def _tf_serving_options(args, models: dict) -> dict:
    """``server.serve``'s keywords for ``serve``'s TF Serving options.
    Raises :class:`ValueError` for a combination TF Serving refuses or this
    server does."""
    from cnnlearn.deploy.batching import BatchingParameters, read_batching_parameters

    options: dict = {"grpc_port": args.grpc_port}
    if args.model_config_file is not None:
        if models or args.pin_version:
            raise ValueError(
                "--model-config-file lists the models: give it without "
                "--model-base-path, --model or --pin-version"
            )
        options["model_config_file"] = args.model_config_file
        options["config_poll_seconds"] = args.model_config_file_poll_wait_seconds
    if args.batching_parameters_file is not None and not args.enable_batching:
        # TF Serving's server.cc refuses this combination with these words.
        raise ValueError(
            "server_options.batching_parameters_file is set without setting "
            "server_options.enable_batching to true."
        )
    if args.enable_batching:
        options["batching"] = (
            read_batching_parameters(args.batching_parameters_file)
            if args.batching_parameters_file is not None
            else BatchingParameters()
        )
    return options


def serve(args) -> str:
    from cnnlearn.deploy import server  # when it runs: see cnnlearn.cli

    models = dict(m.split("=", 1) for m in args.model if "=" in m)
    if len(models) != len(args.model):
        raise ValueError(f"--model expects NAME=DIR, got {args.model}")
    if args.model_base_path:
        models[args.model_name] = args.model_base_path
    tf_serving = _tf_serving_options(args, models)
    if not models and args.model_config_file is None:
        raise ValueError(
            "nothing to serve: give --model-base-path, --model or --model-config-file"
        )
    pinned = {args.model_name: args.pin_version} if args.pin_version else None
    ready = None
    if args.output is not None:
        Path(args.output).mkdir(parents=True, exist_ok=True)
        ready = Path(args.output) / "server.json"
    protections = {
        name: getattr(args, name)
        for name in PROTECTIONS
        if getattr(args, name) is not None
    }
    server.serve(
        models,
        args.backend or "savedmodel",
        host=args.host,
        port=args.port,
        ready_file=ready,
        pinned=pinned,
        poll_seconds=args.poll_seconds,
        max_batch=args.max_batch,
        value_range=tuple(args.value_range) if args.value_range else None,
        finite_only=args.finite_only,
        max_body_bytes=args.max_body_bytes,
        freeze_gc=args.freeze_gc,
        **tf_serving,
        **protections,
    )
    return "server stopped"


def deploy(args) -> str:
    from cnnlearn.deploy import release, server  # when it runs: see cnnlearn.cli

    report = release.deploy(
        args.model,
        run_config(args, model=args.train_model),
        base_path=args.base_path,
        model_name=args.model_name,
        output_dir=args.output,
        min_accuracy=args.min_accuracy,
        max_size_mb=args.max_size_mb,
        compression=args.compress,
    )
    summary = (
        f"published {args.model_name} version {report['version']} "
        f"test_accuracy={report['tflite_test_accuracy']:.4f} → "
        f"{args.output}/deploy_report.json"
    )
    if args.serve:
        say(summary)
        server.serve(
            {args.model_name: report["model_dir"]},
            args.backend or "savedmodel",
            port=args.port,
            ready_file=f"{args.output}/server.json",
        )
    return summary
