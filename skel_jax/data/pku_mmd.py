"""PKU-MMD readers (data.md §3): skeleton files, label files, split files, clip cutting.

Conventions chosen here, where the sources disagree (§3.3, §3.7):
- Label frames are 1-based and inclusive, as in AimCLR: row (start, end) is the video's frames
  start - 1 .. end - 1, i.e. end - start + 1 frames.
- A label row with start > end is repaired by swapping the two (as PKU-loader does), with a
  logged warning naming the file and line.
- Clips keep the two bodies in file order: no energy-based selection, as in the ISC-derived PKU-MMD
  generator; then the same pre_normalize as NTU.
"""

from __future__ import annotations

import logging
import re

import numpy as np

from skel_jax.data.ntu_skeleton import (
    NUM_JOINTS,
    SkeletonFormatError,
    decimal_values,
    in_float32_range,
    parse_number_token,
    scan_number_text,
    show_token,
)
from skel_jax.data.preprocess import MAX_FRAMES, pre_normalize

NUM_BODIES = 2
VALUES_PER_FRAME = NUM_BODIES * NUM_JOINTS * 3
NUM_CLASSES = 51
LABEL_FIELDS = ("label", "start", "end", "confidence")
_INTEGER_RE = re.compile(rb"[+-]?[0-9]+")

logger = logging.getLogger(__name__)


def read_pku_skeleton(data: bytes, source: str) -> np.ndarray:
    """Parses a PKU-MMD skeleton file: one frame per line, 150 numbers per line.

    Values are body-major: value 75 * b + 3 * j + c is body b, joint j, coordinate c. Blank lines
    are ignored.

    Args:
        data: the file content.
        source: where the bytes came from, for error messages.

    Returns:
        float32 (F, 2, 25, 3).

    Raises:
        SkeletonFormatError: no frames, a line without exactly 150 fields, a field that is not a
            number, or a value that is NaN, infinite or beyond float32 range; the message names
            `source` and the line.
    """
    text = scan_number_text(data)
    if text is not None and text.line_sizes.size and (text.line_sizes == VALUES_PER_FRAME).all():
        values = decimal_values(data, text.starts, text.ends)
        if in_float32_range(values).all():
            return values.reshape(-1, NUM_BODIES, NUM_JOINTS, 3).astype(np.float32)
    return _read_pku_skeleton_checked(data, source)


