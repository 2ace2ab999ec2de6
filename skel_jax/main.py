r"""Pretrains ISC.

  python -m skel_jax.main --config=configs/ntu120.py:xsub --workdir=/tmp/isc_ntu120
  python -m skel_jax.main --config=configs/demo.py --workdir=/tmp/skel_jax_demo

Any config field can be overridden, e.g. ``--config.global_batch_size=128``; the config is
locked, so a misspelt field is an error. Rerunning with the same workdir resumes.
"""

import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from skel_jax import checkpointing
from skel_jax import cli
from skel_jax import config_lib
from skel_jax import distributed
from skel_jax import train

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Checkpoints, metrics and logs go here.",
                               required=True)
flags.mark_flags_as_required(["config"])
# Multi-process runs on clusters JAX cannot detect; see skel_jax.distributed.
distributed.define_flags()


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    cli.quiet_library_info_logs()
    distributed.initialize_from_flags()
    try:
        train.train(_CONFIG.value, _WORKDIR.value)
    # Errors whose message says what to do are shown as such; anything else keeps its traceback.
    except (config_lib.ConfigError, FileNotFoundError, checkpointing.CheckpointReadError,
            train.NonFiniteLossError) as error:
        sys.exit(f"main: {error}")


if __name__ == "__main__":
    app.run(main)
