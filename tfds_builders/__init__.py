"""TFDS builders for the skeleton datasets. Importing this package registers them with TFDS."""

from tfds_builders.ntu_rgbd import ntu_rgbd_dataset_builder  # noqa: F401  (registers ntu_rgbd)
from tfds_builders.pku_mmd import pku_mmd_dataset_builder  # noqa: F401  (registers pku_mmd)
