"""Orbax checkpoint directories: the param pytree (sharded-ready, via Orbax) + the HF config beside it.

Layout of a converted directory::

    DIR/config.json             HF config (with "architectures"), so the model is self-describing
    DIR/generation_config.json  if the source had one
    DIR/tokenizer*.json         copied from the source when present
    DIR/params/                 Orbax StandardCheckpointer tree
    DIR/jaxzoo.json             {"format": "orbax-params", "version": 1}: marks the directory as ours
                                (+ "quantization": {"bits", "group_size", "embeddings", "lm_head", "fit_groups"} for a
                                quantized model: common.quantization.QuantConfig)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jax

from common.files import read_json

MARKER = "jaxzoo.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model")


def is_orbax_dir(path: Path) -> bool:
    return (Path(path) / MARKER).is_file() and (Path(path) / "params").is_dir()


def copy_tokenizer_files(src: Path, dst: Path) -> None:
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)


def save_orbax(params, hf_config: dict, dst: Path, generation_config: dict | None = None,
               quantization: dict | None = None) -> Path:
    """Write the params with Orbax and the configs beside them; ``quantization`` (a QuantConfig as a dict) marks
    quantized params, so that loading rebuilds their structure."""
    dst = Path(dst).absolute()
    if (dst / "params").exists():
        raise FileExistsError(f"{dst / 'params'} already exists; choose an empty destination")
    dst.mkdir(parents=True, exist_ok=True)
    import orbax.checkpoint as ocp  # ~0.2 s, imported when a checkpoint is written or read

    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(dst / "params", params)
    checkpointer.wait_until_finished()
    (dst / "config.json").write_text(json.dumps(hf_config, indent=2, sort_keys=True))
    if generation_config:
        (dst / "generation_config.json").write_text(json.dumps(generation_config, indent=2))
    # Written last: a directory without the marker is never taken for a finished conversion.
    marker = {"format": "orbax-params", "version": 1}
    if quantization is not None:
        marker["quantization"] = quantization
    (dst / MARKER).write_text(json.dumps(marker))
    return dst


def orbax_quantization(path: Path) -> dict | None:
    """The QuantConfig (as a dict) an Orbax directory's params were quantized with, or None for float params."""
    return read_json(Path(path) / MARKER).get("quantization")


def restore_params(src: Path, abstract_tree):
    """Restore onto the shapes/dtypes (and shardings, if the abstract leaves carry them) of abstract_tree."""
    target = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=getattr(s, "sharding", None)),
                          abstract_tree)
    import orbax.checkpoint as ocp

    return ocp.StandardCheckpointer().restore(Path(src).absolute() / "params", target)
