"""HF checkpoint conversion: ``from_pretrained``, ``save_pretrained`` and the ``ARCHITECTURES`` table."""

from conversion.api import CheckpointMismatchError, from_pretrained, save_pretrained
from conversion.registry import ARCHITECTURES, Architecture

__all__ = ["ARCHITECTURES", "Architecture", "CheckpointMismatchError", "from_pretrained", "save_pretrained"]
