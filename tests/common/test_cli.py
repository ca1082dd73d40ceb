"""The jaxzoo command line: demo checkpoint, generate, and convert to Orbax and back."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import transformers

import conversion
from common import tokenization
from conversion.cli import main
from conversion.mapping import get_path, tree_paths
from llama_jax.tokenizer import LlamaTokenizer
from tests.parity import assert_close


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    d = tmp_path_factory.mktemp("demo") / "llama"
    # The tokenizer learns from the pydoc topics alone (0.5 M chars): parsing every standard-library module for
    # its docstrings is most of the command's time, and what the tests below check holds for any corpus.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tokenization, "docs_corpus", functools.partial(tokenization.docs_corpus, stdlib_docstrings=False))
        assert main(["demo-checkpoint", str(d), "--vocab-size", "600"]) == 0
    return d


@pytest.fixture(scope="module")
def demo_model(demo):
    """The demo checkpoint loaded once for the module (its forward and generate compile once)."""
    return conversion.from_pretrained(demo, progress=False)


def test_demo_checkpoint_loads_in_transformers(demo, demo_model):
    """transformers finds every weight (it would silently initialise a missing one) and computes our logits."""
    hf, info = transformers.AutoModelForCausalLM.from_pretrained(demo, output_loading_info=True)
    assert all(not v for v in info.values()), info  # missing, unexpected, mismatched keys, error messages
    tok = transformers.AutoTokenizer.from_pretrained(demo)
    ours = LlamaTokenizer.from_pretrained(demo)
    assert tok("def f(x): return x")["input_ids"] == ours.encode("def f(x): return x")
    assert hf.config.vocab_size == ours.vocab_size
    batch = ours(["def f(x): return x", "Hi"])
    with torch.no_grad():
        ref = hf(input_ids=torch.as_tensor(batch["input_ids"]),
                 attention_mask=torch.as_tensor(batch["attention_mask"])).logits.numpy()
    got = demo_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert_close(got, ref, batch["attention_mask"], "logits")


def test_generate_prints_prompt_and_continuation(demo, demo_model, capsys):
    assert main(["generate", "--checkpoint", str(demo), "--prompt", "The with statement", "--prompt", "Hi",
                 "--max-new-tokens", "5", "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("The with statement") and lines[1].startswith("Hi")
    tok = LlamaTokenizer.from_pretrained(demo)
    batch = tok(["The with statement", "Hi"])
    seqs = demo_model.generate(batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=5)
    assert lines[0] == "The with statement" + tok.decode(seqs[0, batch["input_ids"].shape[1]:])


def test_convert_round_trip_is_bit_identical(demo, demo_model, tmp_path):
    orbax_dir, back = tmp_path / "orbax", tmp_path / "back"
    assert main(["convert", str(demo), str(orbax_dir), "--quiet"]) == 0
    assert main(["convert", str(orbax_dir), str(back), "--quiet"]) == 0
    a, b, c = (demo_model, *(conversion.from_pretrained(d, progress=False) for d in (orbax_dir, back)))
    for p in tree_paths(a.params):
        x = np.asarray(get_path(a.params, p))
        for other in (b, c):
            y = np.asarray(get_path(other.params, p))
            assert x.dtype == y.dtype and np.array_equal(x, y), p
    assert a.config == b.config == c.config
    assert (back / "tokenizer.json").read_text() == (demo / "tokenizer.json").read_text()


def test_cli_errors_are_messages_not_tracebacks(tmp_path, capsys, monkeypatch):
    assert main(["generate", "--checkpoint", str(tmp_path / "missing" / "x"), "--prompt", "a"]) == 2
    assert "not a checkpoint directory" in capsys.readouterr().err
    monkeypatch.setattr(tokenization, "docs_corpus", lambda: ["a tiny corpus"])  # the vocab check comes first
    assert main(["demo-checkpoint", str(tmp_path / "d"), "--vocab-size", "10"]) == 2
    assert "vocab_size = 10 is invalid" in capsys.readouterr().err


def test_train_flag_errors_name_the_allowed_values(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--mesh", "1,3"])
    assert "expected three integers 'data,fsdp,tensor'" in capsys.readouterr().err
