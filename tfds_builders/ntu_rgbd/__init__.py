"""The ``ntu_rgbd`` dataset."""
