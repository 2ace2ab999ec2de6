"""Tests of the HCN image encoder against a NumPy float64 transcription of the PyTorch forward."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from skel_jax.models.encoder import count_params
from skel_jax.models.hcn import HCN, temporal_resize_matrix

# Tiny model: 32 frames keep a 2x2 map after the four pools, so the (C, H, W)
# flatten order is exercised.
N, T, M, V, C = 2, 32, 2, 5, 3
OUT = 8
FEATURE = 4 * OUT * (T // 16) ** 2

CONV_NAMES = [("position", k) for k in ("conv1", "conv2", "conv3", "conv4")] + [
    ("motion", k) for k in ("conv1", "conv2", "conv3", "conv4")
]


def _tiny(dtype=jnp.float32, seed=0):
    return HCN(rngs=nnx.Rngs(seed), dtype=dtype, num_joints=V, num_frames=T, out_channels=OUT)


def _randomise_params(model, seed):
    """Random kernels and biases (the init zeroes biases, which would hide bias bugs)."""
    rng = np.random.default_rng(seed)
    state = nnx.state(model, nnx.Param)
    nnx.update(model, jax.tree.map(
        lambda a: jnp.asarray(rng.normal(scale=0.3, size=a.shape), a.dtype), state))


def _clip(seed):
    return np.random.default_rng(seed).normal(size=(N, T, M, V, C)).astype(np.float32)


def _torch_weights(conv):
    """nnx.Conv (kh, kw, in, out) kernel -> PyTorch (out, in, kh, kw), float64."""
    kernel = np.asarray(conv.kernel[...], np.float64).transpose(3, 2, 0, 1)
    return kernel, np.asarray(conv.bias[...], np.float64)


def _conv2d(x, weight_bias, pad):
    """torch.nn.functional.conv2d (cross-correlation), NCHW, stride 1."""
    w, b = weight_bias
    cout, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    ho, wo = xp.shape[2] - kh + 1, xp.shape[3] - kw + 1
    out = np.zeros((x.shape[0], cout, ho, wo)) + b[None, :, None, None]
    for i in range(kh):
        for j in range(kw):
            out += np.einsum("nchw,oc->nohw", xp[:, :, i : i + ho, j : j + wo], w[:, :, i, j])
    return out


def _max_pool2(x):
    n, c, h, w = x.shape
    return x[:, :, : h // 2 * 2, : w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def _source_index(dst, in_size, out_size):
    """PyTorch's area_pixel_compute_source_index (align_corners=False) and neighbours."""
    src = max(in_size / out_size * (dst + 0.5) - 0.5, 0.0)
    lo = int(src)
    step = 1 if lo < in_size - 1 else 0
    frac = src - lo
    return lo, step, 1.0 - frac, frac


def _bilinear(x, out_h, out_w):
    """F.interpolate(x, size=(out_h, out_w), mode='bilinear', align_corners=False), NCHW."""
    n, c, in_h, in_w = x.shape
    out = np.zeros((n, c, out_h, out_w))
    for oh in range(out_h):
        h1, hp, h0l, h1l = _source_index(oh, in_h, out_h)
        for ow in range(out_w):
            w1, wp, w0l, w1l = _source_index(ow, in_w, out_w)
            out[:, :, oh, ow] = (
                h0l * (w0l * x[:, :, h1, w1] + w1l * x[:, :, h1, w1 + wp])
                + h1l * (w0l * x[:, :, h1 + hp, w1] + w1l * x[:, :, h1 + hp, w1 + wp])
            )
    return out


