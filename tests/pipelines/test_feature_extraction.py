"""feature-extraction against transformers 5.x's FeatureExtractionPipeline on the same bare-model directories."""

from __future__ import annotations

import numpy as np
import pytest

import conversion
from tests.pipelines.checkpoints import checkpoint
from tests.pipelines.oracle import assert_same_result, hf_pipeline

FAMILIES = ("led", "llama", "longformer", "xlm")
TEXTS = ["The value of the module is returned.", "Short", "If the class is defined, the object of its type is made"]


@pytest.fixture(scope="module")
def setups(tmp_path_factory):
    out = {}
    for family in FAMILIES:
        directory = str(checkpoint(tmp_path_factory.mktemp(family), family, "model"))
        out[family] = (conversion.pipeline("feature-extraction", directory, batch_size=2),
                       hf_pipeline("feature-extraction", directory))
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_features_equal_transformers(setups, family):
    ours, hf = setups[family]
    assert_same_result(ours(TEXTS[0]), hf(TEXTS[0]), "one text")
    assert_same_result(ours(TEXTS), hf(TEXTS), "texts")
    tensors = ours(TEXTS, return_tensors=True)
    assert [t.shape for t in tensors] == [tuple(t.shape) for t in hf(TEXTS, return_tensors=True)]
    np.testing.assert_allclose(tensors[1], np.asarray(hf(TEXTS[1])), atol=1e-5, rtol=0)


def test_a_head_model_is_refused(tmp_path):
    directory = checkpoint(tmp_path, "xlm", "with_lm_head")
    with pytest.raises(ValueError, match=r"task 'feature-extraction' cannot run on a XLMWithLMHeadModel: it needs "
                                         r"LEDModel or LiltModel or LlamaModel or LongformerModel or XLMModel"):
        conversion.pipeline("feature-extraction", directory)
