"""from_pretrained / save_pretrained: HF checkpoint directories <-> Model (config + param pytree)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from common.model import Model
from common.sharding import param_shardings, place
from conversion.io import CheckpointReader, write_safetensors
from conversion.mapping import get_path, matches_any, set_path, tree_paths
from conversion.orbax_io import is_orbax_dir, restore_params
from conversion.registry import ARCHITECTURES, Architecture


class CheckpointMismatchError(ValueError):
    """The checkpoint's tensors do not match what the architecture needs; the message lists every problem."""


# ------------------------------------------------------------------------------------- resolving
def resolve_directory(path_or_hub_id: str | os.PathLike) -> Path:
    """A local directory as is; otherwise a Hub id fetched with huggingface_hub (needs the network)."""
    path = Path(path_or_hub_id)
    if path.is_dir():
        return path
    text = str(path_or_hub_id)
    if path.exists() or text.startswith((".", "/", "~")) or text.count("/") != 1:
        raise FileNotFoundError(f"{text!r} is not a checkpoint directory (and does not look like a Hub id 'org/name')")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise FileNotFoundError(f"{text!r} is not a local directory, and huggingface_hub is not installed to fetch "
                                "it from the Hub (pip install huggingface_hub)") from None
    try:
        return Path(snapshot_download(text, allow_patterns=["*.json", "*.safetensors", "*.bin", "tokenizer*"]))
    except Exception as e:  # noqa: BLE001 - network, auth, missing repo: all end the same way for the caller
        raise FileNotFoundError(f"could not fetch {text!r} from the Hub ({type(e).__name__}: {e}); "
                                "pass a local checkpoint directory instead") from None


def architecture_for(hf_config: dict[str, Any], architecture: str | None) -> Architecture:
    name = architecture or (hf_config.get("architectures") or [None])[0]
    if name is None:
        raise ValueError("config.json has no 'architectures' entry; pass architecture=... (one of "
                         f"{sorted(ARCHITECTURES)})")
    if name not in ARCHITECTURES:
        raise ValueError(f"architecture {name!r} is not supported; expected one of {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[name]


def expected_tree(arch: Architecture, config, dtype) -> dict:
    """The param tree's paths, shapes and dtypes as init_params makes them (no memory allocated)."""
    return jax.eval_shape(lambda: arch.init_params(config, jax.random.PRNGKey(0), dtype, arch.head))


# --------------------------------------------------------------------------------------- loading
def check_checkpoint(arch: Architecture, config, shapes: dict[str, tuple[int, ...]], expected: dict) -> None:
    """Raise one CheckpointMismatchError naming every missing, unexpected or mis-shaped HF tensor."""
    n = config.num_hidden_layers
    wanted: dict[str, tuple[int, ...]] = {}
    for rule in arch.rules(config, arch.head):
        hf_shape = rule.hf_shape(get_path(expected, rule.path).shape)
        for name in rule.hf_names(arch.backbone_prefix, n):
            wanted[name] = hf_shape
    ignored = arch.ignored(config, arch.head)
    missing = sorted(set(wanted) - set(shapes))
    unexpected = sorted(k for k in set(shapes) - set(wanted) if not matches_any(k, ignored))
    misshaped = sorted(f"{k}: checkpoint {shapes[k]}, expected {wanted[k]}"
                       for k in set(wanted) & set(shapes) if tuple(shapes[k]) != tuple(wanted[k]))
    if missing or unexpected or misshaped:
        parts = [f"checkpoint does not match {arch.spec.hf_class}:"]
        for title, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshaped)):
            if items:
                parts.append(f"  {title} ({len(items)}): " + ", ".join(items))
        raise CheckpointMismatchError("\n".join(parts))


def load_params(reader: CheckpointReader, arch: Architecture, config, dtype, *, mesh=None,
                progress: bool = True) -> dict:
    """Read, transform, stack and cast every tensor, one rule at a time.

    With a mesh, each param goes straight to its sharding (the family's partition rules), and each device
    receives only its shard: the host holds one param at a time, never the model twice.
    """
    expected = expected_tree(arch, config, dtype)
    check_checkpoint(arch, config, reader.shapes, expected)
    shardings = param_shardings(expected, arch.partition_rules, mesh) if mesh is not None else None
    rules = arch.rules(config, arch.head)
    params: dict = {}
    for rule in tqdm(rules, desc="loading tensors", unit="tensor", disable=not progress, leave=False):
        arrays = [reader.get(name) for name in rule.hf_names(arch.backbone_prefix, config.num_hidden_layers)]
        value = rule.to_param(arrays).astype(jnp.dtype(dtype))
        array = place(value, get_path(shardings, rule.path)) if shardings is not None else jax.device_put(value)
        set_path(params, rule.path, array)
    return params


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} not found: a checkpoint directory needs config.json") from None


