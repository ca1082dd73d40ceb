"""from_pretrained / save_pretrained: HF checkpoint directories <-> Model (config + param pytree)."""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from common.distributed import barrier, fetch, is_writer
from common.model import Model
from common.quantization import QuantConfig, is_quantized, quant_config_of, quantize_params, quantize_placed
from common.sharding import param_shardings, place
from conversion.io import (CheckpointReader, check_config_fields, read_generation_config, read_model_config,
                          write_safetensors)
from conversion.mapping import get_path, matches_any, modern_name, set_path, tree_paths
from conversion.orbax_io import is_orbax_dir, orbax_quantization, restore_params
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
@dataclasses.dataclass
class CheckpointMatch:
    """How a checkpoint's tensors map onto an architecture's rules (see :func:`match_checkpoint`)."""

    prefix: str  # backbone prefix the file uses
    sources: dict[str, str]  # HF name the rules expect -> the name in the file (legacy names, alternatives)
    missing_rules: list  # rules with no tensor in the file: those with a default, and all with allow_missing
    dropped: list  # another head's tensors, outside the backbone (only with allow_missing)


def _family_prefixes(arch: Architecture) -> list[str]:
    """Backbone prefixes to try: the architecture's own; for a head, also none (a bare backbone's file, to start
    the head from); for a bare backbone, also its family's head prefixes (loading ``LongformerModel`` from a
    ``LongformerForMaskedLM`` file). transformers allows both."""
    if arch.backbone_prefix:
        return [arch.backbone_prefix, ""]
    heads = sorted({a.backbone_prefix for a in ARCHITECTURES.values() if a.family == arch.family} - {""})
    return [""] + heads


def match_checkpoint(arch: Architecture, config, shapes: dict[str, tuple[int, ...]], expected: dict,
                     allow_missing: bool = False) -> CheckpointMatch:
    """Match every rule's tensors to the file's names, or raise one CheckpointMismatchError naming every missing,
    unexpected or mis-shaped HF tensor.

    Accepted besides the current names: transformers' legacy ``LayerNorm.gamma/beta``, each rule's
    ``alternatives``, and (for a bare backbone) a file saved from one of the family's heads, whose head tensors
    are then left out. With ``allow_missing``, rules with no tensor at all in the file are returned instead of
    reported (a rule with only some of its layers is still an error), and tensors outside the backbone (the
    file's own head) are returned as ``dropped`` instead of reported as unexpected.
    """
    by_modern = {modern_name(k): k for k in shapes}
    # Each rule with its param's shape: a stacked rule has one tensor per layer of the leaf's leading axis.
    rules = [(rule, get_path(expected, rule.path).shape) for rule in arch.rules(config, arch.head)]

    def found(prefix):
        return sum(any(c in by_modern for c in cands)
                   for rule, shape in rules for cands in rule.candidate_names(prefix, shape))

    prefix = max(_family_prefixes(arch), key=found)  # ties keep the architecture's own prefix (listed first)
    sources: dict[str, str] = {}
    missing, misshaped, missing_rules = [], [], []
    for rule, param_shape in rules:
        hf_shape = rule.hf_shape(param_shape)
        per_tensor = rule.candidate_names(prefix, param_shape)
        hits = [next((by_modern[c] for c in cands if c in by_modern), None) for cands in per_tensor]
        if not any(hits) and (allow_missing or rule.default is not None):
            missing_rules.append(rule)
            continue
        for cands, hit in zip(per_tensor, hits):
            if hit is None:
                missing.append(cands[0])
                continue
            sources[cands[0]] = hit
            if tuple(shapes[hit]) != tuple(hf_shape):
                misshaped.append(f"{hit}: checkpoint {tuple(shapes[hit])}, expected {hf_shape}")
    used = set(sources.values())
    ignored = arch.ignored(config, arch.head)
    foreign_head = prefix != arch.backbone_prefix  # a head's file read as a bare backbone: skip its head tensors
    unexpected = sorted(k for k in shapes if k not in used and not matches_any(modern_name(k), ignored)
                        and not (foreign_head and not k.startswith(prefix)))
    if foreign_head:
        unexpected = [k for k in unexpected if not matches_any(modern_name(k)[len(prefix):], ignored)]
    dropped = []
    if allow_missing and arch.backbone_prefix:  # starting a new head: the file's own head is left out
        dropped = [k for k in unexpected if not k.startswith(arch.backbone_prefix)]
        unexpected = [k for k in unexpected if k.startswith(arch.backbone_prefix)]
    if missing or unexpected or misshaped:
        parts = [f"checkpoint does not match {arch.spec.hf_class}:"]
        for title, items in (("missing", sorted(missing)), ("unexpected", unexpected), ("wrong shape", misshaped)):
            if items:
                parts.append(f"  {title} ({len(items)}): " + ", ".join(items))
        if missing and not allow_missing:
            parts.append("  (to start a new head from a backbone checkpoint, pass init_missing=<PRNG key>: "
                         "tensors absent from the file are then initialised as init_params does)")
        raise CheckpointMismatchError("\n".join(parts))
    return CheckpointMatch(prefix, sources, missing_rules, dropped)


