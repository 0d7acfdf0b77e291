"""The model server's transport: uvicorn, guarded against slow and hostile
clients (chapter 8).

Slow and idle clients are cut off by :class:`GuardedProtocol`, uvicorn's
httptools protocol with header and body timeouts added (uvicorn itself only has
``timeout_keep_alive``, which starts once a response is sent, so a connection
that never completes its headers would stay open forever). uvicorn answers
malformed HTTP itself, before the app, with a plain-text 400
(``HttpToolsProtocol.send_400_response``) and requests over its
``limit_concurrency`` with a plain-text 503 (``flow_control.service_unavailable``);
:class:`GuardedProtocol` overrides both, so those answers are JSON as well.
:func:`server_config` is uvicorn's whole configuration for the app and
:func:`bind` the listening socket; :func:`cnnlearn.deploy.server.serve` uses
both.

Timeouts, in seconds: :data:`DEFAULT_HEADER_TIMEOUT` from a connection's
opening, or a request's first byte, to the end of its headers;
:data:`DEFAULT_BODY_TIMEOUT` from the end of the headers to the end of the
body (the app's ``read_body`` answers 408 first; the protocol closes the
connection one second later, for a body that nobody reads);
:data:`DEFAULT_KEEP_ALIVE_TIMEOUT` for an idle keep-alive connection.
"""

from __future__ import annotations

import socket

import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from cnnlearn import progress

__all__ = [
    "DEFAULT_BODY_TIMEOUT",
    "DEFAULT_HEADER_TIMEOUT",
    "DEFAULT_KEEP_ALIVE_TIMEOUT",
    "DEFAULT_LIMIT_CONCURRENCY",
    "MAX_HEADER_BYTES",
    "GuardedProtocol",
    "bind",
    "guarded_protocol",
    "server_config",
    "service_busy",
]

#: Seconds from a connection's opening, or a request's first byte, to the end
#: of its headers.
DEFAULT_HEADER_TIMEOUT = 10.0
#: Seconds from the end of the headers to the end of the body: a full
#: 32 MB body (the server's default limit) needs about 0.6 MB/s.
DEFAULT_BODY_TIMEOUT = 60.0
#: Seconds an idle keep-alive connection stays open (uvicorn's default).
DEFAULT_KEEP_ALIVE_TIMEOUT = 5.0
#: Open connections at most (uvicorn's limit_concurrency); with the body limit,
#: it bounds the memory that request bodies can take.
DEFAULT_LIMIT_CONCURRENCY = 128
#: Header bytes one request may send before it is refused with 431.
MAX_HEADER_BYTES = 64 * 1024
log = progress.logger("deploy")


async def service_busy(scope, receive, send) -> None:
    """The ASGI answer over ``limit_concurrency``: a JSON 503 that closes the
    connection (uvicorn's own is plain text)."""
    body = orjson.dumps({"error": "Service unavailable: too many connections"})
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _json_reply(status: int, message: str) -> bytes:
    """A whole HTTP/1.1 answer that closes the connection, for the protocol."""
    body = orjson.dumps({"error": message})
    return b"".join(
        [
            b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status]),
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        ]
    )


