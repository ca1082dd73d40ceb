"""Longformer's tokenizer is RoBERTa's byte-level BPE: transformers 5.x maps ``LongformerTokenizer[Fast]`` to
``RobertaTokenizer`` (see common/roberta_tokenizer.py for what is rebuilt from the files, and how)."""

from common.roberta_tokenizer import RobertaTokenizer as LongformerTokenizer

__all__ = ["LongformerTokenizer"]
