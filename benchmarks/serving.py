"""Benchmark: the chapter-8 model server against a naive one, on loopback.

Servers, each a subprocess on 127.0.0.1, serving the same seed CNN (trained
for one epoch on 10 % of MNIST: accuracy does not matter here):

* ``naive``: the reference from issue 9: one FastAPI process, a pydantic body
  model, a sync endpoint (Starlette's thread pool) calling one float32 LiteRT
  interpreter under a lock, JSON ``instances`` in and ``.tolist()`` out;
* ``cnnlearn_tflite``: ``cnnlearn serve --backend tflite``, with its gRPC
  port (TF Serving's ``PredictionService``) open too;
* ``cnnlearn_tflite_no_gc_freeze``: the same with ``--no-gc-freeze``, for two
  scenarios: what moving the objects alive after start-up out of the garbage
  collector's reach (``gc.freeze``) buys;
* ``cnnlearn_savedmodel``: ``cnnlearn serve --backend savedmodel``;
* ``cnnlearn_*_batching``: each backend with ``--enable-batching`` and
  :data:`BATCHING` (TF Serving's ``--batching_parameters_file``), for the
  scenarios with many concurrent single-image clients.

The load: C client threads in this process, each on one keep-alive connection
(REST) or channel (gRPC), sending a pre-built request as fast as answers come
back for T seconds, after a one-second warm-up that is not counted. All
servers run at once, idle but one, and the scenarios run in R interleaved
rounds of T/R seconds, the server order rotating each round; every number
reported is the median over the rounds. :data:`SCENARIOS` lists them (clients,
images per request, encoding, protocol) and :data:`SERVERS` which server runs
which. Every answer is checked (status 200 and a ``predictions`` body, or a
gRPC answer with outputs); anything else counts as an error. Reported per
scenario: p50/p99 latency (ms, client side), requests/s, images/s, errors, and
the server's CPU milliseconds per request (from ``/proc``), which depends much
less on what else runs on the machine. ``load_average_*`` shows how busy it
was: on a shared 2-core machine the load generator and the server compete for
cores. ``call_ms`` is one model call of one image and of a full batch on each
backend, timed in this process: the batching goal's p99 bound is the batch
timeout plus one full batch's call. The batching servers' scenarios also
report ``batcher_p99_ms``: the 99th percentile of the time a request spent in
the batcher (its wait for the batch plus the batch's run), read from the
server's ``cnnlearn_batching_latency_seconds`` histogram over the counted
seconds (to its bucket's upper bound: 0.25 ms steps). That is the latency the
batch timeout bounds; the client-side p99 adds every request's HTTP or gRPC
handling on the same two cores.
Writes ``benchmarks/results/serving.json``; chapter 8 shows it.

    nice python benchmarks/serving.py                 # ~5 minutes on 2 cores
    python benchmarks/serving.py --seconds 2 --rounds 1   # a quick look

Not a test: nothing here asserts a timing. The book reads the numbers.
"""

import argparse
import base64
import gc
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from cnnlearn.deploy import loadtest
from cnnlearn.report import provenance

