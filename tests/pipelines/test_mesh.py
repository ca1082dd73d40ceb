"""Pipelines on a mesh: batches split over the data axes (8 simulated CPU devices), results equal to one device's,
on an Auto mesh (common.sharding.make_mesh) and on an Explicit one built with jax.make_mesh."""

from __future__ import annotations

import jax
import pytest

import conversion
from common.sharding import AXES, make_mesh
from tests.pipelines.checkpoints import checkpoint, labelled
from tests.pipelines.oracle import assert_same_result

TEXTS = ["a b c", "the value of the module is returned", "x", "If the class is defined, the object is made.",
         "one", "two words", "and three words", "the fourth and the fifth", "nine"]


@pytest.fixture(scope="module")
def directory(tmp_path_factory):
    return checkpoint(tmp_path_factory.mktemp("mesh"), "longformer", "token_classification", **labelled(3))


@pytest.mark.parametrize("kind", ["auto", "explicit"])
def test_a_pipeline_on_a_mesh_equals_one_device(directory, kind):
    if kind == "auto":
        mesh = make_mesh(data=4, fsdp=2)
    else:
        mesh = jax.make_mesh((4, 2, 1), AXES)  # Explicit axis types: jax's default
    plain = conversion.pipeline("ner", directory, batch_size=8, compile_cache=False)
    sharded = conversion.pipeline("ner", directory, batch_size=8, mesh=mesh, compile_cache=False)
    ours = sharded(TEXTS)  # a full batch of 8 rows split over data x fsdp, then a batch of one, replicated
    assert sorted(rows for rows, _ in sharded.stats.shapes) == [1, 8]
    assert_same_result(ours, plain(TEXTS))
