"""Pallas kernels: block-sparse flash attention (sliding window + global keys, all keys, causal).

:func:`pallas_attention` is the entry point the models use; :mod:`common.kernels.flash` holds the kernels and
their custom VJP, :mod:`common.kernels.tables` the static block tables.
"""

from common.kernels.flash import LAUNCHERS, Plan, block_sparse_attention
from common.kernels.ops import DEFAULT_BLOCKS, pallas_attention, platform_launcher
from common.kernels.tables import Layout

__all__ = ["DEFAULT_BLOCKS", "LAUNCHERS", "Layout", "Plan", "block_sparse_attention", "pallas_attention",
           "platform_launcher"]
