"""Task pipelines: from text to answers, as transformers' ``pipeline(task)`` gives them (see README, "Pipelines").

``conversion.pipeline(task, model_dir)`` loads a checkpoint and its tokenizer and returns one of these; each
task is one module (pre-processing, the batched model call in bounded shapes, post-processing):

    base.py                 Pipeline: head check, options, one-vs-many inputs, batching of every input's rows
    batching.py             padded batches of power-of-two shapes (few compiles whatever the input lengths)
    scores.py               softmax / sigmoid as transformers' pipelines compute them
    fill_mask.py            "fill-mask"
    text_classification.py  "text-classification" (alias "sentiment-analysis")
    feature_extraction.py   "feature-extraction"
"""

from common.pipelines.base import Pipeline
from common.pipelines.feature_extraction import FeatureExtraction
from common.pipelines.fill_mask import FillMask
from common.pipelines.text_classification import TextClassification

# task name -> Pipeline class (aliases as transformers has them)
TASKS: dict[str, type[Pipeline]] = {
    "fill-mask": FillMask,
    "text-classification": TextClassification,
    "sentiment-analysis": TextClassification,
    "feature-extraction": FeatureExtraction,
}

__all__ = ["TASKS", "Pipeline", "FeatureExtraction", "FillMask", "TextClassification"]