RESULTS = Path(__file__).parent / "results" / "serving.json"
# The exported model's one training epoch (cnnlearn.train.PLAIN): float32,
# batch 128, fit(numpy), on 10 % of MNIST. Latency does not depend on it.
PLAN = {
    "batch_scale": 1,
    "pipeline": "numpy",
    "steps_per_execution": 1,
    "precision": "float32",
    "jit_compile": False,
}
REPO = Path(__file__).resolve().parent.parent
SCENARIOS = {  # name: (clients, images per request, encoding, protocol)
    "single_1_client": (1, 1, "float", "rest"),
    "single_4_clients": (4, 1, "float", "rest"),
    "single_4_clients_b64": (4, 1, "b64", "rest"),
    "batch32_float": (4, 32, "float", "rest"),
    "batch32_uint8": (4, 32, "uint8", "rest"),
    "batch32_b64": (4, 32, "b64", "rest"),
    "single_16_clients": (16, 1, "float", "rest"),
    "grpc_single_4_clients": (4, 1, "float", "grpc"),
    "grpc_batch32": (4, 32, "float", "grpc"),
    "grpc_single_16_clients": (16, 1, "float", "grpc"),
}
MANY = ("single_16_clients", "grpc_single_16_clients")  # batching's scenarios
SERVERS = {  # kind: (scenarios it runs, extra `cnnlearn serve` arguments)
    "naive": (("single_1_client", "single_4_clients", "batch32_float"), ()),
    "cnnlearn_tflite": (tuple(SCENARIOS), ("--grpc-port", "0")),
    # the ablation of gc.freeze: our LiteRT server without it, on the fast path
    # (plain float JSON) and on the general one (uint8 JSON: nested Python lists)
    "cnnlearn_tflite_no_gc_freeze": (
        ("single_4_clients", "batch32_uint8"),
        ("--no-gc-freeze",),
    ),
    "cnnlearn_tflite_batching": (("single_4_clients", *MANY), "batching"),
    "cnnlearn_savedmodel": (
        (*(k for k, v in SCENARIOS.items() if v[3] == "rest"), MANY[1]),
        ("--grpc-port", "0"),
    ),
    "cnnlearn_savedmodel_batching": (("single_4_clients", *MANY), "batching"),
}
# TF Serving's BatchingParameters for the batching servers: a batch of up to
# 16 single images (one per client), waiting at most 2 ms for them to arrive.
BATCHING_GOAL = 3.0  # batched requests/s over unbatched, at MANY's clients
# The batching servers' histogram of each request's time in the batcher (its
# wait plus its batch's run): what the batch timeout bounds.
BATCHER_LATENCY = "cnnlearn_batching_latency_seconds"
BATCHING = {
    "max_batch_size": 16,
    "batch_timeout_micros": 2000,
    "max_enqueued_batches": 100,
    "num_batch_threads": 1,
}


# --- the naive reference server ---------------------------------------------
def naive_server(tflite_path: str, port: int) -> None:  # pragma: no cover
    """The issue's reference: FastAPI + pydantic + one interpreter under a lock."""
    import uvicorn
    from ai_edge_litert.interpreter import Interpreter
    from fastapi import FastAPI
    from pydantic import BaseModel

    interpreter = Interpreter(model_path=tflite_path)
    inp = interpreter.get_input_details()[0]["index"]
    out = interpreter.get_output_details()[0]["index"]
    interpreter.allocate_tensors()
    lock = threading.Lock()
    batch = [1]

    class PredictRequest(BaseModel):
        instances: list

    app = FastAPI()

    @app.post("/v1/models/mnist:predict")
    def predict(request: PredictRequest):
        x = np.asarray(request.instances, dtype=np.float32)
        with lock:
            if len(x) != batch[0]:
                interpreter.resize_tensor_input(inp, x.shape, strict=False)
                interpreter.allocate_tensors()
                batch[0] = len(x)
            interpreter.set_tensor(inp, x)
            interpreter.invoke()
            y = interpreter.get_tensor(out).copy()
        return {"predictions": y.tolist()}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# --- the load generator (cnnlearn.deploy.loadtest) -------------------------------
def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    target: str, pid: int, request, clients: int, seconds: float, metrics_url=None
) -> dict:
    """:func:`loadtest.load` (a URL and HTTP bytes) or :func:`loadtest.load_grpc`
    (host:port and a ``PredictRequest``), plus the server's CPU milliseconds per
    request; with ``metrics_url`` (a batching server's), also the p99 of the
    time its requests spent in the batcher, from its
    ``cnnlearn_batching_latency_seconds`` histogram over the counted seconds."""
    before = cpu_seconds(pid)
    load = loadtest.load if target.startswith("http") else loadtest.load_grpc
    readings = []
    at_warm = None
    if metrics_url is not None:

        def at_warm():
            readings.append(loadtest.histogram(metrics_url, BATCHER_LATENCY))

    result = load(target, request, clients=clients, seconds=seconds, at_warm=at_warm)
    used = cpu_seconds(pid) - before  # includes the 1-second warm-up
    result["server_cpu_ms_per_request"] = None
    if result["requests"]:
        total = result["requests"] * (1 + 1 / seconds)  # warm-up ≈ one more second
        result["server_cpu_ms_per_request"] = 1000 * used / total
    if readings:
        after = loadtest.histogram(metrics_url, BATCHER_LATENCY)
        p99 = loadtest.histogram_quantile(readings[0], after, 0.99)
        result["batcher_p99_ms"] = None if p99 is None else 1000 * p99
    return result


