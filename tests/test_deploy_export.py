"""cnnlearn.deploy.export: TF Serving's layout, atomic versions, format parity."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from deploy_helpers import build

from cnnlearn.deploy import export, parity


@pytest.fixture(scope="module")
def built(tmp_path_factory, data_dir):
    return build(tmp_path_factory.getbasetemp() / "deploy", data_dir)


def test_layout_is_tf_servings(built):
    version = built.base / "mnist" / "1"
    assert (version / "saved_model.pb").is_file()
    assert (version / "variables" / "variables.index").is_file()
    assert (version / export.TFLITE_FILE).is_file()
    meta = export.read_metadata(version)
    assert meta["version"] == 1 and meta["model_name"] == "mnist"
    assert meta["signatures"] == json.loads(json.dumps(export.signature_defs()))
    assert set(meta["input_statistics"]) == {"mean", "std", "ink", "border"}
    assert export.list_versions(built.base / "mnist") == [1]


def test_signatures_take_float_uint8_and_bytes(built):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(built.base / "mnist" / "1"))
    sigs = loaded.signatures
    assert {"serving_default", "serving_uint8", "serving_bytes"} <= set(sigs)
    inputs = sigs["serving_default"].structured_input_signature[1]
    assert inputs["image"].dtype == tf.float32
    assert inputs["image"].shape.as_list() == [None, 28, 28, 1]
    assert list(sigs["serving_default"].structured_outputs) == ["probabilities"]
    expected = built.model_a.predict(built.x_test[:8], verbose=0)
    x8 = built.x_test_uint8[:8]
    runs = {
        "float": sigs["serving_default"](image=tf.constant(built.x_test[:8])),
        "uint8": sigs["serving_uint8"](image=tf.constant(x8)),
        "bytes": sigs["serving_bytes"](
            image_bytes=tf.constant([i.tobytes() for i in x8])
        ),
    }
    for name, out in runs.items():
        np.testing.assert_allclose(
            out["probabilities"], expected, atol=1e-6, err_msg=name
        )


def test_parity_across_formats_on_real_test_images(built, tmp_path):
    import keras
    import onnxruntime

    # A model straight from disk has never been called: ONNX export still works.
    fresh = keras.saving.load_model(built.keras_a, compile=False)
    onnx_path = export.export_onnx(fresh, tmp_path / "m.onnx")
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # no temporaries
    session = onnxruntime.InferenceSession(str(onnx_path))
    assert [(i.name, i.shape[1:]) for i in session.get_inputs()] == [
        ("image", [28, 28, 1])
    ]
    assert [o.name for o in session.get_outputs()] == ["probabilities"]
    paths = {
        "saved_model": built.base / "mnist" / "1",
        "tflite": built.base / "mnist" / "1" / export.TFLITE_FILE,
        "onnx": onnx_path,
    }
    rows = parity.parity_check(built.model_a, built.x_test, paths)
    assert set(rows) == set(paths)
    for fmt, row in rows.items():
        assert row["max_abs_diff"] <= 1e-5, fmt
        assert row["argmax_agreement"] == 1.0 and row["bytes"] > 10_000
    # The SavedModel's size leaves out model.tflite and assets.extra beside it.
    everything = paths["saved_model"].rglob("*")
    total = sum(p.stat().st_size for p in everything if p.is_file())
    assert rows["saved_model"]["bytes"] + rows["tflite"]["bytes"] < total
    with pytest.raises(ValueError, match="unknown formats"):
        parity.parity_check(built.model_a, built.x_test, {"pt": onnx_path})


def test_export_version_can_add_onnx(built, tmp_path):
    version = export.export_version(
        built.model_b, tmp_path, "m", tflite=None, onnx=True
    )
    assert (version / export.ONNX_FILE).is_file()
    assert export.read_metadata(version)["onnx"] == export.ONNX_FILE
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["1"]
    row = parity.parity_check(
        built.model_b, built.x_test, {"onnx": version / export.ONNX_FILE}
    )["onnx"]
    assert row["max_abs_diff"] <= 1e-5 and row["argmax_agreement"] == 1.0


def test_onnx_without_tf2onnx_says_what_is_missing(built, tmp_path, monkeypatch):
    find_spec = importlib.util.find_spec

    def without_tf2onnx(name, *args, **kwargs):
        return None if name == "tf2onnx" else find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", without_tf2onnx)
    with pytest.raises(ImportError, match="tf2onnx"):
        export.export_onnx(built.model_a, tmp_path / "m.onnx")
    with pytest.raises(ImportError, match="tf2onnx"):
        export.export_version(built.model_a, tmp_path, "m", onnx=True)
    assert export.list_versions(tmp_path / "m") == []
    assert not (tmp_path / "m.onnx").exists()


def test_versions_count_up_and_are_never_overwritten(built, tmp_path):
    first = export.export_version(built.model_b, tmp_path, "m", tflite=None)
    second = export.export_version(built.model_b, tmp_path, "m", tflite=None)
    assert (first.name, second.name) == ("1", "2")
    assert export.next_version(tmp_path, "m") == 3
    assert export.read_metadata(second)["tflite"] is None
    with pytest.raises(FileExistsError, match="never overwritten"):
        export.export_version(built.model_b, tmp_path, "m", version=2)
    with pytest.raises(ValueError, match="integer >= 1"):
        export.export_version(built.model_b, tmp_path, "m", version=0)
    with pytest.raises(ValueError, match="plain directory name"):
        export.export_version(built.model_b, tmp_path, "../m")


@pytest.mark.parametrize("step", ["tflite_bytes", "export_onnx"])
def test_a_crash_during_export_leaves_no_version(built, tmp_path, monkeypatch, step):
    def crash(*args, **kwargs):
        raise RuntimeError("disk full (simulated)")

    # The SavedModel is written, then the TFLite or ONNX conversion "crashes".
    monkeypatch.setattr(export, step, crash)
    with pytest.raises(RuntimeError, match="simulated"):
        export.export_version(built.model_b, tmp_path, "m", onnx=True)
    assert list((tmp_path / "m").iterdir()) == []
    assert export.list_versions(tmp_path / "m") == []


def test_list_versions_ignores_everything_but_integers(tmp_path):
    for name in ("3", "10", ".tmp-4-abc", "1.bak", "x", "v2", "1_0", "\u0661"):
        (tmp_path / name).mkdir()
    (tmp_path / "5").write_text("a file")
    assert export.list_versions(tmp_path) == [3, 10]
    assert export.list_versions(tmp_path / "missing") == []


@pytest.mark.parametrize(
    ("name", "version"),
    [
        ("00000123", 123),  # TF Serving's own test data is named so
        ("7", 7),
        ("+7", 7),
        (" 7\t", 7),  # absl::SimpleAtoi skips ASCII blanks
        ("-2", -2),
        ("9223372036854775807", 2**63 - 1),
        ("9223372036854775808", None),  # over int64
        ("1.bak", None),
        ("0x10", None),
        ("", None),
        ("+", None),
        ("\u0661", None),  # an Arabic-Indic one: not ASCII
        ("1_000", None),  # int() would take it
    ],
)
def test_version_folders_parse_as_tf_serving_parses_them(name, version):
    assert export.parse_version(name) == version


def test_padded_folders_are_versions_and_the_last_name_wins(tmp_path):
    for name in ("00000123", "0001", "1", "2"):
        (tmp_path / name).mkdir()
    folders = export.version_folders(tmp_path)
    assert folders == {1: tmp_path / "1", 2: tmp_path / "2", 123: tmp_path / "00000123"}
    assert export.next_version(tmp_path.parent, tmp_path.name) == 124


def test_an_export_writes_a_manifest_of_every_file_last(built, tmp_path):
    version = export.export_version(built.model_b, tmp_path, "m")
    lines = (version / export.MANIFEST_FILE).read_text().splitlines()
    listed = {line.split("  ", 1)[1] for line in lines}
    files = {
        p.relative_to(version).as_posix()
        for p in version.rglob("*")
        if p.is_file() and p != version / export.MANIFEST_FILE
    }
    assert listed == files and "saved_model.pb" in listed
    assert export.verify_manifest(version) is True


@pytest.mark.parametrize("change", ["flip", "remove", "add", "garble"])
def test_a_version_that_does_not_match_its_manifest_is_refused(built, tmp_path, change):
    version = export.export_version(built.model_b, tmp_path, "m", tflite=None)
    if change == "flip":
        path = version / "saved_model.pb"
        data = bytearray(path.read_bytes())
        data[10] ^= 0x40
        path.write_bytes(bytes(data))
        message = "saved_model.pb has SHA-256"
    elif change == "remove":
        (version / export.METADATA_FILE).unlink()
        message = "cnnlearn.json is in the manifest, missing"
    elif change == "add":
        (version / "extra.txt").write_text("planted")
        message = "extra.txt is not in the manifest"
    else:
        (version / export.MANIFEST_FILE).write_text("not a manifest\n")
        message = "line 1 is not"
    with pytest.raises(export.IntegrityError, match=message):
        export.verify_manifest(version)


def test_a_version_without_a_manifest_is_not_checked(tmp_path):
    (tmp_path / "saved_model.pb").write_bytes(b"")
    assert export.verify_manifest(tmp_path) is False
    export.write_manifest(tmp_path)
    assert export.verify_manifest(tmp_path) is True
