"""Where benchmark result files live and how chapters read them.

Heavy runs live in ``benchmarks/`` and write ``benchmarks/results/<topic>.json``;
chapters read those files through :func:`load_benchmark` instead of retraining.
"""

from __future__ import annotations

import json
from pathlib import Path

from cnnlearn._io import find_upward

__all__ = ["RESULTS_URL", "find_benchmark", "load_benchmark", "results_dir"]

RESULTS_URL = (
    "https://raw.githubusercontent.com/cnnlearn/cnnlearn/main/benchmarks/results/"
)


def results_dir(path: str | Path | None = None) -> Path | None:
    """``path``, or the ``benchmarks/results`` folder found from the working
    directory up (``None`` outside a checkout)."""
    return Path(path) if path is not None else find_upward("benchmarks/results")


def load_benchmark(topic: str, directory: str | Path | None = None) -> dict:
    """Read ``benchmarks/results/<topic>.json``.

    It is looked for in ``directory``, else in the checkout around the working
    directory (:func:`results_dir`); outside a checkout (Colab, say) the
    published file is downloaded instead.
    """
    found = results_dir(directory)
    path = found / f"{topic}.json" if found is not None else None
    if path is None or not path.is_file():
        if directory is not None:
            raise FileNotFoundError(
                f"{path} not found: run `python benchmarks/{topic}.py` to make it"
            )
        import keras

        url = f"{RESULTS_URL}{topic}.json"
        path = Path(keras.utils.get_file(f"cnnlearn-{topic}.json", url))
    return json.loads(path.read_text())


def find_benchmark(topic: str, directory: str | Path | None = None) -> dict | None:
    """Read ``benchmarks/results/<topic>.json`` if this checkout has it, else
    ``None`` (nothing is downloaded): for results only some machines can make,
    such as ``gpu.json``, which a chapter then reports as not measured yet."""
    found = results_dir(directory)
    path = found / f"{topic}.json" if found is not None else None
    if path is None or not path.is_file():
        return None
    return json.loads(path.read_text())
