"""HF checkpoint conversion: ``from_pretrained``, ``save_pretrained``, the ``ARCHITECTURES`` table, and
``combine_text_and_layout`` (a LiLT checkpoint from a RoBERTa-family text model + a LiLT layout stream) and
``pipeline`` (task pipelines over a checkpoint: common.pipelines), ``quantize_model`` (int8 / int4 weights:
common.quantization)."""

from conversion.api import CheckpointMismatchError, from_pretrained, quantize_model, save_pretrained
from conversion.lilt_combine import combine_text_and_layout
from conversion.pipeline import pipeline
from conversion.registry import ARCHITECTURES, Architecture

__all__ = ["ARCHITECTURES", "Architecture", "CheckpointMismatchError", "combine_text_and_layout", "from_pretrained",
           "pipeline", "quantize_model", "save_pretrained"]
