"""What each process of the multi-process tests runs (tests.multihost.harness starts them); the same functions run in
the test process itself (one process, 8 simulated devices) for the reference.

A small Llama (hidden 128, 2 layers, vocab 512: 0.6 M params) written by our own ``save_pretrained`` as sharded
safetensors; meshes from ``jax.make_mesh`` (Explicit axes) over all processes' devices.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import conversion
from common.checkpoint import Checkpointer
from common.distributed import fetch, global_batch, process_rows
from common.model import Model
from common.sharding import batch_sharding
from common.train import OptimizerConfig, init_train_state, make_optimizer, make_train_step
from conversion.mapping import tree_paths, get_path
from conversion.registry import ARCHITECTURES
from llama_jax.config import LlamaConfig
from llama_jax.family import init_params
from llama_jax.sharding import PARTITION_RULES

ARCH = "LlamaForCausalLM"
AXES = ("data", "fsdp", "tensor")
GLOBAL_BATCH, SEQ = 8, 16


def config() -> LlamaConfig:
    return LlamaConfig(vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                       bos_token_id=1, eos_token_id=2)


def write_checkpoint(directory: str, max_shard_size: int = 1 << 20) -> Path:
    """The test model as an HF checkpoint in shards of at most ``max_shard_size`` bytes (several files)."""
    cfg = config()
    params = init_params(cfg, jax.random.PRNGKey(0), jnp.float32, "causal_lm")
    return conversion.save_pretrained(Model(cfg, params, ARCHITECTURES[ARCH].spec), directory, max_shard_size)


def mesh_of(shape) -> jax.sharding.Mesh:
    return jax.make_mesh(tuple(shape), AXES)


def flat(params) -> dict[str, np.ndarray]:
    """Every param gathered to this host, by "/"-joined path (a collective: all processes call it)."""
    return {"/".join(p): fetch(get_path(params, p)) for p in tree_paths(params)}


def batch_rows(step: int) -> dict[str, np.ndarray]:
    """The global batch of ``step`` (same on every process); a process feeds only its own rows of it."""
    rng = np.random.default_rng([7, step])
    ids = rng.integers(3, 512, (GLOBAL_BATCH, SEQ))
    mask = np.ones_like(ids)
    mask[::3, :5] = 0  # left padding in some rows
    return {"input_ids": ids, "attention_mask": mask, "labels": np.where(mask == 1, ids, -100)}


def local_batch(step: int, mesh) -> dict[str, jax.Array]:
    """Global arrays built from this process's rows only (jax.make_array_from_process_local_data)."""
    full = batch_rows(step)
    rows = process_rows(batch_sharding(mesh, 2), (GLOBAL_BATCH, SEQ))
    return global_batch({k: v[rows] for k, v in full.items()}, mesh, GLOBAL_BATCH)


def rchar() -> int:
    """Bytes this process has read with read()/pread() so far (Linux /proc/self/io)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise RuntimeError("no rchar in /proc/self/io")


def load(checkpoint: str, mesh: list[int]) -> dict:
    """from_pretrained onto the mesh: bytes read by this process, the params and the logits of one batch."""
    mesh = mesh_of(mesh)
    before = rchar()
    model = conversion.from_pretrained(checkpoint, mesh=mesh, progress=False)
    read = rchar() - before
    batch = batch_rows(0)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    # The distinct parts of each param this process's devices hold: what it must read at the least.
    unique = sum(s.data.nbytes for leaf in jax.tree.leaves(model.params)
                 for s in {tuple((i.start, i.stop) for i in sh.index): sh for sh in leaf.addressable_shards}.values())
    return {"bytes_read": read, "unique_local_bytes": int(unique),
            "params": flat(model.params), "logits": fetch(logits), "process": jax.process_index()}


def setup(checkpoint: str, mesh_shape: list[int]):
    """(mesh, model loaded onto it, a fresh train state placed by the rules, the jitted train step)."""
    mesh = mesh_of(mesh_shape)
    model = conversion.from_pretrained(checkpoint, mesh=mesh, progress=False)
    tx = make_optimizer(OptimizerConfig(learning_rate=1e-3, warmup_steps=1, total_steps=10))
    state = init_train_state(model.params, tx, jax.random.PRNGKey(1))
    step_fn = make_train_step(model.spec.forward, model.config, tx, mesh=mesh, rules=PARTITION_RULES,
                              state_example=state)
    return mesh, model, jax.device_put(state, step_fn.shardings), step_fn


def several(calls: list) -> list:
    """Run several of these jobs one after the other in the same processes ([[name, kwargs], ...]): one start-up
    of JAX and one set of processes for all of them."""
    return [globals()[name](**kwargs) for name, kwargs in calls]


def train(checkpoint: str, mesh: list[int], steps: int, ckpt_dir: str | None = None, save_every: int = 0,
          resume: bool = False, kill_process: int | None = None, kill_after_save: int | None = None,
          export_dir: str | None = None) -> dict:
    """Load, then train ``steps`` steps of AdamW on the mesh, each process feeding its own rows; optionally save
    every ``save_every`` steps (async), resume from the last complete checkpoint, SIGKILL process
    ``kill_process`` right after the save of step ``kill_after_save`` is started, and export to HF format."""
    mesh, model, state, step_fn = setup(checkpoint, mesh)
    ckpt = Checkpointer(ckpt_dir, max_to_keep=2) if ckpt_dir else None
    first = 0
    if resume and ckpt.latest_step() is not None:
        target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
        first, state, _ = ckpt.restore(target)
    losses = []
    for step in range(first, steps):
        state, metrics = step_fn(state, local_batch(step, mesh))
        losses.append(float(metrics["loss"]))
        done = step + 1
        if ckpt is not None and save_every and done % save_every == 0:
            ckpt.save(done, state)
            if done == kill_after_save and jax.process_index() == kill_process:
                os.kill(os.getpid(), signal.SIGKILL)  # the save of this step is in flight
    if ckpt is not None:
        ckpt.close()
    out = {"first": first, "losses": losses, "params": flat(state.params), "step": int(fetch(state.step)),
           "opt_state": [fetch(x) for x in jax.tree.leaves(state.opt_state)]}
    if export_dir:
        trained = Model(model.config, state.params, model.spec, mesh=mesh)
        conversion.save_pretrained(trained, export_dir)
    return out


def restore(checkpoint: str, ckpt_dir: str, mesh: list[int]) -> dict:
    """Restore the newest checkpoint of a run (saved on any process count and mesh) onto this job's mesh."""
    _, _, state, _ = setup(checkpoint, mesh)
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
    with Checkpointer(ckpt_dir) as ckpt:
        step, state, _ = ckpt.restore(target)
    return {"step": step, "params": flat(state.params),
            "opt_state": [fetch(x) for x in jax.tree.leaves(state.opt_state)]}
