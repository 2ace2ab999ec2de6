"""Test helpers: plausible xyz data and NTU `.skeleton` text built from it."""

from collections.abc import Sequence

import numpy as np

BODY_INFO = "72057594037931101 0 1 1 1 1 0 0.02764709 0.05745083 2"

# A standing person in Kinect v2 joint order (data.md §1.5), metres, relative to SpineBase.
_TEMPLATE = np.array([
    [0.0, 0.0, 0.0], [0.0, 0.3, -0.02], [0.0, 0.55, -0.03], [0.0, 0.7, -0.03],
    [-0.18, 0.48, -0.02], [-0.25, 0.25, 0.0], [-0.28, 0.02, 0.02], [-0.29, -0.05, 0.02],
    [0.18, 0.48, -0.02], [0.25, 0.25, 0.0], [0.28, 0.02, 0.02], [0.29, -0.05, 0.02],
    [-0.08, -0.02, 0.0], [-0.09, -0.42, 0.01], [-0.09, -0.8, 0.03], [-0.09, -0.85, -0.06],
    [0.08, -0.02, 0.0], [0.09, -0.42, 0.01], [0.09, -0.8, 0.03], [0.09, -0.85, -0.06],
    [0.0, 0.5, -0.03], [-0.3, -0.12, 0.02], [-0.27, -0.07, -0.01], [0.3, -0.12, 0.02],
    [0.27, -0.07, -0.01]])


def round7(x: np.ndarray) -> np.ndarray:
    """Rounds to 7 significant digits, the precision of real NTU files ('%.7g')."""
    return np.vectorize(lambda v: float("%.7g" % v))(np.asarray(x, np.float64))


def plausible_bodies(rng: np.random.Generator, num_bodies: int, num_frames: int) -> np.ndarray:
    """Moving people in camera space, float64 (num_bodies, num_frames, 25, 3), 7 digits."""
    base = rng.normal([0.2, 0.1, 3.2], [0.5, 0.1, 0.4], size=(num_bodies, 1, 1, 3))
    drift = np.cumsum(rng.normal(0, 0.01, size=(num_bodies, num_frames, 1, 3)), axis=1)
    wobble = rng.normal(0, 0.02, size=(num_bodies, num_frames, 25, 3))
    return round7(base + drift + wobble + _TEMPLATE)


def frames_from_slots(bodies: np.ndarray, present: np.ndarray) -> list[np.ndarray]:
    """Per frame, the (B_f, 25, 3) bodies whose `present[slot, frame]` is set, in slot order."""
    return [bodies[present[:, f], f] for f in range(bodies.shape[1])]


def _joint_line(x: float, y: float, z: float) -> str:
    depth = (256 + 365 * x / z, 212 - 365 * y / z)
    color = (960 + 1060 * x / z, 540 - 1060 * y / z)
    values = (x, y, z, *depth, *color, -0.2059419, 0.05349901, 0.9692109, -0.1239193)
    return " ".join("%.7g" % v for v in values) + " 2"


def skeleton_text(frames: Sequence[np.ndarray], newline: str = "\r\n") -> bytes:
    """NTU `.skeleton` bytes listing, in frame f, the bodies frames[f] (B_f, 25, 3)."""
    lines = [str(len(frames))]
    for listed in frames:
        lines.append(str(len(listed)))
        for body in listed:
            lines += [BODY_INFO, "25"]
            lines += [_joint_line(*joint) for joint in body]
    return (newline.join(lines) + newline).encode("ascii")
