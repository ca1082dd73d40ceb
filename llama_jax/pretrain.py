"""The main job: pre-train a small Llama from scratch on a local text corpus, on CPU in minutes.

Steps: train a byte-level BPE on the corpus -> pack it into rows -> AdamW with warmup + cosine under jit
(optionally sharded over a mesh) with a progress bar -> Orbax checkpoints (``--resume`` continues exactly) ->
held-out loss against the corpus's unigram entropy -> a loss-curve PNG -> sampled text -> an HF export
that transformers loads. The default corpus is CPython's own pydoc topic texts, which every Python has.

Length: without an explicit ``steps`` the whole job fits ``time_budget`` minutes on the machine it runs on.
After the data is ready, a probe compiles the train step and times a few steps (and one held-out batch);
``plan_steps`` turns those measurements into the step count, and the warmup + cosine schedule is then built
for that count (the real step compiles once more, since the schedule's length is a constant of the compiled
step). The probe steps are thrown away, so a budgeted run is exactly the run ``steps=N`` would give. The
decided count is logged, written to summary.json and stored with every checkpoint: a resume continues to it.
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
from jax.experimental.multihost_utils import broadcast_one_to_all
from tqdm.auto import tqdm

from common.checkpoint import Checkpointer
from common.data import Batches, pack, unigram_entropy
from common.extras import pyplot  # matplotlib (the plots extra) is imported only when a plot is drawn
from common.model import HeadSpec, Model
from common.distributed import barrier, fetch, global_batch, is_writer, process_rows
from common.sharding import batch_sharding, make_mesh
from common.tokenization import docs_corpus, train_byte_level_bpe
from common.train import OptimizerConfig, init_train_state, make_optimizer, make_train_step
from llama_jax.config import LlamaConfig
from llama_jax.family import init_params, llama_causal_lm
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
    steps: int | None = dataclasses.field(default=None, metadata={
        "metavar": "N",
        "help": "train exactly N steps (then --time-budget does not apply); default: as many as the budget allows"})
    time_budget: float = dataclasses.field(default=8.0, metadata={
        "metavar": "MINUTES", "help": "wall time for the whole job when --steps is not given (default: 8.0)"})
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

    def __post_init__(self):
        if self.steps is not None and self.steps <= self.warmup_steps:
            raise ValueError(f"steps = {self.steps} is invalid: expected more than warmup_steps = {self.warmup_steps} "
                             "(or None: decided by time_budget)")
        if not self.time_budget > 0:
            raise ValueError(f"time_budget = {self.time_budget!r} is invalid: expected minutes > 0")


# How the budget is spent (plan_steps). The probe times PROBE_STEPS steps after its compile. Of the budget,
# BUDGET_HEADROOM is kept back for what is not measured: process start-up, checkpoint writes, the loss plot,
# the HF export, and a step rate that drifts on a shared machine. Sampling compiles a prefill and a decode
# step, SAMPLER_COMPILES forward compiles' worth (measured: about 3.3x the held-out forward's compile).
PROBE_STEPS = 5
BUDGET_HEADROOM = 0.1
SAMPLER_COMPILES = 4


@dataclasses.dataclass(frozen=True)
class ProbeTimes:
    """Seconds measured by ``probe_times`` on this machine, for this model and batch."""

    compile: float  # one compile of the train step (the real step, with its schedule, compiles once more)
    step: float  # one train step
    eval: float  # one held-out evaluation (all its batches; its compile is already paid by the probe)
    eval_compile: float  # one compile of the forward pass


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


def optimizer_for(cfg: PretrainConfig, total_steps: int):
    """AdamW with warmup + cosine over ``total_steps``; the optimizer state's structure does not depend on it."""
    return make_optimizer(OptimizerConfig(learning_rate=cfg.learning_rate, warmup_steps=cfg.warmup_steps,
                                          total_steps=total_steps, weight_decay=cfg.weight_decay))


