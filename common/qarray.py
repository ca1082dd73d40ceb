"""Recognising qwix's quantized arrays without importing qwix.

qwix (with the flax.nnx it loads) takes ~0.35 s to import, on every start of a process that never quantizes.
No ``qwix.QArray`` can exist before qwix is imported, so a value is one only if qwix is already loaded and the
value is an instance; the quantizing code (common.quantization) imports qwix when it runs.
"""

from __future__ import annotations

import sys


def is_qarray(x) -> bool:
    """Whether ``x`` is a ``qwix.QArray`` (never imports qwix)."""
    qwix = sys.modules.get("qwix")
    return qwix is not None and isinstance(x, qwix.QArray)
