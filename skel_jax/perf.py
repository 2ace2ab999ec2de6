"""Measuring compiled JAX programs: wall-clock time per call, XLA's FLOP count, matmul peak.

The benchmarks (``skel_jax.benchmark``) report throughput against the machine's own measured
matrix-multiply rate rather than a datasheet number, so that "fraction of peak" means the same on
a shared 2-core CPU and on an accelerator.
"""

from collections.abc import Callable
import statistics
import time

import jax
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
