"""Rotary position embeddings with every rope type HF Llama configs use.

Types: ``default``, ``linear``, ``dynamic`` (NTK), ``llama3``, ``yarn``, ``longrope``. Frequencies that do
not depend on the input are computed on the host in numpy float32 with the same operation order as
transformers' ``modeling_rope_utils``, because float64 angles drift from torch's by up to 7e-4. The two
input-dependent types pick their frequencies from ``max(position_ids) + 1`` inside jit, as HF does on
every forward:

- ``dynamic``: past ``max_position_embeddings`` the base grows to
  ``theta * (factor * L / max_pos - (factor - 1)) ** (d / (d - 2))``. HF caches the grown frequencies on
  the module between calls; a pure function recomputes them from the current positions, which gives the
  same result for any single forward and for a generation whose positions only grow.
- ``longrope``: ``long_factor`` when ``L > original_max_position_embeddings``, else ``short_factor``.

Layout is HF's split-halves ("rotate_half"), not interleaved: HF's converter already permuted q/k weights.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from common.config import config_error

ROPE_TYPES = ("default", "linear", "dynamic", "llama3", "yarn", "longrope")


@dataclasses.dataclass(frozen=True)
class RopeConfig:
    """The ``rope_parameters`` dict of an HF config, as a hashable value."""

    rope_type: str = "default"
    rope_theta: float = 10000.0
    factor: float | None = None
    original_max_position_embeddings: int | None = None
    low_freq_factor: float | None = None  # llama3
    high_freq_factor: float | None = None  # llama3
    beta_fast: float | None = None  # yarn
    beta_slow: float | None = None  # yarn
    mscale: float | None = None  # yarn
    mscale_all_dim: float | None = None  # yarn
    truncate: bool | None = None  # yarn
    attention_factor: float | None = None  # yarn, longrope
    short_factor: tuple[float, ...] | None = None  # longrope
    long_factor: tuple[float, ...] | None = None  # longrope
    partial_rotary_factor: float | None = None

    @classmethod
    def from_hf(cls, rope_parameters: dict | None, rope_theta: float | None, max_position_embeddings: int) -> "RopeConfig":
        """From 5.x ``rope_parameters`` or the older ``rope_scaling`` (``type`` or ``rope_type``) + ``rope_theta``."""
        params = dict(rope_parameters or {})
        rope_type = params.pop("rope_type", None) or params.pop("type", None) or "default"
        params.pop("type", None)
        theta = params.pop("rope_theta", None)
        theta = float(theta if theta is not None else (rope_theta if rope_theta is not None else 10000.0))
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(params) - known
        if unknown:
            raise config_error("rope_parameters", sorted(unknown), f"keys among {sorted(known - {'rope_type'})}")
        for key in ("short_factor", "long_factor"):
            if params.get(key) is not None:
                params[key] = tuple(float(v) for v in params[key])
        if rope_type in ("llama3", "yarn", "longrope") and params.get("original_max_position_embeddings") is None:
            params["original_max_position_embeddings"] = max_position_embeddings
        return cls(rope_type=rope_type, rope_theta=theta, **params)

    def to_hf(self) -> dict[str, Any]:
        out = {"rope_type": self.rope_type, "rope_theta": self.rope_theta}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name not in out and value is not None:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def validate(self, head_dim: int) -> None:
        if self.rope_type not in ROPE_TYPES:
            raise config_error("rope_parameters.rope_type", self.rope_type, f"one of {ROPE_TYPES}")
        if self.rope_theta <= 0:
            raise config_error("rope_parameters.rope_theta", self.rope_theta, "a positive number")
        needs = {
            "linear": ("factor",),
            "dynamic": ("factor",),
            "llama3": ("factor", "low_freq_factor", "high_freq_factor"),
            "longrope": ("short_factor", "long_factor"),
        }.get(self.rope_type, ())
        for key in needs:
            if getattr(self, key) is None:
                raise config_error(f"rope_parameters.{key}", None, f"a value for rope_type {self.rope_type!r}")
        if self.rope_type == "llama3" and self.low_freq_factor == self.high_freq_factor:
            raise config_error("rope_parameters.high_freq_factor", self.high_freq_factor, "a value != low_freq_factor")
        if self.rope_type == "longrope":
            for key in ("short_factor", "long_factor"):
                if len(getattr(self, key)) != head_dim // 2:
                    raise config_error(f"rope_parameters.{key}", len(getattr(self, key)), f"{head_dim // 2} values (head_dim / 2)")
        if self.partial_rotary_factor not in (None, 1.0) and self.rope_type != "default":
            raise config_error("rope_parameters.partial_rotary_factor", self.partial_rotary_factor, "1.0 for Llama")


# --------------------------------------------------------------------------- host-side frequencies
def _exponents(dim: int) -> np.ndarray:
    return np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim)


def _base_inv_freq(theta: float, dim: int) -> np.ndarray:
    return (np.float32(1.0) / (np.float32(theta) ** _exponents(dim))).astype(np.float32)


def static_inv_freq(rope: RopeConfig, head_dim: int, max_position_embeddings: int, *, long: bool = False) -> tuple[np.ndarray, float]:
    """(inv_freq [head_dim // 2] float32, attention_scaling) for rope types fixed at init.

    ``long`` selects longrope's long factors; ``dynamic`` returns its un-grown frequencies.
    """
    dim, theta, kind = head_dim, rope.rope_theta, rope.rope_type
    if kind == "default":
        return _base_inv_freq(theta, dim), 1.0
    if kind == "linear":
        return (_base_inv_freq(theta, dim) / np.float32(rope.factor)).astype(np.float32), 1.0
    if kind == "dynamic":
        # HF evaluates the grown base at seq_len = max_position_embeddings in Python floats at init.
        f = rope.factor
        base = theta * ((f * max_position_embeddings / max_position_embeddings) - (f - 1)) ** (dim / (dim - 2))
        return _base_inv_freq(base, dim), 1.0
    if kind == "llama3":
        inv = _base_inv_freq(theta, dim)
        factor, low, high = np.float32(rope.factor), rope.low_freq_factor, rope.high_freq_factor
        old = rope.original_max_position_embeddings
        low_wl, high_wl = old / low, old / high
        wavelen = (np.float32(2 * math.pi) / inv).astype(np.float32)
        scaled = np.where(wavelen > low_wl, inv / factor, inv).astype(np.float32)
        smooth = ((np.float32(old) / wavelen - np.float32(low)) / np.float32(high - low)).astype(np.float32)
        smoothed = ((1 - smooth) * scaled / factor + smooth * scaled).astype(np.float32)
        medium = ~(wavelen < high_wl) & ~(wavelen > low_wl)
        return np.where(medium, smoothed, scaled).astype(np.float32), 1.0
    if kind == "yarn":
        return _yarn_inv_freq(rope, dim, max_position_embeddings)
    if kind == "longrope":
        orig = rope.original_max_position_embeddings
        factor = rope.factor if rope.factor is not None else max_position_embeddings / orig
        scaling = rope.attention_factor
        if scaling is None:
            scaling = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(orig))
        ext = np.asarray(rope.long_factor if long else rope.short_factor, np.float32)
        return (np.float32(1.0) / (ext * (np.float32(theta) ** _exponents(dim)))).astype(np.float32), float(scaling)
    raise config_error("rope_parameters.rope_type", kind, f"one of {ROPE_TYPES}")


def _yarn_inv_freq(rope: RopeConfig, dim: int, max_position_embeddings: int) -> tuple[np.ndarray, float]:
    theta, orig = rope.rope_theta, rope.original_max_position_embeddings
    factor = rope.factor if rope.factor is not None else max_position_embeddings / orig

    def mscale(scale, m=1.0):
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    scaling = rope.attention_factor
    if scaling is None:
        if rope.mscale and rope.mscale_all_dim:
            scaling = float(mscale(factor, rope.mscale) / mscale(factor, rope.mscale_all_dim))
        else:
            scaling = mscale(factor)
    beta_fast, beta_slow = rope.beta_fast or 32, rope.beta_slow or 1

    def correction_dim(rotations):
        return (dim * math.log(orig / (rotations * 2 * math.pi))) / (2 * math.log(theta))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if rope.truncate is None or rope.truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # HF's guard against a zero-width ramp
    ramp = np.clip((np.arange(dim // 2, dtype=np.float32) - np.float32(low)) / np.float32(high - low), 0, 1)
    extrapolation_factor = (np.float32(1) - ramp).astype(np.float32)
    pos_freqs = (np.float32(theta) ** _exponents(dim)).astype(np.float32)
    extrapolation = np.float32(1.0) / pos_freqs
    interpolation = np.float32(1.0) / (np.float32(factor) * pos_freqs)
    inv = interpolation * (1 - extrapolation_factor) + extrapolation * extrapolation_factor
    return inv.astype(np.float32), float(scaling)


# ------------------------------------------------------------------------------- traced cos / sin
def inv_freq_for_positions(rope: RopeConfig, head_dim: int, max_position_embeddings: int, position_ids: jax.Array):
    """(inv_freq [head_dim // 2] float32, attention_scaling) for this call's positions."""
    inv, scaling = static_inv_freq(rope, head_dim, max_position_embeddings)
    inv = jnp.asarray(inv)
    if rope.rope_type not in ("dynamic", "longrope"):
        return inv, scaling
    seq_len = jnp.max(position_ids) + 1
    if rope.rope_type == "longrope":
        long_inv, _ = static_inv_freq(rope, head_dim, max_position_embeddings, long=True)
        return jnp.where(seq_len > rope.original_max_position_embeddings, jnp.asarray(long_inv), inv), scaling
    # dynamic, grown: HF evaluates this with float32 tensors.
    f, dim = jnp.float32(rope.factor), head_dim
    length = jnp.maximum(seq_len, max_position_embeddings).astype(jnp.float32)
    base = jnp.float32(rope.rope_theta) * ((f * length / max_position_embeddings) - (f - 1)) ** jnp.float32(dim / (dim - 2))
    grown = 1.0 / (base ** jnp.asarray(_exponents(dim)))
    return jnp.where(seq_len > max_position_embeddings, grown, inv), scaling


def rope_cos_sin(rope: RopeConfig, head_dim: int, max_position_embeddings: int, position_ids: jax.Array):
    """position_ids: [batch, seq] int -> (cos, sin), each [batch, seq, head_dim] float32."""
    inv, scaling = inv_freq_for_positions(rope, head_dim, max_position_embeddings, position_ids)
    freqs = position_ids.astype(jnp.float32)[..., None] * inv
    emb = jnp.concatenate([freqs, freqs], axis=-1)
    return jnp.cos(emb) * scaling, jnp.sin(emb) * scaling


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """x: [batch, seq, heads, head_dim]; cos/sin: [batch, seq, head_dim], cast to x's dtype as HF does."""
    cos = cos[:, :, None, :].astype(x.dtype)
    sin = sin[:, :, None, :].astype(x.dtype)
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rotated * sin
