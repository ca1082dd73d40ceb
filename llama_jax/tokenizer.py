"""Llama tokenizers on the `tokenizers` library, giving the ids of transformers 5.x `AutoTokenizer`.

Two kinds of `tokenizer.json` exist for Llama checkpoints:

* Llama 1/2 ("sentencepiece" kind): SentencePiece-style BPE with byte fallback, `<unk>`/`<s>`/`</s>`.
  The files carry the legacy pipeline (normalizer Prepend("▁") + Replace(" ", "▁")), but transformers 5.x
  `LlamaTokenizer` ignores it and rebuilds the tokenizer from the vocabulary and merges: no normalizer, a
  `Metaspace` pre-tokenizer, a fixed decoder, added tokens from `tokenizer_config.json`. We rebuild it the
  same way, because the file's own pipeline gives other ids after inline special tokens ("hello</s>world")
  and for leading spaces.
* Llama 3 ("byte_level" kind): tiktoken-style byte-level BPE. transformers loads it as-is
  (`TokenizersBackend`), and so do we.

Detection rule, from the files' contents (the rule `AutoTokenizer` applies):
    1. `tokenizer.json` has a `ByteLevel` step in its pre-tokenizer, decoder or post-processor
       -> "byte_level": used as-is (transformers does so even when the repo declares `LlamaTokenizer`);
    2. otherwise, `tokenizer_class` in tokenizer_config.json (else config.json) is `LlamaTokenizer[Fast]`
       -> "sentencepiece": rebuilt as above;
    3. otherwise (another class such as "PreTrainedTokenizerFast", or no class at all: 5.x registers no
       tokenizer for model type "llama") -> "as_is": transformers' generic backend uses the file unchanged,
       legacy normalizer included, and so do we.
The model must be BPE in every case.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, pre_tokenizers, processors

from common.files import reading
from common.tokenization import (TokenizerBase, add_tokens, as_added_token, check_padding_side, describe,
                                 read_json_if_present, read_tokenizer_json)

_LLAMA_CLASSES = ("LlamaTokenizer", "LlamaTokenizerFast")
_SPECIAL_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


def _has_byte_level(component) -> bool:
    """True when a serialized pipeline component (possibly a nested Sequence) contains a ByteLevel step."""
    if isinstance(component, dict):
        return component.get("type") == "ByteLevel" or any(_has_byte_level(v) for v in component.values())
    if isinstance(component, list):
        return any(_has_byte_level(v) for v in component)
    return False



def _rebuild_sentencepiece(spec: dict, config: dict) -> Tokenizer:
    """The pipeline transformers 5.x `LlamaTokenizer.__init__` builds from the file's vocab and merges."""
    model = spec["model"]
    rebuilt = dict(spec)
    # LlamaTokenizer passes only vocab, merges, fuse_unk and byte_fallback to BPE: the file's unk_token,
    # ignore_merges etc. are dropped, and the added tokens are registered again afterwards (see _add_tokens).
    rebuilt["model"] = {
        "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
        "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
        "vocab": model["vocab"], "merges": model["merges"],
    }
    rebuilt.update(normalizer=None, pre_tokenizer=None, decoder=None, added_tokens=[],
                   truncation=None, padding=None)
    tok = Tokenizer.from_str(json.dumps(rebuilt))

    add_prefix_space = config.get("add_prefix_space")
    add_prefix_space = True if add_prefix_space is None else add_prefix_space
    # transformers' _get_prepend_scheme: a missing/None `legacy` counts as False (LlamaTokenizer's default).
    scheme = ("always" if config.get("legacy") else "first") if add_prefix_space else "never"
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=scheme, split=False)
    steps = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    if add_prefix_space:
        steps.append(decoders.Strip(content=" ", left=1))
    tok.decoder = decoders.Sequence(steps)
    if tok.post_processor is None:
        # transformers drops add_bos_token/add_eos_token from the config when tokenizer.json exists, so a
        # file without a post-processor gets a template with neither.
        tok.post_processor = processors.TemplateProcessing(single="$A:0", pair="$A:0 $B:1", special_tokens=[])
    return tok


