"""How the package talks while it works: progress lines and loggers.

Progress (an epoch done, a trial finished, a gate passed) goes to stderr as one
line each through :func:`say`, so stdout stays free for a verb's summary and a
notebook shows the lines as they come. Diagnostics that a user may switch on
or off go through the standard :mod:`logging` tree under ``cnnlearn.``
(:func:`logger`).
"""

from __future__ import annotations

import logging
import sys

__all__ = ["logger", "say"]


def say(message: str, verbose: bool | int = True) -> None:
    """Print one progress line to stderr (flushed) when ``verbose`` is true."""
    if verbose:
        print(message, file=sys.stderr, flush=True)


def logger(name: str) -> logging.Logger:
    """The logger ``cnnlearn.<name>`` (``"deploy"``, ``"distribute"``, ...)."""
    return logging.getLogger(f"cnnlearn.{name}")
