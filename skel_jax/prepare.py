r"""Builds a skeleton dataset from the raw download, as ArrayRecord files, without TensorFlow.

  python -m skel_jax.prepare --dataset=ntu_rgbd/ntu60_xsub \
      --manual_dir=~/datasets/ntu_raw --data_dir=~/tensorflow_datasets

Files are parsed in parallel on all cores. Afterwards the dataset reads back with
``tfds.data_source('ntu_rgbd/ntu60_xsub', data_dir=..., split='train')`` (after
``import tfds_builders``) or through ``skel_jax.data.input_pipeline``.
"""

import os
import sys
import time

from absl import app
from absl import flags
from absl import logging

from skel_jax import config_lib

_BUILDERS = ("ntu_rgbd", "pku_mmd")

_DATASET = flags.DEFINE_string(
    "dataset", None, "Builder and config, e.g. ntu_rgbd/ntu60_xsub or pku_mmd/phase1_xsub.",
    required=True)
_MANUAL_DIR = flags.DEFINE_string(
    "manual_dir", None, "Folder holding the raw download (see the builder's instructions).",
    required=True)
_DATA_DIR = flags.DEFINE_string(
    "data_dir", os.path.expanduser("~/tensorflow_datasets"), "Where the built dataset goes.")
_SKIP_BAD_FILES = flags.DEFINE_bool(
    "skip_bad_files", False,
    "Log and skip files that fail to parse (listed in skipped_files.txt beside the dataset) "
    "instead of stopping.")
_NUM_WORKERS = flags.DEFINE_integer(
    "num_workers", None, "Processes that parse files; default: all available cores.")
_OVERWRITE = flags.DEFINE_bool(
    "overwrite", False, "Rebuild even if the dataset already exists (the old one is replaced).")


def prepare(dataset: str, manual_dir: str, data_dir: str, *, skip_bad_files: bool = False,
            num_workers: int | None = None, overwrite: bool = False):
    """Builds ``dataset`` (``builder/config``) from ``manual_dir`` into ``data_dir``.

    Args:
      dataset: e.g. ``ntu_rgbd/ntu60_xsub``.
      manual_dir: the raw download.
      data_dir: the TFDS data directory to write to.
      skip_bad_files: skip unparseable files instead of failing.
      num_workers: parsing processes.
      overwrite: replace an existing build of the same version.

    Returns:
      (builder, built): the builder, whose ``info.splits`` describe the dataset, and whether it
      was built now (False when an existing build was kept).

    Raises:
      FileNotFoundError: ``manual_dir`` is not a folder or holds no raw files.
      config_lib.ConfigError: an unknown builder or config.
      BadSampleError (of the builder's module): a raw file that cannot be converted, named with
        its line, unless ``skip_bad_files``.
    """
    import tensorflow_datasets as tfds  # Heavy; keep ``--help`` fast.

    import tfds_builders  # noqa: F401  (registers the builders)

    manual_dir = os.path.expanduser(manual_dir)
    if not os.path.isdir(manual_dir):
        raise FileNotFoundError(f"--manual_dir={manual_dir} is not a folder.")
    builder_name, _, config = dataset.partition("/")
    if builder_name not in _BUILDERS:
        raise config_lib.ConfigError(
            f"Unknown --dataset={dataset}: the builders are {_BUILDERS}.")
    configs = [c.name for c in tfds.builder_cls(builder_name).BUILDER_CONFIGS]
    if config not in configs:
        raise config_lib.ConfigError(
            f"Unknown --dataset={dataset}: {builder_name} has the configs {configs}.")
    builder = tfds.builder(dataset, data_dir=os.path.expanduser(data_dir),
                           file_format="array_record", skip_bad_files=skip_bad_files,
                           num_workers=num_workers)
    if builder.is_prepared() and not overwrite:
        return builder, False
    mode = (tfds.download.GenerateMode.FORCE_REDOWNLOAD if overwrite
            else tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=manual_dir, download_mode=mode))
    return builder, True


def main(argv):
    del argv
    from tfds_builders.ntu_rgbd import ntu_rgbd_dataset_builder as ntu_builder
    from tfds_builders.pku_mmd import pku_mmd_dataset_builder as pku_builder

    start = time.perf_counter()
    try:
        builder, built = prepare(_DATASET.value, _MANUAL_DIR.value, _DATA_DIR.value,
                                 skip_bad_files=_SKIP_BAD_FILES.value,
                                 num_workers=_NUM_WORKERS.value, overwrite=_OVERWRITE.value)
    # Their messages name the file (and line) at fault and what to do; a traceback adds nothing.
    except (FileNotFoundError, config_lib.ConfigError, ntu_builder.BadSampleError,
            pku_builder.BadSampleError) as error:
        sys.exit(f"prepare: {error}")
    seconds = time.perf_counter() - start
    if not built:
        print(f"{builder.info.full_name} is already built in {builder.data_dir}; "
              "pass --overwrite to rebuild it.")
        return
    total = sum(split.num_examples for split in builder.info.splits.values())
    for name, split in sorted(builder.info.splits.items()):
        print(f"{name}: {split.num_examples} examples")
    print(f"{builder.info.full_name} in {builder.data_dir}: {total} examples in {seconds:.1f} s "
          f"({total / max(seconds, 1e-9):.1f} examples/s)")
    skipped = os.path.join(builder.data_dir, "skipped_files.txt")
    if os.path.exists(skipped) and os.path.getsize(skipped):
        with open(skipped) as f:
            print(f"{sum(1 for _ in f)} files skipped, listed in {skipped}", file=sys.stderr)


if __name__ == "__main__":
    logging.set_verbosity(logging.WARNING)
    app.run(main)
