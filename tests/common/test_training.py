"""Sharding and training: sharded == unsharded, gradients == PyTorch's, pmap, accumulation, mixed precision."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import conversion
from common.sharding import make_mesh
from common.train import OptimizerConfig, init_train_state, make_optimizer, make_train_step, train_step, loss_fn_for
from conversion.mapping import get_path, tree_paths
from tests.factory import save_hf
from tests.llama.hf_llama import HF_CLASSES, hf_model, left_padded_batch

# Dimensions divisible by every mesh axis, so the rules really shard every matrix.
SHARDABLE = dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128, vocab_size=128)


def batch_for(head: str, n: int = 8, seed: int = 0):
    ids, mask = left_padded_batch(vocab=128, lengths=tuple(3 + (i * 5) % 6 for i in range(n)), seed=seed)
    rng = np.random.default_rng(seed)
    batch = {"input_ids": ids, "attention_mask": mask}
    if head == "causal_lm":
        batch["labels"] = np.where(mask == 1, ids, -100)
    elif head == "sequence_classification":
        batch["labels"] = rng.integers(0, 3, (n,))
    elif head == "token_classification":
        batch["labels"] = np.where(mask == 1, rng.integers(0, 3, ids.shape), -100)
    elif head == "question_answering":
        batch["start_positions"] = rng.integers(2, ids.shape[1], (n,))
        batch["end_positions"] = rng.integers(2, ids.shape[1], (n,))
    return batch


@pytest.fixture(scope="module")
def mesh():
    return make_mesh(2, 2, 2)


@pytest.mark.parametrize("head", sorted(HF_CLASSES))
def test_sharded_forward_equals_unsharded(tmp_path, mesh, head):
    d = save_hf(hf_model(head, **SHARDABLE), tmp_path / head)
    plain = conversion.from_pretrained(d, progress=False)
    sharded = conversion.from_pretrained(d, mesh=mesh, progress=False)
    q = sharded.params["layers"]["attn"]["q_proj"]["kernel"]
    assert q.sharding.spec == jax.sharding.PartitionSpec(None, "fsdp", "tensor")
    assert q.addressable_shards[0].data.shape == (2, 32, 32)  # a quarter of (2, 64, 64) per device: not replicated
    batch = batch_for(head)
    batch.pop("labels", None), batch.pop("start_positions", None), batch.pop("end_positions", None)
    a, b = plain(**batch, output_hidden_states=True), sharded(**batch, output_hidden_states=True)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-5, rtol=0)


def test_every_matrix_is_sharded(tmp_path, mesh):
    """Each kernel and the embedding is split across devices per the rules (not silently replicated)."""
    model = conversion.from_pretrained(save_hf(hf_model("causal_lm", **SHARDABLE), tmp_path / "m"), mesh=mesh,
                                       progress=False)
    for path in tree_paths(model.params):
        leaf = get_path(model.params, path)
        if path[-1] in ("kernel", "embedding"):
            assert leaf.addressable_shards[0].data.size * 4 == leaf.size, path  # split over fsdp x tensor = 4


@pytest.mark.parametrize("head", ["causal_lm", "sequence_classification", "question_answering"])
def test_sharded_train_steps_equal_unsharded(tmp_path, mesh, head):
    model = conversion.from_pretrained(save_hf(hf_model(head, **SHARDABLE), tmp_path / head), progress=False)
    # eps 1e-4: some gradients are exactly zero in exact arithmetic (a span head's bias sees equal and opposite
    # pulls) and come out as +-1e-9 float noise, which Adam with a tiny eps would blow up to +-lr updates.
    tx = make_optimizer(OptimizerConfig(learning_rate=1e-2, warmup_steps=1, total_steps=10, eps=1e-4))
    plain_step = make_train_step(model.spec.forward, model.config, tx, donate=False)
    state = init_train_state(model.params, tx, jax.random.PRNGKey(0))
    sharded_step = make_train_step(model.spec.forward, model.config, tx, mesh=mesh, rules=model.partition_rules,
                                   state_example=state, donate=False)
    sharded_state = jax.device_put(state, sharded_step.shardings)
    assert sharded_state.opt_state[1][0].mu["layers"]["mlp"]["up_proj"]["kernel"].sharding.spec == \
        jax.sharding.PartitionSpec(None, "fsdp", "tensor")
    for i in range(3):
        batch = batch_for(head, seed=i)
        state, m1 = plain_step(state, batch)
        sharded_state, m2 = sharded_step(sharded_state, batch)
        np.testing.assert_allclose(float(m1["loss"]), float(m2["loss"]), atol=1e-5, rtol=1e-6)
    for x, y in zip(jax.tree.leaves(state.params), jax.tree.leaves(sharded_state.params)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-5, rtol=0)


@pytest.mark.parametrize("variant", [{}, {"tie_word_embeddings": True, "attention_bias": True}])
def test_gradients_match_pytorch(tmp_path, variant):
    hf = hf_model("causal_lm", vocab_size=128, **variant)
    model = conversion.from_pretrained(save_hf(hf, tmp_path / "m"), progress=False)
    batch = batch_for("causal_lm")
    hf.zero_grad()
    out = hf(**{k: torch.as_tensor(v) for k, v in batch.items()})
    out.loss.backward()
    loss, grads = jax.value_and_grad(loss_fn_for(model.spec.forward, model.config))(model.params, batch, None)
    assert abs(float(loss) - out.loss.item()) < 1e-5
    ours = conversion.api.hf_tensors(_with_params(model, grads))
    torch_grads = {n: p.grad.numpy() for n, p in hf.named_parameters()}
    norm = np.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in torch_grads.values()))
    assert set(ours) == set(torch_grads) - ({"lm_head.weight"} if variant else set())
    worst = max(float(np.abs(ours[n] - torch_grads[n]).max()) for n in ours)
    assert worst / norm <= 1e-4, (worst, norm)


def _with_params(model, params):
    from common.model import Model

    return Model(model.config, params, model.spec)


def test_pmap_step_equals_jit_step(tmp_path):
    model = conversion.from_pretrained(save_hf(hf_model("causal_lm"), tmp_path / "m"), progress=False)
    tx = make_optimizer(OptimizerConfig(warmup_steps=0, total_steps=5))
    state = init_train_state(model.params, tx, jax.random.PRNGKey(0))
    ids = np.random.default_rng(0).integers(3, 99, (8, 6))  # no padding: every device has equal token counts
    batch = {"input_ids": ids, "labels": ids}
    loss_fn = loss_fn_for(model.spec.forward, model.config)
    jitted, m1 = jax.jit(lambda s, b: train_step(s, b, loss_fn=loss_fn, tx=tx))(state, batch)
    replicated = jax.tree.map(lambda x: jnp.stack([x] * 8), state)  # one copy per device on the pmap axis
    split = {k: v.reshape(8, 1, -1) for k, v in batch.items()}
    pmapped, m2 = jax.pmap(lambda s, b: train_step(s, b, loss_fn=loss_fn, tx=tx, axis_name="d"), axis_name="d")(
        replicated, split)
    np.testing.assert_allclose(float(m1["loss"]), float(m2["loss"][0]), atol=1e-6)
    for x, y in zip(jax.tree.leaves(jitted.params), jax.tree.leaves(pmapped.params)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y)[0], atol=1e-6)


def test_gradient_accumulation_equals_big_batch(tmp_path):
    model = conversion.from_pretrained(save_hf(hf_model("causal_lm"), tmp_path / "m"), progress=False)
    ids = np.random.default_rng(0).integers(3, 99, (8, 6))
    big = make_optimizer(OptimizerConfig(warmup_steps=0, total_steps=5))
    acc = make_optimizer(OptimizerConfig(warmup_steps=0, total_steps=5, accumulate_steps=2))
    s_big = init_train_state(model.params, big, jax.random.PRNGKey(0))
    s_acc = init_train_state(model.params, acc, jax.random.PRNGKey(0))
    step_big = make_train_step(model.spec.forward, model.config, big, donate=False)
    step_acc = make_train_step(model.spec.forward, model.config, acc, donate=False)
    s_big, _ = step_big(s_big, {"input_ids": ids, "labels": ids})
    first, _ = step_acc(s_acc, {"input_ids": ids[:4], "labels": ids[:4]})
    np.testing.assert_array_equal(first.params["norm"]["scale"], s_acc.params["norm"]["scale"])  # no update yet
    s_acc, _ = step_acc(first, {"input_ids": ids[4:], "labels": ids[4:]})
    for x, y in zip(jax.tree.leaves(s_big.params), jax.tree.leaves(s_acc.params)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-6)


def test_mixed_precision_keeps_float32_master_and_learns(tmp_path):
    model = conversion.from_pretrained(save_hf(hf_model("causal_lm"), tmp_path / "m"), progress=False)
    config = dataclasses.replace(model.config, compute_dtype="bfloat16", remat_policy="dots_saveable")
    tx = make_optimizer(OptimizerConfig(learning_rate=1e-2, warmup_steps=0, total_steps=30))
    state = init_train_state(model.params, tx, jax.random.PRNGKey(0))
    step = make_train_step(model.spec.forward, config, tx)
    ids = np.random.default_rng(0).integers(3, 99, (4, 8))
    losses = []
    for _ in range(20):
        state, m = step(state, {"input_ids": ids, "labels": ids})
        losses.append(float(m["loss"]))
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state.params))
    assert losses[-1] < 0.5 * losses[0], losses


def test_decay_mask_skips_norms_and_biases():
    from common.train import decay_mask

    mask = decay_mask({"layers": {"norm": {"scale": 1}, "proj": {"kernel": 1, "bias": 1}}, "emb": {"embedding": 1}})
    assert mask == {"layers": {"norm": {"scale": False}, "proj": {"kernel": True, "bias": False}}, "emb": {"embedding": True}}


@pytest.mark.parametrize("warmup", [0, 4])
def test_linear_schedule_is_transformers(warmup):
    """schedule="linear": transformers' get_linear_schedule_with_warmup, step by step."""
    from common.train import learning_rate_schedule

    ours = learning_rate_schedule(OptimizerConfig(learning_rate=2e-3, warmup_steps=warmup, total_steps=20,
                                                  schedule="linear"))
    theirs = [2e-3 * (k / max(1, warmup) if k < warmup else max(0.0, (20 - k) / max(1, 20 - warmup)))
              for k in range(22)]
    np.testing.assert_allclose([float(ours(k)) for k in range(22)], theirs, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("kwargs", [{"learning_rate": 0}, {"total_steps": 5, "warmup_steps": 10}, {"accumulate_steps": 0},
                                    {"schedule": "constant"}])
def test_optimizer_config_validation(kwargs):
    with pytest.raises(ValueError, match="is invalid for the optimizer"):
        OptimizerConfig(**kwargs)


def test_mesh_shape_errors():
    with pytest.raises(ValueError, match=r"needs 12 devices, but 8 are available"):
        make_mesh(2, 3, 2)
    with pytest.raises(ValueError, match="positive integers"):
        make_mesh(0, 8, 1)
