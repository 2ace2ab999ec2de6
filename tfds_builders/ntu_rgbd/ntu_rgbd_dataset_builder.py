"""NTU RGB+D 60 and 120 skeletons, normalised exactly as ISC (2s-AGCN's ``ntu_gendata``) does."""

import dataclasses
import functools
import logging

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from skel_jax.data import ntu_meta
from skel_jax.data import ntu_sources
from skel_jax.data import parallel

MAX_FRAMES = 300
SKIPPED_FILES_NAME = "skipped_files.txt"


class BadSampleError(ValueError):
    """A raw file could not be converted, and the build was not told to skip bad files."""


@dataclasses.dataclass
class NtuConfig(tfds.core.BuilderConfig):
    """One official benchmark: which samples exist and how they split into train and test."""

    benchmark: str = "xsub60"
    num_classes: int = 60


class Builder(tfds.core.GeneratorBasedBuilder):
    """NTU RGB+D skeleton sequences for the official cross-subject/view/setup benchmarks.

    Besides the usual builder arguments, the constructor takes:
      skip_bad_files: log and skip files that fail to parse (their names and the reasons go to
        ``skipped_files.txt`` beside the dataset) instead of stopping the build.
      num_workers: processes that parse files (default: all available cores).
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [
        NtuConfig(name="ntu60_xsub", benchmark="xsub60", num_classes=60,
                  description="NTU RGB+D 60, cross-subject: 20 training performers."),
        NtuConfig(name="ntu60_xview", benchmark="xview60", num_classes=60,
                  description="NTU RGB+D 60, cross-view: cameras 2 and 3 train, camera 1 tests."),
        NtuConfig(name="ntu120_xsub", benchmark="xsub120", num_classes=120,
                  description="NTU RGB+D 120, cross-subject: 53 training performers."),
        NtuConfig(name="ntu120_xset", benchmark="xset120", num_classes=120,
                  description="NTU RGB+D 120, cross-setup: even setups train, odd setups test."),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Download the skeleton data of NTU RGB+D from https://rose1.ntu.edu.sg/dataset/actionRecognition/
    (registration required) and put it anywhere below `manual_dir`, as any mix of:
      * the official archives `nturgbd_skeletons_s001_to_s017.zip` (NTU-60) and
        `nturgbd_skeletons_s018_to_s032.zip` (the NTU-120 extension; NTU-120 needs both);
      * extracted `.skeleton` files, in any folder layout.
    Optionally add the official lists of samples with missing skeletons under their official names
    (`NTU_RGBD_samples_with_missing_skeletons.txt`, `NTU_RGBD120_samples_with_missing_skeletons.txt`,
    from https://github.com/shahroudy/NTURGB-D/tree/master/Matlab). Listed samples are left out, as
    in the standard benchmarks. Without a list, samples whose files hold no body at all are left out
    instead and a warning says that the sample set may differ from the standard one.
    """

    def __init__(self, *, skip_bad_files: bool = False, num_workers: int | None = None, **kwargs):
        self._skip_bad_files = skip_bad_files
        self._num_workers = num_workers
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "skeleton": tfds.features.Tensor(shape=(None, 2, 25, 3), dtype=np.float32,
                                                 doc="Frames, persons, joints, xyz (metres)."),
                "num_frames": tfds.features.Scalar(np.int32, doc="Frames in the file (<= 300)."),
                "label": tfds.features.ClassLabel(
                    names=ntu_meta.ACTION_NAMES[: self.builder_config.num_classes]),
                "sample_name": tfds.features.Text(doc="E.g. S001C002P003R002A013."),
                "setup": tfds.features.Scalar(np.int32),
                "camera": tfds.features.Scalar(np.int32),
                "subject": tfds.features.Scalar(np.int32),
                "replication": tfds.features.Scalar(np.int32),
            }),
            homepage="https://rose1.ntu.edu.sg/dataset/actionRecognition/",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = dl_manager.manual_dir
        sources = ntu_sources.find_skeleton_sources(root)
        if not sources:
            raise FileNotFoundError(
                f"No .skeleton files or official archives found below {root}.\n"
                + self.MANUAL_DOWNLOAD_INSTRUCTIONS)
        missing = self._missing_samples(root)
        if missing is None:
            logging.warning(
                "No official missing-skeleton list found below %s: samples whose files hold no "
                "body at all are left out instead, so the sample set may differ from the "
                "standard benchmark's.", root)
        train, test = ntu_sources.select_samples(sources, self.builder_config.benchmark, missing)
        (epath.Path(self.data_dir) / SKIPPED_FILES_NAME).write_text("")
        return {
            "train": self._generate_examples(train, skip_empty=missing is None),
            "test": self._generate_examples(test, skip_empty=missing is None),
        }

    def _missing_samples(self, root) -> frozenset[str] | None:
        # NTU-60 may also use the 120 list: it holds all 302 NTU-60 names, and its other names
        # are NTU-120 setups that NTU-60 does not include.
        for dataset in (60, 120) if self.builder_config.num_classes == 60 else (120,):
            path = ntu_sources.find_missing_list(root, dataset)
            if path is not None:
                return ntu_meta.read_missing_list(path.read_text())
        return None

    def _generate_examples(self, sources: list[ntu_sources.SkeletonSource], skip_empty: bool):
        convert = functools.partial(ntu_sources.convert_sample, max_frames=MAX_FRAMES)
        skipped = []
        try:
            for converted in parallel.ordered_map(convert, sources, self._num_workers):
                if converted.error is not None:
                    if not self._skip_bad_files:
                        raise BadSampleError(
                            f"{converted.error}\nFix or remove the file, or build with "
                            "skip_bad_files=True (`python -m skel_jax.prepare --skip_bad_files`).")
                    logging.warning("Skipping a bad file: %s", converted.error)
                    skipped.append(f"{converted.name}\t{converted.error}")
                    continue
                if converted.empty and skip_empty:
                    logging.warning("Skipping %s: its file holds no body.", converted.name)
                    skipped.append(f"{converted.name}\tno body in any frame")
                    continue
                yield converted.name, converted.example
        finally:
            if skipped:
                with (epath.Path(self.data_dir) / SKIPPED_FILES_NAME).open("a") as f:
                    f.write("".join(line.replace("\n", " ") + "\n" for line in skipped))
