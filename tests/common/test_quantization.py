"""Weight-only quantization (common.quantization, ``from_pretrained(quantize=...)``, ``jaxzoo quantize``).

The reference for a quantized model is the *same* model with float params ``dequantize_params(q.params)``: it runs
the float code path on exactly the weights the quantized model stands for, so every output must agree to float
rounding (1e-5), and generate / pipelines token for token. Against the original float model only a loose, stated
tolerance holds; the per-weight error is checked exactly instead (half a quantization step of its channel or group).

Compile cost: the tiny bare-model checkpoints and heads of tests/common/test_explicit_mesh.py (its FAMILIES, HEADS
and inputs_for), each head loaded and quantized once for the module (:class:`Zoo`). The float model and its
dequantized twin have the same shapes and dtypes, so they share one compiled forward; the quantized model compiles
one more.
"""

from __future__ import annotations

import dataclasses
import json
import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import conversion
from common import layers
from common.model import Model
from common.quantization import (QArray, QuantConfig, dequantize_params, param_bytes, quant_config_of,
                                 quantize_array, quantize_params, weight)
from conversion.cli import main
from conversion.orbax_io import MARKER, save_orbax
from tests.common.test_explicit_mesh import FAMILIES, HEADS, inputs_for, splittable_matrix
from tests.factory import save_hf
from tests.pipelines.checkpoints import checkpoint as pipeline_checkpoint
from tests.scale import MESH_KINDS, mesh_of

# One int4 head per family, with a group size that divides every kernel's input dimension there: 64 / 128
# (Llama, Longformer, LED), 64 / 256 (XLM), and LiLT's layout stream (12 / 16 wide) needs 4. (XLM's
# multiple-choice head has a [2, 1] kernel, so no XLM int4 group above 2 fits every head.)
INT4 = {"llama": ("causal_lm", 32), "longformer": ("question_answering", 32), "led": ("conditional_generation", 32),
        "lilt": ("token_classification", 4), "xlm": ("with_lm_head", 32)}
INT4_HEADS = [(family, head) for family, (head, _) in INT4.items()]
# A head per family run with embeddings and LM head quantized too: the LM heads of LED and XLM are tied to the
# (then quantized) word embeddings, LiLT's layout embeddings are tables read by id.
EMBEDDED = {"llama": "causal_lm", "longformer": "masked_lm", "led": "conditional_generation",
            "lilt": "token_classification", "xlm": "with_lm_head"}
GENERATIVE = [("llama", "causal_lm"), ("led", "conditional_generation")]
DECODING = {"greedy": {}, "sampling": {"do_sample": True, "seed": 3}, "beam": {"num_beams": 2}}

# Loose bounds on ||quantized - float|| / ||float|| per output (Frobenius), from the weights' own error: int8 rounds
# to absmax/127 steps, a relative RMS weight error of ~0.6%; int4 in groups of <= 32 to absmax/7, ~9%. Over two
# layers and a head the outputs measured 0.03-1.5% (int8) and 0.5-14% (int4), and up to 4% int8 for LiLT, whose
# wide init (range 0.2) makes it more sensitive (a random perturbation of the same size moves it as much). The
# bounds leave ~2.5x room; the exact check of the quantizer is the per-weight one (test_weights_within_half_a_step).
CLOSE = {8: 0.1, 4: 0.4}
# A quantized output must differ from the float one by more than float rounding: weights were really changed.
DIFFERENT = 1e-5


def silently(fn, *args, **kwargs):
    """``fn(...)`` without the warnings init_missing gives (it names the head's fresh params)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


class Zoo:
    """Each model of the module built once: float heads, their quantized versions (by ``how``: "int8" or a
    QuantConfig), the dequantized-float twins, and the outputs of each on ``inputs_for(family, head)``."""

    def __init__(self, checkpoints: dict):
        self.checkpoints = checkpoints
        self._cache = {}

    def _once(self, key, build):
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def float(self, family: str, head: str) -> Model:
        return self._once(("float", family, head), lambda: silently(
            conversion.from_pretrained, self.checkpoints[family], architecture=FAMILIES[family][0].HF_CLASSES[head],
            init_missing=jax.random.PRNGKey(0), progress=False))

    def quantized(self, family: str, head: str, how="int8") -> Model:
        return self._once(("q", family, head, how),
                          lambda: conversion.quantize_model(self.float(family, head), how))

    def dequantized(self, family: str, head: str, how="int8") -> Model:
        """The quantized model's weights as float params, run by the float code."""
        def build():
            q = self.quantized(family, head, how)
            return Model(q.config, dequantize_params(q.params), q.spec, q.generation_config)
        return self._once(("deq", family, head, how), build)

    def outputs(self, kind: str, family: str, head: str, how="int8"):
        """The forward's outputs of the "float", "q" or "deq" model."""
        def build():
            model = {"float": lambda: self.float(family, head), "q": lambda: self.quantized(family, head, how),
                     "deq": lambda: self.dequantized(family, head, how)}[kind]()
            return model(**inputs_for(family, head))
        return self._once(("out", kind, family, head, how if kind != "float" else None), build)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """One bare-model checkpoint per family (every head loads from it, its own head initialised)."""
    root = tmp_path_factory.mktemp("quantization")
    return {family: save_hf(factory.hf_model("model", **dims), root / family)
            for family, (factory, dims) in FAMILIES.items()}


