"""The 2s-AGCN/ISC preprocessing: body selection (data.md §2.2) and pre_normalization (§2.4).

Layout: samples are (T, M, V, C) = (frames, persons, joints, xyz), M = 2, V = 25, C = 3; the
original works on (C, T, V, M) and internally on (M, T, V, C). Arithmetic is float64 inside and
the results are float32, like the original's stored arrays.

As in the original, a frame (or joint, or person) is "empty" when its coordinates sum to exactly
zero. The original decides whether a whole person or sample is empty from its total sum; here that
is "all of its frames are empty", which differs only if non-zero frames cancel out exactly.

The original normalises a 300-frame buffer, zero past the sample's T frames. Running on the first
T frames alone gives exactly the first T frames of its output: loop padding writes frame t as
frame (t mod i_f), so a frame before T never depends on the buffer length, and the other steps
work frame by frame from frame 0's data.
"""

from __future__ import annotations

import numpy as np

from skel_jax.data.ntu_skeleton import NUM_JOINTS, RawSkeleton

NUM_PERSONS = 2
MAX_FRAMES = 300
# Joints whose first-frame bone is aligned to +z (hip -> spine) and then +x (left -> right
# shoulder); the centre is joint 1 (SpineMid). 0-based Kinect v2 order, data.md §1.5.
SPINE_BONE = (0, 1)
SHOULDER_BONE = (4, 8)
CENTRE_JOINT = 1
_Z_AXIS = np.array([0.0, 0.0, 1.0])
_X_AXIS = np.array([1.0, 0.0, 0.0])
# Thresholds of the original rotation code (L1 norms and |angle|).
_TINY = 1e-6


