"""cnnlearn.deploy.signatures: a SavedModel's signature defs without TensorFlow,
printed as TF Serving prints them (checked against protobuf's own printer)."""

from __future__ import annotations

import pytest
from deploy_helpers import build_plain

from cnnlearn.deploy import signatures


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    return build_plain(tmp_path_factory.getbasetemp() / "plain-models")


def reference(path) -> dict:
    """The map as TF Serving prints it (``http_rest_api_util.cc``: protobuf's
    JSON printer, proto field names, fields without presence printed), from
    the protos TensorBoard ships."""
    from google.protobuf import json_format
    from tensorboard.compat.proto import meta_graph_pb2

    data = (path / "saved_model.pb").read_bytes()
    graphs = [value for number, value in signatures._fields(data) if number == 2]
    graph = meta_graph_pb2.MetaGraphDef.FromString(bytes(graphs[0]))
    assert "serve" in graph.meta_info_def.tags
    return {
        name: json_format.MessageToDict(
            sig,
            preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True,
        )
        for name, sig in graph.signature_def.items()
    }


def test_a_keras_export_reads_as_protobuf_prints_it(plain):
    path = plain.keras_base / "00000124"
    defs = signatures.read_signature_defs(path)
    assert defs == reference(path)
    assert "__saved_model_init_op" in defs
    default = defs["serving_default"]
    assert default["method_name"] == signatures.PREDICT_METHOD
    (spec,) = default["inputs"].values()
    assert spec["dtype"] == "DT_FLOAT"
    assert spec["tensor_shape"]["dim"][0] == {"size": "-1", "name": ""}


def test_a_multi_signature_savedmodel_reads_as_protobuf_prints_it(plain):
    path = plain.multi_base / "1"
    defs = signatures.read_signature_defs(path)
    assert defs == reference(path)
    served = signatures.signatures_from_defs(defs)
    assert set(served) == {"serving_default", "strings", "flip"}  # no init op
    mix = served["serving_default"]
    assert mix.inputs["k"].dtype_name == "DT_INT64" and mix.inputs["k"].shape == (-1,)
    assert mix.inputs["x"].shape == (-1, 2)
    assert str(served["strings"].inputs["s"].dtype) == "object"


def test_not_a_savedmodel_is_a_value_error(tmp_path):
    (tmp_path / "saved_model.pb").write_bytes(b"\x12\xff\xff\xff\xff\x0fjunk")
    with pytest.raises(ValueError, match="saved_model.pb"):
        signatures.read_signature_defs(tmp_path)
    with pytest.raises(FileNotFoundError):
        signatures.read_signature_defs(tmp_path / "missing")


def test_a_savedmodel_without_the_serve_tag_is_refused(plain, tmp_path):
    data = (plain.multi_base / "1" / "saved_model.pb").read_bytes()
    (tmp_path / "saved_model.pb").write_bytes(data.replace(b"serve", b"train"))
    with pytest.raises(ValueError, match="no MetaGraphDef tagged 'serve'"):
        signatures.read_signature_defs(tmp_path)
