"""The main job: pre-train a small Llama from scratch on a local text corpus, on CPU in minutes.

Steps: train a byte-level BPE on the corpus -> pack it into rows -> AdamW with warmup + cosine under jit
(optionally sharded over a mesh) with a progress bar -> Orbax checkpoints (``--resume`` continues exactly) ->
held-out loss against the corpus's unigram entropy -> a loss-curve PNG -> sampled text -> an HF export
that transformers loads. The default corpus is CPython's own pydoc topic texts, which every Python has.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from common.checkpoint import Checkpointer
from common.data import Batches, pack, unigram_entropy
from common.model import HeadSpec, Model
from common.sharding import make_mesh
from common.tokenization import docs_corpus, train_byte_level_bpe
from common.train import OptimizerConfig, init_train_state, make_optimizer, make_train_step
from llama_jax.config import LlamaConfig
from llama_jax.model import init_params, llama_causal_lm
from llama_jax.sharding import PARTITION_RULES
from llama_jax.tokenizer import LlamaTokenizer


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    out: str = "runs/llama-pydoc"
    corpus: str | None = None  # a .txt file or a directory of .txt files; None = pydoc topics
    vocab_size: int = 2048
    hidden_size: int = 256
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    intermediate_size: int = 688
    seq_len: int = 128
    batch_size: int = 16
    steps: int = 1200
    learning_rate: float = 3e-3
    warmup_steps: int = 60
    weight_decay: float = 0.1
    eval_fraction: float = 0.05
    eval_every: int = 200
    checkpoint_every: int = 200
    mesh: tuple[int, int, int] = (1, 1, 1)  # (data, fsdp, tensor)
    compute_dtype: str | None = None  # "bfloat16" for mixed precision; float32 is faster on CPU
    seed: int = 0
    resume: bool = False
    sample_prompt: str = "The with statement"
    sample_tokens: int = 48


def load_corpus(path: str | None) -> list[str]:
    if path is None:
        return docs_corpus()
    p = Path(path)
    files = sorted(p.glob("**/*.txt")) if p.is_dir() else [p]
    if not files or not all(f.is_file() for f in files):
        raise FileNotFoundError(f"corpus {path!r}: expected a .txt file or a directory containing .txt files")
    return [f.read_text(encoding="utf-8", errors="replace") for f in files]


def split_rows(rows: np.ndarray, eval_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(len(rows))
    n_eval = max(1, int(round(len(rows) * eval_fraction)))
    return rows[order[n_eval:]], rows[order[:n_eval]]


@functools.partial(jax.jit, static_argnames="config")
def _batch_loss(params, ids, config):
    return llama_causal_lm(params, config, ids, labels=ids).loss


def eval_loss(params, config, rows: np.ndarray, batch_size: int) -> float:
    """Mean next-token loss (nats) over the held-out rows, in full batches (compiled once per config)."""
    losses = [float(_batch_loss(params, rows[i:i + batch_size], config))
              for i in range(0, len(rows) - batch_size + 1, batch_size)]
    return sum(losses) / len(losses)


def plot_losses(history: list[tuple[int, float]], evals: list[tuple[int, float]], entropy: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, losses = np.array(history).T
    window = max(1, len(losses) // 50)
    smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    ax.plot(steps, losses, color="tab:blue", alpha=0.25, lw=0.8, label="train loss")
    ax.plot(steps[window - 1:], smooth, color="tab:blue", lw=1.6, label=f"train loss ({window}-step mean)")
    if evals:
        e_steps, e_losses = np.array(evals).T
        ax.plot(e_steps, e_losses, "o-", color="tab:orange", label="held-out loss")
    ax.axhline(entropy, color="gray", ls="--", label=f"unigram entropy {entropy:.2f}")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats / token)")
    ax.set_title("Llama pre-training")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def run(cfg: PretrainConfig, spec: HeadSpec, save_pretrained: Callable[[Model, Path], Path], log=print) -> dict[str, Any]:
    """Run the job; returns (and writes to OUT/summary.json) the numbers that judge it.

    spec / save_pretrained: the LlamaForCausalLM head spec and the HF exporter (from ``conversion``, which
    the family packages do not import).
    """
    out = Path(cfg.out)
    tok_dir = out / "tokenizer"
    start = time.perf_counter()

    # Tokenizer and data (the tokenizer is reused on resume so the ids stay the same).
    texts = load_corpus(cfg.corpus)
    if not (cfg.resume and (tok_dir / "tokenizer.json").exists()):
        train_byte_level_bpe(texts, cfg.vocab_size, tok_dir)
    tokenizer = LlamaTokenizer.from_pretrained(tok_dir)
    rows = pack([tokenizer.encode(t, add_special_tokens=False) for t in texts], cfg.seq_len, tokenizer.eos_token_id)
    train_rows, eval_rows = split_rows(rows, cfg.eval_fraction, cfg.seed)
    entropy = unigram_entropy(train_rows, tokenizer.vocab_size)
    batches = Batches(train_rows, cfg.batch_size, cfg.seed)
    log(f"corpus: {sum(map(len, texts)) / 1e6:.2f} M chars -> {rows.size / 1e6:.2f} M tokens "
        f"({len(train_rows)} train / {len(eval_rows)} held-out rows of {cfg.seq_len}); "
        f"unigram entropy {entropy:.3f} nats/token")

    # Model, optimizer, (sharded) train step.
    config = LlamaConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads, num_key_value_heads=cfg.kv_heads,
        max_position_embeddings=cfg.seq_len, rms_norm_eps=1e-5, rope=LlamaConfig().rope,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, compute_dtype=cfg.compute_dtype)
    tx = make_optimizer(OptimizerConfig(learning_rate=cfg.learning_rate, warmup_steps=cfg.warmup_steps,
                                        total_steps=cfg.steps, weight_decay=cfg.weight_decay))
    params = init_params(config, jax.random.PRNGKey(cfg.seed), jnp.float32, "causal_lm")
    n_params = sum(x.size for x in jax.tree.leaves(params))
    state = init_train_state(params, tx, jax.random.PRNGKey(cfg.seed + 1))
    mesh = make_mesh(*cfg.mesh, devices=jax.devices()[: math.prod(cfg.mesh)]) if math.prod(cfg.mesh) > 1 else None
    step_fn = make_train_step(llama_causal_lm, config, tx, mesh=mesh, rules=PARTITION_RULES, state_example=state)
    if mesh is not None:
        state = jax.device_put(state, step_fn.shardings)
    log(f"model: {n_params / 1e6:.2f} M params (hidden {cfg.hidden_size}, {cfg.layers} layers, vocab "
        f"{tokenizer.vocab_size}); {cfg.steps} steps x {cfg.batch_size} x {cfg.seq_len} tokens"
        + (f"; mesh {cfg.mesh}" if mesh is not None else ""))

    ckpt = Checkpointer(out / "checkpoints", max_to_keep=2)
    history: list[tuple[int, float]] = []
    evals: list[tuple[int, float]] = []
    first = 0
    if cfg.resume and ckpt.latest_step() is not None:
        target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
        first, state, meta = ckpt.restore(target)
        history = [tuple(x) for x in meta.get("history", [])]
        evals = [tuple(x) for x in meta.get("evals", [])]
        log(f"resumed from step {first}")

    # Training.
    bar = tqdm(range(first, cfg.steps), initial=first, total=cfg.steps, desc="training", unit="step",
               dynamic_ncols=True)
    tokens_per_step = cfg.batch_size * cfg.seq_len
    t_last, pending = time.perf_counter(), []
    for step in bar:
        state, metrics = step_fn(state, batches.batch_at(step))
        done = step + 1
        pending.append((done, metrics["loss"]))
        evaluate = done % cfg.eval_every == 0 or done == cfg.steps
        checkpoint = done % cfg.checkpoint_every == 0 or done == cfg.steps
        if done % 10 == 0 or evaluate or checkpoint:
            history += [(s, float(v)) for s, v in pending]  # one host sync per 10 steps, not per step
            now = time.perf_counter()
            bar.set_postfix(loss=f"{history[-1][1]:.3f}", tok_s=f"{len(pending) * tokens_per_step / (now - t_last):,.0f}")
            t_last, pending = now, []
        if evaluate:
            evals.append((done, eval_loss(state.params, config, eval_rows, cfg.batch_size)))
        if checkpoint:
            ckpt.save(done, state, metadata={"history": history, "evals": evals})
    bar.close()
    ckpt.close()
    train_seconds = time.perf_counter() - start

    # Report, plot, sample, export.
    final_eval = evals[-1][1] if evals else float("nan")
    plot_losses(history, evals, entropy, out / "loss_curve.png")
    params = jax.device_get(state.params)
    model = Model(dataclasses.replace(config, compute_dtype=None), params, spec)
    prompt = tokenizer(cfg.sample_prompt)
    seqs = model.generate(prompt["input_ids"], attention_mask=prompt["attention_mask"],
                          max_new_tokens=cfg.sample_tokens, do_sample=True, temperature=0.8, top_k=40, seed=cfg.seed)
    sample = cfg.sample_prompt + tokenizer.decode(seqs[0, prompt["input_ids"].shape[1]:])
    export = save_pretrained(model, out / "hf")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (export / name).write_bytes((tok_dir / name).read_bytes())

    summary = {
        "params": n_params, "steps": cfg.steps, "tokens_seen": cfg.steps * tokens_per_step,
        "unigram_entropy": entropy, "final_train_loss": float(np.mean([l for _, l in history[-20:]])),
        "final_eval_loss": final_eval, "eval_below_entropy": entropy - final_eval,
        "seconds": train_seconds, "sample": sample, "export": str(export), "config": dataclasses.asdict(cfg),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    log(f"held-out loss {final_eval:.3f} nats/token vs unigram entropy {entropy:.3f} "
        f"({entropy - final_eval:.2f} below); {train_seconds / 60:.1f} min")
    log(f"sample: {sample!r}")
    log(f"wrote {out / 'loss_curve.png'}, checkpoints in {out / 'checkpoints'}, HF export in {export}")
    return summary
