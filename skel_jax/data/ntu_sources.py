"""Finding NTU RGB+D samples in a manual download folder and turning each into an example.

A researcher's ``manual_dir`` may hold the official zip archives, extracted ``.skeleton`` files in
any folder layout, or both, plus the official missing-skeleton lists. This module finds them and
converts one sample at a time (in a worker process) into the stored example.
"""

import dataclasses
import pathlib
import zipfile

import numpy as np

from skel_jax.data import ntu_meta
from skel_jax.data import ntu_skeleton
from skel_jax.data import preprocess

ARCHIVE_NAMES = ("nturgbd_skeletons_s001_to_s017.zip", "nturgbd_skeletons_s018_to_s032.zip")
MISSING_LIST_NAMES = {
    60: "NTU_RGBD_samples_with_missing_skeletons.txt",
    120: "NTU_RGBD120_samples_with_missing_skeletons.txt",
}
_SUFFIX = ".skeleton"


@dataclasses.dataclass(frozen=True)
class SkeletonSource:
    """Where one sample's ``.skeleton`` text lives: a plain file, or a member of a zip archive."""

    name: str  # Sample name without suffix, e.g. S001C002P003R002A013.
    path: str  # The file, or the zip archive.
    member: str | None = None  # The member inside the archive.

    @property
    def description(self) -> str:
        """How error messages name this source."""
        return f"{self.path}:{self.member}" if self.member else self.path


def find_skeleton_sources(root: str | pathlib.Path) -> dict[str, SkeletonSource]:
    """Finds every ``.skeleton`` sample below ``root``, in plain files and in zip archives.

    A sample found both extracted and inside an archive is read from the extracted file (they are
    the same data, and plain files are faster to read).

    Args:
      root: the manual download folder.

    Returns:
      Sample name -> source, sorted by sample name.

    Raises:
      ValueError: if a ``.skeleton`` file name is not an NTU sample name, or a zip is unreadable.
    """
    root = pathlib.Path(root)
    sources: dict[str, SkeletonSource] = {}
    for archive in sorted(root.rglob("*.zip")):
        try:
            with zipfile.ZipFile(archive) as zf:
                members = [m for m in zf.namelist() if m.endswith(_SUFFIX)]
        except zipfile.BadZipFile as e:
            raise ValueError(f"{archive}: not a readable zip archive ({e})") from e
        for member in members:
            name = _sample_name(pathlib.PurePosixPath(member).name, f"{archive}:{member}")
            sources[name] = SkeletonSource(name, str(archive), member)
    for path in sorted(root.rglob("*" + _SUFFIX)):
        name = _sample_name(path.name, str(path))
        sources[name] = SkeletonSource(name, str(path))
    return dict(sorted(sources.items()))


def _sample_name(file_name: str, where: str) -> str:
    try:
        return ntu_meta.parse_sample_name(file_name).name
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


def find_missing_list(root: str | pathlib.Path, dataset: int) -> pathlib.Path | None:
    """Finds the official missing-skeleton list for NTU-60 (``dataset=60``) or NTU-120 below root."""
    found = sorted(pathlib.Path(root).rglob(MISSING_LIST_NAMES[dataset]))
    return found[0] if found else None


def read_source(source: SkeletonSource) -> bytes:
    """Reads the raw bytes of one sample."""
    if source.member is None:
        return pathlib.Path(source.path).read_bytes()
    archive = _open_archives.get(source.path)
    if archive is None:
        archive = _open_archives[source.path] = zipfile.ZipFile(source.path)
    return archive.read(source.member)


# Each worker process keeps its archives open: reopening a 5 GB zip per sample would reread its
# central directory every time.
_open_archives: dict[str, zipfile.ZipFile] = {}


@dataclasses.dataclass(frozen=True)
class Converted:
    """The outcome of converting one sample: an example, or why there is none."""

    name: str
    example: dict | None = None
    error: str | None = None  # A format error: "source:line: reason".
    empty: bool = False  # The file holds no body in any frame (the example is all zeros).


def convert_sample(source: SkeletonSource, max_frames: int = 300) -> Converted:
    """Parses and normalises one sample into the stored features.

    Runs in worker processes, so format errors come back as values rather than exceptions.

    Args:
      source: where the sample lives.
      max_frames: frames kept (the original's buffer holds 300).

    Returns:
      The converted sample.
    """
    try:
        raw = ntu_skeleton.parse_skeleton(read_source(source), source.description)
    except ntu_skeleton.SkeletonFormatError as e:
        return Converted(source.name, error=str(e))
    skeleton, num_frames = preprocess.preprocess_ntu(raw, max_frames=max_frames)
    sample = ntu_meta.parse_sample_name(source.name)
    example = {
        "skeleton": skeleton,
        "num_frames": np.int32(num_frames),
        "label": sample.action - 1,
        "sample_name": source.name,
        "setup": np.int32(sample.setup),
        "camera": np.int32(sample.camera),
        "subject": np.int32(sample.subject),
        "replication": np.int32(sample.replication),
    }
    return Converted(source.name, example=example, empty=not raw.body_counts.any())


def select_samples(sources: dict[str, SkeletonSource], benchmark: str,
                   missing: frozenset[str] | None) -> tuple[list[SkeletonSource], list[SkeletonSource]]:
    """Splits the samples of a benchmark into (train, test), leaving out the missing-list samples.

    Args:
      sources: all samples found.
      benchmark: one of ``ntu_meta.BENCHMARKS``.
      missing: names from the official missing-skeleton list, or None when it is absent.

    Returns:
      Train and test sources, each sorted by name.
    """
    train, test = [], []
    for name, source in sources.items():
        sample = ntu_meta.parse_sample_name(name)
        if not ntu_meta.in_dataset(sample, benchmark) or (missing and name in missing):
            continue
        (train if ntu_meta.is_train(sample, benchmark) else test).append(source)
    return train, test