def _read_pku_skeleton_checked(data: bytes, source: str) -> np.ndarray:
    """Line-by-line version of read_pku_skeleton that reports the first bad line."""
    rows = []
    for number, line in enumerate(data.split(b"\n"), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != VALUES_PER_FRAME:
            raise SkeletonFormatError(source, number, f"expected {VALUES_PER_FRAME} values per "
                                                      f"frame, found {len(fields)}")
        row = [parse_number_token(field) for field in fields]
        for k, (field, value) in enumerate(zip(fields, row)):
            if value is None:
                raise SkeletonFormatError(source, number,
                                          f"value {k + 1} is not a number: {show_token(field)}")
            if not in_float32_range(value):
                raise SkeletonFormatError(source, number, f"value {k + 1} is not a finite "
                                                          f"float32: {show_token(field)}")
        rows.append(row)
    if not rows:
        raise SkeletonFormatError(source, 1, "empty file: no frames")
    return np.array(rows, np.float32).reshape(-1, NUM_BODIES, NUM_JOINTS, 3)


def read_pku_labels(data: bytes, source: str) -> np.ndarray:
    """Parses a PKU-MMD label file: lines `label,start,end,confidence` of integers.

    Blank lines are ignored and a trailing comma is tolerated. Labels are 1-based class IDs in
    1..51. A row whose start exceeds its end gets the two swapped, with a logged warning.

    Args:
        data: the file content.
        source: where the bytes came from, for messages.

    Returns:
        int64 (R, 4) with columns label, start, end, confidence.

    Raises:
        SkeletonFormatError: a row without 4 integer fields, a label outside 1..51, or a negative
            frame number; the message names `source` and the line.
    """
    rows = []
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        fields = [field.strip() for field in line.split(b",")]
        if len(fields) == len(LABEL_FIELDS) + 1 and not fields[-1]:
            fields.pop()
        if len(fields) != len(LABEL_FIELDS):
            raise SkeletonFormatError(source, number, f"expected 4 comma-separated fields "
                                                      f"(label,start,end,confidence), found "
                                                      f"{len(fields)}")
        row = []
        for name, field in zip(LABEL_FIELDS, fields):
            if not _INTEGER_RE.fullmatch(field):
                raise SkeletonFormatError(source, number,
                                          f"{name} must be an integer, found {show_token(field)}")
            row.append(int(field))
        label, start, end, _ = row
        if not 1 <= label <= NUM_CLASSES:
            raise SkeletonFormatError(source, number,
                                      f"label {label} is outside 1..{NUM_CLASSES}")
        if start < 0 or end < 0:
            raise SkeletonFormatError(source, number,
                                      f"negative frame number in start {start}, end {end}")
        if start > end:
            logger.warning("%s:%d: start %d > end %d, swapping them", source, number, start, end)
            row[1], row[2] = end, start
        rows.append(row)
    return np.array(rows, np.int64).reshape(-1, len(LABEL_FIELDS))


def read_pku_split(data: bytes, source: str) -> tuple[list[str], list[str]]:
    """Parses an official split file: line 2 lists the training videos, line 4 the test videos.

    Items are separated by commas; surrounding whitespace and empty items (e.g. from a trailing
    comma) are dropped. Lines 1 and 3 are headlines and are not read.

    Args:
        data: the file content.
        source: where the bytes came from, for messages.

    Returns:
        (training video names, test video names), each in file order.

    Raises:
        SkeletonFormatError: fewer than 4 lines, an empty list, or a video in both lists.
    """
    lines = data.decode("utf-8", "replace").splitlines()
    if len(lines) < 4:
        raise SkeletonFormatError(source, None, "expected 4 lines (headline, training videos, "
                                                f"headline, test videos), found {len(lines)}")
    train, test = ([item.strip() for item in lines[k].split(",") if item.strip()] for k in (1, 3))
    for number, videos in ((2, train), (4, test)):
        if not videos:
            raise SkeletonFormatError(source, number, "no video names on this line")
    both = sorted(set(train) & set(test))
    if both:
        raise SkeletonFormatError(source, 4, f"{len(both)} videos are listed for both training "
                                             f"(line 2) and testing, e.g. {both[0]!r}")
    return train, test


def cut_clip(video: np.ndarray, start: int, end: int, source: str = "") -> np.ndarray:
    """Cuts one labelled action out of a video, 1-based inclusive frames [start, end].

    Args:
        video: (F, 2, 25, 3) skeleton video.
        start: first frame, 1-based.
        end: last frame, 1-based, >= start.
        source: the video's name, for messages.

    Returns:
        A copy of frames start - 1 .. end - 1, shape (end - start + 1, 2, 25, 3).

    Raises:
        SkeletonFormatError: start < 1, start > end, or end past the last frame of the video.
    """
    num_frames = video.shape[0]
    if start < 1 or start > end:
        raise SkeletonFormatError(source, None, f"invalid clip frames {start}..{end} (1-based, "
                                                "start must be >= 1 and <= end)")
    if end > num_frames:
        raise SkeletonFormatError(source, None, f"clip frames {start}..{end} run past the end of "
                                                f"the video ({num_frames} frames)")
    return video[start - 1:end].copy()


def preprocess_pku(clip: np.ndarray, max_frames: int = MAX_FRAMES) -> tuple[np.ndarray, int]:
    """Turns a PKU-MMD clip into a stored ISC sample.

    Keeps the first `max_frames` frames and both bodies in file order (no energy sort, like the
    ISC-derived PKU-MMD generator), then applies pre_normalize.

    Args:
        clip: (T, 2, 25, 3) clip.
        max_frames: frame limit, >= 1.

    Returns:
        (float32 (T', 2, 25, 3) sample, T') with T' = min(T, max_frames).

    Raises:
        ValueError: max_frames < 1, or `clip` is not (T, 2, 25, 3).
    """
    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    clip = np.asarray(clip)
    if clip.ndim != 4 or clip.shape[1:] != (NUM_BODIES, NUM_JOINTS, 3):
        raise ValueError(f"clip must have shape (T, {NUM_BODIES}, {NUM_JOINTS}, 3), "
                         f"got {clip.shape}")
    kept = clip[:max_frames]
    return pre_normalize(kept), kept.shape[0]
