"""The hand-written backward pass of bigru.recurrence against autodiff and finite differences.

The reference is the formulation the recurrence replaced: a ``lax.scan`` of ``gru_update`` steps
differentiated by JAX, which accumulates the ``w_hh`` gradient step by step.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.test_util import check_grads

from skel_jax.models import bigru

T, D, N, H = 6, 2, 3, 8


def reference_recurrence(gi, w_hh, b_hh):
    """bigru.recurrence as a plain scan, for reverse-mode autodiff."""

    def step(h, gi_t):
        gh = jnp.einsum(
            "dnh,dhg->dng", h.astype(w_hh.dtype), w_hh, preferred_element_type=gi.dtype
        ) + b_hh
        h = bigru.gru_update(gi_t, gh, h)
        return h, h

    h0 = jnp.zeros((gi.shape[1], gi.shape[2], w_hh.shape[1]), gi.dtype)
    return jax.lax.scan(step, h0, gi)[1]


def _inputs(seed, dtype=np.float32, compute_dtype=None):
    rng = np.random.default_rng(seed)
    gi = jnp.asarray(rng.normal(size=(T, D, N, 3 * H)), dtype)
    w_hh = jnp.asarray(rng.normal(size=(D, H, 3 * H)) / np.sqrt(H), compute_dtype or dtype)
    b_hh = jnp.asarray(rng.normal(size=(D, 1, 3 * H)), dtype)
    dstates = jnp.asarray(rng.normal(size=(T, D, N, H)), dtype)
    return (gi, w_hh, b_hh), dstates


def _vjp(fn, args, cotangent):
    out, vjp = jax.vjp(fn, *args)
    return out, vjp(cotangent)


def test_forward_equals_reference_scan():
    args, _ = _inputs(0)
    np.testing.assert_array_equal(bigru.recurrence(*args), reference_recurrence(*args))


def test_gradients_match_autodiff_of_reference_scan():
    args, dstates = _inputs(1)
    _, grads = _vjp(bigru.recurrence, args, dstates)
    _, expected = _vjp(reference_recurrence, args, dstates)
    for name, grad, ref in zip(("gi", "w_hh", "b_hh"), grads, expected):
        assert grad.shape == ref.shape and grad.dtype == ref.dtype, name
        np.testing.assert_allclose(grad, ref, rtol=1e-5, atol=1e-5, err_msg=name)


def test_bfloat16_operands_give_close_gradients_in_their_dtypes():
    # The state gradient and the w_hh gradient round their matmul operands to bfloat16 (2^-9
    # relative each), as autodiff does, so both sides agree to a few bfloat16 units.
    args, dstates = _inputs(2, compute_dtype=jnp.bfloat16)
    _, grads = _vjp(bigru.recurrence, args, dstates)
    _, expected = _vjp(reference_recurrence, args, dstates)
    for name, grad, ref in zip(("gi", "w_hh", "b_hh"), grads, expected):
        assert grad.dtype == ref.dtype, name
        grad, ref = np.asarray(grad, np.float32), np.asarray(ref, np.float32)
        assert np.abs(grad - ref).max() <= 2.0**-6 * np.abs(ref).max(), name


def test_gradients_match_finite_differences_in_float64():
    with jax.enable_x64(True):
        args, _ = _inputs(3, dtype=np.float64)
        check_grads(bigru.recurrence, args, order=1, modes=["rev"], atol=1e-6, rtol=1e-6)


def _tiny_model(mode, dtype):
    return bigru.BiGRU(rngs=nnx.Rngs(4), dtype=dtype, param_dtype=dtype, input_size=24,
                       hidden_size=H, num_layers=3, mode=mode)


def _model_loss(model, dtype):
    graphdef, params = nnx.split(model, nnx.Param)
    weights = jnp.asarray(np.random.default_rng(5).normal(size=(N, 2 * H)), dtype)

    def loss(params, x):
        return jnp.sum(jnp.sin(nnx.merge(graphdef, params)(x)) * weights)

    return loss, params


@pytest.mark.parametrize("mode", bigru.MODES)
def test_model_gradients_match_autodiff_of_reference_scan(mode, monkeypatch):
    x = jnp.asarray(np.random.default_rng(6).normal(size=(N, T, 2, 4, 3)), jnp.float32)
    loss, params = _model_loss(_tiny_model(mode, jnp.float32), jnp.float32)
    grads = jax.grad(loss, argnums=(0, 1))(params, x)
    monkeypatch.setattr(bigru, "recurrence", reference_recurrence)
    expected = jax.grad(loss, argnums=(0, 1))(params, x)
    for (path, grad), ref in zip(jax.tree_util.tree_leaves_with_path(grads),
                                 jax.tree.leaves(expected)):
        np.testing.assert_allclose(grad, ref, rtol=1e-5, atol=1e-6,
                                   err_msg=jax.tree_util.keystr(path))


@pytest.mark.parametrize("mode", bigru.MODES)
def test_model_gradients_match_finite_differences_in_float64(mode):
    with jax.enable_x64(True):
        x = jnp.asarray(np.random.default_rng(7).normal(size=(N, T, 2, 4, 3)), jnp.float64)
        loss, params = _model_loss(_tiny_model(mode, jnp.float64), jnp.float64)
        check_grads(loss, (params, x), order=1, modes=["rev"], atol=1e-6, rtol=1e-6)
