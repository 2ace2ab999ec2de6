"""Joins the processes of a multi-host job into one JAX runtime, when the launch asks for it.

Every host of a job (a TPU VM worker, a SLURM task) runs the same program, and
``jax.distributed.initialize`` must connect them before anything touches a device. After that
``jax.devices()`` lists the devices of all processes, and the rest of skel_jax (one mesh over
them, per-process input, process 0 writing logs) needs nothing more.

It happens in one of two ways, and otherwise not at all (a single process on one host):

* ``--coordinator_address=HOST:PORT --num_processes=N --process_id=I``: all three, on every
  process, for clusters JAX cannot detect (and for tests on one machine).
* ``SKEL_JAX_DISTRIBUTED=1`` in the environment: JAX reads the rest from the cluster, as on
  Cloud TPU VMs and pod slices (no arguments needed), SLURM (``SLURM_*``) and Open MPI.
  Gating on a variable, as big_vision does with ``BV_JAX_INIT``, keeps a plain run inside a
  SLURM allocation or on one TPU VM from waiting for processes that were never started.

On CPU-only clusters the processes exchange data through JAX's CPU collectives, gloo by
default (``jax_cpu_collectives_implementation``).
"""

from collections.abc import Mapping
import os

import jax
from absl import logging

ENV_VAR = "SKEL_JAX_DISTRIBUTED"
FLAG_NAMES = ("coordinator_address", "num_processes", "process_id")
_ENABLED = ("1", "true", "yes")
_DISABLED = ("", "0", "false", "no")


def requested_by_environment(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``SKEL_JAX_DISTRIBUTED`` asks for a multi-process runtime.

    Args:
      environ: the environment to read; default ``os.environ``.

    Returns:
      True for ``1``/``true``/``yes``, False when unset or ``0``/``false``/``no`` (any case).

    Raises:
      ValueError: any other value, which is more likely a typo than a request.
    """
    environ = os.environ if environ is None else environ
    value = environ.get(ENV_VAR, "").strip().lower()
    if value in _ENABLED:
        return True
    if value in _DISABLED:
        return False
    raise ValueError(f"{ENV_VAR}={environ[ENV_VAR]!r} is neither on ({', '.join(_ENABLED)}) nor "
                     f"off ({', '.join(repr(v) for v in _DISABLED)}).")


def _check_flags(coordinator_address: str | None, num_processes: int | None,
                 process_id: int | None) -> bool:
    """Validates the explicit settings; returns whether they were given."""
    values = dict(zip(FLAG_NAMES, (coordinator_address, num_processes, process_id)))
    missing = [name for name, value in values.items() if value is None]
    if len(missing) == len(FLAG_NAMES):
        return False
    if missing:
        given = [name for name in FLAG_NAMES if name not in missing]
        raise ValueError(
            f"Multi-process runs need all of --coordinator_address, --num_processes and "
            f"--process_id; got {', '.join('--' + n for n in given)} without "
            f"{', '.join('--' + n for n in missing)}. Give all three on every process, or none "
            f"and set {ENV_VAR}=1 on a cluster JAX detects (Cloud TPU, SLURM, Open MPI).")
    if ":" not in coordinator_address:
        raise ValueError(f"--coordinator_address must be HOST:PORT (process 0's address and a "
                         f"free port), got {coordinator_address!r}.")
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise ValueError(f"Need num_processes >= 1 and 0 <= process_id < num_processes; got "
                         f"--num_processes={num_processes} --process_id={process_id}.")
    return True


def maybe_initialize(coordinator_address: str | None = None, num_processes: int | None = None,
                     process_id: int | None = None, *,
                     environ: Mapping[str, str] | None = None) -> bool:
    """Calls ``jax.distributed.initialize`` if the flags or the environment ask for it.

    Call it first thing in a binary's ``main``, before any JAX computation or device query.

    Args:
      coordinator_address: ``HOST:PORT`` of process 0's coordinator service.
      num_processes: processes in the job.
      process_id: this process, in ``[0, num_processes)``.
      environ: the environment holding ``SKEL_JAX_DISTRIBUTED``; default ``os.environ``.

    Returns:
      Whether the multi-process runtime was started.

    Raises:
      ValueError: some but not all of the three settings are given, they are inconsistent,
        ``SKEL_JAX_DISTRIBUTED`` has an unrecognised value, or it is set but JAX finds no
        cluster to read the settings from.
    """
    explicit = _check_flags(coordinator_address, num_processes, process_id)
    if explicit:
        jax.distributed.initialize(coordinator_address=coordinator_address,
                                   num_processes=num_processes, process_id=process_id)
    elif requested_by_environment(environ):
        try:
            jax.distributed.initialize()
        except ValueError as error:
            # JAX's own message names one missing argument, not why it is missing.
            raise ValueError(
                f"{ENV_VAR}=1 asks for a multi-process run, but JAX detected no cluster "
                f"(Cloud TPU, SLURM, Open MPI) to read the coordinator, process count and id "
                f"from ({error}). Pass --coordinator_address, --num_processes and "
                f"--process_id instead.") from error
    else:
        return False
    logging.info("Process %d of %d; %d local of %d devices.", jax.process_index(),
                 jax.process_count(), jax.local_device_count(), jax.device_count())
    return True


def define_flags() -> None:
    """Defines ``--coordinator_address``, ``--num_processes`` and ``--process_id`` (absl)."""
    from absl import flags

    flags.DEFINE_string("coordinator_address", None, "HOST:PORT of process 0, on every process.")
    flags.DEFINE_integer("num_processes", None, "Number of processes.")
    flags.DEFINE_integer("process_id", None, "This process, 0 to num_processes - 1.")


def initialize_from_flags() -> bool:
    """``maybe_initialize`` with the values of the flags ``define_flags`` defined."""
    from absl import flags

    return maybe_initialize(*(flags.FLAGS[name].value for name in FLAG_NAMES))
