"""The gradient of every head's loss w.r.t. every parameter equals PyTorch's, tensor by tensor, in every family.

For each head that computes a loss (and, for sequence classification, each HF ``problem_type`` in Llama and
Longformer) a tiny random transformers model is saved and loaded with ``conversion.from_pretrained``; the loss is
differentiated on both sides on the same padded batch (Longformer/LED global tokens, LiLT boxes, XLM languages,
-100 labels where HF ignores them), with dropout off (eval mode / ``deterministic=True``). Our gradient tree goes
through the conversion layer's own name table (``conversion.api.hf_tensors``: the inverse of loading, transposes
and layer stacking included), so each of our tensors is compared with the ``param.grad`` of the torch parameter
it was loaded from, elementwise:

    |ours - torch| <= ATOL + RTOL * |torch|       (float32)

and per tensor, ||ours - torch|| <= TENSOR_RTOL * ||torch|| + TENSOR_ATOL. Neither is relative to a global norm,
so a wrong gradient in a small tensor (a bias, a layer norm, one layer of a stack) cannot hide behind a large
one. The losses must agree to LOSS_ATOL. Tied tensors (LED's shared embedding, MLM / XLM output
projections) are one torch parameter and one of our leaves, whose gradients both sum every use. LED's
``final_logits_bias`` is a torch buffer; it is made to require a gradient so that it is compared too.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import numpy as np
import pytest
import torch

import conversion
from common.model import Model
from tests.factory import save_hf
from tests.led import hf_led
from tests.lilt import hf_lilt
from tests.llama import hf_llama
from tests.longformer import hf_longformer
from tests.xlm import hf_xlm

# float32 gradients of the same math in two frameworks: summation orders differ (XLA reorders the backward
# reductions, e.g. over batch x time for every kernel), so an element carries rounding of a few ulps of the largest
# partial sums that made it, and elements that cancel to ~0 (a key bias: softmax ignores it) keep ~1e-8 of noise.
# Measured (2-core CPU, float32): at most 0.40 of the elementwise bound (Llama regression, whose gradients reach
# 6), while 1e-6 absolute instead of 1e-5 fails there (3.3x): the bound is 2.5x above the rounding, not looser.
ATOL = 1e-5
RTOL = 1e-4
# A second, per-tensor check catches a tensor whose gradients are all small (XLM multiple choice: norms down to
# 2e-4), where ATOL alone would let a few percent through: ||ours - torch|| <= TENSOR_RTOL ||torch|| + TENSOR_ATOL
# (measured: at most 0.33 of it; the 1e-6 floor passes the ~1e-8 noise of gradients that are zero in exact math).
TENSOR_RTOL = 1e-5
TENSOR_ATOL = 1e-6
LOSS_ATOL = 1e-5
B = 3  # batch rows


# ------------------------------------------------------------------------------------------------ inputs
def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _globals(mask: np.ndarray) -> np.ndarray:
    """A global_attention_mask shaped like ``mask`` ([..., T]): a different number of globals per row (2, 0, 1,
    ...), on non-pad positions (<s> or elsewhere)."""
    g = np.zeros_like(mask)
    flat, rows = g.reshape(-1, g.shape[-1]), mask.reshape(-1, mask.shape[-1])
    for r in range(flat.shape[0]):
        picks = [(3 * r + 1) % 7, 5 + r % 3][: (2, 0, 1)[r % 3]]
        flat[r, [p for p in picks if rows[r, p]]] = 1
    return g


def _sequence_labels(problem_type: str | None, num_labels: int, seed: int = 0) -> np.ndarray:
    """[B] int class ids (single label), [B] float targets (regression, num_labels 1) or [B, num_labels] float
    multi-hot targets (multi label)."""
    rng = _rng(seed)
    if problem_type == "regression":
        return rng.normal(size=(B,)).astype(np.float32)
    if problem_type == "multi_label_classification":
        return (rng.random((B, num_labels)) < 0.5).astype(np.float32)
    return rng.integers(0, num_labels, (B,))


def _token_labels(mask: np.ndarray, classes: int, seed: int = 0, keep: float = 1.0) -> np.ndarray:
    """[B, T] labels in [0, classes), -100 on padding and on a random (1 - keep) of the real tokens."""
    rng = _rng(seed)
    kept = (mask == 1) & (rng.random(mask.shape) < keep)
    return np.where(kept, rng.integers(0, classes, mask.shape), -100)


def _span(seq: int) -> dict:
    """start/end positions, one of them past the end (HF clamps it to ``seq`` and ignores it)."""
    return {"start_positions": np.array([6, 3, seq + 20]), "end_positions": np.array([8, 5, 7])}


def llama_inputs(head: str, variant: str | None, num_labels: int) -> dict:
    """Left padding (lengths 7, 4, 5), Llama's convention."""
    ids, mask = hf_llama.left_padded_batch()
    x = {"input_ids": ids, "attention_mask": mask}
    if head == "causal_lm":
        x["labels"] = np.where(mask == 1, ids, -100)
    elif head == "sequence_classification":
        x["labels"] = _sequence_labels(variant, num_labels)
    elif head == "token_classification":
        x["labels"] = _token_labels(mask, num_labels, keep=0.8)
    else:
        x.update({"start_positions": np.array([6, 3, 4]), "end_positions": np.array([6, 5, 20])})
    return x


