"""Independent float64 transcription of the original 2s-AGCN/ISC preprocessing, for tests.

Written the way the original code is (data.md §2.2, §2.4): explicit loops, a 300-frame zero
buffer, the (N, C, T, V, M) array viewed as (N, M, T, V, C), and its own rotation helpers. Only
the tie rule of the body sort is made deterministic (a stable sort on descending energy).
"""

import math

import numpy as np

MAX_FRAME = 300


def nonzero_std(s):
    """Energy of one body slot (T, V, C)."""
    index = s.sum(-1).sum(-1) != 0
    s = s[index]
    if len(s) == 0:
        return 0.0
    return s[:, :, 0].std() + s[:, :, 1].std() + s[:, :, 2].std()


def select_two(bodies4):
    """(4, T, V, C) slots -> (C, T, V, M=2), most energetic first."""
    energy = [nonzero_std(body) for body in bodies4]
    index = sorted(range(len(energy)), key=lambda m: -energy[m])[:2]
    return np.asarray(bodies4, np.float64)[index].transpose(3, 1, 2, 0)


def unit_vector(vector):
    return vector / np.linalg.norm(vector)


def angle_between(v1, v2):
    if np.abs(v1).sum() < 1e-6 or np.abs(v2).sum() < 1e-6:
        return 0
    return np.arccos(np.clip(np.dot(unit_vector(v1), unit_vector(v2)), -1.0, 1.0))


def rotation_matrix(axis, theta):
    if np.abs(axis).sum() < 1e-6 or np.abs(theta) < 1e-6:
        return np.eye(3)
    axis = np.asarray(axis)
    axis = axis / math.sqrt(np.dot(axis, axis))
    a = math.cos(theta / 2.0)
    b, c, d = -axis * math.sin(theta / 2.0)
    aa, bb, cc, dd = a * a, b * b, c * c, d * d
    bc, ad, ac, ab, bd, cd = b * c, a * d, a * c, a * b, b * d, c * d
    return np.array([[aa + bb - cc - dd, 2 * (bc + ad), 2 * (bd - ac)],
                     [2 * (bc - ad), aa + cc - bb - dd, 2 * (cd + ab)],
                     [2 * (bd + ac), 2 * (cd - ab), aa + dd - bb - cc]])


def _rotate_sample(s, i_s, matrix):
    for i_p, person in enumerate(s[i_s]):
        if person.sum() == 0:
            continue
        for i_f, frame in enumerate(person):
            if frame.sum() == 0:
                continue
            for i_j, joint in enumerate(frame):
                s[i_s, i_p, i_f, i_j] = np.dot(matrix, joint)


def pre_normalization(data, zaxis=(0, 1), xaxis=(8, 4)):
    """(N, C, T, V, M) -> same, normalised in place order A, B, C, D."""
    s = np.transpose(data, [0, 4, 2, 3, 1]).copy()  # N, M, T, V, C
    for i_s, skeleton in enumerate(s):
        for i_p, person in enumerate(skeleton):
            if person.sum() == 0:
                continue
            if person[0].sum() == 0:
                index = person.sum(-1).sum(-1) != 0
                tmp = person[index].copy()
                person *= 0
                person[:len(tmp)] = tmp
            for i_f, frame in enumerate(person):
                if frame.sum() == 0:
                    if person[i_f:].sum() == 0:
                        rest = len(person) - i_f
                        num = int(np.ceil(rest / i_f))
                        pad = np.concatenate([person[0:i_f] for _ in range(num)], 0)[:rest]
                        s[i_s, i_p, i_f:] = pad
                        break

    for i_s, skeleton in enumerate(s):
        if skeleton.sum() == 0:
            continue
        main_body_center = skeleton[0][:, 1:2, :].copy()
        for i_p, person in enumerate(skeleton):
            if person.sum() == 0:
                continue
            mask = (person.sum(-1) != 0).reshape(person.shape[0], person.shape[1], 1)
            s[i_s, i_p] = (s[i_s, i_p] - main_body_center) * mask

    for i_s, skeleton in enumerate(s):
        if skeleton.sum() == 0:
            continue
        joint_bottom = skeleton[0, 0, zaxis[0]]
        joint_top = skeleton[0, 0, zaxis[1]]
        axis = np.cross(joint_top - joint_bottom, [0, 0, 1])
        angle = angle_between(joint_top - joint_bottom, [0, 0, 1])
        _rotate_sample(s, i_s, rotation_matrix(axis, angle))

    for i_s, skeleton in enumerate(s):
        if skeleton.sum() == 0:
            continue
        joint_rshoulder = skeleton[0, 0, xaxis[0]]
        joint_lshoulder = skeleton[0, 0, xaxis[1]]
        axis = np.cross(joint_rshoulder - joint_lshoulder, [1, 0, 0])
        angle = angle_between(joint_rshoulder - joint_lshoulder, [1, 0, 0])
        _rotate_sample(s, i_s, rotation_matrix(axis, angle))
    return np.transpose(s, [0, 4, 2, 3, 1])


def reference_preprocess_ntu(bodies4):
    """(4, T <= 300, V, C) slots -> normalised (T, M, V, C), the first T frames of the buffer."""
    num_frames = bodies4.shape[1]
    buffer = np.zeros((1, 3, MAX_FRAME, 25, 2))
    buffer[0, :, :num_frames] = select_two(bodies4)
    out = pre_normalization(buffer)
    return out[0].transpose(1, 3, 2, 0)[:num_frames]
