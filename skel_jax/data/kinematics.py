"""A 25-joint Kinect v2 body model and its forward kinematics.

Joints follow the Kinect v2 ``JointType`` order used by NTU RGB+D (data.md §1.5). The kinematic
tree is rooted at SpineBase and its bones are exactly the 24 edges of the 2s-AGCN/ISC graph, so the
hand tip hangs off the thumb and the thumb off the hand, as in that graph.

Body frame (before placement in a scene): +x to the subject's right, +y up, +z backwards (the
subject faces -z). A subject facing a Kinect sensor then has the sensor's axes (data.md §1.4:
+x to the sensor's left, +y up, +z away from the sensor).

Every bone has a local rotation ``L_j`` for the bone that ends at joint ``j``; the global rotation
is ``G_j = G_parent @ L_j`` and ``p_j = p_parent + G_j @ offset_j``. Local rotations are given as
angles ``(x, y, z)`` composed as ``Ry(y) @ Rz(z) @ Rx(x)``: for a limb hanging along -y, ``x``
swings it forwards, ``z`` swings it sideways (towards +x), and ``y`` twists it or, once raised
forwards, swings it horizontally.
"""

import numpy as np

NUM_JOINTS = 25

JOINT_NAMES = (
    "SpineBase", "SpineMid", "Neck", "Head", "ShoulderLeft", "ElbowLeft", "WristLeft", "HandLeft",
    "ShoulderRight", "ElbowRight", "WristRight", "HandRight", "HipLeft", "KneeLeft", "AnkleLeft",
    "FootLeft", "HipRight", "KneeRight", "AnkleRight", "FootRight", "SpineShoulder",
    "HandTipLeft", "ThumbLeft", "HandTipRight", "ThumbRight",
)

(SPINE_BASE, SPINE_MID, NECK, HEAD, SHOULDER_L, ELBOW_L, WRIST_L, HAND_L, SHOULDER_R, ELBOW_R,
 WRIST_R, HAND_R, HIP_L, KNEE_L, ANKLE_L, FOOT_L, HIP_R, KNEE_R, ANKLE_R, FOOT_R, SPINE_SHOULDER,
 HAND_TIP_L, THUMB_L, HAND_TIP_R, THUMB_R) = range(NUM_JOINTS)

# Parent of every joint (-1 for the root). The undirected bones equal the AGCN graph's edges.
PARENTS = (
    -1, SPINE_BASE, SPINE_SHOULDER, NECK, SPINE_SHOULDER, SHOULDER_L, ELBOW_L, WRIST_L,
    SPINE_SHOULDER, SHOULDER_R, ELBOW_R, WRIST_R, SPINE_BASE, HIP_L, KNEE_L, ANKLE_L,
    SPINE_BASE, HIP_R, KNEE_R, ANKLE_R, SPINE_MID, THUMB_L, HAND_L, THUMB_R, HAND_R,
)

# Left/right mirror permutation (new -> old), as AimCLR's spatial flip (data.md §1.5).
MIRROR = (0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 16, 17, 18, 19, 12, 13, 14, 15, 20, 23, 24, 21, 22)

FEET = (ANKLE_L, FOOT_L, ANKLE_R, FOOT_R)

# Height of the lowest foot joint above the floor: Kinect's foot joint sits on the instep.
FOOT_HEIGHT_M = 0.04


def _topological_order(parents: tuple[int, ...]) -> tuple[int, ...]:
    order, frontier = [], [j for j, p in enumerate(parents) if p < 0]
    while frontier:
        joint = frontier.pop(0)
        order.append(joint)
        frontier.extend(j for j, p in enumerate(parents) if p == joint)
    return tuple(order)


FK_ORDER = _topological_order(PARENTS)


