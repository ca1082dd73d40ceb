"""Damaged checkpoint and tokenizer files fail with our DamagedFileError naming the file and the tensor, line or
field, never with numpy's or json's words (a torn download, a garbled header, a bad hand edit).

One tiny Llama checkpoint (single safetensors, sharded safetensors, single and sharded .bin) and one set of tokenizer
directories are built once; each test copies one, damages one file, and checks the error. Nothing is compiled.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers

from common.files import DamagedFileError, read_json
from common.roberta_tokenizer import RobertaTokenizer
from conversion import from_pretrained
from conversion.io import CheckpointReader
from lilt_jax.tokenizer import load_tokenizer
from llama_jax.tokenizer import LlamaTokenizer
from tests.factory import save_hf
from tests.llama.hf_llama import hf_model
from xlm_jax.tokenizer import XLMTokenizer


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """{"single", "sharded", "bin", "bin_sharded"}: the same tiny LlamaForCausalLM in each layout."""
    root = tmp_path_factory.mktemp("ckpt")
    hf = hf_model("causal_lm")
    hf.generation_config.max_length = 20
    out = {"single": save_hf(hf, root / "single"), "sharded": save_hf(hf, root / "sharded", max_shard_size="20KB")}
    assert (out["sharded"] / "model.safetensors.index.json").is_file()
    state = hf.state_dict()
    out["bin"] = root / "bin"
    out["bin"].mkdir()
    torch.save(state, out["bin"] / "pytorch_model.bin")
    out["bin_sharded"] = root / "bin_sharded"
    out["bin_sharded"].mkdir()
    names = list(state)
    weight_map = {}
    for n, part in enumerate((names[:len(names) // 2], names[len(names) // 2:]), 1):
        fname = f"pytorch_model-0000{n}-of-00002.bin"
        torch.save({k: state[k] for k in part}, out["bin_sharded"] / fname)
        weight_map.update(dict.fromkeys(part, fname))
    (out["bin_sharded"] / "pytorch_model.bin.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map}, indent=2))
    for name in ("bin", "bin_sharded"):
        for f in ("config.json", "generation_config.json"):
            shutil.copy(out["single"] / f, out[name] / f)
    return out


@pytest.fixture(scope="module")
def tokenizer_dirs(tmp_path_factory) -> dict[str, Path]:
    """{"bpe": tokenizer.json + vocab.json + merges.txt + side files, "vocab_merges": the same without
    tokenizer.json, "xlm": XLM's vocab.json + merges.txt + added_tokens.json, "unigram": LayoutXLM's tokenizer.json}."""
    root = tmp_path_factory.mktemp("tok")
    bpe = root / "bpe"
    bpe.mkdir()
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4, "a": 5, "b": 6, "ab": 7, "Ġ": 8, "Ġa": 9}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[("a", "b"), ("Ġ", "a")]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.save(str(bpe / "tokenizer.json"))
    (bpe / "vocab.json").write_text(json.dumps(vocab, indent=1))
    (bpe / "merges.txt").write_text("#version: 0.2\na b\nĠ a\n", encoding="utf-8")
    (bpe / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 16, "padding_side": "right"}, indent=1))
    (bpe / "special_tokens_map.json").write_text(json.dumps({"mask_token": "<mask>", "pad_token": "<pad>"}, indent=1))
    vocab_merges = root / "vocab_merges"
    shutil.copytree(bpe, vocab_merges)
    (vocab_merges / "tokenizer.json").unlink()
    xlm = root / "xlm"
    xlm.mkdir()
    xlm_vocab = {"<s>": 0, "</s>": 1, "<pad>": 2, "<unk>": 3, "a</w>": 4, "b</w>": 5, "a": 6, "ab</w>": 7}
    (xlm / "vocab.json").write_text(json.dumps(xlm_vocab, indent=1))
    (xlm / "merges.txt").write_text("a b</w>\n")
    (xlm / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 16, "padding_side": "right"},
                                                          indent=1))
    (xlm / "added_tokens.json").write_text(json.dumps({"<special0>": 8, "<special1>": 9}, indent=1))
    unigram = root / "unigram"
    unigram.mkdir()
    pieces = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁a", -1.0), ("a", -2.0)]
    Tokenizer(models.Unigram(pieces, unk_id=3)).save(str(unigram / "tokenizer.json"))
    return {"bpe": bpe, "vocab_merges": vocab_merges, "xlm": xlm, "unigram": unigram}


TOKENIZER_LOADERS = {"roberta": RobertaTokenizer.from_pretrained, "llama": LlamaTokenizer.from_pretrained,
                     "xlm": XLMTokenizer.from_pretrained, "lilt": load_tokenizer}


def copy_of(src: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(src, tmp_path / src.name))


def assert_names(error: pytest.ExceptionInfo, path: Path, *parts: str) -> str:
    """The message names the file (its full path) and each of ``parts``; returns it for further checks."""
    msg = str(error.value)
    assert str(path) in msg, msg
    for part in parts:
        assert part in msg, f"{part!r} not in {msg!r}"
    return msg


# ------------------------------------------------------------------------------------ undamaged baselines
@pytest.mark.parametrize("layout", ["single", "sharded", "bin", "bin_sharded"])
def test_undamaged_checkpoints_read(checkpoints, layout):
    """The baseline every damage below starts from reads in full, so each error comes from the damage."""
    reader = CheckpointReader(checkpoints[layout])
    assert len(reader.shapes) == len(hf_model("causal_lm").state_dict())
    for name in reader:
        assert reader.get(name).shape == reader.shapes[name]


@pytest.mark.parametrize("loader, name", [("roberta", "bpe"), ("llama", "bpe"), ("roberta", "vocab_merges"),
                                          ("xlm", "xlm"), ("lilt", "unigram")])
def test_undamaged_tokenizers_load(tokenizer_dirs, loader, name):
    assert TOKENIZER_LOADERS[loader](tokenizer_dirs[name]).vocab_size > 0


# ---------------------------------------------------------------------------------------------- safetensors
def header_of(path: Path) -> tuple[dict, int]:
    """(header dict, header length) of a safetensors file, read the plain way."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + n]), n