def schedule(kinds: tuple[str, ...], round_: int) -> list[tuple[str, str]]:
    """(scenario, server) pairs of one round; the server order rotates."""
    turn = round_ % len(kinds)
    return [
        (name, kind)
        for name in SCENARIOS
        for kind in kinds[turn:] + kinds[:turn]
        if name in SERVERS[kind][0]
    ]


def summarize(rounds: list[dict]) -> dict:
    """One scenario over all rounds: the median of each number, errors summed.

    Medians of short interleaved windows, rather than one long window per
    server, keep a burst of noise on this shared machine from landing on one
    server only. The rounds themselves are kept under ``"rounds"``.
    """
    numbers = ("p50_ms", "p99_ms", "requests_per_s", "images_per_s")
    out = {
        key: float(np.median([r[key] for r in rounds]))
        for key in (*numbers, "server_cpu_ms_per_request", "batcher_p99_ms")
        if all(r.get(key) is not None for r in rounds)
    }
    out["requests"] = sum(r["requests"] for r in rounds)
    out["errors"] = sum(r["errors"] for r in rounds)
    out["first_errors"] = [e for r in rounds for e in r["first_errors"]][:3]
    out["rounds"] = [
        {k: v for k, v in r.items() if k != "first_errors"} for r in rounds
    ]
    out["measured_at"] = rounds[-1]["measured_at"]  # its last round
    return out


def bodies(images: np.ndarray) -> dict[tuple[int, str], bytes]:
    """Pre-serialized request bodies per (batch, encoding)."""
    out = {}
    for batch in (1, 32):
        x8 = images[:batch]
        xf = (x8.astype(np.float32) / 255)[..., None]
        out[batch, "float"] = json.dumps({"instances": xf.tolist()}).encode()
        out[batch, "uint8"] = json.dumps(
            {"signature_name": "serving_uint8", "instances": x8[..., None].tolist()}
        ).encode()
        b64 = [{"b64": base64.b64encode(i.tobytes()).decode()} for i in x8]
        out[batch, "b64"] = json.dumps(
            {"signature_name": "serving_bytes", "instances": b64}
        ).encode()
    return out


