"""The 2s-AGCN joint-stream backbone used as ISC's graph encoder (method.md §4 AGCN).

A channels-last reimplementation of 2s-AGCN's ``model/agcn.py`` (``unit_gcn``, ``unit_tcn``,
``TCN_GCN_unit``, ``Model`` without its ``fc``). Activations are laid out (batch, time, joints,
channels) inside the network; the three graph subsets run as one batched contraction.
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx

from skel_jax.models import graph
from skel_jax.models.layers import BatchNorm, SubsetConv, TemporalConv


class UnitTCN(nnx.Module):
    """Temporal convolution + BatchNorm (2s-AGCN's ``unit_tcn``), no activation.

    Also serves as the 1x1 projections (``kernel_size=1``): ``unit_gcn.down`` and the strided
    ``TCN_GCN_unit.residual``, which in the original are the same Conv2d + BatchNorm2d pair with
    the same initialisation.

    Attributes:
      conv: TemporalConv, kaiming-normal (fan_out) kernel, zero bias.
      bn: BatchNorm, scale 1, bias 0.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int = 9,
        stride: int = 1,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        """Creates the unit.

        Args:
          in_channels: input channels.
          out_channels: output channels.
          kernel_size: temporal taps (odd), padded to keep the length at stride 1.
          stride: temporal stride.
          dtype: compute dtype.
          param_dtype: parameter dtype.
          rngs: random number streams.
        """
        self.conv = TemporalConv(
            in_channels,
            out_channels,
            kernel_size=kernel_size,
            stride=stride,
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )
        self.bn = BatchNorm(out_channels, dtype=dtype, param_dtype=param_dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps (B, T, V, in) to (B, T', V, out), T' = floor((T - 1) / stride) + 1."""
        return self.bn(self.conv(x))


class UnitGCN(nnx.Module):
    """Adaptive graph convolution (2s-AGCN's ``unit_gcn``).

    For each subset s: attention = softmax over the first joint axis of
    (conv_a_s(x) . conv_b_s(x)) / (C' T), contracting channels and time; the input is aggregated
    over joints with A_s + PA_s + attention and projected by conv_d_s; the subsets are summed, then
    BatchNorm (scale initialised to 1e-6), plus ``down(x)``, ReLU.

    The fixed adjacency A is an argument of ``__call__``, not state: only PA is learned.

    Attributes:
      PA: (num_subsets, V, V) learned adjacency offset, initialised to 1e-6.
      conv_a, conv_b: SubsetConv in -> out // coff_embedding, kaiming-normal (fan_out).
      conv_d: SubsetConv in -> out summed over subsets, normal(0, sqrt(2 / (out * in * S))).
      bn: BatchNorm(out), scale initialised to 1e-6.
      down: UnitTCN 1x1 projection when in != out, else None (identity).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        num_joints: int = graph.NUM_JOINTS,
        num_subsets: int = 3,
        coff_embedding: int = 4,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        """Creates the unit.

        Args:
          in_channels: input channels.
          out_channels: output channels.
          num_joints: graph nodes V.
          num_subsets: adjacency subsets S.
          coff_embedding: ratio of out_channels to the attention embedding width C'.
          dtype: compute dtype.
          param_dtype: parameter dtype.
          rngs: random number streams.
        """
        inter_channels = out_channels // coff_embedding
        if inter_channels < 1:
            raise ValueError(
                f"UnitGCN needs out_channels >= coff_embedding ({coff_embedding}) for a non-empty "
                f"attention embedding, got out_channels={out_channels}"
            )
        self.dtype = dtype
        self.num_subsets = num_subsets
        self.PA = nnx.Param(jnp.full((num_subsets, num_joints, num_joints), 1e-6, param_dtype))
        sub = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.conv_a = SubsetConv(num_subsets, in_channels, inter_channels, **sub)
        self.conv_b = SubsetConv(num_subsets, in_channels, inter_channels, **sub)
        # The original's conv_branch_init: std sqrt(2 / (out * in * kh * kw * branches)).
        branch_std = math.sqrt(2.0 / (out_channels * in_channels * num_subsets))
        self.conv_d = SubsetConv(
            num_subsets,
            in_channels,
            out_channels,
            sum_over_subsets=True,
            kernel_init=jax.nn.initializers.normal(branch_std),
            **sub,
        )
        self.bn = BatchNorm(out_channels, scale_init=1e-6, dtype=dtype, param_dtype=param_dtype)
        self.down = (
            UnitTCN(in_channels, out_channels, kernel_size=1, **sub)
            if in_channels != out_channels
            else None
        )

    def __call__(self, x: jax.Array, adjacency: jax.typing.ArrayLike) -> jax.Array:
        """Applies the unit.

        Args:
          x: (B, T, V, in_channels).
          adjacency: fixed (S, V, V) adjacency A.

        Returns:
          (B, T, V, out_channels).
        """
        if jnp.shape(adjacency) != self.PA.shape:
            raise ValueError(
                f"UnitGCN expects an adjacency of shape {self.PA.shape}, got {jnp.shape(adjacency)}"
            )
        x = x.astype(self.dtype)
        batch, frames, joints, _ = x.shape
        a = self.conv_a(x)  # (B, T, V, S, C')
        b = self.conv_b(x)
        embed_size = a.shape[-1] * frames
        logits = jnp.einsum("btvsk,btwsk->bsvw", a, b, preferred_element_type=jnp.float32)
        attention = jax.nn.softmax(logits / embed_size, axis=-2)
        fixed = jnp.asarray(adjacency, jnp.float32) + self.PA[...].astype(jnp.float32)
        graph_weights = (fixed + attention).astype(self.dtype)  # (B, S, V, W)
        # Aggregating before conv_d follows the original's order; both are linear maps. Each
        # frame's aggregation is one (W * S, V) x (V, C) product, batched over (clip, frame) and
        # read from the activations' own layout: an einsum over joints made XLA transpose
        # activation-sized arrays, which cost more than the products (docs/performance.md).
        weights = graph_weights.transpose(0, 3, 1, 2).reshape(batch, 1, -1, joints)
        weights = jnp.broadcast_to(weights, (batch, frames, *weights.shape[2:]))
        aggregated = jax.lax.dot_general(weights, x, (((3,), (2,)), ((0, 1), (0, 1))))
        aggregated = aggregated.reshape(batch, frames, joints, self.num_subsets, -1)
        y = self.bn(self.conv_d(aggregated))
        return jax.nn.relu(y + (x if self.down is None else self.down(x)))


class TCNGCNUnit(nnx.Module):
    """Graph convolution, temporal convolution and residual (2s-AGCN's ``TCN_GCN_unit``).

    Output = ReLU(tcn1(gcn1(x)) + residual(x)), where the residual is zero when ``residual`` is
    False, the identity when channels and length are kept, else a strided 1x1 UnitTCN.

    Attributes:
      gcn1: UnitGCN in -> out.
      tcn1: UnitTCN out -> out, 9 taps, the unit's stride.
      residual: UnitTCN projection (1x1, stride) or None (identity or no residual).
      has_residual: whether a residual is added at all.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int = 1,
        residual: bool = True,
        num_joints: int = graph.NUM_JOINTS,
        num_subsets: int = 3,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        """Creates the unit.

        Args:
          in_channels: input channels.
          out_channels: output channels.
          stride: temporal stride of tcn1 (and of the residual projection).
          residual: add a residual connection.
          num_joints: graph nodes V.
          num_subsets: adjacency subsets S.
          dtype: compute dtype.
          param_dtype: parameter dtype.
          rngs: random number streams.
        """
        sub = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.dtype = dtype
        self.gcn1 = UnitGCN(
            in_channels, out_channels, num_joints=num_joints, num_subsets=num_subsets, **sub
        )
        self.tcn1 = UnitTCN(out_channels, out_channels, stride=stride, **sub)
        self.has_residual = residual
        needs_projection = residual and (in_channels != out_channels or stride != 1)
        self.residual = (
            UnitTCN(in_channels, out_channels, kernel_size=1, stride=stride, **sub)
            if needs_projection
            else None
        )

    def __call__(self, x: jax.Array, adjacency: jax.typing.ArrayLike) -> jax.Array:
        """Maps (B, T, V, in) to (B, T', V, out) using the fixed (S, V, V) adjacency."""
        x = x.astype(self.dtype)
        y = self.tcn1(self.gcn1(x, adjacency))
        if self.has_residual:
            y = y + (x if self.residual is None else self.residual(x))
        return jax.nn.relu(y)


class AGCN(nnx.Module):
    """2s-AGCN joint-stream backbone: (N, T, M, V, C) skeleton clips -> (N, feature_dim).

    Input BatchNorm over the M*V*C channels (in that order, as the original's (N, M, V, C, T)
    permutation), persons folded into the batch, the TCN-GCN units, then the mean over time and
    joints and over persons. BatchNorm statistics span the whole batch seen by the compiled step
    (see ``layers.BatchNorm``).

    Parameter tree and the original PyTorch keys (``l{i}`` is ``layers[i - 1]``; S = 3 subsets):

    ==========================================  ==========================================
    PyTorch key (shape)                         skel_jax path (shape) = transform
    ==========================================  ==========================================
    data_bn.{weight,bias,running_mean,          data_bn.{scale,bias,running_mean,
    running_var} (M*V*C,)                       running_var} (M*V*C,), same order
    l{i}.gcn1.PA (S, V, V)                      layers[i-1].gcn1.PA (S, V, V), as is
    l{i}.gcn1.conv_a.{s}.weight (C', C, 1, 1)   gcn1.conv_a.kernel[s] (C, C') = w[:, :, 0, 0].T
    l{i}.gcn1.conv_a.{s}.bias (C',)             gcn1.conv_a.bias[s]
    l{i}.gcn1.conv_b.{s}.*                      gcn1.conv_b.*, as conv_a
    l{i}.gcn1.conv_d.{s}.weight (O, C, 1, 1)    gcn1.conv_d.kernel[s] (C, O) = w[:, :, 0, 0].T
    l{i}.gcn1.conv_d.{s}.bias (O,)              gcn1.conv_d.bias[s]
    l{i}.gcn1.bn.*                              gcn1.bn.* (weight -> scale)
    l{i}.gcn1.down.0.weight (O, C, 1, 1)        gcn1.down.conv.kernel (1, C, O)
                                                = w[..., 0].transpose(2, 1, 0)
    l{i}.gcn1.down.0.bias, down.1.*             gcn1.down.conv.bias, gcn1.down.bn.*
    l{i}.tcn1.conv.weight (O, O, 9, 1)          tcn1.conv.kernel (9, O, O)
                                                = w[..., 0].transpose(2, 1, 0)
    l{i}.tcn1.conv.bias, tcn1.bn.*              tcn1.conv.bias, tcn1.bn.*
    l{i}.residual.conv.weight (O, C, 1, 1)      residual.conv.kernel (1, C, O), as down
    l{i}.residual.conv.bias, residual.bn.*      residual.conv.bias, residual.bn.*
    ==========================================  ==========================================

    BatchNorm ``num_batches_tracked`` buffers are dropped. The fixed adjacency ``gcn1.A`` is a
    plain attribute in the original (not in its state_dict) and is rebuilt here from
    ``graph.spatial_adjacency()`` on every trace. The original's ``fc`` belongs to the head.

    Attributes:
      feature_dim: size of the output feature (channels[-1]).
      data_bn: input BatchNorm over M*V*C channels.
      layers: nnx.List of TCNGCNUnit (the original's l1..l10).
    """

    def __init__(
        self,
        *,
        rngs: nnx.Rngs,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
        in_channels: int = 3,
        num_persons: int = 2,
        num_joints: int = graph.NUM_JOINTS,
        channels: tuple[int, ...] = (64, 64, 64, 64, 128, 128, 128, 256, 256, 256),
        strides: tuple[int, ...] = (1, 1, 1, 1, 2, 1, 1, 2, 1, 1),
    ):
        """Creates the backbone.

        Args:
          rngs: random number streams (``params`` is used).
          dtype: compute dtype (bfloat16 on accelerators); BatchNorm statistics stay float32.
          param_dtype: parameter dtype.
          in_channels: coordinates per joint C.
          num_persons: persons per clip M.
          num_joints: joints V; must match the NTU graph.
          channels: output channels of each TCN-GCN unit; the first unit has no residual.
          strides: temporal stride of each unit.
        """
        if num_joints != graph.NUM_JOINTS:
            raise ValueError(
                f"AGCN uses the {graph.NUM_JOINTS}-joint NTU graph, got num_joints={num_joints}"
            )
        if not channels or len(channels) != len(strides):
            raise ValueError(
                "AGCN needs one stride per unit and at least one unit, got "
                f"channels={channels} and strides={strides}"
            )
        self.in_channels = in_channels
        self.num_persons = num_persons
        self.num_joints = num_joints
        self.feature_dim = channels[-1]
        self.dtype = dtype
        self.data_bn = BatchNorm(
            num_persons * num_joints * in_channels, dtype=dtype, param_dtype=param_dtype
        )
        units = []
        for index, (out_channels, stride) in enumerate(zip(channels, strides)):
            units.append(
                TCNGCNUnit(
                    channels[index - 1] if index else in_channels,
                    out_channels,
                    stride=stride,
                    residual=index > 0,
                    num_joints=num_joints,
                    dtype=dtype,
                    param_dtype=param_dtype,
                    rngs=rngs,
                )
            )
        self.layers = nnx.List(units)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Encodes a batch of clips.

        Args:
          x: (N, T, M, V, C) skeleton clips.

        Returns:
          (N, feature_dim) features in the compute dtype.
        """
        expected = (self.num_persons, self.num_joints, self.in_channels)
        if x.ndim != 5 or tuple(x.shape[2:]) != expected:
            raise ValueError(
                "AGCN expects input of shape (N, T, M, V, C) = "
                f"(N, T, {', '.join(map(str, expected))}), got {tuple(x.shape)}"
            )
        n, t, m, v, c = x.shape
        # (N, T, M*V*C) puts the channels in the original's (M, V, C) order.
        h = self.data_bn(x.reshape(n, t, m * v * c))
        h = h.reshape(n, t, m, v, c).transpose(0, 2, 1, 3, 4).reshape(n * m, t, v, c)
        adjacency = graph.spatial_adjacency()
        for unit in self.layers:
            h = unit(h, adjacency)
        features = jnp.mean(h.reshape(n, m, -1, h.shape[-1]), axis=(1, 2), dtype=jnp.float32)
        return features.astype(self.dtype)
