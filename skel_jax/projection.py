"""Two-dimensional pictures of feature vectors: PCA and t-SNE.

``tsne_2d`` is exact t-SNE (van der Maaten and Hinton, 2008), O(N^2) in time and memory, meant
for the few thousand points a plot shows. The affinities are calibrated in float64 NumPy; the
embedding is optimised in float32 in one compiled JAX loop with the usual schedule (early exaggeration 12
for 250 steps, momentum 0.5 then 0.8, per-coordinate gains) and a PCA start, so the picture is
deterministic.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

_EXAGGERATION = 12.0
_EXAGGERATION_STEPS = 250
_MIN_GAIN = 0.01


def pca_2d(features: np.ndarray) -> np.ndarray:
    """Projections of centred features on their first two principal axes.

    Each axis is signed so that its largest-magnitude loading is positive, which makes the
    picture deterministic.

    Args:
      features: (N, d), N >= 2, d >= 2.

    Returns:
      float64 (N, 2).

    Raises:
      ValueError: fewer than two rows or columns.
    """
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or min(features.shape) < 2:
        raise ValueError(f"A 2-D projection needs at least 2 features of at least 2 dimensions; "
                         f"got shape {features.shape}.")
    centred = features - features.mean(axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    axes = axes[:2]
    signs = np.sign(axes[np.arange(2), np.argmax(np.abs(axes), axis=1)])
    return centred @ (axes * signs[:, None]).T


def squared_distances(features: np.ndarray) -> np.ndarray:
    """float64 (N, N) squared Euclidean distances, exactly 0 on the diagonal."""
    x = np.asarray(features, np.float64)
    norms = np.sum(x * x, axis=1)
    distances = np.maximum(norms[:, None] + norms[None, :] - 2.0 * x @ x.T, 0.0)
    np.fill_diagonal(distances, 0.0)
    return distances


def check_perplexity(perplexity: float, num_points: int) -> None:
    """Raises ValueError unless 0 < perplexity < num_points - 1, as t-SNE needs."""
    if not 0 < perplexity < num_points - 1:
        raise ValueError(f"perplexity must be in (0, N - 1) = (0, {num_points - 1}) for "
                         f"{num_points} points; got {perplexity}.")


def conditional_affinities(sq_distances: np.ndarray, perplexity: float, *,
                           iterations: int = 100) -> np.ndarray:
    """Rows p(j | i) of Gaussian affinities whose entropy is log(perplexity).

    Each row's precision is found by bisection on its logarithm, all rows at once.

    Args:
      sq_distances: (N, N) squared distances.
      perplexity: the effective number of neighbours, 0 < perplexity < N - 1.
      iterations: bisection steps; 100 resolve the precision to float64 accuracy.

    Returns:
      float64 (N, N), rows summing to 1, zero diagonal.

    Raises:
      ValueError: a perplexity outside (0, N - 1).
    """
    d = np.asarray(sq_distances, np.float64)
    n = d.shape[0]
    check_perplexity(perplexity, n)
    off_diagonal = ~np.eye(n, dtype=bool)
    # Shifting each row by its nearest neighbour's distance keeps exp() from underflowing.
    nearest = np.where(off_diagonal, d, np.inf).min(axis=1, keepdims=True)
    shifted = np.where(off_diagonal, d - nearest, 0.0)
    target = np.log(perplexity)
    low, high = np.full((n, 1), -50.0), np.full((n, 1), 50.0)  # log precision
    for _ in range(iterations):
        log_beta = (low + high) / 2
        p = np.where(off_diagonal, np.exp(-np.exp(log_beta) * shifted), 0.0)
        p /= p.sum(axis=1, keepdims=True)
        entropy = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=1,
                          keepdims=True)
        # Entropy falls as the precision grows.
        too_flat = entropy > target
        low, high = np.where(too_flat, log_beta, low), np.where(too_flat, high, log_beta)
    return p


def joint_affinities(features: np.ndarray, perplexity: float) -> np.ndarray:
    """The symmetric t-SNE affinities P = (P_cond + P_cond^T) / 2N: float64 (N, N), sum 1."""
    conditional = conditional_affinities(squared_distances(features), perplexity)
    return (conditional + conditional.T) / (2 * conditional.shape[0])


def _weights(y):
    d = jnp.sum((y[:, None, :] - y[None, :, :]) ** 2, axis=-1)
    return (1.0 - jnp.eye(y.shape[0], dtype=y.dtype)) / (1.0 + d)


def objective(y: jax.Array, p: jax.Array, exaggeration: float = 1.0) -> jax.Array:
    """-exaggeration * sum(P log W) + log sum(W), W the Student-t kernel of the embedding.

    With ``exaggeration`` 1 this is KL(P || Q) up to the constant sum(P log P); its gradient is
    t-SNE's 4 sum_j (exaggeration p_ij - q_ij) w_ij (y_i - y_j).
    """
    w = _weights(y)
    log_w = jnp.log(jnp.where(w > 0, w, 1.0))
    return -exaggeration * jnp.sum(p * log_w) + jnp.log(jnp.sum(w))


def kl_divergence(y: jax.Array, p: jax.Array) -> jax.Array:
    """KL(P || Q) of an embedding y (N, 2) for joint affinities p (N, N)."""
    safe_p = jnp.where(p > 0, p, 1.0)
    return jnp.sum(p * jnp.log(safe_p)) + objective(y, p)


@functools.partial(jax.jit, static_argnames="steps")
def _optimise(y, p, learning_rate, steps):
    grad = jax.grad(objective)

    def step(i, carry):
        y, update, gains = carry
        exaggerating = i < _EXAGGERATION_STEPS
        g = grad(y, p, jnp.where(exaggerating, _EXAGGERATION, 1.0))
        # Gains grow while a coordinate keeps descending the same way (the gradient opposes the
        # last update) and shrink when it turns.
        gains = jnp.maximum(jnp.where(update * g < 0, gains + 0.2, gains * 0.8), _MIN_GAIN)
        momentum = jnp.where(exaggerating, 0.5, 0.8)
        update = momentum * update - learning_rate * gains * g
        return y + update, update, gains

    y, _, _ = jax.lax.fori_loop(0, steps, step, (y, jnp.zeros_like(y), jnp.ones_like(y)))
    return y


def tsne_2d(features: np.ndarray, *, perplexity: float = 30.0, steps: int = 1000) -> np.ndarray:
    """A t-SNE embedding of the features in the plane.

    Args:
      features: (N, d), N >= 2, d >= 2.
      perplexity: the effective number of neighbours, 0 < perplexity < N - 1.
      steps: optimisation steps (the first 250 with early exaggeration).

    Returns:
      float64 (N, 2).

    Raises:
      ValueError: too few points or dimensions, or a perplexity outside (0, N - 1).
    """
    start = pca_2d(features)
    p = joint_affinities(features, perplexity)
    n = p.shape[0]
    # A tiny PCA start (std 1e-4 on the first axis) and the step size max(N / exaggeration / 4,
    # 50), as scikit-learn's defaults (after Belkina et al., 2019).
    start = start / max(np.std(start[:, 0]), 1e-12) * 1e-4
    learning_rate = max(n / _EXAGGERATION / 4, 50.0)
    y = _optimise(jnp.asarray(start, jnp.float32), jnp.asarray(p, jnp.float32), learning_rate,
                  steps)
    return np.asarray(y, np.float64)