def grpc_requests(images: np.ndarray) -> dict[int, object]:
    """``PredictRequest`` protos of 1 and 32 float images (TF Serving's API)."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    out = {}
    for batch in (1, 32):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "mnist"
        x = (images[:batch].astype(np.float32) / 255)[..., None]
        request.inputs["image"].CopyFrom(tf.make_tensor_proto(x))
        out[batch] = request
    return out


def batch_compute_ms(version_dir: Path, backend: str, batch: int) -> float:
    """The median time of one ``batch``-image run on ``backend``, in this process."""
    import json as json_module

    from cnnlearn.deploy import backends
    from cnnlearn.deploy.export import METADATA_FILE

    if backend == "tflite":
        sidecar = json_module.loads((version_dir / METADATA_FILE).read_text())
        model = backends.TFLiteBackend(version_dir, declared=sidecar["signatures"])
    else:
        model = backends.SavedModelBackend(version_dir)
    x = {"image": np.zeros((batch, 28, 28, 1), np.float32)}
    times = []
    for _ in range(30):
        start = time.perf_counter()
        model.run("serving_default", x)
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times[5:]))


# --- servers -------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError("server did not start")


def start(kind: str, model_dir: Path, workdir: Path):
    """Start a server; return (stop function, url, pid, gRPC target or None)."""
    if kind != "naive":
        backend = kind.split("_")[1]
        extra = SERVERS[kind][1]
        if extra == "batching":
            params = workdir / "batching.txt"
            params.write_text(
                "".join(f"{k} {{ value: {v} }}\n" for k, v in BATCHING.items())
            )
            extra = ("--enable-batching", "--batching-parameters-file", str(params))
            extra += ("--grpc-port", "0")
        server = loadtest.start_server(
            model_dir, workdir / kind, backend=backend, extra_args=extra
        )
        return server.stop, server.url, server.process.pid, server.grpc_target
    port = free_port()
    log = open(workdir / f"{kind}.log", "wb")  # noqa: SIM115
    tflite = str(model_dir / "1" / "model.tflite")
    cmd = [sys.executable, __file__, "--naive-server", tflite, str(port)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=log)
    try:
        wait_ready(port, proc)
    except BaseException:
        stop(proc)
        raise
    return (lambda: stop(proc)), f"http://127.0.0.1:{port}", proc.pid, None


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


def export_model(base: Path, data_dir: str | None) -> np.ndarray:
    """Train and export the served model; return 32 test images as uint8."""
    import cnnlearn._tf  # noqa: F401
    from cnnlearn import models, train
    from cnnlearn.config import RunConfig, load_data
    from cnnlearn.deploy import export

    run = load_data(RunConfig(data_dir=data_dir, data_fraction=0.1))
    model = models.get_model("seed", seed=0)
    # Pinned: what is served must not depend on the plan this machine would pick.
    train.fit(
        model, run.x_train, run.y_train, epochs=1, batch_size=128, verbose=0, plan=PLAN
    )
    export.export_version(model, base, "mnist", train_images=run.x_train)
    # The preprocessed pixels are k / 255 exactly: back to the raw uint8 images.
    return np.rint(run.x_test[:32, ..., 0] * 255).astype(np.uint8)


def goals(report: dict) -> dict:
    """The issue's goals, from the measured servers (chapter 8 shows them)."""
    servers = report["servers"]
    naive, ours = servers["naive"], servers["cnnlearn_tflite"]
    best_batch = max(
        (ours[s]["images_per_s"], s)
        for s in ("batch32_float", "batch32_uint8", "batch32_b64", "grpc_batch32")
    )
    out = {
        "p99_4_clients_ms": ours["single_4_clients"]["p99_ms"],
        "p99_4_clients_le_5ms": ours["single_4_clients"]["p99_ms"] <= 5.0,
        "speedup_4_clients": ours["single_4_clients"]["requests_per_s"]
        / naive["single_4_clients"]["requests_per_s"],
        "best_batched_images_per_s": best_batch[0],
        "best_batched_scenario": best_batch[1],
        "batched_ge_25000_images_per_s": best_batch[0] >= 25000,
        "total_errors": sum(r["errors"] for s in servers.values() for r in s.values()),
        "batching_goal_x": BATCHING_GOAL,
        "batching": {},
    }
    out["speedup_ge_2x"] = out["speedup_4_clients"] >= 2
    bound_ms = BATCHING["batch_timeout_micros"] / 1000
    for backend in ("tflite", "savedmodel"):
        plain = servers[f"cnnlearn_{backend}"]
        batched = servers[f"cnnlearn_{backend}_batching"]
        for name in MANY:
            if name not in plain:
                continue
            speedup = batched[name]["requests_per_s"] / plain[name]["requests_per_s"]
            bound = (
                bound_ms + report["call_ms"][backend][str(BATCHING["max_batch_size"])]
            )
            in_batcher = batched[name].get("batcher_p99_ms")
            out["batching"][f"{backend} {name}"] = {
                "throughput_x_unbatched": speedup,
                "throughput_ge_goal": speedup >= BATCHING_GOAL,
                "p99_ms": batched[name]["p99_ms"],
                "p99_bound_ms": bound,
                "p99_within_bound": batched[name]["p99_ms"] <= bound,
                "batcher_p99_ms": in_batcher,
                "batcher_p99_within_bound": in_batcher is not None
                and in_batcher <= bound,
            }
    return out


