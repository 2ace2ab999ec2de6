"""ISC's cross-contrastive objective (MoCo v2 style): NCE logits, losses, queues, momentum.

All pure functions of arrays. Queues are (K, D) with one L2-normalised key per row; under a
data-sharded mesh they are sharded along K, each device writing its own keys into its own block
(see ``enqueue`` for the layout), while the logits see every negative.
"""

import jax
import jax.numpy as jnp


def l2_normalize(x: jax.Array, axis: int = -1, eps: float = 1e-12) -> jax.Array:
    """``x / max(||x||, eps)``, as PyTorch's ``F.normalize``; computed in float32 at least."""
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    norm = jnp.sqrt(jnp.sum(x * x, axis=axis, keepdims=True))
    return x / jnp.maximum(norm, eps)


def nce_logits(query: jax.Array, positive: jax.Array, queue: jax.Array,
               temperature: float) -> jax.Array:
    """The (K+1)-way logits ``[q.k+, q.Q] / tau``; column 0 is the positive.

    Args:
      query: (N, D) normalised queries.
      positive: (N, D) normalised positive keys (no gradient flows into them).
      queue: (K, D) normalised negatives.
      temperature: tau.

    Returns:
      (N, 1 + K) logits.
    """
    positive = jax.lax.stop_gradient(positive)
    queue = jax.lax.stop_gradient(queue)
    l_pos = jnp.sum(query * positive, axis=-1, keepdims=True)
    l_neg = query @ queue.T
    return jnp.concatenate([l_pos, l_neg], axis=1) / temperature


def nce_loss(logits: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Cross-entropy towards column 0, and the top-1 accuracy of picking it.

    A tie with a negative counts as a miss: a collapsed model, whose logits are all equal, must
    not look accurate.
    """
    loss = jnp.mean(jax.nn.logsumexp(logits, axis=1) - logits[:, 0])
    accuracy = jnp.mean(logits[:, 0] > jnp.max(logits[:, 1:], axis=1))
    return loss, accuracy


def isc_loss(queries: dict[str, jax.Array], keys: dict[str, jax.Array],
             queues: dict[str, jax.Array], temperature: float,
             intra_weight: float = 0.0) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The inter-skeleton (two representations) or intra-skeleton (one) ISC loss.

    With representations (s1, s2), queries q = f_q(s1(v1)), r = f_r(s2(v1)) and keys
    k = f_k(s1(v2)), l = f_l(s2(v2)):
    L = CE([q.l, q.Q2]/tau) + CE([r.k, r.Q1]/tau) (+ intra_weight * (CE([q.k, q.Q1]/tau)
    + CE([r.l, r.Q2]/tau))). With one representation: L = CE([q.k, q.Q]/tau).

    Args:
      queries: {rep: (N, D)} normalised query projections.
      keys: {rep: (N, D)} normalised key projections.
      queues: {rep: (K, D)} negatives of each representation.
      temperature: tau.
      intra_weight: weight of the intra terms added to the inter-skeleton loss.

    Returns:
      The loss and metrics for each term (query of a, positive and negatives of b):
      ``loss_<a>_<b>``, ``acc_<a>_<b>``, and the mean cosine of the query with its positive
      (``pos_<a>_<b>``) and with the negatives (``neg_<a>_<b>``); and per representation the
      mean cosine between two different queries of the batch (``batch_cos_<a>``). A collapsed
      embedding has ``batch_cos`` near 1 even while its output drifts away from the older keys
      in the queue, which keeps ``neg`` low and the accuracies high.
    """
    names = list(queries)
    if len(names) == 1:
        terms = [(names[0], names[0], 1.0)]
    else:
        a, b = names
        terms = [(a, b, 1.0), (b, a, 1.0)]
        if intra_weight:
            terms += [(a, a, intra_weight), (b, b, intra_weight)]
    total = jnp.zeros((), jnp.float32)
    metrics = {}
    for q_rep, k_rep, weight in terms:
        logits = nce_logits(queries[q_rep], keys[k_rep], queues[k_rep], temperature)
        loss, accuracy = nce_loss(logits)
        total = total + weight * loss
        metrics[f"loss_{q_rep}_{k_rep}"] = loss
        metrics[f"acc_{q_rep}_{k_rep}"] = accuracy
        metrics[f"pos_{q_rep}_{k_rep}"] = jnp.mean(logits[:, 0]) * temperature
        metrics[f"neg_{q_rep}_{k_rep}"] = jnp.mean(logits[:, 1:]) * temperature
    for rep in names:
        metrics[f"batch_cos_{rep}"] = mean_pairwise_cosine(queries[rep])
    metrics["loss"] = total
    return total, metrics


def mean_pairwise_cosine(x: jax.Array) -> jax.Array:
    """Mean of ``x_i . x_j`` over ordered pairs i != j of the (N, D) normalised rows; 0 if N = 1."""
    n = x.shape[0]
    total = jnp.sum(x, axis=0)
    # sum_{i != j} x_i.x_j = |sum_i x_i|^2 - sum_i |x_i|^2: O(N D), no N x N matrix.
    off_diagonal = jnp.sum(total * total) - jnp.sum(x * x)
    return off_diagonal / max(n * (n - 1), 1)


def enqueue(queue: jax.Array, ptr: jax.Array, keys: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Replaces the oldest batch of keys in a FIFO queue with a new batch.

    The queue is laid out batch-major: row ``b * (K // B) + s`` holds the key that batch
    position b wrote in slot s (slot = ptr // B). It holds exactly the keys the original's
    ``queue[:, ptr:ptr + B] = keys.T`` holds, in a fixed permutation of its order that does not
    depend on the device count: sharded along K over n devices (n dividing B), device i's block
    of rows is exactly where its own B/n batch rows go, so each device enqueues its own keys
    locally while the loss still sees every negative.

    Args:
      queue: (K, D).
      ptr: int32 scalar, keys enqueued so far modulo K (a multiple of the batch size B).
      keys: (B, D) with K a multiple of B.

    Returns:
      The new queue and pointer.
    """
    size, dim = queue.shape
    batch = keys.shape[0]
    if size % batch:
        raise ValueError(f"The queue size ({size}) must be a multiple of the batch size "
                         f"({batch}).")
    blocks = queue.reshape(batch, size // batch, dim)
    new = jax.lax.stop_gradient(keys).astype(queue.dtype)[:, None, :]
    slot = (ptr // batch).astype(jnp.int32)
    blocks = jax.lax.dynamic_update_slice(blocks, new, (jnp.int32(0), slot, jnp.int32(0)))
    return blocks.reshape(size, dim), ((ptr + batch) % size).astype(ptr.dtype)


def from_original_order(queue: jax.Array, batch_size: int) -> jax.Array:
    """Reorders a queue from the original's FIFO row order into ``enqueue``'s batch-major one.

    Args:
      queue: (K, D), row j = the original's ``Queue[:, j]``.
      batch_size: the global batch size B the queue was and will be filled with.

    Returns:
      (K, D) with row ``b * (K // B) + s`` = original row ``s * B + b``.
    """
    size, dim = queue.shape
    return queue.reshape(size // batch_size, batch_size, dim).transpose(1, 0, 2).reshape(size, dim)


def momentum_update(key_params, query_params, momentum: float):
    """theta_key <- m * theta_key + (1 - m) * theta_query, leaf by leaf."""
    return jax.tree.map(lambda k, q: momentum * k + (1.0 - momentum) * q,
                        key_params, query_params)
