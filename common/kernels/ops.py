"""The kernels' front door: padding to blocks, the gathered global-key segment, platform defaults, sharding.

:func:`pallas_attention` covers every case the models need with one call:

- sliding window (Longformer / LED encoder local rows): ``left=right=w``, plus the gathered global keys;
- all keys (Longformer global query rows): no window;
- causal (Llama): ``right=0`` (``left`` for a sliding window).

Layout: q ``[batch, heads, q_len, head_dim]``, k/v ``[batch, kv_heads, k_len, head_dim]``, key_ok
``[batch, k_len]`` bool. Query i sits at position i and positional key j at position j (the window compares
them), so a windowed call needs q_len == k_len.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from common.kernels.flash import LAUNCHERS, Plan, block_sparse_attention
from common.kernels.tables import Layout
from common.sharding import BATCH, fitted_spec, reshard_explicit

# Block sizes per launcher: TPU tiles are (8, 128)-aligned and large enough to amortise the per-step cost;
# Triton wants powers of two, 64 fits head_dim 64 in registers. On a CPU the kernels only run interpreted
# (tests), where small blocks keep the band of tiny models sparse.
DEFAULT_BLOCKS = {"tpu": (128, 128), "triton": (64, 64), "interpret": (8, 8)}


def platform_launcher() -> tuple[str, bool]:
    """(launcher, interpret) for the default backend: Mosaic on TPU, Triton on GPU, interpreted elsewhere."""
    backend = jax.default_backend()
    if backend == "tpu":
        return "tpu", False
    if backend in ("gpu", "cuda", "rocm"):
        return "triton", False
    return "triton", True


def on_accelerator() -> bool:
    """True on GPU and TPU, where the kernels compile (elsewhere they only run interpreted)."""
    return not platform_launcher()[1]


def _check_block(name: str, value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 8 or value & (value - 1):
        raise ValueError(f"{name}={value!r} is invalid: expected a power of two >= 8")
    return value


def _pad_to(x, axis: int, length: int, value=0):
    extra = length - x.shape[axis]
    if not extra:
        return x
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, extra)
    return jnp.pad(x, widths, constant_values=value)


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def pallas_attention(q, k, v, key_ok, *, scale: float, left: int | None = None, right: int | None = None,
                     global_k=None, global_v=None, global_ok=None, block_q: int | None = None,
                     block_k: int | None = None, launcher: str | None = None, interpret: bool | None = None):
    """Block-sparse flash attention; returns [batch, heads, q_len, head_dim] in q's dtype.

    q: [B, H, Tq, d]; k, v: [B, Hkv, Tk, d]; key_ok: [B, Tk] bool. ``left`` / ``right``: query i sees
    positional key j iff i - left <= j <= i + right (None: no bound). global_k / global_v: [B, Hkv, G, d]
    gathered keys that every query sees where global_ok [B, G] is set. A query with no visible key outputs 0.
    Differentiable in q, k, v, global_k and global_v. Under an active mesh the call is a ``shard_map`` over
    batch (data, fsdp) and heads (tensor).
    """
    default_launcher, default_interpret = platform_launcher()
    launcher = default_launcher if launcher is None else launcher
    interpret = default_interpret if interpret is None else interpret
    if launcher not in LAUNCHERS:
        raise ValueError(f"launcher={launcher!r} is invalid: expected one of {LAUNCHERS}")
    bq0, bk0 = DEFAULT_BLOCKS["interpret" if interpret else launcher]
    bq = _check_block("block_q", bq0 if block_q is None else block_q)
    bk = _check_block("block_k", bk0 if block_k is None else block_k)
    b, h, tq, d = q.shape
    tk = k.shape[2]
    if k.ndim != 4 or v.shape != k.shape or k.shape[0] != b or k.shape[3] != d or h % k.shape[1]:
        raise ValueError(f"k {k.shape} / v {v.shape} do not fit q {q.shape}: expected [B, kv_heads, T, d] with "
                         "heads a multiple of kv_heads")
    if key_ok.shape != (b, tk):
        raise ValueError(f"key_ok {key_ok.shape} must be {(b, tk)}")
    if (left is not None or right is not None) and tq != tk:
        raise ValueError(f"a windowed call needs as many queries as positional keys, got {tq} and {tk}")
    if (global_k is None) != (global_v is None) or (global_k is None) != (global_ok is None):
        raise ValueError("global_k, global_v and global_ok go together")

    windowed = left is not None or right is not None
    if windowed:  # queries and positional keys share positions: one padded length
        q_len = band = _round_up(max(tq, tk), max(bq, bk))
    else:
        q_len, band = _round_up(tq, bq), _round_up(tk, bk)
    k_parts, v_parts, ok_parts = [_pad_to(k, 2, band)], [_pad_to(v, 2, band)], [_pad_to(key_ok, 1, band, False)]
    n_global = 0
    if global_k is not None and global_k.shape[2]:
        n_global = _round_up(global_k.shape[2], bk)
        k_parts.append(_pad_to(global_k.astype(k.dtype), 2, n_global))
        v_parts.append(_pad_to(global_v.astype(v.dtype), 2, n_global))
        ok_parts.append(_pad_to(global_ok, 1, n_global, False))
    layout = Layout(block_q=bq, block_k=bk, q_len=q_len, k_len=band + n_global, band_len=band, left=left,
                    right=right)
    plan = Plan(layout=layout, scale=float(scale), kv_repeat=h // k.shape[1], launcher=launcher,
                interpret=interpret)
    qp = _pad_to(q, 2, q_len)
    kp, vp, okp = (jnp.concatenate(parts, axis=axis) if len(parts) > 1 else parts[0]
                   for parts, axis in ((k_parts, 2), (v_parts, 2), (ok_parts, 1)))

    def run(q, k, v, ok):
        return block_sparse_attention(q, k, v, ok, plan)

    mesh = jax.sharding.get_abstract_mesh()
    if not mesh.empty:
        # A pallas_call is opaque to XLA's partitioner: run it per shard (batch rows and heads are independent).
        # Query and kv heads must split alike (GQA groups stay whole), so "tensor" is used only if it divides both.
        kv_spec = fitted_spec(mesh, kp.shape, BATCH, "tensor", None, None)
        q_spec = P(kv_spec[0], kv_spec[1], None, None)
        in_specs = (q_spec, kv_spec, kv_spec, P(kv_spec[0], None))
        # Under Explicit axes the arguments' types must already be the shards' layout.
        qp, kp, vp, okp = (reshard_explicit(x, spec) for x, spec in zip((qp, kp, vp, okp), in_specs))
        run = jax.shard_map(run, in_specs=in_specs, out_specs=q_spec, check_vma=False)
    return run(qp, kp, vp, okp)[:, :, :tq]
