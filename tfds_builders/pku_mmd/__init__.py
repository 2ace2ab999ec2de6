"""The ``pku_mmd`` dataset."""