def run_rounds(kinds, servers, requests, args) -> dict:
    """Every round of :func:`schedule`; each scenario's runs per server."""
    runs: dict = {}
    for round_ in range(args.rounds):
        for name, kind in schedule(kinds, round_):
            clients, batch, encoding, protocol = SCENARIOS[name]
            _, url, pid, grpc_target = servers[kind]
            target = grpc_target if protocol == "grpc" else url
            request = requests[protocol, batch, encoding]
            batching = SERVERS[kind][1] == "batching" and name in MANY
            r = measure(
                target,
                pid,
                request,
                clients,
                args.seconds / args.rounds,
                metrics_url=url if batching else None,
            )
            r["images_per_s"] = r["requests_per_s"] * batch
            r["measured_at"] = provenance.measured_at()
            runs.setdefault(kind, {}).setdefault(name, []).append(r)
            print(
                f"round {round_} {kind:28s} {name:22s} "
                f"p50 {r['p50_ms'] or 0:6.2f} ms p99 {r['p99_ms'] or 0:6.2f} "
                f"ms {r['images_per_s']:7.0f} img/s errors {r['errors']} "
                f"server CPU {r['server_cpu_ms_per_request'] or 0:.3f} ms/req",
                flush=True,
            )
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=6.0, help="per scenario, all rounds"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data-dir")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    from cnnlearn._io import write_json

    config = {k: v for k, v in vars(args).items() if k != "output"}
    config |= {
        "scenarios": SCENARIOS,
        "servers": SERVERS,
        "batching": BATCHING,
        "model": "seed (seed=0), 1 epoch on 10 % of MNIST, batch 128",
        "plan": PLAN,
    }
    record = provenance.start(config)
    report = {
        "seconds_per_scenario": args.seconds,
        "rounds": args.rounds,
        "scenarios": {
            k: dict(zip(("clients", "batch", "encoding", "protocol"), v))
            for k, v in SCENARIOS.items()
        },
        "batching": BATCHING,
        "load_average_start": os.getloadavg(),
        "servers": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        images = export_model(workdir / "models", args.data_dir)
        version = workdir / "models" / "mnist" / "1"
        # one model call of 1 image and of a full batch, per backend
        report["call_ms"] = {
            b: {
                str(n): batch_compute_ms(version, b, n)
                for n in (1, BATCHING["max_batch_size"])
            }
            for b in ("tflite", "savedmodel")
        }
        requests = {
            ("rest", *k): loadtest.http_request("/v1/models/mnist:predict", v)
            for k, v in bodies(images).items()
        }
        requests |= {("grpc", k, "float"): v for k, v in grpc_requests(images).items()}
        # The load generator's own garbage-collector pauses would count against
        # every server alike: its start-up objects leave the collector's scans.
        gc.collect()
        gc.freeze()
        kinds = tuple(SERVERS)
        servers = {}
        try:
            for kind in kinds:  # all up at once; an idle server costs no CPU
                servers[kind] = start(kind, workdir / "models" / "mnist", workdir)
            runs = run_rounds(kinds, servers, requests, args)
        finally:
            for halt, *_ in servers.values():
                halt()
    report["servers"] = {
        kind: {name: summarize(rounds) for name, rounds in runs[kind].items()}
        for kind in kinds
    }
    report["load_average_end"] = os.getloadavg()
    report["goals"] = goals(report)
    report["machine"] = provenance.machine()
    report["provenance"] = provenance.finish(record)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.output, report)
    print(json.dumps(report["goals"], indent=2))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--naive-server":
        naive_server(sys.argv[2], int(sys.argv[3]))
    else:
        main()
