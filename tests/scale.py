"""Helpers shared by the scale tests: meshes of both axis kinds, sharded vs unsharded training, jit/grad."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jax.sharding import AxisType

from common.sharding import AXES, make_mesh
from common.train import OptimizerConfig, init_train_state, make_optimizer, make_train_step


def split_static(model, inputs: dict) -> tuple[dict, dict]:
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

# The head of each family tests/common/test_explicit_mesh.py trains on an Explicit mesh (loss falls, sharded ==
# unsharded); each family's scale tests train its other heads on an Auto mesh (and compile the jit/grad check for
# the rest), so the train step runs on both mesh kinds in every family.
MESH_TRAINED = {"llama": "causal_lm", "longformer": "question_answering", "led": "conditional_generation",
                "lilt": "token_classification", "xlm": "with_lm_head"}


def untrained_heads(family: str, heads, trained_here) -> list[str]:
    """The heads no training test compiles (a train step is jit(grad) of the head, params checked finite)."""
    return sorted(set(heads) - set(trained_here) - {MESH_TRAINED[family]})


def train_steps(model, inputs: dict, meshes: dict, steps: int, learning_rate: float = 3e-3):
    """Run ``steps`` steps of the common train step (dropout on), unsharded and on each of ``meshes`` (name -> mesh)
    by the model's partition rules, asserting the losses agree at every step. The unsharded step is compiled once
    for all meshes. Returns (losses, plain state, {name: sharded state})."""
    data, static = split_static(model, inputs)
    forward = lambda p, c, **kw: model.spec.forward(p, c, **kw, **static)  # noqa: E731
    tx = make_optimizer(OptimizerConfig(learning_rate=learning_rate, warmup_steps=0, total_steps=20, eps=1e-4))
    state = init_train_state(model.params, tx, jax.random.PRNGKey(0))
    plain = make_train_step(forward, model.config, tx, donate=False)
    sharded, s_states = {}, {}
    for name, mesh in meshes.items():
        sharded[name] = make_train_step(forward, model.config, tx, mesh=mesh, rules=model.partition_rules,
                                        state_example=state, donate=False)
        s_states[name] = jax.device_put(state, sharded[name].shardings)
    losses = []
    for _ in range(steps):
        state, m1 = plain(state, data)
        for name in meshes:
            s_states[name], m2 = sharded[name](s_states[name], data)
            np.testing.assert_allclose(float(m1["loss"]), float(m2["loss"]), atol=1e-5, rtol=1e-6, err_msg=name)
        losses.append(float(m1["loss"]))
    return losses, state, s_states


def assert_trains_sharded_like_unsharded(model, inputs: dict, mesh, steps: int = 6) -> None:
    """Train ``steps`` steps through the common step, unsharded and on ``mesh`` by the family's rules (dropout
    on): the losses agree at every step, the loss falls, and the params stay finite."""
    losses, state, _ = train_steps(model, inputs, {"mesh": mesh}, steps)
    assert_learns(losses, state)


def assert_learns(losses: list, state) -> None:
    """The loss fell over the steps and every param is finite."""
    assert losses[-1] < losses[0], losses
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state.params))


def assert_jit_grad_finite(model, inputs: dict) -> None:
    """The head under jit and grad (of the mean square of every output): gradients for every param, finite."""
    head = model.spec.head
    data, static = split_static(model, inputs)
    fn = jax.jit(lambda p, d: model.spec.forward(p, model.config, **d, **static))

    def scalar(p):
        return sum(jnp.mean(jnp.square(leaf)) for leaf in jax.tree.leaves(fn(p, data)))

    grads = jax.grad(scalar)(model.params)
    assert jax.tree.structure(grads) == jax.tree.structure(model.params), head
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads)), head
