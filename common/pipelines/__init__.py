"""Task pipelines: from text to answers, as transformers' ``pipeline(task)`` gives them (see README, "Pipelines").

``conversion.pipeline(task, model_dir)`` loads a checkpoint and its tokenizer and returns one of these; each
task is one module (pre-processing, the batched model call in bounded shapes, post-processing):

    base.py                 Pipeline: head check, options, one-vs-many inputs, batching of every input's rows
    batching.py             padded batches of bucketed shapes (few compiles whatever the input lengths)
    stats.py                ``pipe.stats``: batches, padding, compiles, time
    scores.py               softmax / sigmoid as transformers' pipelines compute them
    stop_strings.py         text-generation's stop strings, as transformers' StopStringCriteria
    jsonl.py                a pipeline over a JSON Lines file, resumable (``jaxzoo pipeline``)
    fill_mask.py            "fill-mask"
    text_classification.py  "text-classification" (alias "sentiment-analysis"; LiLT over words + boxes)
    feature_extraction.py   "feature-extraction" (LiLT over words + boxes)
    zero_shot_classification.py  "zero-shot-classification" (one text x hypothesis row per candidate label)
    token_classification.py "token-classification" (alias "ner"), every aggregation strategy
    question_answering.py   "question-answering" (extractive; strided windows of long contexts, as transformers 4.57)
    text_generation.py      "text-generation" (prompts left-padded into model.generate, continuous batching)
    text2text.py            "summarization", "text2text-generation" (LED; global attention on the first token)
    document.py             LiLT over words + boxes: "document-token-classification"
                            and "document-question-answering" (extractive, word spans, strided windows)
"""

from __future__ import annotations

import importlib

from common.pipelines.base import Pipeline

# task name -> "module:class" (aliases as transformers has them); imported when a pipeline is made
TASKS: dict[str, str] = {
    "fill-mask": "fill_mask:FillMask",
    "text-classification": "text_classification:TextClassification",
    "sentiment-analysis": "text_classification:TextClassification",
    "feature-extraction": "feature_extraction:FeatureExtraction",
    "zero-shot-classification": "zero_shot_classification:ZeroShotClassification",
    "token-classification": "token_classification:TokenClassification",
    "ner": "token_classification:TokenClassification",
    "question-answering": "question_answering:QuestionAnswering",
    "text-generation": "text_generation:TextGeneration",
    "summarization": "text2text:Summarization",
    "text2text-generation": "text2text:Text2TextGeneration",
    "document-token-classification": "document:DocumentTokenClassification",
    "document-question-answering": "document:DocumentQuestionAnswering",
}


def pipeline_class(task: str) -> type[Pipeline]:
    """The Pipeline class of ``task`` (ValueError listing the tasks for an unknown one)."""
    if task not in TASKS:
        raise ValueError(f"task {task!r} is not supported; expected one of {sorted(TASKS)}")
    module, name = TASKS[task].split(":")
    return getattr(importlib.import_module(f"common.pipelines.{module}"), name)


__all__ = ["TASKS", "Pipeline", "pipeline_class"]