def rewrite_header(path: Path, edit) -> None:
    """Apply ``edit`` to the header dict and write it back in the same number of bytes (padded with spaces, as
    safetensors itself pads), so only the edited entry is wrong."""
    data = path.read_bytes()
    header, n = header_of(path)
    edit(header)
    text = json.dumps(header, separators=(",", ":")).encode()  # compact, as safetensors writes it
    assert len(text) <= n
    path.write_bytes(data[:8] + text.ljust(n) + data[8 + n:])


def last_tensor(path: Path) -> tuple[str, int, int]:
    """(name, first file byte, end file byte) of the tensor stored last."""
    header, n = header_of(path)
    header.pop("__metadata__", None)
    name = max(header, key=lambda k: header[k]["data_offsets"][1])
    start, end = header[name]["data_offsets"]
    return name, 8 + n + start, 8 + n + end


def first_tensor_name(path: Path) -> str:
    header, _ = header_of(path)
    return next(k for k in header if k != "__metadata__")


def test_truncated_safetensors_names_tensor_and_bytes(checkpoints, tmp_path):
    d = copy_of(checkpoints["single"], tmp_path)
    f = d / "model.safetensors"
    name, start, end = last_tensor(f)
    size = end - 100
    f.write_bytes(f.read_bytes()[:size])
    with pytest.raises(DamagedFileError) as e:
        from_pretrained(d, progress=False)
    assert_names(e, f, "is truncated", f"tensor {name!r} needs bytes {start}..{end}", f"the file has {size} bytes")


