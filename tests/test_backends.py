"""The core on every Keras backend, TensorFlow absent (chapter 4, 多后端).

A process has one Keras backend, so each case runs in a fresh Python with
``KERAS_BACKEND`` set. ``sys.modules["tensorflow"] = None`` makes TensorFlow as
absent as uninstalled: ``import tensorflow`` fails and
``importlib.util.find_spec`` cannot find it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import pytest
from conftest import REPO

NO_TF = "import sys; sys.modules['tensorflow'] = None\n"
CORE = ("config", "data", "models", "train", "ops", "plots", "pipeline", "compute")


def python(code: str, backend: str, **env) -> subprocess.CompletedProcess:
    """Run ``code`` with TensorFlow blocked, on ``backend``."""
    environ = {**os.environ, "KERAS_BACKEND": backend, **env}
    return subprocess.run(
        [sys.executable, "-c", NO_TF + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=environ,
        cwd=REPO,
        timeout=600,
    )


def installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


BACKENDS = [
    "jax",
    pytest.param(
        "torch",
        marks=pytest.mark.skipif(not installed("torch"), reason="torch not installed"),
    ),
]


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_core_imports_without_tensorflow(backend):
    done = python(
        f"""
        import importlib, keras
        for name in {CORE!r}:
            importlib.import_module("cnnlearn." + name)
        import cnnlearn.cli
        assert keras.config.backend() == {backend!r}, keras.config.backend()
        loaded = [m for m in sys.modules if sys.modules[m]]
        print("tensorflow loaded:", "tensorflow" in loaded)
        """,
        backend,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "tensorflow loaded: False" in done.stdout


def test_tensorflow_parts_say_so_in_one_line():
    done = python(
        """
        from cnnlearn import pipeline
        uses = [lambda: pipeline.make_dataset]
        uses.append(lambda: __import__("cnnlearn.distribute"))
        for use in uses:
            try:
                use()
            except ImportError as exc:
                print("ERROR", exc)
        """,
        "jax",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    errors = [line for line in done.stdout.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 2, done.stdout
    for line in errors:
        assert "need TensorFlow, which is not installed (Keras backend jax)" in line


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_cli_trains_on_real_mnist_without_tensorflow(backend, tmp_path):
    """The issue's check: ``cnnlearn train --backend jax`` with TensorFlow gone."""
    out = tmp_path / "run"
    argv = ["train", "--backend", backend, "--model", "seed", "--epochs", "1"]
    argv += ["--data-fraction", "0.1", "--output", str(out)]
    done = python(
        f"from cnnlearn.cli import main; sys.exit(main({argv!r}))",
        "tensorflow",  # --backend must win over the environment
    )
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["plan"]["backend"] == backend
    assert metrics["plan"]["pipeline"] == "batches"
    assert metrics["test_accuracy"] >= 0.85  # 6,000 real images, one epoch
    assert (out / "model.keras").stat().st_size > 0


def test_backend_option_refuses_what_cannot_run():
    from cnnlearn.cli import main

    with pytest.raises(SystemExit) as info:
        main(["train", "--backend", "theano", "--output", "/tmp/never"])
    assert info.value.code == 2
    code = "from cnnlearn.cli import main; sys.exit(main(['train', '--backend', "
    code += "'tensorflow', '--output', '/tmp/never', '--epochs', '1']))"
    done = python(code, "jax")
    assert done.returncode == 1
    assert "backend 'tensorflow' needs tensorflow, which is not installed" in (
        done.stderr
    )
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_jax_splits_a_batch_over_devices(tmp_path):
    """keras.distribution.DataParallel, on two CPU devices XLA pretends."""
    done = python(
        """
        import numpy as np
        from cnnlearn import data, models, train
        (x, y), _ = data.load_dataset("mnist")
        x, y = data.preprocess_images(x[:2048]), y[:2048]
        plan = {"devices": 2, "batch_scale": 1}
        r = train.fit(models.get_model("seed"), x, y, epochs=2, batch_size=64,
                      plan=plan, verbose=0)
        print("devices", r.plan.devices, "accuracy", r.history["accuracy"][-1])
        """,
        "jax",
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    words = done.stdout.split()
    assert words[1] == "2" and float(words[3]) > 0.5, done.stdout


@pytest.mark.slow
def test_the_gpu_script_runs_without_tensorflow(tmp_path, data_dir):
    """``benchmarks/gpu.py`` on a machine image with JAX only: its worker
    processes get TensorFlow blocked too (a ``sitecustomize`` on the path);
    ``--device cpu`` stands in for the GPU this machine lacks."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(NO_TF)
    out = tmp_path / "gpu.json"
    argv = ["--device", "cpu", "--backends", "jax", "--models", "seed"]
    argv += ["--epochs", "1", "--data-fraction", "0.05", "--output", str(out)]
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu.py"), *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={
            **os.environ,
            "PYTHONPATH": f"{site}:{REPO}",
            "CNNLEARN_DATA_DIR": str(data_dir),
        },  # fmt: skip
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(out.read_text())["results"]["jax"]
    assert "error" not in found, found
    row = found["rows"]["seed"]
    assert row["plan"]["backend"] == "jax" and row["test_accuracy"] > 0.8
    assert row["training_flops_per_second"] > 0
    assert "tensorflow" not in found["versions"]
