"""XLM through the scale machinery: sharded == unsharded, training via the common step, jit/grad of every head."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import conversion
from common.sharding import make_mesh
from tests.factory import save_hf
from tests.xlm.hf_xlm import HF_CLASSES, batch, hf_model
from tests.scale import assert_jit_grad_finite, assert_trains_sharded_like_unsharded, untrained_heads

# Dimensions divisible by every mesh axis (emb 64 over fsdp x tensor, 4 heads over tensor), so the rules shard.
SHARDABLE = dict(emb_dim=64, n_heads=4, vocab_size=128)


@pytest.fixture(scope="module")
def mesh():
    return make_mesh(2, 2, 2)


def inputs(head="model", vocab=128):
    ids, mask, langs = batch(lengths=(9, 6, 8, 7), vocab=vocab)
    x = {"input_ids": ids, "attention_mask": mask, "langs": langs}
    if head == "multiple_choice":
        x = {k: np.stack([v, v[::-1]], axis=1) for k, v in x.items()}
    return x


def test_causal_model_sharded_equals_unsharded(tmp_path, mesh):
    """A causal XLM read from its file straight onto the mesh: forward and beam search equal unsharded (every head
    of the default config on both mesh kinds: tests/common/test_explicit_mesh.py)."""
    d = save_hf(hf_model("with_lm_head", **SHARDABLE, causal=True), tmp_path / "m")
    plain = conversion.from_pretrained(d, progress=False)
    sharded = conversion.from_pretrained(d, mesh=mesh, progress=False)
    w = sharded.params["layers"]["attn"]["q_lin"]["kernel"]
    assert w.addressable_shards[0].data.size * 4 == w.size  # split over fsdp x tensor
    a = plain(**inputs(), output_hidden_states=True)
    b = sharded(**inputs(), output_hidden_states=True)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-5, rtol=0)
    prompts = inputs()["input_ids"][:, :5]
    np.testing.assert_array_equal(sharded.generate(prompts, max_new_tokens=4, num_beams=2),
                                  plain.generate(prompts, max_new_tokens=4, num_beams=2))


TRAINED = ["token_classification", "question_answering"]  # with_lm_head: tests/common/test_explicit_mesh.py


@pytest.mark.parametrize("head", TRAINED)
def test_training_through_the_common_step(tmp_path, mesh, head):
    """Loss falls over a few steps (dropout on), and the sharded step equals the unsharded one."""
    model = conversion.from_pretrained(save_hf(hf_model(head, **SHARDABLE), tmp_path / head), progress=False)
    x = inputs()
    rng = np.random.default_rng(0)
    if head == "question_answering":
        x.update(start_positions=np.array([1, 2, 3, 1]), end_positions=np.array([4, 5, 3, 6]),
                 cls_index=np.zeros(4, np.int64), is_impossible=np.array([0.0, 1.0, 0.0, 0.0]))
    else:
        x["labels"] = np.where(x["attention_mask"] == 1, rng.integers(0, 3, x["input_ids"].shape), -100)
    assert_trains_sharded_like_unsharded(model, x, mesh)


def test_jit_and_grad_of_every_untrained_head(tmp_path):
    for head in untrained_heads("xlm", HF_CLASSES, TRAINED):
        model = conversion.from_pretrained(save_hf(hf_model(head), tmp_path / head), progress=False)
        assert_jit_grad_finite(model, inputs(head, vocab=99))
