"""conversion.lilt_combine: a RoBERTa / XLM-RoBERTa text checkpoint + a LiLT layout stream -> one LiLT checkpoint.

Every check is against transformers: the combined directory loads in its LiltModel with nothing missing (but
the pooler a masked-LM file lacks), each tensor equals its source, our model matches transformers' on it, and
the copied vocabulary reads the same in our document tokenizers and in transformers' AutoTokenizer.
"""

from __future__ import annotations

import contextlib
import json

import jax
import numpy as np
import pytest
import torch
import transformers
from safetensors.torch import save_file
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

import conversion
from conversion.lilt_combine import combine_text_and_layout
from lilt_jax import load_tokenizer
from tests.factory import torch_out
from tests.lilt.hf_lilt import TINY, batch, hf_model
from tests.parity import assert_close, perturb_norms_and_biases

TEXT_VOCAB = 120  # differs from the LiLT file's 99: the combined model takes the text model's vocabulary
TEXT = {k: TINY[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                             "max_position_embeddings", "layer_norm_eps", "pad_token_id", "bos_token_id",
                             "eos_token_id", "initializer_range")} | {"type_vocab_size": 1}  # as roberta-base
TEXT_CLASSES = {  # case -> (transformers class, tokenizer our loader and AutoTokenizer should give)
    "roberta_mlm": ("RobertaForMaskedLM", "LiltTokenizer", "LayoutLMv3Tokenizer"),
    "xlm_roberta_model": ("XLMRobertaModel", "LayoutXLMTokenizer", "LayoutXLMTokenizer"),
}
LINES = ["Invoice number 12345 dated 2024-01-31", "Total amount due: $1,234.56", "Name Address Phone Date",
         "café naïve façade déjà vu"] * 20


def _text_model(case: str, seed: int = 1, **overrides) -> torch.nn.Module:
    cls = getattr(transformers, TEXT_CLASSES[case][0])
    config_cls = transformers.XLMRobertaConfig if case.startswith("xlm") else transformers.RobertaConfig
    torch.manual_seed(seed)
    return perturb_norms_and_biases(cls(config_cls(**{**TEXT, "vocab_size": TEXT_VOCAB, **overrides})).eval())


def _write_text_tokenizer(case: str, directory) -> None:
    """A byte-level BPE as roberta-base ships it (vocab.json + merges.txt), or a Unigram tokenizer.json as
    xlm-roberta-base: special tokens first, <mask> last, the vocabulary TEXT_VOCAB wide."""
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    if case.startswith("xlm"):
        tok = Tokenizer(models.Unigram())
        tok.pre_tokenizer, tok.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=TEXT_VOCAB - 1, special_tokens=specials, unk_token="<unk>",
                                          show_progress=False)
    else:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer, tok.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=TEXT_VOCAB - 1, special_tokens=specials, show_progress=False)
    tok.train_from_iterator(LINES, trainer)
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True)])
    if case.startswith("xlm"):
        tok.save(str(directory / "tokenizer.json"))
        declared = "XLMRobertaTokenizer"
    else:
        spec = json.loads(tok.to_str())
        vocab = spec["model"]["vocab"]
        vocab["<mask>"] = len(vocab)
        (directory / "vocab.json").write_text(json.dumps(vocab))
        (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) if isinstance(m, list)
                                                                         else m for m in spec["model"]["merges"]))
        declared = "RobertaTokenizer"
    (directory / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": declared,
                                                                 "model_max_length": 62}))


def _sources(tmp_path, case: str, layout_head: str = "token_classification"):
    text = _text_model(case)
    text.save_pretrained(tmp_path / "text")
    _write_text_tokenizer(case, tmp_path / "text")
    layout = hf_model(layout_head, seed=2)
    layout.save_pretrained(tmp_path / "layout")
    return text, layout


def warnings_if(condition: bool):
    return pytest.warns(UserWarning, match="pooler") if condition else contextlib.nullcontext()


@pytest.mark.parametrize("case", sorted(TEXT_CLASSES))
def test_combined_checkpoint(tmp_path, case):
    text, layout = _sources(tmp_path, case)
    out = combine_text_and_layout(tmp_path / "text", tmp_path / "layout", tmp_path / "combined")

    hf, info = transformers.LiltModel.from_pretrained(out, output_loading_info=True, attn_implementation="eager")
    has_pooler = case != "roberta_mlm"  # RobertaForMaskedLM has no pooler: transformers starts one
    assert not info["unexpected_keys"] and not info["mismatched_keys"], info
    assert sorted(info["missing_keys"]) == ([] if has_pooler else ["pooler.dense.bias", "pooler.dense.weight"])
    assert hf.config.vocab_size == TEXT_VOCAB and hf.config.type_vocab_size == 1  # the text model's
    assert hf.config.channel_shrink_ratio == TINY["channel_shrink_ratio"]  # the layout model's

    text_sd = {k.removeprefix("roberta."): v for k, v in text.state_dict().items()}
    layout_sd = {k.removeprefix("lilt."): v for k, v in layout.state_dict().items()}
    combined = hf.state_dict()
    n_layout = 0
    for name, value in combined.items():
        if name.endswith("position_ids") or (name.startswith("pooler.") and not has_pooler):
            continue
        source = layout_sd if "layout" in name else text_sd
        n_layout += "layout" in name
        torch.testing.assert_close(value, source[name], rtol=0, atol=0, msg=name)
    assert n_layout == 5 + 2 + 2 + TINY["num_hidden_layers"] * 16  # every layout tensor came from the LiLT file

    ids, mask, boxes, _ = batch(vocab=TEXT_VOCAB)
    ref = torch_out(hf.eval(), input_ids=ids, bbox=boxes, attention_mask=mask)
    kwargs = {} if has_pooler else {"architecture": "LiltModel", "init_missing": jax.random.PRNGKey(0)}
    with warnings_if(not has_pooler):
        ours = conversion.from_pretrained(out, progress=False, **kwargs)
    got = ours(input_ids=ids, bbox=boxes, attention_mask=mask)
    assert_close(got.last_hidden_state, ref.last_hidden_state.numpy(), None, "last_hidden_state")
    if has_pooler:
        assert_close(got.pooler_output, ref.pooler_output.numpy(), None, "pooler_output")

    # The heads start from the combined backbone as from any LiLT checkpoint.
    with pytest.warns(UserWarning, match="classifier"):
        head = conversion.from_pretrained(out, architecture="LiltForTokenClassification", progress=False,
                                          init_missing=jax.random.PRNGKey(1))
    assert head(input_ids=ids, bbox=boxes, attention_mask=mask).logits.shape == ids.shape + (2,)


