"""ISC loss, queues and momentum update against float64 NumPy (method.md §5)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from skel_jax import contrastive


def _unit(rng, *shape):
    x = rng.normal(size=shape)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _np_ce(q, k, queue, tau):
    """CE([q.k, q.Q]/tau, 0) and the accuracy, written out in float64."""
    logits = np.concatenate([np.sum(q * k, 1, keepdims=True), q @ queue.T], 1) / tau
    m = logits.max(1, keepdims=True)
    lse = np.log(np.exp(logits - m).sum(1)) + m[:, 0]
    return np.mean(lse - logits[:, 0]), np.mean(logits[:, 0] > logits[:, 1:].max(1))


def test_l2_normalize_matches_torch_semantics():
    x = jnp.array([[3.0, 4.0], [0.0, 0.0]])
    np.testing.assert_allclose(contrastive.l2_normalize(x), [[0.6, 0.8], [0.0, 0.0]])
    assert contrastive.l2_normalize(x.astype(jnp.bfloat16)).dtype == jnp.float32


def test_nce_logits_layout():
    rng = np.random.default_rng(0)
    q, k, queue = _unit(rng, 4, 8), _unit(rng, 4, 8), _unit(rng, 16, 8)
    logits = contrastive.nce_logits(jnp.array(q), jnp.array(k), jnp.array(queue), 0.07)
    assert logits.shape == (4, 17)
    np.testing.assert_allclose(logits[:, 0], np.sum(q * k, 1) / 0.07, rtol=1e-5)
    np.testing.assert_allclose(logits[:, 1:], q @ queue.T / 0.07, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("intra_weight", [0.0, 0.5])
def test_inter_loss_matches_numpy(intra_weight):
    rng = np.random.default_rng(1)
    n, d, size, tau = 6, 16, 24, 0.07
    q, r, k, l = (_unit(rng, n, d) for _ in range(4))
    queue1, queue2 = _unit(rng, size, d), _unit(rng, size, d)
    loss, metrics = contrastive.isc_loss(
        {"seq": jnp.array(q), "graph": jnp.array(r)}, {"seq": jnp.array(k), "graph": jnp.array(l)},
        {"seq": jnp.array(queue1), "graph": jnp.array(queue2)}, tau, intra_weight)
    ce_ql, acc_ql = _np_ce(q, l, queue2, tau)
    ce_rk, acc_rk = _np_ce(r, k, queue1, tau)
    expected = ce_ql + ce_rk + intra_weight * (_np_ce(q, k, queue1, tau)[0]
                                              + _np_ce(r, l, queue2, tau)[0])
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(metrics["loss_seq_graph"], ce_ql, rtol=1e-5)
    np.testing.assert_allclose(metrics["acc_graph_seq"], acc_rk)
    assert ("loss_seq_seq" in metrics) == bool(intra_weight)


def test_intra_loss_and_accuracy_on_a_hand_worked_case():
    # Two queries; the first matches its positive, the second is closer to a negative.
    q = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    k = jnp.array([[1.0, 0.0], [1.0, 0.0]])
    queue = jnp.array([[0.0, 1.0], [-1.0, 0.0]])
    loss, metrics = contrastive.isc_loss({"graph": q}, {"graph": k}, {"graph": queue}, 1.0)
    # Logits: row 0 = [1, 0, -1]; row 1 = [0, 1, 0].
    ce0 = np.log(np.e + 1 + np.exp(-1)) - 1
    ce1 = np.log(1 + np.e + 1)
    np.testing.assert_allclose(loss, (ce0 + ce1) / 2, rtol=1e-6)
    assert float(metrics["acc_graph_graph"]) == 0.5
    # Cosines: positives 1 and 0; negatives 0, -1, 1, 0.
    np.testing.assert_allclose(metrics["pos_graph_graph"], 0.5, atol=1e-7)
    np.testing.assert_allclose(metrics["neg_graph_graph"], 0.0, atol=1e-7)


def test_cosine_metrics_match_numpy():
    rng = np.random.default_rng(3)
    q, r, k, l = (_unit(rng, 5, 8) for _ in range(4))
    queue1, queue2 = _unit(rng, 10, 8), _unit(rng, 10, 8)
    _, metrics = contrastive.isc_loss(
        {"seq": jnp.array(q), "graph": jnp.array(r)}, {"seq": jnp.array(k), "graph": jnp.array(l)},
        {"seq": jnp.array(queue1), "graph": jnp.array(queue2)}, 0.2)
    np.testing.assert_allclose(metrics["pos_seq_graph"], np.mean(np.sum(q * l, 1)), atol=1e-6)
    np.testing.assert_allclose(metrics["neg_seq_graph"], np.mean(q @ queue2.T), atol=1e-6)
    np.testing.assert_allclose(metrics["pos_graph_seq"], np.mean(np.sum(r * k, 1)), atol=1e-6)
    np.testing.assert_allclose(metrics["neg_graph_seq"], np.mean(r @ queue1.T), atol=1e-6)
    for rep, x in (("seq", q), ("graph", r)):
        x64 = x.astype(np.float64)
        gram = x64 @ x64.T
        want = (gram.sum() - np.trace(gram)) / (5 * 4)
        np.testing.assert_allclose(metrics[f"batch_cos_{rep}"], want, atol=1e-6)


def test_mean_pairwise_cosine_hand_worked_cases():
    eye = jnp.eye(4, 6)
    assert float(contrastive.mean_pairwise_cosine(eye)) == 0.0  # orthonormal rows
    same = jnp.tile(jnp.array([[0.6, 0.8]]), (3, 1))
    np.testing.assert_allclose(contrastive.mean_pairwise_cosine(same), 1.0, rtol=1e-6)
    # Rows e1, e1, -e1: pairs (1,2) +1, (1,3) -1, (2,3) -1, each twice: (2 - 4) / 6.
    mixed = jnp.array([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    np.testing.assert_allclose(contrastive.mean_pairwise_cosine(mixed), -1.0 / 3.0, rtol=1e-6)
    assert float(contrastive.mean_pairwise_cosine(jnp.array([[1.0, 0.0]]))) == 0.0


def test_a_collapsed_model_scores_zero_accuracy():
    same = jnp.ones((4, 8)) / jnp.sqrt(8.0)
    loss, accuracy = contrastive.nce_loss(contrastive.nce_logits(same, same, jnp.tile(same, (4, 1)),
                                                                 0.07))
    np.testing.assert_allclose(loss, np.log(17), rtol=1e-5)
    assert float(accuracy) == 0.0


def test_gradient_flows_only_into_queries():
    rng = np.random.default_rng(2)
    q, k, queue = (jnp.array(_unit(rng, *s)) for s in ((3, 4), (3, 4), (6, 4)))
    grads = jax.grad(lambda q, k, queue: contrastive.nce_loss(
        contrastive.nce_logits(q, k, queue, 0.1))[0], argnums=(0, 1, 2))(q, k, queue)
    assert float(jnp.abs(grads[0]).sum()) > 0
    assert float(jnp.abs(grads[1]).sum()) == 0 and float(jnp.abs(grads[2]).sum()) == 0


def _original_fifo(queue, ptr, keys):
    """The original's ``Queue[:, ptr:ptr + B] = keys.T`` on a (K, D) queue."""
    queue = queue.copy()
    queue[ptr:ptr + len(keys)] = keys
    return queue, (ptr + len(keys)) % len(queue)