@pytest.fixture(scope="module")
def zoo(checkpoints):
    return Zoo(checkpoints)


def named_leaves(tree, is_leaf=None) -> dict:
    """{"/"-joined path: leaf}."""
    return {"/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path): leaf
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_leaf)[0]}


def qarrays_and_floats(params) -> dict:
    """{param name: leaf} with each QArray kept whole."""
    return named_leaves(params, is_leaf=lambda x: isinstance(x, QArray))


def assert_outputs_equal(got, want, what: str) -> None:
    """Same structure; float leaves to 1e-5, integer leaves (e.g. XLM's top-k indices) exactly."""
    assert jax.tree.structure(got) == jax.tree.structure(want), what
    wants = named_leaves(want)
    for name, a in named_leaves(got).items():
        a, b = np.asarray(a), np.asarray(wants[name])
        if np.issubdtype(a.dtype, np.floating):
            np.testing.assert_allclose(a, b, atol=1e-5, rtol=0, err_msg=f"{what}: {name}")
        else:
            np.testing.assert_array_equal(a, b, err_msg=f"{what}: {name}")


def assert_near_float(got, ref, bits: int, what: str) -> None:
    """Every float output within CLOSE[bits] of the float model's (relative Frobenius), and not equal to it."""
    gots = named_leaves(got)
    for name, r in named_leaves(ref).items():
        r = np.asarray(r)
        if not np.issubdtype(r.dtype, np.floating):
            continue
        err = np.linalg.norm(np.asarray(gots[name]) - r) / np.linalg.norm(r)
        assert DIFFERENT < err <= CLOSE[bits], f"{what}: {name} relative error {err:.2e}"


# ---------------------------------------------------------------------------------------- 1. outputs
@pytest.mark.parametrize("family,head", HEADS)
def test_int8_head_equals_its_dequantized_float_model(zoo, family, head):
    """int8: the outputs equal the dequantized-float model's to 1e-5, and are near (not equal to) the float's."""
    q = zoo.outputs("q", family, head)
    assert_outputs_equal(q, zoo.outputs("deq", family, head), f"{family}/{head} int8 vs dequantized")
    assert_near_float(q, zoo.outputs("float", family, head), 8, f"{family}/{head} int8 vs float")


@pytest.mark.parametrize("family,head", INT4_HEADS)
def test_int4_head_equals_its_dequantized_float_model(zoo, family, head):
    how = QuantConfig(bits=4, group_size=INT4[family][1])
    q = zoo.outputs("q", family, head, how)
    assert_outputs_equal(q, zoo.outputs("deq", family, head, how), f"{family}/{head} int4 vs dequantized")
    assert_near_float(q, zoo.outputs("float", family, head), 4, f"{family}/{head} int4 vs float")


@pytest.mark.parametrize("family", sorted(EMBEDDED))
def test_quantized_embeddings_and_lm_head_equal_dequantized(zoo, family):
    """With the embedding tables and the LM head quantized too (a tied LM head then reads the quantized table)."""
    head, how = EMBEDDED[family], QuantConfig(bits=8, embeddings=True, lm_head=True)
    assert any(isinstance(x, QArray) and name.endswith("embedding")
               for name, x in qarrays_and_floats(zoo.quantized(family, head, how).params).items())
    q = zoo.outputs("q", family, head, how)
    assert_outputs_equal(q, zoo.outputs("deq", family, head, how), f"{family}/{head} embeddings int8")
    assert_near_float(q, zoo.outputs("float", family, head), 8, f"{family}/{head} embeddings int8 vs float")


# ---------------------------------------------------------------------------------------- 2. which params
def is_lm_head(name: str) -> bool:
    """The projection onto the vocabulary: Llama's / Longformer's ``lm_head`` subtree, XLM's ``pred_layer``."""
    return name.split("/")[0] in ("lm_head", "pred_layer")


