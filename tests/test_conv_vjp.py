"""The hand-written gradients of conv_vjp.temporal_conv against float64 NumPy transcriptions.

The forward pass is PyTorch's Conv2d with a (K, 1) kernel (see tests/test_layers.py). Its
gradients are written here as the adjoint of that loop: every output frame t reads input frames
stride * t + k - padding, so it sends dy[t] @ w[k].T back to them and x[stride * t + k - padding]
x dy[t] to the kernel tap k.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax

from skel_jax.models import conv_vjp
from skel_jax.models.layers import TemporalConv


def np_conv_grads(x, kernel, dy, stride, padding):
    """(dx, dkernel) of y[b, t] = sum_k xpad[b, stride * t + k] @ kernel[k], in float64."""
    x, kernel, dy = (np.asarray(a, np.float64) for a in (x, kernel, dy))
    taps = kernel.shape[0]
    dx_padded = np.zeros((x.shape[0], x.shape[1] + 2 * padding, *x.shape[2:]))
    x_padded = np.pad(x, ((0, 0), (padding, padding), (0, 0), (0, 0)))
    dkernel = np.zeros_like(kernel)
    for t in range(dy.shape[1]):
        for k in range(taps):
            frame = stride * t + k
            dx_padded[:, frame] += dy[:, t] @ kernel[k].T
            dkernel[k] += np.einsum("bvc,bvo->co", x_padded[:, frame], dy[:, t])
    return dx_padded[:, padding:padding + x.shape[1]], dkernel


def _inputs(frames, channels, out_channels, taps, stride, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3, frames, 5, channels)).astype(np.float32)
    kernel = rng.normal(size=(taps, channels, out_channels)).astype(np.float32)
    out_frames = (frames + 2 * ((taps - 1) // 2) - taps) // stride + 1
    dy = rng.normal(size=(3, out_frames, 5, out_channels)).astype(np.float32)
    return x, kernel, dy


@pytest.mark.parametrize("frames,taps,stride", [
    (12, 9, 1), (12, 9, 2), (13, 9, 2), (11, 9, 3), (7, 3, 2), (10, 1, 1), (10, 1, 2), (9, 1, 3),
])
def test_gradients_match_numpy_adjoint(frames, taps, stride):
    padding = (taps - 1) // 2
    x, kernel, dy = _inputs(frames, 4, 6, taps, stride)
    _, vjp = jax.vjp(lambda x, w: conv_vjp.temporal_conv(x, w, stride, padding),
                     jnp.asarray(x), jnp.asarray(kernel))
    dx, dkernel = vjp(jnp.asarray(dy))
    ref_dx, ref_dkernel = np_conv_grads(x, kernel, dy, stride, padding)
    np.testing.assert_allclose(np.asarray(dx), ref_dx, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(dkernel), ref_dkernel, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("frames,taps,stride", [(12, 9, 2), (10, 1, 2)])
def test_autodiff_gradients_of_other_platforms_match_numpy_adjoint(frames, taps, stride):
    padding = (taps - 1) // 2
    x, kernel, dy = _inputs(frames, 4, 6, taps, stride)
    dx, dkernel = conv_vjp.autodiff_grads(jnp.asarray(x), jnp.asarray(kernel), jnp.asarray(dy),
                                          stride, padding)
    ref_dx, ref_dkernel = np_conv_grads(x, kernel, dy, stride, padding)
    np.testing.assert_allclose(np.asarray(dx), ref_dx, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(dkernel), ref_dkernel, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("taps,stride", [(9, 1), (9, 2), (1, 2)])
def test_forward_equals_lax_convolution(taps, stride):
    padding = (taps - 1) // 2
    x, kernel, _ = _inputs(10, 4, 6, taps, stride)
    expected = lax.conv_general_dilated(x, kernel[:, None], (stride, 1),
                                        ((padding, padding), (0, 0)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(
        np.asarray(conv_vjp.temporal_conv(jnp.asarray(x), jnp.asarray(kernel), stride, padding)),
        np.asarray(expected), rtol=1e-5, atol=1e-5)


def test_kernel_gradient_spans_several_unfold_blocks(monkeypatch):
    # A tiny block budget forces one product per output frame; the sum must not change.
    x, kernel, dy = _inputs(12, 4, 6, 9, 2)
    whole = conv_vjp.kernel_grad(jnp.asarray(x), jnp.asarray(dy), 9, 2, 4)
    monkeypatch.setattr(conv_vjp, "_UNFOLD_BLOCK_BYTES", 1)
    blocked = conv_vjp.kernel_grad(jnp.asarray(x), jnp.asarray(dy), 9, 2, 4)
    np.testing.assert_allclose(np.asarray(blocked), np.asarray(whole), rtol=1e-5, atol=1e-5)
    _, ref_dkernel = np_conv_grads(x, kernel, dy, 2, 4)
    np.testing.assert_allclose(np.asarray(blocked), ref_dkernel, rtol=1e-5, atol=1e-4)


def test_temporal_conv_module_gradients_under_jit():
    conv = TemporalConv(4, 6, kernel_size=9, stride=2, rngs=nnx.Rngs(0))
    x, _, dy = _inputs(12, 4, 6, 9, 2)
    graphdef, params = nnx.split(conv, nnx.Param)

    def objective(params, x):
        return jnp.sum(nnx.merge(graphdef, params)(x) * dy)

    grads = jax.jit(jax.grad(objective, argnums=(0, 1)))(params, jnp.asarray(x))
    ref_dx, ref_dkernel = np_conv_grads(x, np.asarray(conv.kernel[...]), dy, 2, 4)
    np.testing.assert_allclose(np.asarray(grads[1]), ref_dx, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(grads[0]["kernel"][...]), ref_dkernel, rtol=1e-5,
                               atol=1e-4)
    np.testing.assert_allclose(np.asarray(grads[0]["bias"][...]),
                               dy.astype(np.float64).sum(axis=(0, 1, 2)), rtol=1e-5, atol=1e-4)


def test_bfloat16_gradients_keep_the_input_dtypes_and_stay_close():
    x, kernel, dy = _inputs(12, 4, 6, 9, 2)
    _, vjp = jax.vjp(lambda x, w: conv_vjp.temporal_conv(x, w, 2, 4),
                     jnp.asarray(x, jnp.bfloat16), jnp.asarray(kernel, jnp.bfloat16))
    dx, dkernel = vjp(jnp.asarray(dy, jnp.bfloat16))
    assert dx.dtype == dkernel.dtype == jnp.bfloat16
    ref_dx, ref_dkernel = np_conv_grads(x, kernel, dy, 2, 4)
    np.testing.assert_allclose(np.asarray(dx, np.float32), ref_dx, rtol=0.05, atol=0.3)
    np.testing.assert_allclose(np.asarray(dkernel, np.float32), ref_dkernel, rtol=0.05, atol=0.5)
