"""A temporal convolution whose gradients XLA:CPU computes at matrix-multiply speed.

``temporal_conv`` is the (K, 1) convolution of ``TemporalConv`` over (batch, time, joints,
channels) with a hand-written backward pass. Reverse-mode autodiff of ``lax.conv_general_dilated``
gives two convolutions that XLA:CPU runs far below its matmul rate:

* the kernel gradient becomes a convolution whose "batch" is the input channels and whose window
  spans all frames and joints (measured 5x the forward time at 64 channels and 10x at 256);
* for stride 2 the input gradient is a convolution over a zero-dilated gradient (3x forward).

On CPU the kernel gradient is instead ``dy^T @ unfold(x)``, with the K shifted copies of the
input laid side by side, and the strided input gradient is a single stride-1 convolution of
``dy`` whose output channels hold the ``stride`` phases of the input positions (polyphase
decomposition), interleaved afterwards. The stride-1 input gradient stays the convolution with the
flipped kernel that autodiff would emit. Other platforms keep autodiff's gradients. The forward
pass is the convolution (a plain matrix product for 1-tap kernels) on every platform.
"""

import functools

import jax
import jax.numpy as jnp
from jax import lax

_DIMENSIONS = ("NHWC", "HWIO", "NHWC")
# Unfolded input per kernel-gradient product: about a quarter of the 32 MiB last-level cache of
# the 2-core benchmark machine; 4 to 8 MiB blocks ran fastest there (docs/performance.md).
_UNFOLD_BLOCK_BYTES = 8 << 20


def _forward(x, kernel, stride, padding):
    if kernel.shape[0] == 1 and padding == 0:
        return jnp.einsum("btvc,co->btvo", x[:, ::stride], kernel[0])
    return lax.conv_general_dilated(x, kernel[:, None], window_strides=(stride, 1),
                                    padding=((padding, padding), (0, 0)),
                                    dimension_numbers=_DIMENSIONS)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def temporal_conv(x: jax.Array, kernel: jax.Array, stride: int, padding: int) -> jax.Array:
    """Cross-correlates (B, T, V, C) with a (K, C, O) kernel along T, zero padding both ends.

    Args:
      x: (B, T, V, C) input.
      kernel: (K, C, O) taps, in the dtype of ``x``.
      stride: temporal stride.
      padding: zero frames added before and after the input.

    Returns:
      (B, (T + 2 * padding - K) // stride + 1, V, O), in the dtype of ``x``.
    """
    return _forward(x, kernel, stride, padding)


def _temporal_conv_fwd(x, kernel, stride, padding):
    return _forward(x, kernel, stride, padding), (x, kernel)


