"""Checkpoint files: read HF tensors one at a time, write safetensors (single or sharded).

Reading memory-maps each ``.safetensors`` file and hands out numpy views tensor by tensor (the
safetensors numpy backend cannot represent bfloat16; ml_dtypes can), so a checkpoint is never held in
host memory as a whole. ``pytorch_model.bin`` (single or sharded) needs torch, imported only then.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Iterator

import ml_dtypes
import numpy as np

SAFE_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}
SAFE_SINGLE, SAFE_INDEX = "model.safetensors", "model.safetensors.index.json"
BIN_SINGLE, BIN_INDEX = "pytorch_model.bin", "pytorch_model.bin.index.json"


class SafetensorsFile:
    """One memory-mapped .safetensors file: ``shapes`` from the header, ``get(name)`` as a numpy view."""

    def __init__(self, path: Path):
        self.path = path
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
        header.pop("__metadata__", None)
        self.header = header
        self.offset = 8 + n
        self._map = None

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v["shape"]) for k, v in self.header.items()}

    def get(self, name: str) -> np.ndarray:
        info = self.header[name]
        if info["dtype"] not in SAFE_DTYPES:
            raise ValueError(f"{self.path}: tensor {name!r} has dtype {info['dtype']}, which is not supported")
        if self._map is None:
            self._map = np.memmap(self.path, dtype=np.uint8, mode="r")
        start, end = info["data_offsets"]
        raw = self._map[self.offset + start:self.offset + end]
        return raw.view(SAFE_DTYPES[info["dtype"]]).reshape(info["shape"])


class TorchBinFile:
    """One pytorch_model.bin, loaded lazily (mmap) with torch."""

    def __init__(self, path: Path):
        try:
            import torch
        except ImportError:
            raise ImportError(f"{path} is a PyTorch pickle; reading it needs torch (pip install torch), "
                              "or convert the checkpoint to safetensors") from None
        self.path = path
        self.state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v.shape) for k, v in self.state.items()}

    def get(self, name: str) -> np.ndarray:
        import torch
        t = self.state[name]
        if t.dtype == torch.bfloat16:
            return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        return t.numpy()


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
        self._owner = {name: f for f in files for name in f.shapes}
        self.shapes = {name: shape for f in files for name, shape in f.shapes.items()}

    @staticmethod
    def _index(path: Path, kind):
        weight_map = json.loads(path.read_text())["weight_map"]
        return [kind(path.parent / fname) for fname in sorted(set(weight_map.values()))]

    def get(self, name: str) -> np.ndarray:
        return self._owner[name].get(name)

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
