"""Tests of skel_jax.import_torch on checkpoints written by torch.save in the original layout.

The PyTorch modules below mirror the original's ``__init__``s (moco/GRU.py, moco/AGCN.py,
moco/HCN.py, the MLP head of moco/builder_*.py), so their state_dict keys and shapes are the
original's. Imported values are checked by mapping them back with the other model tests' own
PyTorch-export helpers, and ``embed`` is checked against their float64 NumPy forwards run on the
source tensors.
"""

import os
import subprocess
import sys
import types

import jax
import numpy as np
import pytest
from flax import nnx

from skel_jax import checkpointing
from skel_jax import config_lib
from skel_jax import contrastive
from skel_jax import embed
from skel_jax import encoders
from skel_jax import import_torch
from skel_jax import optim
from skel_jax import train_state
from skel_jax.models import graph
from tests import test_agcn
from tests import test_bigru
from tests import test_hcn

torch = pytest.importorskip("torch")
nn = torch.nn

EPOCH = 17
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config():
    config = config_lib.base_config()
    config_lib.apply_runlocal(config)
    # The BiGRU reference loop in test_bigru is written for its HIDDEN.
    config.model.seq.hidden_size = test_bigru.HIDDEN
    return config


# ----------------------------------------------------------------------------- PyTorch models


def _module(**children):
    module = nn.Module()
    for name, child in children.items():
        setattr(module, name, child)
    return module


def _mlp_head(dim):
    return nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, 128))


def torch_bigru(config):
    hidden = config.model.seq.hidden_size
    gru = nn.GRU(150, hidden, num_layers=config.model.seq.num_layers, bidirectional=True,
                 batch_first=True)
    return _module(encoder=_module(gru=gru), fc=_mlp_head(2 * hidden))


