"""Block-sparse flash attention in Pallas: forward, dq and dk/dv kernels behind one ``jax.custom_vjp``.

One source, two launchers:

- ``"tpu"`` (Mosaic): grid ``(batch, heads, rows, steps)``; the block tables are scalar-prefetched into SMEM
  and drive the BlockSpec index maps, so each grid step's key (or query) block is DMA'd by the pipeline; the
  online-softmax state lives in VMEM scratch across the sequential last grid axis.
- ``"triton"`` (GPU, Triton backend): grid ``(batch, heads, rows)``; every program loops over its table row
  with ``lax.fori_loop``, slicing the whole-sequence key (or query) arrays; the state is the loop carry.

Both call the same per-block functions (:func:`_forward_step`, :func:`_dq_step`, :func:`_dkv_step`), and both
run in ``interpret`` mode on a CPU (how CI checks them).

Arrays are heads-major: q ``[batch, heads, q_len, head_dim]``, k/v ``[batch, kv_heads, k_len, head_dim]``
(query head h reads kv head ``h // (heads // kv_heads)``), key validity ``[batch, 1, 1, k_len]`` int32
(lane-dense on TPU). Which keys a query may see: the :class:`~common.kernels.tables.Layout` window predicate
AND key validity. A row with no visible key outputs 0 (and its log-sum-exp is finite, so nothing is NaN).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu
from jax.experimental.pallas import triton as pltriton

from common.kernels.tables import Layout, forward_table, transposed_table

LAUNCHERS = ("tpu", "triton")
# Finite "minus infinity" for the running maximum: exp(NEG - NEG) must not be NaN for rows that have seen no
# visible key yet. Masked scores never enter a sum (they are selected away), so its size does not matter.
_NEG = -1e30


@dataclasses.dataclass(frozen=True)
class Plan:
    """Everything static about one call: the layout, the softmax scale, GQA, how to launch."""

    layout: Layout
    scale: float
    kv_repeat: int = 1  # query heads per kv head
    launcher: str = "tpu"
    interpret: bool = False
    num_warps: int | None = None  # Triton only; None: 4 for head_dim <= 64, else 8
    num_stages: int = 2


# ------------------------------------------------------------------------------- per-block math
def _dot(a, b, contract):
    """a @ b contracting the given dims, float32 accumulation (exact float32 products for float32 inputs)."""
    precision = lax.Precision.HIGHEST if a.dtype == jnp.float32 else lax.Precision.DEFAULT
    return lax.dot_general(a, b, (contract, ((), ())), preferred_element_type=jnp.float32, precision=precision)


def _scores(plan: Plan, q, k, key_ok, q_block, k_block):
    """q [bq, d], k [bk, d], key_ok [1, bk] int32 -> (scaled scores [bq, bk] f32, visible [bq, bk] bool)."""
    lay = plan.layout
    s = _dot(q, k, ((1,), (1,))) * plan.scale
    shape = (lay.block_q, lay.block_k)
    visible = jnp.broadcast_to(key_ok > 0, shape)
    if lay.windowed:
        q_pos = q_block * lay.block_q + lax.broadcasted_iota(jnp.int32, shape, 0)
        k_pos = k_block * lay.block_k + lax.broadcasted_iota(jnp.int32, shape, 1)
        in_window = k_pos >= lay.band_len  # gathered global keys: no window
        near = jnp.ones(shape, bool)
        if lay.left is not None:
            near &= k_pos >= q_pos - lay.left
        if lay.right is not None:
            near &= k_pos <= q_pos + lay.right
        visible &= in_window | near
    return s, visible


def _forward_step(plan, q, k, v, key_ok, q_block, k_block, state):
    """One key block of the online softmax. state: (m [bq, 1], l [bq, 1], acc [bq, d]) float32."""
    m, l, acc = state
    s, visible = _scores(plan, q, k, key_ok, q_block, k_block)
    m_new = jnp.maximum(m, jnp.max(jnp.where(visible, s, _NEG), axis=1, keepdims=True))
    p = jnp.where(visible, jnp.exp(s - m_new), 0.0)
    alpha = jnp.exp(m - m_new)
    l = alpha * l + jnp.sum(p, axis=1, keepdims=True)
    acc = alpha * acc + _dot(p.astype(v.dtype), v, ((1,), (0,)))
    return m_new, l, acc


def _forward_init(plan, d):
    bq = plan.layout.block_q
    return (jnp.full((bq, 1), _NEG, jnp.float32), jnp.zeros((bq, 1), jnp.float32), jnp.zeros((bq, d), jnp.float32))


def _forward_finish(state):
    m, l, acc = state
    seen = l > 0.0
    safe_l = jnp.where(seen, l, 1.0)
    return acc / safe_l, m + jnp.log(safe_l)  # no visible key: out 0 (acc is 0), lse finite


def _probs(plan, q, k, key_ok, lse, q_block, k_block):
    s, visible = _scores(plan, q, k, key_ok, q_block, k_block)
    return jnp.where(visible, jnp.exp(s - lse), 0.0)


def _dq_step(plan, q, do, lse, delta, k, v, key_ok, q_block, k_block, dq):
    """dq [bq, d] += dS K for one key block (the scale is applied once, at the end)."""
    p = _probs(plan, q, k, key_ok, lse, q_block, k_block)
    dp = _dot(do, v, ((1,), (1,)))
    ds = p * (dp - delta)
    return (dq + _dot(ds.astype(k.dtype), k, ((1,), (0,))),)


def _dkv_step(plan, k, v, key_ok, q, do, lse, delta, k_block, q_block, state):
    """dk, dv [bk, d] += dSᵀ Q, Pᵀ dO for one query block."""
    dk, dv = state
    p = _probs(plan, q, k, key_ok, lse, q_block, k_block)
    dv = dv + _dot(p.astype(do.dtype), do, ((0,), (0,)))
    dp = _dot(do, v, ((1,), (1,)))
    ds = p * (dp - delta)
    dk = dk + _dot(ds.astype(q.dtype), q, ((0,), (0,)))
    return dk, dv


# -------------------------------------------------------------------------------------- launchers
@dataclasses.dataclass(frozen=True)
class _Operand:
    """An input of a launch: which head index it follows and which axis is its sequence axis.

    heads: "q" (query head h), "kv" (kv head h // kv_repeat) or "none" (size-1 head axis).
    lane: the sequence runs along the last axis ([B, 1, 1, T] key validity) instead of axis 2."""

    array: jax.Array
    heads: str
    lane: bool = False


def _head_index(plan, heads, h):
    if heads == "kv" and plan.kv_repeat > 1:
        return lax.div(h, plan.kv_repeat)  # not ``//``: floor division lowers through sign(), which Mosaic lacks
    return {"q": h, "kv": h, "none": 0}[heads]


def _row_spec(plan, op: _Operand, rows: int, offset: int):
    """BlockSpec of an operand blocked by the grid row (rows elements per block, first block ``offset``)."""
    d = op.array.shape[-1]

    def index(b, h, r, *rest):  # rest: the TPU grid's step index and the scalar-prefetched tables
        return (b, _head_index(plan, op.heads, h), 0, r + offset) if op.lane else \
            (b, _head_index(plan, op.heads, h), r + offset, 0)

    shape = (None, None, 1, rows) if op.lane else (None, None, rows, d)
    return pl.BlockSpec(shape, index)


def _launch(plan: Plan, *, step, init, finish, row_ops, col_ops, out_dims, row_block, col_block, table, counts,
            row_offset=0, dtypes):
    """Run ``step`` over a block table: for each (batch, head, row) and each table entry j < counts[row],
    ``state = step(row_values, col_values, row, table[row, j], state)``; the outputs are ``finish(state)``,
    blocked like the rows. Returns arrays [B, heads, n_rows * row_block, out_dim] per out_dims."""
    b = row_ops[0].array.shape[0]
    h = next(op.array.shape[1] for op in row_ops + col_ops if op.heads == "q")  # the grid runs over query heads
    n_rows, width = table.shape
    out_shape = [jax.ShapeDtypeStruct((b, h, n_rows * row_block, dim), dt) for dim, dt in zip(out_dims, dtypes)]
    n_row, n_col = len(row_ops), len(col_ops)

    if plan.launcher == "tpu":
        def col_spec(op):
            d = op.array.shape[-1]
            if op.lane:
                return pl.BlockSpec((None, None, 1, col_block),
                                    lambda b, h, r, j, tbl, cnt: (b, _head_index(plan, op.heads, h), 0, tbl[r, j]))
            return pl.BlockSpec((None, None, col_block, d),
                                lambda b, h, r, j, tbl, cnt: (b, _head_index(plan, op.heads, h), tbl[r, j], 0))

        state_shapes = [jax.ShapeDtypeStruct(s.shape, s.dtype) for s in jax.eval_shape(init)]

        def kernel(tbl_ref, cnt_ref, *refs):
            ins, outs, scratch = refs[:n_row + n_col], refs[n_row + n_col:n_row + n_col + len(out_dims)], \
                refs[n_row + n_col + len(out_dims):]
            r, j = pl.program_id(2), pl.program_id(3)

            @pl.when(j == 0)
            def _():
                for ref, value in zip(scratch, init()):
                    ref[...] = value

            @pl.when(j < cnt_ref[r])
            def _():
                values = [ref[...] for ref in ins]
                new = step(values[:n_row], values[n_row:], r + row_offset, tbl_ref[r, j],
                           tuple(ref[...] for ref in scratch))
                for ref, value in zip(scratch, new):
                    ref[...] = value

            @pl.when(j == width - 1)
            def _():
                for ref, value in zip(outs, finish(tuple(ref[...] for ref in scratch))):
                    ref[...] = value.astype(ref.dtype)

        grid_spec = pltpu.PrefetchScalarGridSpec(
            num_scalar_prefetch=2, grid=(b, h, n_rows, width),
            in_specs=[_row_spec(plan, op, row_block, row_offset) for op in row_ops]
            + [col_spec(op) for op in col_ops],
            out_specs=[pl.BlockSpec((None, None, row_block, dim), lambda b, h, r, j, tbl, cnt: (b, h, r, 0))
                       for dim in out_dims],
            scratch_shapes=[pltpu.VMEM(s.shape, s.dtype) for s in state_shapes])
        call = pl.pallas_call(
            kernel, grid_spec=grid_spec, out_shape=out_shape, interpret=plan.interpret,
            compiler_params=pltpu.CompilerParams(dimension_semantics=("parallel", "parallel", "parallel",
                                                                      "arbitrary")))
        return call(jnp.asarray(table), jnp.asarray(counts), *[op.array for op in row_ops + col_ops])

    # Triton: one program per (batch, head, row) loops over its table row; column operands are whole sequences.
    def col_spec(op):
        shape = (None, None) + op.array.shape[2:]
        return pl.BlockSpec(shape, lambda b, h, r: (b, _head_index(plan, op.heads, h), 0, 0))

    def kernel(tbl_ref, cnt_ref, *refs):
        ins, outs = refs[:n_row + n_col], refs[n_row + n_col:]
        r = pl.program_id(2)
        rows = [ref[...] for ref in ins[:n_row]]

        def body(j, state):
            blk = tbl_ref[r, j]
            start = pl.multiple_of(blk * col_block, col_block)
            cols = [ref[:, pl.ds(start, col_block)] if op.lane else ref[pl.ds(start, col_block), :]
                    for ref, op in zip(ins[n_row:], col_ops)]
            return step(rows, cols, r + row_offset, blk, state)

        state = lax.fori_loop(0, cnt_ref[r], body, init())
        for ref, value in zip(outs, finish(state)):
            ref[...] = value.astype(ref.dtype)

    d_max = max(op.array.shape[-1] for op in row_ops)
    call = pl.pallas_call(
        kernel, grid=(b, h, n_rows), out_shape=out_shape, interpret=plan.interpret,
        in_specs=[pl.BlockSpec(table.shape, lambda b, h, r: (0, 0)), pl.BlockSpec(counts.shape, lambda b, h, r: (0,))]
        + [_row_spec(plan, op, row_block, row_offset) for op in row_ops] + [col_spec(op) for op in col_ops],
        out_specs=[pl.BlockSpec((None, None, row_block, dim), lambda b, h, r: (b, h, r, 0)) for dim in out_dims],
        compiler_params=pltriton.CompilerParams(num_warps=plan.num_warps or (4 if d_max <= 64 else 8),
                                                num_stages=plan.num_stages))
    return call(jnp.asarray(table), jnp.asarray(counts), *[op.array for op in row_ops + col_ops])


# ----------------------------------------------------------------------------------- passes
def _forward(plan: Plan, q, k, v, key_ok):
    lay = plan.layout
    table, counts = forward_table(lay)
    d = q.shape[-1]

    def step(rows, cols, q_block, k_block, state):
        return _forward_step(plan, rows[0], cols[0], cols[1], cols[2], q_block, k_block, state)

    o, lse = _launch(plan, step=step, init=lambda: _forward_init(plan, d), finish=_forward_finish,
                     row_ops=[_Operand(q, "q")], col_ops=[_Operand(k, "kv"), _Operand(v, "kv"),
                                                          _Operand(key_ok, "none", lane=True)],
                     out_dims=(d, 1), row_block=lay.block_q, col_block=lay.block_k, table=table, counts=counts,
                     dtypes=(q.dtype, jnp.float32))
    return o, lse


def _backward(plan: Plan, q, k, v, key_ok, o, lse, do):
    lay = plan.layout
    d = q.shape[-1]
    delta = jnp.sum(o.astype(jnp.float32) * do.astype(jnp.float32), axis=-1, keepdims=True)  # [B, H, Tq, 1]
    do = do.astype(q.dtype)
    table, counts = forward_table(lay)

    def dq_step(rows, cols, q_block, k_block, state):
        return _dq_step(plan, *rows, *cols, q_block, k_block, state[0])

    (dq,) = _launch(plan, step=dq_step, init=lambda: (jnp.zeros((lay.block_q, d), jnp.float32),),
                    finish=lambda s: (s[0] * plan.scale,),
                    row_ops=[_Operand(q, "q"), _Operand(do, "q"), _Operand(lse, "q"), _Operand(delta, "q")],
                    col_ops=[_Operand(k, "kv"), _Operand(v, "kv"), _Operand(key_ok, "none", lane=True)],
                    out_dims=(d,), row_block=lay.block_q, col_block=lay.block_k, table=table, counts=counts,
                    dtypes=(jnp.float32,))

    def dkv_step(rows, cols, k_block, q_block, state):
        return _dkv_step(plan, *rows, *cols, k_block, q_block, state)

    parts = []
    # Positional key blocks, then the global ones (visited by every query block): separate grids.
    for first, count in ((0, lay.n_band), (lay.n_band, lay.n_k - lay.n_band)):
        if not count:
            continue
        t, c = transposed_table(lay, first, count)
        parts.append(_launch(
            plan, step=dkv_step, init=lambda: (jnp.zeros((lay.block_k, d), jnp.float32),) * 2,
            finish=lambda s: (s[0] * plan.scale, s[1]),
            row_ops=[_Operand(k, "kv"), _Operand(v, "kv"), _Operand(key_ok, "none", lane=True)],
            col_ops=[_Operand(q, "q"), _Operand(do, "q"), _Operand(lse, "q"), _Operand(delta, "q")],
            out_dims=(d, d), row_block=lay.block_k, col_block=lay.block_q, table=t, counts=c, row_offset=first,
            dtypes=(jnp.float32, jnp.float32)))
    dk = jnp.concatenate([p[0] for p in parts], axis=2)
    dv = jnp.concatenate([p[1] for p in parts], axis=2)
    if plan.kv_repeat > 1:  # per query head -> per kv head (GQA)
        b, h, t, _ = dk.shape
        dk = dk.reshape(b, h // plan.kv_repeat, plan.kv_repeat, t, d).sum(axis=2)
        dv = dv.reshape(b, h // plan.kv_repeat, plan.kv_repeat, t, d).sum(axis=2)
    return dq.astype(q.dtype), dk.astype(k.dtype), dv.astype(v.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _attention(plan, q, k, v, key_ok):
    return _forward(plan, q, k, v, key_ok)[0]


def _attention_fwd(plan, q, k, v, key_ok):
    o, lse = _forward(plan, q, k, v, key_ok)
    return o, (q, k, v, key_ok, o, lse)


def _attention_bwd(plan, residuals, do):
    q, k, v, key_ok, o, lse = residuals
    dq, dk, dv = _backward(plan, q, k, v, key_ok, o, lse, do)
    return dq, dk, dv, np.zeros(key_ok.shape, jax.dtypes.float0)


_attention.defvjp(_attention_fwd, _attention_bwd)


def block_sparse_attention(q, k, v, key_ok, plan: Plan):
    """Block-sparse attention of q [B, H, Tq, d] over k/v [B, Hkv, Tk, d] with key validity key_ok
    [B, Tk] (bool or int). Lengths must equal the plan's padded lengths. Returns [B, H, Tq, d] in q's dtype;
    differentiable in q, k and v."""
    lay = plan.layout
    b, h, tq, d = q.shape
    if plan.launcher not in LAUNCHERS:
        raise ValueError(f"launcher {plan.launcher!r} is unknown; expected one of {LAUNCHERS}")
    if tq != lay.q_len or k.shape[2] != lay.k_len or v.shape != k.shape or key_ok.shape != (b, lay.k_len):
        raise ValueError(f"shapes q {q.shape}, k {k.shape}, v {v.shape}, key_ok {key_ok.shape} do not match {lay}")
    if h != k.shape[1] * plan.kv_repeat:
        raise ValueError(f"{h} query heads != {k.shape[1]} kv heads x kv_repeat {plan.kv_repeat}")
    return _attention(plan, q, k, v, key_ok.astype(jnp.int32).reshape(b, 1, 1, lay.k_len))