def test_truncated_shard_fails_when_opened(checkpoints, tmp_path):
    """A torn shard of a sharded checkpoint fails as the reader opens it, before any tensor is read."""
    d = copy_of(checkpoints["sharded"], tmp_path)
    f = sorted(d.glob("model-*.safetensors"))[-1]
    name, _, end = last_tensor(f)
    f.write_bytes(f.read_bytes()[:end - 1])
    with pytest.raises(DamagedFileError) as e:
        CheckpointReader(d)
    assert_names(e, f, "is truncated", f"tensor {name!r}")


@pytest.mark.parametrize("damage", ["cut_in_header", "length_past_file", "shorter_than_length_field"])
def test_header_length_past_the_file(checkpoints, tmp_path, damage):
    d = copy_of(checkpoints["single"], tmp_path)
    f = d / "model.safetensors"
    data = f.read_bytes()
    _, n = header_of(f)
    if damage == "cut_in_header":
        data = data[:8 + n // 2]
    elif damage == "length_past_file":
        data = struct.pack("<Q", len(data)) + data[8:]
    else:
        data = data[:5]
    f.write_bytes(data)
    with pytest.raises(DamagedFileError) as e:
        CheckpointReader(d)
    what = "fewer than the 8-byte header length" if damage == "shorter_than_length_field" else "header length says"
    assert_names(e, f, what, f"the file has {len(data)} bytes")


def test_garbled_header_is_a_json_error_with_position(checkpoints, tmp_path):
    d = copy_of(checkpoints["single"], tmp_path)
    f = d / "model.safetensors"
    data = bytearray(f.read_bytes())
    colon = data.index(b":", 8)  # the first key's separator
    data[colon] = ord("#")
    f.write_bytes(bytes(data))
    with pytest.raises(DamagedFileError) as e:
        CheckpointReader(d)
    assert_names(e, f, "safetensors header", f"is not valid JSON: line 1, column {colon - 8 + 1}",
                 "Expecting ':' delimiter")


def test_header_with_binary_garbage_is_not_utf8(checkpoints, tmp_path):
    d = copy_of(checkpoints["single"], tmp_path)
    f = d / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[8 + 10] = 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(DamagedFileError) as e:
        CheckpointReader(d)
    assert_names(e, f, "safetensors header", "is not UTF-8 text")


def test_data_offsets_inconsistent_with_shape(checkpoints, tmp_path):
    d = copy_of(checkpoints["single"], tmp_path)
    f = d / "model.safetensors"
    name = first_tensor_name(f)
    header, _ = header_of(f)
    start, end = header[name]["data_offsets"]

    def shrink(h):
        h[name]["data_offsets"] = [start, end - 4]
    rewrite_header(f, shrink)
    with pytest.raises(DamagedFileError) as e:
        CheckpointReader(d)
    assert_names(e, f, f"tensor {name!r} has data_offsets [{start}, {end - 4}] ({end - 4 - start} bytes)",
                 f"needs {end - start} bytes")


@pytest.mark.parametrize("field, value, words", [
    ("dtype", "F7", "unknown dtype 'F7'"),
    ("shape", [-1, 2], "expected a list of non-negative integers"),
    ("data_offsets", [8], "expected [start, end]"),
])
def test_bad_header_entry_names_tensor(checkpoints, tmp_path, field, value, words):
    d = copy_of(checkpoints["single"], tmp_path)
    f = d / "model.safetensors"
    name = first_tensor_name(f)

    def edit(h):
        h[name][field] = value
    rewrite_header(f, edit)
    with pytest.raises(DamagedFileError) as e:
        CheckpointReader(d)
    assert_names(e, f, f"tensor {name!r}", words)


def test_header_that_is_not_an_object(checkpoints, tmp_path):
    d = copy_of(checkpoints["single"], tmp_path)
    f = d / "model.safetensors"
    data = f.read_bytes()
    _, n = header_of(f)
    f.write_bytes(data[:8] + b"[]".ljust(n) + data[8 + n:])
    with pytest.raises(DamagedFileError) as e:
        CheckpointReader(d)
    assert_names(e, f, "header is an array, expected an object")


# ---------------------------------------------------------------------------------------------------- .bin
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's note on reading the garbage bytes
@pytest.mark.parametrize("layout", ["bin", "bin_sharded"])
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_damaged_bin_names_the_file(checkpoints, tmp_path, layout, damage):
    d = copy_of(checkpoints[layout], tmp_path)
    f = sorted(d.glob("*.bin"))[-1]
    data = f.read_bytes()
    f.write_bytes(data[:len(data) // 2] if damage == "truncated" else b"\x80not a pickle at all" * 8)
    with pytest.raises(DamagedFileError) as e:
        CheckpointReader(d)
    assert_names(e, f, "cannot be read by torch.load")


def test_bin_holding_something_else_than_a_state_dict(checkpoints, tmp_path):
    d = copy_of(checkpoints["bin"], tmp_path)
    f = d / "pytorch_model.bin"
    torch.save({"model.norm.weight": torch.zeros(3), "step": 7}, f)
    with pytest.raises(DamagedFileError) as e:
        CheckpointReader(d)
    assert_names(e, f, "entry 'step' is int, expected a tensor")


# --------------------------------------------------------------------------------------------- index files
INDEXES = {"sharded": "model.safetensors.index.json", "bin_sharded": "pytorch_model.bin.index.json"}


@pytest.mark.parametrize("layout", list(INDEXES))
def test_malformed_index_gives_line_and_column(checkpoints, tmp_path, layout):
    d = copy_of(checkpoints[layout], tmp_path)
    f = d / INDEXES[layout]
    lines = f.read_text().splitlines()
    first = next(i for i, s in enumerate(lines) if '"weight_map"' in s) + 1
    lines[first] = lines[first].rstrip(",")  # a missing comma between the first two weight_map entries
    f.write_text("\n".join(lines))
    with pytest.raises(DamagedFileError) as e:
        CheckpointReader(d)
    assert_names(e, f, f"is not valid JSON: line {first + 2}, column", "Expecting ',' delimiter")


@pytest.mark.parametrize("layout", list(INDEXES))
def test_truncated_index_says_the_text_ends_early(checkpoints, tmp_path, layout):
    d = copy_of(checkpoints[layout], tmp_path)
    f = d / INDEXES[layout]
    text = f.read_text()
    f.write_text(text[:len(text) // 2])
    with pytest.raises(DamagedFileError) as e:
        CheckpointReader(d)
    assert_names(e, f, "is not valid JSON: line", "truncated?")


@pytest.mark.parametrize("layout", list(INDEXES))
def test_index_without_weight_map(checkpoints, tmp_path, layout):
    d = copy_of(checkpoints[layout], tmp_path)
    f = d / INDEXES[layout]
    f.write_text(json.dumps({"metadata": {}, "weights": {}}))
    with pytest.raises(DamagedFileError) as e:
        CheckpointReader(d)
    assert_names(e, f, 'no "weight_map" object')


@pytest.mark.parametrize("layout", list(INDEXES))
def test_index_naming_an_absent_shard(checkpoints, tmp_path, layout):
    d = copy_of(checkpoints[layout], tmp_path)
    f = d / INDEXES[layout]
    weight_map = json.loads(f.read_text())["weight_map"]
    shard = sorted(set(weight_map.values()))[-1]
    (d / shard).unlink()
    first = next(k for k, v in weight_map.items() if v == shard)
    with pytest.raises(DamagedFileError) as e:
        CheckpointReader(d)
    assert_names(e, f, "names shard files that are not in", shard, repr(first))


# ------------------------------------------------------------------------------------------- config files
def test_malformed_config_json_gives_line_and_column(checkpoints, tmp_path):
    d = copy_of(checkpoints["single"], tmp_path)
    f = d / "config.json"
    f.write_text(f.read_text().replace('"hidden_size": 32,', '"hidden_size": 32'))
    line = next(i for i, s in enumerate(f.read_text().splitlines(), 1) if '"hidden_size"' in s) + 1
    with pytest.raises(DamagedFileError) as e:
        from_pretrained(d, progress=False)
    assert_names(e, f, f"(model config) is not valid JSON: line {line}, column", "Expecting ',' delimiter")


def test_config_json_that_is_not_an_object(checkpoints, tmp_path):
    d = copy_of(checkpoints["single"], tmp_path)
    (d / "config.json").write_text("[1, 2]")
    with pytest.raises(DamagedFileError) as e:
        from_pretrained(d, progress=False)
    assert_names(e, d / "config.json", "expected an object at the top level, got an array")


@pytest.mark.parametrize("field, value, expected", [
    ("hidden_size", "32", "expected an integer"),
    ("rms_norm_eps", "1e-6", "expected a number"),
    ("tie_word_embeddings", "no", "expected true/false"),
    ("eos_token_id", {"id": 2}, "expected an integer or an array"),
    ("architectures", "LlamaForCausalLM", "expected an array of class names"),
])
def test_config_field_of_the_wrong_type(checkpoints, tmp_path, field, value, expected):
    d = copy_of(checkpoints["single"], tmp_path)
    f = d / "config.json"
    config = json.loads(f.read_text())
    config[field] = value
    f.write_text(json.dumps(config))
    with pytest.raises(DamagedFileError) as e:
        from_pretrained(d, progress=False)
    assert_names(e, f, f"field {field!r}", expected)


def test_malformed_generation_config(checkpoints, tmp_path):
    d = copy_of(checkpoints["single"], tmp_path)
    f = d / "generation_config.json"
    f.write_text(f.read_text().replace('"max_length": 20', '"max_length": 20,,'))
    with pytest.raises(DamagedFileError) as e:
        from_pretrained(d, progress=False)
    assert_names(e, f, "(generation config) is not valid JSON: line", "column")


def test_generation_config_field_of_the_wrong_type(checkpoints, tmp_path):
    d = copy_of(checkpoints["single"], tmp_path)
    f = d / "generation_config.json"
    config = json.loads(f.read_text())
    config["max_length"] = "20"
    f.write_text(json.dumps(config))
    with pytest.raises(DamagedFileError) as e:
        from_pretrained(d, progress=False)
    assert_names(e, f, "field 'max_length' is a string ('20'), expected an integer")


def test_read_json_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(f"{tmp_path / 'x.json'} (model config) not found")):
        read_json(tmp_path / "x.json", "model config")


# ------------------------------------------------------------------------------------------ tokenizer files
def truncate(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    path.write_text(text[:len(text) // 2], encoding="utf-8")


def drop_first_comma(path: Path) -> int:
    """Remove the first line-ending comma; returns the line number where json then fails (the next line)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    i = next(i for i, s in enumerate(lines) if s.endswith(","))
    lines[i] = lines[i][:-1]
    path.write_text("\n".join(lines), encoding="utf-8")
    return i + 2


@pytest.mark.parametrize("loader, name, file", [
    ("roberta", "bpe", "tokenizer.json"),
    ("llama", "bpe", "tokenizer.json"),
    ("lilt", "unigram", "tokenizer.json"),
    ("roberta", "bpe", "tokenizer_config.json"),
    ("llama", "bpe", "tokenizer_config.json"),
    ("xlm", "xlm", "tokenizer_config.json"),
    ("roberta", "bpe", "special_tokens_map.json"),
    ("llama", "bpe", "special_tokens_map.json"),
    ("roberta", "vocab_merges", "vocab.json"),
    ("xlm", "xlm", "vocab.json"),
    ("xlm", "xlm", "added_tokens.json"),
])
def test_malformed_tokenizer_json_files(tokenizer_dirs, tmp_path, loader, name, file):
    d = copy_of(tokenizer_dirs[name], tmp_path)
    line = drop_first_comma(d / file)
    with pytest.raises(DamagedFileError) as e:
        TOKENIZER_LOADERS[loader](d)
    assert_names(e, d / file, f"is not valid JSON: line {line}, column", "Expecting")


@pytest.mark.parametrize("loader", ["roberta", "llama"])
def test_truncated_tokenizer_json(tokenizer_dirs, tmp_path, loader):
    d = copy_of(tokenizer_dirs["bpe"], tmp_path)
    truncate(d / "tokenizer.json")
    with pytest.raises(DamagedFileError) as e:
        TOKENIZER_LOADERS[loader](d)
    assert_names(e, d / "tokenizer.json", "(tokenizer) is not valid JSON: line", "truncated?")


@pytest.mark.parametrize("edit, words", [
    (lambda spec: spec.update(model=[1, 2]), "field 'model' is an array, expected an object"),
    (lambda spec: spec.update(added_tokens=[{"content": "<x>"}]), 'added_tokens[0] is not an object with an'),
])
@pytest.mark.parametrize("loader", ["roberta", "llama"])
def test_tokenizer_json_of_the_wrong_shape(tokenizer_dirs, tmp_path, loader, edit, words):
    d = copy_of(tokenizer_dirs["bpe"], tmp_path)
    spec = json.loads((d / "tokenizer.json").read_text())
    edit(spec)
    (d / "tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(DamagedFileError) as e:
        TOKENIZER_LOADERS[loader](d)
    assert_names(e, d / "tokenizer.json", words)


def test_tokenizer_json_that_tokenizers_cannot_read(tokenizer_dirs, tmp_path):
    """Valid JSON, a BPE model, but its vocab is not a {piece: id} map: the tokenizers library's own error,
    behind the file's name."""
    d = copy_of(tokenizer_dirs["bpe"], tmp_path)
    spec = json.loads((d / "tokenizer.json").read_text())
    spec["model"]["vocab"] = ["a", "b"]
    (d / "tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(DamagedFileError) as e:
        LlamaTokenizer.from_pretrained(d)
    assert_names(e, d / "tokenizer.json", "(tokenizer) cannot be read: Exception:")


def test_unigram_vocab_entry_without_score(tokenizer_dirs, tmp_path):
    d = copy_of(tokenizer_dirs["unigram"], tmp_path)
    spec = json.loads((d / "tokenizer.json").read_text())
    spec["model"]["vocab"][4] = ["▁a"]
    (d / "tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(DamagedFileError) as e:
        load_tokenizer(d)
    assert_names(e, d / "tokenizer.json", "(tokenizer) cannot be read: ValueError")


def test_vocab_json_entry_that_is_not_an_id(tokenizer_dirs, tmp_path):
    d = copy_of(tokenizer_dirs["vocab_merges"], tmp_path)
    vocab = json.loads((d / "vocab.json").read_text())
    vocab["ab"] = "7"
    (d / "vocab.json").write_text(json.dumps(vocab))
    with pytest.raises(DamagedFileError) as e:
        RobertaTokenizer.from_pretrained(d)
    assert_names(e, d / "vocab.json", "entry 'ab' is '7', expected an id >= 0")


@pytest.mark.parametrize("merges, words", [
    ("#version: 0.2\na b\nĠ a extra\n", "Merges text file invalid at line 2"),
    ("#version: 0.2\na b\nq z\n", "(BPE merges) cannot be read"),
])
def test_damaged_merges_txt(tokenizer_dirs, tmp_path, merges, words):
    d = copy_of(tokenizer_dirs["vocab_merges"], tmp_path)
    (d / "merges.txt").write_text(merges, encoding="utf-8")
    with pytest.raises(DamagedFileError) as e:
        RobertaTokenizer.from_pretrained(d)
    assert_names(e, d / "merges.txt", words)


def test_merges_txt_cut_inside_a_character(tokenizer_dirs, tmp_path):
    """A torn download can end inside a multi-byte character: the file, line and byte are named."""
    d = copy_of(tokenizer_dirs["xlm"], tmp_path)
    (d / "merges.txt").write_bytes("a b</w>\nä".encode()[:-1])
    with pytest.raises(DamagedFileError) as e:
        XLMTokenizer.from_pretrained(d)
    assert_names(e, d / "merges.txt", "is not UTF-8 text: line 2, byte 8")
