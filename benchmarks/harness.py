"""What every benchmark shares: machine info, the machine floor, timing, the command line, checkpoints with random
weights, per-side subprocesses, and the results/*.json files (plots through the ``plots`` extra).

- ``machine_info``: CPU model, whether it has AVX-512 (``avx512f`` in /proc/cpuinfo, and every avx512* flag: the
  bf16 GEMMs of torch use avx512_bf16), cores, the JAX backend and device, library versions, ``XLA_FLAGS``, date.
- ``measure_floor``: the machine's limits measured in the same run: the matmul rate (n³, GFLOP/s) per dtype with
  XLA and with torch, and the memory bandwidth (a ~1 GiB float32 sum, GB/s) with each; ``best`` is the better
  of the two. A benchmark's floor for a workload is max(FLOPs / rate, bytes / bandwidth).
- ``time_calls``: a warm-up call (its time kept: compilation), then the best and median of up to N calls within
  a time budget.

jax, torch and transformers are imported only by the functions that use them: the HF side's subprocess of a
benchmark never loads jax, and the kernel benchmark runs on accelerator machines that may have no torch.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from common.extras import pyplot  # re-exported: the benchmarks' plots need the plots extra

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

__all__ = ["RESULTS", "ROOT", "build_random_checkpoint", "count_params", "machine_info", "machine_line",
           "max_abs_diff", "measure_floor", "parse_args_and_setup", "pyplot", "run_child", "setup_torch",
           "time_calls", "write_results", "xla_matmul_gflops"]

MATMUL_SIZE = 2048
BANDWIDTH_COUNT = 2 ** 28  # float32 elements: 1 GiB


# ------------------------------------------------------------------------------------------ machine
def cpu_flags() -> list[str]:
    """The flags of the first CPU in /proc/cpuinfo ([] where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return line.split(":", 1)[1].split() if ":" in line else []


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info() -> dict:
    """Where the numbers come from: CPU (model, AVX-512), cores, accelerator, library versions, XLA_FLAGS, date."""
    import jax

    flags = cpu_flags()
    return {
        "cpu": cpu_model(), "avx512f": "avx512f" in flags, "avx512_flags": sorted(f for f in flags if "avx512" in f),
        "cores": os.cpu_count(), "host": platform.node(), "platform": platform.platform(),
        "python": platform.python_version(), "jax_backend": jax.default_backend(),
        "device": jax.devices()[0].device_kind, "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
        **{name: _version(name) for name in ("jax", "jaxlib", "numpy", "torch", "transformers")},
        "torch_threads": sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def machine_line(info: dict) -> str:
    """One line for the top of a benchmark's output."""
    avx = "AVX-512" if info["avx512f"] else "no AVX-512"
    return (f"{info['cpu']} ({info['cores']} cores, {avx}) | {info['jax_backend']}: {info['device']} | "
            f"jax {info['jax']} | torch {info['torch']} | transformers {info['transformers']} | "
            f"XLA_FLAGS={info['XLA_FLAGS']!r}")


# ------------------------------------------------------------------------------------------- timing
def time_calls(fn, reps: int, budget_s: float, warmup: bool = True) -> dict:
    """A warm-up call (timed as first_s), then up to `reps` timed calls, stopping once `budget_s` seconds of timed
    calls are spent (at least one runs). fn must block until its result is ready. Returns first_s (with warm-up),
    times_s, best_s, median_s."""
    out = {}
    if warmup:
        t0 = time.perf_counter()
        fn()
        out["first_s"] = time.perf_counter() - t0
    times, spent = [], 0.0
    for _ in range(max(1, reps)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        spent += times[-1]
        if spent >= budget_s:
            break
    out["times_s"] = times
    out["best_s"] = min(times)
    out["median_s"] = float(np.median(times))
    return out


# ------------------------------------------------------------------------------------ machine floor
def xla_matmul_gflops(n: int, dtype, reps: int, budget_s: float) -> float:
    """GFLOP/s of one jitted [n, n] @ [n, n] in `dtype` (2·n³ FLOPs), best of the timed calls."""
    import jax

    a = jax.random.normal(jax.random.PRNGKey(0), (n, n)).astype(dtype)
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n)).astype(dtype)
    mm = jax.jit(lambda a, b: a @ b)
    return 2 * n ** 3 / time_calls(lambda: mm(a, b).block_until_ready(), reps, budget_s)["best_s"] / 1e9


def torch_matmul_gflops(n: int, dtype: str, reps: int, budget_s: float) -> float:
    """GFLOP/s of torch.matmul of two [n, n] `dtype` tensors, best of the timed calls."""
    import torch

    a, b = torch.randn(n, n).to(getattr(torch, dtype)), torch.randn(n, n).to(getattr(torch, dtype))
    with torch.inference_mode():
        return 2 * n ** 3 / time_calls(lambda: torch.matmul(a, b), reps, budget_s)["best_s"] / 1e9


def xla_bandwidth_gbs(count: int, reps: int, budget_s: float) -> float:
    """GB/s of a jitted sum over `count` float32 values (each byte read once)."""
    import jax
    import jax.numpy as jnp

    x = jnp.ones((count,), jnp.float32)
    total = jax.jit(jnp.sum)
    return 4 * count / time_calls(lambda: total(x).block_until_ready(), reps, budget_s)["best_s"] / 1e9


def torch_bandwidth_gbs(count: int, reps: int, budget_s: float) -> float:
    """GB/s of torch's sum over `count` float32 values."""
    import torch

    x = torch.ones(count, dtype=torch.float32)
    with torch.inference_mode():
        return 4 * count / time_calls(lambda: x.sum().item(), reps, budget_s)["best_s"] / 1e9


def measure_floor(dtypes, reps: int, budget_s: float) -> dict:
    """The machine's limits, each with XLA and torch, ``best`` the larger: ``matmul_gflops[side][dtype]``
    (2·2048³ FLOPs per call) for each dtype name ("float32", "bfloat16"), and ``bandwidth_gbs[side]`` (a 1 GiB
    float32 sum)."""
    matmul = {"xla": {}, "torch": {}, "best": {}}
    for name in dtypes:
        matmul["xla"][name] = xla_matmul_gflops(MATMUL_SIZE, name, reps, budget_s)
        matmul["torch"][name] = torch_matmul_gflops(MATMUL_SIZE, name, reps, budget_s)
        matmul["best"][name] = max(matmul["xla"][name], matmul["torch"][name])
    bandwidth = {"xla": xla_bandwidth_gbs(BANDWIDTH_COUNT, 2 * reps, budget_s),
                 "torch": torch_bandwidth_gbs(BANDWIDTH_COUNT, 2 * reps, budget_s)}
    bandwidth["best"] = max(bandwidth["xla"], bandwidth["torch"])
    gc.collect()
    return {"matmul_gflops": matmul, "bandwidth_gbs": bandwidth, "matmul_size": MATMUL_SIZE,
            "bandwidth_bytes": 4 * BANDWIDTH_COUNT}


def floor_lines(floor: dict) -> list[str]:
    """The floor as printed lines: one per matmul dtype, then the bandwidth."""
    mm, bw = floor["matmul_gflops"], floor["bandwidth_gbs"]
    lines = [f"matmul {d:<8}: XLA {mm['xla'][d]:7.1f}  torch {mm['torch'][d]:7.1f}  -> {mm['best'][d]:7.1f} GFLOP/s"
             for d in mm["best"]]
    return lines + [f"bandwidth      : XLA {bw['xla']:7.1f}  torch {bw['torch']:7.1f}  -> {bw['best']:7.1f} GB/s"]


# -------------------------------------------------------------------------------- command line, torch
def setup_torch() -> None:
    """torch on every core, transformers without logs or progress bars (each side's subprocess calls it too)."""
    import torch
    import transformers

    torch.set_num_threads(os.cpu_count())
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def parse_args_and_setup(argv, doc: str, stem: str, quick_help: str) -> argparse.Namespace:
    """The CLI of the CPU benchmarks: --quick, --out (default results/STEM.json, or STEM_quick.json with --quick,
    so a smoke test never overwrites a full run); then setup_torch."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--out", default=None, help=f"JSON path (default benchmarks/results/{stem}.json)")
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = str(RESULTS / (f"{stem}_quick.json" if args.quick else f"{stem}.json"))
    setup_torch()
    return args


# ---------------------------------------------------------------------- checkpoints, sides, results
def build_random_checkpoint(model_class, config, directory: Path, seed: int = 0):
    """A transformers model of `model_class(config)` with weights drawn under torch.manual_seed(seed), saved to
    `directory` with save_pretrained; returns the model (eval mode)."""
    import torch

    torch.manual_seed(seed)
    model = model_class(config).eval()
    model.save_pretrained(directory)
    return model


def count_params(model) -> int:
    """Parameters of a torch module (a tied weight counted once)."""
    return sum(p.numel() for p in model.parameters())


def run_child(script: str, args, show_progress: bool = False, env: dict | None = None):
    """``python script --measure *args`` in a fresh process (so one side's memory and caches do not reach the
    next); returns the JSON of its last stdout line. With show_progress its stderr goes to ours; ``env`` replaces
    the environment (a reference installed beside the venv, on PYTHONPATH)."""
    cmd = [sys.executable, script, "--measure", *map(str, args)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None if show_progress else subprocess.PIPE, text=True,
                          cwd=ROOT, env=env)
    if proc.returncode:
        detail = "its stderr is above" if show_progress else proc.stderr[-4000:]
        raise RuntimeError(f"{Path(script).name} --measure {' '.join(map(str, args))} failed (exit "
                           f"{proc.returncode}):\n{detail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def max_abs_diff(a, b) -> float:
    """max |a - b| in float64."""
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def write_results(result: dict, path) -> Path:
    """`result` as indented JSON at `path` (folders made as needed); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path
