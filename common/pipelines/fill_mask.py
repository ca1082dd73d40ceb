"""fill-mask: the most likely tokens at each mask of a text, as transformers 5.x's FillMaskPipeline.

One mask -> [{"score", "token", "token_str", "sequence"}] (top_k of them, best first); several masks -> one such
list per mask, in text order (the other masks kept in each "sequence"); a list of texts -> a list of those, except
that a one-element list gives its element's result (transformers' rule).
"""

from __future__ import annotations

import numpy as np

from common.pipelines.base import Encoded, Pipeline
from common.pipelines.scores import softmax


class FillMask(Pipeline):
    task = "fill-mask"
    heads = ("masked_lm", "with_lm_head")
    options = {"top_k": 5, "targets": None}

    def __init__(self, model, tokenizer, **kwargs):
        if getattr(tokenizer, "mask_token_id", None) is None:
            raise ValueError("fill-mask: the tokenizer defines no mask token")
        super().__init__(model, tokenizer, **kwargs)

    def resolve_options(self, opts: dict) -> dict:
        opts = super().resolve_options(opts)
        top_k = opts["top_k"]
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
            raise ValueError(f"top_k: expected an int >= 1, got {top_k!r}")
        opts["target_ids"] = None if opts["targets"] is None else self.target_ids(opts["targets"])
        return opts

    def target_ids(self, targets) -> np.ndarray:
        """Each target's id: a vocabulary entry as is, else the first token of its tokenization (as
        transformers, which warns); duplicates dropped the way transformers does (``list(set(...))``)."""
        targets = [targets] if isinstance(targets, str) else targets
        if not isinstance(targets, (list, tuple)) or not targets or not all(isinstance(t, str) for t in targets):
            raise ValueError(f"targets: expected a str or a non-empty list of str, got {targets!r:.80}")
        vocab = self.tokenizer.get_vocab()
        ids = []
        for target in targets:
            if target in vocab:
                ids.append(vocab[target])
                continue
            pieces = self.tokenizer.encode(target, add_special_tokens=False)
            if not pieces:
                raise ValueError(f"targets: {target!r} tokenizes to nothing; it cannot fill a mask")
            ids.append(pieces[0])
        return np.array(list(set(ids)))

    def preprocess(self, text: str, where: str, opts: dict) -> Encoded:
        row = self.encode(text)
        if not (row["input_ids"] == self.tokenizer.mask_token_id).any():
            raise ValueError(f"{where}: no mask token {self.tokenizer.mask_token!r} in the text")
        return Encoded([row])

    def postprocess(self, encoded: Encoded, outputs: list[dict], opts: dict):
        ids = encoded.rows[0]["input_ids"]
        target_ids = opts["target_ids"]
        top_k = opts["top_k"] if target_ids is None else min(opts["top_k"], len(target_ids))
        masked = np.flatnonzero(ids == self.tokenizer.mask_token_id)
        probs = softmax(outputs[0]["logits"][masked].astype(np.float32))
        if target_ids is not None:
            probs = probs[:, target_ids]
        single_mask = len(masked) == 1
        result = []
        for m, p in zip(masked, probs):
            best = np.argsort(-p, kind="stable")[:top_k]
            row = []
            for k in best:
                token = int(k) if target_ids is None else int(target_ids[k])
                tokens = ids.copy()
                tokens[m] = token
                if self.tokenizer.pad_token_id is not None:
                    tokens = tokens[tokens != self.tokenizer.pad_token_id]
                row.append({"score": float(p[k]), "token": token,
                            "token_str": self.tokenizer.decode([token], skip_special_tokens=False),
                            "sequence": self.tokenizer.decode(tokens, skip_special_tokens=single_mask)})
            result.append(row)
        return result[0] if single_mask else result

    def arrange(self, inputs, single: bool, results: list, opts: dict):
        return results[0] if single or len(results) == 1 else results
