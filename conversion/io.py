"""Checkpoint files: read HF tensors one at a time, write safetensors (single or sharded).

Reading memory-maps each ``.safetensors`` file and hands out numpy views tensor by tensor (the
safetensors numpy backend cannot represent bfloat16; ml_dtypes can), so a checkpoint is never held in
host memory as a whole. ``read(name, index)`` reads only a box of one tensor (what one process's devices hold
of a sharded param) with ``pread`` and counts the bytes it read (``CheckpointReader.bytes_read``), so a host of a
multi-process job reads its share of the file, not the file. ``pytorch_model.bin`` (single or sharded) needs
torch, imported only then; a box of it is cut from the whole (memory-mapped) tensor.

A damaged file (torn download, garbled header, an index naming absent shards, a config.json that is not JSON)
raises :class:`common.files.DamagedFileError` naming the file and the tensor, field or line, when the file is
opened: the safetensors headers are checked against the file sizes before any tensor is read.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import struct
import zipfile
from pathlib import Path
from typing import Iterator

import ml_dtypes
import numpy as np

from common.config import RUNTIME_FIELDS
from common.files import (DamagedFileError, check_field_types, dataclass_field_types, json_type_name, parse_json,
                          read_json)

SAFE_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}
# Bits per element of every dtype the safetensors format defines, read by us or not: a tensor's byte size is
# checked against its shape when the file is opened; an unsupported one is reported only when it is read.
SAFE_DTYPE_BITS = {name: np.dtype(t).itemsize * 8 for name, t in SAFE_DTYPES.items()} | {
    "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "U16": 16, "U32": 32, "U64": 64, "C64": 64,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}
SAFE_SINGLE, SAFE_INDEX = "model.safetensors", "model.safetensors.index.json"
BIN_SINGLE, BIN_INDEX = "pytorch_model.bin", "pytorch_model.bin.index.json"
HEADER_LENGTH_BYTES = 8  # a safetensors file starts with the header's length, little-endian uint64


def read_safetensors_header(path: Path) -> tuple[dict, int]:
    """The header ({tensor name: {"dtype", "shape", "data_offsets"}}, without "__metadata__") and the file offset
    where the data starts, after checking that every tensor's bytes fit its shape and lie inside the file (so a
    torn download fails here, naming the tensor, before any tensor is read)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(HEADER_LENGTH_BYTES)
        if len(head) < HEADER_LENGTH_BYTES:
            raise DamagedFileError(f"{path} is truncated: the file has {size} bytes, fewer than the "
                                   f"{HEADER_LENGTH_BYTES}-byte header length a safetensors file starts with")
        (n,) = struct.unpack("<Q", head)
        if HEADER_LENGTH_BYTES + n > size:
            raise DamagedFileError(f"{path} is truncated or not a safetensors file: its header length says the "
                                   f"header needs bytes {HEADER_LENGTH_BYTES}..{HEADER_LENGTH_BYTES + n}, the file "
                                   f"has {size} bytes")
        header = parse_json(f.read(n), f"{path}: the safetensors header (bytes {HEADER_LENGTH_BYTES}.."
                                       f"{HEADER_LENGTH_BYTES + n})")
    if not isinstance(header, dict):
        raise DamagedFileError(f"{path}: the safetensors header is {json_type_name(header)}, expected an object "
                               "{tensor name: {dtype, shape, data_offsets}}")
    header.pop("__metadata__", None)
    data_start = HEADER_LENGTH_BYTES + n
    for name, info in header.items():
        check_header_entry(path, name, info)
    if header:
        name, last = max(header.items(), key=lambda item: item[1]["data_offsets"][1])
        start, end = last["data_offsets"]
        if data_start + end > size:
            raise DamagedFileError(f"{path} is truncated: tensor {name!r} needs bytes {data_start + start}.."
                                   f"{data_start + end}, the file has {size} bytes")
    return header, data_start