def longformer_inputs(head: str, variant: str | None, num_labels: int) -> dict:
    """Right-padded RoBERTa pairs (lengths 13, 9, 11; window 4 so the length needs window padding), explicit
    global tokens; multiple choice: [B, 2, T]."""
    ids, mask = hf_longformer.qa_batch()
    if head == "multiple_choice":
        ids2, mask2 = hf_longformer.qa_batch(lengths=(11, 13, 7), question=(2, 3, 1), seed=1)
        ids, mask = np.stack([ids, ids2], 1), np.stack([mask, mask2], 1)
    x = {"input_ids": ids, "attention_mask": mask, "global_attention_mask": _globals(mask)}
    if head == "masked_lm":
        x["labels"] = np.where((mask == 1) & (_rng().random(ids.shape) < 0.5), ids, -100)
    elif head == "sequence_classification":
        x["labels"] = _sequence_labels(variant, num_labels)
    elif head == "multiple_choice":
        x["labels"] = np.array([0, 1, 1])
    elif head == "token_classification":
        x["labels"] = _token_labels(mask, num_labels, keep=0.8)
    else:
        x.update(_span(ids.shape[1]))
    return x


def led_inputs(head: str, variant: str | None, num_labels: int) -> dict:
    """Right-padded encoder rows (13, 9, 11) each ending in eos, explicit global tokens; the decoder reads the
    labels shifted right (generation) or input_ids shifted right (the other heads), as HF. Variant
    "decoder_padding": explicit decoder inputs (the labels shifted right) with a padded decoder_attention_mask."""
    ids, mask = hf_led.batch()
    x = {"input_ids": ids, "attention_mask": mask, "global_attention_mask": _globals(mask)}
    if head == "conditional_generation":
        labels = _rng(3).integers(3, 99, (B, 6))
        labels[1, 4:] = -100
        x["labels"] = labels
        if variant == "decoder_padding":
            start, pad = hf_led.TINY["decoder_start_token_id"], hf_led.TINY["pad_token_id"]
            dec = np.concatenate([np.full((B, 1), start), labels[:, :-1]], axis=1)
            x["decoder_input_ids"] = np.where(dec == -100, pad, dec)
            x["decoder_attention_mask"] = (dec != -100).astype(np.int64)  # row 1: its last token is padding
    elif head == "sequence_classification":
        x["labels"] = _sequence_labels(variant, num_labels)
    else:
        x.update(_span(ids.shape[1]))
    return x


def lilt_inputs(head: str, variant: str | None, num_labels: int) -> dict:
    """Right-padded rows (13, 9, 11) with boxes over the whole 0..1000 range and token types."""
    ids, mask, boxes, types = hf_lilt.batch()
    x = {"input_ids": ids, "attention_mask": mask, "bbox": boxes, "token_type_ids": types}
    if head == "sequence_classification":
        x["labels"] = _sequence_labels(variant, num_labels)
    elif head == "token_classification":
        x["labels"] = _token_labels(mask, num_labels, keep=0.8)
    else:
        x.update(_span(ids.shape[1]))
    return x


