"""cnnlearn.deploy.server against slow, idle, leaving and malformed clients.

Each test runs the app under uvicorn in a thread, configured as ``serve`` does
(:func:`deploy_helpers.threaded_server`), with short timeouts, and speaks raw
HTTP/1.1 through a socket. No assert is on a duration: a server that fails to
cut a client off makes the client's bounded loop run out, and the test fail.
"""

from __future__ import annotations

import json
import logging
import select
import socket
import threading
import time
import urllib.request

import pytest
from deploy_helpers import build, threaded_server
from prometheus_client.parser import text_string_to_metric_families

from cnnlearn.deploy import server, transport

SHORT = 0.5  # seconds: the timeouts under test
PAUSE = 0.05  # seconds between the bytes of a trickling client


@pytest.fixture(scope="module")
def built(tmp_path_factory, data_dir):
    return build(tmp_path_factory.getbasetemp() / "deploy", data_dir)


def make_app(built, **kwargs):
    kwargs.setdefault("body_timeout", SHORT)
    return server.create_app({"mnist": built.base / "mnist"}, "tflite", **kwargs)


def connect(address) -> socket.socket:
    sock = socket.create_connection(address, timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def drain(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection; fails the
    test if it keeps the connection open for 30 s."""
    got = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return got
        except TimeoutError:
            pytest.fail(f"the server kept the connection open; it sent {got[:80]!r}")
        if not chunk:
            return got
        got += chunk


def trickle(sock: socket.socket, data: bytes, size: int = 1) -> bytes:
    """Send ``data`` ``size`` bytes at a time, ``PAUSE`` s apart, reading what
    the server answers, until it closes the connection; return its answer.
    Fails the test if all of ``data`` went out and the connection is open."""
    got = b""
    for start in range(0, len(data), size):
        try:
            sock.sendall(data[start : start + size])
        except OSError:  # closed by the server: a broken pipe or a reset
            return got + drain(sock)
        while select.select([sock], [], [], PAUSE)[0]:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                return got
            if not chunk:
                return got
            got += chunk
    pytest.fail(f"the server let a client send {len(data)} bytes at a trickle")


def json_error(reply: bytes, status: int) -> str:
    """The error message of a JSON error answer with this status."""
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status), reply[:200]
    assert b"content-type: application/json" in head.lower()
    doc = json.loads(body)
    assert set(doc) == {"error"} and doc["error"]
    return doc["error"]


def get(address, path: str = "/v1/models/mnist") -> tuple[int, bytes]:
    url = f"http://{address[0]}:{address[1]}{path}"
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, response.read()


def requests_by_status(address) -> dict[str, float]:
    text = get(address, "/monitoring/prometheus/metrics")[1].decode()
    return {
        s.labels["status"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "cnnlearn_requests_total"
    }


PREDICT_HEAD = b"POST /v1/models/mnist:predict HTTP/1.1\r\nhost: test\r\n"


def test_trickled_headers_get_a_json_408_and_are_cut_off(built):
    with threaded_server(make_app(built), header_timeout=SHORT) as address:
        clients = [connect(address) for _ in range(8)]
        replies = [None] * len(clients)

        def slow(i):
            replies[i] = trickle(clients[i], PREDICT_HEAD + b"x-pad: " + b"a" * 2000)

        threads = [threading.Thread(target=slow, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        for reply in replies:
            assert "headers not received" in json_error(reply, 408)
        assert get(address)[0] == 200  # and the server serves on


def test_a_connection_that_sends_nothing_is_closed(built):
    with threaded_server(make_app(built), header_timeout=SHORT) as address:
        assert drain(connect(address)) == b""


def test_an_idle_keep_alive_connection_is_closed(built):
    with threaded_server(make_app(built), keep_alive_timeout=SHORT) as address:
        sock = connect(address)
        sock.sendall(b"GET /v1/models/mnist HTTP/1.1\r\nhost: test\r\n\r\n")
        reply = drain(sock)
        assert reply.startswith(b"HTTP/1.1 200 ") and b"AVAILABLE" in reply


def test_a_trickled_body_gets_a_json_408(built):
    with threaded_server(make_app(built)) as address:
        sock = connect(address)
        sock.sendall(PREDICT_HEAD + b"content-length: 5000\r\n\r\n")
        reply = trickle(sock, b'{"instances": [' + b" " * 4985)
        assert "body not received" in json_error(reply, 408)
        assert requests_by_status(address) == {"408": 1.0}


def test_a_body_nobody_reads_is_cut_off_too(built):
    """The status handler answers without reading the body; a client that goes
    on trickling it (and so never idles) is still cut off."""
    with threaded_server(make_app(built)) as address:
        sock = connect(address)
        sock.sendall(b"GET /v1/models/mnist HTTP/1.1\r\ncontent-length: 5000\r\n\r\n")
        reply = trickle(sock, b"x" * 5000)
        assert reply.startswith(b"HTTP/1.1 200 ")


def test_clients_leaving_mid_body_are_499_not_500(built, caplog):
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addHandler(caplog.handler)  # uvicorn's loggers do not propagate
    try:
        with (
            caplog.at_level(logging.INFO),
            threaded_server(make_app(built, body_timeout=60)) as address,
        ):
            for _ in range(5):
                sock = connect(address)
                sock.sendall(PREDICT_HEAD + b"content-length: 10000\r\n\r\n[[[")
                sock.close()
            deadline = time.monotonic() + 60
            while requests_by_status(address).get("499", 0) < 5:
                assert time.monotonic() < deadline, "the 499s were never counted"
                time.sleep(PAUSE)
            assert requests_by_status(address) == {"499": 5.0}
    finally:
        uvicorn_log.removeHandler(caplog.handler)
    lines = [r.getMessage() for r in caplog.records if "499" in r.getMessage()]
    assert len(lines) == 5 and all("\n" not in line for line in lines)
    assert all(r.exc_info is None for r in caplog.records)


def test_malformed_http_gets_a_json_400(built):
    with threaded_server(make_app(built)) as address:
        sock = connect(address)
        sock.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        assert "Malformed request" in json_error(drain(sock), 400)


def test_oversized_headers_get_a_json_431(built):
    with threaded_server(make_app(built)) as address:
        head = PREDICT_HEAD + b"x-pad: " + b"a" * (2 * transport.MAX_HEADER_BYTES)
        reply = trickle(connect(address), head, size=8192)
        assert "headers over" in json_error(reply, 431)


def test_over_the_connection_limit_is_a_json_503(built):
    with threaded_server(make_app(built), limit_concurrency=3) as address:
        idle = [connect(address) for _ in range(2)]
        deadline = time.monotonic() + 60
        while True:  # until the server has accepted both idle connections
            sock = connect(address)
            sock.sendall(b"GET /v1/models/mnist HTTP/1.1\r\nhost: test\r\n\r\n")
            reply = drain(sock)
            if not reply.startswith(b"HTTP/1.1 200 "):
                break
            assert time.monotonic() < deadline, "never over the limit"
        assert "too many connections" in json_error(reply, 503)
        for sock in idle:
            sock.close()
        while True:  # until the server has seen them go
            try:
                assert get(address)[0] == 200
                break
            except urllib.error.HTTPError as exc:
                assert exc.code == 503 and time.monotonic() < deadline


def test_status_answers_while_the_workers_are_busy(built):
    """Parsing and inference run in the worker pool: with the only worker held
    inside the model, a status request is still answered."""
    app = make_app(built, workers=1, inline_bytes=0)
    loaded = app.state.server.managers["mnist"].current
    working, entered, release = (
        loaded.backend.predict,
        threading.Event(),
        threading.Event(),
    )

    def held(signature, images):
        entered.set()
        release.wait(timeout=120)
        return working(signature, images)

    loaded.backend.predict = held
    body = json.dumps({"instances": built.x_test[:2].tolist()}).encode()
    with threaded_server(app) as address:
        url = f"http://{address[0]}:{address[1]}/v1/models/mnist:predict"
        statuses = []

        def post():
            with urllib.request.urlopen(url, body, timeout=180) as response:
                statuses.append(response.status)

        client = threading.Thread(target=post)
        client.start()
        try:
            assert entered.wait(timeout=60), "the prediction never started"
            assert get(address)[0] == 200  # answered while the worker is held
            assert not release.is_set() and statuses == []
        finally:
            release.set()
            client.join(timeout=120)
        assert statuses == [200]