def expected_quantized(name: str, ndim: int, qc: QuantConfig) -> bool:
    """Every matrix (a rank >= 2 kernel); tables only with embeddings=True; the LM head only with lm_head=True."""
    if is_lm_head(name):
        return qc.lm_head and ndim >= 2
    leaf = name.rsplit("/", 1)[-1]
    return ndim >= 2 and (leaf == "kernel" or (leaf == "embedding" and qc.embeddings))


def assert_quantized_as(params, float_params, qc: QuantConfig, what: str) -> None:
    """Exactly the expected params are QArrays (of qc's storage type, the float's shape); the rest are the
    float params unchanged."""
    floats = named_leaves(float_params)
    leaves = qarrays_and_floats(params)
    assert sorted(leaves) == sorted(floats), what
    for name, x in leaves.items():
        if expected_quantized(name, floats[name].ndim, qc):
            assert isinstance(x, QArray), f"{what}: {name} is not quantized"
            assert x.qvalue.dtype == (jnp.int8 if qc.bits == 8 else jnp.int4), f"{what}: {name}"
            assert x.qvalue.shape == floats[name].shape and x.scale.ndim == x.ndim, f"{what}: {name}"
        else:
            assert not isinstance(x, QArray), f"{what}: {name} should stay float"
            np.testing.assert_array_equal(np.asarray(x), np.asarray(floats[name]), err_msg=f"{what}: {name}")


@pytest.mark.parametrize("family,head", HEADS)
def test_every_matrix_and_nothing_else_is_quantized(zoo, family, head):
    float_model = zoo.float(family, head)
    assert_quantized_as(zoo.quantized(family, head).params, float_model.params, QuantConfig(), f"{family}/{head}")
    if head == INT4[family][0]:
        qc = QuantConfig(bits=4, group_size=INT4[family][1])
        assert_quantized_as(zoo.quantized(family, head, qc).params, float_model.params, qc, f"{family}/{head} int4")


@pytest.mark.parametrize("family,head", [("llama", "causal_lm"), ("longformer", "masked_lm")])
@pytest.mark.parametrize("embeddings", [False, True])
@pytest.mark.parametrize("lm_head", [False, True])
def test_embeddings_and_lm_head_only_on_request(zoo, family, head, embeddings, lm_head):
    qc = QuantConfig(bits=8, embeddings=embeddings, lm_head=lm_head)
    float_model = zoo.float(family, head)
    q = conversion.quantize_model(float_model, qc)  # params only: no forward is compiled for these four
    assert_quantized_as(q.params, float_model.params, qc, f"{family}/{head} {qc}")
    assert any(is_lm_head(name) for name in named_leaves(float_model.params))  # the head has an LM head to test
    assert quant_config_of(q.params) == qc


@pytest.mark.parametrize("qc", [QuantConfig(), QuantConfig(bits=4, group_size=64), QuantConfig(bits=4, group_size=16),
                                QuantConfig(bits=4, group_size=32, embeddings=True, lm_head=True),
                                QuantConfig(bits=8, embeddings=True), QuantConfig(bits=4, fit_groups=True)], ids=str)
def test_quant_config_round_trips(zoo, qc):
    """quant_config_of reads bits, group size, embeddings and LM head back off the quantized tree (shapes only)."""
    params = zoo.float("llama", "causal_lm").params
    assert quant_config_of(jax.eval_shape(lambda p: quantize_params(p, qc), params)) == qc
    assert quant_config_of(params) is None
    assert QuantConfig.of(qc.to_dict()) == qc and QuantConfig.of(qc) is qc
    assert QuantConfig.of("int8") == QuantConfig(bits=8) and QuantConfig.of("int4") == QuantConfig(bits=4)


