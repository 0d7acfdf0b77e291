from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

from cnnlearn.distribute import launch

PRINT_TASK = [
    sys.executable, "-c",
    "import json, os; print(json.loads(os.environ['TF_CONFIG'])['task']['index'])",
]  # fmt: skip


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead too; our own children are reaped by launch_workers()
    with contextlib.suppress(OSError):
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    return False


def test_tf_config_and_ports():
    ports = launch.free_ports(3)
    assert len(set(ports)) == 3
    config = launch.tf_config(ports, 2)
    assert config["cluster"]["worker"][2] == f"127.0.0.1:{ports[2]}"
    assert config["task"] == {"type": "worker", "index": 2}
    with pytest.raises(ValueError, match="worker index 3 outside 0..2"):
        launch.tf_config(ports, 3)


def test_worker_command():
    argv = launch.worker_command(["train", "--epochs", "1"])
    assert argv[:3] == [sys.executable, "-m", "cnnlearn.cli"]
    assert argv[-2:] == ["--strategy", "multi_worker"]
    kept = launch.worker_command(["train", "--strategy", "mirrored"])
    assert kept.count("--strategy") == 1
    assert launch.worker_command(["job.py", "-v"]) == [sys.executable, "job.py", "-v"]
    with pytest.raises(ValueError, match="nothing to launch"):
        launch.worker_command([])


def test_workers_get_their_own_task_and_prefixed_logs(tmp_path):
    sink = io.StringIO()
    result = launch.launch_workers(
        PRINT_TASK, 3, timeout=60, output_dir=tmp_path, sink=sink
    )
    assert result.ok and result.returncodes == [0, 0, 0]
    lines = sorted(sink.getvalue().splitlines())
    assert lines == ["[worker 0] 0", "[worker 1] 1", "[worker 2] 2"]
    report = json.loads((tmp_path / "launch.json").read_text())
    assert report["ok"] and report["ports"] == result.ports


NATIVE_LINES = [
    "E0000 00:00:1795799512.753083    2477 ring_alg.cc:291] Aborting RingReduce",
    "W0000 00:00:1795799512.1 123 grpc.cc:1] a warning",
    "I1206 09:12:01.5 42 server.cc:9] started",
    "Additional GRPC error information from remote target /job:worker/task:1:",
    ":UNKNOWN:Error received from peer  {grpc_status:14}",
    "WARNING: All log messages before absl::InitializeLog() is called are written",
]
CHATTY_TASK = [
    sys.executable, "-c",
    "import json, os, sys, time\n"
    "i = json.loads(os.environ['TF_CONFIG'])['task']['index']\n"
    f"print('\\n'.join({NATIVE_LINES!r}), file=sys.stderr, flush=True)\n"
    "print(f'epoch 1 on worker {i}', flush=True)\n"
    "time.sleep(i / 2)\n"  # worker 0 has printed before worker 1 fails
    "sys.exit(i)",
]  # fmt: skip


def test_native_log_lines_go_to_the_worker_logs_only(tmp_path):
    assert all(launch.is_native_log(line) for line in NATIVE_LINES)
    assert not launch.is_native_log("epoch 1/2 step 20 loss=1.8339")
    assert not launch.is_native_log("fault injection: worker 1 kills itself at 31")
    sink = io.StringIO()
    result = launch.launch_workers(
        CHATTY_TASK, 2, timeout=60, output_dir=tmp_path, sink=sink
    )
    assert result.failed == "worker 1 exited with 1"  # the reader still sees who
    assert "epoch 1 on worker 0" in sink.getvalue()
    assert not any(line in sink.getvalue() for line in NATIVE_LINES), sink.getvalue()
    assert result.logs == [str(tmp_path / f"worker_{i}.log") for i in range(2)]
    for i, log in enumerate(result.logs):
        text = Path(log).read_text()
        assert all(line in text for line in NATIVE_LINES)
        assert f"epoch 1 on worker {i}" in text
    assert json.loads((tmp_path / "launch.json").read_text())["logs"] == result.logs


class _Finished:
    """A worker that printed ``lines`` and exited with ``code`` (for _stream)."""

    def __init__(self, lines: list[str], code: int) -> None:
        self.stdout, self.code = io.StringIO("".join(f"{x}\n" for x in lines)), code

    def wait(self) -> int:
        return self.code


def test_after_the_first_failure_the_others_output_goes_to_their_logs(tmp_path):
    """The survivor's fallout (a traceback, racing the launcher's kill) must not
    reach the sink: what a reader sees of a failed launch is the same every time."""
    sink, lock, failures = io.StringIO(), threading.Lock(), launch._Failures()
    logs = [tmp_path / "worker_0.log", tmp_path / "worker_1.log"]
    launch._stream(_Finished(["fault", "bye"], -9), 1, sink, lock, logs[1], failures)
    assert failures.order == [1]
    launch._stream(_Finished(["Traceback (most"], 1), 0, sink, lock, logs[0], failures)
    assert sink.getvalue() == "[worker 1] fault\n[worker 1] bye\n"
    assert logs[0].read_text() == "Traceback (most\n"  # kept, in the log only
    assert failures.order == [1, 0] and failures.first_is_not(0)
    assert not failures.first_is_not(1)


def test_without_an_output_dir_the_sink_gets_every_line():
    sink = io.StringIO()
    result = launch.launch_workers(CHATTY_TASK[:2] + [CHATTY_TASK[2].replace(
        "sys.exit(i)", "sys.exit(0)")], 1, timeout=60, sink=sink)  # fmt: skip
    assert result.ok and result.logs == []
    assert all(f"[worker 0] {line}" in sink.getvalue() for line in NATIVE_LINES)


