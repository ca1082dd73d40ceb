"""The one factory of tiny random transformers checkpoints (built locally; nothing from the Hub).

Each family's ``tests/<family>/hf_<family>.py`` declares a ``TinyCheckpoints`` (its HF classes, its tiny config, the
per-head config defaults transformers needs) plus the inputs its tests use; building, saving and running the
reference model is the same for every family and lives here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import transformers

from tests.parity import perturb_norms_and_biases


@dataclasses.dataclass(frozen=True)
class TinyCheckpoints:
    config_class: str  # the transformers config class, e.g. "LlamaConfig"
    heads: dict  # head name -> transformers class name
    tiny: dict  # the tiny config's fields
    head_defaults: dict = dataclasses.field(default_factory=dict)  # head -> config fields it needs (QA: 2 labels)
    # head -> a builder of the reference model (config -> module) for a head transformers 5.x no longer has
    builders: dict = dataclasses.field(default_factory=dict)

    def hf_config(self, **overrides):
        """The tiny config with ``overrides``, on HF's eager attention (its reference math, which returns the
        attention probabilities)."""
        config = getattr(transformers, self.config_class)(**{**self.tiny, **overrides})
        config._attn_implementation = "eager"
        return config

    def hf_model(self, head: str, seed: int = 0, **overrides) -> torch.nn.Module:
        """A random ``head`` in eval mode, its norms and biases perturbed so every tensor's mapping is tested."""
        torch.manual_seed(seed)
        config = self.hf_config(**{**self.head_defaults.get(head, {}), **overrides})
        build: Callable = self.builders.get(head) or getattr(transformers, self.heads[head])
        return perturb_norms_and_biases(build(config).eval())


def save_hf(model: torch.nn.Module, directory: Path, **kwargs) -> Path:
    """``model.save_pretrained(directory)``; returns the directory."""
    model.save_pretrained(directory, **kwargs)
    return directory


def torch_out(model, **inputs):
    """The reference model's output on numpy inputs (converted to tensors), without gradients."""
    with torch.no_grad():
        return model(**{k: torch.as_tensor(v) if isinstance(v, np.ndarray) else v for k, v in inputs.items()})
