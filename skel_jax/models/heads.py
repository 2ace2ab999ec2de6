"""Heads on top of an encoder feature: MoCo projection MLP and linear classifier."""

import math

import jax
import jax.numpy as jnp
from flax import nnx

LINEAR_HEAD_INITS = ("normal", "torch")
# How the original initialises the projection head's output layer. With ``mlp=True`` it keeps
# the backbone's own ``fc`` (built with num_class = 128) as that layer and only the new hidden
# layer gets PyTorch's default, so the output layer follows each backbone's init:
#   "torch": PyTorch's default (no backbone re-initialises its fc);
#   "xavier": BiGRU (``weights_init_gru`` re-draws every 2-D weight, biases keep the default);
#   "xavier_zero_bias": HCN (``weights_init``: xavier-uniform weight, bias 0);
#   "agcn": AGCN (weight ~ N(0, 2 / num_class), bias keeps the default).
MLP_OUTPUT_INITS = ("torch", "xavier", "xavier_zero_bias", "agcn")


def _symmetric_uniform(bound: float) -> jax.nn.initializers.Initializer:
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, minval=-bound, maxval=bound)

    return init


def _output_linear(hidden_features, out_features, init, **kw) -> nnx.Linear:
    if init == "torch":
        return torch_linear(hidden_features, out_features, **kw)
    if init == "agcn":
        kernel_init = jax.nn.initializers.normal(stddev=math.sqrt(2.0 / out_features))
    else:
        kernel_init = jax.nn.initializers.xavier_uniform()
    if init == "xavier_zero_bias":
        bias_init = jax.nn.initializers.zeros
    else:  # PyTorch's default bias, as torch_linear draws it.
        bias_init = _symmetric_uniform(1.0 / math.sqrt(hidden_features))
    return nnx.Linear(hidden_features, out_features, kernel_init=kernel_init,
                      bias_init=bias_init, **kw)


def torch_linear(
    in_features: int,
    out_features: int,
    *,
    rngs: nnx.Rngs,
    dtype: jnp.dtype = jnp.float32,
    param_dtype: jnp.dtype = jnp.float32,
) -> nnx.Linear:
    """An ``nnx.Linear`` with ``torch.nn.Linear``'s default initialisation.

    kaiming_uniform(a=sqrt(5)) on the weight and the bias rule both reduce to
    U(-1/sqrt(in_features), 1/sqrt(in_features)).

    Args:
        in_features: input size (the fan-in).
        out_features: output size.
        rngs: parameter keys.
        dtype: compute dtype.
        param_dtype: parameter dtype.

    Returns:
        The layer; its kernel (in, out) is PyTorch's weight (out, in) transposed.
    """
    bound_init = _symmetric_uniform(1.0 / math.sqrt(in_features))
    return nnx.Linear(
        in_features,
        out_features,
        kernel_init=bound_init,
        bias_init=bound_init,
        dtype=dtype,
        param_dtype=param_dtype,
        rngs=rngs,
    )


class MLPHead(nnx.Module):
    """MoCo v2 projection head: Linear -> ReLU -> Linear.

    Parameter tree, with the original's ``fc`` Sequential entries they copy from
    (kernel = PyTorch weight transposed):
        hidden/kernel (in, hidden), hidden/bias (hidden)  <- fc.0.weight, fc.0.bias
        output/kernel (hidden, out), output/bias (out)    <- fc.2.weight, fc.2.bias

    Args:
        in_features: feature size d.
        hidden_features: hidden size; defaults to ``in_features``.
        out_features: embedding size.
        rngs: parameter keys.
        dtype: compute dtype.
        param_dtype: parameter dtype.
        output_init: one of ``MLP_OUTPUT_INITS``, the output layer's initialisation (the
            hidden layer always gets PyTorch's default, as in the original).

    Raises:
        ValueError: unknown ``output_init``.
    """

    def __init__(
        self,
        in_features: int,
        *,
        hidden_features: int | None = None,
        out_features: int = 128,
        rngs: nnx.Rngs,
        dtype: jnp.dtype = jnp.float32,
        param_dtype: jnp.dtype = jnp.float32,
        output_init: str = "torch",
    ):
        if output_init not in MLP_OUTPUT_INITS:
            raise ValueError(f"Unknown MLPHead output_init {output_init!r}; valid choices are "
                             f"{MLP_OUTPUT_INITS}.")
        hidden_features = in_features if hidden_features is None else hidden_features
        kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        self.hidden = torch_linear(in_features, hidden_features, **kw)
        self.output = _output_linear(hidden_features, out_features, output_init, **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps (N, in_features) to (N, out_features)."""
        return self.output(jax.nn.relu(self.hidden(x)))


class LinearHead(nnx.Module):
    """Downstream classifier: one Linear layer on the feature.

    Parameter tree: linear/kernel (in, num_classes) = PyTorch fc.weight transposed,
    linear/bias (num_classes).

    Args:
        in_features: feature size d.
        num_classes: number of classes.
        rngs: parameter keys.
        dtype: compute dtype.
        param_dtype: parameter dtype.
        init: ``"normal"``: weight ~ N(0, 0.01^2), bias 0 (the linear-evaluation
            protocol); ``"torch"``: ``torch.nn.Linear``'s default.

    Raises:
        ValueError: unknown ``init``.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        rngs: nnx.Rngs,
        dtype: jnp.dtype = jnp.float32,
        param_dtype: jnp.dtype = jnp.float32,
        init: str = "normal",
    ):
        if init not in LINEAR_HEAD_INITS:
            raise ValueError(
                f"Unknown LinearHead init {init!r}; valid choices are {LINEAR_HEAD_INITS}."
            )
        kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        if init == "torch":
            self.linear = torch_linear(in_features, num_classes, **kw)
        else:
            self.linear = nnx.Linear(
                in_features,
                num_classes,
                kernel_init=jax.nn.initializers.normal(stddev=0.01),
                bias_init=jax.nn.initializers.zeros,
                **kw,
            )

    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps (N, in_features) to logits (N, num_classes)."""
        return self.linear(x)
