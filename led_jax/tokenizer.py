"""LED's tokenizer is BART's byte-level BPE, which is RoBERTa's: transformers 5.x maps ``LEDTokenizer[Fast]`` and
``BartTokenizer[Fast]`` to ``RobertaTokenizer`` (see common/roberta_tokenizer.py)."""

from common.roberta_tokenizer import RobertaTokenizer as LEDTokenizer

__all__ = ["LEDTokenizer"]