def test_one_failing_worker_fails_the_launch_and_stops_the_others():
    code = "import json, os, sys, time\n" \
        "i = json.loads(os.environ['TF_CONFIG'])['task']['index']\n" \
        "sys.exit(3) if i == 1 else time.sleep(120)"  # fmt: skip
    argv = [sys.executable, "-c", code]
    result = launch.launch_workers(argv, 2, timeout=60, sink=io.StringIO())
    assert not result.ok and result.failed == "worker 1 exited with 3"
    assert result.seconds < 60  # it did not wait for the sleeper
    assert not any(_alive(pid) for pid in result.pids)


def test_timeout_kills_every_worker():
    sleeper = [sys.executable, "-c", "import time; time.sleep(120)"]
    result = launch.launch_workers(sleeper, 2, timeout=2, sink=io.StringIO())
    assert not result.ok and result.failed == "timed out after 2 s"
    assert not any(_alive(pid) for pid in result.pids)


def test_cli_launch_needs_an_output(capsys):
    from cnnlearn import cli

    assert cli.main(["launch", "--workers", "2", "--", "evaluate", "--model", "m"]) == 1
    assert "launch needs --output" in capsys.readouterr().err


# --------------------------------------------------------------------------- #
# Real training: 2 workers on loopback through `cnnlearn launch`
# --------------------------------------------------------------------------- #
def cnnlearn_launch(out, data_dir, *extra, env=None, timeout=400):
    """Run `cnnlearn launch --workers 2 -- train ...`; kill all in the end."""
    args = [
        sys.executable, "-m", "cnnlearn.cli", "launch", "--workers", "2",
        "--timeout", str(timeout - 30), "--", "train", "--model", "seed",
        "--data-dir", str(data_dir), "--data-fraction", "0.02", "--batch-size", "64",
        "--validation-split", "0", "--steps-per-epoch", "6", "--output", str(out),
        *extra,
    ]  # fmt: skip
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        env={**os.environ, **(env or {})}, start_new_session=True,
    )  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        report = out / "launch.json"
        pids = json.loads(report.read_text())["pids"] if report.is_file() else []
        for pid in pids:  # each worker leads its own process group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
    assert not any(_alive(pid) for pid in pids)
    return proc.returncode, stdout, stderr


def _weights(path):
    import keras

    return keras.models.load_model(path).get_weights()


ARGS = ("--epochs", "2", "--checkpoint-every", "4")  # 6 steps an epoch


@pytest.fixture(scope="module")
def crash_then_restart(tmp_path_factory, data_dir):
    """Two workers train; worker 1 is SIGKILLed; the cluster is restarted.

    Checkpoints land at steps 4, 6 (end of epoch 1) and 8 (mid-epoch 2); worker 1
    kills itself after step 9. One run serves the tests below (CI time).
    """
    out = tmp_path_factory.mktemp("launch") / "run"
    crash = cnnlearn_launch(out, data_dir, *ARGS, env={"CNNLEARN_FAULT_AT_STEP": "1:9"})
    checkpoints = sorted(p.name for p in (out / "checkpoints").glob("ckpt-*.index"))
    crashed_metrics = (out / "metrics.json").exists()
    restart = cnnlearn_launch(out, data_dir, *ARGS)  # the same command again
    return out, crash, checkpoints, crashed_metrics, restart


@pytest.mark.slow
def test_a_killed_worker_fails_the_launch(crash_then_restart):
    _, (code, _, stderr), checkpoints, crashed_metrics, _ = crash_then_restart
    assert code == 1 and "worker 1 exited with -9" in stderr, stderr[-3000:]
    assert "[worker 1] fault injection" in stderr
    assert "worker_<i>.log" in stderr  # where the C++ log lines went
    worker_log = (crash_then_restart[0] / "worker_1.log").read_text()
    assert "fault injection" in worker_log
    assert not re.search(r"^\[worker \d\] [EWI]0000 ", stderr, re.M)  # logs only
    assert not crashed_metrics  # nothing was saved as if it had finished
    assert checkpoints[-1] == "ckpt-8.index", checkpoints


@pytest.mark.slow
def test_the_restarted_cluster_resumes_from_the_checkpoint(crash_then_restart):
    out, *_, (code, stdout, stderr) = crash_then_restart
    assert code == 0, stderr[-3000:]
    assert "[worker 0] resumed from" in stderr and "step 8, epoch 1, batch 2" in stderr
    chief = json.loads((out / "metrics.json").read_text())
    assert chief["initial_step"] == 8 and chief["final_step"] == 12
    history = json.loads((out / "history.json").read_text())
    assert history["step"] == [6, 12] and len(history["loss"]) == 2


@pytest.mark.slow
def test_two_workers_train_the_seed_cnn_in_sync(crash_then_restart):
    out, *_, (code, stdout, stderr) = crash_then_restart
    assert code == 0 and "2 workers ok" in stdout
    assert "[worker 0] epoch 2/2" in stderr and "[worker 1]" in stderr
    report = json.loads((out / "launch.json").read_text())
    assert report["returncodes"] == [0, 0]
    chief = json.loads((out / "metrics.json").read_text())
    other = json.loads((out / "worker_1" / "metrics.json").read_text())
    assert chief["replicas"] == 2 and chief["workers"] == 2
    assert other["final_step"] == chief["final_step"] == 12
    history = json.loads((out / "history.json").read_text())
    assert history["loss"][1] < history["loss"][0]  # it learns
    for a, b in zip(_weights(out / "model.keras"),
                    _weights(out / "worker_1" / "model.keras")):  # fmt: skip
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)  # in sync
    assert chief["test_accuracy"] == pytest.approx(other["test_accuracy"])
