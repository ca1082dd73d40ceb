"""Test-wide set-up: 8 simulated CPU devices and float32 matmuls, fixed before jax is imported."""
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in flags:
    os.environ["XLA_FLAGS"] = (flags + " --xla_force_host_platform_device_count=8").strip()

import jax  # noqa: E402

# Parity is measured in true float32: no TF32 / bf16 passes inside matmuls on any backend.
jax.config.update("jax_default_matmul_precision", "highest")
