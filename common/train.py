"""Training: optimizer, train state and a jitted (optionally sharded) train step for any head.

Every head function computes HF's loss when its labels are given (causal LM, masked LM, sequence and token
classification, span QA, multiple choice), so the loss of a step is simply
``forward(params, config, **batch, deterministic=False, rng=key).loss``.

Mixed precision: the state keeps float32 master params; set ``config.compute_dtype = "bfloat16"`` and the
model casts each weight to bf16 at its matmul (norms, softmax and the loss stay float32), so gradients
arrive in float32 on the master params.

    tx = make_optimizer(OptimizerConfig(learning_rate=3e-4, total_steps=1000))
    state = init_train_state(params, tx, jax.random.PRNGKey(0))
    step = make_train_step(forward, config, tx, mesh=mesh)      # jit, donation, shardings
    state, metrics = step(state, batch)                          # metrics: loss, grad_norm, learning_rate
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding, PartitionSpec

from common.sharding import batch_sharding, param_shardings


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: optimizer micro-steps taken
    params: Any  # float32 master params
    opt_state: Any
    rng: jax.Array  # base key; step k uses fold_in(rng, k), so a resumed run draws the same dropout masks


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    learning_rate: float = 3e-4
    warmup_steps: int = 100
    total_steps: int = 1000  # optimizer updates, for the cosine schedule
    min_learning_rate_ratio: float = 0.1  # cosine decays to learning_rate * this
    weight_decay: float = 0.1
    b1: float = 0.9
    b2: float = 0.95
    eps: float = 1e-8
    clip_norm: float | None = 1.0
    accumulate_steps: int = 1  # micro-batches per update (optax.MultiSteps)
    schedule: str = "cosine"  # after the warmup: "cosine" (to learning_rate * min_learning_rate_ratio), "linear" (to 0)

    def __post_init__(self):
        checks = {
            "learning_rate": self.learning_rate > 0, "warmup_steps": self.warmup_steps >= 0,
            "total_steps": self.total_steps > self.warmup_steps,
            "min_learning_rate_ratio": 0 <= self.min_learning_rate_ratio <= 1,
            "weight_decay": self.weight_decay >= 0, "b1": 0 <= self.b1 < 1, "b2": 0 <= self.b2 < 1,
            "clip_norm": self.clip_norm is None or self.clip_norm > 0, "accumulate_steps": self.accumulate_steps >= 1,
            "schedule": self.schedule in ("cosine", "linear"),
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"{name} = {getattr(self, name)!r} is invalid for the optimizer "
                                 "(rates > 0, 0 <= betas < 1, total_steps > warmup_steps, accumulate_steps >= 1, "
                                 "schedule 'cosine' or 'linear')")


def decay_mask(params) -> Any:
    """Weight decay on matrices (kernels, embeddings) only, not on norms or biases (HF Trainer's rule)."""
    def leaf(path, _):
        return getattr(path[-1], "key", None) in ("kernel", "embedding")

    return jax.tree_util.tree_map_with_path(leaf, params)


def learning_rate_schedule(cfg: OptimizerConfig) -> optax.Schedule:
    """Linear warmup from 0, then cosine decay, or (``schedule="linear"``) linear decay to 0 at total_steps as
    transformers' Trainer does by default."""
    if cfg.schedule == "linear":
        return optax.join_schedules([
            optax.linear_schedule(0.0, cfg.learning_rate, max(cfg.warmup_steps, 1)),
            optax.linear_schedule(cfg.learning_rate, 0.0, cfg.total_steps - cfg.warmup_steps)], [cfg.warmup_steps])
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=cfg.learning_rate, warmup_steps=cfg.warmup_steps,
        decay_steps=cfg.total_steps, end_value=cfg.learning_rate * cfg.min_learning_rate_ratio)


def make_optimizer(cfg: OptimizerConfig) -> optax.GradientTransformation:
    """Global-norm clipping then AdamW with warmup + cosine; accumulate_steps > 1 wraps it in MultiSteps."""
    parts = [optax.clip_by_global_norm(cfg.clip_norm)] if cfg.clip_norm else []
    parts.append(optax.adamw(learning_rate_schedule(cfg), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
                             weight_decay=cfg.weight_decay, mask=decay_mask))
    tx = optax.chain(*parts)
    if cfg.accumulate_steps > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=cfg.accumulate_steps)
    return tx


def init_train_state(params, tx: optax.GradientTransformation, rng) -> TrainState:
    """A fresh state with float32 master copies of ``params``."""
    master = jax.tree.map(lambda p: jnp.asarray(p, jnp.float32), params)
    return TrainState(step=jnp.zeros((), jnp.int32), params=master, opt_state=tx.init(master), rng=rng)


def loss_fn_for(forward: Callable, config) -> Callable:
    """loss(params, batch, rng) -> scalar: the head's own HF loss; dropout is on when rng is given."""
    def loss(params, batch, rng):
        return forward(params, config, **batch, deterministic=rng is None, rng=rng).loss

    return loss


def train_step(state: TrainState, batch: dict, *, loss_fn: Callable, tx: optax.GradientTransformation,
               axis_name: str | None = None, dropout: bool = True):
    """One optimizer micro-step. Under ``jax.pmap`` pass ``axis_name`` to average loss and grads over devices."""
    rng = jax.random.fold_in(state.rng, state.step) if dropout else None
    loss, grads = jax.value_and_grad(loss_fn)(state.params, batch, rng)
    if axis_name is not None:
        loss, grads = jax.lax.pmean((loss, grads), axis_name)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads)}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics


def state_shardings(state: TrainState, tx: optax.GradientTransformation, rules, mesh) -> TrainState:
    """Shardings for a whole TrainState: params by the rules, optimizer moments like their params."""
    params = param_shardings(state.params, rules, mesh)
    replicated = NamedSharding(mesh, PartitionSpec())
    opt = optax.tree_map_params(tx, lambda _, s: s, state.opt_state, params,
                                transform_non_params=lambda _: replicated)
    return TrainState(step=replicated, params=params, opt_state=opt, rng=replicated)


def make_train_step(forward: Callable, config, tx: optax.GradientTransformation, *, mesh=None, rules=(),
                    state_example: TrainState | None = None, donate: bool = True, dropout: bool = True):
    """A jitted ``step(state, batch) -> (state, metrics)``.

    With a mesh: the state is sharded by ``rules`` (``state_example`` gives its structure), batches are split
    over data x fsdp, and the model's activation constraints are active. The input state is donated.
    """
    fn = functools.partial(train_step, loss_fn=loss_fn_for(forward, config), tx=tx, dropout=dropout)
    donate_argnums = (0,) if donate else ()
    if mesh is None:
        return jax.jit(fn, donate_argnums=donate_argnums)
    if state_example is None:
        raise ValueError("make_train_step with a mesh needs state_example (a TrainState or its eval_shape)")
    shardings = state_shardings(state_example, tx, rules, mesh)
    jitted = jax.jit(fn, donate_argnums=donate_argnums, out_shardings=(shardings, None))

    def step(state, batch):
        batch = {k: jax.device_put(v, batch_sharding(mesh, jnp.ndim(v))) for k, v in batch.items()}
        with jax.set_mesh(mesh):
            return jitted(state, batch)

    step.shardings = shardings
    return step
