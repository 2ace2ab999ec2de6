"""PKU-MMD phases 1 and 2, cut into one clip per label row and normalised like NTU RGB+D."""

import dataclasses
import logging

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from skel_jax.data import parallel
from skel_jax.data import pku_meta
from skel_jax.data import pku_mmd
from skel_jax.data import pku_sources

MAX_FRAMES = 300
SKIPPED_FILES_NAME = "skipped_files.txt"


class BadSampleError(ValueError):
    """A raw file could not be converted, and the build was not told to skip bad files."""


@dataclasses.dataclass
class PkuConfig(tfds.core.BuilderConfig):
    """One phase and split protocol."""

    phase: int = 1
    protocol: str = "xsub"


class Builder(tfds.core.GeneratorBasedBuilder):
    """PKU-MMD action instances as skeleton clips, with the official split files.

    Besides the usual builder arguments, the constructor takes:
      skip_bad_files: log and skip videos whose files fail to parse (listed with the reasons in
        ``skipped_files.txt`` beside the dataset) instead of stopping the build.
      num_workers: processes that parse files (default: all available cores).
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [
        PkuConfig(name=f"phase{phase}_{protocol}", phase=phase, protocol=protocol,
                  description=f"PKU-MMD phase {phase}, {protocol} protocol.")
        for phase in (1, 2) for protocol in ("xsub", "xview")
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Download PKU-MMD from https://www.icst.pku.edu.cn/struct/Projects/PKUMMD.html and extract, anywhere
    below `manual_dir`:
      * the skeleton files (`Skeleton.7z`: `PKU_Skeleton_Renew/XXXX-V.txt` for phase 1,
        `AxxNyy-V.txt` for phase 2);
      * the label files of the same names (`Label_PKUMMD.7z`: `Train_Label_PKU_final/`);
      * the split files (`Split/`): `cross-subject.txt` and `cross-view.txt` for phase 1,
        `cross_subject_v2.txt` and `cross_view_v2.txt` for phase 2.
    The .7z archives must be extracted first (e.g. `7z x Skeleton.7z`).
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
                "num_frames": tfds.features.Scalar(np.int32, doc="Frames in the clip (<= 300)."),
                "label": tfds.features.ClassLabel(names=pku_meta.ACTION_NAMES),
                "sample_name": tfds.features.Text(doc="Video and 1-based label row, e.g. 0002-L_003."),
                "setup": tfds.features.Scalar(np.int32, doc="Video number (phase 2: the A field)."),
                "camera": tfds.features.Scalar(np.int32, doc="View: 1 = L, 2 = M, 3 = R."),
                "subject": tfds.features.Scalar(np.int32, doc="Phase 2: the N field; phase 1: -1."),
                "replication": tfds.features.Scalar(np.int32, doc="1-based label row."),
            }),
            homepage="https://www.icst.pku.edu.cn/struct/Projects/PKUMMD.html",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = dl_manager.manual_dir
        phase, protocol = self.builder_config.phase, self.builder_config.protocol
        split_path = pku_sources.find_split_file(root, phase, protocol)
        train_names, test_names = pku_mmd.read_pku_split(split_path.read_bytes(), str(split_path))
        videos = pku_sources.find_videos(root, phase)
        if not videos:
            raise FileNotFoundError(
                f"No PKU-MMD phase {phase} videos (skeleton and label files) found below {root}.\n"
                + self.MANUAL_DOWNLOAD_INSTRUCTIONS)
        listed = set(train_names) | set(test_names)
        absent = sorted(listed - videos.keys())
        if absent:
            logging.warning("%d videos of %s have no skeleton or label file, e.g. %s",
                            len(absent), split_path, absent[:5])
        unlisted = sorted(videos.keys() - listed)
        if unlisted:
            logging.warning("%d videos are in neither list of %s and are left out, e.g. %s",
                            len(unlisted), split_path, unlisted[:5])
        (epath.Path(self.data_dir) / SKIPPED_FILES_NAME).write_text("")
        return {
            split: self._generate_examples([videos[n] for n in sorted(names) if n in videos], split)
            for split, names in (("train", train_names), ("test", test_names))
        }

    def _generate_examples(self, videos: list[pku_sources.PkuVideo], split: str):
        jobs = [pku_sources.VideoJob(v, self.builder_config.phase, split, MAX_FRAMES)
                for v in videos]
        skipped = []
        try:
            for (_, examples, error), video in zip(
                    parallel.ordered_map(pku_sources.convert_video, jobs, self._num_workers,
                                         chunksize=1), videos):
                if error is not None:
                    if not self._skip_bad_files:
                        raise BadSampleError(
                            f"{error}\nFix or remove the files of video {video.name}, or build "
                            "with skip_bad_files=True (`python -m skel_jax.prepare --skip_bad_files`).")
                    logging.warning("Skipping video %s: %s", video.name, error)
                    skipped.append(f"{video.name}\t{error}")
                    continue
                yield from examples
        finally:
            if skipped:
                with (epath.Path(self.data_dir) / SKIPPED_FILES_NAME).open("a") as f:
                    f.write("".join(line.replace("\n", " ") + "\n" for line in skipped))
