"""The device mesh and how the train state and batches are laid out on it.

One mesh axis, ``data``, spans every device of every process. Batches are sharded along it,
parameters and optimizer state replicated, and each contrastive queue sharded along its length
(see ``contrastive.enqueue``).
"""

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from skel_jax import config_lib

DATA = "data"


def make_mesh(devices=None) -> Mesh:
    """A 1-D data-parallel mesh over ``devices`` (default: all devices of all processes)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (DATA,), axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over the data axis."""
    return NamedSharding(mesh, P(DATA))


def state_shardings(mesh: Mesh, state):
    """Shardings for a train state (concrete or abstract): queues along K, the rest replicated."""
    def sharding_of(path, _):
        return batch_sharding(mesh) if path and getattr(path[0], "key", None) == "queues" \
            else replicated(mesh)
    return jax.tree_util.tree_map_with_path(sharding_of, state)


def with_shardings(abstract_state, shardings):
    """Attaches shardings to an abstract state (for restoring checkpoints onto the mesh)."""
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                        abstract_state, shardings)


def check_divisible(global_batch_size: int, mesh: Mesh) -> None:
    """The global batch must split evenly over the devices and the processes.

    Raises:
      config_lib.ConfigError: it does not.
    """
    if global_batch_size % mesh.size:
        raise config_lib.ConfigError(
            f"global_batch_size ({global_batch_size}) must be a multiple of the "
            f"number of devices ({mesh.size}).")
    if global_batch_size % jax.process_count():
        raise config_lib.ConfigError(
            f"global_batch_size ({global_batch_size}) must be a multiple of the "
            f"number of processes ({jax.process_count()}).")


def put_batch(local_batch: dict, mesh: Mesh) -> dict:
    """Global device arrays from this process's rows of the global batch (any process count)."""
    sharding = batch_sharding(mesh)
    return {name: jax.make_array_from_process_local_data(sharding, value)
            for name, value in local_batch.items()}
