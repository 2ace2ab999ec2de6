r"""Imports an original ISC (PyTorch) pretraining checkpoint into a skel_jax work directory.

  pip install '.[torch]'
  python -m skel_jax.import_torch --checkpoint=checkpoint_0450.pth.tar --pair=seq-graph \
      --out=DIR [--config=configs/ntu60.py:xsub]

Afterwards ``DIR`` is an ordinary work directory (see ``skel_jax.checkpointing``): the evaluation
binary, ``skel_jax.embed`` and training read it like one of their own.

What is read: the ``torch.save`` dict ``{'epoch', 'state_dict', 'optimizer'}`` of the original's
``main_moco_{inter,intra}_skeleton.py`` (method.md §8), keys with or without DataParallel's
``module.`` prefix. Inter-skeleton checkpoints hold ``encoder_q``/``encoder_k`` (query and key
encoder of the pair's first representation), ``encoder_r``/``encoder_l`` (of the second),
``Queue_S1``/``queue_ptr_S1`` (keys of ``encoder_k``) and ``Queue_S2``/``queue_ptr_S2`` (of
``encoder_l``); intra-skeleton ones ``encoder_q``, ``encoder_k``, ``queue`` and ``queue_ptr``.

What is written: the train state in ``skel_jax.train_state``'s layout, at step = the file's
``epoch`` (the original stores the number of finished epochs there), so ``state["step"]`` also
holds that epoch count, not an optimizer-step count. Queues are transposed from (128, K) to
(K, 128) and put in ``contrastive.enqueue``'s batch-major order for the config's
``global_batch_size``, so the next enqueue replaces the same oldest keys the original would. The optimizer state is freshly initialised: the original's SGD momentum buffers are
not imported, so resuming training from an import restarts momentum (and the schedule's step
count) from zero. The config is the ``--config`` one (default: ``configs/ntu60.py:xsub``, i.e.
``config_lib.base_config()``, full-size models) with ``representations`` = ``--pair``,
``contrastive.queue_size`` = K from the queues, and ``imported_from`` = the source file.

Key mapping (PyTorch key under each encoder prefix -> path under ``params``/``batch_stats``;
``w`` the PyTorch tensor). Every encoder carries the MLP projection head:

  fc.0.weight / fc.0.bias             head/hidden/kernel = w.T / bias
  fc.2.weight / fc.2.bias             head/output/kernel = w.T / bias

BiGRU (seq), per layer l, index 0 of the stacked axis = forward, 1 = ``_reverse``:

  encoder.gru.{weight_ih,weight_hh,bias_ih,bias_hh}_l{l}[_reverse]
                                      backbone/layers/{l}/{name} = stack([fwd, reverse])

AGCN (graph), unit ``l{i}`` -> ``backbone/layers/{i-1}``, S = 3 graph subsets, BatchNorm
``weight`` -> ``scale`` (params), ``running_mean/var`` -> batch_stats, ``num_batches_tracked``
dropped:

  data_bn.*                           backbone/data_bn/*
  l{i}.gcn1.PA                        gcn1/PA, as is
  l{i}.gcn1.conv_{a,b,d}.{s}.weight   gcn1/conv_{a,b,d}/kernel[s] = w[:, :, 0, 0].T
  l{i}.gcn1.conv_{a,b,d}.{s}.bias     gcn1/conv_{a,b,d}/bias[s]
  l{i}.gcn1.bn.*                      gcn1/bn/*
  l{i}.gcn1.down.0.{weight,bias}      gcn1/down/conv/kernel = w[..., 0].transpose(2, 1, 0) / bias
  l{i}.gcn1.down.1.*                  gcn1/down/bn/*
  l{i}.tcn1.conv.*, l{i}.tcn1.bn.*    tcn1/conv/* (kernel as down), tcn1/bn/*
  l{i}.residual.conv.*, .bn.*         residual/conv/*, residual/bn/*

HCN (image), kernel = w.transpose(2, 3, 1, 0):

  conv1.0, conv2, conv3.0, conv4.0    backbone/position/conv1..conv4/{kernel,bias}
  conv1m.0, conv2m, conv3m.0, conv4m.0
                                      backbone/motion/conv1..conv4/{kernel,bias}
  conv5.0, conv6.0                    backbone/conv5, backbone/conv6
"""

