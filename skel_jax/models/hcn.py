"""Image encoder: HCN (hierarchical co-occurrence network) as used by ISC.

Mirrors `moco/HCN.py` of skeleton-contrast in channels-last (NHWC) layout. Each
person's (T, V, C) slice is an image with T rows and V columns; after conv2 the
joints become the channels. The feature is flattened in PyTorch's (C, H, W) order
so that downstream weights imported from the original line up.
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

IN_CHANNELS = 3
# Four 2x2 max-pools halve both spatial sizes four times.
_SPATIAL_REDUCTION = 16


def temporal_resize_matrix(in_size: int, out_size: int) -> np.ndarray:
    """Linear interpolation matrix of PyTorch's bilinear resize, align_corners=False.

    Args:
        in_size: source length.
        out_size: target length.

    Returns:
        (out_size, in_size) float32 matrix R such that ``R @ a`` resizes ``a``
        along its first axis (half-pixel centres, source index clamped at 0).
    """
    scale = in_size / out_size
    src = np.maximum((np.arange(out_size) + 0.5) * scale - 0.5, 0.0)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, in_size - 1)
    frac = src - lo
    matrix = np.zeros((out_size, in_size), np.float64)
    rows = np.arange(out_size)
    np.add.at(matrix, (rows, lo), 1.0 - frac)
    np.add.at(matrix, (rows, hi), frac)
    return matrix.astype(np.float32)


def _max_pool(x: jax.Array) -> jax.Array:
    # PyTorch MaxPool2d(2): 2x2 windows, stride 2, odd remainders dropped.
    return nnx.max_pool(x, window_shape=(2, 2), strides=(2, 2), padding="VALID")


def _channel_dropout(rngs: nnx.Rngs) -> nnx.Dropout:
    # Dropout2d: one Bernoulli draw per (sample, channel), shared over H and W (NHWC).
    return nnx.Dropout(0.5, broadcast_dims=(1, 2), rngs=rngs)


def _conv(
    in_features: int,
    out_features: int,
    kernel_size: tuple[int, int],
    padding,
    *,
    rngs: nnx.Rngs,
    dtype: jnp.dtype,
    param_dtype: jnp.dtype,
) -> nnx.Conv:
    # The original's weights_init: xavier-uniform kernels (fans include the
    # receptive field), zero biases.
    return nnx.Conv(
        in_features,
        out_features,
        kernel_size,
        padding=padding,
        kernel_init=jax.nn.initializers.xavier_uniform(),
        bias_init=jax.nn.initializers.zeros,
        dtype=dtype,
        param_dtype=param_dtype,
        rngs=rngs,
    )


class HCNStream(nnx.Module):
    """conv1..conv4 of one HCN input stream (position or motion).

    Args:
        num_joints: V.
        num_frames: T; also conv2's output channels (the original's window_size).
        out_channels: the original's out_channel.
        rngs: parameter and dropout keys.
        dtype: compute dtype.
        param_dtype: parameter dtype.
    """

    def __init__(
        self,
        num_joints: int,
        num_frames: int,
        out_channels: int,
        *,
        rngs: nnx.Rngs,
        dtype: jnp.dtype = jnp.float32,
        param_dtype: jnp.dtype = jnp.float32,
    ):
        kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        same3x3 = ((1, 1), (1, 1))
        self.conv1 = _conv(IN_CHANNELS, out_channels, (1, 1), "VALID", **kw)
        self.conv2 = _conv(out_channels, num_frames, (3, 1), ((1, 1), (0, 0)), **kw)
        self.conv3 = _conv(num_joints, out_channels // 2, (3, 3), same3x3, **kw)
        self.conv4 = _conv(out_channels // 2, out_channels, (3, 3), same3x3, **kw)
        self.dropout = _channel_dropout(rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps (B, T, V, 3) images to (B, T/4, num_frames/4, out_channels)."""
        out = jax.nn.relu(self.conv1(x))
        out = self.conv2(out)
        # PyTorch permutes (B, C', T, V) -> (B, V, T, C'): joints become channels,
        # conv2's channels become the image width. NHWC equivalent: (B, T, C', V).
        out = jnp.swapaxes(out, 2, 3)
        out = _max_pool(self.conv3(out))
        return _max_pool(self.dropout(self.conv4(out)))


