"""Shared set-up for the tests of cnnlearn.deploy: two small trained models on
real MNIST, version 1 exported once per session, and a server subprocess that is
always stopped."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from conftest import REPO


@dataclass
class Built:
    """What :func:`build` made: models A and B, test images, an exported v1."""

    model_a: object
    model_b: object
    x_train: np.ndarray  # float, a 10 % sample
    x_test: np.ndarray  # float, 200 real test images
    x_test_uint8: np.ndarray
    y_test: np.ndarray
    base: Path  # base path: base / "mnist" / "1" holds model A
    keras_a: Path
    keras_b: Path


_BUILT: dict[str, Built] = {}


def build(root: Path, data_dir: Path) -> Built:
    """Train two seed CNNs for one epoch on 10 % of MNIST and export A as v1."""
    if "built" in _BUILT:
        return _BUILT["built"]
    from cnnlearn import models, train
    from cnnlearn.config import RunConfig, load_data
    from cnnlearn.deploy import export

    run = load_data(RunConfig(data_dir=data_dir, data_fraction=0.1))
    xf = run.x_train
    trained = []
    for seed in (0, 1):
        model = models.get_model("seed", seed=seed)
        train.fit(
            model, xf, run.y_train, epochs=1, batch_size=128, seed=seed, verbose=0
        )
        trained.append(model)
    root.mkdir(parents=True, exist_ok=True)
    trained[0].save(root / "a.keras")
    trained[1].save(root / "b.keras")
    base = root / "models"
    export.export_version(trained[0], base, "mnist", train_images=xf)
    x_test = run.x_test[:200]
    _BUILT["built"] = Built(
        trained[0],
        trained[1],
        xf,
        x_test,
        np.rint(x_test * 255).astype(np.uint8),  # the raw pixels: k / 255 exactly
        run.y_test[:200],
        base,
        root / "a.keras",
        root / "b.keras",
    )
    return _BUILT["built"]


def copy_models(built: Built, dest: Path) -> Path:
    """A private copy of the base path, for tests that add or remove versions."""
    shutil.copytree(built.base, dest)
    return dest


@contextlib.contextmanager
def running_server(model_dir: Path, out: Path, *args: str, timeout: float = 90.0):
    """``cnnlearn serve`` on a free loopback port; yields the URL; always stops it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log = open(out.parent / f"{out.name}.log", "wb")  # noqa: SIM115
    cmd = [sys.executable, "-m", "cnnlearn.cli", "serve", "--port", "0"]
    cmd += ["--model-base-path", str(model_dir), "--output", str(out), *args]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=log)
    try:
        ready = out / "server.json"
        deadline = time.monotonic() + timeout
        while not ready.is_file():
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"server not ready after {timeout} s")
            time.sleep(0.1)
        url = json.loads(ready.read_text())["url"]
        with urllib.request.urlopen(f"{url}/v1/models/mnist", timeout=30) as r:
            assert r.status == 200
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)
        log.close()


@contextlib.contextmanager
def threaded_server(app, **config):
    """``app`` under uvicorn in a thread of this process, configured as
    ``serve`` does (``config`` goes to :func:`transport.server_config`); yields
    ``(host, port)``; always stops it."""
    import socket
    import threading

    import uvicorn

    from cnnlearn.deploy import transport

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    uv = uvicorn.Server(transport.server_config(app, **config))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not uv.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        yield sock.getsockname()
    finally:
        uv.should_exit = True
        thread.join(timeout=30)
        sock.close()


@dataclass
class Plain:
    """SavedModels that cnnlearn did not export (what TF Serving users have)."""

    keras_base: Path  # 00000123/ and 00000124/: keras.Model.export(), no sidecar
    keras_model: object  # the model of version 124
    multi_base: Path  # 1/: tf.saved_model.save with three signatures
    tflite_base: Path  # 7/model.tflite of the Keras model, nothing else


def _multi_module():
    """A tf.Module with several signatures, inputs and dtypes."""
    import tensorflow as tf

    class Multi(tf.Module):
        @tf.function(
            input_signature=[
                tf.TensorSpec([None, 2], tf.float32, name="x"),
                tf.TensorSpec([None], tf.int64, name="k"),
            ]
        )
        def mix(self, x, k):
            y = x * 2.0 + tf.cast(k, tf.float32)[:, None]
            return {"y": y, "k_plus_one": k + 1}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="s")])
        def strings(self, s):
            return {"length": tf.strings.length(s), "upper_bytes": tf.strings.upper(s)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.bool, name="b")])
        def flip(self, b):
            return {"not": tf.logical_not(b)}

    return Multi()


def build_plain(root: Path) -> Plain:
    """Build :class:`Plain` once per session (TensorFlow and Keras only)."""
    if "plain" in _BUILT:
        return _BUILT["plain"]
    import cnnlearn._tf  # noqa: F401

    # isort: split
    import keras
    import tensorflow as tf

    keras_base = root / "plain" / "half"
    models = []
    for version, seed in (("00000123", 1), ("00000124", 2)):
        keras.utils.set_random_seed(seed)
        inp = keras.Input((4,), name="features")
        out = keras.layers.Dense(3, activation="softmax", name="scores")(inp)
        model = keras.Model(inp, out)
        model.export(str(keras_base / version), verbose=False)
        models.append(model)
    (keras_base / "not-a-version").mkdir()
    (keras_base / "125.bak").mkdir()
    module = _multi_module()
    multi_base = root / "plain" / "multi"
    tf.saved_model.save(
        module,
        str(multi_base / "1"),
        signatures={
            "serving_default": module.mix,
            "strings": module.strings,
            "flip": module.flip,
        },
    )
    converter = tf.lite.TFLiteConverter.from_saved_model(str(keras_base / "00000124"))
    tflite_base = root / "plain" / "lite"
    (tflite_base / "7").mkdir(parents=True)
    (tflite_base / "7" / "model.tflite").write_bytes(converter.convert())
    _BUILT["plain"] = Plain(keras_base, models[1], multi_base, tflite_base)
    return _BUILT["plain"]
