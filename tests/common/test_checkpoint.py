"""Checkpoints (common.checkpoint): kill-and-resume is bit-identical, torn checkpoints are never used, a
checkpoint restores onto another mesh, keep-N, async saves."""

from __future__ import annotations

import functools
import json
import logging
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import conversion
from common.checkpoint import Checkpointer
from common.sharding import make_mesh
from common.train import OptimizerConfig, decay_mask, init_train_state, make_optimizer, make_train_step
from llama_jax.config import LlamaConfig

REPO = Path(__file__).resolve().parents[2]
ARCH = conversion.ARCHITECTURES["LlamaForCausalLM"]
# Dimensions divisible by every mesh axis (as test_training.SHARDABLE), so the mesh test really shards.
TINY = dict(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0)
# "dropout_multisteps": attention dropout makes the step's rng (fold_in(state.rng, state.step)) matter, and
# MultiSteps with 2 micro-steps saves mid-accumulation (SAVE_AT is odd), so acc_grads/mini_step matter too.
VARIANTS = {
    "plain": dict(attention_dropout=0.0, accumulate_steps=1),
    "dropout_multisteps": dict(attention_dropout=0.1, accumulate_steps=2),
}
N_STEPS, SAVE_AT = 6, 3
LOG = "common.checkpoint"


# ------------------------------------------------------------------------------------------ helpers
@functools.lru_cache(maxsize=None)
def host_params() -> dict:
    """Random Llama params (the tree init_params builds), drawn with numpy: no per-test init compile."""
    shapes = jax.eval_shape(lambda: ARCH.init_params(LlamaConfig(**TINY), jax.random.PRNGKey(0), jnp.float32,
                                                     "causal_lm"))
    rng = np.random.default_rng(0)

    def draw(path, s):
        x = rng.standard_normal(s.shape)
        return (1 + 0.1 * x if "scale" in jax.tree_util.keystr(path) else 0.02 * x).astype(np.float32)

    return jax.tree_util.tree_map_with_path(draw, shapes)


@functools.lru_cache(maxsize=None)
def setup(variant: str):
    """(config, tx, fresh() -> TrainState, jitted donating step) for a variant; cached so each compiles once."""
    v = VARIANTS[variant]
    config = LlamaConfig(**TINY, attention_dropout=v["attention_dropout"])
    tx = make_optimizer(OptimizerConfig(learning_rate=1e-2, warmup_steps=1, total_steps=20,
                                        accumulate_steps=v["accumulate_steps"]))

    def fresh():
        # Committed to one device like a restored state, so the train step compiles once for both.
        state = init_train_state(host_params(), tx, jax.random.PRNGKey(1))
        return jax.device_put(state, jax.sharding.SingleDeviceSharding(jax.devices()[0]))

    return config, tx, fresh, make_train_step(ARCH.spec.forward, config, tx)


def batch(k: int) -> dict:
    """The batch of step k: a deterministic function of k (left padding that varies with k)."""
    rng = np.random.default_rng(1000 + k)
    ids = rng.integers(3, TINY["vocab_size"], (4, 8))
    lengths = np.array([8, 5 + k % 3, 6, 3 + k % 4])
    mask = (np.arange(8)[None, :] >= 8 - lengths[:, None]).astype(np.int64)
    ids = np.where(mask == 1, ids, 0)
    return {"input_ids": ids, "attention_mask": mask, "labels": np.where(mask == 1, ids, -100)}


def run(variant, state, start, stop, ckpt=None):
    """Steps start..stop-1 (batch k at step k); saves checkpoint `stop` (= steps done) at the end if ckpt."""
    step = setup(variant)[3]
    losses = []
    for k in range(start, stop):
        state, metrics = step(state, batch(k))
        losses.append(np.asarray(metrics["loss"]))
    if ckpt is not None:
        ckpt.save(stop, state, metadata={"next_batch": stop, "variant": variant})
    return state, losses


@functools.lru_cache(maxsize=None)
def reference(variant):
    """The uninterrupted run: (final state on the host, per-step losses)."""
    state, losses = run(variant, setup(variant)[2](), 0, N_STEPS)
    return jax.device_get(state), losses


def host(x):
    x = jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x
    return np.asarray(x)


