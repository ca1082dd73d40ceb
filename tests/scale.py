"""Helpers shared by the scale tests: meshes of both axis kinds, sharded vs unsharded training, jit/grad."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jax.sharding import AxisType

from common.sharding import AXES, make_mesh
from common.train import OptimizerConfig, init_train_state, make_optimizer, make_train_step


def split_static(model, head: str, inputs: dict) -> tuple[dict, dict]:
    """Validate ``inputs`` as Model does: (arrays, host-computed static arguments such as max_num_global)."""
    data = model.spec.validate_inputs(model.config, inputs)
    static = {name: data.pop(name) for name in model.spec.static_args if name in data}
    return data, static


def mesh_of(kind: str, shape=(2, 2, 2)):
    """A (data, fsdp, tensor) mesh: "explicit" as ``jax.make_mesh`` gives by default (Explicit axes), "auto" as
    ``common.sharding.make_mesh`` gives (Auto axes)."""
    if kind == "explicit":
        mesh = jax.make_mesh(shape, AXES)
        assert all(t == AxisType.Explicit for t in mesh.axis_types)  # JAX's default, which this kind stands for
        return mesh
    if kind == "auto":
        return make_mesh(*shape)
    raise ValueError(f"mesh kind {kind!r}: expected one of {MESH_KINDS}")


MESH_KINDS = ("auto", "explicit")


def train_steps(model, head: str, inputs: dict, mesh, steps: int, learning_rate: float = 3e-3):
    """Run ``steps`` steps of the common train step (dropout on), unsharded and on ``mesh`` by the model's
    partition rules, asserting the losses agree at every step. Returns (losses, plain state, sharded state)."""
    data, static = split_static(model, head, inputs)
    forward = lambda p, c, **kw: model.spec.forward(p, c, **kw, **static)  # noqa: E731
    tx = make_optimizer(OptimizerConfig(learning_rate=learning_rate, warmup_steps=0, total_steps=20, eps=1e-4))
    state = init_train_state(model.params, tx, jax.random.PRNGKey(0))
    plain = make_train_step(forward, model.config, tx, donate=False)
    sharded = make_train_step(forward, model.config, tx, mesh=mesh, rules=model.partition_rules, state_example=state,
                              donate=False)
    s_state = jax.device_put(state, sharded.shardings)
    losses = []
    for _ in range(steps):
        state, m1 = plain(state, data)
        s_state, m2 = sharded(s_state, data)
        np.testing.assert_allclose(float(m1["loss"]), float(m2["loss"]), atol=1e-5, rtol=1e-6)
        losses.append(float(m1["loss"]))
    return losses, state, s_state


def assert_trains_sharded_like_unsharded(model, head: str, inputs: dict, mesh, steps: int = 6) -> None:
    """Train ``steps`` steps through the common step, unsharded and on ``mesh`` by the family's rules (dropout
    on): the losses agree at every step, the loss falls, and the params stay finite."""
    losses, state, _ = train_steps(model, head, inputs, mesh, steps)
    assert losses[-1] < losses[0], losses
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state.params))


def assert_jit_grad_finite(model, head: str, inputs: dict) -> None:
    """The head under jit and grad (of the mean square of every output): gradients for every param, finite."""
    data, static = split_static(model, head, inputs)
    fn = jax.jit(lambda p, d: model.spec.forward(p, model.config, **d, **static))

    def scalar(p):
        return sum(jnp.mean(jnp.square(leaf)) for leaf in jax.tree.leaves(fn(p, data)))

    grads = jax.grad(scalar)(model.params)
    assert jax.tree.structure(grads) == jax.tree.structure(model.params), head
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads)), head