def xlm_inputs(head: str, variant: str | None, num_labels: int) -> dict:
    """Right-padded rows (9, 6, 8), one language per row; multiple choice: [B, 2, T] (rows reversed as the
    second choice); the SQuAD head with cls_index, is_impossible and a p_mask over padding."""
    ids, mask, langs = hf_xlm.batch()
    x = {"input_ids": ids, "attention_mask": mask, "langs": langs}
    if head == "multiple_choice":
        x = {k: np.stack([v, v[::-1]], axis=1) for k, v in x.items()}
        x["labels"] = np.array([1, 0, 1])
    elif head == "with_lm_head":
        x["labels"] = _token_labels(mask, 99, keep=0.7)
    elif head == "sequence_classification":
        x["labels"] = _sequence_labels(variant, num_labels)
    elif head == "token_classification":
        x["labels"] = _token_labels(mask, num_labels, keep=0.8)
    elif head == "question_answering_simple":
        x.update(_span(ids.shape[1]))
    else:
        x.update({"start_positions": np.array([1, 3, 2]), "end_positions": np.array([4, 5, 7]),
                  "cls_index": np.array([0, 0, 1]), "is_impossible": np.array([0.0, 1.0, 0.0], np.float32),
                  "p_mask": (1 - mask).astype(np.float32)})
    return x


@dataclasses.dataclass(frozen=True)
class Family:
    hf_model: Callable  # (head, **config overrides) -> torch module in eval mode
    init: dict  # config overrides for every head: init std 0.2 so activations and gradients are O(1)
    inputs: Callable  # (head, variant, num_labels) -> dict of numpy inputs with labels


FAMILIES = {
    "llama": Family(hf_llama.hf_model, hf_llama.PARITY_INIT, llama_inputs),
    "longformer": Family(hf_longformer.hf_model, hf_longformer.PARITY_INIT, longformer_inputs),
    "led": Family(hf_led.hf_model, dict(init_std=0.2), led_inputs),
    "lilt": Family(hf_lilt.hf_model, {}, lilt_inputs),  # its TINY already has initializer_range 0.2
    "xlm": Family(hf_xlm.hf_model, hf_xlm.PARITY_INIT, xlm_inputs),
}


# ------------------------------------------------------------------------------------------------- cases
@dataclasses.dataclass(frozen=True)
class Case:
    family: str
    head: str
    # sequence classification: a problem_type, set in the HF config (None: HF infers it from the labels);
    # LED generation: "decoder_padding" (explicit decoder inputs with padding; None: labels shifted right)
    variant: str | None = None

    @property
    def id(self) -> str:
        return "-".join(p for p in (self.family, self.head, self.variant) if p)

    @property
    def overrides(self) -> dict:
        """HF config fields of this case's checkpoint."""
        out = dict(FAMILIES[self.family].init)
        if self.variant in PROBLEM_TYPES:
            out["problem_type"] = self.variant
            if self.variant == "regression":
                out["num_labels"] = 1
        return out


PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")
HEADS = {
    "llama": ("causal_lm", "token_classification", "question_answering"),
    "longformer": ("masked_lm", "token_classification", "question_answering", "multiple_choice"),
    "led": ("conditional_generation", "sequence_classification", "question_answering"),
    "lilt": ("sequence_classification", "token_classification", "question_answering"),
    "xlm": ("with_lm_head", "sequence_classification", "token_classification", "question_answering_simple",
            "question_answering", "multiple_choice"),
}
CASES = [Case(f, h) for f, heads in HEADS.items() for h in heads]
CASES += [Case(f, "sequence_classification", p) for f in ("llama", "longformer") for p in PROBLEM_TYPES]
CASES.append(Case("led", "conditional_generation", "decoder_padding"))
CASES.sort(key=lambda c: c.id)


def test_every_head_with_a_loss_is_covered():
    """Each family's heads with labels (all but the bare backbone) appear here; a new head must be added."""
    covered = {(c.family, c.head) for c in CASES}
    every = {(a.family, a.head) for a in conversion.ARCHITECTURES.values() if a.head != "model"}
    assert covered == every, sorted(every ^ covered)