def shared_axis_groups(w: np.ndarray, axis: int, group: int) -> np.ndarray:
    """|w|'s maximum over each run of ``group`` entries along ``axis`` (the entries that share a scale), repeated
    back to w's shape."""
    moved = np.moveaxis(np.abs(w), axis, -1)
    groups = moved.reshape(moved.shape[:-1] + (moved.shape[-1] // group, group)).max(-1)
    return np.moveaxis(np.repeat(groups, group, axis=-1), -1, axis)


@pytest.mark.parametrize("bits", [8, 4])
def test_weights_within_half_a_step(zoo, bits):
    """Each QArray has one scale per output channel (per table row) and stacked layer, shared along the input axis
    (in groups for int4): its scale's shape says so, and every weight, dequantized here in numpy, is within half
    a step (its channel's or group's absmax / 127, int4 / 7) of the float weight. A per-tensor or wrong-axis scale
    breaks the bound for the small channels."""
    for family in FAMILIES:
        head, group_size = INT4[family]
        qc = QuantConfig(bits=bits, group_size=group_size if bits == 4 else 128, embeddings=True, lm_head=True)
        floats = named_leaves(zoo.float(family, head).params)
        for name, x in qarrays_and_floats(zoo.quantized(family, head, qc).params).items():
            if not isinstance(x, QArray):
                continue
            w = np.asarray(floats[name])
            table = name.endswith("embedding") or name.endswith("pred_layer/weight")
            axis = w.ndim - 1 if table else w.ndim - 2  # a kernel [..., in, out] shares along in; a table along dim
            group = w.shape[axis] if bits == 8 else group_size
            scale = np.asarray(x.scale)
            assert scale.shape == w.shape[:axis] + (w.shape[axis] // group,) + w.shape[axis + 1:], (family, name)
            dequantized = np.asarray(x.qvalue).astype(np.float32) * np.repeat(scale, group, axis=axis)
            half_step = shared_axis_groups(w, axis, group) / (2 * (2 ** (bits - 1) - 1))
            err = np.abs(dequantized - w)
            assert np.all(err <= half_step * (1 + 1e-6) + 1e-12), (family, name, float((err / half_step).max()))


def test_param_bytes_of_realistic_matrices():
    """int8 ~1/4 and int4 (groups of 128) ~1/8 of float32, scales included, for BERT-base-sized FFN matrices
    (param_bytes counts shapes and dtypes, so the quantized trees' shapes suffice: nothing is computed)."""
    params = {"up": {"kernel": jax.ShapeDtypeStruct((768, 3072), jnp.float32)},
              "down": {"kernel": jax.ShapeDtypeStruct((3072, 768), jnp.float32)},
              "norm": {"scale": jax.ShapeDtypeStruct((768,), jnp.float32)}}
    floats = param_bytes(params)
    assert floats == 4 * (2 * 768 * 3072 + 768)
    int8 = param_bytes(jax.eval_shape(lambda p: quantize_params(p, QuantConfig(bits=8)), params))
    int4 = param_bytes(jax.eval_shape(lambda p: quantize_params(p, QuantConfig(bits=4, group_size=128)), params))
    assert int8 / floats <= 0.27 and int4 / floats <= 0.15, (int8 / floats, int4 / floats)
    assert int4 < int8 < floats


# ---------------------------------------------------------------------------------------- 3. sharded
SHARDED = [("llama", "causal_lm", "int8"), ("longformer", "question_answering", "int8"),
           # 12-wide layout matrices in groups of 4: 3 groups per input axis, which fsdp = 2 cannot split evenly
           ("lilt", "token_classification", QuantConfig(bits=4, group_size=4))]


@pytest.mark.parametrize("kind", MESH_KINDS)
@pytest.mark.parametrize("family,head,how", SHARDED, ids=lambda v: str(v) if isinstance(v, QuantConfig) else None)
def test_sharded_quantized_equals_unsharded(zoo, checkpoints, family, head, how, kind):
    """``from_pretrained(mesh=..., quantize=...)``: the same outputs as the unsharded quantized model, the int
    values split as the float params they replace, and the stacked layers' scales split too."""
    mesh = mesh_of(kind)
    load = dict(architecture=FAMILIES[family][0].HF_CLASSES[head], init_missing=jax.random.PRNGKey(0),
                progress=False, mesh=mesh)
    model = silently(conversion.from_pretrained, checkpoints[family], quantize=how, **load)
    float_specs = {name: x.sharding.spec
                   for name, x in named_leaves(silently(conversion.from_pretrained, checkpoints[family],
                                                        **load).params).items()}
    unsharded = zoo.quantized(family, head, how)
    for name, x in qarrays_and_floats(model.params).items():
        if not isinstance(x, QArray):
            continue
        assert x.qvalue.sharding.spec == float_specs[name], (kind, name, x.qvalue.sharding.spec)
        if splittable_matrix(tuple(name.split("/")), x.qvalue):
            assert x.qvalue.addressable_shards[0].data.size < x.qvalue.size, (kind, name, x.qvalue.sharding.spec)
        if name.startswith("layers/"):
            assert x.scale.addressable_shards[0].data.size < x.scale.size, (kind, name, x.scale.sharding.spec)
    for a, b in zip(jax.tree.leaves(model.params), jax.tree.leaves(unsharded.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # the same quantization, only placed
    assert_outputs_equal(model(**inputs_for(family, head)), zoo.outputs("q", family, head, how),
                         f"{family}/{head} {how} on {kind}")


# ---------------------------------------------------------------------------------------- 4. generate
@pytest.mark.parametrize("decoding", sorted(DECODING))
@pytest.mark.parametrize("family,head", GENERATIVE)
def test_generate_equals_dequantized_float_model(zoo, family, head, decoding):
    x = inputs_for(family, head)
    kwargs = dict(attention_mask=x["attention_mask"], max_new_tokens=3, **DECODING[decoding])
    got = zoo.quantized(family, head).generate(x["input_ids"], **kwargs)
    want = zoo.dequantized(family, head).generate(x["input_ids"], **kwargs)
    np.testing.assert_array_equal(got, want, err_msg=f"{family}/{head} {decoding}")


# ---------------------------------------------------------------------------------------- 5. pipeline
def test_text_generation_pipeline_from_a_quantized_orbax_checkpoint(tmp_path, capsys):
    """``jaxzoo quantize`` writes an Orbax directory (tokenizer files copied) that a pipeline loads quantized;
    its text equals the dequantized-float model's under the same pipeline."""
    src = pipeline_checkpoint(tmp_path / "src", "llama", "causal_lm")
    dst = tmp_path / "int8"
    assert main(["quantize", str(src), str(dst), "--bits", "8", "--quiet"]) == 0
    assert re.search(r"int8 weights .* \((0\.\d+)x\)", capsys.readouterr().out)
    assert json.loads((dst / MARKER).read_text())["quantization"] == QuantConfig(bits=8).to_dict()
    assert (dst / "tokenizer.json").exists()
    pipe = conversion.pipeline("text-generation", dst, batch_size=2)
    assert quant_config_of(pipe.model.params) == QuantConfig(bits=8)
    q = pipe.model
    twin = conversion.pipeline("text-generation", Model(q.config, dequantize_params(q.params), q.spec,
                                                        q.generation_config), tokenizer=dst, batch_size=2)
    prompts = ["If the", "The", "A list of", "class"]
    options = dict(max_new_tokens=4, do_sample=False)
    got = pipe(prompts, **options)
    assert got == twin(prompts, **options)
    assert all(r[0]["generated_text"].startswith(p) for r, p in zip(got, prompts))


# ---------------------------------------------------------------------------------------- 6. Orbax
def assert_same_params(a, b, what: str) -> None:
    """The same tree (QArrays where they were, same storage types) and the same bits."""
    assert jax.tree.structure(a) == jax.tree.structure(b), what
    bs = named_leaves(b)
    for name, x in named_leaves(a).items():
        y = bs[name]
        assert x.dtype == y.dtype and x.shape == y.shape, (what, name)
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=f"{what}: {name}")


@pytest.mark.parametrize("how", ["int8", QuantConfig(bits=4, group_size=32)], ids=str)
def test_orbax_round_trip(zoo, tmp_path, how):
    """A quantized model saved with save_orbax loads back bit for bit (unsharded and onto both mesh kinds, split
    there), computes the same, and refuses a second quantization."""
    q = zoo.quantized("llama", "causal_lm", how)
    qc = quant_config_of(q.params)
    dst = tmp_path / "q"
    save_orbax(q.params, dict(q.config.to_hf_dict(), architectures=[q.architecture]), dst, q.generation_config,
               quantization=qc.to_dict())
    restored = conversion.from_pretrained(dst, progress=False)
    assert_same_params(restored.params, q.params, f"{how} restored")
    assert_outputs_equal(restored(**inputs_for("llama", "causal_lm")), zoo.outputs("q", "llama", "causal_lm", how),
                         f"{how} restored")
    for kind in MESH_KINDS:
        sharded = conversion.from_pretrained(dst, progress=False, mesh=mesh_of(kind))
        assert_same_params(sharded.params, q.params, f"{how} restored on {kind}")
        up = sharded.params["layers"]["mlp"]["up_proj"]["kernel"]
        assert isinstance(up, QArray) and up.qvalue.addressable_shards[0].data.size < up.qvalue.size, kind
        assert up.scale.addressable_shards[0].data.size < up.scale.size, (kind, up.scale.sharding.spec)
    with pytest.raises(ValueError, match="already quantized"):
        conversion.from_pretrained(dst, progress=False, quantize="int8")


@pytest.mark.parametrize("flags,qc", [
    (["--group-size", "32", "--embeddings"], QuantConfig(bits=4, group_size=32, embeddings=True)),
    # 48 divides neither 64 nor 128: fitted, every group is 32
    (["--group-size", "48", "--fit-groups"], QuantConfig(bits=4, group_size=48, fit_groups=True))], ids=str)
def test_cli_int4_options(zoo, checkpoints, tmp_path, flags, qc):
    """``--bits 4`` with group / embeddings / fit flags writes what quantize_model gives (the bare model: no LM
    head), with its QuantConfig in the marker, and loads back as saved."""
    dst = tmp_path / "int4"
    assert main(["quantize", str(checkpoints["llama"]), str(dst), "--bits", "4", *flags, "--quiet"]) == 0
    assert json.loads((dst / MARKER).read_text())["quantization"] == qc.to_dict()
    restored = conversion.from_pretrained(dst, progress=False)
    assert_same_params(restored.params, zoo.quantized("llama", "model", qc).params, f"CLI {flags}")


# ---------------------------------------------------------------------------------------- 7. errors
def test_save_pretrained_refuses_a_quantized_model(zoo, tmp_path):
    with pytest.raises(ValueError, match="quantized"):
        conversion.save_pretrained(zoo.quantized("llama", "causal_lm"), tmp_path / "hf")
    assert not (tmp_path / "hf").exists() or not any((tmp_path / "hf").iterdir())


def test_cli_convert_refuses_a_quantized_orbax_directory(zoo, checkpoints, tmp_path, capsys):
    """Orbax -> HF of a quantized directory goes through save_pretrained's refusal: exit status 2, a message."""
    assert main(["quantize", str(checkpoints["xlm"]), str(tmp_path / "q"), "--quiet"]) == 0
    assert main(["convert", str(tmp_path / "q"), str(tmp_path / "hf"), "--quiet"]) == 2
    assert "quantized" in capsys.readouterr().err


@pytest.mark.parametrize("kwargs,message", [
    (dict(bits=3), r"bits = 3 is invalid: expected one of \[4, 8\]"),
    (dict(bits=16), r"bits = 16 is invalid"),
    (dict(group_size=0), r"group_size = 0 is invalid: expected a positive integer"),
    (dict(group_size=-32), r"group_size = -32 is invalid"),
    (dict(group_size=True), r"group_size = True is invalid"),
    (dict(group_size=32.0), r"group_size = 32.0 is invalid"),
])
def test_bad_quant_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        QuantConfig(**kwargs)


@pytest.mark.parametrize("how", ["int2", "int16", 2, True], ids=str)
def test_bad_quantize_argument(how):
    with pytest.raises(ValueError, match=r"quantize = .* is invalid: expected 'int8' or 'int4'"):
        QuantConfig.of(how)


def test_from_pretrained_rejects_int2(checkpoints):
    with pytest.raises(ValueError, match="int2"):
        conversion.from_pretrained(checkpoints["llama"], progress=False, quantize="int2")


def test_group_size_that_does_not_divide_names_the_param():
    w = jnp.ones((96, 8))
    with pytest.raises(ValueError, match=re.escape("group_size = 64 does not divide proj/kernel's dimension 0 of "
                                                   "size 96 (shape (96, 8))")):
        quantize_params({"proj": {"kernel": w}}, QuantConfig(bits=4, group_size=64))
    with pytest.raises(ValueError, match=re.escape("group_size = 16 does not divide tok/embedding's dimension 1 "
                                                   "of size 24")):
        quantize_params({"tok": {"embedding": jnp.ones((10, 24))}}, QuantConfig(bits=4, group_size=16,
                                                                                 embeddings=True))
    # a table is left float without embeddings=True, so its width does not matter then
    assert quantize_params({"tok": {"embedding": jnp.ones((10, 24))}}, QuantConfig(bits=4, group_size=16))


def test_fit_groups_takes_the_largest_divisor_per_param():
    """fit_groups: a 688-wide input (the main job's MLP) gets groups of 86, a 256-wide one keeps 128, and the tree
    reads back as the config that made it."""
    params = {"down": {"kernel": jnp.ones((688, 8))}, "up": {"kernel": jnp.ones((256, 8))}}
    qc = QuantConfig(bits=4, group_size=128, fit_groups=True)
    q = quantize_params(params, qc)
    assert q["down"]["kernel"].scale.shape == (8, 8) and q["up"]["kernel"].scale.shape == (2, 8)
    assert quant_config_of(q) == qc
    assert qc.group_for(7) == 7 and qc.group_for(131) == 1 and QuantConfig(bits=4).group_for(688) is None
    with pytest.raises(ValueError, match="or fit_groups=True"):
        quantize_params(params, QuantConfig(bits=4, group_size=128))


def test_group_size_error_through_the_model(zoo):
    with pytest.raises(ValueError, match=r"group_size = 48 does not divide layers/\S+/kernel's dimension 1 of "
                                         r"size (64|128)"):
        conversion.quantize_model(zoo.float("llama", "causal_lm"), QuantConfig(bits=4, group_size=48))


def test_repr_counts_the_weights_not_the_scales(zoo):
    model = zoo.float("llama", "causal_lm")
    text = repr(model)
    assert repr(zoo.quantized("llama", "causal_lm", "int8")) == text[:-1] + ", int8 weights)"


def test_quantizing_twice_is_an_error(zoo):
    with pytest.raises(ValueError, match=re.escape("already quantized (QuantConfig(bits=8")):
        conversion.quantize_model(zoo.quantized("llama", "causal_lm"), "int4")


def test_cli_rejects_other_bit_widths(checkpoints, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["quantize", str(checkpoints["llama"]), str(tmp_path / "q"), "--bits", "5"])
    assert exit_info.value.code == 2
    assert "invalid choice: 5" in capsys.readouterr().err
    assert not (tmp_path / "q").exists()


def test_cli_group_size_error(checkpoints, tmp_path, capsys):
    assert main(["quantize", str(checkpoints["llama"]), str(tmp_path / "q"), "--bits", "4", "--group-size", "48",
                 "--quiet"]) == 2
    assert re.search(r"group_size = 48 does not divide layers/\S+/kernel's", capsys.readouterr().err)
    assert not (tmp_path / "q" / MARKER).exists()


# ------------------------------------------------------- the int8 product on CPU (common.layers._int8_matmul)
def _int8_weight(transposed: bool, k: int = 768, out: int = 384):
    """A per-channel int8 weight: a kernel [k, out] or (transposed) a table [out, k], as the model holds them."""
    w = jax.random.normal(jax.random.key(7), (out, k) if transposed else (k, out), jnp.float32)
    return quantize_array(w, "table" if transposed else "kernel", QuantConfig())


def _product(x, q, transposed):
    return jax.jit(lambda x, q: layers.matmul(x, q, transposed=transposed))(x, q)


@pytest.mark.parametrize("transposed", [False, True])
def test_int8_product_runs_on_int8_units_and_is_as_accurate_as_float32(transposed):
    """The product of float32 activations and an int8 weight is at least as close to the exact product (float64
    over the dequantized weight) as float32's own product over the dequantized weight, and it is computed by an
    int8 x int8 -> int32 product (no float copy of the weight)."""
    q = _int8_weight(transposed)
    x = jax.random.normal(jax.random.key(1), (3, 5, 768), jnp.float32) * jnp.exp(
        jax.random.normal(jax.random.key(2), (3, 5, 768)))  # entries over several orders of magnitude
    w = np.asarray(weight(q, jnp.float32), np.float64)
    exact = np.asarray(x, np.float64) @ (w.T if transposed else w)
    got = np.asarray(_product(x, q, transposed), np.float64)
    float32 = np.asarray(_product(x, weight(q, jnp.float32), transposed), np.float64)
    assert np.abs(got - exact).max() <= np.abs(float32 - exact).max()
    assert on_int8_units(lambda x, q: layers.matmul(x, q, transposed=transposed), x, q)


def on_int8_units(fn, *args) -> bool:
    """Whether ``fn(*args)`` has an int8 x int8 -> int32 product."""
    return "preferred_element_type=int32" in str(jax.make_jaxpr(fn)(*args))


def test_int8_product_only_where_it_pays():
    """Many rows (compute-bound) or int4 groups: the weight is dequantized instead."""
    q = _int8_weight(False)
    product = lambda x, q: layers.matmul(x, q)  # noqa: E731
    assert on_int8_units(product, jnp.ones((layers.INT8_MAX_ROWS, 768)), q)
    assert not on_int8_units(product, jnp.ones((layers.INT8_MAX_ROWS + 1, 768)), q)
    assert not on_int8_units(product, jnp.ones((1, 768)), quantize_array(jnp.ones((768, 384)), "kernel",
                                                                            QuantConfig(bits=4, group_size=128)))


def test_int8_product_in_bfloat16_rounds_once():
    """bfloat16 activations: the product is the exact one rounded once to bfloat16 (half a unit in the last place,
    at most 2^-8 relative: 8 significant bits)."""
    q = _int8_weight(False)
    x = jax.random.normal(jax.random.key(3), (4, 768), jnp.float32).astype(jnp.bfloat16)
    w = np.asarray(weight(q, jnp.float32), np.float64)
    exact = np.asarray(x.astype(jnp.float32), np.float64) @ w
    got = np.asarray(_product(x, q, False).astype(jnp.float32), np.float64)
    assert _product(x, q, False).dtype == jnp.bfloat16
    assert np.all(np.abs(got - exact) <= 2.0 ** -8 * np.abs(exact) + 1e-6 * np.abs(exact).max())


def test_int8_digits_are_exact():
    """Each row splits into int8 digits d_i with x = sx * sum_i d_i / 128^i up to half the last digit, sx a power of
    two, |d_i| <= 127; also for rows whose largest entry sits at or just past 127 * 2^k (where log2 rounds)."""
    rows = np.random.default_rng(0).standard_normal((6, 50)).astype(np.float32)
    rows[1, 0] = 127.0 * 2.0 ** 5
    rows[2, 0] = np.nextafter(np.float32(127.0 * 2.0 ** -3), np.float32(np.inf))
    rows[3] = 0.0
    rows[4, :25] *= 1e-6  # small entries next to large ones
    d, sx = layers._int8_digits(jnp.asarray(rows), 4)
    d = np.asarray(d, np.float64).reshape(6, 4, 50)
    sx = np.asarray(sx, np.float64)
    assert np.abs(d).max() <= 127
    assert np.all(np.log2(sx) == np.round(np.log2(sx)))
    rebuilt = sx * sum(d[:, i] / 128.0 ** i for i in range(4))
    assert np.all(np.abs(rebuilt - rows) <= sx * 0.5 / 128.0 ** 3)


def test_int8_product_keeps_non_finite_rows_and_zeros():
    """A row with NaN or inf gives NaN (its digits mean nothing), never finite numbers; a zero row gives zeros; other
    rows are untouched."""
    q = _int8_weight(False)
    x = jax.random.normal(jax.random.key(4), (4, 768), jnp.float32)
    x = x.at[0, 3].set(jnp.nan).at[1, 5].set(jnp.inf).at[2].set(0.0)
    y = np.asarray(_product(x, q, False))
    assert np.isnan(y[0]).all() and np.isnan(y[1]).all()
    assert (y[2] == 0).all()
    np.testing.assert_allclose(y[3], np.asarray(_product(x[3:], q, False))[0], rtol=0, atol=0)


@pytest.mark.parametrize("transposed", [False, True])
def test_int8_product_gradients(transposed):
    """Gradients through the int8 product (the digits' rounding is not differentiated) with respect to the
    activations and the scales: for the loss sum(c * (x @ w)), c @ w.T and sum over rows of c * (x @ q), within
    float32 rounding (1e-5 of the largest) of their exact values."""
    q = _int8_weight(transposed)
    x = jax.random.normal(jax.random.key(5), (6, 768), jnp.float32)
    c = jax.random.normal(jax.random.key(6), (6, 384), jnp.float32)

    def loss(x, scale):
        return jnp.sum(c * layers.matmul(x, dataclasses.replace(q, scale=scale), transposed=transposed))

    dx, dscale = jax.jit(jax.grad(loss, argnums=(0, 1)))(x, q.scale)
    values = np.asarray(q.qvalue, np.float64)
    values = values.T if transposed else values  # [768, 384]
    scale = np.asarray(q.scale, np.float64).reshape(-1)
    c64, x64 = np.asarray(c, np.float64), np.asarray(x, np.float64)
    want_dx = (c64 * scale) @ values.T
    want_dscale = np.sum(c64 * (x64 @ values), axis=0).reshape(q.scale.shape)
    for got, want in ((dx, want_dx), (dscale, want_dscale)):
        np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=0, atol=1e-5 * np.abs(want).max())


def test_llama_on_int8_units_equals_its_dequantized_float_model(tmp_path):
    """A Llama on the int8 units, with embeddings and LM head quantized too (the tied-layout product over a table):
    the forward (16 rows) and greedy / beam decoding equal the dequantized float model's, and its products are
    int8 ones."""
    from tests.llama import hf_llama

    path = save_hf(hf_llama.hf_model("causal_lm", hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                                     vocab_size=256, initializer_range=0.2), tmp_path / "llama")
    model = conversion.from_pretrained(path, progress=False)
    quantized = conversion.quantize_model(model, QuantConfig(embeddings=True, lm_head=True))
    twin = Model(model.config, dequantize_params(quantized.params), model.spec, model.generation_config)
    ids, mask = hf_llama.left_padded_batch(vocab=256, lengths=(8, 5))
    assert_outputs_equal(quantized(input_ids=ids, attention_mask=mask), twin(input_ids=ids, attention_mask=mask),
                         "llama int8 forward")
    for kwargs in ({}, {"num_beams": 2}):
        got = quantized.generate(ids, attention_mask=mask, max_new_tokens=4, **kwargs)
        np.testing.assert_array_equal(got, twin.generate(ids, attention_mask=mask, max_new_tokens=4, **kwargs))
    step = lambda q, x: layers.matmul(x, q)  # noqa: E731  (the MLP's up projection at one decoding row)
    assert on_int8_units(step, jax.tree.map(lambda a: a[0], quantized.params["layers"]["mlp"]["up_proj"]["kernel"]),
                         jnp.ones((1, 64)))
