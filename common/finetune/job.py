"""The fine-tuning job: features -> train steps with evaluation, the best checkpoint kept, exact resume, reports.

Steps: the task's features (cached in OUT/cache, keyed by the data files, the tokenizer and the options) ->
bucketed batches that depend on the step alone -> AdamW (linear warmup and decay, as transformers' Trainer) under
jit, optionally sharded over the model's mesh, with a progress bar (loss, tokens/s, ETA) -> the task's metric on
the validation file every ``eval_every`` steps and at the end; each evaluation that beats the best so far saves
the params to OUT/best -> Orbax checkpoints of the whole train state at every evaluation (``resume`` continues
exactly: the batches, dropout and masking are functions of the step) -> the best params exported as an HF
checkpoint in OUT/model with the tokenizer files (transformers and ``conversion.pipeline`` load it) -> the test
file scored with them -> OUT/metrics.json and OUT/curves.png.

Because a resumed run repeats the interrupted one bit for bit, an evaluation that the interrupted run saved to
OUT/best after its last checkpoint is found again, with the same params, by the resumed one.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import pickle
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import numpy as np
from tqdm.auto import tqdm

from common.checkpoint import Checkpointer
from common.extras import pyplot
from common.finetune import metrics
from common.finetune.batches import TrainBatches, collate, feature_length
from common.finetune.task import Evaluator, Task
from common.model import bucketed_static
from common.train import OptimizerConfig, init_train_state, make_optimizer, make_train_step

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                   "merges.txt", "vocab.txt", "added_tokens.json", "sentencepiece.bpe.model", "tokenizer.model")


@dataclasses.dataclass(frozen=True)
class TrainingOptions:
    """The job's training knobs (``jaxzoo finetune`` flags of the same names)."""

    epochs: float = 3.0
    max_steps: int | None = None  # train steps (batches); overrides epochs
    batch_size: int = 8
    eval_batch_size: int | None = None  # default: batch_size
    learning_rate: float = 5e-5
    warmup_ratio: float = 0.0  # of the optimizer updates
    weight_decay: float = 0.0
    clip_norm: float | None = 1.0
    accumulate_steps: int = 1
    compute_dtype: str | None = None  # "bfloat16": mixed precision (float32 master params)
    remat: str = "none"  # activation checkpointing of the layers: a common.config.REMAT_POLICIES name
    eval_every: int | None = None  # steps between evaluations (and checkpoints); default: once per epoch
    metric: str | None = None  # the metric that picks the best checkpoint; default: the task's
    seed: int = 0
    resume: bool = False
    stop_after: int | None = None  # end this run after that step, checkpointed (a later resume goes on): time limits

    def __post_init__(self):
        checks = {"epochs": self.epochs > 0, "max_steps": self.max_steps is None or self.max_steps >= 1,
                  "batch_size": self.batch_size >= 1,
                  "eval_batch_size": self.eval_batch_size is None or self.eval_batch_size >= 1,
                  "warmup_ratio": 0 <= self.warmup_ratio < 1,
                  "eval_every": self.eval_every is None or self.eval_every >= 1,
                  "stop_after": self.stop_after is None or self.stop_after >= 1}
        if self.metric is not None:
            metrics.higher_is_better(self.metric)  # an unknown name fails before any work
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"{name} = {getattr(self, name)!r} is invalid: expected epochs > 0, max_steps >= 1, "
                                 "batch sizes >= 1, 0 <= warmup_ratio < 1, eval_every >= 1, "
                                 "stop_after >= 1")

    def optimizer(self, steps: int) -> OptimizerConfig:
        updates = math.ceil(steps / self.accumulate_steps)
        warmup = min(int(round(self.warmup_ratio * updates)), updates - 1)
        return OptimizerConfig(learning_rate=self.learning_rate, warmup_steps=warmup, total_steps=max(updates, 1),
                               min_learning_rate_ratio=0.0, weight_decay=self.weight_decay, b1=0.9, b2=0.999,
                               eps=1e-8, clip_norm=self.clip_norm, accumulate_steps=self.accumulate_steps,
                               schedule="linear")


@dataclasses.dataclass
class Data:
    """A job's rows, by split name ("train", "validation", "test"), with the file each came from."""

    rows: dict[str, list[dict]]
    sources: dict[str, str]


def cached_features(task: Task, rows: list[dict], source: str, cache: Path, key_parts: Sequence) -> list[dict]:
    """task.features(rows), from OUT/cache when the same file, tokenizer and options made them before."""
    digest = hashlib.sha256()
    # The label set and columns come from the training file: a validation file's features depend on them too.
    for part in (task.name, repr(task.options), task.max_length, getattr(task, "labels", None), task.column, source,
                 *key_parts):
        digest.update(repr(part).encode())
    path = Path(source)
    if path.is_file():
        digest.update(path.read_bytes())
    else:
        digest.update(repr(rows).encode())
    file = cache / f"features-{digest.hexdigest()[:24]}.pkl"
    if file.exists():
        return pickle.loads(file.read_bytes())
    features = task.features(rows, source)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps(features, protocol=pickle.HIGHEST_PROTOCOL))
    tmp.replace(file)  # a cache file is whole or absent
    return features


