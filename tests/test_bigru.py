"""Tests of the BiGRU sequence encoder against NumPy float64 transcriptions of PyTorch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from skel_jax.models.bigru import BiGRU, gru_update, to_sequence
from skel_jax.models.encoder import count_params

# Tiny model: V=4 joints, C=3, M=2 -> 24 inputs; hidden 8; 3 layers; 6 frames.
N, T, M, V, C = 2, 6, 2, 4, 3
HIDDEN = 8
LAYERS = 3


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _torch_gru_cell(x, h, w_ih, w_hh, b_ih, b_hh):
    """torch.nn.GRU's documented cell, float64: gate rows r, z, n."""
    hid = h.shape[-1]
    gi = x @ w_ih.T + b_ih
    gh = h @ w_hh.T + b_hh
    r = _sigmoid(gi[:, :hid] + gh[:, :hid])
    z = _sigmoid(gi[:, hid : 2 * hid] + gh[:, hid : 2 * hid])
    n = np.tanh(gi[:, 2 * hid :] + r * gh[:, 2 * hid :])
    return (1 - z) * n + z * h


def _numpy_params(model):
    """Per layer, per direction: (w_ih, w_hh, b_ih, b_hh) as float64 PyTorch tensors."""
    params = []
    for layer in model.layers:
        variables = (layer.weight_ih, layer.weight_hh, layer.bias_ih, layer.bias_hh)
        tensors = [np.asarray(v[...], np.float64) for v in variables]
        params.append([tuple(t[d] for t in tensors) for d in range(2)])
    return params


def _clip(seed, shape=(N, T, M, V, C)):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _numpy_sequence(x):
    n, t, m, v, c = x.shape
    seq = np.zeros((n, t, v * c * m), x.dtype)
    for i in range(n):
        for f in range(t):
            for j in range(v):
                for k in range(c):
                    for p in range(m):
                        seq[i, f, 6 * j + 2 * k + p] = x[i, f, p, j, k]
    return seq


def _numpy_frame_by_frame(seq, params):
    """The original EncoderRNN: the GRU is called on one frame at a time, state carried."""
    n, t, _ = seq.shape
    h = [[np.zeros((n, HIDDEN)) for _ in range(2)] for _ in params]
    for f in range(t):
        inp = seq[:, f].astype(np.float64)
        for layer, dirs in enumerate(params):
            # A one-step sequence: the reverse direction also takes exactly this step.
            for d in range(2):
                h[layer][d] = _torch_gru_cell(inp, h[layer][d], *dirs[d])
            inp = np.concatenate([h[layer][0], h[layer][1]], axis=-1)
        out_last = inp
    return out_last


def _numpy_bidirectional(seq, params):
    """torch.nn.GRU(bidirectional=True) on the whole sequence.

    Returns the top layer's [h_n forward, h_n reverse].
    """
    n, t, _ = seq.shape
    inp = seq.astype(np.float64)
    for dirs in params:
        fwd = np.zeros((n, t, HIDDEN))
        rev = np.zeros((n, t, HIDDEN))
        h = np.zeros((n, HIDDEN))
        for f in range(t):
            h = _torch_gru_cell(inp[:, f], h, *dirs[0])
            fwd[:, f] = h
        h_fwd = h
        h = np.zeros((n, HIDDEN))
        for f in reversed(range(t)):
            h = _torch_gru_cell(inp[:, f], h, *dirs[1])
            rev[:, f] = h
        h_rev = h
        inp = np.concatenate([fwd, rev], axis=-1)
    return np.concatenate([h_fwd, h_rev], axis=-1)


def _tiny(mode="frame_by_frame", dtype=jnp.float32, seed=0):
    return BiGRU(rngs=nnx.Rngs(seed), dtype=dtype, input_size=M * V * C,
                 hidden_size=HIDDEN, num_layers=LAYERS, mode=mode)


def test_default_parameter_count_and_layout():
    model = nnx.eval_shape(lambda: BiGRU(rngs=nnx.Rngs(0)))
    assert count_params(model) == 44_998_656
    assert model.feature_dim == 2048
    shapes = jax.tree.map(lambda a: a.shape, nnx.state(model, nnx.Param))
    for layer in range(3):
        in_size = 150 if layer == 0 else 2048
        assert shapes["layers"][layer]["weight_ih"] == (2, 3072, in_size)
        assert shapes["layers"][layer]["weight_hh"] == (2, 3072, 1024)
        assert shapes["layers"][layer]["bias_ih"] == (2, 3072)
        assert shapes["layers"][layer]["bias_hh"] == (2, 3072)


def test_default_output_shape():
    x = jax.ShapeDtypeStruct((4, 64, 2, 25, 3), jnp.float32)
    out = jax.eval_shape(lambda x: BiGRU(rngs=nnx.Rngs(0))(x), x)
    assert out.shape == (4, 2048)
    assert out.dtype == jnp.float32


def test_to_sequence_matches_index_loop():
    x = _clip(1, (2, 3, 2, 25, 3))
    seq = to_sequence(jnp.asarray(x))
    assert seq.shape == (2, 3, 150)
    assert seq.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(seq), _numpy_sequence(x))


