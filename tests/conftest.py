"""Test-wide set-up, fixed before jax is imported: 8 simulated CPU devices, float32 matmuls, fast compiles."""
import os
import subprocess
import sys

# XLA's CPU fusion emitters (the default since jaxlib 0.5) take about a third longer to compile the suite's many
# small programs than the classic elemental emitters, and compiling is what the tests spend (tests/led: 220 s ->
# 145 s on a 2-core machine). The flag changes code generation only (every parity test holds to 1e-5 with it);
# XLA aborts on a flag it does not know, so a jaxlib that dropped it is probed for first and then runs without.
FAST_COMPILE_FLAG = "--xla_cpu_use_fusion_emitters=false"


def _xla_accepts(flag: str) -> bool:
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=flag)
    probe = "import jax, jax.numpy as jnp; jnp.zeros(1).block_until_ready()"
    return subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True).returncode == 0


os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Under pytest-xdist (the README's `-n 2`) the workers share the machine's cores: torch's OpenMP threads, one per
# core by default, then spin-wait for cores the other worker's XLA holds (a torch-heavy test ran 7.8 s alone and
# 52 s beside another worker). One torch thread per worker; XLA's own thread pool does not read this.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
# Pipelines turn on JAX's persistent compilation cache by default (common.compile_cache); the suite runs without
# it, so every run compiles what it tests and writes nothing under ~/.cache (tests/pipelines/test_stats.py
# turns it on in subprocesses of its own).
os.environ.setdefault("JAXZOO_COMPILE_CACHE", "off")
flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in flags:
    flags += " --xla_force_host_platform_device_count=8"
if "xla_cpu_use_fusion_emitters" not in flags and _xla_accepts(FAST_COMPILE_FLAG):
    flags += " " + FAST_COMPILE_FLAG
os.environ["XLA_FLAGS"] = flags.strip()

import jax  # noqa: E402

# Parity is measured in true float32: no TF32 / bf16 passes inside matmuls on any backend.
jax.config.update("jax_default_matmul_precision", "highest")
# The tests' models are tiny: compiling, not running, is what most tests spend, so XLA's backend optimisations
# (LLVM's expensive passes) are off for them; a test that runs long loops (training until a model learns) opts
# back in with @pytest.mark.optimized (see _xla_optimizations).
jax.config.update("jax_disable_most_optimizations", True)

import gc  # noqa: E402

import pytest  # noqa: E402


def _optimize_for(node) -> None:
    jax.config.update("jax_disable_most_optimizations", node.get_closest_marker("optimized") is None)


@pytest.fixture(autouse=True, scope="module")
def _xla_optimizations_of_module(request):
    """XLA's optimisations on for a module marked ``optimized`` (its module fixtures included)."""
    _optimize_for(request.node)
    yield
    jax.config.update("jax_disable_most_optimizations", True)


@pytest.fixture(autouse=True)
def _xla_optimizations(request, _xla_optimizations_of_module):
    """XLA's optimisations on for the tests marked ``optimized``, off for the others."""
    _optimize_for(request.node)
    yield


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_code():
    """One process runs the whole suite: drop each module's compiled executables (and the models they close
    over) when it ends, so memory does not grow with the number of test modules."""
    yield
    jax.clear_caches()
    gc.collect()
