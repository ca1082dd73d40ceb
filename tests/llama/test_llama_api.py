"""The API boundary (bad inputs, config round trips) and JAX transformations on every head."""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import transformers

from common.model import Model
from conversion import ARCHITECTURES
from llama_jax.config import LlamaConfig
from tests.llama.hf_llama import HF_CLASSES, ROPES, TINY, left_padded_batch

CONFIG = LlamaConfig.from_hf_dict({k: v for k, v in TINY.items()})


def make(head: str, config: LlamaConfig = CONFIG) -> Model:
    arch = ARCHITECTURES[HF_CLASSES[head]]
    return Model(config, arch.init_params(config, jax.random.PRNGKey(0), jnp.float32, head), arch.spec)


# ------------------------------------------------------------------------------------- bad inputs
@pytest.fixture(scope="module")
def lm():
    return make("causal_lm")


@pytest.mark.parametrize("kwargs, message", [
    ({"input_ids": np.array([[1, 2, 99]])}, r"input_ids holds 99, outside the allowed range \[0, 98\]"),
    ({"input_ids": np.array([[1, -1]])}, r"input_ids holds -1, outside the allowed range \[0, 98\]"),
    ({"input_ids": np.ones((1, 65), int)}, r"sequence length 65, past max_position_embeddings=64"),
    ({"input_ids": np.array([1, 2, 3])}, r"input_ids must have rank 2 \(\[batch, seq\]\)"),
    ({"input_ids": np.ones((1, 2, 3), int)}, r"input_ids must have rank 2"),
    ({"input_ids": np.array([[1.5, 2.0]])}, r"input_ids must hold integers"),
    ({"input_ids": np.zeros((1, 0), int)}, r"must be non-empty"),
    ({"input_ids": np.ones((2, 3), int), "attention_mask": np.ones((2, 4), int)}, r"attention_mask has shape \(2, 4\)"),
    ({"input_ids": np.ones((1, 3), int), "attention_mask": np.array([[1, 2, 1]])}, r"attention_mask holds 2"),
    ({"input_ids": np.ones((1, 3), int), "position_ids": np.array([[0, 1, 64]])}, r"position_ids holds 64.*\[0, 63\]"),
    ({"input_ids": np.ones((1, 3), int), "labels": np.array([[1, 2, 120]])}, r"labels holds 120"),
    ({"input_ids": np.ones((1, 3), int), "bogus": 1}, r"unexpected arguments \['bogus'\]"),
])
def test_bad_inputs_raise(lm, kwargs, message):
    with pytest.raises(ValueError, match=message):
        lm(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    ({"max_new_tokens": 0}, r"max_new_tokens = 0 is invalid"),
    ({"max_new_tokens": 62}, r"prompt length 3 \+ max_new_tokens 62 is past max_position_embeddings=64"),
    ({"do_sample": True, "temperature": 0.0}, r"temperature = 0.0 is invalid"),
    ({"do_sample": True, "top_p": 1.5}, r"top_p = 1.5 is invalid"),
    ({"do_sample": True, "top_k": -1}, r"top_k = -1 is invalid"),
    ({"eos_token_id": 500}, r"eos_token_id = 500 is invalid"),
    ({"num_beams": 0}, r"num_beams = 0 is invalid"),
])
def test_bad_generate_arguments(lm, kwargs, message):
    with pytest.raises(ValueError, match=message):
        lm.generate(np.array([[5, 6, 7]]), **kwargs)


def test_generate_needs_generative_head():
    with pytest.raises(ValueError, match="not a generative head"):
        make("sequence_classification").generate(np.array([[5, 6]]))


def test_sequence_classification_without_pad_needs_batch_one():
    model = make("sequence_classification", dataclasses.replace(CONFIG, pad_token_id=None))
    assert model(input_ids=np.array([[5, 6, 7]])).logits.shape == (1, 3)
    with pytest.raises(ValueError, match="batch size 2"):
        model(input_ids=np.array([[5, 6, 7], [5, 6, 7]]))


def test_dropout_needs_rng(lm):
    with pytest.raises(ValueError, match="needs an `rng` key"):
        lm(input_ids=np.array([[5, 6]]), deterministic=False)


# ------------------------------------------------------------------------------------------ config
@pytest.mark.parametrize("rope", sorted(ROPES))
def test_config_round_trip_through_transformers(rope):
    params = dict(ROPES[rope])
    if rope == "longrope":  # one factor per rotated pair: head_dim 16 -> 8
        params.update(short_factor=[1.0 + 0.1 * i for i in range(8)], long_factor=[2.0 + 0.5 * i for i in range(8)])
    hf = transformers.LlamaConfig(**TINY, rope_parameters=params, tie_word_embeddings=True, head_dim=16)
    ours = LlamaConfig.from_hf_dict(hf.to_dict())
    again = transformers.LlamaConfig(**ours.to_hf_dict())
    for key in ("rope_parameters", "head_dim", "num_key_value_heads", "tie_word_embeddings", "num_labels", "vocab_size",
                "pad_token_id", "eos_token_id"):
        assert getattr(again, key) == getattr(hf, key), key
    assert LlamaConfig.from_hf_dict(ours.to_hf_dict()) == ours
    hash(ours)  # static under jit


