"""An encoder = backbone (BiGRU, AGCN or HCN) + optional head, and its factory."""

import math

import jax
import jax.numpy as jnp
from flax import nnx

from skel_jax.models.bigru import BiGRU
from skel_jax.models.hcn import HCN
from skel_jax.models.heads import LinearHead, MLPHead

REPRESENTATIONS = ("seq", "graph", "image")
HEADS = ("mlp", "linear", None)
# The projection head's output layer is initialised as each original backbone initialises the
# fc it replaces (see heads.MLP_OUTPUT_INITS).
PRETRAIN_OUTPUT_INIT = {"seq": "xavier", "graph": "agcn", "image": "xavier_zero_bias"}


def count_params(module: nnx.Module) -> int:
    """Number of scalars in the module's ``nnx.Param`` variables.

    Works on concrete modules and on abstract ones from ``nnx.eval_shape``.
    BatchNorm statistics, RNG state and other non-Param variables are not counted.
    """
    leaves = jax.tree.leaves(nnx.state(module, nnx.Param))
    return sum(math.prod(leaf.shape) for leaf in leaves)


class Encoder(nnx.Module):
    """A backbone with an optional head.

    Parameter tree: ``backbone/...`` (see BiGRU, AGCN, HCN) and, when present,
    ``head/...`` (see MLPHead, LinearHead).

    Args:
        backbone: module mapping a clip batch (N, T, M, V, C) to (N, feature_dim)
            and exposing ``feature_dim``.
        head: module applied to the features, or None.
    """

    def __init__(self, backbone: nnx.Module, head: nnx.Module | None = None):
        self.backbone = backbone
        self.head = head
        self.feature_dim = backbone.feature_dim

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array | None]:
        """Returns ``(features, head(features))``, or ``(features, None)`` without head."""
        features = self.backbone(x)
        return features, (None if self.head is None else self.head(features))


def _build_backbone(representation, *, rngs, dtype, param_dtype, **backbone_kwargs):
    kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype, **backbone_kwargs)
    if representation == "seq":
        return BiGRU(**kw)
    if representation == "image":
        return HCN(**kw)
    # Imported here so that seq/image encoders do not depend on the AGCN module.
    from skel_jax.models.agcn import AGCN

    return AGCN(**kw)


def build_encoder(
    representation: str,
    *,
    head: str | None,
    num_classes: int | None = None,
    rngs: nnx.Rngs,
    dtype: jnp.dtype = jnp.float32,
    param_dtype: jnp.dtype = jnp.float32,
    **backbone_kwargs,
) -> Encoder:
    """Builds the encoder of one skeleton representation.

    Args:
        representation: ``"seq"`` (BiGRU), ``"graph"`` (AGCN) or ``"image"`` (HCN).
        head: ``"mlp"`` (pretraining projection to 128-d), ``"linear"``
            (classifier with ``num_classes`` outputs) or None (features only).
        num_classes: number of classes; required with ``head="linear"`` and
            rejected otherwise.
        rngs: parameter and dropout keys.
        dtype: compute dtype.
        param_dtype: parameter dtype.
        **backbone_kwargs: architecture arguments of the backbone class.

    Returns:
        The encoder.

    Raises:
        ValueError: unknown representation or head, or ``num_classes`` missing,
            not positive, or given without a linear head.
    """
    if representation not in REPRESENTATIONS:
        raise ValueError(
            f"Unknown representation {representation!r}; valid choices are {REPRESENTATIONS}."
        )
    if head not in HEADS:
        raise ValueError(f"Unknown head {head!r}; valid choices are {HEADS}.")
    if head == "linear" and (num_classes is None or num_classes <= 0):
        raise ValueError(f"head='linear' needs a positive num_classes; got {num_classes!r}.")
    if head != "linear" and num_classes is not None:
        raise ValueError(f"num_classes is only used with head='linear'; got head={head!r}.")

    backbone = _build_backbone(
        representation, rngs=rngs, dtype=dtype, param_dtype=param_dtype, **backbone_kwargs
    )
    kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
    if head == "mlp":
        head_module = MLPHead(backbone.feature_dim,
                              output_init=PRETRAIN_OUTPUT_INIT[representation], **kw)
    elif head == "linear":
        head_module = LinearHead(backbone.feature_dim, num_classes, **kw)
    else:
        head_module = None
    return Encoder(backbone, head_module)
