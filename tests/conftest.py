"""Test-wide setup: eight fake CPU devices so that sharding code is exercised everywhere."""

import os

# XLA:CPU's concurrency-optimised scheduler lets the fake devices of one process reach
# independent collectives in different orders, and they then wait for each other until XLA
# aborts ("only 6 of 8 arrived"); the default scheduler gives every device the same order.
CPU_COLLECTIVES_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"

# Must happen before jax initialises its backends.
os.environ.setdefault("XLA_FLAGS",
                      f"--xla_force_host_platform_device_count=8 {CPU_COLLECTIVES_FLAG}")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
