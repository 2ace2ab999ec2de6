"""Setup shared by the command-line programs."""

import logging as std_logging

from absl import logging


def quiet_library_info_logs() -> None:
    """Shows INFO lines from skel_jax only; libraries (Orbax writes dozens per save) from WARNING."""
    logging.set_verbosity(logging.INFO)
    # Records carry the standard library's levels; absl's constants are verbosities.
    logging.get_absl_handler().python_handler.addFilter(
        lambda record: record.levelno >= std_logging.WARNING or "/skel_jax/" in record.pathname)
