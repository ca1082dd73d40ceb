"""HF checkpoint conversion: ``from_pretrained``, ``save_pretrained``, the ``ARCHITECTURES`` table, and
``combine_text_and_layout`` (a LiLT checkpoint from a RoBERTa-family text model + a LiLT layout stream) and
``pipeline`` (task pipelines over a checkpoint: common.pipelines)."""

from conversion.api import CheckpointMismatchError, from_pretrained, save_pretrained
from conversion.lilt_combine import combine_text_and_layout
from conversion.pipeline import pipeline
from conversion.registry import ARCHITECTURES, Architecture

__all__ = ["ARCHITECTURES", "Architecture", "CheckpointMismatchError", "combine_text_and_layout", "from_pretrained",
           "pipeline", "save_pretrained"]