def assert_bit_identical(a, b):
    """Same tree structure (TrainState, optax namedtuples, MaskedNode), dtypes and bits in every leaf."""
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(a)[0], jax.tree.leaves(b)):
        x, y = host(x), host(y)
        assert x.dtype == y.dtype and x.shape == y.shape, jax.tree_util.keystr(path)
        assert np.array_equal(x, y), jax.tree_util.keystr(path)


def small_state(seed: int, tx=None):
    """A small TrainState with an adamw-with-mask optimizer state whose values depend on seed."""
    # The kernel is big enough (4 KiB of noise) for OCDBT to store its chunk in a data file of its own rather
    # than inline in the b-tree, so damaging that file is only noticed by reading the array.
    params = {"dense": {"kernel": jnp.ones((16, 64)), "bias": jnp.zeros((64,))}, "norm": {"scale": jnp.ones((64,))}}
    tx = tx or make_optimizer(OptimizerConfig(warmup_steps=1, total_steps=10))
    state = init_train_state(params, tx, jax.random.PRNGKey(seed))
    rng = np.random.default_rng(seed)
    noisy = jax.tree.map(lambda x: x + rng.standard_normal(x.shape).astype(x.dtype)
                         if jnp.issubdtype(x.dtype, jnp.floating) else x + seed, (state.params, state.opt_state))
    return state.replace(step=jnp.int32(seed), params=noisy[0], opt_state=noisy[1])


def saved(directory, seeds, **kwargs) -> dict:
    """Save small_state(s) as step s for each seed; returns {step: host copy}."""
    states = {}
    with Checkpointer(directory, **kwargs) as ckpt:
        for s in seeds:
            state = small_state(s)
            states[s] = jax.device_get(state)
            ckpt.save(s, state, metadata={"seed": s})
    return states


# ------------------------------------------------------------------------- 1. kill and resume
CHILD = textwrap.dedent("""
    import sys
    import jax
    jax.config.update("jax_default_matmul_precision", "highest")  # as tests/conftest.py
    jax.config.update("jax_disable_most_optimizations", True)  # as tests/conftest.py: the same compiled code
    from tests.common.test_checkpoint import child_main
    child_main(sys.argv[1], sys.argv[2])
""")


def child_main(directory: str, variant: str) -> None:
    """The job that gets killed: trains to SAVE_AT and saves, reports, then trains on to N_STEPS saving after
    every step. It says when the async write of checkpoint SAVE_AT + 1 has begun: the parent's SIGKILL then
    usually lands in the middle of that write."""
    ckpt = Checkpointer(directory)
    state, losses = run(variant, setup(variant)[2](), 0, SAVE_AT, ckpt)
    ckpt.wait()
    print("losses", json.dumps([float(x).hex() for x in losses]), flush=True)
    print("saved", flush=True)
    for k in range(SAVE_AT, N_STEPS):
        state, _ = run(variant, state, k, k + 1, ckpt)
        print("saving", k + 1, flush=True)
    ckpt.wait()
    while True:
        time.sleep(1)


