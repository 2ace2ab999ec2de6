"""Class-stratified label subsets for the semi-supervised protocol (method.md §7).

Of every class present in the labelled training set, ``round(fraction * n_c)`` examples are kept
(halves rounded up), and at least one, so each class stays represented even at 1 %. Which
examples are kept is drawn from ``numpy.random.default_rng(seed)``, class by class in increasing
label order: the same (labels, fraction, seed) always gives the same subset, and different seeds
give different ones.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np


def _check_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array; got {labels.dtype} of shape "
                         f"{labels.shape}.")
    if not labels.size:
        raise ValueError("labels is empty: there is nothing to sample a subset from.")
    return labels


def _check_fraction(fraction: float) -> None:
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"The label fraction must be in (0, 1]; got {fraction}.")


def per_class_sizes(labels: np.ndarray, fraction: float) -> dict[int, int]:
    """How many examples of each present class a subset keeps.

    Args:
      labels: int (N,) labels of the full training set.
      fraction: share of each class to keep, in (0, 1].

    Returns:
      {label: max(1, floor(fraction * n_label + 0.5))} for every label present.

    Raises:
      ValueError: labels not a non-empty 1-D integer array, or fraction outside (0, 1].
    """
    labels = _check_labels(labels)
    _check_fraction(fraction)
    classes, counts = np.unique(labels, return_counts=True)
    return {int(c): max(1, int(np.floor(fraction * n + 0.5))) for c, n in zip(classes, counts)}


def stratified_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Indices of a class-stratified random subset of a labelled set.

    Args:
      labels: int (N,) labels of the full training set.
      fraction: share of each class to keep, in (0, 1].
      seed: non-negative seed of the draw.

    Returns:
      int64 (n,) sorted indices into ``labels``, with ``per_class_sizes(labels, fraction)[c]``
      of them of each class c.

    Raises:
      ValueError: bad labels, fraction outside (0, 1], or a negative seed.
    """
    sizes = per_class_sizes(labels, fraction)
    if seed < 0:
        raise ValueError(f"seed must be non-negative; got {seed}.")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == c), size, replace=False)
              for c, size in sizes.items()]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def read_labels(source: Sequence[dict[str, Any]]) -> np.ndarray:
    """The ``label`` field of every example of a source, in order (one pass over the data).

    Args:
      source: random-access examples (e.g. ``input_pipeline.load_source``).

    Returns:
      int64 (len(source),).
    """
    return np.array([int(source[i]["label"]) for i in range(len(source))], np.int64)


class Subset(Sequence):
    """A read-only view of some examples of a random-access source.

    Args:
      source: the full source.
      indices: positions in ``source`` to expose, in order.

    Raises:
      ValueError: an index outside [0, len(source)).
    """

    def __init__(self, source: Sequence[Any], indices: np.ndarray):
        indices = np.asarray(indices, np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= len(source)):
            raise ValueError(f"Subset indices must lie in [0, {len(source)}); got values in "
                             f"[{indices.min()}, {indices.max()}].")
        self._source = source
        self._indices = indices

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, position: int) -> Any:
        return self._source[int(self._indices[position])]