class LlamaTokenizer(TokenizerBase):
    """Llama 1/2/3 tokenizer matching transformers 5.x `AutoTokenizer` ids (see the module docstring).

    Attributes:
        bos_token_id, eos_token_id, pad_token_id: ids of the named special tokens, or None.
        vocab_size: number of ids the tokenizer can produce (largest id + 1, added tokens included; equals
            `len(AutoTokenizer...)`, which for Llama 3 is 128256 where HF's `.vocab_size` says 128000).
        padding_side: default side for batch padding, "left" unless the files say otherwise.
        kind: "sentencepiece" (rebuilt pipeline) or "byte_level" / "as_is" (file used unchanged).
    """

    def __init__(self, tokenizer: Tokenizer, special_tokens: dict[str, str | None], padding_side: str, kind: str):
        self._tokenizer = tokenizer
        self.kind = kind
        self.padding_side = check_padding_side(padding_side)
        self.special_tokens = special_tokens
        ids = {name: (tokenizer.token_to_id(tok) if tok is not None else None) for name, tok in special_tokens.items()}
        self.bos_token_id: int | None = ids.get("bos_token")
        self.eos_token_id: int | None = ids.get("eos_token")
        self.pad_token_id: int | None = ids.get("pad_token")
        self.vocab_size: int = max(tokenizer.get_vocab(with_added_tokens=True).values()) + 1

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> "LlamaTokenizer":
        """Read `tokenizer.json` (required), `tokenizer_config.json` and `special_tokens_map.json` from a directory."""
        directory = Path(directory)
        if not (directory / "tokenizer.json").is_file():
            raise ValueError(f"directory: no tokenizer.json in {str(directory)!r}")
        spec = read_tokenizer_json(directory / "tokenizer.json")
        if spec.get("model", {}).get("type", "BPE") != "BPE":
            raise ValueError(f"directory: tokenizer.json holds a {spec['model']['type']!r} model, Llama needs 'BPE'")
        config = read_json_if_present(directory / "tokenizer_config.json")
        declared = config.get("tokenizer_class") or read_json_if_present(directory / "config.json").get("tokenizer_class")
        added_decoder = config.get("added_tokens_decoder")
        if added_decoder is None:
            # transformers reads special_tokens_map.json and tokenizer.json's added tokens only when the config
            # has no added_tokens_decoder, and then the map's entries override the config's.
            special_map = read_json_if_present(directory / "special_tokens_map.json")
            config.update({k: as_added_token(v, special=True) if k in _SPECIAL_NAMES else v
                           for k, v in special_map.items()})
            added = [as_added_token(t) for t in sorted(spec.get("added_tokens", []), key=lambda t: t["id"])]
        else:
            added = [as_added_token(added_decoder[k]) for k in sorted(added_decoder, key=int)]

        byte_level = any(_has_byte_level(spec.get(k)) for k in ("pre_tokenizer", "decoder", "post_processor"))
        if byte_level or declared not in _LLAMA_CLASSES:
            kind = "byte_level" if byte_level else "as_is"
            with reading(directory / "tokenizer.json", "tokenizer"):  # valid JSON, but not a tokenizer
                tok = Tokenizer.from_file(str(directory / "tokenizer.json"))
            defaults = {}
        else:
            kind = "sentencepiece"
            with reading(directory / "tokenizer.json", "tokenizer"):  # e.g. no vocab or merges in its model
                tok = _rebuild_sentencepiece(spec, config)
            defaults = {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"}
        tok.no_truncation()
        tok.no_padding()

        padding = spec.get("padding") or {}
        named = {name: as_added_token(config.get(name, defaults.get(name))) for name in _SPECIAL_NAMES}
        if "pad_token" not in config and padding.get("pad_token"):
            named["pad_token"] = padding["pad_token"]
        # A named token that is listed as an added token takes that entry's flags, as in transformers.
        by_content = {t.content: t for t in added}
        named = {k: by_content.get(str(v), v) if v is not None else None for k, v in named.items()}
        extra = config.get("extra_special_tokens") or config.get("additional_special_tokens") or []
        extra = [as_added_token(t) for t in extra] if isinstance(extra, list) else []
        add_tokens(tok, added, list(named.values()), extra)
        tok.encode_special_tokens = bool(config.get("split_special_tokens", False))

        padding_side = config.get("padding_side") or padding.get("direction", "left").lower()
        special_tokens = {k: (str(v) if v is not None else None) for k, v in named.items()}
        return cls(tok, special_tokens, padding_side, kind)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids of one text, shape [seq]; with `add_special_tokens` the file's template adds BOS (and EOS)."""
        if not isinstance(text, str):
            raise ValueError(f"text: expected a str, got {type(text).__name__}")
        return self._tokenizer.encode(text, add_special_tokens=bool(add_special_tokens)).ids

    def __call__(self, texts: str | list[str], add_special_tokens: bool = True,
                 padding_side: str | None = None) -> dict[str, np.ndarray]:
        """Tokenize a text or a batch, padded to the longest sequence.

        Returns {"input_ids": int32 [batch, seq], "attention_mask": int32 [batch, seq]} (batch = 1 for a str),
        padded with pad_token_id (else eos_token_id, else 0) on `padding_side` (default `self.padding_side`).
        """
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts):
            raise ValueError(f"texts: expected a str or a list of str, got {describe(texts)}")
        if not texts:
            raise ValueError("texts: got an empty list, expected at least one text")
        side = self.padding_side if padding_side is None else check_padding_side(padding_side)
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=bool(add_special_tokens))
        return self._pad(encodings, side)