def _numpy_hcn(x_orig, model):
    """The original HCN.forward(x, knn_eval=True) in eval mode, x (N, C, T, V, M) float64."""
    n, c, t, v, m = x_orig.shape
    p = {name: _torch_weights(getattr(getattr(model, s), name)) for s, name in CONV_NAMES
         if s == "position"}
    q = {name: _torch_weights(getattr(getattr(model, s), name)) for s, name in CONV_NAMES
         if s == "motion"}
    w5, w6 = _torch_weights(model.conv5), _torch_weights(model.conv6)
    relu = lambda a: np.maximum(a, 0.0)

    motion = x_orig[:, :, 1:] - x_orig[:, :, :-1]
    motion = motion.transpose(0, 1, 4, 2, 3).reshape(n, c * m, t - 1, v)
    motion = _bilinear(motion, t, v).reshape(n, c, m, t, v).transpose(0, 1, 3, 4, 2)

    def stream(inp, w):
        out = relu(_conv2d(inp, w["conv1"], (0, 0)))
        out = _conv2d(out, w["conv2"], (1, 0))
        out = out.transpose(0, 3, 2, 1)
        out = _max_pool2(_conv2d(out, w["conv3"], (1, 1)))
        return _max_pool2(_conv2d(out, w["conv4"], (1, 1)))

    logits = []
    for i in range(m):
        out = np.concatenate([stream(x_orig[..., i], p), stream(motion[..., i], q)], axis=1)
        out = _max_pool2(relu(_conv2d(out, w5, (1, 1))))
        out = _max_pool2(relu(_conv2d(out, w6, (1, 1))))
        logits.append(out)
    return np.maximum(logits[0], logits[1]).reshape(n, -1)


def test_default_parameter_count_and_layout():
    model = nnx.eval_shape(lambda: HCN(rngs=nnx.Rngs(0)))
    assert count_params(model) == 519_424
    assert model.feature_dim == 4096
    shapes = jax.tree.map(lambda a: a.shape, nnx.state(model, nnx.Param))
    for stream in ("position", "motion"):
        assert shapes[stream]["conv1"]["kernel"] == (1, 1, 3, 64)
        assert shapes[stream]["conv2"]["kernel"] == (3, 1, 64, 64)
        assert shapes[stream]["conv3"]["kernel"] == (3, 3, 25, 32)
        assert shapes[stream]["conv4"]["kernel"] == (3, 3, 32, 64)
    assert shapes["conv5"]["kernel"] == (3, 3, 128, 128)
    assert shapes["conv6"]["kernel"] == (3, 3, 128, 256)
    assert shapes["conv6"]["bias"] == (256,)


def test_default_output_shape():
    x = jax.ShapeDtypeStruct((3, 64, 2, 25, 3), jnp.float32)
    out = jax.eval_shape(lambda x: HCN(rngs=nnx.Rngs(0))(x), x)
    assert out.shape == (3, 4096)
    assert out.dtype == jnp.float32


def test_init_is_xavier_uniform_with_zero_bias():
    model = _tiny()
    for stream, name in CONV_NAMES:
        conv = getattr(getattr(model, stream), name)
        kh, kw, cin, cout = conv.kernel.shape
        bound = np.sqrt(6.0 / ((cin + cout) * kh * kw))
        kernel = np.asarray(conv.kernel[...])
        assert np.abs(kernel).max() <= bound
        assert np.abs(kernel).max() > 0.8 * bound
        np.testing.assert_array_equal(conv.bias[...], 0.0)


def test_temporal_resize_matrix_matches_bilinear():
    a = np.random.default_rng(1).normal(size=(7, 3))
    # Resize along the first axis: treat it as the image height, width kept.
    expected = _bilinear(a[None, None], 12, 3)[0, 0]
    matrix = temporal_resize_matrix(7, 12)
    assert matrix.shape == (12, 7)
    assert matrix.dtype == np.float32
    np.testing.assert_allclose(matrix @ a, expected, rtol=1e-6, atol=1e-6)


def test_forward_matches_numpy_transcription_in_eval_mode():
    model = _tiny()
    _randomise_params(model, 2)
    model.eval()
    x = _clip(3)
    out = model(jnp.asarray(x))
    assert out.shape == (N, FEATURE)
    assert out.dtype == jnp.float32
    expected = _numpy_hcn(x.transpose(0, 4, 1, 3, 2).astype(np.float64), model)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def _dropouts(model):
    return [model.position.dropout, model.motion.dropout, model.dropout5, model.dropout6]


