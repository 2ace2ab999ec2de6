"""The ISC train state: one explicit pytree of plain dicts, as checkpoints store it.

  {
    "step": int32 scalar,
    "encoders": {"query": {rep: variables}, "key": {rep: variables}},
    "opt_state": optax state over {rep: query params},
    "queues": {rep: float32 (K, 128), rows L2-normalised keys of that representation},
    "queue_ptr": {rep: int32 scalar, keys enqueued so far modulo K},
  }

``rep`` ranges over the representations being trained (``("seq", "graph")`` for the default
inter-skeleton pair, one name for intra-skeleton training); ``variables`` is
``{"params": ..., "batch_stats": ...}`` (see ``skel_jax.encoders``). The key encoders are the
momentum (EMA) copies of the query encoders; queue ``rep`` holds keys from key encoder ``rep``.
"""

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from skel_jax import config_lib
from skel_jax import encoders

PROJECTION_DIM = 128
State = dict[str, Any]


def create(config: ml_collections.ConfigDict, key: jax.Array,
           tx: optax.GradientTransformation) -> tuple[dict[str, encoders.EncoderDef], State]:
    """Initialises encoders (key encoders start as copies of the query encoders) and queues.

    Returns:
      ({rep: EncoderDef}, state).
    """
    names = config_lib.representation_names(config.representations)
    defs, query, queues = {}, {}, {}
    for i, rep in enumerate(names):
        defs[rep], query[rep] = encoders.create(config, rep, jax.random.fold_in(key, i))
        queue = jax.random.normal(jax.random.fold_in(key, 100 + i),
                                  (config.contrastive.queue_size, PROJECTION_DIM), jnp.float32)
        queues[rep] = queue / jnp.linalg.norm(queue, axis=1, keepdims=True)
    state = {
        "step": jnp.zeros((), jnp.int32),
        "encoders": {"query": query, "key": jax.tree.map(jnp.copy, query)},
        "opt_state": tx.init({rep: v["params"] for rep, v in query.items()}),
        "queues": queues,
        "queue_ptr": {rep: jnp.zeros((), jnp.int32) for rep in names},
    }
    return defs, state


def abstract(config: ml_collections.ConfigDict, tx: optax.GradientTransformation
             ) -> tuple[dict[str, encoders.EncoderDef], State]:
    """The encoder definitions and the state's shapes and dtypes, without allocating it."""
    names = config_lib.representation_names(config.representations)
    defs = {rep: encoders.abstract(config, rep)[0] for rep in names}
    state = jax.eval_shape(lambda: create(config, jax.random.key(0), tx)[1])
    return defs, state
