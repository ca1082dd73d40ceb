"""Test-wide set-up: 8 simulated CPU devices and float32 matmuls, fixed before jax is imported."""
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in flags:
    os.environ["XLA_FLAGS"] = (flags + " --xla_force_host_platform_device_count=8").strip()

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
