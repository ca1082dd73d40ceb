"""Test-wide set-up: 8 simulated CPU devices and float32 matmuls, fixed before jax is imported."""
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in flags:
    os.environ["XLA_FLAGS"] = (flags + " --xla_force_host_platform_device_count=8").strip()

import jax  # noqa: E402

# Parity is measured in true float32: no TF32 / bf16 passes inside matmuls on any backend.
jax.config.update("jax_default_matmul_precision", "highest")

import gc  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_code():
    """One process runs the whole suite: drop each module's compiled executables (and the models they close
    over) when it ends, so memory does not grow with the number of test modules."""
    yield
    jax.clear_caches()
    gc.collect()
