"""What the command-line programs' log filter shows."""

import logging

import pytest

from skel_jax import cli


def _record(pathname, level, message):
    return logging.LogRecord("absl", level, pathname, 1, message, None, None)


@pytest.mark.parametrize("pathname, level, message, shown", [
    ("/src/skel_jax/train.py", logging.INFO, "step 20", True),
    ("/site-packages/orbax/checkpoint/x.py", logging.INFO, "Saving item", False),
    ("/site-packages/orbax/checkpoint/x.py", logging.WARNING, "Something odd", True),
    ("/site-packages/orbax/checkpoint/x.py", logging.WARNING,
     "Given directory is read only=/tmp/run/checkpoints", False),
    ("/site-packages/orbax/checkpoint/x.py", logging.ERROR,
     "Given directory is read only=/tmp/run/checkpoints", True),
])
def test_library_records_are_filtered(pathname, level, message, shown):
    assert cli._shown(_record(pathname, level, message)) is shown