def check_header_entry(path: Path, name: str, info) -> None:
    """One header entry: a known dtype, a shape of non-negative ints, and data_offsets [start, end] spanning
    exactly shape * dtype size bytes."""
    where = f"{path}: tensor {name!r}"
    if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= set(info):
        raise DamagedFileError(f"{where}: header entry {info!r:.80} is not an object with dtype, shape and "
                               "data_offsets (garbled header)")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if dtype not in SAFE_DTYPE_BITS:
        raise DamagedFileError(f"{where} has unknown dtype {dtype!r}: expected one of {sorted(SAFE_DTYPE_BITS)}")
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        raise DamagedFileError(f"{where} has shape {shape!r:.80}, expected a list of non-negative integers")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_count, offsets))
            and offsets[0] <= offsets[1]):
        raise DamagedFileError(f"{where} has data_offsets {offsets!r:.80}, expected [start, end] with "
                               "0 <= start <= end")
    needed = (math.prod(shape) * SAFE_DTYPE_BITS[dtype] + 7) // 8
    if offsets[1] - offsets[0] != needed:
        raise DamagedFileError(f"{where} has data_offsets {offsets} ({offsets[1] - offsets[0]} bytes), but its "
                               f"shape {tuple(shape)} of {dtype} needs {needed} bytes")


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


Box = tuple[slice, ...]  # one slice per dimension, each with a start and a stop and no step


def contiguous_runs(shape: tuple[int, ...], box: Box) -> tuple[int, list[tuple[int, ...]]]:
    """How to read ``box`` of a C-ordered array of ``shape`` in contiguous pieces: (the elements of one piece, the
    index of each piece's first element over the leading dims that are cut).

    The trailing dims that the box takes whole join the last cut dim into one run, so a box of whole rows is one
    piece and a box of column slices is one piece per row.
    """
    keep = len(shape)
    while keep > 0 and box[keep - 1] == slice(0, shape[keep - 1]):
        keep -= 1  # dims keep.. are whole
    if keep == 0:
        return math.prod(shape), [()]
    run = (box[keep - 1].stop - box[keep - 1].start) * math.prod(shape[keep:])
    leading = [range(b.start, b.stop) for b in box[:keep - 1]]
    return run, [idx + (box[keep - 1].start,) for idx in itertools.product(*leading)]


class SafetensorsFile:
    """One .safetensors file: ``shapes`` from the header, ``get(name)`` as a memory-mapped numpy view,
    ``read(name, box)`` as a fresh array read with ``pread`` (``bytes_read`` counts them)."""

    def __init__(self, path: Path):
        self.path = path
        self.header, self.offset = read_safetensors_header(path)
        self._map = None
        self.bytes_read = 0

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v["shape"]) for k, v in self.header.items()}

    def get(self, name: str) -> np.ndarray:
        info = self.header[name]
        dtype = self._dtype(name)
        if self._map is None:
            self._map = np.memmap(self.path, dtype=np.uint8, mode="r")
        start, end = info["data_offsets"]
        raw = self._map[self.offset + start:self.offset + end]
        return raw.view(dtype).reshape(info["shape"])

    def _dtype(self, name: str) -> np.dtype:
        code = self.header[name]["dtype"]
        if code not in SAFE_DTYPES:
            raise ValueError(f"{self.path}: tensor {name!r} has dtype {code}, which is not supported "
                             f"(expected one of {sorted(SAFE_DTYPES)})")
        return np.dtype(SAFE_DTYPES[code])

    def read(self, name: str, box: Box) -> np.ndarray:
        """The elements of tensor ``name`` inside ``box``, read from the file piece by piece (nothing else)."""
        info = self.header[name]
        dtype, shape = self._dtype(name), tuple(info["shape"])
        out = np.empty(tuple(b.stop - b.start for b in box), dtype)
        if out.size == 0:
            return out
        run, starts = contiguous_runs(shape, box)
        strides = [math.prod(shape[d + 1:]) for d in range(len(shape))]
        base = self.offset + info["data_offsets"][0]
        flat = memoryview(out.reshape(-1).view(np.uint8))
        piece = run * dtype.itemsize
        with open(self.path, "rb", buffering=0) as f:
            for k, start in enumerate(starts):
                element = sum(i * st for i, st in zip(start, strides))
                target = flat[k * piece:(k + 1) * piece]
                got = os.preadv(f.fileno(), [target], base + element * dtype.itemsize)
                if got != piece:
                    raise DamagedFileError(f"{self.path}: tensor {name!r}: read {got} of {piece} bytes at element "
                                           f"{element} (the file changed or was truncated while being read)")
        self.bytes_read += out.nbytes
        return out


