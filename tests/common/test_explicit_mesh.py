"""Every head of every family on a ``jax.make_mesh`` mesh (Explicit axes, JAX's default) and on an Auto one
(``common.sharding.make_mesh``): loading, the forward, generate (greedy and beam) and a train step equal the
unsharded model; every matrix is split; a param without a partition rule is an error. The train step is run here
on the Explicit mesh; each family's scale tests (tests/common/test_training.py for Llama) train its other heads on
an Auto one.

Compile cost: one tiny bare-model checkpoint per family, loaded into each head with ``init_missing``; the
unsharded model of a head is compiled once and compared with both meshes.
"""

from __future__ import annotations

import functools
import re
import warnings

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import conversion
from common.sharding import spec_for
from tests.led import hf_led
from tests.lilt import hf_lilt
from tests.llama import hf_llama
from tests.longformer import hf_longformer
from tests.xlm import hf_xlm
from tests.factory import save_hf
from tests.scale import MESH_KINDS, MESH_TRAINED, assert_learns, mesh_of, train_steps

# Dimensions every mesh axis divides (so the rules really split every matrix), one layer fewer than the
# factories' default where that is allowed: compile time is what these tests spend.
FAMILIES = {
    "llama": (hf_llama, dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128,
                             vocab_size=128)),
    "longformer": (hf_longformer, dict(hidden_size=64, num_attention_heads=4, intermediate_size=128,
                                       vocab_size=128)),
    "led": (hf_led, dict(d_model=64, encoder_ffn_dim=128, decoder_ffn_dim=128, vocab_size=128)),
    "lilt": (hf_lilt, dict(hidden_size=48, num_attention_heads=4, intermediate_size=64, vocab_size=128)),
    # num_labels 2: XLMForQuestionAnsweringSimple reads start and end from the num_labels outputs.
    "xlm": (hf_xlm, dict(emb_dim=64, n_heads=4, vocab_size=128, num_labels=2)),
}
HEADS = [(family, head) for family, (factory, _) in FAMILIES.items() for head in sorted(factory.HF_CLASSES)]
GENERATIVE = {("llama", "causal_lm"), ("led", "conditional_generation"), ("xlm", "with_lm_head")}
# One head per family through the train step on the Explicit mesh, with its labels (the scale tests of each
# family train other heads on an Auto mesh, and leave these out).
TRAINED = MESH_TRAINED


def inputs_for(family: str, head: str) -> dict:
    """A batch of 4 rows (data x fsdp = 4 splits it), lengths mixed so padding is exercised."""
    if family == "llama":
        ids, mask = hf_llama.left_padded_batch(vocab=128, lengths=(6, 3, 5, 4))
        x = {"input_ids": ids, "attention_mask": mask}
    elif family == "longformer":
        ids, mask = hf_longformer.qa_batch(vocab=128, lengths=(9, 6, 8, 7), question=(2, 2, 3, 2))
        x = {"input_ids": ids, "attention_mask": mask}
    elif family == "led":
        ids, mask = hf_led.batch(lengths=(9, 6, 8, 7), vocab=128)
        g = np.zeros_like(mask)
        g[0, 2] = g[3, [0, 5]] = 1
        x = {"input_ids": ids, "attention_mask": mask, "global_attention_mask": g}
    elif family == "lilt":
        ids, mask, boxes, _ = hf_lilt.batch(lengths=(9, 6, 8, 7), vocab=128)
        x = {"input_ids": ids, "attention_mask": mask, "bbox": boxes}
    else:
        ids, mask, langs = hf_xlm.batch(lengths=(7, 5, 6, 4), vocab=128)
        x = {"input_ids": ids, "attention_mask": mask, "langs": langs}
    if head == "multiple_choice":  # [B, choices, T]
        x = {k: np.stack([v, v[::-1]], axis=1) for k, v in x.items()}
    return x


def labels_for(family: str, head: str, x: dict) -> dict:
    """The training labels of TRAINED[family]."""
    rng = np.random.default_rng(0)
    ids, mask = x["input_ids"], x["attention_mask"]
    if head in ("causal_lm", "with_lm_head"):
        return {"labels": np.where(mask == 1, ids, -100)}
    if head == "token_classification":
        return {"labels": np.where(mask == 1, rng.integers(0, 3, ids.shape), -100)}
    if head == "question_answering":
        return {"start_positions": np.array([5, 4, 6, 3]), "end_positions": np.array([7, 5, 6, 4])}
    if head == "conditional_generation":
        return {"labels": rng.integers(3, 128, (ids.shape[0], 5))}
    raise AssertionError(head)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """One bare-model checkpoint per family (every head loads from it, its own head initialised)."""
    root = tmp_path_factory.mktemp("explicit_mesh")
    return {family: save_hf(factory.hf_model("model", **dims), root / family)
            for family, (factory, dims) in FAMILIES.items()}


@pytest.fixture(scope="module")
def meshes():
    return {kind: mesh_of(kind) for kind in MESH_KINDS}


