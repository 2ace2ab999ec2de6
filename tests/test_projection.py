"""Tests of skel_jax.projection: PCA and t-SNE against float64 NumPy computations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from skel_jax import projection


def test_pca_matches_the_covariance_eigenvectors():
    rng = np.random.default_rng(0)
    features = rng.standard_normal((40, 6)) @ np.diag([5.0, 3.0, 1.0, 0.5, 0.2, 0.1]) + 7.0
    got = projection.pca_2d(features)
    assert got.shape == (40, 2) and got.dtype == np.float64
    centred = features - features.mean(axis=0)
    values, vectors = np.linalg.eigh(np.cov(centred, rowvar=False))
    top = vectors[:, np.argsort(values)[::-1][:2]]
    want = centred @ top
    for axis in range(2):
        # Equal up to sign; the sign makes the largest loading positive.
        sign = np.sign(top[np.argmax(np.abs(top[:, axis])), axis])
        np.testing.assert_allclose(got[:, axis], sign * want[:, axis], rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(got.mean(axis=0), 0.0, atol=1e-9)


@pytest.mark.parametrize("shape", [(1, 4), (5, 1), (5,)])
def test_pca_errors(shape):
    with pytest.raises(ValueError, match="at least 2 features of at least 2 dimensions"):
        projection.pca_2d(np.ones(shape))


def test_squared_distances():
    x = np.random.default_rng(1).standard_normal((7, 3))
    want = np.array([[np.sum((a - b) ** 2) for b in x] for a in x])
    got = projection.squared_distances(x)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert np.all(np.diag(got) == 0)


@pytest.mark.parametrize("perplexity", [2.0, 5.0, 15.0])
def test_affinity_rows_have_the_perplexity_asked_for(perplexity):
    x = np.random.default_rng(2).standard_normal((30, 5)) * [1, 2, 3, 4, 5]
    p = projection.conditional_affinities(projection.squared_distances(x), perplexity)
    assert p.dtype == np.float64 and p.shape == (30, 30)
    assert np.all(np.diag(p) == 0)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
    entropy = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=1)
    np.testing.assert_allclose(np.exp(entropy), perplexity, rtol=1e-6)
    # Each row is a Gaussian of the distances: log p falls linearly in the squared distance.
    d = projection.squared_distances(x)[0, 1:]
    slope = np.polyfit(d, np.log(p[0, 1:]), 1)[0]
    np.testing.assert_allclose(np.log(p[0, 1:]), np.log(p[0, 1]) + slope * (d - d[0]),
                               atol=1e-8)


def test_joint_affinities_are_symmetric_and_sum_to_one():
    x = np.random.default_rng(3).standard_normal((12, 4))
    p = projection.joint_affinities(x, 3.0)
    np.testing.assert_allclose(p, p.T, atol=0)
    np.testing.assert_allclose(p.sum(), 1.0, rtol=1e-12)
    # Two points: each is the other's only neighbour.
    np.testing.assert_allclose(
        projection.conditional_affinities(np.array([[0.0, 1.0], [1.0, 0.0]]), 0.5),
        [[0, 1], [1, 0]])


def _numpy_tsne_gradient(y, p, exaggeration):
    """t-SNE's gradient 4 sum_j (a p_ij - q_ij) w_ij (y_i - y_j), in float64."""
    diff = y[:, None, :] - y[None, :, :]
    w = 1.0 / (1.0 + np.sum(diff ** 2, axis=-1))
    np.fill_diagonal(w, 0.0)
    q = w / w.sum()
    return 4.0 * np.sum(((exaggeration * p - q) * w)[:, :, None] * diff, axis=1)


@pytest.mark.parametrize("exaggeration", [1.0, 12.0])
def test_objective_gradient_is_the_tsne_gradient(exaggeration):
    rng = np.random.default_rng(4)
    p = projection.joint_affinities(rng.standard_normal((9, 5)), 3.0)
    y = rng.standard_normal((9, 2))
    got = jax.grad(projection.objective)(jnp.asarray(y, jnp.float32), jnp.asarray(p, jnp.float32),
                                          exaggeration)
    np.testing.assert_allclose(np.asarray(got), _numpy_tsne_gradient(y, p, exaggeration),
                               rtol=2e-4, atol=1e-6)


def test_kl_divergence_matches_numpy():
    rng = np.random.default_rng(5)
    p = projection.joint_affinities(rng.standard_normal((8, 3)), 2.5)
    y = rng.standard_normal((8, 2))
    w = 1.0 / (1.0 + projection.squared_distances(y))
    np.fill_diagonal(w, 0.0)
    q = w / w.sum()
    off = ~np.eye(8, dtype=bool)
    want = np.sum(p[off] * np.log(p[off] / q[off]))
    got = projection.kl_divergence(jnp.asarray(y, jnp.float32), jnp.asarray(p, jnp.float32))
    np.testing.assert_allclose(float(got), want, rtol=1e-4)


def test_tsne_separates_clusters_deterministically():
    rng = np.random.default_rng(6)
    centres = rng.normal(0.0, 6.0, (4, 10))
    x = np.concatenate([c + rng.standard_normal((40, 10)) for c in centres])
    labels = np.repeat(np.arange(4), 40)
    p = projection.joint_affinities(x, 15.0)
    y = projection.tsne_2d(x, perplexity=15.0)
    assert y.shape == (160, 2) and y.dtype == np.float64 and np.all(np.isfinite(y))
    d = projection.squared_distances(y)
    np.fill_diagonal(d, np.inf)
    assert np.mean(labels[d.argmin(axis=1)] == labels) == 1.0
    # The optimisation lowers KL(P || Q) far below its value at the (tiny) PCA start.
    start = projection.pca_2d(x) * 1e-4 / np.std(projection.pca_2d(x)[:, 0])
    as_jax = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    assert (float(projection.kl_divergence(as_jax(y), as_jax(p)))
            < 0.5 * float(projection.kl_divergence(as_jax(start), as_jax(p))))
    np.testing.assert_array_equal(y, projection.tsne_2d(x, perplexity=15.0))


@pytest.mark.parametrize("perplexity", [0.0, 9.0, 20.0])
def test_tsne_rejects_a_perplexity_the_points_cannot_have(perplexity):
    x = np.random.default_rng(7).standard_normal((10, 3))
    with pytest.raises(ValueError, match=r"perplexity must be in \(0, N - 1\) = \(0, 9\)"):
        projection.tsne_2d(x, perplexity=perplexity)