def _rest_offsets() -> np.ndarray:
    """Bone offsets of a 1.75 m adult, body frame, metres; left side given, right side mirrored."""
    offsets = np.zeros((NUM_JOINTS, 3))
    offsets[SPINE_MID] = (0.0, 0.27, 0.0)
    offsets[SPINE_SHOULDER] = (0.0, 0.24, 0.0)
    offsets[NECK] = (0.0, 0.07, 0.0)
    offsets[HEAD] = (0.0, 0.15, -0.01)
    offsets[SHOULDER_L] = (-0.17, -0.04, 0.01)
    offsets[ELBOW_L] = (0.0, -0.27, 0.0)
    offsets[WRIST_L] = (0.0, -0.25, 0.0)
    offsets[HAND_L] = (0.0, -0.07, 0.0)
    # Palms face the thighs, so the thumb points forwards; the tip is 8 cm below the hand.
    offsets[THUMB_L] = (0.015, -0.03, -0.04)
    offsets[HAND_TIP_L] = (-0.015, -0.05, 0.04)
    offsets[HIP_L] = (-0.08, -0.06, 0.0)
    offsets[KNEE_L] = (0.0, -0.40, 0.0)
    offsets[ANKLE_L] = (0.0, -0.39, 0.0)
    offsets[FOOT_L] = (0.0, -0.06, -0.11)
    left = [SHOULDER_L, ELBOW_L, WRIST_L, HAND_L, THUMB_L, HAND_TIP_L, HIP_L, KNEE_L, ANKLE_L,
            FOOT_L]
    mirror = np.asarray(MIRROR)
    offsets[mirror[left]] = offsets[left] * (-1.0, 1.0, 1.0)
    return offsets


REST_OFFSETS = _rest_offsets()

_SEGMENTS = {
    "torso": (SPINE_MID, SPINE_SHOULDER, NECK, HEAD),
    "shoulders": (SHOULDER_L, SHOULDER_R),
    "arms": (ELBOW_L, WRIST_L, HAND_L, THUMB_L, HAND_TIP_L, ELBOW_R, WRIST_R, HAND_R, THUMB_R,
             HAND_TIP_R),
    "hips": (HIP_L, HIP_R),
    "legs": (KNEE_L, ANKLE_L, FOOT_L, KNEE_R, ANKLE_R, FOOT_R),
}
SEGMENT_NAMES = tuple(_SEGMENTS)


def body_offsets(scale: float, proportions: dict[str, float] | None = None) -> np.ndarray:
    """Bone offsets of one body: the rest offsets scaled overall and per segment.

    Args:
      scale: overall size relative to a 1.75 m adult.
      proportions: optional extra factor per segment (keys in ``SEGMENT_NAMES``), e.g. long arms.

    Returns:
      (25, 3) offsets in metres, body frame.

    Raises:
      ValueError: for a non-positive factor or an unknown segment.
    """
    proportions = proportions or {}
    unknown = set(proportions) - set(_SEGMENTS)
    if unknown:
        raise ValueError(f"unknown body segments {sorted(unknown)}; expected {SEGMENT_NAMES}")
    factors = np.full(NUM_JOINTS, float(scale))
    for segment, factor in proportions.items():
        factors[list(_SEGMENTS[segment])] *= factor
    if not np.all(factors > 0):
        raise ValueError(f"body scale and proportions must be positive, got scale={scale}, "
                         f"proportions={proportions}")
    return REST_OFFSETS * factors[:, None]


def rotation_x(angle: np.ndarray) -> np.ndarray:
    """Rotation matrices about +x, shape angle.shape + (3, 3)."""
    c, s, zero, one = _trig(angle)
    return _stack([[one, zero, zero], [zero, c, -s], [zero, s, c]])


def rotation_y(angle: np.ndarray) -> np.ndarray:
    """Rotation matrices about +y, shape angle.shape + (3, 3)."""
    c, s, zero, one = _trig(angle)
    return _stack([[c, zero, s], [zero, one, zero], [-s, zero, c]])


def rotation_z(angle: np.ndarray) -> np.ndarray:
    """Rotation matrices about +z, shape angle.shape + (3, 3)."""
    c, s, zero, one = _trig(angle)
    return _stack([[c, -s, zero], [s, c, zero], [zero, zero, one]])


