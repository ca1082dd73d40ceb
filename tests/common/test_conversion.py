"""Checkpoint conversion: HF -> ours -> HF round trips, file formats, and mismatch errors."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

import conversion
from common.model import Model
from conversion.api import CheckpointMismatchError, expected_tree
from conversion.mapping import get_path, tree_paths
from tests.factory import save_hf, torch_out
from tests.llama.hf_llama import HF_CLASSES, hf_model, left_padded_batch

VARIANTS = [{}, {"tie_word_embeddings": True}, {"attention_bias": True, "mlp_bias": True, "head_dim": 16}]


def flat(tree):
    return {"/".join(p): np.asarray(get_path(tree, p)) for p in tree_paths(tree)}


@pytest.mark.parametrize("variant", range(len(VARIANTS)))
@pytest.mark.parametrize("head", sorted(HF_CLASSES))
def test_round_trip(tmp_path, head, variant):
    """HF -> ours -> save_pretrained -> transformers loads it with no missing keys and the same outputs;
    and from_pretrained of our save is bit-identical to the first load."""
    hf = hf_model(head, **VARIANTS[variant])
    ours = conversion.from_pretrained(save_hf(hf, tmp_path / "hf"), progress=False)
    out_dir = conversion.save_pretrained(ours, tmp_path / "ours")

    back, info = getattr(transformers, HF_CLASSES[head]).from_pretrained(out_dir, output_loading_info=True, attn_implementation="eager")
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    back.eval()
    ids, mask = left_padded_batch()
    a, b = torch_out(hf, input_ids=ids, attention_mask=mask), torch_out(back, input_ids=ids, attention_mask=mask)
    for key in a.keys():
        if isinstance(a[key], torch.Tensor):
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)

    again = conversion.from_pretrained(out_dir, progress=False)
    x, y = flat(ours.params), flat(again.params)
    assert x.keys() == y.keys()
    for k in x:
        assert x[k].dtype == y[k].dtype and np.array_equal(x[k], y[k]), k
    assert again.config == ours.config


@pytest.mark.parametrize("head", sorted(HF_CLASSES))
def test_init_tree_equals_conversion_tree(tmp_path, head):
    hf = hf_model(head, attention_bias=True)
    ours = conversion.from_pretrained(save_hf(hf, tmp_path / "m"), progress=False)
    arch = conversion.ARCHITECTURES[HF_CLASSES[head]]
    init = arch.init_params(ours.config, jax.random.PRNGKey(1), jnp.float32, arch.head)
    got = {k: (v.shape, v.dtype) for k, v in flat(ours.params).items()}
    want = {k: (v.shape, v.dtype) for k, v in flat(init).items()}
    assert got == want
    # and eval_shape, which conversion validates against, agrees with the real init
    shapes = expected_tree(arch, ours.config, jnp.float32)
    assert {"/".join(p): (get_path(shapes, p).shape, get_path(shapes, p).dtype) for p in tree_paths(shapes)} == want


def test_sharded_safetensors_and_bin(tmp_path):
    hf = hf_model("causal_lm")
    ids, mask = left_padded_batch()
    ref = conversion.from_pretrained(save_hf(hf, tmp_path / "single"), progress=False)(input_ids=ids, attention_mask=mask).logits
    sharded = save_hf(hf, tmp_path / "sharded", max_shard_size="20KB")
    assert (sharded / "model.safetensors.index.json").exists()
    got = conversion.from_pretrained(sharded, progress=False)(input_ids=ids, attention_mask=mask).logits
    np.testing.assert_array_equal(np.asarray(got), np.asarray(ref))
    # torch .bin (single file): still read when torch is installed
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    torch.save(hf.state_dict(), bin_dir / "pytorch_model.bin")
    (bin_dir / "config.json").write_text((tmp_path / "single" / "config.json").read_text())
    got = conversion.from_pretrained(bin_dir, progress=False)(input_ids=ids, attention_mask=mask).logits
    np.testing.assert_array_equal(np.asarray(got), np.asarray(ref))


def test_our_sharded_save_loads_in_transformers(tmp_path):
    hf = hf_model("causal_lm")
    ours = conversion.from_pretrained(save_hf(hf, tmp_path / "hf"), progress=False)
    out = conversion.save_pretrained(ours, tmp_path / "ours", max_shard_size=20_000)
    assert (out / "model.safetensors.index.json").exists()
    back = transformers.LlamaForCausalLM.from_pretrained(out, attn_implementation="eager").eval()
    ids, mask = left_padded_batch()
    torch.testing.assert_close(torch_out(back, input_ids=ids).logits, torch_out(hf, input_ids=ids).logits, rtol=0, atol=0)


def test_bf16_checkpoint_cast(tmp_path):
    hf = hf_model("causal_lm").to(torch.bfloat16)
    d = save_hf(hf, tmp_path / "bf16")
    ours32 = conversion.from_pretrained(d, dtype=jnp.float32, progress=False)
    ours16 = conversion.from_pretrained(d, dtype=jnp.bfloat16, progress=False)
    emb = hf.model.embed_tokens.weight.detach()
    np.testing.assert_array_equal(np.asarray(ours32.params["embed_tokens"]["embedding"]), emb.float().numpy())
    assert ours16.params["embed_tokens"]["embedding"].dtype == jnp.bfloat16
    saved = conversion.save_pretrained(ours16, tmp_path / "back")
    assert json.loads((saved / "config.json").read_text())["dtype"] == "bfloat16"
    back = transformers.LlamaForCausalLM.from_pretrained(saved, dtype=torch.bfloat16)
    torch.testing.assert_close(back.model.embed_tokens.weight, emb, rtol=0, atol=0)


def test_missing_unexpected_misshaped_listed_by_name(tmp_path):
    from safetensors.torch import load_file, save_file

    d = save_hf(hf_model("causal_lm"), tmp_path / "m")
    state = load_file(d / "model.safetensors")
    state.pop("model.layers.1.mlp.up_proj.weight")
    state["model.layers.0.extra.weight"] = torch.zeros(3)
    state["model.norm.weight"] = torch.zeros(5)
    save_file(state, d / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointMismatchError) as e:
        conversion.from_pretrained(d, progress=False)
    msg = str(e.value)
    assert "model.layers.1.mlp.up_proj.weight" in msg and "missing" in msg
    assert "model.layers.0.extra.weight" in msg and "unexpected" in msg
    assert "model.norm.weight: checkpoint (5,), expected (32,)" in msg


def test_bad_directories(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a checkpoint directory"):
        conversion.from_pretrained(tmp_path / "nope" / "deeper")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        conversion.from_pretrained(tmp_path / "empty")
    d = save_hf(hf_model("causal_lm"), tmp_path / "m")
    cfg = json.loads((d / "config.json").read_text())
    cfg["architectures"] = ["GPT2LMHeadModel"]
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="GPT2LMHeadModel.*not supported"):
        conversion.from_pretrained(d, progress=False)


def test_save_refuses_wrong_tree_without_writing(tmp_path):
    hf = hf_model("causal_lm")
    ours = conversion.from_pretrained(save_hf(hf, tmp_path / "hf"), progress=False)
    params = jax.tree.map(lambda x: x, ours.params)
    del params["lm_head"]
    broken = Model(ours.config, params, ours.spec)
    with pytest.raises(CheckpointMismatchError, match="missing lm_head/kernel"):
        conversion.save_pretrained(broken, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_architectures_cover_llama_heads():
    assert set(HF_CLASSES.values()) <= set(conversion.ARCHITECTURES)


def test_bin_without_torch_says_to_install_it(tmp_path, monkeypatch):
    import sys

    from conversion.io import CheckpointReader

    d = tmp_path / "bin"
    d.mkdir()
    (d / "pytorch_model.bin").write_bytes(b"not read")
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    with pytest.raises(ImportError, match=r"needs torch \(pip install torch\)"):
        CheckpointReader(d)


def test_hub_id_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="could not fetch 'someorg/some-model' from the Hub"):
        conversion.from_pretrained("someorg/some-model")


def test_bf16_compute_over_float32_params(tmp_path):
    import dataclasses

    hf = hf_model("causal_lm")
    ours = conversion.from_pretrained(save_hf(hf, tmp_path / "m"), progress=False)
    mixed = Model(dataclasses.replace(ours.config, compute_dtype="bfloat16"), ours.params, ours.spec)
    ids, mask = left_padded_batch()
    out = mixed(input_ids=ids, attention_mask=mask).logits
    assert out.dtype == jnp.bfloat16 and ours.params["norm"]["scale"].dtype == jnp.float32
    ref = torch_out(hf, input_ids=ids, attention_mask=mask).logits.numpy()
    diff = np.abs(np.asarray(out, np.float32) - ref)[mask.astype(bool)]
    assert diff.max() < 0.1 * np.abs(ref).max()
