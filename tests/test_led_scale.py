"""LED through the scale machinery: sharded == unsharded, jit/grad, and training via the common step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import conversion
from common.sharding import make_mesh
from common.train import OptimizerConfig, init_train_state, make_optimizer, make_train_step
from tests.hf_led import HF_CLASSES, batch, hf_model, save_hf

# Dimensions divisible by every mesh axis, so the rules really shard the matrices.
SHARDABLE = dict(d_model=64, encoder_ffn_dim=128, decoder_ffn_dim=128, vocab_size=128)


@pytest.fixture(scope="module")
def mesh():
    return make_mesh(2, 2, 2)


def inputs(b=4):
    ids, mask = batch(lengths=(13, 9, 11, 12)[:b], vocab=128)
    g = np.zeros_like(mask)
    g[0, 2] = g[3, [0, 5]] = 1
    return ids, mask, g


@pytest.mark.parametrize("head", ["model", "conditional_generation"])
def test_sharded_forward_equals_unsharded(tmp_path, mesh, head):
    d = save_hf(hf_model(head, **SHARDABLE), tmp_path / head)
    plain = conversion.from_pretrained(d, progress=False)
    sharded = conversion.from_pretrained(d, mesh=mesh, progress=False)
    for path in (("encoder", "layers", "attn", "key_global"), ("decoder", "layers", "cross_attn", "q_proj")):
        w = sharded.params
        for k in path + ("kernel",):
            w = w[k]
        assert w.addressable_shards[0].data.size * 4 == w.size, path  # split over fsdp x tensor
    ids, mask, g = inputs()
    a = plain(input_ids=ids, attention_mask=mask, global_attention_mask=g, output_hidden_states=True)
    b = sharded(input_ids=ids, attention_mask=mask, global_attention_mask=g, output_hidden_states=True)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-5, rtol=0)


@pytest.mark.parametrize("head", ["conditional_generation", "sequence_classification"])
def test_training_through_the_common_step(tmp_path, mesh, head):
    """Loss falls over a few steps (dropout on), and the sharded step equals the unsharded one."""
    model = conversion.from_pretrained(save_hf(hf_model(head, **SHARDABLE), tmp_path / head), progress=False)
    arch = conversion.ARCHITECTURES[HF_CLASSES[head]]
    ids, mask, g = inputs()
    labels = {"conditional_generation": np.random.default_rng(0).integers(3, 128, (4, 6)),
              "sequence_classification": np.array([0, 2, 1, 2])}[head]
    data = model.spec.validate_inputs(model.config, head, {"input_ids": ids, "attention_mask": mask,
                                                           "global_attention_mask": g, "labels": labels})
    static = {"max_num_global": data.pop("max_num_global")}  # host-computed static, as Model passes it
    forward = lambda p, c, **kw: model.spec.forward(p, c, **kw, **static)  # noqa: E731
    tx = make_optimizer(OptimizerConfig(learning_rate=3e-3, warmup_steps=0, total_steps=20, eps=1e-4))
    state = init_train_state(model.params, tx, jax.random.PRNGKey(0))
    plain = make_train_step(forward, model.config, tx, donate=False)
    sharded = make_train_step(forward, model.config, tx, mesh=mesh, rules=arch.partition_rules, state_example=state,
                              donate=False)
    s_state = jax.device_put(state, sharded.shardings)
    losses = []
    for _ in range(6):
        state, m1 = plain(state, data)
        s_state, m2 = sharded(s_state, data)
        np.testing.assert_allclose(float(m1["loss"]), float(m2["loss"]), atol=1e-5, rtol=1e-6)
        losses.append(float(m1["loss"]))
    assert losses[-1] < losses[0], losses
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state.params))


def test_jit_and_grad_of_every_head(tmp_path):
    for head in sorted(HF_CLASSES):
        model = conversion.from_pretrained(save_hf(hf_model(head), tmp_path / head), progress=False)
        ids, mask = batch()
        data = model.spec.validate_inputs(model.config, head, {"input_ids": ids, "attention_mask": mask})
        x = data.pop("max_num_global")
        fn = jax.jit(lambda p, i, m: model.spec.forward(p, model.config, i, m, max_num_global=x))

        def scalar(p):
            out = fn(p, data["input_ids"], data["attention_mask"])
            return sum(jnp.mean(jnp.square(leaf)) for leaf in jax.tree.leaves(out))

        grads = jax.grad(scalar)(model.params)
        assert jax.tree.structure(grads) == jax.tree.structure(model.params), head
        assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads)), head
