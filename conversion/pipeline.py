"""``conversion.pipeline``: a task pipeline over a checkpoint directory (or Hub id, or a loaded Model)."""

from __future__ import annotations

import os
from pathlib import Path

import jax.numpy as jnp

from common import compile_cache as compile_cache_module
from common.model import Model
from common.pipelines import Pipeline, pipeline_class
from conversion.api import from_pretrained, resolve_directory


def pipeline(task: str, model: str | os.PathLike | Model, tokenizer=None, *, dtype=jnp.float32,
             attention: str = "auto", mesh=None, batch_size: int = 8, buckets=None, compile_cache=None,
             **task_defaults) -> Pipeline:
    """``pipe = pipeline(task, model)``; ``pipe(inputs, **options)`` gives transformers' pipeline outputs.

    task: one of ``common.pipelines.TASKS``; model: a checkpoint directory, a Hub id or a loaded Model (then
    ``tokenizer`` is needed); tokenizer: a tokenizer, a directory to read one from, or None (the one saved with
    the model); dtype / attention / mesh: as ``from_pretrained``; batch_size: rows per model call (inputs are
    padded into a bounded set of shapes, see common.pipelines.batching); buckets: the padded lengths, increasing
    (None: powers of two to 256, then steps of 1.5x); compile_cache: JAX's persistent compilation cache, so a
    later process with the same model and shapes does not compile again: None / True (on, in
    ``common.compile_cache.default_directory()``: $JAXZOO_COMPILE_CACHE, "off" there turns it off), a directory,
    or False (JAX's settings left as they are); task_defaults: the task's options (e.g. ``top_k=3``), which a
    call may override. ``pipe.stats`` counts inputs, batches, padding, compilations and time.
    """
    task_class = pipeline_class(task)
    compile_cache_module.resolve(compile_cache)
    directory = None
    if not isinstance(model, Model):
        directory = resolve_directory(model)
        model = from_pretrained(directory, dtype=dtype, attention=attention, mesh=mesh, progress=False)
    if tokenizer is None:
        if directory is None:
            raise ValueError("tokenizer: a loaded Model carries no tokenizer; pass tokenizer= (a tokenizer or the "
                             "directory it was saved in)")
        tokenizer = directory
    if isinstance(tokenizer, (str, os.PathLike)):
        tokenizer = load_tokenizer(model, Path(tokenizer))
    return task_class(model, tokenizer, batch_size=batch_size, buckets=buckets, **task_defaults)


def load_tokenizer(model: Model, directory: Path):
    """The model family's tokenizer from ``directory`` (tokenizer_config.json and the files it names)."""
    load = model.spec.family.load_tokenizer
    if load is None:
        raise ValueError(f"{model.architecture}: its family declares no tokenizer; pass tokenizer=")
    return load(resolve_directory(directory))