class TorchBinFile:
    """One pytorch_model.bin, loaded lazily (mmap) with torch."""

    def __init__(self, path: Path):
        try:
            import torch
        except ImportError:
            raise ImportError(f"{path} is a PyTorch pickle; reading it needs torch (pip install torch), "
                              "or convert the checkpoint to safetensors") from None
        self.path = path
        # torch.save's zip format is memory-mapped; the legacy pickle format (no zip) cannot be, so it is read.
        zipped = zipfile.is_zipfile(path)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipped)
        except Exception as e:  # noqa: BLE001 - torch raises RuntimeError, UnpicklingError, EOFError, ... for these
            kind = "a torch.save zip archive" if zipped else \
                "neither a complete torch.save zip archive nor a legacy pickle: truncated or damaged?"
            raise DamagedFileError(f"{path} cannot be read by torch.load ({kind}): {type(e).__name__}: "
                                   f"{str(e).strip()[:300]}") from e
        if not isinstance(state, dict):
            raise DamagedFileError(f"{path} holds {type(state).__name__}, expected a state dict "
                                   "{tensor name: tensor}")
        odd = next((k for k, v in state.items() if not isinstance(v, torch.Tensor)), None)
        if odd is not None:
            raise DamagedFileError(f"{path}: entry {odd!r} is {type(state[odd]).__name__}, expected a tensor")
        self.state = state
        self.bytes_read = 0

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v.shape) for k, v in self.state.items()}

    def read(self, name: str, box: Box) -> np.ndarray:
        """The box cut from the whole tensor (a pickle cannot be read in pieces): counts the whole tensor."""
        whole = self.get(name)
        self.bytes_read += whole.nbytes
        return np.array(whole[box])

    def get(self, name: str) -> np.ndarray:
        import torch
        t = self.state[name]
        if t.dtype == torch.bfloat16:
            return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        return t.numpy()


def read_weight_map(path: Path) -> dict[str, list[str]]:
    """{shard file name: [tensor names]} from a checkpoint index; every shard it names must be in its directory."""
    weight_map = read_json(path, "checkpoint index").get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise DamagedFileError(f"{path} (checkpoint index) has no \"weight_map\" object of "
                               "{tensor name: shard file name}")
    shards: dict[str, list[str]] = {}
    for name, fname in weight_map.items():
        shards.setdefault(fname, []).append(name)
    absent = [f"{fname} (holding {len(names)} tensors, e.g. {names[0]!r})"
              for fname, names in sorted(shards.items()) if not (path.parent / fname).is_file()]
    if absent:
        raise DamagedFileError(f"{path} (checkpoint index) names shard files that are not in {path.parent}: "
                               + "; ".join(absent))
    return shards


# ------------------------------------------------------------------------------------------ config files
# generation_config.json fields that generate() reads, with the JSON types HF writes for them.
GENERATION_FIELD_TYPES = {
    **dict.fromkeys(("max_length", "max_new_tokens", "min_length", "min_new_tokens", "num_beams",
                     "num_return_sequences", "no_repeat_ngram_size", "top_k", "bos_token_id", "pad_token_id",
                     "decoder_start_token_id", "forced_bos_token_id"), (int,)),
    **dict.fromkeys(("temperature", "top_p", "length_penalty"), (int, float)),
    **dict.fromkeys(("eos_token_id", "forced_eos_token_id"), (int, list)),
    "do_sample": (bool,),
    "early_stopping": (bool, str),
}


