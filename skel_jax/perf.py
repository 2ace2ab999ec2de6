"""Measuring JAX programs: wall-clock time per call, FLOP counts, the matmul peak.

The benchmarks (``skel_jax.benchmark``) report throughput against the machine's own measured
matrix-multiply rate rather than a datasheet number, so that "fraction of peak" means the same on
a shared 2-core CPU and on an accelerator.

Two FLOP counts are offered. ``compiled_flops`` is XLA's cost analysis of the compiled program,
which counts the body of every while loop once (XLA cannot always know the trip count), so a
``lax.scan`` over 64 frames contributes one frame. ``matmul_flops`` counts the matrix products and
convolutions of a traced program with every scan iteration included.
"""

from collections.abc import Callable
import math
import statistics
import time

import jax
import jax.extend.core as jex
import jax.numpy as jnp


def block_time(fn: Callable, *args) -> tuple[float, object]:
    """Runs ``fn(*args)`` once and waits for every output array.

    Returns:
      (seconds, outputs).
    """
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return time.perf_counter() - start, out


def repeat_time(fn: Callable, *args, repeats: int, warmup: int = 1) -> list[float]:
    """Seconds of ``repeats`` blocked calls of ``fn(*args)`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    return [block_time(fn, *args)[0] for _ in range(repeats)]


def summarize_seconds(seconds: list[float]) -> dict[str, float]:
    """Median, mean and minimum of per-call times, in milliseconds.

    The median is the headline figure: on a shared machine single calls are slowed by other
    processes, and the median ignores a minority of such calls.
    """
    return {"ms": 1e3 * statistics.median(seconds), "ms_mean": 1e3 * statistics.fmean(seconds),
            "ms_min": 1e3 * min(seconds)}


def compiled_flops(compiled: jax.stages.Compiled) -> float:
    """Floating-point operations of one call of a compiled program, from XLA's cost analysis.

    XLA counts a multiply-add as two operations. For a program partitioned over several devices
    the count is that of one device's program.

    Raises:
      ValueError: the backend gives no FLOP estimate.
    """
    analysis = compiled.cost_analysis()
    # Older jaxlibs return one dict per device program, newer ones a single dict.
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0]
    if not analysis or "flops" not in analysis:
        raise ValueError("XLA's cost analysis gave no FLOP count for this program.")
    return float(analysis["flops"])


def _eqn_matmul_flops(eqn: jex.JaxprEqn) -> float:
    """2 x multiply-adds of one dot_general or convolution equation, else 0."""
    if eqn.primitive.name == "dot_general":
        (lhs_contracting, _), _ = eqn.params["dimension_numbers"]
        lhs_shape = eqn.invars[0].aval.shape
        contracted = math.prod(lhs_shape[i] for i in lhs_contracting)
        return 2.0 * math.prod(eqn.outvars[0].aval.shape) * contracted
    if eqn.primitive.name == "conv_general_dilated":
        kernel_shape = eqn.invars[1].aval.shape
        out_feature_axis = eqn.params["dimension_numbers"].rhs_spec[0]
        per_output = math.prod(kernel_shape) // kernel_shape[out_feature_axis]
        return 2.0 * math.prod(eqn.outvars[0].aval.shape) * per_output
    return 0.0


def _cond_branch_flops(eqn: jex.JaxprEqn, platform: str) -> float:
    branches = eqn.params["branches"]
    platforms = eqn.params.get("branches_platforms")
    if platforms:
        # lax.platform_dependent: only the branch of the platform that runs costs anything.
        default = None
        for branch, names in zip(branches, platforms):
            if names is None:
                default = branch
            elif platform in names:
                return _jaxpr_matmul_flops(branch.jaxpr, platform)
        if default is not None:
            return _jaxpr_matmul_flops(default.jaxpr, platform)
    return max(_jaxpr_matmul_flops(b.jaxpr, platform) for b in branches)


def _jaxpr_matmul_flops(jaxpr: jex.Jaxpr, platform: str) -> float:
    total = 0.0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "scan":
            total += eqn.params["length"] * _jaxpr_matmul_flops(eqn.params["jaxpr"].jaxpr,
                                                                platform)
        elif name == "cond":
            total += _cond_branch_flops(eqn, platform)
        else:
            # A while loop's trip count is unknown here: its body counts once, as in XLA.
            total += _eqn_matmul_flops(eqn) + sum(
                _jaxpr_matmul_flops(sub, platform) for sub in jex.jaxprs_in_params(eqn.params))
    return total


def matmul_flops(fn: Callable, *args, platform: str | None = None) -> float:
    """FLOPs of the matrix products and convolutions of ``fn(*args)``, loops unrolled.

    Counts 2 x multiply-adds of every ``dot_general`` and ``conv_general_dilated`` in the traced
    program (nothing is executed), multiplying scan bodies by their length, taking the branch
    of ``platform`` in a ``lax.platform_dependent`` switch and the costliest branch of any other
    ``cond``. Elementwise work is not counted; in the ISC step it is a few percent of the total.

    Args:
      fn: a JAX-traceable function (jitted or not).
      *args: its arguments, concrete or ``jax.ShapeDtypeStruct``.
      platform: the platform the program runs on ("cpu", "cuda", "tpu", ...); the default
        backend's when None.

    Returns:
      The FLOP count of one call.
    """
    platform = platform or jax.default_backend()
    return _jaxpr_matmul_flops(jax.make_jaxpr(fn)(*args).jaxpr, platform)


def default_matmul_size(platform: str) -> int:
    """Side of the square product that saturates the device: 2048 on CPU, 8192 elsewhere."""
    return 2048 if platform == "cpu" else 8192


def matmul_peak(dtype, *, size: int | None = None, repeats: int = 5,
                device: jax.Device | None = None) -> float:
    """Measured FLOP/s of a square ``size`` x ``size`` matrix product on one device.

    Args:
      dtype: operand dtype (the product accumulates as XLA does by default).
      size: matrix side; ``default_matmul_size`` of the device's platform when None.
      repeats: timed products; the median is used.
      device: where to run it (default: the first device).

    Returns:
      2 * size**3 / median seconds.
    """
    device = jax.devices()[0] if device is None else device
    size = default_matmul_size(device.platform) if size is None else size
    keys = jax.random.split(jax.random.key(0))
    a, b = (jax.device_put(jax.random.normal(k, (size, size), dtype), device) for k in keys)
    product = jax.jit(jnp.matmul)
    seconds = repeat_time(product, a, b, repeats=repeats)
    return 2.0 * size ** 3 / statistics.median(seconds)