# ------------------------------------------------------------------------------------------ both sides
@dataclasses.dataclass
class Result:
    loss: float  # ours
    torch_loss: float
    ours: dict[str, np.ndarray]  # HF name -> our gradient in HF layout
    torch: dict[str, np.ndarray]  # HF name -> torch's .grad


def _torch_loss(case: Case, hf: torch.nn.Module, inputs: dict) -> torch.Tensor:
    """HF's loss for the inputs. LEDForSequenceClassification is gone from transformers 5.x: the reference
    (tests/led/hf_led.py) gives logits, and 4.x's loss for int labels and 3 classes is cross entropy."""
    tensors = {k: torch.as_tensor(v) for k, v in inputs.items()}
    if case.family == "led" and case.head == "sequence_classification":
        labels = tensors.pop("labels")
        return torch.nn.functional.cross_entropy(hf(**tensors).logits.view(-1, hf.config.num_labels), labels.view(-1))
    return hf(**tensors).loss


def _torch_grads(case: Case, hf: torch.nn.Module, inputs: dict) -> tuple[float, dict[str, np.ndarray]]:
    """(loss, HF name -> grad) for every parameter (tied ones once, under the name the checkpoint keeps) and
    every float buffer our tree holds as a param (LED's final_logits_bias). A parameter the loss never reaches
    gets zeros (torch leaves its .grad None)."""
    buffers = {n: b for n, b in hf.named_buffers() if n.endswith("final_logits_bias")}
    for b in buffers.values():
        b.requires_grad_(True)
    hf.zero_grad(set_to_none=True)
    loss = _torch_loss(case, hf, inputs)
    loss.backward()
    tensors = dict(hf.named_parameters(), **buffers)
    grads = {n: (t.grad if t.grad is not None else torch.zeros_like(t)).detach().numpy().copy()
             for n, t in tensors.items()}
    return loss.item(), grads


