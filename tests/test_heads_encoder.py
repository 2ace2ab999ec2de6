"""Tests of the heads, the Encoder wrapper, build_encoder and count_params."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from skel_jax.models.encoder import Encoder, build_encoder, count_params
from skel_jax.models.heads import LinearHead, MLPHead, torch_linear

TINY_SEQ = dict(input_size=24, hidden_size=8, num_layers=2)  # clips (N, T, 2, 4, 3)
TINY_IMAGE = dict(num_joints=4, num_frames=16, out_channels=8)


def _numpy_linear(x, layer):
    """torch.nn.functional.linear with weight = kernel.T, float64."""
    return x @ np.asarray(layer.kernel[...], np.float64) + np.asarray(layer.bias[...], np.float64)


def _features(seed, n=3, d=16):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def test_mlp_head_matches_numpy():
    head = MLPHead(16, hidden_features=12, out_features=5, rngs=nnx.Rngs(0))
    x = _features(1)
    out = head(jnp.asarray(x))
    assert out.shape == (3, 5)
    assert out.dtype == jnp.float32
    hidden = np.maximum(_numpy_linear(x.astype(np.float64), head.hidden), 0.0)
    np.testing.assert_allclose(out, _numpy_linear(hidden, head.output), rtol=1e-5, atol=1e-6)


def test_mlp_head_defaults_and_layout():
    head = nnx.eval_shape(lambda: MLPHead(2048, rngs=nnx.Rngs(0)))
    shapes = jax.tree.map(lambda a: a.shape, nnx.state(head, nnx.Param))
    assert shapes["hidden"]["kernel"] == (2048, 2048)
    assert shapes["hidden"]["bias"] == (2048,)
    assert shapes["output"]["kernel"] == (2048, 128)
    assert shapes["output"]["bias"] == (128,)


def test_mlp_head_bfloat16():
    head32 = MLPHead(16, rngs=nnx.Rngs(2))
    head16 = MLPHead(16, rngs=nnx.Rngs(2), dtype=jnp.bfloat16)
    x = jnp.asarray(_features(3))
    out32, out16 = head32(x), head16(x)
    assert out16.dtype == jnp.bfloat16
    # Two bf16 layers: operands and outputs rounded (<= 2^-9 each), float32
    # accumulation; a few rounding units, bound 2^-6.
    err = np.linalg.norm(np.asarray(out16, np.float32) - out32) / np.linalg.norm(out32)
    assert err < 2.0**-6


def test_torch_linear_init_bounds():
    fan_in = 64
    layer = torch_linear(fan_in, 256, rngs=nnx.Rngs(4))
    bound = 1.0 / np.sqrt(fan_in)
    for values in (np.asarray(layer.kernel[...]), np.asarray(layer.bias[...])):
        assert np.abs(values).max() <= bound
        assert np.abs(values).max() > 0.95 * bound


def test_mlp_head_uses_torch_init_per_layer():
    head = MLPHead(64, hidden_features=400, rngs=nnx.Rngs(5))
    # The output layer's fan-in is the hidden size, not the input size.
    for layer, fan_in in ((head.hidden, 64), (head.output, 400)):
        kernel = np.asarray(layer.kernel[...])
        assert np.abs(kernel).max() <= 1.0 / np.sqrt(fan_in)
        assert np.abs(kernel).max() > 0.95 / np.sqrt(fan_in)


def _head_layer_stats(output_init, in_features=256, hidden=256, out=128, seed=11):
    head = MLPHead(in_features, hidden_features=hidden, out_features=out, rngs=nnx.Rngs(seed),
                   output_init=output_init)
    return (np.asarray(head.hidden.kernel[...]), np.asarray(head.output.kernel[...]),
            np.asarray(head.output.bias[...]))


def test_mlp_head_agcn_output_init():
    hidden_kernel, kernel, bias = _head_layer_stats("agcn")
    # AGCN's fc: N(0, 2 / num_class) with num_class = 128, i.e. std 0.125 whatever the fan-in;
    # 32768 draws put the sample std within 2% with overwhelming odds.
    assert abs(kernel.std() - 0.125) < 0.0025
    assert abs(kernel.mean()) < 0.0025
    # The bias keeps PyTorch's default U(-1/sqrt(256), 1/sqrt(256)).
    assert 0.95 / 16 < np.abs(bias).max() <= 1 / 16
    # The hidden layer is always PyTorch's default.
    assert 0.95 / 16 < np.abs(hidden_kernel).max() <= 1 / 16


def test_mlp_head_xavier_output_inits():
    bound = np.sqrt(6.0 / (300 + 128))  # xavier-uniform with fan-in 300, fan-out 128
    for output_init, zero_bias in (("xavier", False), ("xavier_zero_bias", True)):
        _, kernel, bias = _head_layer_stats(output_init, hidden=300)
        assert 0.98 * bound < np.abs(kernel).max() <= bound
        if zero_bias:  # HCN's weights_init
            np.testing.assert_array_equal(bias, 0.0)
        else:  # BiGRU's weights_init_gru leaves 1-D parameters at PyTorch's default
            assert 0.9 / np.sqrt(300) < np.abs(bias).max() <= 1 / np.sqrt(300)


def test_mlp_head_unknown_output_init_raises():
    with pytest.raises(ValueError, match=r"Unknown MLPHead output_init 'zeros'.*'agcn'"):
        MLPHead(4, rngs=nnx.Rngs(0), output_init="zeros")


@pytest.mark.parametrize("representation, kwargs", [
    ("seq", TINY_SEQ),
    ("image", TINY_IMAGE),
    ("graph", dict(channels=(8, 8, 16), strides=(1, 2, 1))),
])
def test_build_encoder_initialises_the_output_layer_like_the_original(representation, kwargs):
    if representation == "graph":
        pytest.importorskip("skel_jax.models.agcn")
    encoder = build_encoder(representation, head="mlp", rngs=nnx.Rngs(12), **kwargs)
    kernel = np.asarray(encoder.head.output.kernel[...])
    bias = np.asarray(encoder.head.output.bias[...])
    fan_in = kernel.shape[0]
    if representation == "graph":
        assert abs(kernel.std() - 0.125) < 0.01
    else:
        bound = np.sqrt(6.0 / (fan_in + 128))  # xavier-uniform, not PyTorch's 1/sqrt(fan_in)
        assert 0.95 * bound < np.abs(kernel).max() <= bound
    assert (np.abs(bias).max() == 0.0) == (representation == "image")


def test_linear_head_normal_init_and_forward():
    head = LinearHead(256, 64, rngs=nnx.Rngs(6))
    kernel = np.asarray(head.linear.kernel[...])
    # 16384 draws of N(0, 0.01^2): the sample std is within 3% with overwhelming odds.
    assert abs(kernel.std() - 0.01) < 3e-4
    assert abs(kernel.mean()) < 3e-4
    np.testing.assert_array_equal(head.linear.bias[...], 0.0)
    x = _features(7, d=256)
    out = head(jnp.asarray(x))
    assert out.shape == (3, 64)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out, _numpy_linear(x.astype(np.float64), head.linear),
                               rtol=1e-5, atol=1e-6)


def test_linear_head_torch_init():
    head = LinearHead(100, 50, rngs=nnx.Rngs(8), init="torch")
    bias = np.asarray(head.linear.bias[...])
    assert np.abs(bias).max() <= 0.1
    assert np.abs(bias).max() > 0.08
    assert np.abs(np.asarray(head.linear.kernel[...])).max() <= 0.1


def test_linear_head_unknown_init_raises():
    with pytest.raises(ValueError, match=r"Unknown LinearHead init 'zeros'.*'normal', 'torch'"):
        LinearHead(4, 2, rngs=nnx.Rngs(0), init="zeros")


@pytest.mark.parametrize(
    "representation, head, expected",
    [
        ("seq", "mlp", 49_457_280),
        ("seq", None, 44_998_656),
        ("image", "mlp", 17_825_152),
        ("image", None, 519_424),
        ("seq", "linear", 44_998_656 + 2048 * 60 + 60),
        ("image", "linear", 519_424 + 4096 * 120 + 120),
    ],
)
def test_full_size_parameter_counts(representation, head, expected):
    num_classes = None if head != "linear" else (60 if representation == "seq" else 120)
    encoder = nnx.eval_shape(lambda: build_encoder(
        representation, head=head, num_classes=num_classes, rngs=nnx.Rngs(0)))
    assert count_params(encoder) == expected


def test_graph_encoder_parameter_count():
    pytest.importorskip("skel_jax.models.agcn")
    encoder = nnx.eval_shape(lambda: build_encoder("graph", head="mlp", rngs=nnx.Rngs(0)))
    assert encoder.feature_dim == 256
    assert count_params(encoder) == 3_552_778


def test_count_params_ignores_non_param_state():
    # BatchNorm(4): scale and bias are Params (8); running mean/var are BatchStats.
    assert count_params(nnx.BatchNorm(4, rngs=nnx.Rngs(0))) == 8
    # HCN's dropout RNG state is not counted either.
    model = nnx.eval_shape(lambda: build_encoder("image", head=None, rngs=nnx.Rngs(0)))
    assert count_params(model) == 519_424


@pytest.mark.parametrize(
    "representation, kwargs, clip_shape, feature_dim",
    [
        ("seq", TINY_SEQ, (3, 5, 2, 4, 3), 16),
        ("image", TINY_IMAGE, (3, 16, 2, 4, 3), 32),
    ],
)
def test_encoder_outputs(representation, kwargs, clip_shape, feature_dim):
    x = jnp.asarray(np.random.default_rng(9).normal(size=clip_shape), jnp.float32)
    encoder = build_encoder(representation, head="mlp", rngs=nnx.Rngs(0), **kwargs)
    encoder.eval()
    assert encoder.feature_dim == feature_dim
    features, projection = encoder(x)
    assert features.shape == (3, feature_dim)
    assert features.dtype == jnp.float32
    assert projection.shape == (3, 128)
    np.testing.assert_allclose(projection, encoder.head(encoder.backbone(x)), rtol=1e-6)

    bare = build_encoder(representation, head=None, rngs=nnx.Rngs(0), **kwargs)
    bare.eval()
    bare_features, none = bare(x)
    assert none is None
    np.testing.assert_allclose(bare_features, features, rtol=1e-6)

    linear = build_encoder(representation, head="linear", num_classes=7,
                           rngs=nnx.Rngs(0), dtype=jnp.bfloat16, **kwargs)
    linear.eval()
    features16, logits = linear(x)
    assert features16.dtype == jnp.bfloat16
    assert logits.shape == (3, 7)
    assert logits.dtype == jnp.bfloat16


def test_encoder_jit_split_merge_matches_eager():
    encoder = build_encoder("seq", head="mlp", rngs=nnx.Rngs(1), **TINY_SEQ)
    graphdef, state = nnx.split(encoder)

    @jax.jit
    def forward(state, x):
        return nnx.merge(graphdef, state)(x)

    x = jnp.asarray(np.random.default_rng(10).normal(size=(3, 5, 2, 4, 3)), jnp.float32)
    for got, want in zip(forward(state, x), encoder(x)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_encoder_wraps_given_modules():
    backbone = build_encoder("seq", head=None, rngs=nnx.Rngs(2), **TINY_SEQ).backbone
    head = LinearHead(16, 3, rngs=nnx.Rngs(3))
    encoder = Encoder(backbone, head)
    assert encoder.backbone is backbone
    assert encoder.head is head
    assert encoder.feature_dim == 16


@pytest.mark.parametrize(
    "args, message",
    [
        (dict(representation="skeleton", head="mlp"),
         r"Unknown representation 'skeleton'.*'seq', 'graph', 'image'"),
        (dict(representation="seq", head="conv"),
         r"Unknown head 'conv'.*'mlp', 'linear', None"),
        (dict(representation="seq", head="linear"),
         r"head='linear' needs a positive num_classes; got None"),
        (dict(representation="seq", head="linear", num_classes=0),
         r"head='linear' needs a positive num_classes; got 0"),
        (dict(representation="seq", head="mlp", num_classes=60),
         r"num_classes is only used with head='linear'; got head='mlp'"),
        (dict(representation="seq", head=None, num_classes=60),
         r"num_classes is only used with head='linear'; got head=None"),
    ],
)
def test_build_encoder_errors(args, message):
    representation = args.pop("representation")
    with pytest.raises(ValueError, match=message):
        build_encoder(representation, rngs=nnx.Rngs(0), **args, **TINY_SEQ)
