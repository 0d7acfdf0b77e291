"""Where benchmark result files live and how chapters read them.

Heavy runs live in ``benchmarks/`` and write ``benchmarks/results/<topic>.json``;
chapters read those files through :func:`load_benchmark` instead of retraining.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["RESULTS_DIR", "RESULTS_URL", "load_benchmark"]

RESULTS_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
RESULTS_URL = (
    "https://raw.githubusercontent.com/cnnlearn/cnnlearn/main/benchmarks/results/"
)


def load_benchmark(topic: str, results_dir: str | Path | None = None) -> dict:
    """Read ``benchmarks/results/<topic>.json``.

    It is looked for in ``results_dir``, then in the repository this package was
    installed from (``pip install -e .``); a package installed without the
    repository (Colab, say) downloads the published file instead.
    """
    directory = Path(results_dir) if results_dir is not None else RESULTS_DIR
    path = directory / f"{topic}.json"
    if not path.is_file():
        if results_dir is not None:
            raise FileNotFoundError(
                f"{path} not found: run `python benchmarks/{topic}.py` to make it"
            )
        import keras

        url = f"{RESULTS_URL}{topic}.json"
        path = Path(keras.utils.get_file(f"cnnlearn-{topic}.json", url))
    return json.loads(path.read_text())
