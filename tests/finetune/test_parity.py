"""The first step of every fine-tuning task equals transformers': the loss of the job's first batch (its features,
padding, global tokens, boxes, masking) under our train step equals the loss of the same batch in the HF class of
the same weights, within 1e-5 in float32.

The job starts each head the checkpoint lacks from init_params; the weights it starts from are exported with
save_pretrained and loaded by transformers, so both sides hold the same numbers.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

from common.finetune import job
from common.finetune.batches import TrainBatches, feature_length
from common.model import bucketed_static
from conversion.api import save_pretrained
from conversion.finetune import prepare
from tests.finetune import synthetic as S
from tests.pipelines.checkpoints import checkpoint

# (task, family, the head the checkpoint holds, rows, options)
CASES = {
    "text-classification/longformer-pairs": ("text-classification", "longformer", "masked_lm",
                                             lambda r, n: S.sentiment_rows(r, n, pairs=True), {}),
    "text-classification/xlm-multi-label": ("text-classification", "xlm", "with_lm_head", S.topics_rows, {}),
    "text-classification/llama": ("text-classification", "llama", "causal_lm", S.sentiment_rows, {}),
    "token-classification/longformer": ("token-classification", "longformer", "masked_lm", S.ner_rows, {}),
    "token-classification/xlm": ("token-classification", "xlm", "with_lm_head", S.ner_rows, {}),
    "token-classification/llama": ("token-classification", "llama", "causal_lm", S.ner_rows, {}),
    "question-answering/longformer-v2": ("question-answering", "longformer", "masked_lm",
                                         lambda r, n: S.squad_rows(r, n, unanswerable=0.3), {}),
    "question-answering/xlm-windows": ("question-answering", "xlm", "with_lm_head", S.squad_rows,
                                       {"max_seq_length": 16, "doc_stride": 4}),
    "question-answering/led": ("question-answering", "led", "conditional_generation", S.squad_rows, {}),
    "question-answering/llama": ("question-answering", "llama", "causal_lm", S.squad_rows, {}),
    "summarization/led": ("summarization", "led", "conditional_generation", S.summary_rows, {"max_target_length": 6}),
    "multiple-choice/longformer": ("multiple-choice", "longformer", "masked_lm", S.swag_rows, {}),
    "multiple-choice/xlm": ("multiple-choice", "xlm", "with_lm_head", S.swag_rows, {}),
    "masked-lm/longformer": ("masked-lm", "longformer", "masked_lm", S.cycle_rows, {"max_seq_length": 24}),
    "masked-lm/xlm": ("masked-lm", "xlm", "with_lm_head", S.cycle_rows, {"max_seq_length": 24}),
    "causal-lm/llama": ("causal-lm", "llama", "causal_lm", S.cycle_rows, {"max_seq_length": 24}),
    "causal-lm/xlm": ("causal-lm", "xlm", "with_lm_head", S.cycle_rows, {"max_seq_length": 24}),
    "document-token-classification/lilt": ("document-token-classification", "lilt", "model", S.form_rows, {}),
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    made = {}

    def get(family: str, head: str):
        if (family, head) not in made:
            made[family, head] = checkpoint(tmp_path_factory.mktemp(f"{family}-{head}"), family, head)
        return made[family, head]

    return get


def our_first_step(runner, model, data, training):
    """The job's first batch and the loss our train step computes on it (dropout off)."""
    feats = runner.features(data.rows["train"], data.sources["train"])
    batches = TrainBatches(np.asarray([feature_length(f, runner.fields) for f in feats]), training.batch_size,
                           training.seed)
    batch = job.batch_at(runner, feats, batches, 0, training.seed)
    checked = dict(model.spec.validate_inputs(model.config, batch))
    static = bucketed_static({k: checked.pop(k) for k in model.spec.static_args if k in checked})
    out = model.spec.forward(model.params, model.config, **checked, **static, deterministic=True)
    return batch, float(out.loss)


def torch_loss(directory, architecture: str, batch: dict) -> float:
    hf = getattr(transformers, architecture).from_pretrained(directory, attn_implementation="eager").eval()
    inputs = {k: torch.from_numpy(np.asarray(v)).to(torch.float32 if v.dtype.kind == "f" else torch.long)
              for k, v in batch.items()}
    with torch.no_grad():
        return float(hf(**inputs).loss)


@pytest.mark.parametrize("case", sorted(CASES))
def test_first_step_loss_equals_transformers(case, checkpoints, tmp_path):
    task, family, head, rows_of, options = CASES[case]
    rng = np.random.default_rng(0)
    train = S.write_jsonl(tmp_path / "train.jsonl", rows_of(rng, 12))
    validation = S.write_jsonl(tmp_path / "validation.jsonl", rows_of(rng, 4))
    runner, model, data, training, _ = prepare(task, checkpoints(family, head), train, validation, tmp_path / "out",
                                               batch_size=4, seed=3, **options)
    batch, ours = our_first_step(runner, model, data, training)
    assert np.isfinite(ours)
    if not task.endswith("-lm"):  # language-model rows are whole blocks; every other task's batch is padded
        assert (batch["attention_mask"] == 0).any(), "the batch must hold padding"
    export = save_pretrained(model, tmp_path / "start")
    theirs = torch_loss(export, model.architecture, batch)
    assert abs(ours - theirs) <= 1e-5, f"{case}: loss {ours} vs transformers {theirs}"