def test_enqueue_is_the_original_fifo_in_batch_major_order():
    rng = np.random.default_rng(3)
    size, batch = 12, 3
    original = rng.normal(size=(size, 2))
    ours = contrastive.from_original_order(jnp.array(original), batch)
    ptr_original, ptr = 0, jnp.int32(0)
    for _ in range(6):  # Wraps around the queue twice.
        keys = rng.normal(size=(batch, 2))
        original, ptr_original = _original_fifo(original, ptr_original, keys)
        ours, ptr = contrastive.enqueue(ours, ptr, jnp.array(keys))
        assert int(ptr) == ptr_original
        np.testing.assert_allclose(ours, contrastive.from_original_order(
            jnp.array(original), batch), rtol=1e-6)


def test_batch_position_b_owns_a_contiguous_block():
    # With the queue sharded along K over n devices, device i holds rows of batch positions
    # [i * B / n, (i + 1) * B / n): its own rows of a batch sharded the same way.
    size, batch = 16, 4
    keys = jnp.arange(1, batch + 1, dtype=jnp.float32)[:, None] * jnp.ones((1, 2))
    queue, _ = contrastive.enqueue(jnp.zeros((size, 2)), jnp.int32(8), keys)
    rows_per_position = size // batch
    for b in range(batch):
        block = np.asarray(queue[b * rows_per_position:(b + 1) * rows_per_position, 0])
        assert set(block) == {0.0, b + 1.0}


def test_enqueue_rejects_sizes_that_do_not_divide():
    with pytest.raises(ValueError, match="queue size \\(10\\) must be a multiple of the batch"):
        contrastive.enqueue(jnp.zeros((10, 2)), jnp.int32(0), jnp.zeros((4, 2)))


def test_momentum_update():
    key = {"a": jnp.array([1.0, 2.0]), "b": {"c": jnp.array(4.0)}}
    query = {"a": jnp.array([3.0, 0.0]), "b": {"c": jnp.array(0.0)}}
    out = contrastive.momentum_update(key, query, 0.75)
    np.testing.assert_allclose(out["a"], [1.5, 1.5])
    np.testing.assert_allclose(out["b"]["c"], 3.0)