class HCN(nnx.Module):
    """The ISC image encoder (HCN backbone without its fc layer).

    Input: clip batch (N, T, M, V, C) with T == num_frames, M == num_persons, C == 3.
    The motion stream reads x[t+1] - x[t] resized from T-1 back to T frames
    (PyTorch bilinear, align_corners=False). Both streams and conv5/conv6 run per
    person; the feature is the element-wise max over persons, flattened in
    PyTorch's (C, H, W) order: 4 * out_channels * (num_frames / 16) ** 2 values.

    Parameter tree (nnx.Conv: kernel (kh, kw, in, out) = PyTorch weight
    (out, in, kh, kw) transposed (2, 3, 1, 0); bias (out,)), with the PyTorch
    module each copies from, for the defaults:
        position/conv1 (1, 1, 3, 64)     <- conv1.0
        position/conv2 (3, 1, 64, 64)    <- conv2
        position/conv3 (3, 3, 25, 32)    <- conv3.0
        position/conv4 (3, 3, 32, 64)    <- conv4.0
        motion/conv1..conv4 (same shapes) <- conv1m.0, conv2m, conv3m.0, conv4m.0
        conv5 (3, 3, 128, 128)           <- conv5.0
        conv6 (3, 3, 128, 256)           <- conv6.0

    Args:
        rngs: parameter keys and the dropout stream (``"dropout"`` or default).
        dtype: compute dtype of the convolutions and of the returned feature.
        param_dtype: parameter dtype.
        num_joints: V.
        num_frames: T (the original's window_size); a multiple of 16.
        num_persons: M; the original supports exactly 2.
        out_channels: the original's out_channel.

    Raises:
        ValueError: num_frames is not a positive multiple of 16.
    """

    def __init__(
        self,
        *,
        rngs: nnx.Rngs,
        dtype: jnp.dtype = jnp.float32,
        param_dtype: jnp.dtype = jnp.float32,
        num_joints: int = 25,
        num_frames: int = 64,
        num_persons: int = 2,
        out_channels: int = 64,
    ):
        if num_frames <= 0 or num_frames % _SPATIAL_REDUCTION:
            raise ValueError(
                f"HCN num_frames must be a positive multiple of {_SPATIAL_REDUCTION} "
                f"(four 2x2 max-pools); got {num_frames}."
            )
        self.num_joints = num_joints
        self.num_frames = num_frames
        self.num_persons = num_persons
        self.dtype = dtype
        self.feature_dim = 4 * out_channels * (num_frames // _SPATIAL_REDUCTION) ** 2
        kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        self.position = HCNStream(num_joints, num_frames, out_channels, **kw)
        self.motion = HCNStream(num_joints, num_frames, out_channels, **kw)
        same3x3 = ((1, 1), (1, 1))
        self.conv5 = _conv(2 * out_channels, 2 * out_channels, (3, 3), same3x3, **kw)
        self.dropout5 = _channel_dropout(rngs)
        self.conv6 = _conv(2 * out_channels, 4 * out_channels, (3, 3), same3x3, **kw)
        self.dropout6 = _channel_dropout(rngs)

    def _check_input(self, x: jax.Array) -> None:
        expected = (self.num_frames, self.num_persons, self.num_joints, IN_CHANNELS)
        if x.ndim != 5:
            raise ValueError(f"HCN expects a clip batch (N, T, M, V, C); got shape {x.shape}.")
        names = ("T (frames)", "M (persons)", "V (joints)", "C (coordinates)")
        for name, want, got in zip(names, expected, x.shape[1:]):
            if want != got:
                raise ValueError(
                    f"HCN requires {name} == {want} (input shape (N, T, M, V, C) = "
                    f"{x.shape}); got {got}."
                )

    def __call__(self, x: jax.Array) -> jax.Array:
        """Encodes a clip batch.

        Args:
            x: (N, T, M, V, 3).

        Returns:
            Features (N, feature_dim) in the compute dtype.

        Raises:
            ValueError: ``x`` does not have the shape the model was built for.
        """
        self._check_input(x)
        n, t, m, v, c = x.shape
        resize = jnp.asarray(temporal_resize_matrix(t - 1, t), x.dtype)
        motion = jnp.einsum("ts,nsmvc->ntmvc", resize, x[:, 1:] - x[:, :-1])

        def persons_into_batch(a):
            # Person-major, so the max over persons below is a reshape away.
            return jnp.transpose(a, (2, 0, 1, 3, 4)).reshape(m * n, t, v, c)

        out = jnp.concatenate(
            [self.position(persons_into_batch(x)), self.motion(persons_into_batch(motion))],
            axis=-1,
        )
        out = _max_pool(self.dropout5(jax.nn.relu(self.conv5(out))))
        out = _max_pool(self.dropout6(jax.nn.relu(self.conv6(out))))
        out = jnp.max(out.reshape(m, n, *out.shape[1:]), axis=0)
        return jnp.transpose(out, (0, 3, 1, 2)).reshape(n, -1).astype(self.dtype)