def _trig(angle):
    angle = np.asarray(angle, dtype=np.float64)
    return np.cos(angle), np.sin(angle), np.zeros_like(angle), np.ones_like(angle)


def _stack(rows):
    return np.stack([np.stack(row, axis=-1) for row in rows], axis=-2)


def euler_to_matrix(angles: np.ndarray) -> np.ndarray:
    """Local bone rotations ``Ry(y) @ Rz(z) @ Rx(x)`` from angles (..., 3) ordered (x, y, z)."""
    angles = np.asarray(angles, dtype=np.float64)
    return (rotation_y(angles[..., 1]) @ rotation_z(angles[..., 2])) @ rotation_x(angles[..., 0])


def forward_kinematics(offsets: np.ndarray, local_rotations: np.ndarray,
                       root_rotation: np.ndarray, root_position: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Joint positions and global bone rotations of a body over time.

    Args:
      offsets: (25, 3) bone offsets, body frame (see ``body_offsets``).
      local_rotations: (T, 25, 3, 3) rotation of the bone ending at each joint, relative to its
        parent bone; entry 0 rotates the pelvis.
      root_rotation: (T, 3, 3) rotation of the body frame into the scene.
      root_position: (T, 3) SpineBase position in the scene.

    Returns:
      positions (T, 25, 3) and global rotations (T, 25, 3, 3).

    Raises:
      ValueError: if the shapes disagree.
    """
    num_frames = local_rotations.shape[0]
    expected = {"offsets": (offsets.shape, (NUM_JOINTS, 3)),
                "local_rotations": (local_rotations.shape, (num_frames, NUM_JOINTS, 3, 3)),
                "root_rotation": (root_rotation.shape, (num_frames, 3, 3)),
                "root_position": (root_position.shape, (num_frames, 3))}
    for name, (got, want) in expected.items():
        if got != want:
            raise ValueError(f"{name} must have shape {want}, got {got}")
    positions = np.empty((num_frames, NUM_JOINTS, 3))
    rotations = np.empty((num_frames, NUM_JOINTS, 3, 3))
    rotations[:, SPINE_BASE] = root_rotation @ local_rotations[:, SPINE_BASE]
    positions[:, SPINE_BASE] = root_position
    for joint in FK_ORDER[1:]:
        parent = PARENTS[joint]
        rotations[:, joint] = rotations[:, parent] @ local_rotations[:, joint]
        positions[:, joint] = positions[:, parent] + rotations[:, joint] @ offsets[joint]
    return positions, rotations


def matrix_to_quaternion(matrices: np.ndarray) -> np.ndarray:
    """Unit quaternions (w, x, y, z) with w >= 0 from rotation matrices (..., 3, 3).

    Uses the largest of the four diagonal combinations (Shepperd's method) so that no branch
    divides by a small number.
    """
    m = np.asarray(matrices, dtype=np.float64)
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    candidates = np.stack([
        np.stack([1 + m00 + m11 + m22, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0],
                  m[..., 1, 0] - m[..., 0, 1]], axis=-1),
        np.stack([m[..., 2, 1] - m[..., 1, 2], 1 + m00 - m11 - m22, m[..., 0, 1] + m[..., 1, 0],
                  m[..., 0, 2] + m[..., 2, 0]], axis=-1),
        np.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0], 1 - m00 + m11 - m22,
                  m[..., 1, 2] + m[..., 2, 1]], axis=-1),
        np.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0],
                  m[..., 1, 2] + m[..., 2, 1], 1 - m00 - m11 + m22], axis=-1),
    ], axis=-2)
    diagonal = np.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22,
                         1 - m00 - m11 + m22], axis=-1)
    best = np.argmax(diagonal, axis=-1)
    quaternion = np.take_along_axis(candidates, best[..., None, None], axis=-2)[..., 0, :]
    quaternion /= np.linalg.norm(quaternion, axis=-1, keepdims=True)
    return np.where(quaternion[..., :1] < 0, -quaternion, quaternion)