def load_params(reader: CheckpointReader, arch: Architecture, config, dtype, *, mesh=None,
                progress: bool = True, init_missing=None) -> dict:
    """Read, transform, stack and cast every tensor, one rule at a time.

    With a mesh, each param goes straight to its sharding (the family's partition rules), and each device
    receives only its shard: the host holds one param at a time, never the model twice. In a multi-process job
    each process reads only the part of each tensor that its own devices hold (``reader.bytes_read`` counts it). ``init_missing`` (a
    PRNG key) fills the params whose tensors are all absent from the file with init_params' values and leaves
    out the tensors of the file's own head, with a warning naming each; without it, both are errors.
    """
    expected = expected_tree(arch, config, dtype)
    match = match_checkpoint(arch, config, reader.shapes, expected, allow_missing=init_missing is not None)
    shardings = param_shardings(expected, arch.partition_rules, mesh) if mesh is not None else None
    params: dict = {}

    def put(path, value):
        array = place(value, get_path(shardings, path)) if shardings is not None else jax.device_put(value)
        set_path(params, path, array)

    defaulted = [r for r in match.missing_rules if r.default is not None]
    for rule in defaulted:  # what transformers does for these (a zero buffer), no warning
        put(rule.path, np.zeros(get_path(expected, rule.path).shape, jnp.dtype(dtype)))
    fresh_rules = [r for r in match.missing_rules if r.default is None]
    if fresh_rules:
        # Only the missing leaves are outputs: XLA drops the rest of the initialisation.
        fresh = jax.jit(lambda key: [get_path(arch.init_params(config, key, dtype, arch.head), rule.path)
                                     for rule in fresh_rules])(init_missing)
        for rule, value in zip(fresh_rules, fresh):
            put(rule.path, np.asarray(value))
        warnings.warn(f"{arch.spec.hf_class}: initialised as init_params does (not in the checkpoint): "
                      + ", ".join(rule.hf for rule in fresh_rules), stacklevel=3)
        del fresh
    if match.dropped:
        warnings.warn(f"{arch.spec.hf_class}: left out (another head's tensors): " + ", ".join(match.dropped),
                      stacklevel=3)
    rules = [r for r in arch.rules(config, arch.head) if r not in match.missing_rules]
    for rule in tqdm(rules, desc="loading tensors", unit="tensor", disable=not progress, leave=False):
        shape = get_path(expected, rule.path).shape
        sharding = get_path(shardings, rule.path) if shardings is not None else None
        box = local_box(shape, sharding)
        part = rule.read_box(lambda name, hf_box: reader.read(match.sources[name], hf_box),
                             rule.hf_names(match.prefix, shape), box, jnp.dtype(dtype))
        set_path(params, rule.path, place_part(part, box, shape, sharding))
        # XLA lets go of the host arrays it copied from only at the next JAX call or collection: without this
        # the part would stay alive while the next param is read (measured: benchmarks/bench_conversion_rss.py).
        del part
        gc.collect(0)
    return params


