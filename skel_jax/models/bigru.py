"""Sequence encoder: the ISC multi-layer bidirectional GRU on the seq representation.

The original (`moco/GRU.py` of skeleton-contrast) wraps a 3-layer bidirectional
``torch.nn.GRU`` but feeds it one frame at a time, carrying the hidden state. Both
directions therefore run forward in time; that quirk is the default here
(``mode="frame_by_frame"``). ``mode="bidirectional"`` is a true bidirectional GRU.

The recurrence (:func:`recurrence`) has a hand-written backward pass that forms the recurrent
weight gradient in one product after the reverse scan instead of one per frame.
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx

MODES = ("frame_by_frame", "bidirectional")


def to_sequence(x: jax.Array) -> jax.Array:
    """Flattens a clip batch into the original's per-frame seq vectors.

    Args:
        x: clip batch (N, T, M, V, C): frames, persons, joints, coordinates.

    Returns:
        (N, T, V * C * M) array whose element ``C*M*v + M*c + m`` is joint v,
        coordinate c, person m (``6v + 2c + m`` for C = 3, M = 2; person fastest).
    """
    n, t, m, v, c = x.shape
    return jnp.transpose(x, (0, 1, 3, 4, 2)).reshape(n, t, v * c * m)


def gru_update(gi: jax.Array, gh: jax.Array, h: jax.Array) -> jax.Array:
    """One PyTorch GRU step from precomputed projections (gate order r, z, n).

    Args:
        gi: ``W_ih x + b_ih``, shape (..., 3H).
        gh: ``W_hh h + b_hh``, shape (..., 3H).
        h: previous hidden state (..., H).

    Returns:
        The new hidden state ``(1 - z) * n + z * h`` with
        ``n = tanh(gi_n + r * gh_n)``, shape (..., H).
    """
    _, z, n = gru_gates(gi, gh)
    return (1.0 - z) * n + z * h


def gru_gates(gi: jax.Array, gh: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The reset, update and candidate activations (r, z, n) of a GRU step, each (..., H)."""
    i_r, i_z, i_n = jnp.split(gi, 3, axis=-1)
    h_r, h_z, h_n = jnp.split(gh, 3, axis=-1)
    r = jax.nn.sigmoid(i_r + h_r)
    z = jax.nn.sigmoid(i_z + h_z)
    n = jnp.tanh(i_n + r * h_n)
    return r, z, n


def _forward_scan(gi, w_hh, b_hh, keep_projections):
    batch, hidden = gi.shape[2], w_hh.shape[1]

    def step(h, gi_t):
        gh = jnp.einsum(
            "dnh,dhg->dng", h.astype(w_hh.dtype), w_hh, preferred_element_type=gi.dtype
        ) + b_hh
        h_new = gru_update(gi_t, gh, h)
        return h_new, ((h_new, gh) if keep_projections else h_new)

    h0 = jnp.zeros((gi.shape[1], batch, hidden), gi.dtype)
    return jax.lax.scan(step, h0, gi)[1]


@jax.custom_vjp
def recurrence(gi: jax.Array, w_hh: jax.Array, b_hh: jax.Array) -> jax.Array:
    """Runs the GRU recurrence of D independent directions over precomputed input projections.

    Every direction starts from a zero state and takes the steps in the order of axis 0; a
    direction that reads the sequence backwards gets its projections reversed by the caller.

    Reverse-mode autodiff of the scan would add a rank-N ``h^T dgh`` product into the whole
    ``w_hh`` gradient at every step. The backward pass here propagates only the state gradient
    through the steps and forms the ``w_hh`` and ``b_hh`` gradients afterwards, as one product
    over all T * N rows of the stacked states and gate gradients.

    Args:
        gi: ``W_ih x + b_ih`` of every step, (T, D, N, 3H), gate order r, z, n; its dtype is
            that of the gates and the carried state.
        w_hh: (D, H, 3H) recurrent weights (``W_hh`` transposed) in the matmul operand dtype.
        b_hh: (D, 1, 3H) recurrent bias, in the dtype of ``gi``.

    Returns:
        The hidden states after every step, (T, D, N, H), in the dtype of ``gi``.
    """
    return _forward_scan(gi, w_hh, b_hh, keep_projections=False)


def _recurrence_fwd(gi, w_hh, b_hh):
    states, gh = _forward_scan(gi, w_hh, b_hh, keep_projections=True)
    return states, (gi, w_hh, states, gh)


