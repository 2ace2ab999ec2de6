"""Test-wide setup: eight fake CPU devices so that sharding code is exercised everywhere."""

import os

# Must happen before jax initialises its backends.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