def test_sigkill_then_resume_is_bit_identical(tmp_path):
    variant = "dropout_multisteps"
    directory = tmp_path / "ckpt"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = dict(os.environ)  # XLA_FLAGS (8 CPU devices) and JAX_PLATFORMS as set by conftest.py
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    with open(tmp_path / "child.err", "w") as err:
        proc = subprocess.Popen([sys.executable, str(script), str(directory), variant], cwd=REPO, env=env,
                                stdout=subprocess.PIPE, stderr=err, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    child_losses = None
    try:
        ref_state, ref_losses = reference(variant)  # the uninterrupted run, while the child starts up
        deadline = time.monotonic() + 180
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail("child never reported its saves; stderr:\n" + (tmp_path / "child.err").read_text()[-3000:])
            if line.startswith("losses "):
                child_losses = [np.float32(float.fromhex(h)) for h in json.loads(line.split(" ", 1)[1])]
            if line.strip() == f"saving {SAVE_AT + 1}":
                break
        assert proc.poll() is None, (tmp_path / "child.err").read_text()[-3000:]
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    left = sorted(os.listdir(directory))  # whatever the kill left: committed steps, maybe a tmp dir

    ckpt = Checkpointer(directory)
    steps = ckpt.all_steps()
    assert steps and SAVE_AT <= steps[-1] <= N_STEPS, left
    step, state, meta = ckpt.restore(jax.eval_shape(setup(variant)[2]))
    assert step == steps[-1] == meta["next_batch"], left
    print(f"killed child left {left}; resuming from step {step}")
    state, rest = run(variant, state, step, N_STEPS)
    if step < N_STEPS:
        ckpt.save(N_STEPS, state)  # the resumed job's next save clears away what the kill left
        ckpt.wait()
        assert not [n for n in os.listdir(directory) if "tmp" in n], os.listdir(directory)
    ckpt.close()
    assert child_losses is not None and len(child_losses) == SAVE_AT and len(rest) == N_STEPS - step
    for i, (x, y) in enumerate(zip(child_losses, ref_losses[:SAVE_AT])):
        assert np.array_equal(x, y), (i, x, y)
    for i, (x, y) in enumerate(zip(rest, ref_losses[step:]), start=step):
        assert np.array_equal(x, y), (i, x, y, left)
    assert_bit_identical(state, ref_state)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_resume_is_bit_identical(tmp_path, variant):
    ref_state, ref_losses = reference(variant)
    fresh = setup(variant)[2]
    ckpt = Checkpointer(tmp_path / "ckpt")
    state, first = run(variant, fresh(), 0, SAVE_AT, ckpt)
    # The job goes on past the save, donating the very buffers it just saved, and then dies.
    state, _ = run(variant, state, SAVE_AT, SAVE_AT + 2)
    ckpt.close()
    del state, ckpt

    resumed = Checkpointer(tmp_path / "ckpt")  # a brand-new object, as after a restart
    step, state, meta = resumed.restore(jax.eval_shape(fresh))
    assert (step, meta) == (SAVE_AT, {"next_batch": SAVE_AT, "variant": variant})
    assert int(state.step) == SAVE_AT
    if variant == "dropout_multisteps":
        # The rng really matters here: a different base key gives a different loss for the next step.
        other_rng = jax.device_put(jax.random.PRNGKey(99), state.rng.sharding)
        _, m = setup(variant)[3](state.replace(rng=other_rng), batch(SAVE_AT))
        assert not np.array_equal(np.asarray(m["loss"]), ref_losses[SAVE_AT])
        step, state, meta = resumed.restore(jax.eval_shape(fresh))  # `state` was donated just now
    state, rest = run(variant, state, meta["next_batch"], N_STEPS)
    resumed.close()
    assert len(first + rest) == N_STEPS
    for i, (x, y) in enumerate(zip(first + rest, ref_losses)):
        assert np.array_equal(x, y), (i, x, y)
    assert_bit_identical(state.params, ref_state.params)
    assert_bit_identical(state.opt_state, ref_state.opt_state)
    assert_bit_identical(state.rng, ref_state.rng)
    assert_bit_identical(state, ref_state)


# ------------------------------------------------------------------------------ 2. torn checkpoints
def _files(d: Path):
    return sorted(p for p in d.rglob("*") if p.is_file())


def _truncate(path: Path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _largest_data_file(d: Path) -> Path:
    return max((f for f in _files(d / "state") if f.parent.name == "d"), key=lambda f: f.stat().st_size)


# Each damages the newest committed step. "structural": caught by the cheap listing check; "data": only by
# actually reading it.
TEARS = {
    "commit_marker_deleted": ("structural", lambda d: (d / "commit_success.txt").unlink()),
    "half_deleted": ("structural", lambda d: shutil.rmtree(d / "state")),  # e.g. a kill during rmtree of an old step
    "tree_metadata_truncated": ("structural", lambda d: _truncate(d / "state" / "_METADATA")),
    "json_metadata_deleted": ("structural", lambda d: (d / "metadata" / "metadata").unlink()),
    # OCDBT data files (under d/ directories): b-tree nodes, with small arrays inlined, and the kernel's chunk,
    # the largest file. Damage to the b-tree shows when the array metadata is read, the chunk's only when the
    # array itself is.
    "btree_deleted": ("data", lambda d: [f.unlink() for f in _files(d / "state") if f.parent.name == "d"]),
    "array_chunk_deleted": ("data", lambda d: _largest_data_file(d).unlink()),
    "array_chunk_truncated": ("data", lambda d: _truncate(_largest_data_file(d))),
    "ocdbt_manifest_truncated": ("data", lambda d: _truncate(d / "state" / "manifest.ocdbt")),
}


@pytest.mark.parametrize("tear", sorted(TEARS))
def test_torn_newest_checkpoint_falls_back(tmp_path, caplog, tear):
    kind, damage = TEARS[tear]
    states = saved(tmp_path / "ckpt", [1, 2])
    damage(tmp_path / "ckpt" / "2")
    target = jax.eval_shape(lambda: small_state(0))
    caplog.set_level(logging.WARNING, logger=LOG)

    ckpt = Checkpointer(tmp_path / "ckpt")
    assert ckpt.latest_step() == (1 if kind == "structural" else 2)  # data damage shows only when read
    step, state, meta = ckpt.restore(target)
    assert (step, meta) == (1, {"seed": 1})
    assert_bit_identical(state, states[1])
    warnings = [r.getMessage() for r in caplog.records if r.name == LOG and r.levelno == logging.WARNING]
    assert any(re.fullmatch(r"skipping checkpoint step 2 in .*ckpt: .+; falling back to the previous checkpoint", w)
               for w in warnings), warnings
    assert ckpt.latest_step() == 1 and ckpt.all_steps() == [1]  # now known to be unusable

    with pytest.raises(ValueError, match=r"checkpoint step 2 in .* is unusable: .+"):
        Checkpointer(tmp_path / "ckpt").restore(target, step=2)
    assert_bit_identical(Checkpointer(tmp_path / "ckpt").restore(target, step=1)[1], states[1])

    # The resumed job saves step 2 again: the torn one is moved aside first, out of every listing.
    ckpt.save(2, small_state(5), metadata={"seed": 5})
    ckpt.close()
    names = sorted(os.listdir(tmp_path / "ckpt"))
    assert names[:2] == ["1", "2"] and len(names) == 3 and names[2].startswith("2.unusable-"), names
    assert ckpt.all_steps() == [1, 2]
    step, state, meta = Checkpointer(tmp_path / "ckpt").restore(target)
    assert (step, meta) == (2, {"seed": 5})
    assert_bit_identical(state, jax.device_get(small_state(5)))


def test_every_checkpoint_torn_raises(tmp_path):
    saved(tmp_path / "ckpt", [1, 2])
    for s in (1, 2):
        TEARS["array_chunk_truncated"][1](tmp_path / "ckpt" / str(s))
    with pytest.raises(ValueError, match=r"no usable checkpoint .*step 2: .*step 1: "):
        Checkpointer(tmp_path / "ckpt").restore(jax.eval_shape(lambda: small_state(0)))


def test_interrupted_saves_leave_temporary_dirs_that_are_ignored(tmp_path, monkeypatch):
    from orbax.checkpoint._src.path import atomicity

    states = saved(tmp_path / "ckpt", [1])
    # A real interrupted save: Orbax writes step 3 completely into 3.orbax-checkpoint-tmp, then "dies" right
    # before the commit (the rename).
    original = atomicity.AtomicRenameTemporaryPath.finalize

    async def die_before_commit(self):
        if self.get_final().name.isdigit():
            raise OSError("simulated kill before commit")
        return await original(self)

    monkeypatch.setattr(atomicity.AtomicRenameTemporaryPath, "finalize", die_before_commit)
    ckpt = Checkpointer(tmp_path / "ckpt")
    ckpt.save(3, small_state(3))
    with pytest.raises(OSError, match="simulated kill"):
        ckpt.wait()
    monkeypatch.undo()
    # And an early one: killed while writing the arrays of step 4.
    early = tmp_path / "ckpt" / "4.orbax-checkpoint-tmp"
    shutil.copytree(tmp_path / "ckpt" / "1", early)
    (early / "commit_success.txt").unlink()
    for f in _files(early / "state")[::2]:
        f.unlink()
    names = sorted(os.listdir(tmp_path / "ckpt"))
    assert names == ["1", "3.orbax-checkpoint-tmp", "4.orbax-checkpoint-tmp"], names

    target = jax.eval_shape(lambda: small_state(0))
    fresh = Checkpointer(tmp_path / "ckpt")
    assert fresh.all_steps() == [1] and fresh.latest_step() == 1
    step, state, _ = fresh.restore(target)
    assert step == 1
    assert_bit_identical(state, states[1])
    for s in (3, 4):
        with pytest.raises(ValueError, match=rf"checkpoint step {s} .* is incomplete: only {s}\.orbax-checkpoint-tmp"):
            fresh.restore(target, step=s)
    # The next save of the (single) writer clears them away.
    fresh.save(3, small_state(3))
    fresh.close()
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["1", "3"]
    assert fresh.all_steps() == [1, 3]


def test_no_checkpoint_raises_file_not_found(tmp_path):
    target = jax.eval_shape(lambda: small_state(0))
    ckpt = Checkpointer(tmp_path / "missing")
    assert ckpt.latest_step() is None and ckpt.all_steps() == []
    with pytest.raises(FileNotFoundError, match=r"no checkpoint in .*missing"):
        ckpt.restore(target)
    assert not (tmp_path / "missing").exists()  # a reader creates nothing
    (tmp_path / "empty" / "5.orbax-checkpoint-tmp").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"no checkpoint in .*empty.*interrupted saves: 5\.orbax"):
        Checkpointer(tmp_path / "empty").restore(target)
    saved(tmp_path / "one", [1])
    with pytest.raises(FileNotFoundError, match=r"no checkpoint for step 7 in .*one \(complete steps: \[1\]\)"):
        Checkpointer(tmp_path / "one").restore(target, step=7)


def test_target_that_does_not_fit_raises_without_falling_back(tmp_path):
    saved(tmp_path / "ckpt", [1, 2])
    ckpt = Checkpointer(tmp_path / "ckpt")
    multisteps = make_optimizer(OptimizerConfig(warmup_steps=1, total_steps=10, accumulate_steps=2))
    with pytest.raises(ValueError, match=r"step 2 .* does not match the restore target.*mini_step"):
        ckpt.restore(jax.eval_shape(lambda: small_state(0, multisteps)))
    abstract = jax.eval_shape(lambda: small_state(0))
    wider = abstract.replace(params={**abstract.params, "dense": {
        "kernel": jax.ShapeDtypeStruct((16, 65), jnp.float32), "bias": abstract.params["dense"]["bias"]}})
    with pytest.raises(ValueError, match=r"shapes differ: params/dense/kernel saved \(16, 64\) vs target \(16, 65\)"):
        ckpt.restore(wider)
    assert ckpt.all_steps() == [1, 2]  # nothing was marked unusable


def test_masked_nodes_namedtuples_and_typed_keys_round_trip(tmp_path):
    # optax.masked over a stateful transform puts MaskedNode leaves into mu/nu; MultiSteps wraps it all.
    tx = optax.MultiSteps(optax.chain(optax.masked(optax.adam(1e-3), decay_mask),
                                      make_optimizer(OptimizerConfig(warmup_steps=1, total_steps=10))), 2)
    state = small_state(3, tx).replace(rng=jax.random.key(7))
    assert any(isinstance(x, optax.MaskedNode) for x in jax.tree.leaves(
        state.opt_state, is_leaf=lambda x: isinstance(x, optax.MaskedNode)))
    with Checkpointer(tmp_path / "ckpt") as ckpt:
        ckpt.save(3, state)
    step, restored, meta = Checkpointer(tmp_path / "ckpt").restore(jax.eval_shape(lambda: state))
    assert (step, meta) == (3, {})
    assert_bit_identical(restored, state)


# --------------------------------------------------------------------------- 3. another mesh
def test_restore_onto_another_mesh_and_unsharded(tmp_path):
    config, tx, fresh, _ = setup("plain")
    rng = np.random.default_rng(0)
    state = fresh()
    state = state.replace(opt_state=jax.tree.map(  # non-zero moments, so equal values mean something
        lambda x: x + rng.standard_normal(x.shape).astype(x.dtype) if x.dtype == jnp.float32 else x, state.opt_state))
    expected = jax.device_get(state)

    def shardings(mesh):
        return make_train_step(ARCH.spec.forward, config, tx, mesh=mesh, rules=ARCH.partition_rules,
                               state_example=state).shardings

    saved_on = jax.device_put(state, shardings(make_mesh(1, 4, 2)))
    q = saved_on.params["layers"]["attn"]["q_proj"]["kernel"]
    assert q.addressable_shards[0].data.size * 8 == q.size  # really split over fsdp x tensor
    with Checkpointer(tmp_path / "ckpt") as ckpt:
        ckpt.save(1, saved_on)

    abstract = jax.eval_shape(fresh)
    other = shardings(make_mesh(2, 2, 2))
    target = jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), abstract, other)
    ckpt = Checkpointer(tmp_path / "ckpt")
    _, restored, _ = ckpt.restore(target)
    assert_bit_identical(restored, expected)
    for x, sh in zip(jax.tree.leaves(restored), jax.tree.leaves(other)):
        assert x.sharding == sh, (x.sharding, sh)
    q = restored.params["layers"]["attn"]["q_proj"]["kernel"]
    assert q.addressable_shards[0].data.size * 4 == q.size

    _, plain, _ = ckpt.restore(abstract)  # no shardings in the target: one device, not the saving mesh
    assert_bit_identical(plain, expected)
    single = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    assert all(x.sharding == single for x in jax.tree.leaves(plain))

    _, again, _ = ckpt.restore(saved_on)  # a target of arrays: their shardings
    assert all(x.sharding == y.sharding for x, y in zip(jax.tree.leaves(again), jax.tree.leaves(saved_on)))
    assert_bit_identical(again, expected)
    ckpt.close()


