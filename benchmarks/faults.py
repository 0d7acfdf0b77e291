"""Benchmark: what the chapter-8 model server survives, measured.

One ``cnnlearn serve --backend tflite`` subprocess on 127.0.0.1, started with
short protections (``--header-timeout 2 --body-timeout 3 --keep-alive-timeout
2``) so that every scenario ends within seconds, serves a seed CNN (untrained:
nothing here depends on accuracy). Each hostile scenario runs while a health
check (``GET /v1/models/mnist`` on a fresh connection, every 50 ms, from
another thread) keeps asking. Recorded per scenario: what the server answered
each hostile client (an HTTP status, or ``closed`` when it closed the
connection without one), how many seconds after the client began, whether
every health check meanwhile was answered and the slowest one, and the
scenario's own details (the server's memory for the 30 MB bodies, the 499
count for clients that leave, the status API for a half-written version).
At the end: the server's request counts by status, its failed model loads,
and whether anything was a 500 or the server died.

The scenarios: 50 clients trickling headers (1 byte every 0.2 s), a trickled
body, an idle keep-alive connection, 20 clients leaving mid-body, four
concurrent 30 MB bodies (valid 1024-image batches), a body declared over the
size limit, malformed HTTP, oversized headers, three bad versions in URLs
(``%C2%B2``, 5,000 digits, ``%D9%A1``), a boolean pixel, and a version folder
half-written then replaced atomically.

Not a timing benchmark: the times are bounded by the configured timeouts and
nothing asserts on them. Writes ``benchmarks/results/faults.json``; chapter 8
shows it (``report.faults_table``).

    python benchmarks/faults.py          # about a minute
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import socket
import statistics
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "faults.json"
# The server's protections, given as ``cnnlearn serve`` options.
PROTECTIONS = {
    "header_timeout": 2.0,
    "body_timeout": 3.0,
    "keep_alive_timeout": 2.0,
    "limit_concurrency": 128,
    "workers": 1,
}
POLL_SECONDS = 0.2
HEALTH_PERIOD = 0.05  # seconds between health checks
TRICKLE_PAUSE = 0.2  # seconds between the bytes of a trickling client
HEAD = b"POST /v1/models/mnist:predict HTTP/1.1\r\nhost: faults\r\n"
JSON_HEAD = HEAD + b"content-type: application/json\r\n"


# --- one raw HTTP/1.1 connection ---------------------------------------------
class Client:
    """A raw connection that records when the server answered or closed it."""

    def __init__(self, address: tuple[str, int]):
        self.sock = socket.create_connection(address, timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.start = time.monotonic()
        self.got = b""
        self.answered_at: float | None = None  # first answer byte, or the close
        self.closed_at: float | None = None

    @property
    def closed(self) -> bool:
        return self.closed_at is not None

    def receive(self, wait: float = 0.0) -> None:
        """Take what the server sent, waiting up to ``wait`` s for it."""
        if not select.select([self.sock], [], [], wait)[0]:
            return
        try:
            chunk = self.sock.recv(1 << 16)
        except OSError:  # reset by the server
            chunk = b""
        now = time.monotonic()
        if self.answered_at is None:
            self.answered_at = now
        self.got += chunk
        if not chunk and self.closed_at is None:
            self.closed_at = now

    def send(self, data: bytes, size: int = 0, pause: float = 0.0) -> bool:
        """Send ``data``, ``size`` bytes at a time, ``pause`` s apart, watching
        for an answer; ``False`` once the server answered or closed."""
        size = size or max(len(data), 1)
        for at in range(0, len(data), size):
            try:
                self.sock.sendall(data[at : at + size])
            except OSError:  # closed by the server: a broken pipe or a reset
                self.receive(1.0)
                self.closed_at = self.closed_at or time.monotonic()
                return False
            if pause:
                self.receive(pause)
                if self.answered_at is not None:
                    return False
        return True

    def complete(self) -> bool:
        """Whether a whole answer (headers and Content-Length bytes) is in."""
        head, found, body = self.got.partition(b"\r\n\r\n")
        if not found:
            return False
        for line in head.lower().split(b"\r\n"):
            if line.startswith(b"content-length:"):
                return len(body) >= int(line.split(b":")[1])
        return False

    def finish(self, wait: float = 30.0, until_close: bool = False) -> dict:
        """Read the answer (until it is whole, or until the server closes the
        connection), close, and say what came back and when."""
        deadline = time.monotonic() + wait
        while not self.closed and time.monotonic() < deadline:
            if not until_close and self.complete():
                break
            self.receive(0.05)
        self.sock.close()
        seconds = None if self.answered_at is None else self.answered_at - self.start
        return {**parse_reply(self.got), "closed": self.closed, "seconds": seconds}


def parse_reply(got: bytes) -> dict:
    """The status, whether the answer is JSON, and its error message."""
    if not got.startswith(b"HTTP/1."):
        return {"status": None, "json": None, "error": None}
    head, _, body = got.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    error = None
    is_json = b"content-type: application/json" in head.lower()
    if is_json:
        try:
            doc = json.loads(body)
        except ValueError:
            is_json = False
        else:
            error = doc.get("error") if isinstance(doc, dict) else None
    return {"status": status, "json": is_json, "error": error and error[:120]}


def label(outcome: dict) -> str:
    """``"408"`` for an answer, ``"closed"`` for a close without one,
    ``"open"`` for a connection the server kept open."""
    if outcome["status"] is not None:
        return str(outcome["status"])
    return "closed" if outcome["closed"] else "open"


def summarize(outcomes: list[dict], expected: set[str]) -> dict:
    """Many clients' outcomes as counts, times and whether all were expected
    (an expected answer, and every error answer JSON)."""
    answers = Counter(label(o) for o in outcomes)
    seconds = [o["seconds"] for o in outcomes if o["seconds"] is not None]
    json_errors = [o["json"] for o in outcomes if o["status"] and o["status"] >= 400]
    return {
        "clients": len(outcomes),
        "answers": dict(answers),
        "expected": sorted(expected),
        "answer_seconds_max": max(seconds) if seconds else None,
        "answer_seconds_median": statistics.median(seconds) if seconds else None,
        "errors_as_json": all(json_errors) if json_errors else None,
        "error_message": next((o["error"] for o in outcomes if o["error"]), None),
        "ok": set(answers) <= expected and all(json_errors),
    }


# --- what runs beside each scenario --------------------------------------------
class Health:
    """``GET /v1/models/mnist`` on a fresh connection every HEALTH_PERIOD s."""

    def __init__(self, url: str):
        self.url = f"{url}/v1/models/mnist"
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            start = time.perf_counter()
            try:
                with urllib.request.urlopen(self.url, timeout=10) as response:
                    response.read()
                self.latencies.append(time.perf_counter() - start)
            except (OSError, urllib.error.URLError) as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}"[:120])
            self.stop.wait(HEALTH_PERIOD)

    def __enter__(self) -> Health:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=30)

    def summary(self) -> dict:
        ms = [1000 * s for s in self.latencies]
        return {
            "checks": len(ms) + len(self.failures),
            "failed": len(self.failures),
            "p50_ms": statistics.median(ms) if ms else None,
            "max_ms": max(ms) if ms else None,
            "first_failure": self.failures[0] if self.failures else None,
        }


def memory(pid: int) -> dict[str, float]:
    """The process's resident memory now and at its peak (MB, ``/proc``)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return {"rss_mb": fields["VmRSS"], "peak_mb": fields["VmHWM"]}


