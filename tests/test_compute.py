from __future__ import annotations

import re

import keras
import numpy as np
import pytest

from cnnlearn import compute, models

X86_BF16 = {"fpu", "avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}
X86_PLAIN = {"fpu", "avx2", "avx512f"}


def test_devices():
    assert compute.resolve_device("cpu") == "/CPU:0"
    assert compute.resolve_device("auto") in {"/CPU:0", "/GPU:0"}
    with pytest.raises(ValueError, match="unknown device"):
        compute.resolve_device("quantum")
    if compute._gpu_count() == 0:
        with pytest.raises(ValueError, match="no GPU"):
            compute.resolve_device("gpu")
    if not compute._tpu_attached():
        with pytest.raises(ValueError, match="device='tpu' was asked for, but no TPU"):
            compute.resolve_device("TPU")


def test_a_tpu_plans_bfloat16_and_xla(monkeypatch):
    """No TPU here: the plan's TPU branch, with a TPU pretended attached."""
    monkeypatch.setattr(compute, "_tpu_attached", lambda: True)
    assert compute.resolve_device("tpu") == compute.resolve_device("auto") == "/TPU:0"
    tpu = compute.plan(device="tpu", flags=X86_PLAIN)
    assert tpu.device == "/TPU:0" and tpu.precision == "mixed_bfloat16"
    assert tpu.jit_compile and "TPUs multiply in bfloat16" in tpu.reasons["precision"]


def test_tpu_strategy_without_a_tpu_is_one_line(monkeypatch):
    monkeypatch.delenv("TPU_NAME", raising=False)
    compute.tpu_strategy.cache_clear()
    with pytest.raises(ValueError, match="no TPU was found") as info:
        compute.tpu_strategy()
    assert "\n" not in str(info.value)


def test_cpu_flags_from_cpuinfo(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nflags\t\t: fpu avx512_bf16 amx_bf16\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n")
    assert compute.cpu_flags(x86) == {"fpu", "avx512_bf16", "amx_bf16"}
    assert compute.native_bf16(compute.cpu_flags(arm)) == "BF16"
    assert compute.cpu_flags(tmp_path / "missing") == set()
    assert compute.native_bf16(X86_PLAIN) is None


def test_cpu_plan_uses_bf16_only_where_native():
    native = compute.plan(device="cpu", flags=X86_BF16)
    assert native.precision == "mixed_bfloat16"
    assert "AMX-BF16" in native.reasons["precision"]
    emulated = compute.plan(device="cpu", flags=X86_PLAIN)
    assert emulated.precision == "float32"
    assert "no native bfloat16" in emulated.reasons["precision"]
    for p in (native, emulated):
        assert p.device == "/CPU:0" and not p.jit_compile and p.pipeline == "tf.data"


def test_cpu_reasons_state_no_measured_numbers():
    """Reasons say what is decided and where it is measured, never a typed ratio
    (chapter 5 measures XLA and bfloat16; a number here would go stale)."""
    for flags in (X86_BF16, X86_PLAIN):
        reasons = compute.plan(device="cpu", flags=flags).reasons
        assert "chapter 5 measures XLA" in reasons["jit_compile"]
        measured = [reasons["jit_compile"], reasons["precision"]]
        typed = [r for r in measured if re.search(r"\d\s*(x|×)\b", r)]
        assert not typed, typed


@pytest.mark.parametrize(
    ("capability", "precision"),
    [((9, 0), "mixed_bfloat16"), ((7, 5), "mixed_float16"), ((6, 1), "float32")],
)
def test_gpu_precision_by_compute_capability(capability, precision):
    chosen, why = compute._pick_precision("/GPU:0", set(), capability)
    assert chosen == precision and ".".join(map(str, capability)) in why


def test_steps_per_execution_never_exceeds_an_epoch():
    x, y = keras.ops.zeros((100, 28, 28, 1)), keras.ops.zeros((100,))
    assert compute.plan(data=(x, y), batch_size=32).steps_per_execution == 4
    assert compute.plan(batch_size=32).steps_per_execution == 32


def test_overrides_are_kept_and_explained():
    p = compute.plan(
        device="cpu",
        precision="float32",
        steps_per_execution=1,
        pipeline="numpy",
        jit_compile=True,
        eval_batch_size=64,
        flags=X86_BF16,
    )
    assert (p.precision, p.steps_per_execution, p.pipeline) == ("float32", 1, "numpy")
    assert p.jit_compile and p.eval_batch_size == 64
    assert p.reasons["precision"] == "set by the caller"
    assert list(p.reasons) == [
        "backend",
        "device",
        "pipeline",
        "batch_size",
        "devices",
        "steps_per_execution",
        "precision",
        "jit_compile",
        "eval_batch_size",
    ]
    assert "precision" in str(p) and "set by the caller" in str(p)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"precision": "float8"}, "unknown precision"),
        ({"pipeline": "pandas"}, "unknown pipeline"),
        ({"steps_per_execution": 0}, "steps_per_execution"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_scale": 0}, "batch_scale"),
        ({"device": "tpu9"}, "unknown device"),
    ],
)
def test_bad_overrides(kwargs, message):
    with pytest.raises(ValueError, match=message):
        compute.plan(**kwargs)