def input_grad(dy: jax.Array, kernel: jax.Array, stride: int, padding: int,
               length: int) -> jax.Array:
    """The gradient of ``temporal_conv`` with respect to its input.

    With stride s, input position ``s * m + r`` (padded coordinates) receives ``dy[m - i] @
    kernel[s * i + r].T`` summed over i. For every phase r that is a stride-1 correlation of ``dy``
    with the taps r, r + s, ...; all phases run as one convolution with s * C output channels.

    Args:
      dy: (B, T', V, O) output gradient.
      kernel: (K, C, O) taps.
      stride: the forward stride.
      padding: the forward padding.
      length: the forward input length T.

    Returns:
      (B, T, V, C).
    """
    taps, channels, out_channels = kernel.shape
    if taps == 1 and padding == 0:
        # Strided frames receive dy @ kernel.T; the frames in between, nothing.
        grad = jnp.einsum("btvo,co->btvc", dy, kernel[0])
        end = length - 1 - (dy.shape[1] - 1) * stride
        return lax.pad(grad, jnp.zeros((), grad.dtype),
                       ((0, 0, 0), (0, end, stride - 1), (0, 0, 0), (0, 0, 0)))
    if stride == 1:
        flipped = jnp.flip(kernel, 0).transpose(0, 2, 1)
        return _forward(dy, flipped, 1, taps - 1 - padding)
    phase_taps = -(-taps // stride)
    # phased[j, :, r * C + c] = kernel[s * (L - 1 - j) + r, c, :], zero past the last tap.
    phased = jnp.pad(kernel, ((0, phase_taps * stride - taps), (0, 0), (0, 0)))
    phased = phased.reshape(phase_taps, stride, channels, out_channels)[::-1]
    phased = phased.transpose(0, 3, 1, 2).reshape(phase_taps, out_channels, stride * channels)
    batch, out_length, joints, _ = dy.shape
    positions = -(-(padding + length) // stride)
    dy = jnp.pad(dy, ((0, 0), (phase_taps - 1, positions - out_length), (0, 0), (0, 0)))
    grad = _forward(dy, phased, 1, 0)  # (B, positions, V, s * C)
    grad = grad.reshape(batch, positions, joints, stride, channels).transpose(0, 1, 3, 2, 4)
    grad = grad.reshape(batch, positions * stride, joints, channels)
    return grad[:, padding:padding + length]


def kernel_grad(x: jax.Array, dy: jax.Array, taps: int, stride: int, padding: int) -> jax.Array:
    """The gradient of ``temporal_conv`` with respect to its kernel, as matrix products.

    ``dy^T @ unfold(x)``, where ``unfold(x)`` holds side by side the K input frames that each
    output frame sees. Unfolded all at once the operand is K times the input and its round trip
    through memory took as long as the product, so output frames are taken in blocks whose
    unfolded input fits in the last-level cache (``_UNFOLD_BLOCK_BYTES``), one product per block.

    Args:
      x: (B, T, V, C) forward input.
      dy: (B, T', V, O) output gradient.
      taps: K.
      stride: the forward stride.
      padding: the forward padding.

    Returns:
      (K, C, O) float32.
    """
    batch, out_length, joints, out_channels = dy.shape
    channels = x.shape[-1]
    frame_bytes = batch * joints * taps * channels * x.dtype.itemsize
    block = max(1, min(out_length, _UNFOLD_BLOCK_BYTES // frame_bytes))
    num_blocks = -(-out_length // block)
    # Zero gradient frames pad the last block; they add nothing to the sum.
    dy = jnp.pad(dy, ((0, 0), (0, num_blocks * block - out_length), (0, 0), (0, 0)))
    x = jnp.pad(x, ((0, 0), (padding, padding + stride * (num_blocks * block - out_length)),
                    (0, 0), (0, 0)))
    span = stride * (block - 1) + taps
    frames = stride * jnp.arange(block)[:, None] + jnp.arange(taps)[None, :]
    rows = batch * block * joints

    def add_block(grad, index):
        inputs = lax.dynamic_slice_in_dim(x, index * stride * block, span, axis=1)
        # (B, block, V, K, C): rows (b, t, v) and columns (k, c) contiguous, so the product
        # reads it without a transpose.
        unfolded = inputs[:, frames].transpose(0, 1, 3, 2, 4).reshape(rows, taps * channels)
        grads = lax.dynamic_slice_in_dim(dy, index * block, block, axis=1)
        return grad + lax.dot_general(grads.reshape(rows, out_channels), unfolded,
                                      (((0,), (0,)), ((), ())),
                                      preferred_element_type=jnp.float32), None

    grad, _ = lax.scan(add_block, jnp.zeros((out_channels, taps * channels), jnp.float32),
                       jnp.arange(num_blocks))
    return grad.reshape(out_channels, taps, channels).transpose(1, 2, 0)


def matmul_grads(x: jax.Array, kernel: jax.Array, dy: jax.Array, stride: int,
                 padding: int) -> tuple[jax.Array, jax.Array]:
    """(dx, dkernel) from ``input_grad`` and ``kernel_grad``, in the dtypes of x and kernel."""
    dx = input_grad(dy, kernel, stride, padding, x.shape[1])
    dkernel = kernel_grad(x, dy, kernel.shape[0], stride, padding)
    return dx.astype(x.dtype), dkernel.astype(kernel.dtype)


def autodiff_grads(x: jax.Array, kernel: jax.Array, dy: jax.Array, stride: int,
                   padding: int) -> tuple[jax.Array, jax.Array]:
    """(dx, dkernel) by reverse-mode autodiff of the forward pass."""
    _, vjp = jax.vjp(lambda x, kernel: _forward(x, kernel, stride, padding), x, kernel)
    return vjp(dy)


def _temporal_conv_bwd(stride, padding, residuals, dy):
    x, kernel = residuals
    # Accelerator libraries have fast convolution gradients (and a scan of small products
    # would be slow there), so only CPUs take the matrix-product formulation.
    return lax.platform_dependent(
        x, kernel, dy,
        cpu=lambda x, kernel, dy: matmul_grads(x, kernel, dy, stride, padding),
        default=lambda x, kernel, dy: autodiff_grads(x, kernel, dy, stride, padding))


temporal_conv.defvjp(_temporal_conv_fwd, _temporal_conv_bwd)
