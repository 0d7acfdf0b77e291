"""cnnlearn.deploy.client: request bodies, and predictions from a real server."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from deploy_helpers import build, running_server

from cnnlearn.deploy import client

X8 = np.arange(2 * 28 * 28, dtype=np.int64).reshape(2, 28, 28) % 256
X8 = X8.astype(np.uint8)


def test_bodies_in_the_three_encodings():
    body = client.predict_body(X8, "float")
    np.testing.assert_allclose(
        np.asarray(body["instances"])[..., 0], X8 / 255, atol=1e-7
    )
    body = client.predict_body(X8, "uint8")
    assert body["signature_name"] == "serving_uint8"
    assert np.asarray(body["instances"]).shape == (2, 28, 28, 1)
    body = client.predict_body(X8, "b64")
    assert body["signature_name"] == "serving_bytes"
    assert base64.b64decode(body["instances"][1]["b64"]) == X8[1].tobytes()


def test_bad_encodings_are_refused():
    with pytest.raises(ValueError, match="needs uint8 images"):
        client.predict_body(X8.astype(np.float32), "b64")
    with pytest.raises(ValueError, match="unknown encoding"):
        client.predict_body(X8, "png")


@pytest.mark.slow
def test_predictions_from_a_real_server(tmp_path_factory, tmp_path, data_dir):
    built = build(tmp_path_factory.getbasetemp() / "deploy", data_dir)
    want = built.model_a.predict(built.x_test[:10], verbose=0)
    with running_server(
        built.base / "mnist", tmp_path / "srv", "--backend", "tflite"
    ) as (
        url,
        _,
    ):
        for encoding in ("float", "uint8", "b64"):
            images = (
                built.x_test[:10] if encoding == "float" else built.x_test_uint8[:10]
            )
            got = client.predict(url, "mnist", images, encoding=encoding)
            np.testing.assert_allclose(got, want, atol=1e-5, err_msg=encoding)
        got = client.predict(url, "mnist", built.x_test[:10], version=1)
        np.testing.assert_allclose(got, want, atol=1e-5)
        assert (
            client.status(url, "mnist", 1)["model_version_status"][0]["version"] == "1"
        )
        meta = client.metadata(url, "mnist")
        assert "serving_default" in meta["metadata"]["signature_def"]["signature_def"]
        with pytest.raises(client.ServerError, match="Latest\\(fashion\\)") as info:
            client.predict(url, "fashion", built.x_test[:1])
        assert info.value.status == 404
        with pytest.raises(
            client.ServerError, match="No values in 'instances' array"
        ) as info:
            client.request(f"{url}/v1/models/mnist:predict", {"instances": []})
        assert info.value.status == 400
