"""Argument types and the parser class shared by the ``cnnlearn`` verbs."""

from __future__ import annotations

import argparse

__all__ = ["EXIT_BAD_INPUT", "Parser", "fraction", "positive"]

EXIT_BAD_INPUT = 2


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not usage + message
        self.exit(EXIT_BAD_INPUT, f"cnnlearn: error: {message}\n")


def fraction(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value