def read_model_config(path: Path) -> dict:
    """config.json as a dict; DamagedFileError (file, line, column) when it is not a JSON object, or when its
    "architectures" is not a list of class names."""
    hf_config = read_json(path, "model config")
    architectures = hf_config.get("architectures")
    if architectures is not None and not (isinstance(architectures, list)
                                          and all(isinstance(a, str) for a in architectures)):
        raise DamagedFileError(f"{path} (model config): field 'architectures' is {json_type_name(architectures)} "
                               f"({architectures!r:.60}), expected an array of class names")
    return hf_config


def check_config_fields(hf_config: dict, config_class, path: Path) -> None:
    """Each config.json field the family config models has the JSON type of its annotation (a string where a
    number belongs fails here, naming the file and the field, not later inside the model)."""
    fields = dataclass_field_types(config_class, skip=RUNTIME_FIELDS + tuple(config_class.translated_fields))
    fields |= {alias: fields[name] for alias, name in config_class.hf_aliases.items() if name in fields}
    check_field_types(hf_config, fields, f"{path} (model config)")


def read_generation_config(path: Path) -> dict:
    """generation_config.json as a dict, its generation settings checked for type."""
    generation_config = read_json(path, "generation config")
    check_field_types(generation_config, GENERATION_FIELD_TYPES, f"{path} (generation config)")
    return generation_config


class CheckpointReader:
    """All tensors of an HF checkpoint directory, across shards: ``shapes`` and ``get(name)``."""

    def __init__(self, directory: str | os.PathLike):
        d = Path(directory)
        self.directory = d
        if (d / SAFE_INDEX).exists():
            files = self._index(d / SAFE_INDEX, SafetensorsFile)
        elif (d / SAFE_SINGLE).exists():
            files = [SafetensorsFile(d / SAFE_SINGLE)]
        elif (d / BIN_INDEX).exists():
            files = self._index(d / BIN_INDEX, TorchBinFile)
        elif (d / BIN_SINGLE).exists():
            files = [TorchBinFile(d / BIN_SINGLE)]
        else:
            raise FileNotFoundError(f"no {SAFE_SINGLE}, {SAFE_INDEX}, {BIN_SINGLE} or {BIN_INDEX} in {d}")
        self.files = files
        self._owner = {name: f for f in files for name in f.shapes}
        self.shapes = {name: shape for f in files for name, shape in f.shapes.items()}

    @staticmethod
    def _index(path: Path, kind):
        return [kind(path.parent / fname) for fname in sorted(read_weight_map(path))]

    def get(self, name: str) -> np.ndarray:
        return self._owner[name].get(name)

    def read(self, name: str, box: Box) -> np.ndarray:
        """``box`` of tensor ``name`` as a fresh array, reading only those bytes where the format allows."""
        return self._owner[name].read(name, box)

    @property
    def bytes_read(self) -> int:
        """Tensor bytes read so far by ``read`` (over all files)."""
        return sum(f.bytes_read for f in self.files)

    def __iter__(self) -> Iterator[str]:
        return iter(self.shapes)


def write_safetensors(tensors: dict[str, np.ndarray], directory: Path, max_shard_bytes: int = 5 * 2**30) -> None:
    """Write ``model.safetensors``, or numbered shards plus ``model.safetensors.index.json`` past max_shard_bytes."""
    from safetensors.numpy import save_file

    shards: list[dict[str, np.ndarray]] = [{}]
    size = 0
    for name, array in tensors.items():
        if shards[-1] and size + array.nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = np.ascontiguousarray(array)
        size += array.nbytes
    metadata = {"format": "pt"}  # transformers checks this key
    if len(shards) == 1:
        save_file(shards[0], str(directory / SAFE_SINGLE), metadata=metadata)
        return
    weight_map = {}
    for n, shard in enumerate(shards, 1):
        fname = f"model-{n:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(directory / fname), metadata=metadata)
        weight_map.update({name: fname for name in shard})
    total = sum(a.nbytes for a in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (directory / SAFE_INDEX).write_text(json.dumps(index, indent=2))
