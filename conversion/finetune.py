"""``conversion.finetune``: fine-tune a checkpoint directory on local data files for one task (``jaxzoo finetune``).

The checkpoint's family and the task decide the head (``common.finetune.tasks``); a head the checkpoint lacks
(a masked-LM or bare-backbone file fine-tuned for token classification) starts as ``init_params`` starts it, with
the label set the training file holds (num_labels, id2label, label2id, problem_type in the exported config.json).
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any

import jax

from common.finetune import job
from common.finetune.data import read_rows
from common.finetune.task import TaskOptions
from common.finetune.tasks import task_class
from common.sharding import make_mesh
from conversion.api import from_pretrained, resolve_directory, save_pretrained
from conversion.io import read_model_config
from conversion.registry import ARCHITECTURES

TASK_OPTIONS = tuple(f.name for f in dataclasses.fields(TaskOptions))
TRAINING_OPTIONS = tuple(f.name for f in dataclasses.fields(job.TrainingOptions))


def family_of(hf_config: dict, directory: Path) -> str:
    model_type = hf_config.get("model_type")
    for arch in ARCHITECTURES.values():
        if arch.config_class.model_type == model_type:
            return arch.family
    families = sorted({a.config_class.model_type for a in ARCHITECTURES.values()})
    raise ValueError(f"{directory / 'config.json'}: model_type {model_type!r} is not one of {families}")


def architecture_for_task(family: str, head: str) -> str:
    return next(name for name, arch in ARCHITECTURES.items() if arch.family == family and arch.head == head)


def finetune(task: str, model: str | os.PathLike, train: str | os.PathLike, validation: str | os.PathLike,
             out: str | os.PathLike, test: str | os.PathLike | None = None, *, mesh=None, attention: str = "auto",
             log=print, **options: Any) -> dict[str, Any]:
    """Fine-tune ``model`` for ``task`` on ``train``, keep the best checkpoint by the validation metric, export it
    to OUT/model (an HF checkpoint with its tokenizer) and write OUT/metrics.json and OUT/curves.png.

    task: one of common.finetune.tasks.TASKS ("text-classification", "token-classification",
    "question-answering", "summarization", "multiple-choice", "masked-lm", "causal-lm",
    "document-token-classification"); model: a checkpoint directory or Hub id with its tokenizer files;
    train / validation / test: JSON lines, CSV or Parquet files (or Hub dataset ids); mesh: a jax Mesh or a
    (data, fsdp, tensor) shape to train on; options: the fields of ``common.finetune.task.TaskOptions``
    (max_seq_length, doc_stride, max_target_length, num_beams, mlm_probability, label_names, columns) and of
    ``common.finetune.job.TrainingOptions`` (epochs, max_steps, batch_size, learning_rate, eval_every, metric,
    resume, ...). Returns the contents of metrics.json.
    """
    runner, loaded, data, training, directory = prepare(task, model, train, validation, out, test, mesh=mesh,
                                                        attention=attention, **options)
    return job.run(runner, loaded, data, training, out, directory, save_pretrained, log=log)


def prepare(task: str, model: str | os.PathLike, train: str | os.PathLike, validation: str | os.PathLike,
            out: str | os.PathLike, test: str | os.PathLike | None = None, *, mesh=None, attention: str = "auto",
            **options: Any) -> tuple:
    """Everything ``finetune`` does before training: (task bound to its model, the model, the data, the training
    options, the checkpoint directory), the arguments of ``common.finetune.job.run``."""
    unknown = sorted(set(options) - set(TASK_OPTIONS) - set(TRAINING_OPTIONS))
    if unknown:
        raise ValueError(f"finetune: unexpected options {unknown}; it takes {sorted(TASK_OPTIONS + TRAINING_OPTIONS)}")
    task_options = TaskOptions(**{k: v for k, v in options.items() if k in TASK_OPTIONS})
    training = job.TrainingOptions(**{k: v for k, v in options.items() if k in TRAINING_OPTIONS})
    cls = task_class(task)
    directory = resolve_directory(model)
    hf_config = read_model_config(directory / "config.json")
    family = family_of(hf_config, directory)
    target = architecture_for_task(family, cls.head_for(family))
    tokenizer = ARCHITECTURES[target].spec.family.load_tokenizer(directory)

    cache = Path(out) / "cache" / "datasets"
    sources = {"train": str(train), "validation": str(validation), **({"test": str(test)} if test else {})}
    rows = {split: read_rows(source, cache) for split, source in sources.items()}
    runner = cls(task_options, tokenizer, family)
    runner.prepare(rows["train"], sources["train"])
    if isinstance(mesh, (tuple, list)):
        size = math.prod(mesh)
        mesh = make_mesh(*mesh, devices=jax.devices()[:size]) if size > 1 else None
    loaded = from_pretrained(directory, attention=attention, mesh=mesh, architecture=target,
                             init_missing=jax.random.PRNGKey(training.seed), progress=False,
                             config_overrides=runner.config_overrides())
    runner.bind(loaded)
    return runner, loaded, job.Data(rows, sources), training, directory