def test_config_keeps_unknown_keys_and_lists():
    ours = LlamaConfig.from_hf_dict({**TINY, "eos_token_id": [2, 3], "my_custom_key": {"a": 1}})
    assert ours.eos_token_id == (2, 3)
    assert ours.to_hf_dict()["my_custom_key"] == {"a": 1} and ours.to_hf_dict()["eos_token_id"] == [2, 3]


@pytest.mark.parametrize("change, message", [
    ({"hidden_size": 30}, r"hidden_size.*multiple of num_attention_heads"),
    ({"num_key_value_heads": 3}, r"num_key_value_heads.*divisor"),
    ({"hidden_act": "gelu2"}, r"hidden_act"),
    ({"rope_parameters": {"rope_type": "llama3", "factor": 8.0}}, r"low_freq_factor"),
    ({"rope_parameters": {"rope_type": "banana"}}, r"rope_type"),
    ({"rope_parameters": {"rope_type": "linear", "factor": 2.0, "colour": 1}}, r"rope_parameters"),
    ({"pad_token_id": 120}, r"pad_token_id.*\[0, 99\)"),
    ({"vocab_size": 0}, r"vocab_size.*positive integer"),
    ({"model_type": "bert"}, r"model_type 'bert'"),
])
def test_config_validation(change, message):
    with pytest.raises(ValueError, match=message):
        LlamaConfig.from_hf_dict({**TINY, **change})


def test_runtime_fields_validated():
    with pytest.raises(ValueError, match="attention_impl"):
        dataclasses.replace(CONFIG, attention_impl="magic")
    with pytest.raises(ValueError, match="remat_policy"):
        dataclasses.replace(CONFIG, remat_policy="sometimes")


# ---------------------------------------------------------------------------------- transformations
def loss_of(head: str, out):
    if head == "model":
        return jnp.mean(out.last_hidden_state ** 2)
    if head == "question_answering":
        return jnp.mean(out.start_logits ** 2) + jnp.mean(out.end_logits ** 2)
    return jnp.mean(out.logits ** 2)


@pytest.mark.parametrize("head", sorted(HF_CLASSES))
def test_jit_grad_vmap(head):
    model = make(head, dataclasses.replace(CONFIG, remat_policy="full"))
    fn = model.spec.forward
    ids, mask = left_padded_batch()
    ids, mask = jnp.asarray(ids), jnp.asarray(mask)
    ref = fn(model.params, CONFIG, ids, mask)

    jitted = jax.jit(fn, static_argnums=1)(model.params, model.config, ids, mask)
    chex.assert_trees_all_equal_shapes_and_dtypes(jitted, ref)  # same fields, so the zip pairs every one
    for a, b in zip(jax.tree.leaves(jitted), jax.tree.leaves(ref)):
        np.testing.assert_allclose(a, b, atol=1e-6)

    grads = jax.grad(lambda p: loss_of(head, fn(p, model.config, ids, mask)))(model.params)
    chex.assert_trees_all_equal_shapes_and_dtypes(grads, model.params)
    chex.assert_tree_all_finite(grads)
    assert float(jnp.abs(grads["layers"]["attn"]["q_proj"]["kernel"]).sum()) > 0

    # vmap over examples equals the batched call (each example as its own batch of 1)
    per_example = jax.vmap(lambda i, m: fn(model.params, model.config, i[None], m[None]))(ids, mask)
    chex.assert_trees_all_equal_structs(per_example, ref)
    for a, b in zip(jax.tree.leaves(per_example), jax.tree.leaves(ref)):
        np.testing.assert_allclose(np.asarray(a).reshape(np.shape(b)), b, atol=1e-5)


def test_dropout_changes_outputs_with_rng():
    config = dataclasses.replace(CONFIG, attention_dropout=0.5)
    model = make("token_classification", config)
    ids = np.array([[5, 6, 7, 8]])
    a = model(input_ids=ids, deterministic=False, rng=jax.random.PRNGKey(0)).logits
    b = model(input_ids=ids, deterministic=False, rng=jax.random.PRNGKey(1)).logits
    c = model(input_ids=ids).logits
    assert not np.allclose(a, b) and not np.allclose(a, c)


def test_scan_program_size_does_not_grow_with_depth():
    """Stacked layers under lax.scan: the compiled program for 32 layers is the size of the one for 4."""
    def hlo_ops(layers):
        config = dataclasses.replace(CONFIG, num_hidden_layers=layers)
        params = jax.eval_shape(lambda: ARCHITECTURES["LlamaForCausalLM"].init_params(
            config, jax.random.PRNGKey(0), jnp.float32, "causal_lm"))
        ids = jax.ShapeDtypeStruct((2, 8), jnp.int32)
        text = jax.jit(ARCHITECTURES["LlamaForCausalLM"].spec.forward, static_argnums=1).lower(params, config, ids).as_text()
        return sum(1 for line in text.splitlines() if "=" in line)

    small, big = hlo_ops(4), hlo_ops(32)
    assert small == big, (small, big)


def test_unrolled_layers_equal_scanned():
    model = make("causal_lm")
    ids, mask = left_padded_batch()
    scanned = model(input_ids=ids, attention_mask=mask).logits
    unrolled = Model(dataclasses.replace(CONFIG, scan_layers=False), model.params, model.spec)
    np.testing.assert_array_equal(np.asarray(unrolled(input_ids=ids, attention_mask=mask).logits), np.asarray(scanned))
