"""model(...) on a batch already on the devices: checked where it lives, never copied to the host and back.

Under ``jax.transfer_guard_device_to_host("disallow")`` any implicit device -> host copy raises; the checks'
scalars are read with explicit ``jax.device_get``, which the guard allows. The outputs equal those of the same
batch passed as numpy, and a bad device batch gets the same error as the numpy one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common.model import Model
from conversion import ARCHITECTURES
from tests.led import hf_led
from tests.lilt import hf_lilt
from tests.llama import hf_llama
from tests.longformer import hf_longformer
from tests.xlm import hf_xlm

# One head per family, the one whose checks read the most values (global masks, boxes, SQuAD inputs, eos counts).
CASES = {
    "LlamaForCausalLM": hf_llama,
    "LongformerForQuestionAnswering": hf_longformer,
    "LEDForSequenceClassification": hf_led,
    "LiltForTokenClassification": hf_lilt,
    "XLMForQuestionAnswering": hf_xlm,
}


def no_host_copies():
    """Any implicit device -> host copy inside raises; explicit jax.device_get (the checks' scalars) is allowed."""
    return jax.transfer_guard_device_to_host("disallow")


def batch_for(name: str) -> dict[str, np.ndarray]:
    if name == "LlamaForCausalLM":
        ids, mask = hf_llama.left_padded_batch()
        return dict(input_ids=ids, attention_mask=mask, labels=ids)
    if name == "LongformerForQuestionAnswering":
        ids, mask = hf_longformer.qa_batch()
        return dict(input_ids=ids, attention_mask=mask)  # the head's default global mask: the question
    if name == "LEDForSequenceClassification":
        ids, mask = hf_led.batch(lengths=(13, 9, 11))
        glob = np.zeros_like(mask)
        glob[:, 0] = 1
        return dict(input_ids=ids, attention_mask=mask, global_attention_mask=glob, labels=np.array([0, 2, 1]))
    if name == "LiltForTokenClassification":
        ids, mask, bbox, _ = hf_lilt.batch()
        return dict(input_ids=ids, attention_mask=mask, bbox=bbox)
    ids, mask, langs = hf_xlm.batch()
    return dict(input_ids=ids, attention_mask=mask, langs=langs, p_mask=np.zeros(ids.shape, np.float32),
                cls_index=np.zeros(ids.shape[0], np.int64), is_impossible=np.array([0, 1, 0]))


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    name = request.param
    arch = ARCHITECTURES[name]
    hf_cfg = CASES[name].hf_config().to_dict()
    config = arch.config_class.from_hf_dict(hf_cfg)
    params = arch.init_params(config, jax.random.PRNGKey(0), jnp.float32, arch.head)
    return name, Model(config, params, arch.spec), batch_for(name)


def test_device_batch_is_not_copied_to_the_host(case):
    name, model, batch = case
    expected = model(**batch)
    on_device = {k: jnp.asarray(v) for k, v in batch.items()}
    with no_host_copies():
        got = model(**on_device)
    for field in ("logits", "start_top_log_probs", "loss"):
        if getattr(expected, field, None) is not None:
            np.testing.assert_allclose(np.asarray(getattr(got, field)), np.asarray(getattr(expected, field)),
                                       atol=1e-6, err_msg=f"{name}.{field}")


def test_device_batch_errors_as_numpy(case):
    name, model, batch = case
    bad = dict(batch, input_ids=np.where(np.arange(batch["input_ids"].shape[-1]) == 3, 10_000, batch["input_ids"]))
    with pytest.raises(ValueError, match=r"input_ids holds 10000, outside the allowed range \[0, ") as host_error:
        model(**bad)
    with no_host_copies():
        with pytest.raises(ValueError) as device_error:
            model(**{k: jnp.asarray(v) for k, v in bad.items()})
    assert str(device_error.value) == str(host_error.value)
    mask = batch["attention_mask"].copy()
    mask[0, 1] = 2
    with pytest.raises(ValueError, match=r"attention_mask holds 2, outside the allowed range \[0, 1\]"):
        with no_host_copies():
            model(**dict(batch, attention_mask=jnp.asarray(mask)))


def test_family_specific_device_checks():
    """Boxes, global tokens on padding and SQuAD's is_impossible, each checked on the devices."""
    models = {}
    for name in ("LiltForTokenClassification", "LongformerForQuestionAnswering", "XLMForQuestionAnswering"):
        arch = ARCHITECTURES[name]
        config = arch.config_class.from_hf_dict(CASES[name].hf_config().to_dict())
        models[name] = Model(config, {}, arch.spec)  # the checks fail before the params are used
    lilt = batch_for("LiltForTokenClassification")
    box = lilt["bbox"].copy()
    box[1, 2] = [50, 10, 40, 20]  # x1 < x0
    with no_host_copies(), pytest.raises(ValueError, match=r"bbox at \(batch, token\) \(1, 2\) is \[50, 10, 40, 20\]: x1 < x0"):
        models["LiltForTokenClassification"](**dict(lilt, bbox=jnp.asarray(box)))
    qa = batch_for("LongformerForQuestionAnswering")
    glob = np.zeros_like(qa["attention_mask"])
    pad_row, pad_col = np.argwhere(qa["attention_mask"] == 0)[0]
    glob[pad_row, pad_col] = 1
    with no_host_copies(), pytest.raises(
            ValueError, match=rf"global_attention_mask marks padding position \({pad_row}, {pad_col}\)"):
        models["LongformerForQuestionAnswering"](**{k: jnp.asarray(v) for k, v in qa.items()},
                                                 global_attention_mask=jnp.asarray(glob))
    squad = batch_for("XLMForQuestionAnswering")
    with no_host_copies(), pytest.raises(
            ValueError, match=r"is_impossible holds 3: expected 0 or 1"):
        models["XLMForQuestionAnswering"](**dict(squad, is_impossible=jnp.asarray([0, 3, 1])))