def _our_grads(model, inputs: dict) -> tuple[float, dict[str, np.ndarray]]:
    """(loss, HF name -> grad): jit(value_and_grad) of the head's loss, dropout off, the gradient tree mapped to
    HF names and layouts by the conversion layer's table (hf_tensors, the inverse of loading)."""
    spec, config = model.spec, model.config
    arrays = spec.validate_inputs(config, dict(inputs))  # the host checks and conversions model(...) applies
    static = {k: arrays.pop(k) for k in spec.static_args if k in arrays}  # e.g. max_num_global

    def loss_fn(params, arrays):
        return spec.forward(params, config, **arrays, **static, deterministic=True).loss

    loss, grads = jax.jit(jax.value_and_grad(loss_fn))(model.params, arrays)
    return float(loss), conversion.api.hf_tensors(Model(config, grads, spec))


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Case -> Result, each computed once per module (the checkpoint built, saved, loaded and both gradients
    taken on first use)."""
    root = tmp_path_factory.mktemp("head_gradients")

    @functools.cache
    def get(case: Case) -> Result:
        fam = FAMILIES[case.family]
        hf = fam.hf_model(case.head, **case.overrides)
        model = conversion.from_pretrained(save_hf(hf, root / case.id), progress=False)
        inputs = fam.inputs(case.head, case.variant, model.config.num_labels)
        torch_loss, torch_grads = _torch_grads(case, hf, inputs)
        loss, ours = _our_grads(model, inputs)
        return Result(loss, torch_loss, ours, torch_grads)

    return get


# ------------------------------------------------------------------------------------------ comparison
def mismatches(ours: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> list[str]:
    """One line per tensor whose gradient differs from torch's anywhere by more than ATOL + RTOL * |torch|,
    or as a whole by more than TENSOR_RTOL * ||torch|| + TENSOR_ATOL, or whose name or shape differs; [] when all
    agree. ``ours`` and ``ref``: HF name -> array in HF layout."""
    problems = [f"{n}: only in ours" for n in sorted(set(ours) - set(ref))]
    problems += [f"{n}: only in torch" for n in sorted(set(ref) - set(ours))]
    for name in sorted(set(ours) & set(ref)):
        a, b = ours[name], ref[name]
        if a.shape != b.shape:
            problems.append(f"{name}: shape {a.shape} != torch {b.shape}")
            continue
        excess = np.abs(a - b) - (ATOL + RTOL * np.abs(b))
        if not np.all(excess <= 0):  # also catches NaN
            i = tuple(int(k) for k in np.unravel_index(np.argmax(np.where(np.isnan(excess), np.inf, excess)),
                                                        a.shape))
            problems.append(f"{name}{list(i)}: ours {a[i]:.6e} torch {b[i]:.6e} "
                            f"({int(np.sum(~(excess <= 0)))} of {a.size} elements out of bounds)")
            continue
        err, norm = float(np.linalg.norm(a - b)), float(np.linalg.norm(b))
        if not err <= TENSOR_RTOL * norm + TENSOR_ATOL:
            problems.append(f"{name}: ||ours - torch|| {err:.3e} > {TENSOR_RTOL} * ||torch|| ({norm:.3e}) + "
                            f"{TENSOR_ATOL}")
    return problems


def worst(ours: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> tuple[float, float, float]:
    """The margins, each over every tensor: max |ours - torch| (one element), max |ours - torch| / (ATOL + RTOL
    |torch|) (elementwise; <= 1 passes) and max ||ours - torch|| / (TENSOR_RTOL ||torch|| + TENSOR_ATOL)
    (per tensor; <= 1 passes)."""
    diff = max(float(np.abs(ours[n] - ref[n]).max()) for n in ref)
    ratio = max(float((np.abs(ours[n] - ref[n]) / (ATOL + RTOL * np.abs(ref[n]))).max()) for n in ref)
    tensor = max(float(np.linalg.norm(ours[n] - ref[n]) / (TENSOR_RTOL * np.linalg.norm(ref[n]) + TENSOR_ATOL))
                 for n in ref)
    return diff, ratio, tensor


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_gradients_match_pytorch(results, case):
    r = results(case)
    assert abs(r.loss - r.torch_loss) <= LOSS_ATOL, f"loss: ours {r.loss:.7f} torch {r.torch_loss:.7f}"
    # Not vacuous: the loss reaches the model (tensors it cannot reach, such as the last LiLT layer's layout
    # value/output path, whose result nothing reads, are a few of them, and there ours must be 0 too).
    reached = sum(bool(np.any(g)) for g in r.torch.values())
    assert reached >= 0.8 * len(r.torch), f"torch's loss reaches only {reached} of {len(r.torch)} tensors"
    problems = mismatches(r.ours, r.torch)
    assert not problems, f"{case.id}: {len(problems)} tensors differ:\n" + "\n".join(problems)
    diff, ratio, tensor = worst(r.ours, r.torch)
    print(f"\n{case.id}: loss diff {abs(r.loss - r.torch_loss):.1e}, max grad diff {diff:.2e}, "
          f"elementwise {ratio:.3f} and per-tensor {tensor:.3f} of the bounds, {len(r.torch)} tensors")


def test_the_comparison_catches_a_wrong_layer():
    """The check is able to fail: torch's own gradients with two layers of one stacked tensor swapped (what a
    wrong layer order in the table would give), one element of a bias 1e-3 off, a tensor of small gradients all
    0.5% off, or a missing tensor, are reported."""
    ref = {"layers.0.w": np.array([[0.5, -1.0], [2.0, 0.0]], np.float32),
           "layers.1.w": np.array([[0.4, -1.1], [2.0, 0.0]], np.float32),
           "bias": np.array([1e-3, 3.0], np.float32)}
    assert mismatches(dict(ref), ref) == []
    swapped = dict(ref, **{"layers.0.w": ref["layers.1.w"], "layers.1.w": ref["layers.0.w"]})
    assert [p.split(":")[0] for p in mismatches(swapped, ref)] == ["layers.0.w[0, 0]", "layers.1.w[0, 0]"]
    nudged = dict(ref, bias=ref["bias"] + np.array([0.0, 3e-3], np.float32))
    assert len(mismatches(nudged, ref)) == 1
    # Small gradients 0.5% off: within the elementwise bound (5e-6 <= 1e-5 + 1e-7), reported per tensor.
    small = {"w": np.full(100, 1e-3, np.float32)}
    assert [p.split(" ")[0] for p in mismatches({"w": small["w"] * 1.005}, small)] == ["w:"]
    assert mismatches({k: v for k, v in ref.items() if k != "bias"}, ref) == ["bias: only in torch"]
