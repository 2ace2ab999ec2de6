"""One ISC pretraining step, compiled once with ``jax.jit`` over the data-parallel mesh.

Augmentation, the momentum update, key and query encoders, the cross-contrastive loss, the SGD
update and the enqueueing of the new keys all happen inside the compiled step. Random draws come
from keys folded from (seed, step, row of the global batch), so a step computes the same
function on one device or on a pod.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

from skel_jax import augment
from skel_jax import config_lib
from skel_jax import contrastive
from skel_jax import encoders
from skel_jax import sharding
from skel_jax import train_state

# The host batch fields the step reads; the others (labels, masks) stay on the host.
BATCH_FIELDS = ("skeleton", "num_frames")


def make_train_step(config: ml_collections.ConfigDict, defs: dict[str, encoders.EncoderDef],
                    tx: optax.GradientTransformation, schedule: optax.Schedule) -> Callable:
    """Builds ``train_step(state, batch) -> (state, metrics)`` as a pure function.

    Args:
      config: the experiment config.
      defs: {rep: EncoderDef} of the representations trained.
      tx: the optimizer.
      schedule: its learning-rate schedule (reported in the metrics).

    Returns:
      The step function, not yet jitted (see ``compile_train_step``).
    """
    names = config_lib.representation_names(config.representations)
    momentum = config.contrastive.momentum
    temperature = config.contrastive.temperature
    intra_weight = config.intra_weight
    clip_frames = config.data.clip_frames
    seed_key = jax.random.key(config.seed)
    augment_key, dropout_key = jax.random.fold_in(seed_key, 0), jax.random.fold_in(seed_key, 1)

    def train_step(state: train_state.State, batch: dict):
        step = state["step"]
        rows = jnp.arange(batch["skeleton"].shape[0])
        view1, view2 = augment.two_views(augment.sample_keys(augment_key, step, rows),
                                         batch["skeleton"], batch["num_frames"], clip_frames)
        step_dropout = jax.random.fold_in(dropout_key, step)
        query, key = state["encoders"]["query"], state["encoders"]["key"]
        query_params = {rep: query[rep]["params"] for rep in names}

        # As in MoCo, the key encoders move towards the query encoders before computing keys.
        key_params = contrastive.momentum_update(
            {rep: key[rep]["params"] for rep in names}, query_params, momentum)
        keys, key_stats = {}, {}
        for i, rep in enumerate(names):
            _, projections, key_stats[rep] = encoders.apply(
                defs[rep], {"params": key_params[rep], "batch_stats": key[rep]["batch_stats"]},
                view2, train=True, dropout_key=jax.random.fold_in(step_dropout, 100 + i))
            keys[rep] = jax.lax.stop_gradient(contrastive.l2_normalize(projections))

        def loss_fn(params):
            queries, stats = {}, {}
            for i, rep in enumerate(names):
                _, projections, stats[rep] = encoders.apply(
                    defs[rep], {"params": params[rep], "batch_stats": query[rep]["batch_stats"]},
                    view1, train=True, dropout_key=jax.random.fold_in(step_dropout, i))
                queries[rep] = contrastive.l2_normalize(projections)
            loss, metrics = contrastive.isc_loss(queries, keys, state["queues"], temperature,
                                                 intra_weight)
            return loss, (metrics, stats)

        (_, (metrics, query_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            query_params)
        updates, opt_state = tx.update(grads, state["opt_state"], query_params)
        new_params = optax.apply_updates(query_params, updates)

        queues, queue_ptr = {}, {}
        for rep in names:
            queues[rep], queue_ptr[rep] = contrastive.enqueue(
                state["queues"][rep], state["queue_ptr"][rep], keys[rep])
        new_state = {
            "step": step + 1,
            "encoders": {
                "query": {rep: {"params": new_params[rep], "batch_stats": query_stats[rep]}
                          for rep in names},
                "key": {rep: {"params": key_params[rep], "batch_stats": key_stats[rep]}
                        for rep in names},
            },
            "opt_state": opt_state,
            "queues": queues,
            "queue_ptr": queue_ptr,
        }
        metrics["learning_rate"] = schedule(step)
        metrics["grad_norm"] = optax.tree.norm(grads)
        return new_state, metrics

    return train_step


def compile_train_step(step_fn: Callable, mesh: jax.sharding.Mesh, state_shardings) -> Callable:
    """Jits the step over the mesh: batch sharded, state laid out as given and donated."""
    batch_shardings = {name: sharding.batch_sharding(mesh) for name in BATCH_FIELDS}
    return jax.jit(step_fn, in_shardings=(state_shardings, batch_shardings),
                   out_shardings=(state_shardings, sharding.replicated(mesh)),
                   donate_argnums=(0,))
