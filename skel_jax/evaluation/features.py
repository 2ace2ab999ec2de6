"""The encoder under evaluation and its features of the deterministic test crop.

``load_encoder`` restores only the query encoder of one representation from a work directory
(read-only; the optimizer state, queues and key encoders are never read), or builds an untrained
encoder of the same architecture as a baseline. ``extract_features`` runs it in inference mode
(BatchNorm running statistics, no dropout) on the centre crop of every example of a source,
batched and sharded over the mesh like training.
"""

from collections.abc import Sequence
import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from skel_jax import augment
from skel_jax import checkpointing
from skel_jax import encoders
from skel_jax import sharding
from skel_jax.data import input_pipeline


def load_encoder(workdir: str, representation: str, *, step: int | None = None,
                 mesh: Mesh, random_init: bool = False, seed: int = 0
                 ) -> tuple[ml_collections.ConfigDict, int, encoders.EncoderDef, dict]:
    """The query encoder of one representation, replicated over the mesh.

    Args:
      workdir: a training or importer work directory.
      representation: ``"seq"``, ``"graph"`` or ``"image"``.
      step: the checkpoint step; None for the latest.
      mesh: where to place the variables (replicated).
      random_init: ignore the trained weights and initialise the same architecture from
        ``seed`` instead (the untrained baseline). The checkpoint still supplies the config.
      seed: the initialisation seed for ``random_init``.

    Returns:
      (the training config saved with the step, the step, EncoderDef, variables).

    Raises:
      FileNotFoundError: no checkpoint in the work directory, or none at ``step``.
      ValueError: a representation the checkpoint does not train (unless ``random_init``).
      checkpointing.CheckpointReadError: a damaged step, or one whose encoder differs from
        the architecture its config describes.
    """
    with checkpointing.Checkpointer(workdir, read_only=True) as ckpt:
        if step is None:
            step = ckpt.latest_step()
        # With no checkpoint at all, step is still None and restore_config says so clearly.
        config = ckpt.restore_config(step)
        replicated = sharding.replicated(mesh)
        if random_init:
            variables = jax.jit(lambda key: encoders.create(config, representation, key)[1],
                                out_shardings=replicated)(jax.random.key(seed))
            return config, step, encoders.abstract(config, representation)[0], variables
        defn, abstract = encoders.abstract(config, representation)
        variables = ckpt.restore_encoder(
            step, representation,
            jax.tree.map(lambda a: a.update(sharding=replicated), abstract))
    return config, step, defn, variables


def make_feature_fn(defn: encoders.EncoderDef, mesh: Mesh,
                    clip_frames: int = augment.CLIP_FRAMES):
    """Compiles ``(variables, skeleton, num_frames) -> features`` of the test crop.

    Args:
      defn: the encoder's static part.
      mesh: the device mesh; the batch is sharded over it, the variables replicated.
      clip_frames: frames of the test crop (the pretraining config's ``data.clip_frames``).

    Returns:
      A jitted function of (variables, float32 (B, T, 2, 25, 3) skeletons, int (B,) frame
      counts) giving float32 (B, d) features, sharded like the batch.
    """
    @functools.partial(jax.jit, out_shardings=sharding.batch_sharding(mesh))
    def features(variables, skeleton, num_frames):
        clips = augment.downstream_test_views(skeleton, num_frames, clip_frames)
        out, _, _ = encoders.apply(defn, variables, clips, train=False, head=False)
        return out.astype(jnp.float32)

    return features


def extract_features(feature_fn, variables: dict, source: Sequence[Any], *, mesh: Mesh,
                     batch_size: int, max_frames: int, read_threads: int = 2
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Features of the centre test crop of every example of a source, in source order.

    Args:
      feature_fn: ``make_feature_fn(defn, mesh)``; made once, it compiles once for every
        split and every set of variables of the encoder.
      variables: the encoder's variables (replicated over ``mesh``).
      source: random-access examples.
      mesh: the device mesh.
      batch_size: examples per compiled call over all devices; a multiple of the device count.
      max_frames: frames each stored clip is padded or truncated to.
      read_threads: threads assembling batches.

    Returns:
      (float32 (N, d) features, int32 (N,) labels), N = len(source), on every process.

    Raises:
      ValueError: ``batch_size`` does not split over the devices, or the source is empty.
    """
    sharding.check_divisible(batch_size, mesh)
    batches = input_pipeline.eval_iterator(source, global_batch_size=batch_size,
                                           max_frames=max_frames, read_threads=read_threads)
    features, labels, masks = [], [], []
    for batch in batches:
        placed = sharding.put_batch(
            {"skeleton": batch["skeleton"], "num_frames": batch["num_frames"]}, mesh)
        # Gathered per batch: every process needs all features (k-NN, classifier evaluation).
        features.append(multihost_utils.process_allgather(
            feature_fn(variables, placed["skeleton"], placed["num_frames"]), tiled=True))
        labels.append(multihost_utils.process_allgather(batch["label"], tiled=True))
        masks.append(multihost_utils.process_allgather(batch["mask"], tiled=True))
    mask = np.concatenate(masks)
    return np.concatenate(features)[mask], np.concatenate(labels)[mask].astype(np.int32)


def feature_dim(defn: encoders.EncoderDef, variables: dict, clip_frames: int) -> int:
    """The encoder's feature size d, found by shape inference (nothing is computed)."""
    clips = jax.ShapeDtypeStruct((1, clip_frames, *input_pipeline.FRAME_SHAPE), jnp.float32)
    out = jax.eval_shape(
        lambda v, c: encoders.apply(defn, v, c, train=False, head=False)[0], variables, clips)
    return out.shape[-1]