# --------------------------------------------------------------------------------- 4. keep-N
def test_keeps_only_the_newest_max_to_keep(tmp_path):
    states = saved(tmp_path / "ckpt", [1, 2, 3, 4, 5], max_to_keep=2)
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["4", "5"]
    ckpt = Checkpointer(tmp_path / "ckpt", max_to_keep=2)
    assert ckpt.all_steps() == [4, 5] and ckpt.latest_step() == 5
    step, state, meta = ckpt.restore(jax.eval_shape(lambda: small_state(0)))
    assert (step, meta) == (5, {"seed": 5})
    assert_bit_identical(state, states[5])
    ckpt.save(6, small_state(6))
    ckpt.close()
    assert ckpt.all_steps() == [5, 6]


# ------------------------------------------------------------------------------------- 5. async
def test_async_save_returns_early_and_wait_commits(tmp_path):
    state = small_state(7)
    expected = jax.device_get(state)
    ckpt = Checkpointer(tmp_path / "ckpt", async_save=True)
    ckpt.save(7, state, metadata={"data": [1, 2]})
    assert ckpt.all_steps() in ([], [7])  # in flight or committed, never half-listed
    for x in jax.tree.leaves(state):  # the caller may donate/free the arrays as soon as save returns
        x.delete()
    ckpt.wait()
    assert ckpt.all_steps() == [7] and ckpt.latest_step() == 7
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["7"]
    step, restored, meta = ckpt.restore(jax.eval_shape(lambda: small_state(0)))
    assert (step, meta) == (7, {"data": [1, 2]})
    assert_bit_identical(restored, expected)
    ckpt.close()
    ckpt.close()  # idempotent


def test_save_only_moves_forward_unless_forced(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger=LOG)
    with Checkpointer(tmp_path / "ckpt") as ckpt:
        ckpt.save(5, small_state(5))
        ckpt.save(3, small_state(3))
        ckpt.wait()
        assert ckpt.all_steps() == [5]
        assert any("not saving checkpoint step 3" in r.getMessage() for r in caplog.records)
        ckpt.save(3, small_state(3), force=True)
        ckpt.save(5, small_state(6))  # exists: skipped, not overwritten
        ckpt.wait()
        assert ckpt.all_steps() == [3, 5]
        with pytest.raises(ValueError, match="checkpoint step 5 already exists"):
            ckpt.save(5, small_state(6), force=True)
        with pytest.raises(TypeError, match="not JSON-serialisable"):
            ckpt.save(8, small_state(8), metadata={"config": object()})
        with pytest.raises(ValueError, match="non-negative integer"):
            ckpt.save(-1, small_state(8))
    _, state, _ = Checkpointer(tmp_path / "ckpt").restore(jax.eval_shape(lambda: small_state(0)), step=5)
    assert_bit_identical(state, jax.device_get(small_state(5)))
