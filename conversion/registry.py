"""ARCHITECTURES: every HF head class of the zoo -> its family, head function, init and name table.

The registry only collects: each family package declares its ``FAMILY`` (common.family) and conversion/ holds
its ``TABLE`` (conversion.mapping.NameTable); a table must name rules for exactly the family's heads.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from common.family import Family, HeadSpec
from conversion import led as led_table
from conversion import lilt as lilt_table
from conversion import llama as llama_table
from conversion import longformer as longformer_table
from conversion import xlm as xlm_table
from conversion.mapping import NameTable
from led_jax.family import FAMILY as LED
from lilt_jax.family import FAMILY as LILT
from llama_jax.family import FAMILY as LLAMA
from longformer_jax.family import FAMILY as LONGFORMER
from xlm_jax.family import FAMILY as XLM


@dataclasses.dataclass(frozen=True)
class Architecture:
    spec: HeadSpec
    family: str
    config_class: type
    init_params: Callable  # (config, key, dtype, head) -> params
    rules: Callable  # (config, head) -> list[Rule]
    ignored: Callable  # (config, head) -> regexes of HF keys to drop on load
    backbone_prefix: str  # prefix of the backbone's keys in this head's state_dict

    @property
    def head(self) -> str:
        return self.spec.head

    @property
    def partition_rules(self) -> tuple:
        """(regex over param path, PartitionSpec) pairs, see common.sharding; carried by the HeadSpec (so by
        every Model)."""
        return self.spec.partition_rules


def architectures(family: Family, table: NameTable) -> dict[str, Architecture]:
    """One Architecture per head of ``family``, its names from ``table``."""
    if set(table.heads) != set(family.head_names):
        raise ValueError(f"{family.name}: the name table's heads {sorted(table.heads)} differ from the family's "
                         f"{sorted(family.head_names)}")
    return {h.hf_class: Architecture(family.spec(h.name), family.name, family.config_class, family.init_params,
                                     table.rules, table.ignored, h.prefix)
            for h in family.heads}


# One line per family: its declaration and its name table.
FAMILIES: dict[str, tuple[Family, NameTable]] = {
    "llama": (LLAMA, llama_table.TABLE),
    "longformer": (LONGFORMER, longformer_table.TABLE),
    "led": (LED, led_table.TABLE),
    "lilt": (LILT, lilt_table.TABLE),
    "xlm": (XLM, xlm_table.TABLE),
}

ARCHITECTURES: dict[str, Architecture] = {
    hf_class: architecture for family, table in FAMILIES.values()
    for hf_class, architecture in architectures(family, table).items()
}