@functools.lru_cache(maxsize=None)
def _load(directory, family: str, head: str, kind: str | None):
    mesh = None if kind is None else mesh_of(kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # init_missing names the head's fresh params
        return conversion.from_pretrained(directory, architecture=FAMILIES[family][0].HF_CLASSES[head],
                                          init_missing=jax.random.PRNGKey(0), mesh=mesh, progress=False)


def load(checkpoints, family, head, kind=None):
    return _load(checkpoints[family], family, head, kind)


def assert_trees_close(a, b, what):
    assert jax.tree.structure(a) == jax.tree.structure(b), what
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-5, rtol=0, err_msg=what)


def splittable_matrix(path: tuple, leaf) -> bool:
    """Two or more dimensions besides the stacked-layer axis of a ``layers`` param, one of them even (every
    mesh axis here has 2 devices; a [3, 1] choice projection has nothing to split)."""
    dims = np.shape(leaf)[1:] if "layers" in path else np.shape(leaf)
    return len(dims) >= 2 and any(d % 2 == 0 for d in dims)


@pytest.mark.parametrize("family,head", HEADS)
def test_forward_on_both_mesh_kinds_equals_unsharded(checkpoints, family, head):
    """The forward (with hidden states) on an Explicit and an Auto mesh equals the unsharded one, and every
    matrix is really split over the 8 devices (not replicated)."""
    x = inputs_for(family, head)
    want = load(checkpoints, family, head)(**x, output_hidden_states=True)
    for kind in MESH_KINDS:
        model = load(checkpoints, family, head, kind)
        for path, leaf in jax.tree_util.tree_flatten_with_path(model.params)[0]:
            keys = tuple(getattr(k, "key", k) for k in path)
            if splittable_matrix(keys, leaf):
                assert leaf.addressable_shards[0].data.size < leaf.size, (kind, keys, leaf.sharding.spec)
        assert_trees_close(want, model(**x, output_hidden_states=True), f"{family}/{head} on {kind}")


@pytest.mark.parametrize("family,head", sorted(GENERATIVE))
def test_generate_on_both_mesh_kinds_equals_unsharded(checkpoints, family, head):
    x = inputs_for(family, head)
    plain = load(checkpoints, family, head)
    for num_beams in (1, 2):
        kwargs = dict(attention_mask=x["attention_mask"], max_new_tokens=3, num_beams=num_beams)
        want = plain.generate(x["input_ids"], **kwargs)
        for kind in MESH_KINDS:
            got = load(checkpoints, family, head, kind).generate(x["input_ids"], **kwargs)
            np.testing.assert_array_equal(got, want, err_msg=f"{family}/{head} num_beams={num_beams} on {kind}")


@pytest.mark.parametrize("family", sorted(TRAINED))
def test_training_on_an_explicit_mesh_equals_unsharded(checkpoints, meshes, family):
    """Six steps of the common train step (dropout on) on the Explicit mesh: the same loss as unsharded at every
    step, the same params after, and the loss falls. (The families' scale tests train their other heads on an
    Auto mesh.)"""
    head = TRAINED[family]
    x = inputs_for(family, head)
    x.update(labels_for(family, head, x))
    losses, plain, sharded = train_steps(load(checkpoints, family, head), x, {"explicit": meshes["explicit"]},
                                         steps=6)
    assert_learns(losses, plain)
    for kind, state in sharded.items():
        assert_trees_close(plain.params, state.params, f"{family}/{head} params after training on {kind}")


@pytest.mark.parametrize("shape", [(8, 1, 1), (1, 1, 8)])
def test_other_explicit_mesh_shapes(checkpoints, shape):
    """All-data and all-tensor ``jax.make_mesh`` meshes: forward and greedy generate equal unsharded."""
    x = inputs_for("llama", "causal_lm")
    plain = load(checkpoints, "llama", "causal_lm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = conversion.from_pretrained(checkpoints["llama"], architecture="LlamaForCausalLM",
                                           init_missing=jax.random.PRNGKey(0), mesh=mesh_of("explicit", shape),
                                           progress=False)
    x8 = {k: np.concatenate([v, v]) for k, v in x.items()}  # 8 rows: the data axis of (8, 1, 1) splits them
    assert_trees_close(plain(**x8), model(**x8), f"llama on {shape}")
    kwargs = dict(attention_mask=x["attention_mask"], max_new_tokens=3)
    np.testing.assert_array_equal(model.generate(x["input_ids"], **kwargs), plain.generate(x["input_ids"], **kwargs))


def test_model_carries_its_partition_rules(checkpoints):
    for name, arch in conversion.ARCHITECTURES.items():
        assert arch.spec.partition_rules, name
    model = load(checkpoints, "llama", "causal_lm")
    assert model.partition_rules is conversion.ARCHITECTURES["LlamaForCausalLM"].partition_rules


def test_a_matrix_without_a_rule_is_an_error():
    mesh = mesh_of("auto")
    rules = ((r"layers/attn/q_proj/kernel", P(None, "fsdp", "tensor")),)
    with pytest.raises(ValueError, match=re.escape("no partition rule matches param layers/attn/k_proj/kernel "
                                                   "of shape (2, 64, 64)")):
        spec_for("layers/attn/k_proj/kernel", (2, 64, 64), rules, mesh)
    assert spec_for("norm/scale", (64,), rules, mesh) == P()  # a vector may go unmatched: replicated
    assert spec_for("layers/attn/q_proj/kernel", (2, 64, 64), rules, mesh) == P(None, "fsdp", "tensor")