_REASONS = {
    400: b"Bad Request",
    408: b"Request Timeout",
    431: b"Request Header Fields Too Large",
}


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, guarded against slow and hostile clients.

    A request's headers must be complete within ``header_timeout`` seconds of
    the connection's opening or of the request's first byte (else JSON 408 and
    close; a connection that sent nothing is just closed), and hold at most
    :data:`MAX_HEADER_BYTES` (else 431); its body must be complete within
    ``body_timeout`` seconds of the headers (else the connection is closed:
    :func:`~.server.read_body` answers 408 a little earlier while the app still reads;
    this catches a body that nobody reads, after a 404 for instance). Idle
    keep-alive connections are closed by uvicorn's ``timeout_keep_alive``.
    Malformed HTTP gets a JSON 400 and requests over ``limit_concurrency`` a
    JSON 503 (uvicorn's own answers are plain text). :func:`guarded_protocol`
    makes a subclass with other timeouts. Used by :func:`~.server.serve`.
    """

    header_timeout = DEFAULT_HEADER_TIMEOUT
    body_timeout = DEFAULT_BODY_TIMEOUT + 1.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.guard_header_timer = None
        self.guard_body_timer = None
        self.guard_in_headers = True
        self.guard_header_bytes = 0
        self.guard_request_begun = False

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.guard_header_timer = self.loop.call_later(
            self.header_timeout, self.headers_timed_out
        )

    def data_received(self, data: bytes) -> None:
        if self.guard_in_headers:
            self.guard_header_bytes += len(data)
        super().data_received(data)
        if self.guard_in_headers and self.guard_header_bytes > MAX_HEADER_BYTES:
            self.refuse(431, f"request headers over {MAX_HEADER_BYTES} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.guard_in_headers, self.guard_request_begun = True, True
        self.guard_header_bytes = 0  # this chunk's bytes are not counted: bounded
        if self.guard_header_timer is None:  # the next request on a connection
            self.guard_header_timer = self.loop.call_later(
                self.header_timeout, self.headers_timed_out
            )

    def on_headers_complete(self) -> None:
        self.guard_in_headers = False
        self.cancel_timers()
        self.guard_body_timer = self.loop.call_later(
            self.body_timeout, self.body_timed_out
        )
        limit = self.limit_concurrency
        busy = limit is not None and max(len(self.connections), len(self.tasks))
        if limit is None or busy < limit:  # uvicorn's own test
            super().on_headers_complete()
            return
        # Over the limit: uvicorn would answer with its plain-text 503 app;
        # have it start ours instead (it uses self.app when there is no limit).
        app, self.app, self.limit_concurrency = self.app, service_busy, None
        try:
            log.warning("over the concurrency limit of %d: 503", limit)
            super().on_headers_complete()
        finally:
            self.app, self.limit_concurrency = app, limit

    def on_message_complete(self) -> None:
        if self.guard_body_timer is not None:
            self.guard_body_timer.cancel()
            self.guard_body_timer = None
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self.cancel_timers()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """Malformed HTTP: uvicorn's plain-text 400, as JSON."""
        self.refuse(400, f"Malformed request: {msg}")

    def cancel_timers(self) -> None:
        """Stop the header and body timers."""
        for timer in (self.guard_header_timer, self.guard_body_timer):
            if timer is not None:
                timer.cancel()
        self.guard_header_timer = self.guard_body_timer = None

    def refuse(self, status: int, message: str) -> None:
        """Answer ``status`` with a JSON error (unless a response is under way)
        and close the connection."""
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(_json_reply(status, message))
        self.transport.close()

    def headers_timed_out(self) -> None:
        """The header timer fired: 408 if a request has begun, then close."""
        self.guard_header_timer = None
        if not self.guard_request_begun:
            self.transport.close()  # idle since it opened: nothing to answer
            return
        log.warning("headers not received within %g s: 408", self.header_timeout)
        self.refuse(408, f"headers not received within {self.header_timeout:g} s")

    def body_timed_out(self) -> None:
        """The body timer fired: close the connection."""
        self.guard_body_timer = None
        if not self.transport.is_closing():
            log.warning("body not received within %g s: closed", self.body_timeout)
            self.transport.close()


def guarded_protocol(
    header_timeout: float = DEFAULT_HEADER_TIMEOUT,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
) -> type[GuardedProtocol]:
    """:class:`GuardedProtocol` with these timeouts, in seconds (the body's gets
    one more second, so that :func:`~.server.read_body`'s 408 comes first)."""
    if not (header_timeout > 0 and body_timeout > 0):  # NaN fails too
        raise ValueError(
            f"timeouts must be > 0 s, got {header_timeout} s and {body_timeout} s"
        )
    attrs = {"header_timeout": header_timeout, "body_timeout": body_timeout + 1.0}
    return type("GuardedProtocol", (GuardedProtocol,), attrs)


def server_config(
    app,
    *,
    log_level: str = "warning",
    header_timeout: float = DEFAULT_HEADER_TIMEOUT,
    keep_alive_timeout: float = DEFAULT_KEEP_ALIVE_TIMEOUT,
    limit_concurrency: int = DEFAULT_LIMIT_CONCURRENCY,
) -> uvicorn.Config:
    """uvicorn's configuration for ``app``: uvloop, :class:`GuardedProtocol`
    with ``header_timeout`` and the app's ``body_timeout``, idle connections
    closed after ``keep_alive_timeout`` seconds, at most ``limit_concurrency``
    connections, no WebSockets, no access log. Used by :func:`~.server.serve`."""
    if not keep_alive_timeout > 0 or limit_concurrency < 2:
        raise ValueError(
            "expected keep_alive_timeout > 0 s and limit_concurrency >= 2, got "
            f"{keep_alive_timeout} s and {limit_concurrency}"
        )
    protocol = guarded_protocol(header_timeout, app.state.server.body_timeout)
    return uvicorn.Config(
        app,
        loop="uvloop",
        http=protocol,
        ws="none",
        log_level=log_level,
        access_log=False,
        timeout_keep_alive=keep_alive_timeout,
        limit_concurrency=limit_concurrency,
        timeout_graceful_shutdown=10,
    )


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one): clients'
    connections queue from then on, before uvicorn accepts them. Raises
    :class:`OSError` in one line naming the address. Used in chapter 8."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)  # connections queue from now on, before uvicorn accepts
    return sock
