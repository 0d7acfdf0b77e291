"""Argument types, the parser class and the run-configuration group shared by
the ``cnnlearn`` verbs.

Every run verb (``train``, ``tune``, ``compress``, ``deploy``) adds the options
of :class:`~cnnlearn.config.RunConfig` with :func:`add_run_arguments`, with its
own defaults, and builds its config once with :func:`run_config`.
"""

from __future__ import annotations

import argparse
import math

from cnnlearn.config import BACKENDS, RunConfig

__all__ = [
    "EXIT_BAD_INPUT",
    "RUN_FIELDS",
    "Parser",
    "add_backend_argument",
    "add_run_arguments",
    "bounded",
    "fraction",
    "port",
    "positive",
    "run_config",
    "split",
]

EXIT_BAD_INPUT = 2


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (exit status 2)."""

    def error(self, message: str):  # one line, not usage + message
        self.exit(EXIT_BAD_INPUT, f"cnnlearn: error: {message}\n")


def fraction(text: str) -> float:
    """A share in (0, 1]."""
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def positive(text: str) -> int:
    """An integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def split(text: str) -> float:
    """A held-out share in [0, 1)."""
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


# RunConfig's fields as options, in the order ``--help`` lists them (``plan``
# has no option of its own: ``train`` builds it from its plan flags).
_OPTIONS = {
    "model": ("--model", {"help": "seed, lenet5 or strong"}),
    "dataset": ("--dataset", {"help": "mnist or fashion_mnist"}),
    "data_dir": ("--data-dir", {"help": "directory with the IDX files"}),
    "data_fraction": ("--data-fraction", {"type": fraction}),
    "seed": ("--seed", {"type": int}),
    "validation_split": ("--validation-split", {"type": split}),
    "epochs": ("--epochs", {"type": positive}),
    "batch_size": ("--batch-size", {"type": positive}),
    "device": ("--device", {"help": "auto, cpu, gpu or tpu"}),
}
RUN_FIELDS = tuple(_OPTIONS)


def add_run_arguments(
    parser: argparse.ArgumentParser,
    *,
    skip: tuple[str, ...] = (),
    helps: dict[str, str] | None = None,
    **defaults,
) -> None:
    """Add the run configuration's options (:class:`cnnlearn.config.RunConfig`)
    to a verb's ``parser``, as one group.

    ``defaults`` override a field's default for this verb (``tune`` searches on
    ``data_fraction=0.2``, say); ``skip`` leaves fields out (``compress`` takes
    ``--model`` as a path); ``helps`` says what a field means for this verb.
    :func:`run_config` turns the parsed options into the config.
    """
    helps = helps or {}
    unknown = sorted((set(skip) | set(defaults) | set(helps)) - set(RUN_FIELDS))
    if unknown:
        raise TypeError(f"not run-configuration fields: {', '.join(unknown)}")
    group = parser.add_argument_group("run configuration")
    base = RunConfig()
    fields = tuple(name for name in RUN_FIELDS if name not in skip)
    parser.set_defaults(run_fields=fields)
    for name in fields:
        flag, options = _OPTIONS[name]
        default = defaults.get(name, getattr(base, name))
        if name in ("epochs", "batch_size"):
            shown = default if default is not None else "the model's"
            options = {**options, "help": f"default: {shown}"}
        if name in helps:
            said = [helps[name], options.get("help")]
            options = {**options, "help": "; ".join(filter(None, said))}
        group.add_argument(flag, default=default, **options)


def add_backend_argument(parser) -> None:
    """``--backend``: the Keras backend the verb runs on (chapter 4). Only the
    verbs that run on every backend take it (``train``, ``evaluate``, ``book
    run``); compression and serving are TensorFlow's, and there ``--backend``
    names the serving runtime."""
    parser.add_argument(
        "--backend",
        dest="keras_backend",  # serve's and deploy's --backend is the runtime
        choices=list(BACKENDS),
        help="Keras backend; default: $KERAS_BACKEND, else tensorflow",
    )


def run_config(args: argparse.Namespace, **extra) -> RunConfig:
    """The :class:`~cnnlearn.config.RunConfig` of parsed ``args`` (fields a verb
    skipped keep their defaults); ``extra`` sets more fields (``plan=...``)."""
    values = {name: getattr(args, name) for name in args.run_fields}
    return RunConfig(**{**values, **extra})


def bounded(low: float, high: float = math.inf, unit: str = "", *, open_low=False):
    """An argparse type: a finite number in ``[low, high]`` (``(low, high]`` with
    ``open_low``), refused at parse time with the range and unit in the
    message. ``nan`` and ``inf`` are refused: a NaN threshold would pass every
    comparison that asks "is it worse?"."""
    left = "(" if open_low else "["
    span = f"{left}{low:g}, {high:g}]{' ' + unit if unit else ''}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a number, got {text!r}"
            ) from None
        inside = (low < value if open_low else low <= value) and value <= high
        if not (math.isfinite(value) and inside):
            raise argparse.ArgumentTypeError(
                f"must be finite and in {span}, got {text}"
            )
        return value

    return parse


def port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a TCP port is 0 to 65535, got {text}")
    return value
