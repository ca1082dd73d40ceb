"""LED through the scale machinery: sharded == unsharded, jit/grad, and training via the common step."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import conversion
from common.sharding import make_mesh
from tests.factory import save_hf
from tests.led.hf_led import HF_CLASSES, batch, hf_model
from tests.scale import assert_jit_grad_finite, assert_trains_sharded_like_unsharded, untrained_heads

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


def test_sharded_forward_equals_unsharded(tmp_path, mesh):
    """A head's own weights read from its file straight onto the mesh (every head on both mesh kinds, its weights
    initialised there: tests/common/test_explicit_mesh.py)."""
    head = "conditional_generation"
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


TRAINED = ["sequence_classification"]  # conditional_generation: tests/common/test_explicit_mesh.py


def test_training_through_the_common_step(tmp_path, mesh):
    """Loss falls over a few steps (dropout on), and the sharded step equals the unsharded one."""
    head = "sequence_classification"
    model = conversion.from_pretrained(save_hf(hf_model(head, **SHARDABLE), tmp_path / head), progress=False)
    ids, mask, g = inputs()
    assert_trains_sharded_like_unsharded(model, {"input_ids": ids, "attention_mask": mask, "global_attention_mask": g,
                                                 "labels": np.array([0, 2, 1, 2])}, mesh)


def test_jit_and_grad_of_every_untrained_head(tmp_path):
    for head in untrained_heads("led", HF_CLASSES, TRAINED):
        model = conversion.from_pretrained(save_hf(hf_model(head), tmp_path / head), progress=False)
        ids, mask = batch()
        assert_jit_grad_finite(model, {"input_ids": ids, "attention_mask": mask})
