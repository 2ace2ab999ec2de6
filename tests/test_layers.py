"""Tests for skel_jax.models.layers against float64 NumPy transcriptions of PyTorch semantics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from skel_jax.models.layers import BatchNorm, SubsetConv, TemporalConv


def np_batch_norm(x, weight, bias, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """PyTorch BatchNorm on NC... input; returns (output, new running mean, new running var)."""
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    if training:
        mean = x.mean(axis=axes)
        var = x.var(axis=axes)
        n = x.size // x.shape[1]
        running_mean = (1 - momentum) * running_mean + momentum * mean
        running_var = (1 - momentum) * running_var + momentum * var * n / (n - 1)
    else:
        mean, var = running_mean, running_var
    y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    return y * weight.reshape(shape) + bias.reshape(shape), running_mean, running_var


def np_conv2d(x, weight, bias, stride=(1, 1), padding=(0, 0)):
    """PyTorch Conv2d (cross-correlation) on NCHW input with an (out, in, kh, kw) weight."""
    _, _, h, w = x.shape
    _, _, kh, kw = weight.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    ho = (h + 2 * padding[0] - kh) // stride[0] + 1
    wo = (w + 2 * padding[1] - kw) // stride[1] + 1
    out = np.zeros((x.shape[0], weight.shape[0], ho, wo))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i : i + stride[0] * (ho - 1) + 1 : stride[0],
                       j : j + stride[1] * (wo - 1) + 1 : stride[1]]
            out += np.einsum("nchw,oc->nohw", patch, weight[:, :, i, j])
    return out + bias[None, :, None, None]


def f64(v):
    return np.asarray(v[...], np.float64)


def randomized_batch_norm(num_features, seed, **kwargs):
    bn = BatchNorm(num_features, **kwargs)
    rng = np.random.default_rng(seed)
    bn.scale[...] = jnp.asarray(rng.uniform(0.5, 1.5, num_features), bn.scale[...].dtype)
    bn.bias[...] = jnp.asarray(rng.normal(size=num_features), bn.bias[...].dtype)
    bn.running_mean[...] = jnp.asarray(rng.normal(size=num_features), jnp.float32)
    bn.running_var[...] = jnp.asarray(rng.uniform(0.5, 2.0, num_features), jnp.float32)
    return bn


def to_nchw(x):
    """(B, T, V, C) channels-last -> PyTorch (B, C, T, V)."""
    return np.moveaxis(np.asarray(x, np.float64), -1, 1)


class Block(nnx.Module):
    def __init__(self):
        self.first = BatchNorm(3)
        self.inner = nnx.List([BatchNorm(4), BatchNorm(5)])


# ----------------------------------------------------------------------------- BatchNorm


@pytest.mark.parametrize("shape", [(6, 4), (3, 5, 7, 4)])
def test_batch_norm_training_matches_pytorch_and_updates_running_stats(shape):
    bn = randomized_batch_norm(4, seed=0)
    x = np.random.default_rng(1).normal(2.0, 3.0, shape).astype(np.float32)
    ref, ref_mean, ref_var = np_batch_norm(
        np.moveaxis(x.astype(np.float64), -1, 1), f64(bn.scale), f64(bn.bias),
        f64(bn.running_mean), f64(bn.running_var), training=True,
    )
    y = bn(jnp.asarray(x))
    assert y.shape == shape and y.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(y), np.moveaxis(ref, 1, -1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(f64(bn.running_mean), ref_mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(f64(bn.running_var), ref_var, rtol=1e-6, atol=1e-6)
    assert bn.running_mean[...].dtype == jnp.float32


def test_batch_norm_running_stats_follow_pytorch_momentum_over_steps():
    bn = BatchNorm(2)
    rng = np.random.default_rng(0)
    mean, var = np.zeros(2), np.ones(2)
    for _ in range(3):
        x = rng.normal(1.0, 2.0, (5, 2))
        bn(jnp.asarray(x, jnp.float32))
        mean = 0.9 * mean + 0.1 * x.mean(0)
        var = 0.9 * var + 0.1 * x.var(0, ddof=1)
    np.testing.assert_allclose(f64(bn.running_mean), mean, rtol=1e-5)
    np.testing.assert_allclose(f64(bn.running_var), var, rtol=1e-5)


def test_batch_norm_eval_uses_running_stats_and_leaves_them_unchanged():
    bn = randomized_batch_norm(4, seed=2, use_running_average=True)
    before = (f64(bn.running_mean), f64(bn.running_var))
    x = np.random.default_rng(3).normal(size=(2, 3, 4)).astype(np.float32)
    ref, _, _ = np_batch_norm(
        np.moveaxis(x.astype(np.float64), -1, 1), f64(bn.scale), f64(bn.bias), *before,
        training=False,
    )
    y = bn(jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(y), np.moveaxis(ref, 1, -1), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(f64(bn.running_mean), before[0])
    np.testing.assert_array_equal(f64(bn.running_var), before[1])


def test_batch_norm_scale_init_and_variable_types():
    bn = BatchNorm(3, scale_init=1e-6, param_dtype=jnp.bfloat16)
    np.testing.assert_array_equal(f64(bn.scale), np.full(3, np.float64(jnp.bfloat16(1e-6))))
    np.testing.assert_array_equal(f64(bn.bias), np.zeros(3))
    assert bn.scale[...].dtype == jnp.bfloat16
    assert set(nnx.state(bn, nnx.Param).keys()) == {"scale", "bias"}
    assert set(nnx.state(bn, nnx.BatchStat).keys()) == {"running_mean", "running_var"}


def test_train_and_eval_toggle_use_running_average_on_nested_batch_norms():
    block = Block()
    norms = [block.first, *block.inner]
    assert not any(bn.use_running_average for bn in norms)
    block.eval()
    assert all(bn.use_running_average for bn in norms)
    x = jnp.ones((4, 3))
    np.testing.assert_allclose(np.asarray(block.first(x)), np.full((4, 3), 1 / np.sqrt(1 + 1e-5)),
                               rtol=1e-6)
    block.train()
    assert not any(bn.use_running_average for bn in norms)
    np.testing.assert_array_equal(np.asarray(block.first(x)), np.zeros((4, 3)))


def test_batch_norm_bfloat16_computes_statistics_in_float32():
    bn = randomized_batch_norm(4, seed=4, dtype=jnp.bfloat16)
    # A large offset makes bfloat16 statistics visibly wrong (spacing 2 at 256).
    x = np.random.default_rng(5).normal(300.0, 1.0, (64, 4)).astype(np.float32)
    x_bf16 = jnp.asarray(x, jnp.bfloat16)
    ref, ref_mean, _ = np_batch_norm(
        np.asarray(x_bf16, np.float64), f64(bn.scale), f64(bn.bias), f64(bn.running_mean),
        f64(bn.running_var), training=True,
    )
    y = bn(x_bf16)
    assert y.dtype == jnp.bfloat16
    assert bn.running_mean[...].dtype == jnp.float32
    # Only the output rounding is bfloat16: relative error 2^-8 of values of order |bias| + 3.
    np.testing.assert_allclose(np.asarray(y, np.float64), ref, rtol=2**-8, atol=2**-6)
    np.testing.assert_allclose(f64(bn.running_mean), ref_mean, rtol=1e-6)


def test_batch_norm_rejects_wrong_channels():
    with pytest.raises(ValueError, match=r"BatchNorm expects input of shape \(\.\.\., 4\)"):
        BatchNorm(4)(jnp.ones((2, 3)))


def test_batch_norm_training_rejects_a_single_value_per_channel():
    with pytest.raises(ValueError, match="more than one value per channel"):
        BatchNorm(4)(jnp.ones((1, 4)))


# ----------------------------------------------------------------------------- TemporalConv


@pytest.mark.parametrize("kernel_size,stride,frames", [(9, 1, 8), (9, 2, 7), (1, 2, 6), (1, 1, 3)])
def test_temporal_conv_matches_pytorch_conv2d(kernel_size, stride, frames):
    conv = TemporalConv(3, 5, kernel_size=kernel_size, stride=stride, rngs=nnx.Rngs(0))
    conv.bias[...] = jnp.asarray(np.random.default_rng(0).normal(size=5), jnp.float32)
    x = np.random.default_rng(1).normal(size=(2, frames, 4, 3)).astype(np.float32)
    # kernel (k, in, out) -> PyTorch weight (out, in, k, 1).
    weight = f64(conv.kernel).transpose(2, 1, 0)[..., None]
    ref = np_conv2d(to_nchw(x), weight, f64(conv.bias), (stride, 1), ((kernel_size - 1) // 2, 0))
    y = conv(jnp.asarray(x))
    assert y.shape == (2, (frames - 1) // stride + 1, 4, 5) and y.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(y), np.moveaxis(ref, 1, -1), rtol=1e-5, atol=1e-5)


def test_temporal_conv_init_is_kaiming_normal_fan_out():
    conv = TemporalConv(64, 96, kernel_size=9, rngs=nnx.Rngs(0))
    assert conv.kernel[...].shape == (9, 64, 96)
    np.testing.assert_allclose(f64(conv.kernel).std(), np.sqrt(2 / (96 * 9)), rtol=0.02)
    np.testing.assert_array_equal(f64(conv.bias), np.zeros(96))


def test_temporal_conv_bfloat16_output_dtype():
    conv = TemporalConv(3, 5, kernel_size=9, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    assert conv(jnp.ones((1, 4, 2, 3))).dtype == jnp.bfloat16


def test_temporal_conv_rejects_even_kernel():
    with pytest.raises(ValueError, match="odd kernel_size, got 4"):
        TemporalConv(3, 5, kernel_size=4, rngs=nnx.Rngs(0))


# ----------------------------------------------------------------------------- SubsetConv


def np_subset_weights(conv):
    """Stacked kernel -> the PyTorch ModuleList's [(weight (out, in, 1, 1), bias)]."""
    return [(f64(conv.kernel)[s].T[:, :, None, None], f64(conv.bias)[s])
            for s in range(conv.num_subsets)]


