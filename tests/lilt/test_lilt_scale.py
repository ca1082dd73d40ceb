"""LiLT through the scale machinery: sharded == unsharded, jit/grad, and training via the common step."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import conversion
from common.sharding import make_mesh
from tests.factory import save_hf
from tests.lilt.hf_lilt import HF_CLASSES, batch, hf_model
from tests.scale import assert_jit_grad_finite, assert_trains_sharded_like_unsharded, untrained_heads

# Dimensions divisible by every mesh axis (hidden 48 = 6 * 8, layout stream 12), so the rules really shard.
SHARDABLE = dict(hidden_size=48, num_attention_heads=4, intermediate_size=64, vocab_size=128)


@pytest.fixture(scope="module")
def mesh():
    return make_mesh(2, 2, 2)


def inputs():
    ids, mask, boxes, _ = batch(lengths=(13, 9, 11, 12), vocab=128)
    return {"input_ids": ids, "attention_mask": mask, "bbox": boxes}


def test_sharded_forward_equals_unsharded(tmp_path, mesh):
    d = save_hf(hf_model("model", **SHARDABLE), tmp_path / "model")
    plain = conversion.from_pretrained(d, progress=False)
    sharded = conversion.from_pretrained(d, mesh=mesh, progress=False)
    w = sharded.params["layers"]["attn"]["query"]["kernel"]
    assert w.addressable_shards[0].data.size * 4 == w.size  # split over fsdp x tensor
    a = plain(**inputs(), output_hidden_states=True)
    b = sharded(**inputs(), output_hidden_states=True)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-5, rtol=0)


TRAINED = ["sequence_classification"]  # token_classification: tests/common/test_explicit_mesh.py


def test_training_through_the_common_step(tmp_path, mesh):
    """Loss falls over a few steps (dropout on), and the sharded step equals the unsharded one."""
    head = "sequence_classification"
    model = conversion.from_pretrained(save_hf(hf_model(head, **SHARDABLE), tmp_path / head), progress=False)
    assert_trains_sharded_like_unsharded(model, dict(inputs(), labels=np.array([0, 2, 1, 2])), mesh)


def test_jit_and_grad_of_every_untrained_head(tmp_path):
    for head in untrained_heads("lilt", HF_CLASSES, TRAINED):
        model = conversion.from_pretrained(save_hf(hf_model(head), tmp_path / head), progress=False)
        x = inputs()
        x["input_ids"] = np.minimum(x["input_ids"], 98)
        assert_jit_grad_finite(model, x)
