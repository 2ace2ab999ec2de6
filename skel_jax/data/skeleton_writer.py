"""Writers for the raw NTU RGB+D ``.skeleton`` text and the PKU-MMD skeleton, label and split files.

The NTU grammar is data.md §1.3; the PKU-MMD formats are data.md §3.2, §3.3 and §3.5. Numbers
are printed with seven significant digits, like the Kinect SDK's single-precision output in the
official files (``0.2181153 -0.1725972 3.785547``).
"""

import collections
import dataclasses
from collections.abc import Iterable, Sequence

import numpy as np

from skel_jax.data.kinematics import NUM_JOINTS

# Kinect v2 intrinsics, approximately: 512x424 depth and 1920x1080 colour images. The depth image
# is mirrored (+x, the sensor's left, maps to larger depthX) and the colour camera sits ~5 cm to
# the depth camera's side, which the official files show as a constant horizontal shift.
DEPTH_SIZE = (512, 424)
DEPTH_FOCAL_PX = 365.5
DEPTH_CENTRE_PX = (256.0, 212.0)
COLOR_SIZE = (1920, 1080)
COLOR_FOCAL_PX = 1081.4
COLOR_CENTRE_PX = (959.5, 539.5)
COLOR_BASELINE_M = 0.052

MAX_BODY_ID = 2**64 - 1
PKU_NUM_CLASSES = 51

_JOINT_LINE = " ".join(["%.7g"] * 11) + " %d\n"
_JOINT_BLOCK = _JOINT_LINE * NUM_JOINTS
_PKU_ROW = " ".join(["%.6f"] * 150)


@dataclasses.dataclass(frozen=True)
class BodyInfo:
    """The body-info fields of an NTU body record other than the id (data.md table 1.3a)."""

    clipped_edges: int = 0  # FrameEdges bitmask: right 1, left 2, top 4, bottom 8.
    hand_left_confidence: int = 1
    hand_left_state: int = 2
    hand_right_confidence: int = 1
    hand_right_state: int = 2
    is_restricted: int = 0
    lean_x: float = 0.0
    lean_y: float = 0.0
    tracking_state: int = 2

    def __post_init__(self):
        ranges = {"clipped_edges": range(16), "hand_left_confidence": range(2),
                  "hand_left_state": range(5), "hand_right_confidence": range(2),
                  "hand_right_state": range(5), "is_restricted": range(2),
                  "tracking_state": range(3)}
        for name, allowed in ranges.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"BodyInfo.{name} must be an integer in [{allowed.start}, "
                                 f"{allowed.stop - 1}], got {value!r}")
        if not (np.isfinite(self.lean_x) and np.isfinite(self.lean_y)):
            raise ValueError(f"BodyInfo lean must be finite, got ({self.lean_x}, {self.lean_y})")


