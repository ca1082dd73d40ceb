"""Longformer through the scale machinery: sharded == unsharded, jit/grad, and training via the common step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import conversion
from common.sharding import make_mesh
from tests.factory import save_hf
from tests.longformer.hf_longformer import HF_CLASSES, hf_model, qa_batch
from tests.scale import assert_jit_grad_finite, assert_trains_sharded_like_unsharded, untrained_heads

# Dimensions divisible by every mesh axis, so the rules really shard the matrices.
SHARDABLE = dict(hidden_size=64, num_attention_heads=4, intermediate_size=128, vocab_size=128)


@pytest.fixture(scope="module")
def mesh():
    return make_mesh(2, 2, 2)


def test_sharded_forward_equals_unsharded(tmp_path, mesh):
    """A head's own weights read from its file straight onto the mesh (every head on both mesh kinds, its weights
    initialised there: tests/common/test_explicit_mesh.py)."""
    head = "masked_lm"
    d = save_hf(hf_model(head, **SHARDABLE), tmp_path / head)
    plain = conversion.from_pretrained(d, progress=False)
    sharded = conversion.from_pretrained(d, mesh=mesh, progress=False)
    q = sharded.params["layers"]["attn"]["query_global"]["kernel"]
    assert q.addressable_shards[0].data.size * 4 == q.size  # split over fsdp x tensor, not replicated
    ids, mask = qa_batch(vocab=128, lengths=(13, 9, 11, 12), question=(3, 2, 4, 2))
    a = plain(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    b = sharded(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-5, rtol=0)


TRAINED = ["masked_lm"]  # question_answering: tests/common/test_explicit_mesh.py


def test_training_through_the_common_step(tmp_path, mesh):
    """Loss falls over a few steps, and the sharded step equals the unsharded one."""
    head = "masked_lm"
    model = conversion.from_pretrained(save_hf(hf_model(head, **SHARDABLE), tmp_path / head), progress=False)
    ids, mask = qa_batch(vocab=128, lengths=(13, 9, 11, 12), question=(3, 2, 4, 2))
    assert_trains_sharded_like_unsharded(model, {"input_ids": ids, "attention_mask": mask,
                                                 "labels": np.where(mask == 1, ids, -100)}, mesh)


def test_jit_and_grad_of_every_untrained_head(tmp_path):
    for head in untrained_heads("longformer", HF_CLASSES, TRAINED):
        model = conversion.from_pretrained(save_hf(hf_model(head), tmp_path / head), progress=False)
        ids, mask = qa_batch()
        if head == "multiple_choice":
            ids, mask = np.stack([ids, ids], 1), np.stack([mask, mask], 1)
        assert_jit_grad_finite(model, {"input_ids": ids, "attention_mask": mask})


def test_default_model_has_no_t_by_t_array():
    """A config built by hand gets the O(T*w) path ("auto" -> blocked): no buffer with two dims >= T in the
    compiled forward + backward of a whole model (the dense oracle, for contrast, has them)."""
    import re

    import longformer_jax as M
    from longformer_jax.config import LongformerConfig

    t = 512

    def square_buffers(config):
        params = M.init_params(config, jax.random.PRNGKey(0), jnp.float32, "question_answering")
        ids, mask = jnp.full((1, t), 5), jnp.ones((1, t), jnp.int32)
        glob = jnp.zeros((1, t), jnp.int32).at[:, :3].set(1)

        def loss(p):
            out = M.longformer_question_answering(p, config, ids, mask, glob, max_num_global=3)
            return jnp.sum(out.start_logits) + jnp.sum(out.end_logits)

        hlo = jax.jit(jax.grad(loss)).lower(params).compile().as_text()
        shapes = {tuple(int(d) for d in m.group(1).split(",") if d) for m in re.finditer(r"\[([0-9,]+)\]", hlo)}
        return {s for s in shapes if sum(d >= t for d in s) >= 2}

    config = LongformerConfig(vocab_size=99, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                              intermediate_size=37, attention_window=8, max_position_embeddings=t + 8, pad_token_id=1)
    assert config.attention_impl == "auto"
    assert square_buffers(config) == set()
    assert square_buffers(config.replace(attention_impl="reference"))  # the check can fail


@pytest.mark.parametrize("head", ["masked_lm", "question_answering"])
def test_bfloat16_params_and_compute(tmp_path, head):
    """bf16 params (and compute): finite, close to float32 at bf16 precision, and the blocked attention agrees
    with the dense reference in bf16 as well."""
    d = save_hf(hf_model(head), tmp_path / head)
    ids, mask = qa_batch()
    f32 = conversion.from_pretrained(d, progress=False)
    field = "logits" if head == "masked_lm" else "start_logits"
    want = np.asarray(getattr(f32(input_ids=ids, attention_mask=mask), field))
    got = {}
    for impl in ("blocked", "reference"):
        m = conversion.from_pretrained(d, dtype=jnp.bfloat16, attention=impl, progress=False)
        assert m.params["layers"]["attn"]["query"]["kernel"].dtype == jnp.bfloat16
        out = getattr(m(input_ids=ids, attention_mask=mask), field)
        assert out.dtype == jnp.bfloat16
        got[impl] = np.asarray(out, np.float32)
        rows = mask.astype(bool)
        scale = np.abs(want[rows]).max()
        assert np.isfinite(got[impl]).all()
        assert np.abs(got[impl][rows] - want[rows]).max() <= 0.05 * scale, impl
    rows = mask.astype(bool)
    assert np.abs(got["blocked"][rows] - got["reference"][rows]).max() <= 0.05 * np.abs(want[rows]).max()
