"""Tests for the AGCN backbone against a float64 NumPy transcription of 2s-AGCN's PyTorch code.

The reference works in PyTorch's NCHW layout with weights copied from the Flax modules through
the key mapping documented in ``AGCN``, so the tests also pin that mapping down for the importer.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from skel_jax.models import graph
from skel_jax.models.agcn import AGCN, TCNGCNUnit, UnitGCN, UnitTCN
from skel_jax.models.layers import BatchNorm
from tests.test_layers import f64, np_conv2d, to_nchw

SMALL = dict(channels=(8, 8, 16, 16, 16), strides=(1, 2, 1, 1, 2))

# ----------------------------------------------------------------------------- NumPy reference


def np_bn(x, p, training):
    """PyTorch BatchNorm{1,2}d on NC... input; updates p's running stats in training mode."""
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    if training:
        mean, var = x.mean(axis=axes), x.var(axis=axes)
        n = x.size // x.shape[1]
        p["running_mean"] = 0.9 * p["running_mean"] + 0.1 * mean
        p["running_var"] = 0.9 * p["running_var"] + 0.1 * var * n / (n - 1)
    else:
        mean, var = p["running_mean"], p["running_var"]
    y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + 1e-5)
    return y * p["weight"].reshape(shape) + p["bias"].reshape(shape)


def np_softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def relu(x):
    return np.maximum(x, 0.0)