def _recurrence_bwd(residuals, dstates):
    gi, w_hh, states, gh = residuals
    h_prev = jnp.concatenate([jnp.zeros_like(states[:1]), states[:-1]])
    r, z, n = gru_gates(gi, gh)
    h_n = jnp.split(gh, 3, axis=-1)[2]
    # Derivatives of h_t by the pre-activations of r, z and n, per unit of dh_t: none of them
    # depends on the gradient, so they are formed for all steps at once outside the scan.
    d_n = (1.0 - z) * (1.0 - n * n)
    d_z = (h_prev - n) * z * (1.0 - z)
    d_r = d_n * h_n * r * (1.0 - r)
    d_gi = jnp.concatenate([d_r, d_z, d_n], axis=-1)
    d_gh = jnp.concatenate([d_r, d_z, d_n * r], axis=-1)

    # The per-step product contracts the gates, the minor axis of w_hh; XLA:CPU ran it at about
    # 1.4x the forward product's time on that layout, so it reads a transposed copy made once.
    w_hh_t = jnp.swapaxes(w_hh, 1, 2)

    def step(dh_next, inputs):
        dstate, d_gh_t, z_t = inputs
        dh = dstate + dh_next
        dgh = jnp.tile(dh, 3) * d_gh_t
        dh_prev = dh * z_t + jnp.einsum(
            "dng,dgh->dnh", dgh.astype(w_hh.dtype), w_hh_t, preferred_element_type=dh.dtype
        )
        return dh_prev, dh

    _, dh = jax.lax.scan(step, jnp.zeros_like(states[0]), (dstates, d_gh, z), reverse=True)
    dh = jnp.tile(dh, 3)
    dgh = dh * d_gh
    dw_hh = jnp.einsum(
        "tdnh,tdng->dhg",
        h_prev.astype(w_hh.dtype),
        dgh.astype(w_hh.dtype),
        preferred_element_type=jnp.promote_types(w_hh.dtype, jnp.float32),
    )
    db_hh = jnp.sum(dgh, axis=(0, 2))[:, None, :]
    return dh * d_gi, dw_hh.astype(w_hh.dtype), db_hh


recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)


def gru_layer(
    x: jax.Array,
    weight_ih: jax.Array,
    weight_hh: jax.Array,
    bias_ih: jax.Array,
    bias_hh: jax.Array,
    *,
    reverse_in_time: bool,
    compute_dtype: jnp.dtype,
) -> tuple[jax.Array, jax.Array]:
    """Runs one two-direction GRU layer over a time-major sequence.

    Args:
        x: inputs (T, N, in).
        weight_ih: (2, 3H, in), PyTorch layout, stacked over [forward, reverse].
        weight_hh: (2, 3H, H).
        bias_ih: (2, 3H).
        bias_hh: (2, 3H).
        reverse_in_time: if True the second direction reads the sequence backwards
            (a true bidirectional GRU); if False both directions read it forwards
            (the original's frame-by-frame quirk).
        compute_dtype: dtype of the matmul operands.

    Returns:
        ``(outputs, final)``: outputs (T, N, 2H) = [forward, reverse] hidden states
        aligned with input time, and final (2, N, H) = the last state each
        direction reached (PyTorch's ``h_n`` for this layer).
    """
    # Gates and the carried state stay in at least float32: a bfloat16 state
    # accumulates rounding error over the 64 recurrent steps.
    accum_dtype = jnp.promote_types(compute_dtype, jnp.float32)
    num_steps, batch, _ = x.shape
    hidden = weight_hh.shape[-1]

    # Input projections of every step and both directions: one matmul outside the scan.
    gi = jnp.einsum(
        "tni,dgi->tdng",
        x.astype(compute_dtype),
        weight_ih.astype(compute_dtype),
        preferred_element_type=accum_dtype,
    ) + bias_ih.astype(accum_dtype)[None, :, None, :]
    if reverse_in_time:
        gi = jnp.stack([gi[:, 0], gi[::-1, 1]], axis=1)

    w_hh = jnp.swapaxes(weight_hh, 1, 2).astype(compute_dtype)
    b_hh = bias_hh.astype(accum_dtype)[:, None, :]
    states = recurrence(gi, w_hh, b_hh)
    final = states[-1]
    if reverse_in_time:
        states = jnp.stack([states[:, 0], states[::-1, 1]], axis=1)
    outputs = jnp.transpose(states, (0, 2, 1, 3)).reshape(num_steps, batch, 2 * hidden)
    return outputs, final


def _symmetric_uniform(bound: float) -> jax.nn.initializers.Initializer:
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, minval=-bound, maxval=bound)

    return init


