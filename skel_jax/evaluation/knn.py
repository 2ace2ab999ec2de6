"""Exact cosine k-nearest-neighbour classification on the accelerator (method.md §7, KNN).

Features are L2-normalised, so the cosine similarity is a dot product. Test rows are processed
in fixed-size chunks (the last one zero-padded), each chunk sharded over the mesh and compared
with every training feature (replicated), so memory stays at chunk x train similarities and the
classifier compiles once.

Rules, shared with the NumPy brute force in the tests:

* Neighbours are ranked by similarity, highest first; equal similarities rank the lower
  training index first (``jax.lax.top_k`` does so).
* The prediction is the majority label among the k nearest neighbours. A tie between labels
  goes to the tied label whose best-ranked neighbour is nearest, so k = 2 with two different
  labels predicts the label of the nearest neighbour, as k = 1 does.
"""

from collections.abc import Sequence
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from skel_jax import sharding

# torch.nn.functional.normalize's floor on the norm: zero vectors stay zero instead of NaN.
_NORM_EPS = 1e-12


def l2_normalize(features: jax.Array) -> jax.Array:
    """Scales each row to unit L2 norm (rows of norm below 1e-12 are divided by 1e-12).

    Args:
      features: (N, d) floats.

    Returns:
      float32 (N, d).
    """
    features = features.astype(jnp.float32)
    norms = jnp.linalg.norm(features, axis=-1, keepdims=True)
    return features / jnp.maximum(norms, _NORM_EPS)


def majority_vote(neighbour_labels: jax.Array, num_classes: int) -> jax.Array:
    """The majority label of each row of ranked neighbour labels, ties to the nearest.

    Args:
      neighbour_labels: int (N, k), nearest neighbour first.
      num_classes: labels lie in [0, num_classes).

    Returns:
      int32 (N,) predicted labels.
    """
    k = neighbour_labels.shape[-1]
    one_hot = jax.nn.one_hot(neighbour_labels, num_classes, dtype=jnp.int32)  # (N, k, C)
    votes = one_hot.sum(axis=1)
    # argmax returns the first maximum: the rank of each label's nearest neighbour.
    first_rank = jnp.argmax(one_hot, axis=1)
    # More votes always win (a vote is worth k + 1 > any rank difference); among equal votes
    # the smaller first rank wins. Labels without votes score <= 0, present ones >= 2.
    score = votes * (k + 1) - jnp.where(votes > 0, first_rank, k + 1)
    return jnp.argmax(score, axis=-1).astype(jnp.int32)


def _check_inputs(train_features, train_labels, test_features, ks, num_classes):
    if train_features.ndim != 2 or test_features.ndim != 2:
        raise ValueError(f"Features must be 2-D (N, d); got train {train_features.shape} and "
                         f"test {test_features.shape}.")
    if train_features.shape[1] != test_features.shape[1]:
        raise ValueError(f"Train and test features differ in size: {train_features.shape[1]} "
                         f"vs {test_features.shape[1]}.")
    if train_labels.shape != train_features.shape[:1]:
        raise ValueError(f"train_labels must have shape ({train_features.shape[0]},); got "
                         f"{train_labels.shape}.")
    if not len(ks) or any(k < 1 for k in ks):
        raise ValueError(f"k values must be positive integers; got {tuple(ks)}.")
    if max(ks) > train_features.shape[0]:
        raise ValueError(f"k = {max(ks)} exceeds the {train_features.shape[0]} training "
                         "features.")
    if train_labels.size and (train_labels.min() < 0 or train_labels.max() >= num_classes):
        raise ValueError(f"train_labels must lie in [0, {num_classes}); got values in "
                         f"[{train_labels.min()}, {train_labels.max()}].")


def knn_predict(train_features: np.ndarray, train_labels: np.ndarray,
                test_features: np.ndarray, ks: Sequence[int], num_classes: int, *,
                mesh: Mesh | None = None, chunk_size: int = 1024) -> dict[int, np.ndarray]:
    """Predicts a label for every test feature by cosine k-NN, for several k at once.

    Args:
      train_features: (N, d) features of the labelled set (normalised here).
      train_labels: int (N,) their labels in [0, num_classes).
      test_features: (M, d) features to classify (normalised here).
      ks: the numbers of neighbours, each in [1, N].
      num_classes: number of classes.
      mesh: the device mesh (default: all devices); test chunks are sharded over it.
      chunk_size: test rows per compiled call; rounded up to a multiple of the mesh size.

    Returns:
      {k: int32 (M,) predicted labels}.

    Raises:
      ValueError: shapes that do not match, k out of range, or labels out of range.
    """
    train_features = np.asarray(train_features)
    train_labels = np.asarray(train_labels)
    test_features = np.asarray(test_features)
    ks = tuple(int(k) for k in ks)
    _check_inputs(train_features, train_labels, test_features, ks, num_classes)
    mesh = sharding.make_mesh() if mesh is None else mesh
    chunk = -(-max(1, min(chunk_size, len(test_features))) // mesh.size) * mesh.size
    max_k = max(ks)

    replicated = sharding.replicated(mesh)
    bank = jax.device_put(l2_normalize(jnp.asarray(train_features)), replicated)
    bank_labels = jax.device_put(jnp.asarray(train_labels, jnp.int32), replicated)

    # Predictions come back replicated, so every process can read all of them.
    @functools.partial(jax.jit, out_shardings=replicated)
    def classify(bank, bank_labels, queries):
        # HIGHEST: TPUs and GPUs otherwise round the operands to bfloat16 / TF32, which can
        # reorder close neighbours.
        similarity = jnp.matmul(l2_normalize(queries), bank.T,
                                precision=jax.lax.Precision.HIGHEST)
        _, nearest = jax.lax.top_k(similarity, max_k)
        neighbour_labels = bank_labels[nearest]
        return {k: majority_vote(neighbour_labels[:, :k], num_classes) for k in ks}

    predictions = {k: [] for k in ks}
    for start in range(0, len(test_features), chunk):
        rows = test_features[start:start + chunk]
        padded = np.zeros((chunk, test_features.shape[1]), test_features.dtype)
        padded[:len(rows)] = rows
        out = classify(bank, bank_labels,
                       jax.device_put(padded, sharding.batch_sharding(mesh)))
        for k in ks:
            predictions[k].append(np.asarray(out[k])[:len(rows)])
    return {k: np.concatenate(p) if p else np.zeros((0,), np.int32)
            for k, p in predictions.items()}