def reset_peak(pid: int) -> bool:
    """Reset the process's peak resident memory to its current one (Linux 4.0+:
    ``5`` to ``/proc/<pid>/clear_refs``); ``False`` where that is refused."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def metrics(url: str) -> dict:
    """Predict answers by status, and failed model loads, from the server."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{url}/monitoring/prometheus/metrics") as r:
        text = r.read().decode()
    by_status: Counter = Counter()
    failures = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "cnnlearn_requests_total":
                by_status[sample.labels["status"]] += sample.value
            elif sample.name == "cnnlearn_model_load_failures_total":
                failures += sample.value
    return {"requests_by_status": dict(by_status), "model_load_failures": failures}


# --- the scenarios ---------------------------------------------------------------
def in_threads(n: int, work) -> list:
    """``work(i)`` for ``i < n``, each in its own thread; the results in order."""
    results: list = [None] * n

    def run(i: int) -> None:
        results[i] = work(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def trickled_headers(ctx: dict) -> dict:
    """50 clients send their headers one byte every 0.2 s: 408, then closed."""

    def client(_):
        c = Client(ctx["address"])
        c.send(HEAD + b"x-pad: " + b"a" * 200, size=1, pause=TRICKLE_PAUSE)
        return c.finish()

    return summarize(in_threads(50, client), {"408"})


def trickled_body(ctx: dict) -> dict:
    """Complete headers, then a 5,000-byte body at one byte every 0.2 s."""
    c = Client(ctx["address"])
    c.send(JSON_HEAD + b"content-length: 5000\r\n\r\n")
    c.send(b'{"instances": [' + b" " * 4985, size=1, pause=TRICKLE_PAUSE)
    return summarize([c.finish()], {"408"})


def idle_keep_alive(ctx: dict) -> dict:
    """One status request on a keep-alive connection, then silence: the
    server closes it; ``idle_seconds`` is from the answer to the close."""
    c = Client(ctx["address"])
    c.send(b"GET /v1/models/mnist HTTP/1.1\r\nhost: faults\r\n\r\n")
    deadline = time.monotonic() + 30
    while not c.complete() and not c.closed and time.monotonic() < deadline:
        c.receive(0.05)
    answered = time.monotonic()
    outcome = c.finish(wait=30, until_close=True)
    result = summarize([outcome], {"200"})
    closed_at = c.closed_at
    result["idle_seconds_until_closed"] = closed_at and closed_at - answered
    result["ok"] = result["ok"] and outcome["closed"]
    return result


def leaving_mid_body(ctx: dict) -> dict:
    """20 clients send headers and 3 bytes of a 10,000-byte body, then leave:
    counted as 499 (the client closed), not as 500."""
    before = metrics(ctx["url"])["requests_by_status"].get("499", 0)
    for _ in range(20):
        c = Client(ctx["address"])
        c.send(JSON_HEAD + b"content-length: 10000\r\n\r\n[[[")
        c.sock.close()
    deadline, counted = time.monotonic() + 15, 0
    while time.monotonic() < deadline:
        counted = metrics(ctx["url"])["requests_by_status"].get("499", 0) - before
        if counted >= 20:
            break
        time.sleep(0.1)
    return {
        "clients": 20,
        "answers": {"499 (counted)": counted},
        "expected": ["499 (counted)"],
        "answer_seconds_max": None,
        "answer_seconds_median": None,
        "errors_as_json": None,
        "error_message": None,
        "ok": counted == 20,
    }


def big_body(images: np.ndarray, size: int) -> bytes:
    """A valid 1024-image float batch written with long decimals and padded
    with blanks to exactly ``size`` bytes of JSON."""

    def image(x: np.ndarray) -> str:
        rows = ("[" + ",".join(f"[{v:.30f}]" for v in row) + "]" for row in x)
        return "[" + ",".join(rows) + "]"

    batch = ",".join(image(x[..., 0]) for x in images)
    body = ('{"instances": [' + batch + "]").encode()
    if len(body) + 1 > size:
        raise ValueError(f"the batch alone is {len(body)} bytes, over {size}")
    return body + b" " * (size - len(body) - 1) + b"}"


def thirty_mb_bodies(ctx: dict) -> dict:
    """Four clients each send a valid 30 MB body at once (1024 images): parsed
    and run off the event loop, so health checks are still answered."""
    body = ctx["big_body"]
    request = JSON_HEAD + b"content-length: %d\r\n\r\n" % len(body) + body
    pid = ctx["pid"]
    reset = reset_peak(pid)
    before = memory(pid)

    def client(_):
        c = Client(ctx["address"])
        c.send(request)
        return c.finish(wait=120)

    result = summarize(in_threads(4, client), {"200"})
    after = memory(pid)
    result.update(
        body_mb=len(body) / 1e6,
        rss_before_mb=before["rss_mb"],
        peak_mb=after["peak_mb"] if reset else None,
        rss_after_mb=after["rss_mb"],
    )
    return result


def over_the_size_limit(ctx: dict) -> dict:
    """A body declared at 64 MiB, over the 32 MiB limit: 413 before it is read."""
    c = Client(ctx["address"])
    c.send(JSON_HEAD + b"content-length: %d\r\n\r\n[" % (64 << 20))
    return summarize([c.finish()], {"413"})


def malformed_http(ctx: dict) -> dict:
    """Not HTTP at all: a JSON 400, then closed."""
    c = Client(ctx["address"])
    c.send(b"THIS IS NOT HTTP\r\n\r\n")
    return summarize([c.finish()], {"400"})


def oversized_headers(ctx: dict) -> dict:
    """128 KiB of headers (the limit is 64 KiB): 431."""
    c = Client(ctx["address"])
    pad = b"x-pad: " + b"a" * (128 << 10) + b"\r\n\r\n"
    c.send(HEAD + pad, size=8192, pause=0.05)  # room to answer before a reset
    return summarize([c.finish()], {"431"})


def bad_version(text: str):
    """A status request for version ``text`` (URL-encoded): a JSON 400, never
    a 500 and never another version's status."""

    def scenario(ctx: dict) -> dict:
        c = Client(ctx["address"])
        path = f"/v1/models/mnist/versions/{text}"
        c.send(f"GET {path} HTTP/1.1\r\nhost: faults\r\n\r\n".encode())
        return summarize([c.finish()], {"400"})

    return scenario


def boolean_pixel(ctx: dict) -> dict:
    """A valid image but for one pixel sent as ``true``: 400 (NumPy would
    read it as 1.0)."""
    image = np.zeros((28, 28, 1)).tolist()
    image[14][14][0] = True
    body = json.dumps({"instances": [image]}).encode()
    c = Client(ctx["address"])
    c.send(JSON_HEAD + b"content-length: %d\r\n\r\n" % len(body) + body)
    return summarize([c.finish()], {"400"})


def version_status(url: str) -> dict[str, dict]:
    with urllib.request.urlopen(f"{url}/v1/models/mnist", timeout=10) as r:
        rows = json.loads(r.read())["model_version_status"]
    return {row["version"]: row for row in rows}


def served_version(url: str, body: bytes) -> str | None:
    request = urllib.request.Request(
        f"{url}/v1/models/mnist:predict", body, {"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as r:
        return r.headers.get("x-model-version")


def wait_for(condition, seconds: float = 30.0) -> float | None:
    """Seconds until ``condition()`` holds (polled every 50 ms); ``None`` if
    it never did."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if condition():
            return time.monotonic() - start
        time.sleep(0.05)
    return None


def half_written_version(ctx: dict) -> dict:
    """Version 2 appears half-written (its ``model.tflite`` cut in half, as a
    copy killed midway leaves it): the load fails, the status API says so and
    version 1 serves on. Then a complete copy replaces it atomically (renamed
    into place): served without a restart, ``seconds_until_served`` later."""
    base, url, body = ctx["model_dir"], ctx["url"], ctx["small_body"]
    broken = base / "2"
    shutil.copytree(base / "1", broken)  # not atomic: files appear one by one
    tflite = broken / "model.tflite"
    tflite.write_bytes(tflite.read_bytes()[: tflite.stat().st_size // 2])
    seen = wait_for(lambda: "2" in version_status(url), 10)
    failed = version_status(url).get("2", {})
    during = served_version(url, body)
    good = base / ".incoming-2"
    shutil.copytree(base / "1", good)
    os.rename(broken, base / ".broken-2")  # the replacement: two renames
    os.rename(good, broken)
    start = time.monotonic()
    served = wait_for(lambda: served_version(url, body) == "2", 30)
    shutil.rmtree(base / ".broken-2", ignore_errors=True)
    state = failed.get("state")
    return {
        "clients": 1,
        "answers": {f"v{during} served, v2 {state}, then v2 served": 1},
        "expected": ["v1 served, v2 END, then v2 served"],
        "answer_seconds_max": None if served is None else time.monotonic() - start,
        "answer_seconds_median": None,
        "errors_as_json": None,
        "error_message": failed.get("status", {}).get("error_message", "")[:120],
        "failure_shown_after_seconds": seen,
        "seconds_until_served": served,
        "ok": during == "1" and state == "END" and served is not None,
    }


SCENARIOS = {
    "trickled_headers": trickled_headers,
    "trickled_body": trickled_body,
    "idle_keep_alive": idle_keep_alive,
    "leaving_mid_body": leaving_mid_body,
    "thirty_mb_bodies": thirty_mb_bodies,
    "over_the_size_limit": over_the_size_limit,
    "malformed_http": malformed_http,
    "oversized_headers": oversized_headers,
    "version_superscript_two": bad_version("%C2%B2"),
    "version_5000_digits": bad_version("9" * 5000),
    "version_arabic_indic_one": bad_version("%D9%A1"),
    "boolean_pixel": boolean_pixel,
    "half_written_version": half_written_version,
}
DESCRIPTIONS = {name: f.__doc__ or "" for name, f in SCENARIOS.items()}
for name, what in (
    ("version_superscript_two", "/versions/%C2%B2 (a superscript two)"),
    ("version_5000_digits", "/versions/ and 5,000 digits"),
    ("version_arabic_indic_one", "/versions/%D9%A1 (an Arabic-Indic one)"),
):
    DESCRIPTIONS[name] = f"{what}. {bad_version.__doc__}"
DESCRIPTIONS = {k: " ".join(v.split()) for k, v in DESCRIPTIONS.items()}
TITLES = {  # short, for the chapter's table
    "trickled_headers": "50 clients trickling headers",
    "trickled_body": "a body trickled byte by byte",
    "idle_keep_alive": "an idle keep-alive connection",
    "leaving_mid_body": "20 clients leaving mid-body",
    "thirty_mb_bodies": "4 clients sending 30 MB bodies",
    "over_the_size_limit": "a body declared at 64 MiB",
    "malformed_http": "malformed HTTP",
    "oversized_headers": "128 KiB of headers",
    "version_superscript_two": "version `%C2%B2` (²)",
    "version_5000_digits": "a 5,000-digit version",
    "version_arabic_indic_one": "version `%D9%A1` (Arabic-Indic 1)",
    "boolean_pixel": "a boolean pixel",
    "half_written_version": "a half-written version, replaced atomically",
}


# --- the run ---------------------------------------------------------------------
def export_model(base: Path, data_dir: str | None) -> np.ndarray:
    """Export an untrained seed CNN as version 1; return 1024 test images."""
    import cnnlearn._tf  # noqa: F401
    from cnnlearn import models
    from cnnlearn.config import RunConfig, load_data
    from cnnlearn.deploy import export

    run = load_data(RunConfig(data_dir=data_dir, data_fraction=0.02))
    model = models.get_model("seed", seed=0)
    export.export_version(model, base, "mnist", train_images=run.x_train)
    return run.x_test[:1024]


def serve_args() -> tuple[str, ...]:
    """PROTECTIONS as ``cnnlearn serve`` options."""
    args: list[str] = []
    for name, value in PROTECTIONS.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    return tuple(args)


def run_scenarios(ctx: dict) -> dict:
    """Each scenario beside a health check; a scenario that fails is recorded
    as such and the others run."""
    results = {}
    for name, scenario in SCENARIOS.items():
        with Health(ctx["url"]) as health:
            time.sleep(0.2)  # a few checks before the hostile client begins
            try:
                result = scenario(ctx)
            except Exception as exc:  # the benchmark's own failure: recorded
                result = {"ok": False, "failed": f"{type(exc).__name__}: {exc}"}
            time.sleep(0.2)
        result = {"title": TITLES[name], "description": DESCRIPTIONS[name], **result}
        result["health"] = health.summary()
        result["measured_at"] = provenance_now()
        results[name] = result
        print(
            f"{name:26s} {result.get('answers')} in "
            f"{result.get('answer_seconds_max') or 0:.2f} s; health "
            f"{result['health']['checks'] - result['health']['failed']}/"
            f"{result['health']['checks']} max {result['health']['max_ms'] or 0:.0f} "
            f"ms; ok={result['ok']}",
            flush=True,
        )
    return results


def provenance_now() -> str:
    from cnnlearn.report import provenance

    return provenance.measured_at()


def goals(report: dict, alive: bool) -> dict:
    """What the chapter claims: nothing answered 500, every health check
    answered, every scenario as expected, the server alive at the end."""
    scenarios = report["scenarios"].values()
    statuses = report["metrics_after"]["requests_by_status"]
    return {
        "no_500": not statuses.get("500")
        and not any("500" in s.get("answers", {}) for s in scenarios),
        "health_always_answered": all(s["health"]["failed"] == 0 for s in scenarios),
        "all_as_expected": all(s["ok"] for s in scenarios),
        "server_alive": alive,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    from cnnlearn._io import write_json
    from cnnlearn.deploy import loadtest
    from cnnlearn.report import provenance

    config = {
        "data_dir": args.data_dir,
        "protections": PROTECTIONS,
        "poll_seconds": POLL_SECONDS,
        "health_period_s": HEALTH_PERIOD,
        "trickle_pause_s": TRICKLE_PAUSE,
        "model": "seed (seed=0), untrained, exported with 2 % of MNIST's statistics",
        "scenarios": list(SCENARIOS),
    }
    record = provenance.start(config)
    report: dict = {"server": {"backend": "tflite", "options": list(serve_args())}}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        images = export_model(workdir / "models", args.data_dir)
        small = json.dumps({"instances": images[:1].tolist()}).encode()
        server = loadtest.start_server(
            workdir / "models" / "mnist",
            workdir / "server",
            backend="tflite",
            poll_seconds=POLL_SECONDS,
            extra_args=serve_args(),
        )
        try:
            host, port = server.url.removeprefix("http://").rsplit(":", 1)
            ctx = {
                "url": server.url,
                "address": (host, int(port)),
                "pid": server.process.pid,
                "model_dir": workdir / "models" / "mnist",
                "small_body": small,
                "big_body": big_body(images, 30_000_000),
            }
            report["scenarios"] = run_scenarios(ctx)
            report["metrics_after"] = metrics(server.url)
            alive = server.running
        finally:
            server.stop()
    report["goals"] = goals(report, alive)
    report["machine"] = provenance.machine()
    report["provenance"] = provenance.finish(record)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.output, report)
    print(json.dumps(report["goals"], indent=2))


if __name__ == "__main__":
    main()