def randomized_subset_conv(**kwargs):
    conv = SubsetConv(3, 4, 6, rngs=nnx.Rngs(0), **kwargs)
    conv.bias[...] = jnp.asarray(np.random.default_rng(0).normal(size=(3, 6)), jnp.float32)
    return conv


def test_subset_conv_shared_input_matches_pytorch_module_list():
    conv = randomized_subset_conv()
    x = np.random.default_rng(1).normal(size=(2, 5, 7, 4)).astype(np.float32)
    refs = [np_conv2d(to_nchw(x), w, b) for w, b in np_subset_weights(conv)]
    y = conv(jnp.asarray(x))
    assert y.shape == (2, 5, 7, 3, 6) and y.dtype == jnp.float32
    for s, ref in enumerate(refs):
        np.testing.assert_allclose(np.asarray(y[..., s, :]), np.moveaxis(ref, 1, -1),
                                   rtol=1e-5, atol=1e-5)


def test_subset_conv_summed_matches_accumulated_pytorch_convs():
    conv = randomized_subset_conv(sum_over_subsets=True)
    x = np.random.default_rng(2).normal(size=(2, 5, 7, 3, 4)).astype(np.float32)
    ref = sum(np_conv2d(to_nchw(x[..., s, :]), w, b)
              for s, (w, b) in enumerate(np_subset_weights(conv)))
    y = conv(jnp.asarray(x))
    assert y.shape == (2, 5, 7, 6) and y.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(y), np.moveaxis(ref, 1, -1), rtol=1e-5, atol=1e-5)


def test_subset_conv_init_treats_subsets_as_separate_convs():
    conv = SubsetConv(3, 64, 128, rngs=nnx.Rngs(0))
    # Per-subset Conv2d(64, 128, 1): kaiming fan_out = 128, the subset axis is not receptive field.
    np.testing.assert_allclose(f64(conv.kernel).std(), np.sqrt(2 / 128), rtol=0.02)
    custom = SubsetConv(3, 64, 128, kernel_init=jax.nn.initializers.normal(0.5),
                        rngs=nnx.Rngs(0))
    np.testing.assert_allclose(f64(custom.kernel).std(), 0.5, rtol=0.02)


def test_subset_conv_summed_rejects_missing_subset_axis():
    conv = SubsetConv(3, 4, 6, sum_over_subsets=True, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"expects input of shape \(\.\.\., 3, in_channels\)"):
        conv(jnp.ones((2, 5, 7, 4)))
