"""Start N JAX processes on this machine as the hosts of one job, run a function in each, gather what they return.

Each process is a fresh Python (``python -m tests.multihost.worker``) with its own simulated CPU devices
(``--xla_force_host_platform_device_count``), joined by ``common.distributed.initialize`` to a coordinator on
localhost: the set-up of a TPU pod slice or of several GPU nodes, with CPU collectives (gloo) in place of ICI or
NCCL. The function is named "package.module:function"; it gets the keyword arguments given here (JSON) and
returns something picklable (numpy arrays, numbers, dicts), which comes back per process.

    results = run_processes("tests.multihost.jobs:load", processes=2, devices_per_process=4, args={...})
    results[0].value, results[1].returncode, results[1].stderr
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
# tests/conftest.py's settings, as environment variables: true float32 matmuls, XLA's slow backend optimisations
# off (the models are tiny), so a process computes what the test process does.
SUITE_JAX_SETTINGS = {"JAX_DEFAULT_MATMUL_PRECISION": "highest", "JAX_DISABLE_MOST_OPTIMIZATIONS": "true"}


@dataclasses.dataclass
class ProcessResult:
    process_id: int
    returncode: int
    value: Any  # what the function returned; None if it did not return
    stderr: str

    def check(self) -> Any:
        if self.returncode != 0:
            raise AssertionError(f"process {self.process_id} exited with {self.returncode}:\n{self.stderr[-4000:]}")
        return self.value


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def xla_flags(devices: int) -> str:
    """This process's XLA flags (tests/conftest.py's compile settings) with ``devices`` simulated CPU devices."""
    kept = [f for f in os.environ.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
    return " ".join(kept + [f"--xla_force_host_platform_device_count={devices}"])


def launch(commands: list[list[str]], devices_per_process: int, *, timeout: float = 120,
           env: dict | None = None) -> list[tuple[int, str]]:
    """Run one command per process (all at once, from the repository root, with ``devices_per_process`` CPU
    devices each and the test suite's JAX settings); wait at most ``timeout`` seconds for all, then kill the rest
    and fail naming them. Returns (exit code, stderr) per process."""
    penv = dict(os.environ, JAX_PLATFORMS="cpu", JAXZOO_COMPILE_CACHE="off", PYTHONUNBUFFERED="1",
                XLA_FLAGS=xla_flags(devices_per_process), **SUITE_JAX_SETTINGS, **(env or {}))
    penv.pop("PYTEST_CURRENT_TEST", None)
    with tempfile.TemporaryDirectory(prefix="jaxzoo-launch-") as tmp:
        logs = [Path(tmp) / f"stderr-{pid}" for pid in range(len(commands))]
        procs = [subprocess.Popen(cmd, cwd=ROOT, env=penv, stdout=subprocess.DEVNULL, stderr=open(log, "w"))
                 for cmd, log in zip(commands, logs)]
        deadline = time.monotonic() + timeout
        for p in procs:
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        running = [pid for pid, p in enumerate(procs) if p.poll() is None]
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait()
        results = [(p.returncode, log.read_text(errors="replace")) for p, log in zip(procs, logs)]
    if running:
        tails = "\n".join(f"--- process {pid}:\n{err[-2000:]}" for pid, (_, err) in enumerate(results))
        raise AssertionError(f"processes {running} still running after {timeout} s (killed): {commands[0]}\n{tails}")
    return results


def run_processes(target: str, processes: int, devices_per_process: int, *, args: dict | None = None,
                  timeout: float = 120, heartbeat_timeout: int = 10, env: dict | None = None,
                  expect_success: bool = True) -> list[ProcessResult]:
    """Run the function ``target`` in ``processes`` JAX processes of ``devices_per_process`` CPU devices each (see
    :func:`launch`). With expect_success, any non-zero exit fails with that process's stderr."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="jaxzoo-multihost-") as tmp:
        commands = [[sys.executable, "-m", "tests.multihost.worker", target, "--process-id", str(pid),
                     "--num-processes", str(processes), "--port", str(port), "--out", tmp,
                     "--heartbeat-timeout", str(heartbeat_timeout), "--args", json.dumps(args or {})]
                    for pid in range(processes)]
        ran = launch(commands, devices_per_process, timeout=timeout, env=env)
        results = []
        for pid, (returncode, stderr) in enumerate(ran):
            out = Path(tmp) / f"result-{pid}.pkl"
            value = pickle.loads(out.read_bytes()) if out.exists() else None
            results.append(ProcessResult(pid, returncode, value, stderr))
    if expect_success:
        for r in results:
            r.check()
    return results
