"""transformers' own pipelines on the same checkpoint directory: the reference every pipeline test compares with."""

from __future__ import annotations

import functools

import numpy as np
import torch
import transformers


@functools.lru_cache(maxsize=None)
def hf_pipeline(task: str, directory: str):
    torch.manual_seed(0)
    return transformers.pipeline(task, model=directory, device="cpu")


def assert_same_result(ours, theirs, where: str = "result", atol: float = 1e-5) -> None:
    """Equal structure (dict keys in order, list lengths, types), equal strings and ints, floats within atol."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict), f"{where}: {type(ours).__name__}, expected dict"
        assert list(ours) == list(theirs), f"{where}: keys {list(ours)}, expected {list(theirs)}"
        for key in theirs:
            assert_same_result(ours[key], theirs[key], f"{where}[{key!r}]", atol)
    elif isinstance(theirs, (list, tuple)):
        assert isinstance(ours, type(theirs)), f"{where}: {type(ours).__name__}, expected {type(theirs).__name__}"
        assert len(ours) == len(theirs), f"{where}: {len(ours)} items, expected {len(theirs)}"
        for i, (a, b) in enumerate(zip(ours, theirs)):
            assert_same_result(a, b, f"{where}[{i}]", atol)
    elif isinstance(theirs, np.floating):  # transformers' token-classification scores are numpy float32
        assert type(ours) is type(theirs), f"{where}: {type(ours).__name__} {ours!r}, expected " \
                                           f"{type(theirs).__name__} {theirs!r}"
        assert abs(float(ours) - float(theirs)) <= atol, f"{where}: {ours!r}, expected {theirs!r} (atol {atol})"
    elif isinstance(theirs, float):
        assert type(ours) is float, f"{where}: {type(ours).__name__} {ours!r}, expected float {theirs!r}"
        assert abs(ours - theirs) <= atol, f"{where}: {ours!r}, expected {theirs!r} (atol {atol})"
    elif isinstance(theirs, (torch.Tensor, np.ndarray)):
        np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), atol=atol, rtol=0, err_msg=where)
    else:
        assert type(ours) is type(theirs) and ours == theirs, f"{where}: {ours!r}, expected {theirs!r}"
