"""A client for TF Serving's REST API: ours or ``tensorflow/serving`` (chapter 8).

Standard library only (``urllib``): the same calls work against
``cnnlearn serve`` and against ``docker run -p 8501:8501 -v DIR:/models/mnist
-e MODEL_NAME=mnist tensorflow/serving``.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import numpy as np

__all__ = [
    "ServerError",
    "drift",
    "metadata",
    "predict",
    "predict_body",
    "request",
    "scrape",
    "status",
]


class ServerError(RuntimeError):
    """The server answered with an error: ``status`` and its ``{"error"}`` text."""

    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


def request(url: str, body: dict | bytes | None = None, timeout: float = 30.0):
    """GET (no body) or POST (a dict as JSON, or raw bytes) ``url``; parse the JSON.

    Returns ``(status, headers, document)``; a 4xx/5xx answer raises
    :class:`ServerError` with the server's error message.
    """
    data = None if body is None else body
    if isinstance(body, dict):
        data = json.dumps(body).encode()
    req = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        text = exc.read().decode(errors="replace")
        try:
            text = json.loads(text)["error"]
        except (ValueError, KeyError, TypeError):
            pass
        raise ServerError(exc.code, text) from None


def _model_url(url: str, model: str, version: int | None) -> str:
    base = f"{url.rstrip('/')}/v1/models/{model}"
    return base if version is None else f"{base}/versions/{version}"


def predict_body(images: np.ndarray, encoding: str = "float") -> dict:
    """The ``:predict`` JSON body for ``images``, in row format.

    ``encoding``: ``"float"`` (float32 in [0, 1], ``serving_default``),
    ``"uint8"`` (raw pixels, ``serving_uint8``) or ``"b64"`` (raw pixels as
    base64 bytes, ``serving_bytes``). uint8 images are scaled for ``"float"``.
    """
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[..., np.newaxis]
    if encoding == "float":
        if x.dtype == np.uint8:
            x = x.astype(np.float32) / np.float32(255)
        return {"instances": x.astype(np.float32).tolist()}
    if x.dtype != np.uint8:
        raise ValueError(f"encoding={encoding!r} needs uint8 images, got {x.dtype}")
    if encoding == "uint8":
        return {"signature_name": "serving_uint8", "instances": x.tolist()}
    if encoding == "b64":
        rows = [{"b64": base64.b64encode(img.tobytes()).decode()} for img in x]
        return {"signature_name": "serving_bytes", "instances": rows}
    raise ValueError(f"unknown encoding {encoding!r}: float, uint8 or b64")


def predict(
    url: str,
    model: str,
    images: np.ndarray,
    *,
    version: int | None = None,
    encoding: str = "float",
    timeout: float = 30.0,
) -> np.ndarray:
    """Class probabilities for ``images`` from a TF-Serving-style server.

    Parameters
    ----------
    url
        The server, e.g. ``"http://127.0.0.1:8501"``.
    model, version
        The model name; a version number, or ``None`` for the served one.
    images
        ``(N, 28, 28[, 1])`` float32 in [0, 1], or uint8.
    encoding
        How images travel: see :func:`predict_body`.

    Returns
    -------
    np.ndarray
        ``(N, classes)`` float32 probabilities.
    """
    body = predict_body(images, encoding)
    _, _, doc = request(f"{_model_url(url, model, version)}:predict", body, timeout)
    return np.asarray(doc["predictions"], dtype=np.float32)


def status(url: str, model: str, version: int | None = None) -> dict:
    """``GET /v1/models/{model}[/versions/{v}]``: the version status."""
    return request(_model_url(url, model, version))[2]


def metadata(url: str, model: str, version: int | None = None) -> dict:
    """``GET .../metadata``: the model spec and its signature defs."""
    return request(f"{_model_url(url, model, version)}/metadata")[2]


def scrape(url: str) -> list[tuple[str, dict, float]]:
    """The server's Prometheus metrics as ``(sample name, labels, value)`` rows."""
    # Only here: the rest of the client needs nothing beyond the standard library.
    from prometheus_client.parser import text_string_to_metric_families

    path = f"{url.rstrip('/')}/monitoring/prometheus/metrics"
    with urllib.request.urlopen(path, timeout=30) as response:
        text = response.read().decode()
    return [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def drift(url: str, model: str) -> dict[str, float]:
    """The ``cnnlearn_input_drift`` gauges of ``model``, by statistic."""
    return {
        labels["statistic"]: value
        for name, labels, value in scrape(url)
        if name == "cnnlearn_input_drift" and labels.get("model") == model
    }