@pytest.mark.parametrize("case", sorted(TEXT_CLASSES))
def test_combined_tokenizer(tmp_path, case):
    _sources(tmp_path, case)
    out = combine_text_and_layout(tmp_path / "text", tmp_path / "layout", tmp_path / "combined")
    ours, hf = load_tokenizer(out), transformers.AutoTokenizer.from_pretrained(str(out))
    assert (type(ours).__name__, type(hf).__name__) == TEXT_CLASSES[case][1:]
    words = [["Invoice", "number", "12345"], ["Total", "amount", "due:", "$1,234.56", "café"]]
    boxes = [[[10, 10, 90, 30], [100, 10, 200, 30], [210, 10, 300, 30]],
             [[0, 0, 1000, 1000], [5, 500, 60, 520], [70, 500, 90, 520], [95, 500, 300, 520], [0, 0, 0, 0]]]
    got = ours(words, boxes=boxes)  # pads to the longest
    ref = hf(words, boxes=boxes, padding=True, return_tensors="np")
    for key in ("input_ids", "attention_mask", "bbox"):
        np.testing.assert_array_equal(got[key], ref[key], err_msg=key)
    assert got["input_ids"].max() < TEXT_VOCAB


def test_command_line(tmp_path, capsys):
    from conversion.cli import main

    _sources(tmp_path, "xlm_roberta_model")
    assert main(["combine-lilt", str(tmp_path / "text"), str(tmp_path / "layout"), str(tmp_path / "out")]) == 0
    assert "wrote a LiltModel checkpoint" in capsys.readouterr().out
    assert conversion.from_pretrained(tmp_path / "out", progress=False).config.vocab_size == TEXT_VOCAB
    assert main(["combine-lilt", str(tmp_path / "layout"), str(tmp_path / "layout"), str(tmp_path / "x")]) == 2
    assert "text_checkpoint: model_type 'lilt'" in capsys.readouterr().err


def test_bad_sources(tmp_path):
    _sources(tmp_path, "roberta_mlm")
    combine = lambda text, layout: combine_text_and_layout(text, layout, tmp_path / "out")  # noqa: E731

    with pytest.raises(ValueError, match="text_checkpoint: model_type 'lilt'"):
        combine(tmp_path / "layout", tmp_path / "layout")
    with pytest.raises(ValueError, match="layout_checkpoint: model_type 'roberta'"):
        combine(tmp_path / "text", tmp_path / "text")
    with pytest.raises(FileNotFoundError, match="not a checkpoint directory"):
        combine(tmp_path / "nowhere", tmp_path / "layout")

    _text_model("roberta_mlm", num_hidden_layers=3).save_pretrained(tmp_path / "deeper")
    with pytest.raises(conversion.CheckpointMismatchError, match="num_hidden_layers: text 3, layout 2"):
        combine(tmp_path / "deeper", tmp_path / "layout")

    # The box-position table is max_position_embeddings long: a text model with longer positions cannot
    # take this layout stream.
    _text_model("roberta_mlm", max_position_embeddings=80).save_pretrained(tmp_path / "longer")
    with pytest.raises(conversion.CheckpointMismatchError,
                       match=r"layout_checkpoint lilt.layout_embeddings.box_position_embeddings.weight: shape \(64"):
        combine(tmp_path / "longer", tmp_path / "layout")

    # A text file missing a tensor: named, and nothing is written.
    sd = {k: v.contiguous() for k, v in _text_model("roberta_mlm").state_dict().items()
          if k != "roberta.encoder.layer.1.attention.self.query.weight" and not k.startswith("lm_head.decoder")}
    (tmp_path / "partial").mkdir()
    save_file(sd, str(tmp_path / "partial" / "model.safetensors"))
    (tmp_path / "partial" / "config.json").write_text((tmp_path / "text" / "config.json").read_text())
    with pytest.raises(conversion.CheckpointMismatchError,
                       match=r"text_checkpoint has no roberta.encoder.layer.1.attention.self.query.weight"):
        combine(tmp_path / "partial", tmp_path / "layout")
    assert not (tmp_path / "out").exists()
