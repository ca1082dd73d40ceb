"""The family declarations (common.family) and the registry that collects them: no model is compiled here."""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest

import conversion
from common.family import checked_labels, with_backbone_fields
from common.outputs import BaseModelOutput, SequenceClassifierOutput
from conversion.mapping import NameTable
from conversion.registry import FAMILIES, architectures


def test_every_hf_class_is_collected_once_from_its_family():
    declared = [h.hf_class for family, _ in FAMILIES.values() for h in family.heads]
    assert len(declared) == len(set(declared)) == len(conversion.ARCHITECTURES) == 26
    for name, (family, table) in FAMILIES.items():
        assert family.name == name and set(table.heads) == set(family.head_names)
        for head in family.heads:
            arch = conversion.ARCHITECTURES[head.hf_class]
            assert (arch.family, arch.head, arch.backbone_prefix) == (name, head.name, head.prefix)
            assert arch.spec.declaration is head and arch.spec.family is family


def test_a_table_that_misses_a_head_is_refused():
    family, table = FAMILIES["lilt"]
    partial = NameTable(table.backbone, {k: v for k, v in table.heads.items() if k != "question_answering"},
                        table.ignored)
    with pytest.raises(ValueError, match=r"lilt: the name table's heads .* differ from the family's"):
        architectures(family, partial)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_head_functions_take_the_family_inputs_then_the_heads_then_static(name):
    family, _ = FAMILIES[name]
    for head in family.heads:
        sig = inspect.signature(family.head_function(head.name))
        positional = [p.name for p in sig.parameters.values() if p.kind == p.POSITIONAL_OR_KEYWORD]
        keyword = [p.name for p in sig.parameters.values() if p.kind == p.KEYWORD_ONLY]
        assert positional == ["params", "config", *family.inputs, *head.inputs, *family.static_args], head.name
        assert keyword[:4] == ["deterministic", "rng", "output_hidden_states", "output_attentions"], head.name
        assert family.head_function(head.name) is family.head_function(head.name)  # one function: one jit cache


def test_an_unknown_head_is_named_with_the_choices():
    family, _ = FAMILIES["xlm"]
    with pytest.raises(ValueError, match=r"head 'causal_lm' is invalid for xlm: expected one of \('model', "):
        family.head("causal_lm")


def test_labels_on_a_span_head_point_at_the_positions():
    family, _ = FAMILIES["longformer"]
    config = family.config_class()
    ids = np.zeros((2, 5), np.int32)
    with pytest.raises(ValueError, match=r"question_answering takes no labels \(use start_positions / end_positions\)"):
        checked_labels(family.head("question_answering"), config, {"labels": np.zeros(2, np.int32)}, ids.shape)
    with pytest.raises(ValueError, match=r"^model takes no labels$"):
        checked_labels(family.head("model"), config, {"labels": np.zeros(2, np.int32)}, ids.shape)
    got = checked_labels(family.head("sequence_classification"), config, {"labels": [0, 1]}, ids.shape)
    np.testing.assert_array_equal(got["labels"], [0, 1])


def test_backbone_fields_are_carried_only_where_the_head_left_them_empty():
    backbone = BaseModelOutput(last_hidden_state=np.ones((1, 2, 3)), hidden_states=("h",), attentions=("a",))
    head = SequenceClassifierOutput(logits=np.zeros((1, 2)), attentions=("own",))
    out = with_backbone_fields(head, backbone)
    assert out.hidden_states == ("h",) and out.attentions == ("own",) and out.global_attentions is None
    assert not hasattr(out, "last_hidden_state")
    assert with_backbone_fields(backbone, backbone) is backbone
    assert dataclasses.fields(out) == dataclasses.fields(head)