def from_pretrained(path_or_hub_id: str | os.PathLike, dtype=jnp.float32, attention: str = "auto", mesh=None,
                    *, architecture: str | None = None, progress: bool = True) -> Model:
    """Load an HF checkpoint directory (or Hub id), or a directory made by ``jaxzoo convert``, into a Model.

    dtype: parameter dtype (e.g. jnp.float32, jnp.bfloat16); attention: "reference" | "blocked" | "pallas" |
    "auto"; mesh: a ``common.sharding.make_mesh`` mesh to place the params on by the family's partition rules
    (then ``model(...)`` runs sharded); architecture: override config.json's "architectures" (e.g. load a LlamaForCausalLM checkpoint's
    backbone as "LlamaModel" is not possible: the names differ; pick the class the checkpoint was saved as).
    """
    directory = resolve_directory(path_or_hub_id)
    hf_config = read_json(directory / "config.json")
    arch = architecture_for(hf_config, architecture)
    config = arch.config_class.from_hf_dict(hf_config, attention_impl=attention)
    if is_orbax_dir(directory):
        target = expected_tree(arch, config, dtype)
        if mesh is not None:
            target = jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), target,
                                  param_shardings(target, arch.partition_rules, mesh))
        params = restore_params(directory, target)
    else:
        params = load_params(CheckpointReader(directory), arch, config, dtype, mesh=mesh, progress=progress)
    gen_path = directory / "generation_config.json"
    generation_config = json.loads(gen_path.read_text()) if gen_path.exists() else None
    return Model(config, params, arch.spec, generation_config, mesh=mesh)


# ---------------------------------------------------------------------------------------- saving
def check_tree(arch: Architecture, config, params) -> None:
    """The params must have exactly init_params' paths and shapes before we write them as a checkpoint."""
    dtype = jax.tree.leaves(params)[0].dtype
    expected = expected_tree(arch, config, dtype)
    want = {p: get_path(expected, p).shape for p in tree_paths(expected)}
    have = {p: np.shape(get_path(params, p)) for p in tree_paths(params)}
    problems = [f"missing {'/'.join(p)}" for p in sorted(set(want) - set(have))]
    problems += [f"unexpected {'/'.join(p)}" for p in sorted(set(have) - set(want))]
    problems += [f"{'/'.join(p)}: shape {have[p]}, expected {want[p]}" for p in sorted(set(want) & set(have))
                 if tuple(have[p]) != tuple(want[p])]
    if problems:
        raise CheckpointMismatchError(f"params do not match {arch.spec.hf_class}: " + "; ".join(problems))


def hf_tensors(model: Model) -> dict[str, np.ndarray]:
    """The model's params under their HF names, in HF layouts (the inverse of load_params)."""
    arch = ARCHITECTURES[model.architecture]
    check_tree(arch, model.config, model.params)
    tensors: dict[str, np.ndarray] = {}
    for rule in arch.rules(model.config, arch.head):
        value = np.asarray(jax.device_get(get_path(model.params, rule.path)))
        names = rule.hf_names(arch.backbone_prefix, model.config.num_hidden_layers)
        tensors.update({n: np.ascontiguousarray(a) for n, a in zip(names, rule.to_hf(value))})
    return tensors


def save_pretrained(model: Model, out_dir: str | os.PathLike, max_shard_size: int = 5 * 2**30) -> Path:
    """Write config.json (+ generation_config.json) and safetensors that transformers loads with no missing keys.

    Files are written to a temporary directory first and moved in only when all are complete, so a failure
    never leaves a half-written checkpoint behind.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"out_dir {out} exists and is not a directory")
    tensors = hf_tensors(model)
    hf_config = model.config.to_hf_dict()
    hf_config["architectures"] = [model.architecture]
    hf_config["dtype"] = str(next(iter(tensors.values())).dtype)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.tmp-") as tmp:
        tmp_dir = Path(tmp)
        write_safetensors(tensors, tmp_dir, max_shard_size)
        (tmp_dir / "config.json").write_text(json.dumps(hf_config, indent=2, sort_keys=True))
        if model.generation_config:
            (tmp_dir / "generation_config.json").write_text(json.dumps(model.generation_config, indent=2))
        out.mkdir(exist_ok=True)
        for stale in ("model.safetensors", "model.safetensors.index.json"):
            (out / stale).unlink(missing_ok=True)
        for f in tmp_dir.iterdir():
            shutil.move(str(f), out / f.name)
    return out