@functools.lru_cache(maxsize=16)
def single_device_step(forward: Callable, config, optimizer: OptimizerConfig, static: tuple) -> Callable:
    """The jitted train step of one (head, config, optimizer, static arguments): jobs that share them in one
    process (a resumed run, a test module's jobs) share its compiled programs."""
    fn = functools.partial(forward, **dict(static)) if static else forward
    return make_train_step(fn, config, make_optimizer(optimizer))


def batch_at(task: Task, features: list[dict], batches: TrainBatches, step: int, seed: int) -> dict[str, np.ndarray]:
    """The train batch of ``step``: its features collated (bucketed lengths), then the task's per-step change."""
    batch = collate([features[i] for i in batches.indices_at(step)], task.fields, {"input": task.max_length},
                    task.options.buckets)
    return task.train_batch(batch, step, seed)


def tokenizer_key(directory: Path) -> list[bytes]:
    return [(directory / name).read_bytes() for name in TOKENIZER_FILES if (directory / name).is_file()]


def run(task: Task, model, data: Data, options: TrainingOptions, out: str | Path, model_dir: Path,
        save_pretrained: Callable, log=print) -> dict[str, Any]:
    """Fine-tune ``model`` (a common.model.Model with the task's head, bound to ``task``) and write OUT.

    model_dir: the checkpoint directory it came from (its tokenizer files go with the export);
    save_pretrained: conversion.save_pretrained (the families and common do not import conversion).
    Returns what OUT/metrics.json holds.
    """
    pyplot("jaxzoo finetune (its curves PNG)")  # fail now, not after the training
    start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    metric = options.metric or task.metric
    ckpt = Checkpointer(out / "checkpoints", max_to_keep=2)
    best_ckpt = Checkpointer(out / "best", max_to_keep=1)
    if not options.resume and ckpt.all_steps():
        raise ValueError(f"{out} holds the checkpoints of a run (steps {ckpt.all_steps()}): pass resume=True "
                         "(--resume) to go on with it, or choose a new out directory")

    key = tokenizer_key(model_dir)
    features = {split: cached_features(task, rows, data.sources[split], out / "cache", key)
                for split, rows in data.rows.items()}
    for split in ("validation", "test"):
        if split in features:
            features[split] = task.held_out(features[split], options.seed)
    limits = {"input": task.max_length}
    train = features["train"]
    batches = TrainBatches(np.asarray([feature_length(f, task.fields) for f in train]), options.batch_size,
                           options.seed)
    steps = options.max_steps or max(1, math.ceil(options.epochs * batches.steps_per_epoch))
    eval_every = options.eval_every or batches.steps_per_epoch
    optimizer = options.optimizer(steps)
    tx = make_optimizer(optimizer)
    train_config = model.config.replace(compute_dtype=options.compute_dtype, remat_policy=options.remat)
    state = init_train_state(model.params, tx, jax.random.PRNGKey(options.seed))
    steps_by_static: dict[tuple, Callable] = {}

    def step_fn(state, batch):
        """The train step for the batch's static arguments (Longformer / LED: the global slots, bucketed), checked
        on the host as model(...) checks its inputs (ids in the vocabulary, labels in range)."""
        checked = dict(model.spec.validate_inputs(model.config, batch))
        static = tuple(bucketed_static({k: checked.pop(k) for k in model.spec.static_args if k in checked})
                       .items())
        if static not in steps_by_static:
            if model.mesh is None:
                steps_by_static[static] = single_device_step(model.spec.forward, train_config, optimizer, static)
            else:
                forward = functools.partial(model.spec.forward, **dict(static)) if static else model.spec.forward
                steps_by_static[static] = make_train_step(forward, train_config, tx, mesh=model.mesh,
                                                          rules=model.partition_rules, state_example=state)
        return steps_by_static[static](state, checked)

    if model.mesh is not None:
        from common.train import state_shardings

        state = jax.device_put(state, state_shardings(state, tx, model.partition_rules, model.mesh))
    evaluator = Evaluator(model, task.fields, options.eval_batch_size or options.batch_size, limits,
                          task.options.buckets)
    log(f"{task.name}: {model.architecture}, {len(train)} train features ({len(data.rows['train'])} rows), "
        f"{len(features['validation'])} validation; {steps} steps of {options.batch_size} "
        f"({batches.steps_per_epoch} per epoch), evaluation every {eval_every}, best by {metric}")

    history: list[tuple[int, float]] = []
    evals: list[dict] = []
    best: dict | None = None
    first = 0
    if options.resume and ckpt.latest_step() is not None:
        target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
        first, state, meta = ckpt.restore(target)
        if meta.get("steps") != steps:
            raise ValueError(f"the run in {ckpt.directory} was started for {meta.get('steps')} steps, this one for "
                             f"{steps} (its learning-rate schedule); resume with the same data and flags, or start a "
                             "new --out")
        history = [tuple(x) for x in meta["history"]]
        evals, best = meta["evals"], meta["best"]
        log(f"resumed from step {first} of {steps}")

    bar = tqdm(range(first, steps), initial=first, total=steps, desc="fine-tuning", unit="step", dynamic_ncols=True)
    shapes: set[tuple] = set()
    real = padded = 0
    t_last, tokens_since, pending = time.perf_counter(), 0, []
    train_seconds = 0.0
    for step in bar:
        t0 = time.perf_counter()
        batch = batch_at(task, train, batches, step, options.seed)
        shapes.add(tuple((k, v.shape) for k, v in sorted(batch.items())))
        mask = batch["attention_mask"]
        real, padded, tokens_since = real + int(mask.sum()), padded + mask.size, tokens_since + int(mask.sum())
        state, step_metrics = step_fn(state, batch)
        pending.append((step + 1, step_metrics["loss"]))
        done = step + 1
        evaluate = done % eval_every == 0 or done == steps
        if done % 10 == 0 or evaluate or done == options.stop_after:
            history += [(s, float(v)) for s, v in pending]  # one host sync per 10 steps
            now = time.perf_counter()
            bar.set_postfix(loss=f"{history[-1][1]:.4f}", tok_s=f"{tokens_since / (now - t_last):,.0f}")
            t_last, tokens_since, pending = now, 0, []
        train_seconds += time.perf_counter() - t0
        if evaluate:
            model.params = state.params
            scores = {"step": done, **task.evaluate(evaluator, data.rows["validation"], features["validation"])}
            evals.append(scores)
            bar.write(f"step {done}: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()
                                                     if k != "step" and isinstance(v, float)))
            if metric not in scores:
                raise ValueError(f"metric {metric!r} is not one of the {task.name} scores {sorted(scores)}")
            if best is None or metrics.is_better(metric, scores[metric], best[metric]):
                best = scores
                best_ckpt.save(done, state.params)
        if evaluate or done == options.stop_after:
            ckpt.save(done, state, metadata={"history": history, "evals": evals, "best": best, "steps": steps})
        if done == options.stop_after and done < steps:
            break
    bar.close()
    ckpt.close()
    best_ckpt.close()
    if options.stop_after is not None and options.stop_after < steps:
        log(f"stopped after step {options.stop_after} of {steps} (checkpointed; resume to go on)")
        return {"stopped_after": options.stop_after, "steps": steps}

    # The best params: exported, and scored on the test file.
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state.params)
    _, best_params, _ = Checkpointer(out / "best", max_to_keep=1).restore(target, step=best["step"])
    model.params = best_params
    export = save_pretrained(model, out / "model")
    for name in TOKENIZER_FILES:
        if (model_dir / name).is_file():
            shutil.copyfile(model_dir / name, export / name)
    test = None
    if "test" in data.rows:
        test = task.evaluate(evaluator, data.rows["test"], features["test"])

    summary = {
        "task": task.name, "model": model.architecture, "metric": metric, "best": best, "test": test,
        "evals": evals, "steps": steps, "epochs": steps / batches.steps_per_epoch,
        "train_features": len(train), "train_programs": len(shapes),
        "padding_fraction": 1 - real / max(padded, 1) if padded else None,
        "train_tokens_per_second": real / train_seconds if train_seconds else None,
        "train_loss": history, "seconds": time.perf_counter() - start, "export": str(export),
        "options": dataclasses.asdict(options), "task_options": dataclasses.asdict(task.options),
    }
    (out / "metrics.json").write_text(json.dumps(summary, indent=2, default=float))
    plot_curves(history, evals, metric, out / "curves.png", task.name)
    log(f"best {metric} {best[metric]:.4f} at step {best['step']}" +
        (f"; test {metric} {test[metric]:.4f}" if test else "") + f"; exported to {export}")
    return summary


def plot_curves(history: list[tuple[int, float]], evals: list[dict], metric: str, path: Path, title: str) -> None:
    """Train loss (per step, and its moving mean) beside the validation metric at each evaluation."""
    plt = pyplot("plot_curves")
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    if history:
        steps, losses = np.asarray(history).T
        window = max(1, len(losses) // 50)
        left.plot(steps, losses, color="tab:blue", alpha=0.3, lw=0.8, label="train loss")
        if len(losses) >= window:
            smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
            left.plot(steps[window - 1:], smooth, color="tab:blue", lw=1.6, label=f"{window}-step mean")
    left.set_xlabel("step")
    left.set_ylabel("loss")
    left.legend()
    left.grid(alpha=0.3)
    if evals:
        right.plot([e["step"] for e in evals], [e[metric] for e in evals], "o-", color="tab:orange")
    right.set_xlabel("step")
    right.set_ylabel(f"validation {metric}")
    right.grid(alpha=0.3)
    fig.suptitle(f"jaxzoo finetune {title}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