def local_box(shape: tuple[int, ...], sharding) -> tuple[slice, ...]:
    """The smallest box (one slice per dim) of a param of ``shape`` that holds every shard this process's
    devices keep under ``sharding`` (the whole param without one): what this process has to read."""
    if sharding is None:
        return tuple(slice(0, n) for n in shape)
    starts, stops = list(shape), [0] * len(shape)
    for index in sharding.addressable_devices_indices_map(shape).values():
        for d, (s, n) in enumerate(zip(index, shape)):
            start, stop, _ = s.indices(n)
            starts[d], stops[d] = min(starts[d], start), max(stops[d], stop)
    return tuple(slice(a, b) for a, b in zip(starts, stops))


def place_part(part: np.ndarray, box: tuple[slice, ...], shape: tuple[int, ...], sharding) -> jax.Array:
    """A global array of ``shape`` from ``part`` (the param's ``box``, covering this process's shards): each local
    device receives its own shard, cut from the part."""
    if sharding is None:
        return jax.device_put(part)

    def shard(index):
        return part[tuple(slice(s.indices(n)[0] - b.start, s.indices(n)[1] - b.start)
                          for s, b, n in zip(index, box, shape))]

    return jax.make_array_from_callback(shape, sharding, shard)


def from_pretrained(path_or_hub_id: str | os.PathLike, dtype=jnp.float32, attention: str = "auto", mesh=None,
                    *, architecture: str | None = None, init_missing=None, progress: bool = True,
                    quantize=None, config_overrides: dict | None = None) -> Model:
    """Load an HF checkpoint directory (or Hub id), or a directory made by ``jaxzoo convert``, into a Model.

    dtype: parameter dtype (e.g. jnp.float32, jnp.bfloat16); attention: "reference" | "blocked" | "pallas" |
    "auto"; mesh: a ``common.sharding.make_mesh`` mesh to place the params on by the family's partition rules
    (then ``model(...)`` runs sharded); architecture: override config.json's "architectures" (a bare backbone
    such as "LongformerModel" loads from any of its family's head files, leaving the head out);
    init_missing: a PRNG key to start a head that the file lacks (e.g. LongformerForSequenceClassification
    from a masked-LM checkpoint): params with no tensor in the file are initialised as ``init_params`` does,
    with a warning naming them. Without it, every absent tensor is an error.
    quantize: "int8" | "int4" (or a ``common.quantization.QuantConfig``: group size, embeddings, LM head) for
    weight-only quantized matrices (see :func:`quantize_model`); an Orbax directory written by ``jaxzoo quantize``
    loads quantized as it was saved.
    config_overrides: config.json fields to replace before the config is built (e.g. a new head's
    ``num_labels`` / ``id2label`` / ``problem_type``, as fine-tuning sets them).
    """
    if quantize is not None:
        quantize = QuantConfig.of(quantize)  # a bad value fails before the checkpoint is read
    directory = resolve_directory(path_or_hub_id)
    hf_config = read_model_config(directory / "config.json")
    arch = architecture_for(hf_config, architecture)
    check_config_fields(hf_config, arch.config_class, directory / "config.json")
    if config_overrides:
        hf_config = {**hf_config, **config_overrides}
    config = arch.config_class.from_hf_dict(hf_config, attention_impl=attention)
    if is_orbax_dir(directory):
        target = expected_tree(arch, config, dtype)
        saved = orbax_quantization(directory)
        if saved is not None:
            if quantize is not None:
                raise ValueError(f"{directory} holds params already quantized ({saved}); load it without quantize=")
            target = jax.eval_shape(lambda p: quantize_params(p, QuantConfig(**saved)), target)
        if mesh is not None:
            target = jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), target,
                                  param_shardings(target, arch.partition_rules, mesh))
        params = restore_params(directory, target)
    else:
        params = load_params(CheckpointReader(directory), arch, config, dtype, mesh=mesh, progress=progress,
                             init_missing=init_missing)
    gen_path = directory / "generation_config.json"
    generation_config = read_generation_config(gen_path) if gen_path.exists() else None
    model = Model(config, params, arch.spec, generation_config, mesh=mesh)
    return quantize_model(model, quantize) if quantize is not None else model