def _unit_tcn(cin, cout, kernel_size=9, stride=1):
    conv = nn.Conv2d(cin, cout, (kernel_size, 1), padding=((kernel_size - 1) // 2, 0),
                     stride=(stride, 1))
    return _module(conv=conv, bn=nn.BatchNorm2d(cout))


def _unit_gcn(cin, cout, subsets=3):
    gcn = _module(
        PA=nn.Parameter(torch.zeros(subsets, 25, 25)),
        conv_a=nn.ModuleList([nn.Conv2d(cin, cout // 4, 1) for _ in range(subsets)]),
        conv_b=nn.ModuleList([nn.Conv2d(cin, cout // 4, 1) for _ in range(subsets)]),
        conv_d=nn.ModuleList([nn.Conv2d(cin, cout, 1) for _ in range(subsets)]),
        bn=nn.BatchNorm2d(cout))
    if cin != cout:
        gcn.down = nn.Sequential(nn.Conv2d(cin, cout, 1), nn.BatchNorm2d(cout))
    return gcn


def torch_agcn(config):
    model = _module(data_bn=nn.BatchNorm1d(2 * 25 * 3))
    cin = 3
    for i, (cout, stride) in enumerate(zip(config.model.graph.channels,
                                           config.model.graph.strides)):
        unit = _module(gcn1=_unit_gcn(cin, cout), tcn1=_unit_tcn(cout, cout, stride=stride))
        if i > 0 and (cin != cout or stride != 1):
            unit.residual = _unit_tcn(cin, cout, kernel_size=1, stride=stride)
        setattr(model, f"l{i + 1}", unit)
        cin = cout
    model.fc = _mlp_head(cin)
    return model


def torch_hcn(config):
    out, window = config.model.image.out_channels, config.data.clip_frames
    layers = {}
    for m in ("", "m"):
        layers[f"conv1{m}"] = nn.Sequential(nn.Conv2d(3, out, 1), nn.ReLU())
        layers[f"conv2{m}"] = nn.Conv2d(out, window, (3, 1), padding=(1, 0))
        layers[f"conv3{m}"] = nn.Sequential(nn.Conv2d(25, out // 2, 3, padding=1),
                                           nn.MaxPool2d(2))
        layers[f"conv4{m}"] = nn.Sequential(nn.Conv2d(out // 2, out, 3, padding=1),
                                           nn.Dropout2d(0.5), nn.MaxPool2d(2))
    for name, cin, cout in (("conv5", 2 * out, 2 * out), ("conv6", 2 * out, 4 * out)):
        layers[name] = nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(),
                                     nn.Dropout2d(0.5), nn.MaxPool2d(2))
    return _module(**layers, fc=_mlp_head(4 * out * (window // 16) ** 2))


TORCH_MODELS = {"seq": torch_bigru, "graph": torch_agcn, "image": torch_hcn}


def _random_state_dict(module, generator):
    """The module's state_dict with seeded values (running variances positive)."""
    out = {}
    for key, value in module.state_dict().items():
        if key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(123)
        elif key.endswith("running_var"):
            out[key] = torch.rand(value.shape, generator=generator) + 0.5
        else:
            fan_in = int(np.prod(value.shape[1:])) if value.ndim > 1 else 10
            out[key] = torch.randn(value.shape, generator=generator) / np.sqrt(fan_in)
    return out


def original_state_dict(config, pair, seed):
    """An ISC state_dict: every encoder (query and key alike) and queue with its own values."""
    generator = torch.Generator().manual_seed(seed)
    names = config_lib.representation_names(pair)
    layout = import_torch.INTER if len(names) == 2 else import_torch.INTRA
    state = {}
    for i, rep in enumerate(names):
        for role in (layout.query[i], layout.key[i]):
            for key, value in _random_state_dict(TORCH_MODELS[rep](config), generator).items():
                state[f"{role}.{key}"] = value
        state[layout.queue[i]] = torch.randn(128, config.contrastive.queue_size,
                                             generator=generator)
        state[layout.queue_ptr[i]] = torch.tensor([8 * (i + 1)])
    return state


def _write(path, state, *, prefix):
    torch.save({"epoch": EPOCH, "state_dict": {prefix + k: v for k, v in state.items()},
                "optimizer": {"state": {}, "param_groups": [{"lr": 0.01, "momentum": 0.9}]}},
               path)
    return str(path)


def _numpy(state):
    return {k: v.numpy() for k, v in state.items()}


# ----------------------------------------------------------------------------- export back


def _flatten(prefix, node):
    """test_agcn.torch_model's nested dict -> flat PyTorch keys."""
    if node is None:
        return {}
    if isinstance(node, list):  # One (weight, bias) per graph subset.
        return {f"{prefix}{s}.{name}": value for s, pair in enumerate(node)
                for name, value in zip(("weight", "bias"), pair)}
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            out.update(_flatten(f"{prefix}{key}.", value))
        return out
    return {prefix[:-1]: node}


_HCN_MODULES = {"conv1.0": ("position", "conv1"), "conv2": ("position", "conv2"),
                "conv3.0": ("position", "conv3"), "conv4.0": ("position", "conv4"),
                "conv1m.0": ("motion", "conv1"), "conv2m": ("motion", "conv2"),
                "conv3m.0": ("motion", "conv3"), "conv4m.0": ("motion", "conv4"),
                "conv5.0": ("conv5",), "conv6.0": ("conv6",)}


def exported(config, rep, variables):
    """Imported variables -> PyTorch keys and float64 tensors, via the model tests' helpers."""
    defn, _ = encoders.abstract(config, rep)
    model = nnx.merge(defn.graphdef, variables["params"], variables["batch_stats"],
                      defn.rng_state)
    out = {}
    if rep == "seq":
        for layer, directions in enumerate(test_bigru._numpy_params(model.backbone)):
            for suffix, tensors in zip(("", "_reverse"), directions):
                for name, value in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), tensors):
                    out[f"encoder.gru.{name}_l{layer}{suffix}"] = value
    elif rep == "graph":
        out.update(_flatten("", test_agcn.torch_model(model.backbone)))
    else:
        for key, path in _HCN_MODULES.items():
            conv = model.backbone
            for name in path:
                conv = getattr(conv, name)
            out[f"{key}.weight"], out[f"{key}.bias"] = test_hcn._torch_weights(conv)
    for index, layer in (("0", model.head.hidden), ("2", model.head.output)):
        out[f"fc.{index}.weight"] = np.asarray(layer.kernel[...], np.float64).T
        out[f"fc.{index}.bias"] = np.asarray(layer.bias[...], np.float64)
    return out


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """{pair: (workdir, source state_dict as NumPy)} for an inter and an intra checkpoint."""
    root = tmp_path_factory.mktemp("import")
    out = {}
    for pair, prefix, seed in (("seq-graph", "module.", 1), ("image", "", 2)):
        source = original_state_dict(_config(), pair, seed)
        path = _write(root / f"{pair}.pth.tar", source, prefix=prefix)
        workdir = root / pair
        assert import_torch.import_checkpoint(path, pair, str(workdir), _config()) == EPOCH
        out[pair] = workdir, _numpy(source)
    return out


def _restore_state(workdir):
    with checkpointing.Checkpointer(workdir, read_only=True) as ckpt:
        config = ckpt.restore_config()
        tx, _ = optim.make_optimizer(config, steps_per_epoch=1)
        abstract = train_state.abstract(config, tx)[1]
        sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        state = ckpt.restore(None, jax.tree.map(lambda a: a.update(sharding=sharding), abstract))
        assert ckpt.all_steps() == [EPOCH]
    return config, abstract, state


# ----------------------------------------------------------------------------- imports


@pytest.mark.parametrize("pair", ["seq-graph", "image"])
def test_every_value_lands_where_it_belongs(imported, pair):
    workdir, source = imported[pair]
    config, abstract, state = _restore_state(workdir)
    assert jax.tree.structure(state) == jax.tree.structure(abstract)
    assert int(state["step"]) == EPOCH
    names = config_lib.representation_names(pair)
    layout = import_torch.INTER if len(names) == 2 else import_torch.INTRA
    checked = 0
    for i, rep in enumerate(names):
        for role, which in ((layout.query[i], "query"), (layout.key[i], "key")):
            variables = state["encoders"][which][rep]
            back = exported(config, rep, variables)
            expected_keys = {k[len(role) + 1:] for k in source if k.startswith(role + ".")
                             and not k.endswith("num_batches_tracked")}
            assert back.keys() == expected_keys
            for key, value in back.items():
                np.testing.assert_array_equal(value, source[f"{role}.{key}"], err_msg=key)
            # Every leaf was exported and checked: nothing imported is left unexamined.
            assert sum(v.size for v in back.values()) == sum(
                v.size for v in jax.tree.leaves(variables))
            checked += len(back)
        np.testing.assert_array_equal(state["queues"][rep], contrastive.from_original_order(
            source[layout.queue[i]].T, config.global_batch_size))
        assert state["queue_ptr"][rep] == source[layout.queue_ptr[i]][0]
    assert checked + 2 * len(names) == sum(not k.endswith("num_batches_tracked") for k in source)
    # A fresh optimizer state: SGD momentum buffers start at zero.
    assert all(not np.any(np.asarray(leaf)) for leaf in jax.tree.leaves(state["opt_state"]))


def test_imported_config(imported):
    workdir, _ = imported["seq-graph"]
    with checkpointing.Checkpointer(workdir, read_only=True) as ckpt:
        config = ckpt.restore_config()
    config_lib.validate(config)
    assert config.representations == "seq-graph"
    assert config.contrastive.queue_size == _config().contrastive.queue_size
    assert config.imported_from.endswith("seq-graph.pth.tar")
    assert os.path.isabs(config.imported_from)


def test_rules_cover_every_full_size_variable_once():
    config = config_lib.base_config()
    for rep in config_lib.SINGLES:
        abstract = encoders.abstract(config, rep)[1]
        targets = [rule.target for rule in import_torch.encoder_rules(rep, abstract)]
        leaves = [tuple(getattr(k, "key", k) for k in path)
                  for path, _ in jax.tree_util.tree_flatten_with_path(abstract)[0]]
        assert len(targets) == len(set(targets))
        assert set(targets) == set(leaves)


# ----------------------------------------------------------------------------- embed


def _reference_head(features, source, role):
    hidden = np.maximum(features @ source[f"{role}.fc.0.weight"].T.astype(np.float64)
                        + source[f"{role}.fc.0.bias"], 0.0)
    return hidden @ source[f"{role}.fc.2.weight"].T.astype(np.float64) + source[f"{role}.fc.2.bias"]


def _reference_seq(clips, source, role, config):
    sub = lambda k: source[f"{role}.encoder.gru.{k}"].astype(np.float64)
    params = [[tuple(sub(f"{name}_l{layer}{suffix}")
                     for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
               for suffix in ("", "_reverse")] for layer in range(config.model.seq.num_layers)]
    seq = test_bigru._numpy_sequence(clips.transpose(0, 2, 4, 3, 1))
    return test_bigru._numpy_frame_by_frame(seq, params)


def _reference_graph(clips, source, role, config):
    get = lambda k: source[f"{role}.{k}"].astype(np.float64)
    bn = lambda k: {n: get(f"{k}.{n}") for n in ("weight", "bias", "running_mean",
                                                 "running_var")}
    tcn = lambda k: {"conv.weight": get(f"{k}.conv.weight"), "conv.bias": get(f"{k}.conv.bias"),
                     "bn": bn(f"{k}.bn")}
    p = {"data_bn": bn("data_bn")}
    for i in range(len(config.model.graph.channels)):
        g = f"l{i + 1}.gcn1"
        subsets = lambda c: [(get(f"{g}.{c}.{s}.weight"), get(f"{g}.{c}.{s}.bias"))
                             for s in range(3)]
        down = None
        if f"{role}.{g}.down.0.weight" in source:
            down = {"0.weight": get(f"{g}.down.0.weight"), "0.bias": get(f"{g}.down.0.bias"),
                    "1": bn(f"{g}.down.1")}
        p[f"l{i + 1}"] = {
            "gcn1": {"PA": get(f"{g}.PA"), "conv_a": subsets("conv_a"),
                     "conv_b": subsets("conv_b"), "conv_d": subsets("conv_d"),
                     "bn": bn(f"{g}.bn"), "down": down},
            "tcn1": tcn(f"l{i + 1}.tcn1"),
            "residual": (tcn(f"l{i + 1}.residual")
                         if f"{role}.l{i + 1}.residual.conv.weight" in source else None)}
    return test_agcn.np_model(clips.astype(np.float64), p, graph.spatial_adjacency(),
                              config.model.graph.channels, config.model.graph.strides,
                              training=False)


def _reference_image(clips, source, role, config):
    del config

    def conv(key):
        # test_hcn's reference reads nnx.Conv-style kernels and transposes them back.
        return types.SimpleNamespace(kernel=source[f"{role}.{key}.weight"].transpose(2, 3, 1, 0),
                                     bias=source[f"{role}.{key}.bias"])

    streams = {}
    for key, path in _HCN_MODULES.items():
        if len(path) == 2:
            streams.setdefault(path[0], {})[path[1]] = conv(key)
    model = types.SimpleNamespace(position=types.SimpleNamespace(**streams["position"]),
                                  motion=types.SimpleNamespace(**streams["motion"]),
                                  conv5=conv("conv5.0"), conv6=conv("conv6.0"))
    return test_hcn._numpy_hcn(clips.astype(np.float64), model)


_REFERENCES = {"seq": _reference_seq, "graph": _reference_graph, "image": _reference_image}


@pytest.mark.parametrize("pair, rep, role", [
    ("seq-graph", "seq", "encoder_q"),
    ("seq-graph", "graph", "encoder_r"),
    ("image", "image", "encoder_q"),
])
def test_embed_matches_numpy_forward_of_the_source_weights(imported, pair, rep, role):
    workdir, source = imported[pair]
    config = _config()
    # Three clips in batches of two: the last batch is padded.
    clips = np.random.default_rng(5).normal(size=(3, 3, 64, 25, 2)).astype(np.float32)
    features = embed.embed(str(workdir), rep, clips, batch_size=2)
    projections = embed.embed(str(workdir), rep, clips, batch_size=2, head=True)
    reference = _REFERENCES[rep](clips, source, role, config)
    assert features.dtype == np.float32 and features.shape == reference.shape
    np.testing.assert_allclose(features, reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max())
    reference_head = _reference_head(reference, source, role)
    np.testing.assert_allclose(projections, reference_head, rtol=1e-4,
                               atol=1e-4 * np.abs(reference_head).max())


# ----------------------------------------------------------------------------- errors


@pytest.fixture(scope="module")
def inter_tensors():
    return _numpy(original_state_dict(_config(), "seq-graph", seed=3))


def _with_pair(pair):
    config = _config()
    config.representations = pair
    return config


def test_shape_mismatch_names_the_key_and_both_shapes(inter_tensors):
    tensors = dict(inter_tensors)
    key = "encoder_r.l2.tcn1.conv.weight"
    tensors[key] = np.zeros((16, 16, 5, 1), np.float32)
    with pytest.raises(ValueError, match=rf"Shape mismatch at {key}: the checkpoint has "
                                         r"\(16, 16, 5, 1\), .*needs \(16, 16, 9, 1\)"):
        import_torch.convert_state_dict(tensors, _with_pair("seq-graph"), EPOCH)


def test_shape_mismatch_of_a_queue(inter_tensors):
    tensors = dict(inter_tensors)
    tensors["Queue_S2"] = np.zeros((64, 64), np.float32)
    with pytest.raises(ValueError, match=r"Shape mismatch at Queue_S2: the checkpoint has "
                                         r"\(64, 64\), the config needs \(128, 64\)"):
        import_torch.convert_state_dict(tensors, _with_pair("seq-graph"), EPOCH)


def test_a_queue_pointer_off_the_batch_grid_is_explained(inter_tensors):
    tensors = dict(inter_tensors)
    tensors["queue_ptr_S1"] = np.array([3])
    with pytest.raises(ValueError, match=r"queue_ptr_S1 is 3, not a multiple of "
                                         r"global_batch_size \(8\)"):
        import_torch.convert_state_dict(tensors, _with_pair("seq-graph"), EPOCH)


def test_missing_keys_are_named(inter_tensors):
    tensors = dict(inter_tensors)
    del tensors["encoder_k.encoder.gru.bias_hh_l1_reverse"]
    with pytest.raises(ValueError, match=r"lacks 1 keys .*encoder_k: "
                                         r"encoder_k\.encoder\.gru\.bias_hh_l1_reverse"):
        import_torch.convert_state_dict(tensors, _with_pair("seq-graph"), EPOCH)
    tensors = dict(inter_tensors)
    del tensors["queue_ptr_S1"]
    with pytest.raises(ValueError, match="lacks the key queue_ptr_S1"):
        import_torch.convert_state_dict(tensors, _with_pair("seq-graph"), EPOCH)


def test_unexpected_keys_are_named(inter_tensors):
    tensors = dict(inter_tensors, **{"encoder_q.extra.weight": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match=r"1 keys that --pair=seq-graph .* does not use: "
                                         r"encoder_q\.extra\.weight"):
        import_torch.convert_state_dict(tensors, _with_pair("seq-graph"), EPOCH)


def test_encoder_kind_that_does_not_fit_the_pair(inter_tensors):
    with pytest.raises(ValueError, match=r"encoder_q in the checkpoint is a BiGRU \(seq\) "
                                         r"encoder, but --pair=graph-image puts the AGCN"):
        import_torch.convert_state_dict(inter_tensors, _with_pair("graph-image"), EPOCH)


def test_checkpoint_without_mlp_head(inter_tensors):
    tensors = {k: v for k, v in inter_tensors.items() if not k.startswith("encoder_q.fc.")}
    tensors["encoder_q.fc.weight"] = np.zeros((128, 16), np.float32)
    with pytest.raises(ValueError, match=r"without the MLP projection head \(mlp=False\)"):
        import_torch.convert_state_dict(tensors, _with_pair("seq-graph"), EPOCH)


@pytest.mark.parametrize("pair, tensors, message", [
    ("seq", {"Queue_S1": np.zeros((128, 8))}, r"inter-skeleton .* --pair=seq names 1"),
    ("seq-graph", {"queue": np.zeros((128, 8))}, r"intra-skeleton .* --pair=seq-graph names 2"),
    ("seq", {"weights": np.zeros(3)}, "neither Queue_S1 .* nor queue"),
    ("seq", {"queue": np.zeros(8)}, r"queue is not a \(128, K\) queue; found shape \(8,\)"),
])
def test_queue_layout_errors(pair, tensors, message):
    with pytest.raises(ValueError, match=message):
        import_torch.queue_size(tensors, pair)


def test_invalid_imported_config():
    with pytest.raises(ValueError, match=r"queue_size \(100\) must be a positive multiple"):
        import_torch.import_config(_config(), "seq", 100, "x.pth.tar")


def test_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="No checkpoint file"):
        import_torch.load_torch_checkpoint(str(tmp_path / "missing.pth.tar"))
    garbage = tmp_path / "garbage.pth.tar"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable PyTorch checkpoint"):
        import_torch.load_torch_checkpoint(str(garbage))
    path = tmp_path / "weights.pth"
    torch.save({"conv.weight": torch.zeros(2)}, path)
    with pytest.raises(ValueError,
                       match=r"not an ISC training checkpoint: .*found \['conv.weight'\]"):
        import_torch.load_torch_checkpoint(str(path))


def test_importing_over_an_existing_step(tmp_path):
    source = original_state_dict(_config(), "image", seed=4)
    path = _write(tmp_path / "intra.pth.tar", source, prefix="module.")
    import_torch.import_checkpoint(path, "image", str(tmp_path / "run"), _config())
    with pytest.raises(FileExistsError, match=f"already holds a checkpoint for step {EPOCH}"):
        import_torch.import_checkpoint(path, "image", str(tmp_path / "run"), _config())


def test_missing_torch_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch", None)  # Makes `import torch` raise ImportError.
    with pytest.raises(ImportError, match=r"pip install 'skel_jax\[torch\]'"):
        import_torch.load_torch_checkpoint(str(tmp_path / "any.pth.tar"))


def _run(*command):
    return subprocess.run([sys.executable, *command], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


def test_command_without_torch_exits_with_the_install_hint(tmp_path):
    code = ("import runpy, sys; sys.modules['torch'] = None; sys.argv[0] = 'import_torch'; "
            "runpy.run_module('skel_jax.import_torch', run_name='__main__')")
    result = _run("-c", code, f"--checkpoint={tmp_path / 'x.pth.tar'}", "--pair=seq",
                  f"--out={tmp_path}")
    assert result.returncode == 1
    assert "import_torch: Importing a PyTorch checkpoint needs PyTorch" in result.stderr
    assert "pip install" in result.stderr


def test_command_line_import_then_embed(tmp_path):
    source = original_state_dict(_config(), "image", seed=6)
    path = _write(tmp_path / "intra.pth.tar", source, prefix="module.")
    workdir = tmp_path / "run"
    result = _run("-m", "skel_jax.import_torch", f"--checkpoint={path}", "--pair=image",
                  f"--out={workdir}", "--config=configs/ntu60.py:xsub,runlocal")
    assert result.returncode == 0, result.stderr
    assert f"as step {EPOCH}" in result.stdout
    clips = np.random.default_rng(7).normal(size=(2, 3, 64, 25, 2)).astype(np.float32)
    np.save(tmp_path / "clips.npy", clips)
    result = _run("-m", "skel_jax.embed", f"--workdir={workdir}", "--encoder=image",
                  f"--input={tmp_path / 'clips.npy'}", f"--output={tmp_path / 'features.npy'}")
    assert result.returncode == 0, result.stderr
    reference = _reference_image(clips, _numpy(source), "encoder_q", _config())
    features = np.load(tmp_path / "features.npy")
    np.testing.assert_allclose(features, reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max())
