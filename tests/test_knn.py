"""Tests of skel_jax.evaluation.knn against a NumPy brute force."""

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from skel_jax import sharding
from skel_jax.evaluation import knn


def brute_force_knn(train, train_labels, test, k):
    """Float64 cosine k-NN: stable ranking by similarity, majority vote, ties to the nearest."""
    train = train / np.maximum(np.linalg.norm(train, axis=1, keepdims=True), 1e-12)
    test = test / np.maximum(np.linalg.norm(test, axis=1, keepdims=True), 1e-12)
    predictions = []
    for row in test.astype(np.float64) @ train.astype(np.float64).T:
        ranked = [int(train_labels[i]) for i in np.argsort(-row, kind="stable")[:k]]
        votes = collections.Counter(ranked)
        best = max(votes.values())
        # The first label in rank order among those with the most votes.
        predictions.append(next(label for label in ranked if votes[label] == best))
    return np.array(predictions)


@pytest.fixture(scope="module")
def mesh():
    return sharding.make_mesh()


def test_l2_normalize_matches_numpy_and_keeps_zero_rows():
    x = np.random.default_rng(0).standard_normal((5, 7)).astype(np.float32)
    x[2] = 0.0
    got = np.asarray(knn.l2_normalize(jnp.asarray(x)))
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    want = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    assert got.dtype == np.float32 and got.shape == x.shape
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert np.all(got[2] == 0.0)


@pytest.mark.parametrize("chunk_size", [1024, 5])
def test_matches_brute_force_on_random_features(mesh, chunk_size):
    rng = np.random.default_rng(1)
    train = rng.standard_normal((60, 16)).astype(np.float32)
    train_labels = rng.integers(0, 6, 60)
    test = rng.standard_normal((37, 16)).astype(np.float32)
    ks = (1, 2, 4, 7, 10)
    got = knn.knn_predict(train, train_labels, test, ks, 6, mesh=mesh, chunk_size=chunk_size)
    assert sorted(got) == list(ks)
    for k in ks:
        assert got[k].shape == (37,) and got[k].dtype == np.int32
        np.testing.assert_array_equal(got[k], brute_force_knn(train, train_labels, test, k))


def test_vote_ties_go_to_the_nearest_tied_label():
    # Ranked neighbour labels, nearest first, hand-worked:
    neighbours = np.array([
        [3, 1],           # 1-1 tie: nearest (3) wins.
        [1, 3, 3, 1],     # 2-2 tie: 1 ranks first.
        [2, 0, 0, 2],     # 2-2 tie: 2 ranks first.
        [0, 2, 2, 1],     # 2 has the majority although 0 is nearest.
    ], dtype=object)
    expected = [3, 1, 2, 2]
    for row, want in zip(neighbours, expected):
        got = knn.majority_vote(jnp.asarray([row], jnp.int32), 4)
        assert got.dtype == jnp.int32 and got.shape == (1,)
        assert int(got[0]) == want


def test_equal_similarities_rank_the_lower_training_index_first(mesh):
    # Rows 0 and 1 are the same vector with different labels; so are rows 2 and 3.
    base = np.eye(4, dtype=np.float32)
    train = np.stack([base[0], base[0], base[1], base[1]])
    train_labels = np.array([2, 1, 0, 3])
    test = np.stack([base[0], base[1], base[0] + 0.5 * base[1]]).astype(np.float32)
    got = knn.knn_predict(train, train_labels, test, (1, 2, 3), 4, mesh=mesh)
    np.testing.assert_array_equal(got[1], [2, 0, 2])
    np.testing.assert_array_equal(got[2], [2, 0, 2])  # 1-1 ties go to the nearest.
    # k=3 on test 2: neighbours 0, 1 (sim 0.894) then 2 (0.447): labels 2, 1, 0 -> 2.
    np.testing.assert_array_equal(got[3], [2, 0, 2])
    for k in (1, 2, 3):
        np.testing.assert_array_equal(got[k], brute_force_knn(train, train_labels, test, k))


def test_predictions_do_not_depend_on_the_device_count():
    rng = np.random.default_rng(2)
    train = rng.standard_normal((30, 8)).astype(np.float32)
    labels = rng.integers(0, 3, 30)
    test = rng.standard_normal((11, 8)).astype(np.float32)
    one = knn.knn_predict(train, labels, test, (3,), 3, mesh=sharding.make_mesh(jax.devices()[:1]))
    eight = knn.knn_predict(train, labels, test, (3,), 3, mesh=sharding.make_mesh())
    np.testing.assert_array_equal(one[3], eight[3])


@pytest.mark.parametrize("kwargs, message", [
    (dict(train=np.zeros((4, 3)), test=np.zeros((2, 5))), "differ in size"),
    (dict(train=np.zeros((4,)),), "must be 2-D"),
    (dict(train_labels=np.zeros(3, int)), "train_labels must have shape"),
    (dict(ks=(5,)), "exceeds the 4 training features"),
    (dict(ks=(0,)), "positive integers"),
    (dict(ks=()), "positive integers"),
    (dict(train_labels=np.array([0, 1, 2, 7])), r"must lie in \[0, 3\)"),
])
def test_errors(mesh, kwargs, message):
    args = dict(train=np.ones((4, 3), np.float32), train_labels=np.array([0, 1, 2, 0]),
                test=np.ones((2, 3), np.float32), ks=(1,))
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        knn.knn_predict(args["train"], args["train_labels"], args["test"], args["ks"], 3,
                        mesh=mesh)