class GRULayer(nnx.Module):
    """Parameters of one GRU layer, both directions stacked on axis 0.

    Index 0 of every parameter is PyTorch's ``*_l{l}`` tensor, index 1 its
    ``*_l{l}_reverse`` tensor, in PyTorch's own orientation.

    Args:
        in_features: input size of the layer.
        hidden_size: H.
        rngs: parameter initialisation keys.
        dtype: compute dtype.
        param_dtype: parameter dtype.
    """

    def __init__(
        self,
        in_features: int,
        hidden_size: int,
        *,
        rngs: nnx.Rngs,
        dtype: jnp.dtype = jnp.float32,
        param_dtype: jnp.dtype = jnp.float32,
    ):
        # The original applies xavier_uniform_ to every 2-D tensor, i.e. per direction;
        # excluding the direction axis from the fans reproduces that.
        xavier = jax.nn.initializers.xavier_uniform(in_axis=-1, out_axis=-2, batch_axis=0)
        # PyTorch's GRU default, left in place by the original for the 1-D biases.
        bias_init = _symmetric_uniform(1.0 / math.sqrt(hidden_size))
        gates = 3 * hidden_size
        self.weight_ih = nnx.Param(xavier(rngs.params(), (2, gates, in_features), param_dtype))
        self.weight_hh = nnx.Param(xavier(rngs.params(), (2, gates, hidden_size), param_dtype))
        self.bias_ih = nnx.Param(bias_init(rngs.params(), (2, gates), param_dtype))
        self.bias_hh = nnx.Param(bias_init(rngs.params(), (2, gates), param_dtype))
        self.dtype = dtype

    def __call__(self, x: jax.Array, *, reverse_in_time: bool) -> tuple[jax.Array, jax.Array]:
        """Applies :func:`gru_layer` with this layer's parameters."""
        return gru_layer(
            x,
            self.weight_ih[...],
            self.weight_hh[...],
            self.bias_ih[...],
            self.bias_hh[...],
            reverse_in_time=reverse_in_time,
            compute_dtype=self.dtype,
        )


class BiGRU(nnx.Module):
    """The ISC sequence encoder: a multi-layer two-direction GRU.

    Input is a clip batch (N, T, M, V, C), flattened per frame by :func:`to_sequence`.

    Modes:
        ``"frame_by_frame"`` (default, the original's behaviour): both directions
        run forward in time; layer l at step t reads [forward, reverse] of layer
        l-1 at step t. Feature = top-layer [forward, reverse] output at the last
        frame.
        ``"bidirectional"``: the reverse direction reads the sequence backwards.
        Feature = PyTorch's ``h_n`` of the top layer, i.e. [forward state after
        frame T-1, reverse state after frame 0]; each half has then seen the whole
        clip, unlike ``output[:, -1]`` whose reverse half has seen one frame.

    Parameter tree (``layers/{l}/...``, stacked over direction d: 0 = forward,
    1 = reverse) and the PyTorch ``encoder.gru.*`` tensor each slice copies from:
        weight_ih (2, 3H, in_l)  <- weight_ih_l{l}, weight_ih_l{l}_reverse
        weight_hh (2, 3H, H)     <- weight_hh_l{l}, weight_hh_l{l}_reverse
        bias_ih   (2, 3H)        <- bias_ih_l{l},   bias_ih_l{l}_reverse
        bias_hh   (2, 3H)        <- bias_hh_l{l},   bias_hh_l{l}_reverse
    with in_0 = input_size and in_l = 2H for l > 0; gate rows ordered r, z, n.

    Args:
        rngs: parameter initialisation keys.
        dtype: compute dtype of the matmuls and of the returned feature.
        param_dtype: parameter dtype.
        input_size: per-frame input size (V * C * M).
        hidden_size: H.
        num_layers: number of stacked layers.
        mode: ``"frame_by_frame"`` or ``"bidirectional"``.

    Raises:
        ValueError: unknown ``mode``.
    """

    def __init__(
        self,
        *,
        rngs: nnx.Rngs,
        dtype: jnp.dtype = jnp.float32,
        param_dtype: jnp.dtype = jnp.float32,
        input_size: int = 150,
        hidden_size: int = 1024,
        num_layers: int = 3,
        mode: str = "frame_by_frame",
    ):
        if mode not in MODES:
            raise ValueError(f"Unknown BiGRU mode {mode!r}; valid modes are {MODES}.")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.mode = mode
        self.dtype = dtype
        self.feature_dim = 2 * hidden_size
        self.layers = nnx.List(
            [
                GRULayer(
                    input_size if layer == 0 else 2 * hidden_size,
                    hidden_size,
                    rngs=rngs,
                    dtype=dtype,
                    param_dtype=param_dtype,
                )
                for layer in range(num_layers)
            ]
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        """Encodes a clip batch.

        Args:
            x: (N, T, M, V, C) with V * C * M == input_size.

        Returns:
            Features (N, 2H) in the compute dtype.

        Raises:
            ValueError: ``x`` is not 5-D or its frames do not flatten to input_size.
        """
        if x.ndim != 5:
            raise ValueError(f"BiGRU expects a clip batch (N, T, M, V, C); got shape {x.shape}.")
        seq = to_sequence(x)
        if seq.shape[-1] != self.input_size:
            raise ValueError(
                f"BiGRU input_size is {self.input_size} but M * V * C of input shape "
                f"{x.shape} is {seq.shape[-1]}."
            )
        reverse_in_time = self.mode == "bidirectional"
        h = jnp.swapaxes(seq, 0, 1)
        for layer in self.layers:
            h, final = layer(h, reverse_in_time=reverse_in_time)
        if reverse_in_time:
            feature = jnp.concatenate([final[0], final[1]], axis=-1)
        else:
            feature = h[-1]
        return feature.astype(self.dtype)
