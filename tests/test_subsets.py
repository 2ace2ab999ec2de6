"""Tests of skel_jax.evaluation.subsets: class-stratified label subsets."""

import numpy as np
import pytest

from skel_jax.evaluation import subsets

# 5 classes of 300, 150, 40, 7 and 1 examples, shuffled.
COUNTS = {0: 300, 1: 150, 2: 40, 3: 7, 4: 1}
LABELS = np.random.default_rng(0).permutation(
    np.concatenate([np.full(n, c) for c, n in COUNTS.items()]))


@pytest.mark.parametrize("fraction, expected", [
    # Hand-worked max(1, round-half-up(fraction * n)).
    (0.01, {0: 3, 1: 2, 2: 1, 3: 1, 4: 1}),    # 1.5 -> 2; 0.4, 0.07, 0.01 -> at least 1.
    (0.1, {0: 30, 1: 15, 2: 4, 3: 1, 4: 1}),   # 0.7 -> 1.
    (0.5, {0: 150, 1: 75, 2: 20, 3: 4, 4: 1}),  # 3.5 -> 4.
    (1.0, COUNTS),
])
def test_per_class_sizes(fraction, expected):
    assert subsets.per_class_sizes(LABELS, fraction) == expected


@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.5, 1.0])
def test_subset_has_the_right_size_per_class(fraction):
    indices = subsets.stratified_subset(LABELS, fraction, seed=3)
    assert indices.dtype == np.int64 and indices.ndim == 1
    assert np.all(np.diff(indices) > 0)  # Sorted, no repeats.
    assert indices.min() >= 0 and indices.max() < len(LABELS)
    chosen, counts = np.unique(LABELS[indices], return_counts=True)
    assert chosen.tolist() == sorted(COUNTS)  # Every class at least once.
    assert dict(zip(chosen.tolist(), counts.tolist())) == subsets.per_class_sizes(LABELS,
                                                                                   fraction)


def test_subsets_are_reproducible_per_seed_and_differ_across_seeds():
    first = subsets.stratified_subset(LABELS, 0.1, seed=0)
    np.testing.assert_array_equal(first, subsets.stratified_subset(LABELS, 0.1, seed=0))
    others = [subsets.stratified_subset(LABELS, 0.1, seed=s) for s in (1, 2)]
    for other in others:
        assert not np.array_equal(first, other)
    assert not np.array_equal(others[0], others[1])


def test_subset_view():
    source = [{"label": i % 3, "i": i} for i in range(10)]
    view = subsets.Subset(source, np.array([7, 2, 9]))
    assert len(view) == 3
    assert [view[p]["i"] for p in range(3)] == [7, 2, 9]
    np.testing.assert_array_equal(subsets.read_labels(view), [1, 2, 0])
    assert subsets.read_labels(view).dtype == np.int64


@pytest.mark.parametrize("labels, fraction, seed, message", [
    (LABELS, 0.0, 0, r"fraction must be in \(0, 1\]"),
    (LABELS, 1.5, 0, r"fraction must be in \(0, 1\]"),
    (LABELS, 0.1, -1, "seed must be non-negative"),
    (np.zeros(0, int), 0.1, 0, "labels is empty"),
    (LABELS.astype(float), 0.1, 0, "1-D integer array"),
    (LABELS.reshape(-1, 2), 0.1, 0, "1-D integer array"),
])
def test_errors(labels, fraction, seed, message):
    with pytest.raises(ValueError, match=message):
        subsets.stratified_subset(labels, fraction, seed)


def test_subset_view_rejects_out_of_range_indices():
    with pytest.raises(ValueError, match=r"must lie in \[0, 4\)"):
        subsets.Subset([{}] * 4, np.array([0, 4]))