def test_dropout2d_drops_whole_channels_in_train_mode():
    model = _tiny()
    model.train()
    ones = jnp.ones((8, 6, 5, 32))
    for dropout in _dropouts(model):
        y = np.asarray(dropout(ones))
        per_channel = y.transpose(0, 3, 1, 2).reshape(8 * 32, -1)
        # Every (sample, channel) map is entirely dropped or entirely kept (scaled by 2).
        assert np.all(per_channel == per_channel[:, :1])
        assert set(np.unique(per_channel)) == {0.0, 2.0}
        # 256 Bernoulli(0.5) draws: 0.35..0.65 is about five standard deviations.
        assert 0.35 < np.mean(per_channel[:, 0] == 0.0) < 0.65


def test_dropout_is_identity_in_eval_mode():
    model = _tiny()
    model.eval()
    x = jnp.asarray(np.random.default_rng(4).normal(size=(8, 6, 5, 32)), jnp.float32)
    for dropout in _dropouts(model):
        np.testing.assert_array_equal(dropout(x), x)


def test_train_mode_is_stochastic_and_eval_deterministic():
    model = _tiny()
    _randomise_params(model, 5)
    x = jnp.asarray(_clip(6))
    model.train()
    a, b = model(x), model(x)
    assert not np.allclose(a, b)
    model.eval()
    np.testing.assert_array_equal(model(x), model(x))


def test_bfloat16_close_to_float32():
    # bf16 keeps 8 significant bits (rounding error <= 2^-9 per value). Six conv
    # layers each round their input and kernel, accumulate in float32 and round the
    # output; max-pool and ReLU do not amplify errors and independent roundings add
    # roughly in quadrature, so a handful of rounding units is expected (measured
    # about 5e-3). Bound: 2^-5 ~ 3%.
    model32 = _tiny(jnp.float32, seed=7)
    model16 = _tiny(jnp.bfloat16, seed=7)
    model32.eval()
    model16.eval()
    x = jnp.asarray(_clip(8))
    out32, out16 = model32(x), model16(x)
    assert out16.dtype == jnp.bfloat16
    assert out16.shape == out32.shape
    err = np.linalg.norm(np.asarray(out16, np.float32) - out32) / np.linalg.norm(out32)
    assert err < 2.0**-5


def test_jit_split_merge_matches_eager_and_advances_dropout_rng():
    model = _tiny()
    _randomise_params(model, 9)
    x = jnp.asarray(_clip(10))

    # The graphdef holds the static train/eval flags, so it is a static argument.
    @jax.jit(static_argnums=0)
    def forward(graphdef, state, x):
        module = nnx.merge(graphdef, state)
        return module(x), nnx.state(module)

    model.eval()
    graphdef, state = nnx.split(model)
    out, _ = forward(graphdef, state, x)
    np.testing.assert_allclose(out, model(x), rtol=1e-6, atol=1e-6)

    model.train()
    graphdef, state = nnx.split(model)
    first, state = forward(graphdef, state, x)
    second, _ = forward(graphdef, state, x)
    assert not np.allclose(first, second)


@pytest.mark.parametrize(
    "shape, message",
    [
        ((N, T + 1, M, V, C), r"T \(frames\) == 32"),
        ((N, T, 1, V, C), r"M \(persons\) == 2"),
        ((N, T, M, V + 1, C), r"V \(joints\) == 5"),
        ((N, T, M, V, 2), r"C \(coordinates\) == 3"),
        ((T, M, V, C), r"expects a clip batch \(N, T, M, V, C\)"),
    ],
)
def test_wrong_input_shape_raises(shape, message):
    model = _tiny()
    with pytest.raises(ValueError, match=message):
        model(jnp.zeros(shape))


def test_num_frames_not_multiple_of_16_raises():
    with pytest.raises(ValueError, match=r"num_frames must be a positive multiple of 16.*got 40"):
        HCN(rngs=nnx.Rngs(0), num_frames=40)