@dataclasses.dataclass(frozen=True)
class Body:
    """One tracked body in one frame.

    Attributes:
      body_id: Kinect tracking id, an unsigned 64-bit integer (typically 2**56 + a few thousand).
      xyz: (25, 3) joint positions in Kinect camera space, metres, joints in NTU order; z > 0.
      orientation: (25, 4) unit quaternions (w, x, y, z); None means identity for every joint.
      joint_tracking: (25,) joint tracking states (0 not tracked, 1 inferred, 2 tracked); None means
        all tracked.
      info: the remaining body-info fields.
    """

    body_id: int
    xyz: np.ndarray
    orientation: np.ndarray | None = None
    joint_tracking: np.ndarray | None = None
    info: BodyInfo = BodyInfo()

    def __post_init__(self):
        if not isinstance(self.body_id, (int, np.integer)) or not 0 <= self.body_id <= MAX_BODY_ID:
            raise ValueError(f"body_id must be an integer in [0, 2**64 - 1], got {self.body_id!r}")
        xyz = np.asarray(self.xyz, dtype=np.float64)
        if xyz.shape != (NUM_JOINTS, 3):
            raise ValueError(f"xyz must have shape ({NUM_JOINTS}, 3), got {xyz.shape}")
        if not np.all(np.isfinite(xyz)):
            raise ValueError("xyz must be finite")
        if not np.all(xyz[:, 2] > 0):
            raise ValueError("every joint needs z > 0 (in front of the sensor) to be projected, "
                             f"got min z = {xyz[:, 2].min()}")
        if self.orientation is None:
            orientation = np.tile([1.0, 0.0, 0.0, 0.0], (NUM_JOINTS, 1))
        else:
            orientation = np.asarray(self.orientation, dtype=np.float64)
            if orientation.shape != (NUM_JOINTS, 4):
                raise ValueError(
                    f"orientation must have shape ({NUM_JOINTS}, 4), got {orientation.shape}")
            if not np.all(np.abs(np.linalg.norm(orientation, axis=1) - 1) < 1e-4):
                raise ValueError("orientation must hold unit quaternions (w, x, y, z)")
        if self.joint_tracking is None:
            tracking = np.full(NUM_JOINTS, 2)
        else:
            tracking = np.asarray(self.joint_tracking)
            if tracking.shape != (NUM_JOINTS,) or not np.isin(tracking, (0, 1, 2)).all():
                raise ValueError(f"joint_tracking must be {NUM_JOINTS} values in {{0, 1, 2}}, "
                                 f"got {tracking!r}")
        object.__setattr__(self, "xyz", xyz)
        object.__setattr__(self, "orientation", orientation)
        object.__setattr__(self, "joint_tracking", tracking)


def project_to_depth(xyz: np.ndarray) -> np.ndarray:
    """Pinhole projection of camera-space points (..., 3) to depth-image pixels (..., 2)."""
    xyz = np.asarray(xyz, dtype=np.float64)
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    return np.stack([DEPTH_CENTRE_PX[0] + DEPTH_FOCAL_PX * x / z,
                     DEPTH_CENTRE_PX[1] - DEPTH_FOCAL_PX * y / z], axis=-1)


def project_to_color(xyz: np.ndarray) -> np.ndarray:
    """Pinhole projection of camera-space points (..., 3) to colour-image pixels (..., 2)."""
    xyz = np.asarray(xyz, dtype=np.float64)
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    return np.stack([COLOR_CENTRE_PX[0] + COLOR_FOCAL_PX * (x + COLOR_BASELINE_M) / z,
                     COLOR_CENTRE_PX[1] - COLOR_FOCAL_PX * y / z], axis=-1)


def format_ntu_skeleton(frames: Sequence[Sequence[Body]], *, line_ending: str = "\n") -> str:
    """Formats a clip as the text of an official NTU RGB+D ``.skeleton`` file.

    Args:
      frames: one entry per frame, each the list of bodies tracked in that frame (possibly empty).
        The order of the list is the order of the body records in the file.
      line_ending: "\\n" or "\\r\\n" (some copies of the dataset have CRLF files).

    Returns:
      The file's text, ending with a line ending.

    Raises:
      ValueError: for another line ending or a frame entry that is not a sequence of ``Body``.
    """
    if line_ending not in ("\n", "\r\n"):
        raise ValueError(f"line_ending must be '\\n' or '\\r\\n', got {line_ending!r}")
    parts = [f"{len(frames)}\n"]
    for index, bodies in enumerate(frames):
        if isinstance(bodies, Body) or not all(isinstance(b, Body) for b in bodies):
            raise ValueError(f"frame {index} must be a sequence of Body records, got {bodies!r}")
        parts.append(f"{len(bodies)}\n")
        parts.extend(_format_body(body) for body in bodies)
    text = "".join(parts)
    return text if line_ending == "\n" else text.replace("\n", "\r\n")


def _format_body(body: Body) -> str:
    info = body.info
    head = (f"{int(body.body_id)} {info.clipped_edges} {info.hand_left_confidence} "
            f"{info.hand_left_state} {info.hand_right_confidence} {info.hand_right_state} "
            f"{info.is_restricted} {info.lean_x:.7g} {info.lean_y:.7g} {info.tracking_state}\n"
            f"{NUM_JOINTS}\n")
    table = np.concatenate([body.xyz, project_to_depth(body.xyz), project_to_color(body.xyz),
                            body.orientation, body.joint_tracking[:, None]], axis=1)
    return head + _JOINT_BLOCK % tuple(table.ravel().tolist())