def _check_sample(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4 or x.shape[1] < 1 or x.shape[2:] != (NUM_JOINTS, 3):
        raise ValueError(f"{name} must have shape (T, M, {NUM_JOINTS}, 3) with M >= 1, "
                         f"got {x.shape}")
    return x.astype(np.float64)


def body_energy(body: np.ndarray) -> float:
    """Motion energy of one body slot (data.md §2.2 step 4).

    Args:
        body: (T, 25, 3) xyz of one slot over time.

    Returns:
        std(x) + std(y) + std(z) over the slot's non-empty frames, each population std pooled over
        those frames and all joints; 0.0 when every frame is empty.

    Raises:
        ValueError: `body` is not (T, 25, 3).
    """
    body = np.asarray(body, np.float64)
    if body.ndim != 3 or body.shape[1:] != (NUM_JOINTS, 3):
        raise ValueError(f"body must have shape (T, {NUM_JOINTS}, 3), got {body.shape}")
    kept = body[body.sum((1, 2)) != 0].reshape(-1, 3)
    if kept.shape[0] == 0:
        return 0.0
    deviation = kept - kept.mean(axis=0)
    return float(np.sqrt(np.einsum("ij,ij->j", deviation, deviation) / kept.shape[0]).sum())


def select_bodies(bodies: np.ndarray, num_keep: int = NUM_PERSONS) -> np.ndarray:
    """Keeps the `num_keep` most energetic body slots, most energetic first (data.md §2.2 step 5).

    Tie rule: slots of equal energy keep their slot order (the lower slot index comes first).
    The original leaves ties to numpy's unstable argsort; in practice they occur only between
    empty slots, whose order does not matter after normalisation.

    Args:
        bodies: (B, T, 25, 3) xyz of B >= num_keep slots.
        num_keep: number of slots to keep.

    Returns:
        float32 (num_keep, T, 25, 3).

    Raises:
        ValueError: wrong shape, fewer than num_keep slots, or non-finite coordinates.
    """
    bodies = np.asarray(bodies)
    if bodies.ndim != 4 or bodies.shape[2:] != (NUM_JOINTS, 3):
        raise ValueError(f"bodies must have shape (B, T, {NUM_JOINTS}, 3), got {bodies.shape}")
    if bodies.shape[0] < num_keep:
        raise ValueError(f"cannot keep {num_keep} bodies out of {bodies.shape[0]}")
    if not np.isfinite(bodies).all():
        raise ValueError("bodies contain NaN or infinite coordinates")
    energy = np.array([body_energy(body) for body in bodies])
    order = np.argsort(-energy, kind="stable")[:num_keep]
    return bodies[order].astype(np.float32)


def pad_null_frames(x: np.ndarray) -> np.ndarray:
    """Step A of §2.4: per person, compact the frames if frame 0 is empty, then loop-pad.

    For each non-empty person: if its frame 0 is empty, its non-empty frames are moved, in order,
    to frames 0, 1, ... (this also closes internal gaps, and shifts this person in time relative to
    the other). Then, with i_f = 1 + the last non-empty frame, frames i_f.. are filled with frames
    0, 1, ..., i_f - 1 repeated cyclically and cut to length. Internal gaps that were not compacted
    stay empty and are repeated with the rest.

    Args:
        x: (T, M, 25, 3) sample.

    Returns:
        float64 (T, M, 25, 3) padded copy.

    Raises:
        ValueError: `x` has the wrong shape.
    """
    out = _check_sample(x, "x")
    _pad_null_frames(out)
    return out


def _pad_null_frames(x: np.ndarray) -> None:
    num_frames = x.shape[0]
    for p in range(x.shape[1]):
        person = x[:, p]
        filled = person.sum((1, 2)) != 0
        if not filled.any():
            continue
        if not filled[0]:
            person[:] = np.concatenate([person[filled], np.zeros_like(person[~filled])])
            filled = np.arange(num_frames) < np.count_nonzero(filled)
        period = np.flatnonzero(filled)[-1] + 1
        person[period:] = person[np.arange(period, num_frames) % period]


def centre_on_spine(x: np.ndarray) -> np.ndarray:
    """Step B of §2.4: subtract person 0's SpineMid (joint 1) of each frame from every person.

    Only non-empty persons are shifted, and joints that were empty (coordinate sum zero) stay
    zero. Frames where person 0 is empty have a zero centre, so they are not shifted.

    Args:
        x: (T, M, 25, 3) sample.

    Returns:
        float64 (T, M, 25, 3) centred copy.

    Raises:
        ValueError: `x` has the wrong shape.
    """
    out = _check_sample(x, "x")
    _centre_on_spine(out)
    return out


def _centre_on_spine(x: np.ndarray) -> None:
    centre = x[:, 0, CENTRE_JOINT, :].copy()
    for p in range(x.shape[1]):
        person = x[:, p]
        filled_joint = person.sum(-1) != 0
        if filled_joint.any():
            person -= centre[:, None, :]
            person *= filled_joint[..., None]


def angle_between(v1: np.ndarray, v2: np.ndarray) -> float:
    """Angle between two 3-vectors, via a clipped arccos of the unit vectors' dot product.

    Args:
        v1: 3-vector.
        v2: 3-vector.

    Returns:
        The angle in radians, in [0, pi]; 0.0 if either vector has an L1 norm below 1e-6.
    """
    v1 = np.asarray(v1, np.float64)
    v2 = np.asarray(v2, np.float64)
    if np.abs(v1).sum() < _TINY or np.abs(v2).sum() < _TINY:
        return 0.0
    cosine = np.dot(v1 / np.linalg.norm(v1), v2 / np.linalg.norm(v2))
    return float(np.arccos(np.clip(cosine, -1.0, 1.0)))


def rotation_matrix(axis: np.ndarray, angle: float) -> np.ndarray:
    """Euler-Rodrigues matrix of the counter-clockwise rotation by `angle` about `axis`.

    Args:
        axis: 3-vector, need not be normalised.
        angle: radians.

    Returns:
        float64 (3, 3); the identity when |axis|_1 < 1e-6 or |angle| < 1e-6.
    """
    axis = np.asarray(axis, np.float64)
    if np.abs(axis).sum() < _TINY or abs(angle) < _TINY:
        return np.eye(3)
    axis = axis / np.linalg.norm(axis)
    a = np.cos(angle / 2.0)
    b, c, d = -axis * np.sin(angle / 2.0)
    return np.array([
        [a * a + b * b - c * c - d * d, 2 * (b * c + a * d), 2 * (b * d - a * c)],
        [2 * (b * c - a * d), a * a + c * c - b * b - d * d, 2 * (c * d + a * b)],
        [2 * (b * d + a * c), 2 * (c * d - a * b), a * a + d * d - b * b - c * c]])


def align_bone(x: np.ndarray, bone: tuple[int, int], target: np.ndarray) -> np.ndarray:
    """Steps C and D of §2.4: rotate the sample so person 0's first-frame bone points along target.

    The bone vector is joint bone[1] minus joint bone[0] of person 0 in frame 0. The rotation
    (axis bone x target, angle between them, see rotation_matrix) is applied to every joint of
    every non-empty frame of every person; empty frames are left alone.

    Args:
        x: (T, M, 25, 3) sample with T >= 1.
        bone: (from joint, to joint), 0-based.
        target: 3-vector direction.

    Returns:
        float64 (T, M, 25, 3) rotated copy.

    Raises:
        ValueError: `x` has the wrong shape or no frames.
    """
    out = _check_sample(x, "x")
    if out.shape[0] == 0:
        raise ValueError("x has no frames")
    _align_bone(out, bone, np.asarray(target, np.float64))
    return out


def _align_bone(x: np.ndarray, bone: tuple[int, int], target: np.ndarray) -> None:
    vector = x[0, 0, bone[1]] - x[0, 0, bone[0]]
    matrix = rotation_matrix(np.cross(vector, target), angle_between(vector, target))
    empty_frame = x.sum((2, 3)) == 0
    # Rotating everything and putting empty frames back equals skipping them: a frame whose
    # coordinates sum to zero need not be all zeros.
    kept = x[empty_frame]
    x[:] = (x.reshape(-1, 3) @ matrix.T).reshape(x.shape)
    x[empty_frame] = kept


def pre_normalize(x: np.ndarray) -> np.ndarray:
    """The original's pre_normalization (§2.4 steps A-D) on one sample.

    An empty sample (every frame empty, including T = 0) is returned unchanged.

    Args:
        x: (T, M, 25, 3) sample, M = 2 in the stored layout.

    Returns:
        float32 (T, M, 25, 3).

    Raises:
        ValueError: `x` has the wrong shape.
    """
    x = _check_sample(x, "x")
    if (x.sum((2, 3)) != 0).any():
        _pad_null_frames(x)
        _centre_on_spine(x)
        _align_bone(x, SPINE_BONE, _Z_AXIS)
        _align_bone(x, SHOULDER_BONE, _X_AXIS)
    return x.astype(np.float32)


def preprocess_ntu(raw: RawSkeleton, max_frames: int = MAX_FRAMES) -> tuple[np.ndarray, int]:
    """Turns a parsed `.skeleton` file into a stored ISC sample.

    Keeps the first `max_frames` frames (the original has no truncation and fails on files longer
    than its 300-frame buffer), selects the two most energetic of the four body slots over those
    frames, and applies pre_normalize.

    Args:
        raw: the parsed file.
        max_frames: frame limit, >= 1.

    Returns:
        (float32 (T', 2, 25, 3) sample, T') with T' = min(raw.num_frames, max_frames). T' counts
        empty frames too, like the original's num_frame.

    Raises:
        ValueError: max_frames < 1, or non-finite coordinates in `raw`.
    """
    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    num_frames = min(raw.num_frames, max_frames)
    persons = select_bodies(raw.bodies[:, :num_frames], NUM_PERSONS)
    return pre_normalize(persons.transpose(1, 0, 2, 3)), num_frames
