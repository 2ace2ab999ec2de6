"""Encoders built from a config and applied as pure functions of plain-dict variables.

Training, checkpoints, the importer and the evaluation binary all hold an encoder as
``(EncoderDef, variables)``: the static graph, and ``{"params": ..., "batch_stats": ...}``
nested dicts of arrays (``nnx.to_pure_dict`` form). Plain dicts keep the checkpoint
layout readable and free of Flax classes; NNX modules exist only inside ``apply``.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from skel_jax.models import encoder as encoder_lib

Variables = dict[str, Any]  # {"params": nested dict, "batch_stats": nested dict}


@dataclasses.dataclass(frozen=True)
class EncoderDef:
    """The static part of an encoder: its NNX graph and its dropout RNG-stream template."""

    representation: str
    graphdef: Any
    rng_state: Any  # Pure dict; reseeded on every call, so its values never matter.


def backbone_kwargs(config: ml_collections.ConfigDict, representation: str) -> dict:
    """The backbone's architecture arguments from ``config.model``."""
    if representation == "seq":
        return dict(hidden_size=config.model.seq.hidden_size,
                    num_layers=config.model.seq.num_layers, mode=config.model.seq.mode)
    if representation == "graph":
        return dict(channels=tuple(config.model.graph.channels),
                    strides=tuple(config.model.graph.strides))
    if representation == "image":
        return dict(out_channels=config.model.image.out_channels,
                    num_frames=config.data.clip_frames)
    raise ValueError(f"Unknown representation {representation!r}; valid choices are "
                     f"{encoder_lib.REPRESENTATIONS}.")


def _build(config, representation, key) -> nnx.Module:
    params_key, dropout_key = jax.random.split(key)
    return encoder_lib.build_encoder(
        representation, head="mlp", rngs=nnx.Rngs(params=params_key, dropout=dropout_key),
        dtype=jnp.dtype(config.model.compute_dtype), param_dtype=jnp.float32,
        **backbone_kwargs(config, representation))


def _split(module: nnx.Module, representation: str) -> tuple[EncoderDef, Variables]:
    graphdef, params, batch_stats, rng_state = nnx.split(module, nnx.Param, nnx.BatchStat, ...)
    variables = {"params": nnx.to_pure_dict(params),
                 "batch_stats": nnx.to_pure_dict(batch_stats)}
    return EncoderDef(representation, graphdef, nnx.to_pure_dict(rng_state)), variables


def create(config: ml_collections.ConfigDict, representation: str,
           key: jax.Array) -> tuple[EncoderDef, Variables]:
    """Initialises the encoder (backbone + MLP projection head) of one representation."""
    return _split(_build(config, representation, key), representation)


def abstract(config: ml_collections.ConfigDict,
             representation: str) -> tuple[EncoderDef, Variables]:
    """Like ``create`` but without allocating: the variables are ``jax.ShapeDtypeStruct``s."""
    module = nnx.eval_shape(lambda: _build(config, representation, jax.random.key(0)))
    return _split(module, representation)


def apply(defn: EncoderDef, variables: Variables, clips: jax.Array, *, train: bool,
          dropout_key: jax.Array | None = None, head: bool = True
          ) -> tuple[jax.Array, jax.Array | None, dict]:
    """Runs an encoder on a clip batch.

    Args:
      defn: the encoder's static part.
      variables: its params and batch statistics.
      clips: (N, T, M, V, C) float clips.
      train: BatchNorm on batch statistics (updating the running ones) and dropout on; else the
        running statistics and no dropout.
      dropout_key: key for dropout in training (required when ``train``).
      head: also run the MLP projection head.

    Returns:
      (features (N, d), projections (N, 128) or None, updated batch statistics).
    """
    module = nnx.merge(defn.graphdef, variables["params"], variables["batch_stats"],
                       defn.rng_state)
    if train:
        if dropout_key is None:
            raise ValueError("apply(train=True) needs a dropout_key.")
        module.train()
        nnx.reseed(module, dropout=dropout_key)
    else:
        module.eval()
    if head:
        features, projections = module(clips)
    else:
        features, projections = module.backbone(clips), None
    return features, projections, nnx.to_pure_dict(nnx.state(module, nnx.BatchStat))