def test_set_precision_keeps_the_output_layer_float32():
    model = models.prepend(keras.layers.Identity(), models.seed_cnn())
    compute.apply_precision(model, "mixed_bfloat16")
    leaves = compute._leaves(model)
    assert leaves[0].compute_dtype == "bfloat16"
    assert leaves[-1].compute_dtype == "float32"
    assert all(v.dtype == "float32" for v in model.weights)
    compute.apply_precision(model, "float32")
    assert {leaf.compute_dtype for leaf in leaves} == {"float32"}
    with pytest.raises(ValueError, match="unknown precision"):
        compute.apply_precision(model, "int4")


def test_pipeline_follows_the_data():
    images = (np.zeros((64, 28, 28), np.uint8), np.zeros(64, np.int64))
    tokens = (np.zeros((64, 50), np.int32), np.zeros(64, np.int64))
    assert compute.plan(data=images).pipeline == "tf.data"
    assert compute.plan(data=tokens).pipeline == "numpy"
    assert "int32 inputs" in compute.plan(data=tokens).reasons["pipeline"]
    dataset = compute.plan(data=object())
    assert dataset.pipeline == "dataset" and "used as is" in dataset.reasons["pipeline"]


def test_small_batches_grow_when_an_epoch_keeps_enough_steps():
    mnist = (np.zeros((54_000, 28, 28), np.uint8), np.zeros(54_000, np.int64))
    p = compute.plan(data=mnist, batch_size=32)
    assert (p.batch_size, p.batch_scale, p.learning_rate_scale) == (128, 4, 2.0)
    assert "square-root" in p.reasons["batch_size"]
    assert re.search(r"^batch_size +128 +4x the recipe's 32", str(p), re.M)
    assert p.steps_per_execution == 32 and p.eval_batch_size >= 128
    kept = compute.plan(data=mnist, batch_size=32, batch_scale=1)
    assert (kept.batch_size, kept.learning_rate_scale) == (32, 1.0)
    assert kept.reasons["batch_size"] == "set by the caller"
    # already big enough, too little data, or batches made by the caller
    assert compute.plan(data=mnist, batch_size=128).batch_scale == 1
    assert compute.plan(data=mnist, batch_size=100).reasons["batch_size"] == (
        "the training recipe's"
    )
    assert compute.plan(data=mnist, batch_size=48).batch_size == 96
    few = compute.plan(data=(mnist[0][:6000], mnist[1][:6000]), batch_size=32)
    assert few.batch_size == 32 and "steps/epoch" in few.reasons["batch_size"]
    assert compute.plan(data=object(), batch_size=32).batch_size == 32


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_the_plan_follows_the_backend(monkeypatch, backend):
    """What each Keras backend can run, with a backend pretended (one per process)."""
    monkeypatch.setattr(keras.config, "backend", lambda: backend)
    x = np.zeros((60_000, 28, 28), np.uint8)
    p = compute.plan(data=(x, np.zeros(60_000, np.int64)), device="cpu", flags=X86_BF16)
    assert p.backend == backend and p.pipeline == "batches"
    assert p.precision == "float32" and "oneDNN" in p.reasons["precision"]
    assert p.jit_compile == (backend == "jax")
    assert p.steps_per_execution == (1 if backend == "torch" else 32)
    assert p.devices == 1


def test_torch_refuses_several_steps_per_execution(monkeypatch):
    monkeypatch.setattr(keras.config, "backend", lambda: "torch")
    with pytest.raises(ValueError, match="1 on torch"):
        compute.plan(device="cpu", steps_per_execution=4)


def test_data_parallel_devices_must_split_the_batch():
    assert compute.plan(device="cpu").devices == 1  # one device, whatever the backend
    with pytest.raises(ValueError, match="does not split over 3 devices"):
        compute.plan(device="cpu", batch_size=32, devices=3, pipeline="batches")
    with pytest.raises(ValueError, match="needs the 'batches' pipeline"):
        compute.plan(device="cpu", batch_size=32, devices=2, pipeline="numpy")


def test_several_devices_need_jax():
    from cnnlearn import train

    x = np.zeros((64, 28, 28, 1), np.float32)
    with pytest.raises(ValueError, match="keras.distribution runs on JAX only"):
        train.fit(
            models.get_model("seed"),
            x,
            np.zeros(64, np.int64),
            epochs=1,
            plan={"devices": 2, "batch_scale": 1, "pipeline": "batches"},
            verbose=0,
        )