def np_unit_tcn(x, p, stride, training):
    k = p["conv.weight"].shape[2]
    y = np_conv2d(x, p["conv.weight"], p["conv.bias"], (stride, 1), ((k - 1) // 2, 0))
    return np_bn(y, p["bn"], training)


def np_unit_gcn(x, p, a, training):
    n, c, t, v = x.shape
    a = a + p["PA"]
    y = None
    for i in range(len(p["conv_a"])):
        inter_c = p["conv_a"][i][0].shape[0]
        a1 = np_conv2d(x, *p["conv_a"][i]).transpose(0, 3, 1, 2).reshape(n, v, inter_c * t)
        a2 = np_conv2d(x, *p["conv_b"][i]).reshape(n, inter_c * t, v)
        a1 = np_softmax(a1 @ a2 / a1.shape[-1], axis=-2)
        a1 = a1 + a[i]
        a2 = x.reshape(n, c * t, v)
        z = np_conv2d((a2 @ a1).reshape(n, c, t, v), *p["conv_d"][i])
        y = z if y is None else y + z
    y = np_bn(y, p["bn"], training)
    if p["down"] is None:
        y = y + x
    else:
        y = y + np_bn(np_conv2d(x, p["down"]["0.weight"], p["down"]["0.bias"]), p["down"]["1"],
                      training)
    return relu(y)


def np_tcn_gcn_unit(x, p, a, out_c, stride, residual, training):
    y = np_unit_tcn(np_unit_gcn(x, p["gcn1"], a, training), p["tcn1"], stride, training)
    if not residual:
        res = 0.0
    elif x.shape[1] == out_c and stride == 1:
        res = x
    else:
        res = np_unit_tcn(x, p["residual"], stride, training)
    return relu(y + res)


def np_model(x, p, a, channels, strides, training):
    n, c, t, v, m = x.shape
    x = x.transpose(0, 4, 3, 1, 2).reshape(n, m * v * c, t)
    x = np_bn(x, p["data_bn"], training)
    x = x.reshape(n, m, v, c, t).transpose(0, 1, 3, 4, 2).reshape(n * m, c, t, v)
    for i, (out_c, stride) in enumerate(zip(channels, strides)):
        x = np_tcn_gcn_unit(x, p[f"l{i + 1}"], a, out_c, stride, i > 0, training)
    c_new = x.shape[1]
    return x.reshape(n, m, c_new, -1).mean(3).mean(1)


# ----------------------------------------------------------------------------- weight export


def torch_bn(bn):
    return {"weight": f64(bn.scale), "bias": f64(bn.bias),
            "running_mean": f64(bn.running_mean), "running_var": f64(bn.running_var)}


def torch_tcn(unit):
    # kernel (k, in, out) -> Conv2d weight (out, in, k, 1).
    return {"conv.weight": f64(unit.conv.kernel).transpose(2, 1, 0)[..., None],
            "conv.bias": f64(unit.conv.bias), "bn": torch_bn(unit.bn)}


def torch_subset(conv):
    # kernel (S, in, out) -> S Conv2d weights (out, in, 1, 1).
    return [(f64(conv.kernel)[s].T[:, :, None, None], f64(conv.bias)[s])
            for s in range(conv.kernel[...].shape[0])]


def torch_gcn(gcn):
    down = None
    if gcn.down is not None:
        down = {"0.weight": f64(gcn.down.conv.kernel).transpose(2, 1, 0)[..., None],
                "0.bias": f64(gcn.down.conv.bias), "1": torch_bn(gcn.down.bn)}
    return {"PA": f64(gcn.PA), "conv_a": torch_subset(gcn.conv_a),
            "conv_b": torch_subset(gcn.conv_b), "conv_d": torch_subset(gcn.conv_d),
            "bn": torch_bn(gcn.bn), "down": down}


def torch_unit(unit):
    return {"gcn1": torch_gcn(unit.gcn1), "tcn1": torch_tcn(unit.tcn1),
            "residual": None if unit.residual is None else torch_tcn(unit.residual)}


def torch_model(model):
    p = {"data_bn": torch_bn(model.data_bn)}
    p.update({f"l{i + 1}": torch_unit(u) for i, u in enumerate(model.layers)})
    return p


def running_stats(p, prefix=""):
    """Flattens every running_mean / running_var of a reference parameter dict."""
    out = {}
    items = enumerate(p) if isinstance(p, list) else p.items()
    for key, value in items:
        name = f"{prefix}.{key}"
        if isinstance(value, (dict, list)):
            out.update(running_stats(value, name))
        elif str(key).startswith("running_"):
            out[name] = value
    return out


def assert_running_stats_equal(model_params, ref_params):
    ours, ref = running_stats(model_params), running_stats(ref_params)
    assert ours.keys() == ref.keys()
    for key in ref:
        np.testing.assert_allclose(ours[key], ref[key], rtol=1e-5, atol=1e-6, err_msg=key)


# ----------------------------------------------------------------------------- helpers


def randomize(module, seed):
    """Gives every BatchNorm, bias and PA a nontrivial value; kernels keep their random init."""
    rng = np.random.default_rng(seed)
    for path, var in nnx.iter_graph(module):
        if not isinstance(var, nnx.Variable):
            continue
        name, shape, dtype = path[-1], var[...].shape, var[...].dtype
        if name == "running_var" or name == "scale":
            value = rng.uniform(0.5, 1.5, shape)
        elif name in ("running_mean", "bias", "PA"):
            value = rng.normal(0.0, 0.3, shape)
        else:
            continue
        var[...] = jnp.asarray(value, dtype)
    return module


def batch_norms(module):
    return [m for _, m in nnx.iter_graph(module) if isinstance(m, BatchNorm)]


def random_adjacency(num_joints, seed):
    return np.random.default_rng(seed).uniform(0.0, 0.5, (3, num_joints, num_joints)).astype(
        np.float32)


def to_original_layout(x):
    """(N, T, M, V, C) -> the original's (N, C, T, V, M)."""
    return np.asarray(x, np.float64).transpose(0, 4, 1, 3, 2)


def clip_batch(n=2, t=8, seed=0):
    return np.random.default_rng(seed).normal(size=(n, t, 2, 25, 3)).astype(np.float32)


def set_mode(module, training):
    if training:
        module.train()
    else:
        module.eval()
    return module


# ----------------------------------------------------------------------------- structure


def test_parameter_count_matches_the_original():
    model = nnx.eval_shape(lambda: AGCN(rngs=nnx.Rngs(0)))
    params = jax.tree.leaves(nnx.state(model, nnx.Param))
    stats = jax.tree.leaves(nnx.state(model, nnx.BatchStat))
    assert sum(math.prod(p.shape) for p in params) == 3_454_090
    # Running mean + var of every BatchNorm: 2 * (150 + 3648 channels).
    assert sum(math.prod(s.shape) for s in stats) == 7_596
    # The fixed adjacency is not state: parameters and batch statistics are everything.
    assert len(jax.tree.leaves(nnx.state(model))) == len(params) + len(stats)
    assert model.feature_dim == 256


def test_parameter_tree_layout_at_default_size():
    model = nnx.eval_shape(lambda: AGCN(rngs=nnx.Rngs(0)))
    shapes = {"/".join(map(str, path)): v.shape
              for path, v in nnx.to_flat_state(nnx.state(model))}
    assert shapes["data_bn/scale"] == (150,)
    assert shapes["layers/0/gcn1/PA"] == (3, 25, 25)
    assert shapes["layers/0/gcn1/conv_a/kernel"] == (3, 3, 16)
    assert shapes["layers/0/gcn1/conv_d/kernel"] == (3, 3, 64)
    assert shapes["layers/0/gcn1/down/conv/kernel"] == (1, 3, 64)
    assert shapes["layers/0/tcn1/conv/kernel"] == (9, 64, 64)
    assert shapes["layers/4/residual/conv/kernel"] == (1, 64, 128)
    assert shapes["layers/7/gcn1/conv_b/bias"] == (3, 64)
    assert shapes["layers/9/tcn1/bn/running_var"] == (256,)
    with_down = [i for i, u in enumerate(model.layers) if u.gcn1.down is not None]
    with_projection = [i for i, u in enumerate(model.layers) if u.residual is not None]
    assert with_down == [0, 4, 7]
    assert with_projection == [4, 7]
    assert not model.layers[0].has_residual and all(u.has_residual for u in model.layers[1:])


def test_initialisation_follows_the_original():
    unit = TCNGCNUnit(64, 128, stride=2, rngs=nnx.Rngs(0))
    gcn = unit.gcn1
    np.testing.assert_array_equal(f64(gcn.PA), np.full((3, 25, 25), np.float32(1e-6)))
    np.testing.assert_array_equal(f64(gcn.bn.scale), np.full(128, np.float32(1e-6)))
    for bn in (gcn.down.bn, unit.tcn1.bn, unit.residual.bn):
        np.testing.assert_array_equal(f64(bn.scale), np.ones(128))
    for bn in batch_norms(unit):
        np.testing.assert_array_equal(f64(bn.bias), np.zeros(bn.num_features))
        np.testing.assert_array_equal(f64(bn.running_mean), np.zeros(bn.num_features))
        np.testing.assert_array_equal(f64(bn.running_var), np.ones(bn.num_features))
    for conv in (gcn.conv_a, gcn.conv_b, gcn.conv_d, gcn.down.conv, unit.tcn1.conv,
                 unit.residual.conv):
        np.testing.assert_array_equal(f64(conv.bias), np.zeros(conv.bias[...].shape))
    # conv_branch_init: normal(0, sqrt(2 / (out * in * 1 * 1 * branches))).
    np.testing.assert_allclose(f64(gcn.conv_d.kernel).std(), math.sqrt(2 / (128 * 64 * 3)),
                               rtol=0.02)
    # kaiming_normal fan_out: sqrt(2 / (out * kh * kw)).
    np.testing.assert_allclose(f64(gcn.conv_a.kernel).std(), math.sqrt(2 / 32), rtol=0.03)
    np.testing.assert_allclose(f64(unit.tcn1.conv.kernel).std(), math.sqrt(2 / (128 * 9)),
                               rtol=0.02)
    np.testing.assert_allclose(f64(gcn.down.conv.kernel).std(), math.sqrt(2 / 128), rtol=0.03)


# ----------------------------------------------------------------------------- units vs reference


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("stride", [1, 2])
def test_unit_tcn_matches_reference(training, stride):
    unit = set_mode(randomize(UnitTCN(4, 6, stride=stride, rngs=nnx.Rngs(0)), 1), training)
    ref_p = torch_tcn(unit)
    x = np.random.default_rng(2).normal(size=(3, 7, 5, 4)).astype(np.float32)
    ref = np_unit_tcn(to_nchw(x), ref_p, stride, training)
    y = unit(jnp.asarray(x))
    assert y.shape == (3, (7 - 1) // stride + 1, 5, 6) and y.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(y), np.moveaxis(ref, 1, -1), rtol=2e-5, atol=2e-5)
    assert_running_stats_equal(torch_tcn(unit), ref_p)


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("in_c,out_c", [(8, 8), (3, 8)])
def test_unit_gcn_matches_reference(training, in_c, out_c):
    gcn = UnitGCN(in_c, out_c, num_joints=6, rngs=nnx.Rngs(0))
    gcn = set_mode(randomize(gcn, 1), training)
    assert (gcn.down is None) == (in_c == out_c)
    ref_p = torch_gcn(gcn)
    adjacency = random_adjacency(6, 2)
    x = np.random.default_rng(3).normal(size=(2, 5, 6, in_c)).astype(np.float32)
    ref = np_unit_gcn(to_nchw(x), ref_p, adjacency.astype(np.float64), training)
    y = gcn(jnp.asarray(x), adjacency)
    assert y.shape == (2, 5, 6, out_c) and y.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(y), np.moveaxis(ref, 1, -1), rtol=2e-5, atol=2e-5)
    assert_running_stats_equal(torch_gcn(gcn), ref_p)


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize(
    "in_c,out_c,stride,residual,kind",
    [(4, 8, 1, False, "none"), (8, 8, 1, True, "identity"), (8, 8, 2, True, "projection"),
     (4, 8, 1, True, "projection")],
)
def test_tcn_gcn_unit_matches_reference(training, in_c, out_c, stride, residual, kind):
    unit = TCNGCNUnit(in_c, out_c, stride=stride, residual=residual, num_joints=6,
                      rngs=nnx.Rngs(0))
    unit = set_mode(randomize(unit, 1), training)
    assert (unit.residual is not None) == (kind == "projection")
    ref_p = torch_unit(unit)
    adjacency = random_adjacency(6, 2)
    x = np.random.default_rng(3).normal(size=(2, 7, 6, in_c)).astype(np.float32)
    ref = np_tcn_gcn_unit(to_nchw(x), ref_p, adjacency.astype(np.float64), out_c, stride,
                          residual, training)
    y = unit(jnp.asarray(x), adjacency)
    assert y.shape == (2, (7 - 1) // stride + 1, 6, out_c) and y.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(y), np.moveaxis(ref, 1, -1), rtol=2e-5, atol=2e-5)
    assert_running_stats_equal(torch_unit(unit), ref_p)


# ----------------------------------------------------------------------------- whole model


@pytest.mark.parametrize("training", [False, True])
def test_agcn_matches_reference(training):
    model = set_mode(randomize(AGCN(rngs=nnx.Rngs(0), **SMALL), 1), training)
    ref_p = torch_model(model)
    x = clip_batch()
    ref = np_model(to_original_layout(x), ref_p, graph.spatial_adjacency().astype(np.float64),
                   SMALL["channels"], SMALL["strides"], training)
    y = model(jnp.asarray(x))
    assert y.shape == (2, 16) and y.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(y), ref, rtol=2e-5, atol=2e-5)
    assert_running_stats_equal(torch_model(model), ref_p)


def test_train_mode_uses_batch_statistics_and_eval_mode_running_statistics():
    model = randomize(AGCN(rngs=nnx.Rngs(0), **SMALL), 1)
    norms = batch_norms(model)
    # data_bn, then per unit gcn1.bn and tcn1.bn, plus down.bn / residual.bn where projected.
    assert len(norms) == 1 + 3 + 3 + 4 + 2 + 3
    x = jnp.asarray(clip_batch(n=3))
    other = jnp.asarray(clip_batch(n=3, seed=1)).at[0].set(x[0])

    model.eval()
    assert all(bn.use_running_average for bn in norms)
    before = jax.tree.map(np.array, nnx.state(model, nnx.BatchStat))  # a copy, not a view
    y_eval = model(x)
    # Inference features of a clip do not depend on the rest of the batch ...
    np.testing.assert_allclose(np.asarray(model(other)[0]), np.asarray(y_eval[0]), rtol=1e-5,
                               atol=1e-6)
    jax.tree.map(np.testing.assert_array_equal, nnx.state(model, nnx.BatchStat), before)

    model.train()
    assert not any(bn.use_running_average for bn in norms)
    y_train = model(x)
    # ... training features do, and the running estimates move.
    assert not np.allclose(np.asarray(model(other)[0]), np.asarray(y_train[0]), atol=1e-3)
    assert not np.allclose(np.asarray(y_train), np.asarray(y_eval), atol=1e-3)
    changed = jax.tree.map(lambda a, b: not np.array_equal(a, b),
                           nnx.state(model, nnx.BatchStat), before)
    assert all(jax.tree.leaves(changed))


def test_jit_over_split_and_merge_equals_eager():
    model = randomize(AGCN(rngs=nnx.Rngs(0), **SMALL), 1)
    graphdef, state = nnx.split(model)
    initial_mean = np.array(model.data_bn.running_mean[...])
    x = jnp.asarray(clip_batch())

    @jax.jit
    def forward(state, x):
        module = nnx.merge(graphdef, state)
        return module(x), nnx.state(module)

    y_jit, state_jit = forward(state, x)
    y_eager = model(x)
    np.testing.assert_allclose(np.asarray(y_jit), np.asarray(y_eager), rtol=1e-5, atol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                 nnx.state(state_jit, nnx.BatchStat), nnx.state(model, nnx.BatchStat))
    # The statistics were really updated inside the compiled step.
    assert not np.allclose(state_jit["data_bn"]["running_mean"][...], initial_mean)


@pytest.mark.parametrize("training", [False, True])
def test_bfloat16_compute_stays_close_to_float32(training):
    model = set_mode(randomize(AGCN(rngs=nnx.Rngs(0), **SMALL), 1), training)
    model_bf16 = set_mode(AGCN(rngs=nnx.Rngs(0), dtype=jnp.bfloat16, **SMALL), training)
    nnx.update(model_bf16, nnx.state(model))
    x = jnp.asarray(clip_batch())
    y32, y16 = np.asarray(model(x), np.float64), model_bf16(x)
    assert y16.dtype == jnp.bfloat16
    assert model_bf16.layers[0].gcn1.PA[...].dtype == jnp.float32
    rel = np.linalg.norm(np.asarray(y16, np.float64) - y32) / np.linalg.norm(y32)
    # bfloat16 keeps 8 significant bits (unit roundoff u = 2^-9 ~ 0.002). Every unit rounds its
    # input, its conv/aggregation outputs and the BN output, each a relative perturbation of
    # order u that BN and ReLU neither amplify nor cancel systematically; accumulated over 5 units
    # of ~4 roundings each the perturbations add up to about 20u ~ 0.04 in the worst case.
    assert rel < 0.04
    assert rel > 0  # the bfloat16 path really rounded


def test_full_size_forward_shape_via_eval_shape():
    model = nnx.eval_shape(lambda: AGCN(rngs=nnx.Rngs(0)))
    out = nnx.eval_shape(lambda m, x: m(x), model, jax.ShapeDtypeStruct((4, 64, 2, 25, 3),
                                                                      jnp.float32))
    assert out.shape == (4, 256) and out.dtype == jnp.float32


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("shape", [(2, 8, 25, 3), (2, 3, 8, 25, 2), (2, 8, 2, 24, 3)])
def test_agcn_rejects_wrong_input_shape(shape):
    model = AGCN(rngs=nnx.Rngs(0), channels=(8,), strides=(1,))
    with pytest.raises(ValueError, match=r"expects input of shape \(N, T, M, V, C\) = "
                                         r"\(N, T, 2, 25, 3\)"):
        model(jnp.zeros(shape))


def test_agcn_rejects_joint_count_other_than_the_ntu_graph():
    with pytest.raises(ValueError, match="25-joint NTU graph, got num_joints=18"):
        AGCN(rngs=nnx.Rngs(0), num_joints=18)


@pytest.mark.parametrize("channels,strides", [((8, 8), (1,)), ((), ())])
def test_agcn_rejects_inconsistent_unit_configuration(channels, strides):
    with pytest.raises(ValueError, match="one stride per unit and at least one unit"):
        AGCN(rngs=nnx.Rngs(0), channels=channels, strides=strides)


def test_unit_gcn_rejects_too_few_output_channels():
    with pytest.raises(ValueError, match=r"out_channels >= coff_embedding \(4\).*out_channels=3"):
        UnitGCN(3, 3, rngs=nnx.Rngs(0))


def test_unit_gcn_rejects_wrong_adjacency_shape():
    gcn = UnitGCN(3, 8, num_joints=6, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"adjacency of shape \(3, 6, 6\), got \(3, 25, 25\)"):
        gcn(jnp.zeros((1, 4, 6, 3)), graph.spatial_adjacency())
