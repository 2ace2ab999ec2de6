"""Setup shared by the command-line programs."""

import logging as std_logging

from absl import logging


# Orbax warns on every read-only open, which is how evaluation opens a work directory on purpose.
_EXPECTED_WARNINGS = ("Given directory is read only",)


def _shown(record: std_logging.LogRecord) -> bool:
    if "/skel_jax/" in record.pathname:
        return True
    if record.levelno < std_logging.WARNING:
        return False
    return not (record.levelno == std_logging.WARNING
                and record.getMessage().startswith(_EXPECTED_WARNINGS))


def quiet_library_info_logs() -> None:
    """Shows INFO lines from skel_jax only; libraries (Orbax writes dozens per save) from WARNING.

    Orbax's warning that a directory is opened read-only is dropped too: the evaluation and
    embedding programs always open it so.
    """
    logging.set_verbosity(logging.INFO)
    # Records carry the standard library's levels; absl's constants are verbosities.
    logging.get_absl_handler().python_handler.addFilter(_shown)