def test_gru_update_matches_torch_cell():
    rng = np.random.default_rng(2)
    hid, inp = 5, 7
    x, h = rng.normal(size=(3, inp)), rng.normal(size=(3, hid))
    w_ih, w_hh = rng.normal(size=(3 * hid, inp)), rng.normal(size=(3 * hid, hid))
    b_ih, b_hh = rng.normal(size=3 * hid), rng.normal(size=3 * hid)
    gi = jnp.asarray(x @ w_ih.T + b_ih, jnp.float32)
    gh = jnp.asarray(h @ w_hh.T + b_hh, jnp.float32)
    out = gru_update(gi, gh, jnp.asarray(h, jnp.float32))
    assert out.shape == (3, hid)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out, _torch_gru_cell(x, h, w_ih, w_hh, b_ih, b_hh),
                               rtol=1e-5, atol=1e-6)


def test_frame_by_frame_matches_per_frame_loop():
    model = _tiny("frame_by_frame")
    x = _clip(3)
    out = model(jnp.asarray(x))
    assert out.shape == (N, 2 * HIDDEN)
    assert out.dtype == jnp.float32
    expected = _numpy_frame_by_frame(_numpy_sequence(x), _numpy_params(model))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_bidirectional_matches_numpy_bidirectional_gru():
    model = _tiny("bidirectional")
    x = _clip(4)
    out = model(jnp.asarray(x))
    assert out.shape == (N, 2 * HIDDEN)
    assert out.dtype == jnp.float32
    expected = _numpy_bidirectional(_numpy_sequence(x), _numpy_params(model))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_init_bounds_per_direction():
    hidden, in_size = 16, 24
    model = BiGRU(rngs=nnx.Rngs(5), input_size=in_size, hidden_size=hidden, num_layers=2)
    for layer, layer_in in zip(model.layers, (in_size, 2 * hidden)):
        for weight, fan_in in ((layer.weight_ih[...], layer_in), (layer.weight_hh[...], hidden)):
            bound = np.sqrt(6.0 / (fan_in + 3 * hidden))  # xavier on each (3H, fan_in) tensor
            for d in range(2):
                w = np.asarray(weight[d])
                assert np.abs(w).max() <= bound
                assert np.abs(w).max() > 0.95 * bound
                assert abs(w.mean()) < 0.1 * bound
            assert not np.array_equal(weight[0], weight[1])
        for bias in (layer.bias_ih[...], layer.bias_hh[...]):
            b = np.asarray(bias)
            assert np.abs(b).max() <= 1 / np.sqrt(hidden)
            assert np.abs(b).max() > 0.8 / np.sqrt(hidden)


def test_bfloat16_close_to_float32():
    # bf16 keeps 8 significant bits: each rounding is a relative error <= 2^-9. The
    # matmul operands (inputs, weights, hidden state) and the returned feature are
    # rounded; accumulation, gates and the carried state stay float32, and the
    # saturating gates do not amplify errors, so the feature is off by a few rounding
    # units (about 3e-3 measured). Bound: 4 units of 2^-8, i.e. 2^-6 ~ 1.6%.
    model32 = _tiny(dtype=jnp.float32, seed=6)
    model16 = _tiny(dtype=jnp.bfloat16, seed=6)
    x = jnp.asarray(_clip(7))
    out32, out16 = model32(x), model16(x)
    assert out16.dtype == jnp.bfloat16
    assert out16.shape == out32.shape
    err = np.linalg.norm(np.asarray(out16, np.float32) - out32) / np.linalg.norm(out32)
    assert err < 2.0**-6


@pytest.mark.parametrize("mode", ["frame_by_frame", "bidirectional"])
def test_jit_split_merge_matches_eager(mode):
    model = _tiny(mode)
    graphdef, state = nnx.split(model)

    @jax.jit
    def forward(state, x):
        return nnx.merge(graphdef, state)(x)

    x = jnp.asarray(_clip(8))
    np.testing.assert_allclose(forward(state, x), model(x), rtol=1e-6, atol=1e-6)


def test_modes_give_different_features():
    # Same parameters, different time direction in the reverse half.
    model = _tiny("frame_by_frame")
    graphdef, state = nnx.split(model)
    other = nnx.merge(graphdef, state)
    other.mode = "bidirectional"
    x = jnp.asarray(_clip(9))
    assert not np.allclose(model(x), other(x), atol=1e-3)


def test_unknown_mode_raises():
    with pytest.raises(ValueError, match=r"Unknown BiGRU mode 'backwards'.*frame_by_frame"):
        BiGRU(rngs=nnx.Rngs(0), hidden_size=4, num_layers=1, mode="backwards")


def test_wrong_input_size_raises():
    model = _tiny()
    with pytest.raises(ValueError, match=r"input_size is 24 but M \* V \* C .* is 30"):
        model(jnp.zeros((N, T, M, 5, C)))


def test_wrong_rank_raises():
    model = _tiny()
    with pytest.raises(ValueError, match=r"expects a clip batch \(N, T, M, V, C\)"):
        model(jnp.zeros((N, T, M * V * C)))
