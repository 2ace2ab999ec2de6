"""Channels-last building blocks with PyTorch semantics: BatchNorm and the AGCN convolutions.

Kernels are stored input-major/output-minor (``(..., in, out)``, the Flax convention). A PyTorch
``Conv2d`` weight of shape (out, in, kh, kw) maps onto them by the transposes given in each class.
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

from skel_jax.models import conv_vjp

# PyTorch's ``kaiming_normal_(w, mode='fan_out')`` (ReLU gain, untruncated normal): the variance is
# 2 / (out_channels * receptive field). For stacked per-subset kernels the subset axis is a batch
# axis, not part of the receptive field.
kaiming_normal_fan_out = jax.nn.initializers.variance_scaling(2.0, "fan_out", "normal")
subset_kaiming_normal_fan_out = jax.nn.initializers.variance_scaling(
    2.0, "fan_out", "normal", batch_axis=0
)


class BatchNorm(nnx.Module):
    """Batch normalisation over the last (channel) axis with PyTorch ``BatchNorm{1,2}d`` semantics.

    In training mode the input is normalised with the biased batch variance, and the running
    estimates are updated as ``running = (1 - momentum) * running + momentum * batch`` where the
    running *variance* uses the unbiased batch variance (n / (n - 1)), as PyTorch does. Running
    statistics imported from a PyTorch checkpoint therefore mean the same thing here. In inference
    mode the running estimates are used. ``model.train()`` / ``model.eval()`` toggle
    ``use_running_average``.

    Statistics are reduced over every axis but the last. Under a data-sharded ``jax.jit`` the
    reduction spans the whole global batch (XLA inserts the cross-device all-reduce), whereas the
    original computed them per GPU under DataParallel; the spec (method.md §5) accepts global-batch
    statistics. Statistics and the affine transform are computed in float32 whatever the compute
    dtype; only the output is cast to ``dtype``.

    PyTorch keys: ``weight`` -> ``scale``, ``bias`` -> ``bias``, ``running_mean`` ->
    ``running_mean``, ``running_var`` -> ``running_var``; ``num_batches_tracked`` has no
    counterpart (PyTorch only reads it when ``momentum=None``).

    Attributes:
      scale: learnable per-channel scale (nnx.Param).
      bias: learnable per-channel shift (nnx.Param).
      running_mean: running mean estimate (nnx.BatchStat, float32).
      running_var: running unbiased variance estimate (nnx.BatchStat, float32).
      use_running_average: normalise with the running estimates instead of batch statistics.
    """

    def __init__(
        self,
        num_features: int,
        *,
        scale_init: float = 1.0,
        momentum: float = 0.1,
        epsilon: float = 1e-5,
        use_running_average: bool = False,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
    ):
        """Creates the layer.

        Args:
          num_features: number of channels (size of the last input axis).
          scale_init: constant initial value of ``scale`` (2s-AGCN starts its gcn BN at 1e-6).
          momentum: weight of the new batch statistics in the running estimates (PyTorch
            convention; Flax's ``nnx.BatchNorm`` uses the complement).
          epsilon: added to the variance before the square root.
          use_running_average: start in inference mode.
          dtype: output dtype.
          param_dtype: dtype of ``scale`` and ``bias``.
        """
        self.num_features = num_features
        self.momentum = momentum
        self.epsilon = epsilon
        self.use_running_average = use_running_average
        self.dtype = dtype
        self.scale = nnx.Param(jnp.full((num_features,), scale_init, param_dtype))
        self.bias = nnx.Param(jnp.zeros((num_features,), param_dtype))
        self.running_mean = nnx.BatchStat(jnp.zeros((num_features,), jnp.float32))
        self.running_var = nnx.BatchStat(jnp.ones((num_features,), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        """Normalises ``x`` of shape (..., num_features); in training mode updates the estimates."""
        if x.ndim < 2 or x.shape[-1] != self.num_features:
            raise ValueError(
                f"BatchNorm expects input of shape (..., {self.num_features}) with at least one "
                f"batch axis, got {x.shape}"
            )
        x32 = x.astype(jnp.float32)
        if self.use_running_average:
            mean = self.running_mean[...]
            var = self.running_var[...]
        else:
            axes = tuple(range(x.ndim - 1))
            n = math.prod(x.shape[:-1])
            if n < 2:
                raise ValueError(
                    "BatchNorm in training mode needs more than one value per channel, "
                    f"got input of shape {x.shape}"
                )
            mean = jnp.mean(x32, axis=axes)
            # Two-pass variance: the one-pass E[x^2] - E[x]^2 loses precision for large means.
            var = jnp.mean(jnp.square(x32 - mean), axis=axes)
            m = self.momentum
            self.running_mean[...] = (1 - m) * self.running_mean[...] + m * lax.stop_gradient(mean)
            self.running_var[...] = (1 - m) * self.running_var[...] + m * lax.stop_gradient(
                var * (n / (n - 1))
            )
        mul = lax.rsqrt(var + self.epsilon) * self.scale[...].astype(jnp.float32)
        y = (x32 - mean) * mul + self.bias[...].astype(jnp.float32)
        return y.astype(self.dtype)


class TemporalConv(nnx.Module):
    """A (kernel_size, 1) convolution over (batch, time, joints, channels), PyTorch padding.

    Equivalent to ``Conv2d(in, out, (kernel_size, 1), padding=((kernel_size - 1) // 2, 0),
    stride=(stride, 1))`` on NCHW = (batch, channels, time, joints). PyTorch ``weight`` (out, in,
    k, 1) maps to ``kernel`` (k, in, out) = ``weight[..., 0].transpose(2, 1, 0)``; ``bias`` is
    the same.

    Computed by ``conv_vjp.temporal_conv``: ``lax.conv_general_dilated`` in NHWC forward (a plain
    matrix product for 1-tap kernels) with a hand-written backward pass, because XLA:CPU ran the
    autodiff kernel gradient 5-10x slower than the forward convolution (docs/performance.md).

    Attributes:
      kernel: (kernel_size, in_channels, out_channels) nnx.Param.
      bias: (out_channels,) nnx.Param.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int,
        stride: int = 1,
        kernel_init=kaiming_normal_fan_out,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        """Creates the layer.

        Args:
          in_channels: input channels.
          out_channels: output channels.
          kernel_size: taps along time; odd, so that the padding is symmetric as in PyTorch.
          stride: temporal stride.
          kernel_init: initializer of the (kernel_size, in, out) kernel; the bias starts at 0.
          dtype: compute dtype.
          param_dtype: parameter dtype.
          rngs: random number streams (``params`` is used).
        """
        if kernel_size % 2 != 1:
            raise ValueError(f"TemporalConv needs an odd kernel_size, got {kernel_size}")
        self.stride = stride
        self.padding = (kernel_size - 1) // 2
        self.dtype = dtype
        self.kernel = nnx.Param(
            kernel_init(rngs.params(), (kernel_size, in_channels, out_channels), param_dtype)
        )
        self.bias = nnx.Param(jnp.zeros((out_channels,), param_dtype))

    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps (B, T, V, in) to (B, floor((T - 1) / stride) + 1, V, out)."""
        y = conv_vjp.temporal_conv(x.astype(self.dtype), self.kernel[...].astype(self.dtype),
                                   self.stride, self.padding)
        return y + self.bias[...].astype(self.dtype)


class SubsetConv(nnx.Module):
    """One 1x1 convolution per graph subset, all subsets in one batched contraction.

    Stands for a PyTorch ``ModuleList`` of ``Conv2d(in, out, 1)``: ``weight`` of member ``s``
    (out, in, 1, 1) maps to ``kernel[s]`` (in, out) = ``weight[:, :, 0, 0].T`` and its ``bias`` to
    ``bias[s]``.

    With ``sum_over_subsets=False`` every subset's convolution sees the same input, (..., in) ->
    (..., num_subsets, out) (AGCN's ``conv_a`` / ``conv_b``). With ``sum_over_subsets=True``
    subset ``s`` convolves its own slice and the results are summed, (..., num_subsets, in) ->
    (..., out) (AGCN's ``conv_d``, whose outputs the original accumulates).

    Attributes:
      kernel: (num_subsets, in_channels, out_channels) nnx.Param.
      bias: (num_subsets, out_channels) nnx.Param.
    """

    def __init__(
        self,
        num_subsets: int,
        in_channels: int,
        out_channels: int,
        *,
        sum_over_subsets: bool = False,
        kernel_init=subset_kaiming_normal_fan_out,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        """Creates the layer.

        Args:
          num_subsets: number of graph subsets (stacked convolutions).
          in_channels: input channels.
          out_channels: output channels.
          sum_over_subsets: input carries a subset axis and the subset outputs are summed.
          kernel_init: initializer of the (num_subsets, in, out) kernel; the bias starts at 0.
          dtype: compute dtype.
          param_dtype: parameter dtype.
          rngs: random number streams (``params`` is used).
        """
        self.num_subsets = num_subsets
        self.sum_over_subsets = sum_over_subsets
        self.dtype = dtype
        self.kernel = nnx.Param(
            kernel_init(rngs.params(), (num_subsets, in_channels, out_channels), param_dtype)
        )
        self.bias = nnx.Param(jnp.zeros((num_subsets, out_channels), param_dtype))

    def __call__(self, x: jax.Array) -> jax.Array:
        """Applies the subset convolutions; see the class docstring for the shapes."""
        kernel = self.kernel[...].astype(self.dtype)
        bias = self.bias[...].astype(self.dtype)
        x = x.astype(self.dtype)
        if not self.sum_over_subsets:
            return jnp.einsum("...c,sco->...so", x, kernel) + bias
        if x.ndim < 2 or x.shape[-2] != self.num_subsets:
            raise ValueError(
                f"SubsetConv(sum_over_subsets=True) expects input of shape "
                f"(..., {self.num_subsets}, in_channels), got {x.shape}"
            )
        return jnp.einsum("...sc,sco->...o", x, kernel) + jnp.sum(bias, axis=0)