import copy
import dataclasses
import os
import pickle
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app
from absl import flags
from ml_collections import config_flags

from skel_jax import checkpointing
from skel_jax import config_lib
from skel_jax import contrastive
from skel_jax import encoders
from skel_jax import optim
from skel_jax import train_state

INSTALL_TORCH = ("Importing a PyTorch checkpoint needs PyTorch, an optional dependency of "
                 "skel_jax. Install it with: pip install 'skel_jax[torch]' (or, in a source "
                 "checkout, pip install '.[torch]').")
IGNORED_SUFFIX = ".num_batches_tracked"  # PyTorch only reads it when BatchNorm momentum=None.
_MAX_LISTED_KEYS = 20
_KIND_NAMES = {"seq": "BiGRU (seq)", "graph": "AGCN (graph)", "image": "HCN (image)"}
# A key that only the backbone of each kind has, under the encoder prefix.
_KIND_MARKERS = {"seq": "encoder.gru.", "graph": "data_bn.", "image": "conv1m.0."}


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where each role lives in a state_dict: one entry per representation of the pair."""

    query: tuple[str, ...]
    key: tuple[str, ...]
    queue: tuple[str, ...]
    queue_ptr: tuple[str, ...]


INTER = Layout(query=("encoder_q", "encoder_r"), key=("encoder_k", "encoder_l"),
               queue=("Queue_S1", "Queue_S2"), queue_ptr=("queue_ptr_S1", "queue_ptr_S2"))
INTRA = Layout(query=("encoder_q",), key=("encoder_k",), queue=("queue",),
               queue_ptr=("queue_ptr",))

# ----------------------------------------------------------------------------- transforms


@dataclasses.dataclass(frozen=True)
class Transform:
    """How one or more PyTorch tensors become one skel_jax array.

    Attributes:
      apply: the PyTorch tensors (NumPy) -> the skel_jax array.
      source_shape: the skel_jax array's shape -> the shape each PyTorch tensor must have.
    """

    apply: Callable[[Sequence[np.ndarray]], np.ndarray]
    source_shape: Callable[[tuple[int, ...]], tuple[int, ...]]


COPY = Transform(lambda ws: ws[0], lambda s: s)
# Linear weight (out, in) -> kernel (in, out).
LINEAR = Transform(lambda ws: ws[0].T, lambda s: s[::-1])
# Conv2d weight (out, in, kh, kw) -> kernel (kh, kw, in, out).
CONV2D = Transform(lambda ws: ws[0].transpose(2, 3, 1, 0), lambda s: (s[3], s[2], s[0], s[1]))
# Conv2d weight (out, in, k, 1) -> temporal kernel (k, in, out).
TEMPORAL_CONV = Transform(lambda ws: ws[0][..., 0].transpose(2, 1, 0),
                          lambda s: (s[2], s[1], s[0], 1))
# One tensor per GRU direction or graph subset -> a leading axis.
STACK = Transform(np.stack, lambda s: s[1:])
# One 1x1 Conv2d weight (out, in, 1, 1) per subset -> kernel (S, in, out).
SUBSET_CONV = Transform(lambda ws: np.stack([w[:, :, 0, 0].T for w in ws]),
                        lambda s: (s[2], s[1], 1, 1))


@dataclasses.dataclass(frozen=True)
class Rule:
    """One array of an encoder's variables and the PyTorch keys (under the encoder) it comes from.

    Attributes:
      target: path in ``{"params": ..., "batch_stats": ...}``.
      sources: PyTorch keys relative to the encoder prefix (e.g. ``"fc.0.weight"``).
      transform: how the sources become the target.
    """

    target: tuple[Any, ...]
    sources: tuple[str, ...]
    transform: Transform


# ----------------------------------------------------------------------------- key tables


def head_rules() -> list[Rule]:
    """The MLP projection head: ``fc`` = Sequential(Linear, ReLU, Linear)."""
    return [
        Rule(("params", "head", "hidden", "kernel"), ("fc.0.weight",), LINEAR),
        Rule(("params", "head", "hidden", "bias"), ("fc.0.bias",), COPY),
        Rule(("params", "head", "output", "kernel"), ("fc.2.weight",), LINEAR),
        Rule(("params", "head", "output", "bias"), ("fc.2.bias",), COPY),
    ]


def bigru_rules(variables: Mapping[str, Any]) -> list[Rule]:
    """BiGRU: the layers of ``encoder.gru``, both directions stacked."""
    rules = []
    for layer in sorted(variables["params"]["backbone"]["layers"]):
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            key = f"encoder.gru.{name}_l{layer}"
            rules.append(Rule(("params", "backbone", "layers", layer, name),
                              (key, f"{key}_reverse"), STACK))
    return rules


def _batch_norm_rules(path: tuple[Any, ...], key: str) -> list[Rule]:
    return [
        Rule(("params", *path, "scale"), (f"{key}.weight",), COPY),
        Rule(("params", *path, "bias"), (f"{key}.bias",), COPY),
        Rule(("batch_stats", *path, "running_mean"), (f"{key}.running_mean",), COPY),
        Rule(("batch_stats", *path, "running_var"), (f"{key}.running_var",), COPY),
    ]


def _unit_tcn_rules(path: tuple[Any, ...], conv_key: str, bn_key: str) -> list[Rule]:
    return [
        Rule(("params", *path, "conv", "kernel"), (f"{conv_key}.weight",), TEMPORAL_CONV),
        Rule(("params", *path, "conv", "bias"), (f"{conv_key}.bias",), COPY),
        *_batch_norm_rules((*path, "bn"), bn_key),
    ]


def agcn_rules(variables: Mapping[str, Any]) -> list[Rule]:
    """AGCN: ``data_bn`` and the TCN-GCN units ``l1``, ``l2``, ..."""
    rules = _batch_norm_rules(("backbone", "data_bn"), "data_bn")
    layers = variables["params"]["backbone"]["layers"]
    for index in sorted(layers):
        unit, src, dst = layers[index], f"l{index + 1}", ("backbone", "layers", index)
        gcn, gcn_key = (*dst, "gcn1"), f"{src}.gcn1"
        rules.append(Rule(("params", *gcn, "PA"), (f"{gcn_key}.PA",), COPY))
        num_subsets = unit["gcn1"]["PA"].shape[0]
        for conv in ("conv_a", "conv_b", "conv_d"):
            keys = [f"{gcn_key}.{conv}.{s}" for s in range(num_subsets)]
            rules.append(Rule(("params", *gcn, conv, "kernel"),
                              tuple(f"{k}.weight" for k in keys), SUBSET_CONV))
            rules.append(Rule(("params", *gcn, conv, "bias"),
                              tuple(f"{k}.bias" for k in keys), STACK))
        rules += _batch_norm_rules((*gcn, "bn"), f"{gcn_key}.bn")
        # Present exactly when the unit changes channels (the model's own choice).
        if "down" in unit["gcn1"]:
            rules += _unit_tcn_rules((*gcn, "down"), f"{gcn_key}.down.0", f"{gcn_key}.down.1")
        rules += _unit_tcn_rules((*dst, "tcn1"), f"{src}.tcn1.conv", f"{src}.tcn1.bn")
        if "residual" in unit:
            rules += _unit_tcn_rules((*dst, "residual"), f"{src}.residual.conv",
                                     f"{src}.residual.bn")
    return rules


_HCN_CONVS = {
    ("position", "conv1"): "conv1.0", ("position", "conv2"): "conv2",
    ("position", "conv3"): "conv3.0", ("position", "conv4"): "conv4.0",
    ("motion", "conv1"): "conv1m.0", ("motion", "conv2"): "conv2m",
    ("motion", "conv3"): "conv3m.0", ("motion", "conv4"): "conv4m.0",
    ("conv5",): "conv5.0", ("conv6",): "conv6.0",
}


def hcn_rules(variables: Mapping[str, Any]) -> list[Rule]:
    """HCN: ten convolutions, the first of each ``nn.Sequential`` (hence the ``.0``)."""
    del variables  # HCN's layer set does not depend on its size.
    rules = []
    for path, key in _HCN_CONVS.items():
        rules.append(Rule(("params", "backbone", *path, "kernel"), (f"{key}.weight",), CONV2D))
        rules.append(Rule(("params", "backbone", *path, "bias"), (f"{key}.bias",), COPY))
    return rules


_BACKBONE_RULES = {"seq": bigru_rules, "graph": agcn_rules, "image": hcn_rules}


def encoder_rules(representation: str, variables: Mapping[str, Any]) -> list[Rule]:
    """Every array of an encoder (backbone + MLP head) and where it comes from.

    Args:
      representation: ``"seq"``, ``"graph"`` or ``"image"``.
      variables: the encoder's variables or their abstract shapes (``encoders.abstract``); the
        number of layers and the optional projections are read from them.
    """
    return _BACKBONE_RULES[representation](variables) + head_rules()


# ----------------------------------------------------------------------------- conversion


def _get(tree: Mapping[Any, Any], path: tuple[Any, ...]) -> Any:
    for key in path:
        tree = tree[key]
    return tree


def _set(tree: dict[Any, Any], path: tuple[Any, ...], value: Any) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def _listed(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED_KEYS])
    return shown + (f", ... ({len(keys) - _MAX_LISTED_KEYS} more)"
                    if len(keys) > _MAX_LISTED_KEYS else "")


def _detect_kind(tensors: Mapping[str, np.ndarray], prefix: str) -> str | None:
    for kind, marker in _KIND_MARKERS.items():
        if any(key.startswith(prefix + marker) for key in tensors):
            return kind
    return None


def _check_encoder(tensors: Mapping[str, np.ndarray], prefix: str, representation: str,
                   pair: str) -> None:
    kind = _detect_kind(tensors, prefix)
    if kind is not None and kind != representation:
        raise ValueError(
            f"{prefix[:-1]} in the checkpoint is a {_KIND_NAMES[kind]} encoder, but "
            f"--pair={pair} puts the {_KIND_NAMES[representation]} encoder there.")
    if f"{prefix}fc.weight" in tensors:
        raise ValueError(
            f"{prefix[:-1]} has a single Linear fc ({prefix}fc.weight): the checkpoint was "
            "trained without the MLP projection head (mlp=False), which skel_jax encoders "
            "always have.")


def convert_encoder(tensors: Mapping[str, np.ndarray], prefix: str, representation: str,
                    abstract_variables: Mapping[str, Any]) -> tuple[dict, set[str]]:
    """Converts one PyTorch encoder to skel_jax variables.

    Args:
      tensors: the state_dict as NumPy arrays, without DataParallel's ``module.``.
      prefix: the encoder's key prefix, e.g. ``"encoder_q."``.
      representation: the encoder's representation.
      abstract_variables: the expected variables (shapes and dtypes), from the config.

    Returns:
      (variables, the keys read).

    Raises:
      ValueError: a key is missing (all missing keys are named), or a tensor's shape differs
        from what the config's encoder needs (the first such key and both shapes are named).
    """
    rules = encoder_rules(representation, abstract_variables)
    missing = [prefix + key for rule in rules for key in rule.sources
               if prefix + key not in tensors]
    if missing:
        raise ValueError(f"The checkpoint lacks {len(missing)} keys of its {representation} "
                         f"encoder {prefix[:-1]}: {_listed(missing)}")
    # Collections without variables (the BiGRU's batch_stats) stay as empty dicts.
    variables, used = {collection: {} for collection in abstract_variables}, set()
    for rule in rules:
        target = _get(abstract_variables, rule.target)
        expected = tuple(rule.transform.source_shape(tuple(target.shape)))
        sources = []
        for key in rule.sources:
            value = tensors[prefix + key]
            if value.shape != expected:
                raise ValueError(
                    f"Shape mismatch at {prefix + key}: the checkpoint has {value.shape}, the "
                    f"config's {representation} encoder needs {expected}. Pass the --config "
                    "the checkpoint was trained with.")
            sources.append(value)
            used.add(prefix + key)
        _set(variables, rule.target, jnp.asarray(rule.transform.apply(sources), target.dtype))
    return variables, used


def _layout(tensors: Mapping[str, np.ndarray], names: tuple[str, ...], pair: str) -> Layout:
    if "Queue_S1" in tensors:
        layout, kind = INTER, "an inter-skeleton (two-representation)"
    elif "queue" in tensors:
        layout, kind = INTRA, "an intra-skeleton (one-representation)"
    else:
        raise ValueError("The state_dict has neither Queue_S1 (inter-skeleton) nor queue "
                         "(intra-skeleton): not an ISC pretraining checkpoint.")
    if len(layout.query) != len(names):
        raise ValueError(f"The checkpoint is {kind} checkpoint, but --pair={pair} names "
                         f"{len(names)} representation(s).")
    return layout


def queue_size(tensors: Mapping[str, np.ndarray], pair: str) -> int:
    """K, the length of the checkpoint's (first) queue.

    Raises:
      ValueError: the checkpoint does not hold an ISC queue layout that fits ``pair``.
    """
    layout = _layout(tensors, config_lib.representation_names(pair), pair)
    queue = tensors[layout.queue[0]]  # _layout found it.
    if queue.ndim != 2:
        raise ValueError(f"The checkpoint's {layout.queue[0]} is not a (128, K) queue; found "
                         f"shape {queue.shape}.")
    return queue.shape[1]


def convert_state_dict(tensors: Mapping[str, np.ndarray], config: ml_collections.ConfigDict,
                       step: int) -> dict[str, Any]:
    """Builds the skel_jax train state from an original ISC state_dict.

    Args:
      tensors: the state_dict as NumPy arrays, without DataParallel's ``module.``.
      config: the target config; ``representations`` is the pair and
        ``contrastive.queue_size`` the queues' K.
      step: the value of ``state["step"]``.

    Returns:
      The state, in ``skel_jax.train_state``'s layout, with a fresh optimizer state.

    Raises:
      ValueError: the checkpoint does not fit the pair or the config: wrong layout or encoder
        kind, missing, unexpected or wrongly shaped keys.
    """
    pair = config.representations
    names = config_lib.representation_names(pair)
    layout = _layout(tensors, names, pair)
    query, key, queues, queue_ptr, used = {}, {}, {}, {}, set()
    for i, rep in enumerate(names):
        abstract = encoders.abstract(config, rep)[1]
        for role, out in ((layout.query[i], query), (layout.key[i], key)):
            _check_encoder(tensors, f"{role}.", rep, pair)
            out[rep], read = convert_encoder(tensors, f"{role}.", rep, abstract)
            used |= read
        queue_key, ptr_key = layout.queue[i], layout.queue_ptr[i]
        for name in (queue_key, ptr_key):
            if name not in tensors:
                raise ValueError(f"The checkpoint lacks the key {name}.")
        expected = (train_state.PROJECTION_DIM, config.contrastive.queue_size)
        if tensors[queue_key].shape != expected:
            raise ValueError(f"Shape mismatch at {queue_key}: the checkpoint has "
                             f"{tensors[queue_key].shape}, the config needs {expected}.")
        ptr = int(tensors[ptr_key].reshape(-1)[0])
        if ptr % config.global_batch_size:
            raise ValueError(
                f"{ptr_key} is {ptr}, not a multiple of global_batch_size "
                f"({config.global_batch_size}): set the config's global_batch_size to the batch "
                "size the checkpoint was trained with.")
        queues[rep] = contrastive.from_original_order(
            jnp.asarray(tensors[queue_key].T, jnp.float32), config.global_batch_size)
        queue_ptr[rep] = jnp.asarray(ptr, jnp.int32)
        used |= {queue_key, ptr_key}
    unexpected = sorted(k for k in tensors if k not in used and not k.endswith(IGNORED_SUFFIX))
    if unexpected:
        raise ValueError(f"The checkpoint has {len(unexpected)} keys that --pair={pair} with "
                         f"this config does not use: {_listed(unexpected)}")
    tx, _ = optim.make_optimizer(config, steps_per_epoch=1)
    return {
        "step": jnp.asarray(step, jnp.int32),
        "encoders": {"query": query, "key": key},
        "opt_state": tx.init({rep: v["params"] for rep, v in query.items()}),
        "queues": queues,
        "queue_ptr": queue_ptr,
    }


# ----------------------------------------------------------------------------- files


def load_torch_checkpoint(path: str) -> tuple[int, dict[str, np.ndarray]]:
    """Reads an original checkpoint file.

    Returns:
      (epoch, state_dict as float/int NumPy arrays with any ``module.`` prefix removed).

    Raises:
      ImportError: PyTorch is not installed (the message says how to install it).
      FileNotFoundError: no such file.
      ValueError: ``torch.load`` cannot read the file, or it is not a dict with ``epoch`` and
        ``state_dict``.
    """
    try:
        import torch  # Optional dependency, only needed here.
    except ImportError as error:
        raise ImportError(INSTALL_TORCH) from error
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No checkpoint file {path}.")
    try:
        # weights_only=False: the original pickles its optimizer state along with the weights.
        # Unpickling can run code, so only import checkpoints from trusted sources.
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
        raise ValueError(f"{path} is not a readable PyTorch checkpoint (torch.load failed: "
                         f"{error}).") from error
    if not isinstance(checkpoint, dict) or not {"epoch", "state_dict"} <= checkpoint.keys():
        found = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ValueError(f"{path} is not an ISC training checkpoint: expected a dict with "
                         f"'epoch' and 'state_dict', found {found}.")
    state_dict = checkpoint["state_dict"]
    prefix = "module."
    if all(k.startswith(prefix) for k in state_dict):
        state_dict = {k[len(prefix):]: v for k, v in state_dict.items()}
    tensors = {k: v.detach().cpu().numpy() for k, v in state_dict.items()}
    return int(checkpoint["epoch"]), tensors


def import_config(base: ml_collections.ConfigDict | None, pair: str, queue_size: int,
                  source: str) -> ml_collections.ConfigDict:
    """The config of an imported checkpoint.

    Args:
      base: the config to start from; None for ``config_lib.base_config()`` (the
        ``configs/ntu60.py:xsub`` defaults, full-size models).
      pair: the representations.
      queue_size: K of the checkpoint's queues.
      source: the checkpoint file, recorded as ``imported_from``.

    Raises:
      ValueError: the resulting config is invalid (see ``config_lib.validate``).
    """
    config = config_lib.base_config() if base is None else copy.deepcopy(base)
    with config.unlocked():
        config.representations = pair
        config.contrastive.queue_size = queue_size
        config.imported_from = os.path.abspath(source)
    config_lib.validate(config)
    return config


def import_checkpoint(checkpoint: str, pair: str, out: str,
                      config: ml_collections.ConfigDict | None = None) -> int:
    """Converts an original ISC checkpoint file into a skel_jax work directory.

    Args:
      checkpoint: the ``.pth.tar`` file.
      pair: ``seq-graph``, ``graph-image``, ``seq-image`` (inter-skeleton checkpoints) or
        ``seq``, ``graph``, ``image`` (intra-skeleton).
      out: the work directory to write; checkpoints go to ``out/checkpoints/<epoch>``.
      config: model sizes and other settings; None for ``config_lib.base_config()``.

    Returns:
      The step written (the checkpoint's epoch).

    Raises:
      ImportError: PyTorch is missing.
      FileNotFoundError: no checkpoint file.
      FileExistsError: ``out`` already has a checkpoint at that step.
      ValueError: the checkpoint does not fit ``pair`` or ``config``.
    """
    epoch, tensors = load_torch_checkpoint(checkpoint)
    config = import_config(config, pair, queue_size(tensors, pair), checkpoint)
    state = convert_state_dict(tensors, config, epoch)
    with checkpointing.Checkpointer(out) as ckpt:
        ckpt.save(epoch, state, config=config, force=True)
    return epoch


def _define_flags() -> None:
    # Defined only when run as a program, so that importing this module next to other binaries
    # (which also define --config) cannot clash.
    flags.DEFINE_string("checkpoint", None, "The original .pth.tar file.", required=True)
    flags.DEFINE_enum("pair", None, config_lib.PAIRS + config_lib.SINGLES,
                      "The representations the checkpoint was trained on.", required=True)
    flags.DEFINE_string("out", None, "Work directory to write.", required=True)
    config_flags.DEFINE_config_file(
        "config", None, "Config whose model sizes match the checkpoint; default "
        "configs/ntu60.py:xsub.", lock_config=False)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    args = flags.FLAGS
    try:
        step = import_checkpoint(args.checkpoint, args.pair, args.out, args.config)
    except (ImportError, FileNotFoundError, FileExistsError, ValueError) as error:
        sys.exit(f"import_torch: {error}")
    print(f"Imported {args.checkpoint} ({args.pair}) as step {step} of "
          f"{os.path.join(args.out, checkpointing.CHECKPOINTS_SUBDIR)}.")


if __name__ == "__main__":
    _define_flags()
    app.run(main)