def quantize_model(model: Model, how="int8") -> Model:
    """The model with weight-only quantized matrices (``how``: "int8", "int4" or a QuantConfig), placed as the
    model's own params are (on its mesh, by its partition rules). Computation stays in the model's dtype: each
    weight is dequantized where it is used."""
    if is_quantized(model.params):
        raise ValueError(f"the model is already quantized ({quant_config_of(model.params)})")
    params = quantize_placed(model.params, QuantConfig.of(how), model.partition_rules, model.mesh)
    return Model(model.config, params, model.spec, model.generation_config, mesh=model.mesh)


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
        value = fetch(get_path(model.params, rule.path))  # gathered from every process when sharded over hosts
        names = rule.hf_names(arch.backbone_prefix, value.shape)
        tensors.update({n: np.ascontiguousarray(a) for n, a in zip(names, rule.to_hf(value))})
    return tensors


def save_pretrained(model: Model, out_dir: str | os.PathLike, max_shard_size: int = 5 * 2**30) -> Path:
    """Write config.json (+ generation_config.json) and safetensors that transformers loads with no missing keys.

    Files are written to a temporary directory first and moved in only when all are complete, so a failure
    never leaves a half-written checkpoint behind. In a multi-process job every process must call it (each
    param is gathered from all of them); process 0 alone writes, and all return once the files are in place.
    """
    if is_quantized(model.params):
        raise ValueError(f"save_pretrained writes float Hugging Face checkpoints, and this model's weights are "
                         f"quantized ({quant_config_of(model.params)}): save it as an Orbax directory (jaxzoo "
                         "quantize, conversion.orbax_io.save_orbax), or dequantize on purpose first "
                         "(common.quantization.dequantize_params)")
    tensors = hf_tensors(model)
    hf_config = model.config.to_hf_dict()
    hf_config["architectures"] = [model.architecture]
    if is_writer():
        write_checkpoint(out_dir, tensors, hf_config, max_shard_size, model.generation_config)
    barrier("jaxzoo_save_pretrained")
    return Path(out_dir)


def write_checkpoint(out_dir: str | os.PathLike, tensors: dict[str, np.ndarray], hf_config: dict,
                     max_shard_size: int = 5 * 2**30, generation_config: dict | None = None) -> Path:
    """Write HF-named tensors (safetensors, sharded past max_shard_size) and config.json (+ generation_config.json)
    into a temporary directory, then move them into out_dir, so a failure never leaves a half-written checkpoint."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"out_dir {out} exists and is not a directory")
    hf_config = dict(hf_config, dtype=str(next(iter(tensors.values())).dtype))
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.tmp-") as tmp:
        tmp_dir = Path(tmp)
        write_safetensors(tensors, tmp_dir, max_shard_size)
        (tmp_dir / "config.json").write_text(json.dumps(hf_config, indent=2, sort_keys=True))
        if generation_config:
            (tmp_dir / "generation_config.json").write_text(json.dumps(generation_config, indent=2))
        out.mkdir(exist_ok=True)
        for stale in ("model.safetensors", "model.safetensors.index.json"):
            (out / stale).unlink(missing_ok=True)
        for f in tmp_dir.iterdir():
            shutil.move(str(f), out / f.name)
    return out