def probe_times(probe_step, state, batch_at: Callable, config, eval_rows: np.ndarray, batch_size: int) -> ProbeTimes:
    """Time the train step (compile, then PROBE_STEPS steps) and one held-out batch (compile, then one run).

    ``probe_step`` must not donate its input: ``state`` is left as it was, and the probe's steps are discarded.
    The forward's compile is the one the evaluations reuse, so it is not spent twice.
    """
    def seconds(fn) -> float:
        t = time.perf_counter()
        jax.block_until_ready(fn())
        return time.perf_counter() - t

    def steps(first: int, count: int):
        probe = state
        for step in range(first, first + count):
            probe, metrics = probe_step(probe, batch_at(step))
        return metrics

    first = seconds(lambda: steps(0, 1))
    step = seconds(lambda: steps(1, PROBE_STEPS)) / PROBE_STEPS
    one_batch = eval_rows[:batch_size]
    first_eval = seconds(lambda: eval_loss(state.params, config, one_batch, batch_size))
    eval_batch = seconds(lambda: eval_loss(state.params, config, one_batch, batch_size))
    return ProbeTimes(compile=max(first - step, 0.0), step=step, eval=eval_batch * (len(eval_rows) // batch_size),
                      eval_compile=max(first_eval - eval_batch, 0.0))


def plan_steps(budget_seconds: float, spent_seconds: float, times: ProbeTimes, eval_every: int) -> tuple[int, float]:
    """The most steps whose training, evaluations and the job's remaining fixed costs fit the budget.

    spent_seconds: the job's time so far (data, tokenizer, init, probe). Still to come besides the steps: the
    real step's compile, an evaluation every ``eval_every`` steps plus the final one, sampling's compiles, and
    the headroom. Returns ``(steps, reserved_seconds)``; steps is below 1 when the budget cannot cover the
    fixed costs.
    """
    reserved = BUDGET_HEADROOM * budget_seconds + SAMPLER_COMPILES * times.eval_compile + times.compile + times.eval
    per_step = times.step + times.eval / eval_every
    return math.floor((budget_seconds - spent_seconds - reserved) / per_step), reserved


def budgeted_steps(cfg: PretrainConfig, probe_step, state, batch_at: Callable, config, eval_rows: np.ndarray,
                   spent_since: float, log) -> tuple[int, dict[str, float]]:
    """Probe this machine and decide the step count for ``cfg.time_budget``; returns it and the plan's numbers.
    In a multi-process job every process probes (the steps are collective) and all take process 0's count."""
    times = probe_times(probe_step, state, batch_at, config, eval_rows, cfg.batch_size)
    budget, spent = cfg.time_budget * 60, time.perf_counter() - spent_since
    planned, reserved = plan_steps(budget, spent, times, cfg.eval_every)
    steps = max(planned, cfg.warmup_steps + 1)  # the schedule needs more steps than its warmup
    steps = int(broadcast_one_to_all(np.int64(steps)))  # one count for all processes (process 0's)
    log(f"budget {cfg.time_budget} min: measured {1 / times.step:.2f} steps/s -> {steps} steps "
        f"({spent:.0f} s spent before training incl. a {times.compile:.0f} s compile, {reserved:.0f} s reserved "
        f"for the second compile, evaluation, sampling and headroom)")
    if planned < steps:
        log(f"warning: a {cfg.time_budget} min budget does not cover this job on this machine (it leaves room for "
            f"{max(planned, 0)} steps); running the minimum of {steps} (warmup_steps + 1), which overruns it")
    plan = {"minutes": cfg.time_budget, "steps_per_second": 1 / times.step, "seconds_before_training": spent,
            "reserved_seconds": reserved, **{f"{k}_seconds": v for k, v in dataclasses.asdict(times).items()}}
    return steps, plan


def resumed_steps(cfg: PretrainConfig, meta: dict, directory: Path) -> int:
    """The step count the checkpointed run was started with; an explicit ``cfg.steps`` must agree with it."""
    stored = meta.get("steps")
    if stored is None and cfg.steps is None:
        raise ValueError(f"the checkpoint in {directory} does not record its run's step count (it predates time "
                         "budgets): pass --steps with the count it was started with")
    if stored is not None and cfg.steps is not None and cfg.steps != stored:
        raise ValueError(f"steps = {cfg.steps} differs from the {stored} steps the run in {directory} was started "
                         "with (its learning-rate schedule); resume without --steps, or start a new --out")
    return stored if stored is not None else cfg.steps


def plot_losses(history: list[tuple[int, float]], evals: list[tuple[int, float]], entropy: float, path: Path) -> None:

    plt = pyplot("plot_losses")

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


def _silent(*args, **kwargs) -> None:
    """The log of every process but process 0: one job, one log."""


def job_mesh(shape: tuple[int, int, int]):
    """The (data, fsdp, tensor) mesh of ``--mesh``, or None for one device. A multi-process job's mesh must
    cover every process's devices (each process feeds the devices it has)."""
    size = math.prod(shape)
    if jax.process_count() > 1 and size != jax.device_count():
        raise ValueError(f"mesh = {','.join(map(str, shape))} has {size} devices; a job of {jax.process_count()} "
                         f"processes must use all {jax.device_count()} of their devices (data x fsdp x tensor = "
                         f"{jax.device_count()})")
    return make_mesh(*shape, devices=jax.devices()[:size]) if size > 1 else None


def run(cfg: PretrainConfig, spec: HeadSpec, save_pretrained: Callable[[Model, Path], Path], log=print) -> dict[str, Any]:
    """Run the job; returns (and writes to OUT/summary.json) the numbers that judge it.

    spec / save_pretrained: the LlamaForCausalLM head spec and the HF exporter (from ``conversion``, which
    the family packages do not import).

    Multi-process (after ``common.distributed.initialize`` in every process, the same ``cfg`` everywhere, ``out``
    on a filesystem all of them see): the mesh spans every process's devices, each process feeds its own rows of
    each batch, Orbax writes each process's shards, and process 0 alone logs, trains the tokenizer and writes the
    plot, the HF export and summary.json.
    """
    pyplot("jaxzoo train (its loss-curve PNG)")  # fail now, not after minutes of training
    out = Path(cfg.out)
    tok_dir = out / "tokenizer"
    start = time.perf_counter()
    writer = is_writer()
    if not writer:
        log = _silent

    # Tokenizer and data (the tokenizer is reused on resume so the ids stay the same).
    texts = load_corpus(cfg.corpus)
    if writer and not (cfg.resume and (tok_dir / "tokenizer.json").exists()):
        train_byte_level_bpe(texts, cfg.vocab_size, tok_dir)
    barrier("jaxzoo_pretrain_tokenizer")
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
    # Any schedule length gives the state's structure, its shardings and the probe's speed; the real one
    # comes from --steps, the checkpoint being resumed, or the time budget.
    any_length = optimizer_for(cfg, cfg.warmup_steps + 1)
    params = init_params(config, jax.random.PRNGKey(cfg.seed), jnp.float32, "causal_lm")
    n_params = sum(x.size for x in jax.tree.leaves(params))
    state = init_train_state(params, any_length, jax.random.PRNGKey(cfg.seed + 1))
    mesh = job_mesh(cfg.mesh)
    step_for = functools.partial(make_train_step, llama_causal_lm, config, mesh=mesh, rules=PARTITION_RULES,
                                 state_example=state)  # jit is lazy: nothing compiles until a step runs
    if mesh is not None:  # from host values, which every process holds alike, to the global shardings
        state = jax.device_put(jax.device_get(state), step_for(any_length).shardings)

    def batch_at(step: int):
        """The batch of ``step``: this process's rows only, as global arrays, when several processes feed it."""
        if jax.process_count() == 1:
            return batches.batch_at(step)
        rows = process_rows(batch_sharding(mesh, 2), (cfg.batch_size, cfg.seq_len))
        return global_batch(batches.batch_at(step, rows), mesh, cfg.batch_size)

    ckpt = Checkpointer(out / "checkpoints", max_to_keep=2)
    history: list[tuple[int, float]] = []
    evals: list[tuple[int, float]] = []
    first, plan = 0, None
    if cfg.resume and ckpt.latest_step() is not None:
        target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
        first, state, meta = ckpt.restore(target)
        history = [tuple(x) for x in meta.get("history", [])]
        evals = [tuple(x) for x in meta.get("evals", [])]
        steps, plan = resumed_steps(cfg, meta, ckpt.directory), meta.get("budget")
        log(f"resumed from step {first} of {steps}")
    elif cfg.steps is not None:
        steps = cfg.steps
    else:
        steps, plan = budgeted_steps(cfg, step_for(any_length, donate=False), state, batch_at, config, eval_rows,
                                     start, log)
    step_fn = step_for(optimizer_for(cfg, steps))
    log(f"model: {n_params / 1e6:.2f} M params (hidden {cfg.hidden_size}, {cfg.layers} layers, vocab "
        f"{tokenizer.vocab_size}); {steps} steps x {cfg.batch_size} x {cfg.seq_len} tokens"
        + (f"; mesh {cfg.mesh}" if mesh is not None else ""))

    # Training.
    bar = tqdm(range(first, steps), initial=first, total=steps, desc="training", unit="step", dynamic_ncols=True,
               disable=not writer)
    tokens_per_step = cfg.batch_size * cfg.seq_len
    t_last, pending = time.perf_counter(), []
    for step in bar:
        state, metrics = step_fn(state, batch_at(step))
        done = step + 1
        pending.append((done, metrics["loss"]))
        evaluate = done % cfg.eval_every == 0 or done == steps
        checkpoint = done % cfg.checkpoint_every == 0 or done == steps
        if done % 10 == 0 or evaluate or checkpoint:
            history += [(s, float(v)) for s, v in pending]  # one host sync per 10 steps, not per step
            now = time.perf_counter()
            bar.set_postfix(loss=f"{history[-1][1]:.3f}", tok_s=f"{len(pending) * tokens_per_step / (now - t_last):,.0f}")
            t_last, pending = now, []
        if evaluate:
            evals.append((done, eval_loss(state.params, config, eval_rows, cfg.batch_size)))
        if checkpoint:
            ckpt.save(done, state, metadata={"history": history, "evals": evals, "steps": steps, "budget": plan})
    bar.close()
    ckpt.close()
    train_seconds = time.perf_counter() - start

    # Report, plot, sample, export.
    final_eval = evals[-1][1] if evals else float("nan")
    if writer:
        plot_losses(history, evals, entropy, out / "loss_curve.png")
    params = jax.tree.map(fetch, state.params)  # every process gathers (a collective), then samples alike
    model = Model(dataclasses.replace(config, compute_dtype=None), params, spec)
    prompt = tokenizer(cfg.sample_prompt)
    seqs = model.generate(prompt["input_ids"], attention_mask=prompt["attention_mask"],
                          max_new_tokens=cfg.sample_tokens, do_sample=True, temperature=0.8, top_k=40, seed=cfg.seed)
    sample = cfg.sample_prompt + tokenizer.decode(seqs[0, prompt["input_ids"].shape[1]:])
    export = save_pretrained(model, out / "hf")  # process 0 writes
    if writer:
        for name in ("tokenizer.json", "tokenizer_config.json"):
            (export / name).write_bytes((tok_dir / name).read_bytes())

    summary = {
        "params": n_params, "steps": steps, "budget": plan, "tokens_seen": steps * tokens_per_step,
        "unigram_entropy": entropy, "final_train_loss": float(np.mean([l for _, l in history[-20:]])),
        "final_eval_loss": final_eval, "eval_below_entropy": entropy - final_eval,
        "seconds": train_seconds, "job_seconds": time.perf_counter() - start, "sample": sample,
        "export": str(export), "config": dataclasses.asdict(cfg),
    }
    if writer:
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    barrier("jaxzoo_pretrain_done")
    log(f"held-out loss {final_eval:.3f} nats/token vs unigram entropy {entropy:.3f} "
        f"({entropy - final_eval:.2f} below); {train_seconds / 60:.1f} min")
    log(f"sample: {sample!r}")
    log(f"wrote {out / 'loss_curve.png'}, checkpoints in {out / 'checkpoints'}, HF export in {export}")
    return summary