def format_pku_skeleton(video: np.ndarray) -> str:
    """Formats a video as a PKU-MMD skeleton file: one row of 150 numbers per frame.

    Values are body-major (index 75*b + 3*j + c), six decimals, LF line endings. As in the
    official files, every row after the first starts with a space.

    Args:
      video: (F, 2, 25, 3) camera-space joint positions in metres, F >= 1; an absent second body
        is all zeros.

    Returns:
      The file's text.

    Raises:
      ValueError: for a wrong shape, no frames, or non-finite values.
    """
    video = np.asarray(video, dtype=np.float64)
    if video.ndim != 4 or video.shape[1:] != (2, NUM_JOINTS, 3):
        raise ValueError(f"video must have shape (F, 2, {NUM_JOINTS}, 3), got {video.shape}")
    if video.shape[0] == 0:
        raise ValueError("video must have at least one frame")
    if not np.all(np.isfinite(video)):
        raise ValueError("video must be finite")
    rows = [_PKU_ROW % tuple(row) for row in video.reshape(len(video), -1).tolist()]
    return "\n ".join(rows) + "\n"


def format_pku_labels(rows: Iterable[Sequence[int]]) -> str:
    """Formats a PKU-MMD label file: one ``label,start,end,confidence`` row per action instance.

    Args:
      rows: (label, start, end, confidence) integers; label in 1..51, 1-based inclusive frames
        with start <= end, confidence 1 (slight) or 2 (strong).

    Returns:
      The file's text, LF line endings.

    Raises:
      ValueError: for a row of another length, a non-integer, or a value out of range.
    """
    lines = []
    for index, row in enumerate(rows):
        values = tuple(row)
        if len(values) != 4 or not all(isinstance(v, (int, np.integer)) for v in values):
            raise ValueError(f"label row {index} must be 4 integers "
                             f"(label, start, end, confidence), got {row!r}")
        label, start, end, confidence = (int(v) for v in values)
        if not 1 <= label <= PKU_NUM_CLASSES:
            raise ValueError(f"label row {index}: label must be in 1..{PKU_NUM_CLASSES}, "
                             f"got {label}")
        if not 1 <= start <= end:
            raise ValueError(f"label row {index}: need 1 <= start <= end, got {start}, {end}")
        if confidence not in (1, 2):
            raise ValueError(f"label row {index}: confidence must be 1 or 2, got {confidence}")
        lines.append(f"{label},{start},{end},{confidence}\n")
    return "".join(lines)


def format_pku_split(train_videos: Sequence[str], test_videos: Sequence[str]) -> str:
    """Formats a PKU-MMD split file (data.md §3.5).

    Four lines: "Training videos:", the training names separated by ", " with a trailing comma,
    "Validation videos:", the test names likewise.

    Args:
      train_videos: video names such as ``0002-L`` or ``A01N01-L``; at least one.
      test_videos: video names, disjoint from ``train_videos``; at least one.

    Returns:
      The file's text, LF line endings.

    Raises:
      ValueError: for an empty list, an empty name, a name with a comma or whitespace, or a
        repeated name.
    """
    if not train_videos or not test_videos:
        raise ValueError(f"a split needs training and test videos, got {len(train_videos)} "
                         f"training and {len(test_videos)} test videos")
    names = list(train_videos) + list(test_videos)
    for name in names:
        if not isinstance(name, str) or not name or any(c == "," or c.isspace() for c in name):
            raise ValueError(f"video names must be non-empty strings without commas or "
                             f"whitespace, got {name!r}")
    repeated = sorted(name for name, count in collections.Counter(names).items() if count > 1)
    if repeated:
        raise ValueError(f"video names must appear once across both lists, repeated: {repeated}")

    def line(videos):
        return "".join(f"{name}, " for name in videos).rstrip(" ")

    return f"Training videos:\n{line(train_videos)}\nValidation videos:\n{line(test_videos)}\n"
