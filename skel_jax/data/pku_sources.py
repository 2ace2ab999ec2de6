"""Finding PKU-MMD videos, labels and split files in a manual download folder, and cutting clips.

Skeleton and label files carry the same name (``0002-L.txt``) in two folders whose names vary
between copies of the dataset, so a file is told apart by its content: label rows are
comma-separated, skeleton rows are not.
"""

import dataclasses
import pathlib
import re

import numpy as np

from skel_jax.data import pku_meta
from skel_jax.data import pku_mmd

_VIDEO_RE = {1: re.compile(r"^(\d{4})-([LMR])$"), 2: re.compile(r"^A(\d{2})N(\d{2})-([LMR])$")}
_VIEWS = "LMR"


@dataclasses.dataclass(frozen=True)
class PkuVideo:
    """One untrimmed video: its skeleton file and its label file."""

    name: str  # E.g. 0002-L (phase 1) or A01N01-L (phase 2).
    skeleton_path: str
    label_path: str


def find_videos(root: str | pathlib.Path, phase: int) -> dict[str, PkuVideo]:
    """Finds every video of a phase below ``root`` that has both a skeleton and a label file.

    Args:
      root: the manual download folder.
      phase: 1 or 2.

    Returns:
      Video name -> files, sorted by name.

    Raises:
      ValueError: if a video has two skeleton files or two label files.
    """
    pattern = _VIDEO_RE[phase]
    skeletons: dict[str, str] = {}
    labels: dict[str, str] = {}
    for path in sorted(pathlib.Path(root).rglob("*.txt")):
        if not pattern.match(path.stem):
            continue
        kind = labels if _is_label_file(path) else skeletons
        if path.stem in kind:
            raise ValueError(f"{path}: a second file for video {path.stem} (first: {kind[path.stem]})")
        kind[path.stem] = str(path)
    return {name: PkuVideo(name, skeletons[name], labels[name])
            for name in sorted(skeletons.keys() & labels.keys())}


def _is_label_file(path: pathlib.Path) -> bool:
    with path.open("rb") as f:
        for line in f:
            if line.strip():
                return b"," in line
    return False


def find_split_file(root: str | pathlib.Path, phase: int, protocol: str) -> pathlib.Path:
    """Finds the official split file of a phase and protocol (``xsub`` or ``xview``) below root."""
    name = pku_meta.SPLIT_FILES[(phase, protocol)]
    found = sorted(pathlib.Path(root).rglob(name))
    if not found:
        raise FileNotFoundError(
            f"The official split file {name} (PKU-MMD phase {phase}, {protocol}) is not below "
            f"{root}; it ships in the dataset download's Split/ folder.")
    return found[0]


def video_fields(name: str, phase: int) -> tuple[int, int, int]:
    """(setup, camera, subject) stored for a video; see the builder's README for their meaning."""
    match = _VIDEO_RE[phase].match(name)
    if phase == 1:
        return int(match.group(1)), _VIEWS.index(match.group(2)) + 1, -1
    return int(match.group(1)), _VIEWS.index(match.group(3)) + 1, int(match.group(2))


@dataclasses.dataclass(frozen=True)
class VideoJob:
    """A video to cut into clips, with its split, for a worker process."""

    video: PkuVideo
    phase: int
    split: str
    max_frames: int = 300


def convert_video(job: VideoJob) -> tuple[str, list[tuple[str, dict]], str | None]:
    """Cuts one video into one example per label row.

    Runs in worker processes, so format errors come back as values rather than exceptions.

    Args:
      job: the video.

    Returns:
      (split, [(key, example), ...], error) where error is "source:line: reason" or None.
    """
    video = job.video
    try:
        frames = pku_mmd.read_pku_skeleton(
            pathlib.Path(video.skeleton_path).read_bytes(), video.skeleton_path)
        rows = pku_mmd.read_pku_labels(pathlib.Path(video.label_path).read_bytes(), video.label_path)
        setup, camera, subject = video_fields(video.name, job.phase)
        examples = []
        for row_index, (label, start, end, _) in enumerate(rows, start=1):
            clip = pku_mmd.cut_clip(frames, int(start), int(end),
                                    source=f"{video.label_path} (label row {row_index})")
            skeleton, num_frames = pku_mmd.preprocess_pku(clip, max_frames=job.max_frames)
            key = f"{video.name}_{row_index:03d}"
            examples.append((key, {
                "skeleton": skeleton,
                "num_frames": np.int32(num_frames),
                "label": int(label) - 1,
                "sample_name": key,
                "setup": np.int32(setup),
                "camera": np.int32(camera),
                "subject": np.int32(subject),
                "replication": np.int32(row_index),
            }))
    except ValueError as e:  # Format errors (SkeletonFormatError is one) name file and line.
        return job.split, [], str(e)
    return job.split, examples, None
