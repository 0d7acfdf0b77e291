"""The reference pruning: TensorFlow Model Optimization on tf_keras (chapter 6).

tfmot works only on Keras 2 (``tf_keras``) and importing it switches the whole
process to legacy Keras, so it never runs inside the book's Keras 3 process.
:func:`run_peer` starts ``python -m cnnlearn.compress.tfmot_peer`` in a fresh
process: it rebuilds the seed CNN in tf_keras with the weights it is given,
prunes it with tfmot's ``prune_low_magnitude`` and ``PolynomialDecay``, strips
the wrappers and reports per-layer sparsity, sizes (zipped ``.h5`` and pruned
dynamic-range TFLite, the pipeline of tfmot's own guide) and test accuracy. It
also writes the stripped weights, so the caller can put them through its own
Keras 3 pipeline and compare like with like.

The peer module itself imports nothing from Keras 3.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

__all__ = ["run_peer"]


def run_peer(
    weights: list[np.ndarray],
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    *,
    initial_sparsity: float = 0.5,
    final_sparsity: float = 0.8,
    frequency: int = 10,
    end_step: int | None = None,
    epochs: int = 2,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    validation_split: float = 0.1,
    timeout: float = 900,
) -> dict:
    """Prune the seed CNN with tfmot in a subprocess; return its report.

    Parameters
    ----------
    weights
        The seed CNN's weights (``model.get_weights()`` of
        ``models.get_model("seed")``): conv kernel, conv bias, dense kernel,
        dense bias.
    train, test
        ``(uint8 images (N, 28, 28[, 1]), labels)``; the peer scales by 1/255.
    initial_sparsity, final_sparsity, frequency, end_step, epochs
        tfmot's PolynomialDecay from step 0 to ``end_step`` (default: the last
        pruning step within ``epochs``, so that the target is reached).

    Returns
    -------
    dict
        ``layers`` (name → sparsity), ``accuracy_before``, ``accuracy``,
        ``h5_gzip_before``, ``h5_gzip_after``, ``tflite_dynamic_gzip``,
        ``seconds``, ``versions`` and ``weights`` (the stripped arrays).
        Raises ``RuntimeError`` with the peer's stderr if it fails.
    """
    with tempfile.TemporaryDirectory(prefix="tfmot_peer_") as tmp:
        tmp = Path(tmp)
        np.savez(tmp / "weights.npz", *weights)
        np.savez(
            tmp / "data.npz",
            x_train=np.asarray(train[0], np.uint8),
            y_train=np.asarray(train[1]),
            x_test=np.asarray(test[0], np.uint8),
            y_test=np.asarray(test[1]),
        )
        config = {
            "initial_sparsity": initial_sparsity,
            "final_sparsity": final_sparsity,
            "frequency": frequency,
            "end_step": end_step,
            "epochs": epochs,
            "batch_size": batch_size,
            "learning_rate": learning_rate,
            "validation_split": validation_split,
        }
        proc = subprocess.run(
            [sys.executable, "-m", "cnnlearn.compress.tfmot_peer", str(tmp),
             json.dumps(config)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"tfmot peer failed:\n{proc.stderr[-3000:]}")
        report = json.loads((tmp / "report.json").read_text())
        with np.load(tmp / "stripped.npz") as f:
            report["weights"] = [f[f"arr_{i}"] for i in range(len(f.files))]
    return report


# The subprocess side. tensorflow, tfmot and tf_keras are imported inside these
# functions, never at module level: importing tfmot switches a process to
# tf_keras, and run_peer's caller (a Keras 3 process) imports this module.


def _gzip_bytes(content: bytes) -> int:
    return len(gzip.compress(content, compresslevel=9, mtime=0))


def _load_inputs(directory: Path) -> tuple[tuple, tuple, list[np.ndarray]]:
    """The train and test sets (scaled to [0, 1]) and the weights run_peer wrote."""
    with np.load(directory / "data.npz") as f:
        x_train = f["x_train"].reshape(-1, 28, 28, 1).astype(np.float32) / 255.0
        x_test = f["x_test"].reshape(-1, 28, 28, 1).astype(np.float32) / 255.0
        y_train, y_test = f["y_train"], f["y_test"]
    with np.load(directory / "weights.npz") as f:
        weights = [f[f"arr_{i}"] for i in range(len(f.files))]
    return (x_train, y_train), (x_test, y_test), weights


def _seed_cnn(weights: list[np.ndarray]):
    """The seed CNN rebuilt in tf_keras with ``weights``, compiled to evaluate."""
    import tf_keras

    layers = tf_keras.layers
    model = tf_keras.Sequential(
        [
            layers.InputLayer(input_shape=(28, 28, 1)),
            layers.Conv2D(32, 3, activation="relu", name="conv2d"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(10, activation="softmax", name="dense"),
        ]
    )
    model.set_weights(weights)
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _schedule(config: dict, n_images: int):
    """tfmot's PolynomialDecay for the run, its end step and the run's steps.

    Without an ``end_step`` the ramp ends on the last pruning step inside the
    run, so that the target is reached.
    """
    import tensorflow_model_optimization as tfmot

    n_train = n_images - int(round(n_images * config["validation_split"]))
    steps = -(-n_train // config["batch_size"]) * config["epochs"]
    end_step = config["end_step"]
    if end_step is None:  # the last pruning step inside the run
        end_step = (steps - 1) - (steps - 1) % config["frequency"]
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=config["initial_sparsity"],
        final_sparsity=config["final_sparsity"],
        begin_step=0,
        end_step=end_step,
        frequency=config["frequency"],
    )
    return schedule, end_step, steps


def _prune(model, schedule, train: tuple, config: dict):
    """Fine-tune ``model`` under tfmot's pruning; return the stripped model."""
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras

    pruned = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
    pruned.compile(
        optimizer=tf_keras.optimizers.Adam(config["learning_rate"]),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    tf.random.set_seed(0)
    pruned.fit(
        *train,
        batch_size=config["batch_size"],
        epochs=config["epochs"],
        validation_split=config["validation_split"],
        callbacks=[tfmot.sparsity.keras.UpdatePruningStep()],
        verbose=0,
    )
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    stripped.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return stripped


def _h5_gzip(model, path: Path) -> int:
    """Save ``model`` as ``.h5`` (no optimizer) at ``path``; its gzipped size."""
    import tf_keras

    tf_keras.models.save_model(model, path, include_optimizer=False)
    return _gzip_bytes(path.read_bytes())


def _dynamic_tflite(model) -> bytes:
    """The dynamic-range TFLite flatbuffer of a tf_keras model (tfmot's guide)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()


def _kernel_sparsity(model) -> dict[str, float]:
    sparsity = {}
    for layer in model.layers:
        if hasattr(layer, "kernel"):
            kernel = layer.kernel.numpy()
            sparsity[layer.name] = 1.0 - np.count_nonzero(kernel) / kernel.size
    return sparsity


def _versions() -> dict[str, str]:
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras

    return {
        "tfmot": tfmot.__version__,
        "tf_keras": tf_keras.__version__,
        "tensorflow": tf.__version__,
    }


def _main(directory: Path, config: dict) -> None:  # runs in the subprocess
    """Prune the seed CNN with tfmot; write ``report.json`` and ``stripped.npz``."""
    start = time.perf_counter()
    train, (x_test, y_test), weights = _load_inputs(directory)
    model = _seed_cnn(weights)
    accuracy_before = float(model.evaluate(x_test, y_test, verbose=0)[1])
    h5_gzip_before = _h5_gzip(model, directory / "before.h5")
    schedule, end_step, steps = _schedule(config, len(train[0]))
    stripped = _prune(model, schedule, train, config)
    accuracy = float(stripped.evaluate(x_test, y_test, verbose=0)[1])
    h5_gzip_after = _h5_gzip(stripped, directory / "after.h5")
    tflite = _dynamic_tflite(stripped)
    np.savez(directory / "stripped.npz", *stripped.get_weights())
    report = {
        "layers": _kernel_sparsity(stripped),
        "accuracy_before": accuracy_before,
        "accuracy": accuracy,
        "h5_gzip_before": h5_gzip_before,
        "h5_gzip_after": h5_gzip_after,
        "tflite_dynamic_raw": len(tflite),
        "tflite_dynamic_gzip": _gzip_bytes(tflite),
        "steps": steps,
        "end_step": end_step,
        "seconds": time.perf_counter() - start,
        "versions": _versions(),
        "config": config,
    }
    (directory / "report.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("config", type=json.loads)
    args = parser.parse_args()
    _main(args.directory, args.config)
