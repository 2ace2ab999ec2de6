"""Synthetic NTU RGB+D and PKU-MMD skeleton datasets in the official raw formats.

The real datasets cannot be downloaded everywhere, so this generator is the project's embedded
default dataset and the source of test fixtures. Clips are made to be learnable the same way the
real ones are: the action is only recoverable from motion, while nuisance factors vary.

How a clip is made:
- Actions (``ACTION_NAMES``) are joint-angle trajectories over normalised time with their own
  temporal profile (periodic, one-shot, rise-hold-fall, monotonic transitions). Each is warped in
  time, scaled in amplitude and performed at the subject's tempo. Each is written under the
  NTU-60 class (``NTU_LABELS``) and the PKU-MMD label (``PKU_LABELS``) that carry its name.
- Subjects are seeded by (dataset seed, performer id), so a performer keeps their body size,
  proportions, posture, style, tempo and handedness across clips and NTU cross-subject splits are
  meaningful.
- A performance is animated once in world space (floor at y = 0) by forward kinematics
  (``kinematics``) and observed by three cameras, as in NTU (C001 at 0 degrees, C002 at -45, C003 at
  +45; the subject faces C002 in replication 1 and C003 in replication 2) and PKU-MMD (views L, M,
  R). Setups fix camera height, distance and tilt.
- Each camera adds its own tracking noise, occasional limb glitches, leading frames without a body,
  short-lived spurious bodies (low-motion blobs), and body-info fields; a bystander or an
  interaction partner can be a second body, so some frames have more than two bodies.

Everything is deterministic for a given seed: every performance and every camera view draws from
its own ``numpy.random.Generator`` seeded by (seed, tag, indices).
"""

import argparse
import dataclasses
import math
import pathlib
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
import tqdm

from skel_jax.data import kinematics as kin
from skel_jax.data import ntu_meta
from skel_jax.data import pku_meta
from skel_jax.data import skeleton_writer as writer

MIN_CLIP_FRAMES = 40
MAX_CLIP_FRAMES = 300  # NTU clips fit the 300-frame buffer of the ISC/2s-AGCN generator.
NTU_CAMERA_YAW_DEG = {1: 0.0, 2: -45.0, 3: 45.0}
NTU_FACING_DEG = {1: -45.0, 2: 45.0}  # Replication 1 faces C002, replication 2 faces C003.
PKU_VIEW_YAW_DEG = {"L": -45.0, "M": 0.0, "R": 45.0}
PKU_PHASE2_MAX_VIDEOS = 26 * 13 * 3  # Names AxxNyy-V with xx <= 26, yy <= 13.
PKU_MIN_VIDEOS = 6  # Two performances: a training and a test subject, each from three views.

_NTU_PERFORMERS = 40
_NTU_REPLICATIONS = 2
_PKU_PHASE1_SUBJECTS = 66
_PKU_PHASE1_MAX_VIDEOS = (9999 - 2 + 1) * 3  # Names XXXX-V from 0002 on.
_PKU_PHASE2_TEST_SUBJECTS = (2, 5, 8, 11)
_PKU_TEST_VIEW = "L"
_BODY_ID_BASE = 2**56  # Kinect tracking ids look like 72057594037930147 = 2**56 + 2211.

# Seed tags keep the random streams of different purposes independent.
_TAG_SUBJECT, _TAG_SETUP, _TAG_PERFORMANCE, _TAG_VIEW, _TAG_PKU_VIDEO = range(5)

# ----------------------------------------------------------------------------------------------
# Motion tracks


@dataclasses.dataclass(frozen=True)
class _Tracks:
    """Motion of one body over T frames, before posture, idling and placement."""

    angles: np.ndarray  # (T, 25, 3) local bone angles (x, y, z), radians; see kinematics.
    shift: np.ndarray  # (T, 3) root translation in the body frame, metres.
    lift: np.ndarray  # (T,) height above the grounded pose (jumps, hops), metres.
    yaw: np.ndarray  # (T,) turn about the vertical, radians.

    def __len__(self):
        return len(self.lift)


def _zeros(num_frames: int) -> _Tracks:
    return _Tracks(np.zeros((num_frames, kin.NUM_JOINTS, 3)), np.zeros((num_frames, 3)),
                   np.zeros(num_frames), np.zeros(num_frames))


def _add(a: _Tracks, b: _Tracks) -> _Tracks:
    return _Tracks(a.angles + b.angles, a.shift + b.shift, a.lift + b.lift, a.yaw + b.yaw)


def _scale(tracks: _Tracks, gains: np.ndarray, amplitude: float) -> _Tracks:
    return _Tracks(tracks.angles * gains * amplitude, tracks.shift * amplitude,
                   tracks.lift * amplitude, tracks.yaw * amplitude)


def _mirror(tracks: _Tracks) -> _Tracks:
    """The same motion performed with the other side of the body."""
    angles = tracks.angles[:, list(kin.MIRROR)] * (1.0, -1.0, -1.0)
    return _Tracks(angles, tracks.shift * (-1.0, 1.0, 1.0), tracks.lift, -tracks.yaw)


def _frames(tracks: _Tracks, index: np.ndarray) -> _Tracks:
    return _Tracks(tracks.angles[index], tracks.shift[index], tracks.lift[index],
                   tracks.yaw[index])


def _concatenate(parts: Sequence[_Tracks]) -> _Tracks:
    return _Tracks(*(np.concatenate([getattr(p, f.name) for p in parts])
                     for f in dataclasses.fields(_Tracks)))


def _blend(a: _Tracks, b: _Tracks, num_frames: int) -> _Tracks:
    """num_frames frames moving smoothly from a's last frame to b's first, both excluded."""
    weight = _smoothstep(np.arange(1, num_frames + 1) / (num_frames + 1))

    def mix(start, end):
        start, end = start[-1:], end[:1]
        return start + (end - start) * weight.reshape((-1,) + (1,) * (start.ndim - 1))

    return _Tracks(*(mix(getattr(a, f.name), getattr(b, f.name))
                     for f in dataclasses.fields(_Tracks)))


def _timeline(segments: Sequence[_Tracks], gaps: Sequence[int]) -> _Tracks:
    """Segments joined by idle gaps: hold before the first, blends between, hold after the last.

    Args:
      segments: the action segments in order.
      gaps: len(segments) + 1 gap lengths in frames.
    """
    parts = [_frames(segments[0], np.zeros(gaps[0], dtype=int))]
    for index, segment in enumerate(segments):
        parts.append(segment)
        if index + 1 < len(segments):
            parts.append(_blend(segment, segments[index + 1], gaps[index + 1]))
    parts.append(_frames(segments[-1], np.full(gaps[-1], -1)))
    return _concatenate(parts)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _keys(u: np.ndarray, times: Sequence[float], values: Sequence[float]) -> np.ndarray:
    """Eased piecewise interpolation through key values at key times; held outside them."""
    times, values = np.asarray(times, dtype=float), np.asarray(values, dtype=float)
    segment = np.clip(np.searchsorted(times, u, side="right") - 1, 0, len(times) - 2)
    local = (u - times[segment]) / (times[segment + 1] - times[segment])
    return values[segment] + (values[segment + 1] - values[segment]) * _smoothstep(local)


def _cycles(num_frames: float, rng: np.random.Generator, period: tuple[float, float]) -> int:
    """How many repetitions of a periodic movement fit, at a random period (frames)."""
    return max(2, int(round(num_frames / rng.uniform(*period))))


# ----------------------------------------------------------------------------------------------
# The action library. Sign conventions (kinematics): x > 0 swings a hanging limb forwards and a
# spine or neck bone backwards; z > 0 swings a limb outwards; y > 0 swings a forward-raised arm
# towards the midline. Side factors mirror y and z for the left side. Knees flex with x < 0.

_RIGHT, _LEFT = 1.0, -1.0
_SIDES = (_RIGHT, _LEFT)
_UPPER_ARM = {_RIGHT: kin.ELBOW_R, _LEFT: kin.ELBOW_L}
_FOREARM = {_RIGHT: kin.WRIST_R, _LEFT: kin.WRIST_L}
_THIGH = {_RIGHT: kin.KNEE_R, _LEFT: kin.KNEE_L}
_SHANK = {_RIGHT: kin.ANKLE_R, _LEFT: kin.ANKLE_L}
_FOOT = {_RIGHT: kin.FOOT_R, _LEFT: kin.FOOT_L}


def _rotate(tracks: _Tracks, bone: int, side: float = _RIGHT, flex=0.0, swing=0.0, abd=0.0):
    """Adds angles to one bone of tracks that are still being built."""
    tracks.angles[:, bone, 0] += flex
    tracks.angles[:, bone, 1] += side * np.asarray(swing)
    tracks.angles[:, bone, 2] += side * np.asarray(abd)


def _bow(tracks: _Tracks, amount):
    """Bends the trunk forwards; the arms swing forwards too, so that they keep hanging."""
    _rotate(tracks, kin.SPINE_MID, flex=-0.55 * amount)
    _rotate(tracks, kin.SPINE_SHOULDER, flex=-0.45 * amount)
    for side in _SIDES:
        _rotate(tracks, _UPPER_ARM[side], side, flex=0.8 * amount)


def _drink(u, rng, n):
    tracks = _zeros(len(u))
    reach = _keys(u, (0.05, 0.3, 0.72, 0.95), (0, 1, 1, 0))
    sip = _keys(u, (0.35, 0.45, 0.62, 0.72), (0, 1, 1, 0))
    _rotate(tracks, kin.ELBOW_R, flex=0.95 * reach + 0.15 * sip, swing=0.45 * reach,
            abd=0.05 * reach)
    _rotate(tracks, kin.WRIST_R, flex=2.2 * reach)
    _rotate(tracks, kin.HAND_R, flex=0.3 * reach)
    _rotate(tracks, kin.NECK, flex=0.25 * sip)
    return tracks


def _wave(u, rng, n):
    tracks = _zeros(len(u))
    up = _keys(u, (0.03, 0.2, 0.8, 0.97), (0, 1, 1, 0))
    wave = np.sin(2 * np.pi * _cycles(0.6 * n, rng, (14, 22)) * u)
    _rotate(tracks, kin.ELBOW_R, flex=0.35 * up, abd=1.3 * up)
    _rotate(tracks, kin.WRIST_R, abd=(1.25 + 0.45 * wave) * up)
    _rotate(tracks, kin.HAND_R, abd=0.2 * wave * up)
    return tracks


def _clap(u, rng, n):
    tracks = _zeros(len(u))
    up = _keys(u, (0.05, 0.18, 0.82, 0.95), (0, 1, 1, 0))
    claps = _cycles(0.64 * n, rng, (9, 14))
    apart = 0.5 - 0.5 * np.cos(2 * np.pi * claps * np.clip((u - 0.18) / 0.64, 0, 1))
    for side in _SIDES:
        _rotate(tracks, _UPPER_ARM[side], side, flex=1.0 * up, swing=(0.5 - 0.45 * apart) * up)
        _rotate(tracks, _FOREARM[side], side, flex=0.9 * up)
    return tracks


def _kick(u, rng, n):
    tracks = _zeros(len(u))
    times = (0.15, 0.35, 0.5, 0.6, 0.8)
    _rotate(tracks, kin.KNEE_R, flex=_keys(u, times, (0, 0.6, 1.3, 0.9, 0)))
    _rotate(tracks, kin.ANKLE_R, flex=_keys(u, times, (0, -1.4, -0.15, -0.8, 0)))
    effort = _keys(u, (0.15, 0.45, 0.8), (0, 1, 0))
    _rotate(tracks, kin.SPINE_MID, flex=0.15 * effort)
    for side in _SIDES:
        _rotate(tracks, _UPPER_ARM[side], side, abd=0.35 * effort)
    return tracks


def _jump(u, rng, n):
    tracks = _zeros(len(u))
    crouch = _keys(u, (0.08, 0.25, 0.33, 0.5, 0.56, 0.68, 0.85), (0, 1, 0, 0, 0.8, 0.3, 0))
    flight = np.clip((u - 0.33) / 0.17, 0, 1)
    tracks.lift[:] = rng.uniform(0.15, 0.32) * 4 * flight * (1 - flight)
    arms = _keys(u, (0.08, 0.25, 0.33, 0.42, 0.56, 0.7), (0, -0.6, 2.2, 1.4, 0.2, 0))
    _bow(tracks, 0.35 * crouch)
    for side in _SIDES:
        _rotate(tracks, _THIGH[side], side, flex=0.9 * crouch)
        _rotate(tracks, _SHANK[side], side, flex=-1.5 * crouch)
        _rotate(tracks, _FOOT[side], side, flex=-0.5 * np.sin(np.pi * flight))
        _rotate(tracks, _UPPER_ARM[side], side, flex=arms)
    return tracks


def _sit_pose(num_frames, seated, lean):
    """Sitting on a chair behind the subject: seated in [0, 1], lean = extra forward bend."""
    tracks = _zeros(num_frames)
    _bow(tracks, 0.5 * lean + 0.1 * seated)
    tracks.shift[:, 2] = 0.12 * seated
    for side in _SIDES:
        _rotate(tracks, _THIGH[side], side, flex=1.45 * seated)
        _rotate(tracks, _SHANK[side], side, flex=-1.45 * seated)
        _rotate(tracks, _UPPER_ARM[side], side, flex=0.35 * seated)
        _rotate(tracks, _FOREARM[side], side, flex=0.7 * seated)
    return tracks


def _sit_down(u, rng, n):
    return _sit_pose(len(u), _keys(u, (0.15, 0.72), (0, 1)),
                     _keys(u, (0.15, 0.45, 0.8), (0, 1, 0.2)))


def _stand_up(u, rng, n):
    return _sit_pose(len(u), _keys(u, (0.28, 0.85), (1, 0)),
                     _keys(u, (0.1, 0.35, 0.6, 0.85), (0.2, 1, 0.6, 0)))


def _nod_bow(u, rng, n):
    tracks = _zeros(len(u))
    bend = _keys(u, (0.15, 0.4, 0.55, 0.85), (0, 1, 1, 0)) * rng.uniform(0.7, 1.0)
    _bow(tracks, 0.9 * bend)
    _rotate(tracks, kin.NECK, flex=-0.25 * bend)
    return tracks


def _cheer(u, rng, n):
    tracks = _zeros(len(u))
    up = _keys(u, (0.08, 0.3, 0.75, 0.92), (0, 1, 1, 0))
    shake = 0.15 * np.sin(2 * np.pi * _cycles(0.45 * n, rng, (10, 16)) * u) * up
    for side in _SIDES:
        _rotate(tracks, _UPPER_ARM[side], side, flex=2.6 * up + shake, abd=0.35 * up)
        _rotate(tracks, _FOREARM[side], side, flex=0.3 * up)
    _rotate(tracks, kin.SPINE_SHOULDER, flex=0.08 * up)
    return tracks


def _salute(u, rng, n):
    tracks = _zeros(len(u))
    # Brisk up and down with a held middle, the fingertips at the right brow.
    up = _keys(u, (0.12, 0.24, 0.7, 0.84), (0, 1, 1, 0))
    _rotate(tracks, kin.ELBOW_R, flex=0.5 * up, abd=1.2 * up)
    _rotate(tracks, kin.WRIST_R, abd=2.4 * up)
    _rotate(tracks, kin.HAND_R, abd=0.3 * up)
    _rotate(tracks, kin.SPINE_SHOULDER, flex=0.05 * up)
    return tracks


def _hop(u, rng, n):
    tracks = _zeros(len(u))
    raised = _keys(u, (0.05, 0.2, 0.85, 0.95), (0, 1, 1, 0))
    hopping = (u > 0.22) & (u < 0.82)
    phase = (np.clip((u - 0.22) / 0.6, 0, 1) * _cycles(0.6 * n, rng, (14, 20))) % 1.0
    bounce = np.sin(np.pi * phase) * hopping
    tracks.lift[:] = rng.uniform(0.06, 0.14) * bounce
    _rotate(tracks, kin.KNEE_L, flex=0.3 * raised)
    _rotate(tracks, kin.ANKLE_L, flex=-1.3 * raised)
    landing = (1 - bounce) * hopping
    _rotate(tracks, kin.KNEE_R, flex=0.25 * landing)
    _rotate(tracks, kin.ANKLE_R, flex=-0.35 * landing)
    for side in _SIDES:
        _rotate(tracks, _UPPER_ARM[side], side, abd=0.4 * raised)
    return tracks


def _throw(u, rng, n):
    tracks = _zeros(len(u))
    times = (0.15, 0.42, 0.52, 0.62, 0.9)
    _rotate(tracks, kin.ELBOW_R, flex=_keys(u, times, (0, -0.5, 2.3, 0.8, 0)),
            swing=_keys(u, times, (0, -0.4, 0, 0.6, 0)), abd=_keys(u, times, (0, 1.3, 0.4, 0.1, 0)))
    _rotate(tracks, kin.WRIST_R, flex=_keys(u, times, (0, 1.7, 0.4, 0.2, 0)))
    _rotate(tracks, kin.ELBOW_L, flex=_keys(u, times, (0, 1.2, 0.2, -0.2, 0)))
    _rotate(tracks, kin.SPINE_SHOULDER, swing=_keys(u, times, (0, -0.4, 0.25, 0.35, 0)),
            flex=_keys(u, times, (0, 0.1, -0.3, -0.25, 0)))
    step = (0.15, 0.35, 0.5, 0.9)
    _rotate(tracks, kin.KNEE_L, flex=_keys(u, step, (0, 0.4, 0.25, 0)))
    _rotate(tracks, kin.ANKLE_L, flex=_keys(u, step, (0, -0.5, 0, 0)))
    return tracks


def _touch_head(u, rng, n):
    tracks = _zeros(len(u))
    hold = _keys(u, (0.08, 0.3, 0.75, 0.95), (0, 1, 1, 0))
    rub = 0.07 * np.sin(2 * np.pi * _cycles(0.45 * n, rng, (15, 25)) * u) * hold
    _rotate(tracks, kin.ELBOW_R, flex=1.45 * hold, swing=0.35 * hold + rub, abd=0.15 * hold)
    _rotate(tracks, kin.WRIST_R, flex=2.3 * hold)
    _rotate(tracks, kin.NECK, flex=-0.3 * hold)
    _rotate(tracks, kin.SPINE_MID, flex=-0.1 * hold)
    return tracks


def _point(u, rng, n):
    tracks = _zeros(len(u))
    aim = _keys(u, (0.1, 0.3, 0.72, 0.9), (0, 1, 1, 0))
    # Each clip points somewhere else: higher or lower, more to the side or across the body.
    elevation, across = rng.uniform(1.4, 2.1), rng.uniform(-0.3, 0.6)
    _rotate(tracks, kin.ELBOW_R, flex=elevation * aim, abd=across * aim)
    _rotate(tracks, kin.WRIST_R, flex=0.15 * aim)
    _rotate(tracks, kin.NECK, swing=-0.4 * across * aim)
    return tracks


def _cross_hands(u, rng, n):
    tracks = _zeros(len(u))
    hold = _keys(u, (0.1, 0.3, 0.72, 0.92), (0, 1, 1, 0))
    for side, height in ((_RIGHT, 1.45), (_LEFT, 1.25)):
        _rotate(tracks, _UPPER_ARM[side], side, flex=height * hold, swing=0.55 * hold)
        _rotate(tracks, _FOREARM[side], side, flex=0.45 * hold)
    return tracks


def _pickup(u, rng, n):
    tracks = _zeros(len(u))
    down = _keys(u, (0.12, 0.42, 0.55, 0.85), (0, 1, 1, 0))
    _bow(tracks, 1.2 * down)
    for side in _SIDES:
        _rotate(tracks, _THIGH[side], side, flex=1.1 * down)
        _rotate(tracks, _SHANK[side], side, flex=-1.7 * down)
    _rotate(tracks, kin.ELBOW_R, flex=0.3 * down)
    _rotate(tracks, kin.WRIST_R, flex=1.3 * _keys(u, (0.55, 0.85), (0, 1)))
    _rotate(tracks, kin.NECK, flex=-0.15 * down)
    return tracks


def _handshake(u, rng, n):
    tracks = _zeros(len(u))
    reach = _keys(u, (0.08, 0.3, 0.8, 0.95), (0, 1, 1, 0))
    shaking = (u > 0.35) & (u < 0.75)
    pump = 0.12 * np.sin(2 * np.pi * _cycles(0.4 * n, rng, (12, 18)) * (u - 0.35) / 0.4) * shaking
    tracks.shift[:, 2] = -0.05 * reach
    _rotate(tracks, kin.ELBOW_R, flex=0.8 * reach + pump, swing=0.3 * reach)
    _rotate(tracks, kin.WRIST_R, flex=0.6 * reach - 0.5 * pump)
    return tracks


@dataclasses.dataclass(frozen=True)
class _Action:
    ntu: int  # NTU RGB+D class (A001-A060) whose name the action carries.
    pku: int  # PKU-MMD label of the same action.
    frames: tuple[int, int]  # Nominal duration range at tempo 1.
    tracks: Callable[[np.ndarray, np.random.Generator, int], _Tracks]
    mutual: bool = False  # Performed with a partner (a second body).

    @property
    def name(self) -> str:
        return ntu_meta.ACTION_NAMES[self.ntu - 1]


# Every action is written under the NTU class and PKU-MMD label that name it, so the datasets'
# class names (confusion matrices, per-class tables, plots) describe the motion. All are NTU-60
# classes, so NTU-60 and NTU-120 builds both hold them.
_ACTIONS = (
    _Action(1, 8, (70, 110), _drink),
    _Action(23, 13, (60, 110), _wave),
    _Action(10, 6, (50, 100), _clap),
    _Action(24, 19, (35, 65), _kick),
    _Action(27, 17, (40, 70), _jump),
    _Action(8, 33, (60, 95), _sit_down),
    _Action(9, 34, (60, 95), _stand_up),
    _Action(35, 1, (40, 75), _nod_bow),  # PKU-MMD: "bow".
    _Action(22, 5, (60, 100), _cheer),
    _Action(38, 32, (45, 80), _salute),
    _Action(26, 15, (55, 100), _hop),
    _Action(7, 41, (40, 70), _throw),
    _Action(44, 44, (80, 130), _touch_head),
    _Action(31, 25, (50, 90), _point),
    _Action(40, 7, (55, 90), _cross_hands),
    _Action(6, 22, (65, 100), _pickup),
    _Action(58, 14, (70, 110), _handshake, mutual=True),
)
ACTION_NAMES = tuple(action.name for action in _ACTIONS)
NTU_LABELS = tuple(action.ntu for action in _ACTIONS)
PKU_LABELS = tuple(action.pku for action in _ACTIONS)
NUM_ACTIONS = len(_ACTIONS)
MUTUAL_ACTIONS = frozenset(k for k, action in enumerate(_ACTIONS) if action.mutual)

# ----------------------------------------------------------------------------------------------
# Subjects, cameras and nuisance settings


@dataclasses.dataclass(frozen=True)
class Subject:
    """A performer's body and style.

    Attributes:
      offsets: (25, 3) bone offsets (``kinematics.body_offsets``).
      posture: (25, 3) constant bone angles added to every pose (slouch, arm carriage, stance).
      gains: (25, 3) per-bone-angle factors on action angles (personal style).
      amplitude: overall factor on action angles.
      tempo: factor on action durations (> 1 is slower).
      left_handed: one-handed actions are performed with the left side.
    """

    offsets: np.ndarray
    posture: np.ndarray
    gains: np.ndarray
    amplitude: float
    tempo: float
    left_handed: bool


def make_subject(seed: int, performer: int) -> Subject:
    """The subject of a performer id: the same (seed, performer) always gives the same subject.

    Raises:
      ValueError: for a negative seed or a performer id below 1.
    """
    _check_seed(seed)
    if performer < 1:
        raise ValueError(f"performer ids are 1-based, got {performer}")
    return _draw_subject(np.random.default_rng([seed, _TAG_SUBJECT, performer]))


def _draw_subject(rng: np.random.Generator) -> Subject:
    scale = float(np.clip(rng.normal(1.0, 0.06), 0.85, 1.15))
    proportions = {name: float(np.clip(rng.normal(1.0, 0.04), 0.9, 1.1))
                   for name in kin.SEGMENT_NAMES}
    posture = _zeros(1)
    _rotate(posture, kin.SPINE_MID, flex=-rng.normal(0.04, 0.04))
    _rotate(posture, kin.NECK, flex=-rng.normal(0.05, 0.05))
    for side in _SIDES:
        _rotate(posture, _UPPER_ARM[side], side, flex=rng.normal(0.03, 0.03),
                abd=rng.normal(0.12, 0.04))
        _rotate(posture, _FOREARM[side], side, flex=rng.normal(0.15, 0.08))
        _rotate(posture, _THIGH[side], side, abd=rng.normal(0.05, 0.03))
        _rotate(posture, _SHANK[side], side, flex=-abs(rng.normal(0.03, 0.02)))
        _rotate(posture, _FOOT[side], side, swing=-rng.normal(0.15, 0.08))
    return Subject(
        offsets=kin.body_offsets(scale, proportions),
        posture=posture.angles[0],
        gains=np.clip(rng.normal(1.0, 0.08, (kin.NUM_JOINTS, 3)), 0.8, 1.2),
        amplitude=float(np.clip(rng.normal(1.0, 0.08), 0.8, 1.2)),
        tempo=float(np.clip(rng.normal(1.0, 0.1), 0.75, 1.3)),
        left_handed=bool(rng.random() < 0.1))


@dataclasses.dataclass(frozen=True)
class Camera:
    """A Kinect sensor in the world (floor at y = 0).

    Attributes:
      rotation: (3, 3) whose columns are the camera's x, y, z axes in world coordinates.
      position: (3,) the sensor's position in the world, metres.
    """

    rotation: np.ndarray
    position: np.ndarray

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """World points (..., 3) in camera space (data.md §1.4)."""
        return (points - self.position) @ self.rotation


def make_camera(yaw_deg: float, *, height: float = 1.1, distance: float = 3.0,
                aim_height: float = 0.75) -> Camera:
    """A camera on a circle around the stage centre, looking at it.

    Args:
      yaw_deg: position around the vertical axis; 0 is in front of a subject facing -z.
      height: sensor height above the floor, metres.
      distance: horizontal distance to the stage centre, metres.
      aim_height: height the optical axis meets at the stage centre; sets the tilt.

    Raises:
      ValueError: for a non-positive height or distance.
    """
    if height <= 0 or distance <= 0:
        raise ValueError(f"camera height and distance must be positive, got {height}, {distance}")
    tilt = math.atan2(height - aim_height, distance)
    yaw = kin.rotation_y(math.radians(yaw_deg))
    return Camera(rotation=yaw @ kin.rotation_x(tilt),
                  position=yaw @ np.array([0.0, height, -distance]))


def ntu_camera(seed: int, setup: int, camera_id: int) -> Camera:
    """Camera C{camera_id} of an NTU setup: the setup fixes height, distance and tilt.

    Raises:
      ValueError: for a camera id other than 1, 2, 3 or a setup below 1.
    """
    _check_seed(seed)
    if camera_id not in NTU_CAMERA_YAW_DEG or setup < 1:
        raise ValueError(f"need camera_id in 1..3 and setup >= 1, got {camera_id}, {setup}")
    rng = np.random.default_rng([seed, _TAG_SETUP, setup])
    height, distance, aim = rng.uniform(0.75, 1.45), rng.uniform(2.4, 3.4), rng.uniform(0.6, 1.0)
    yaw_jitter = rng.normal(0.0, 3.0, 3)
    return make_camera(NTU_CAMERA_YAW_DEG[camera_id] + yaw_jitter[camera_id - 1], height=height,
                       distance=distance, aim_height=aim)


@dataclasses.dataclass(frozen=True)
class Nuisance:
    """Recording imperfections, per camera view unless noted.

    Attributes:
      joint_noise_m: range of the per-view standard deviation of Gaussian joint noise.
      glitch_prob: chance that a body has tracking glitches (a limb jumps for 1-4 frames).
      inferred_joint_prob: chance per joint and frame of tracking state 1 (inferred).
      leading_empty_prob: chance of leading frames with no body.
      max_leading_empty: most leading empty frames.
      spurious_prob: chance of 1-3 short-lived spurious low-motion bodies.
      bystander_prob: chance per performance of a bystander (a second, idle person).
    """

    joint_noise_m: tuple[float, float] = (0.002, 0.008)
    glitch_prob: float = 0.15
    inferred_joint_prob: float = 0.01
    leading_empty_prob: float = 0.25
    max_leading_empty: int = 10
    spurious_prob: float = 0.12
    bystander_prob: float = 0.06


DEFAULT_NUISANCE = Nuisance()
NO_NUISANCE = Nuisance(joint_noise_m=(0.0, 0.0), glitch_prob=0.0, inferred_joint_prob=0.0,
                       leading_empty_prob=0.0, spurious_prob=0.0, bystander_prob=0.0)
# PKU-MMD phase 2 is the noisier, "small-margin" phase (data.md §3.4).
PKU_PHASE2_NUISANCE = dataclasses.replace(DEFAULT_NUISANCE, joint_noise_m=(0.004, 0.012),
                                          glitch_prob=0.3, bystander_prob=0.15)

# ----------------------------------------------------------------------------------------------
# Performances: bodies animated in the world


@dataclasses.dataclass(frozen=True)
class _WorldBody:
    positions: np.ndarray  # (T, 25, 3) world, metres.
    rotations: np.ndarray  # (T, 25, 3, 3) global bone rotations, world.
    lean: np.ndarray  # (T, 2) Kinect leanX (sideways) and leanY (forwards).
    active: np.ndarray  # (T,) bool: present in the scene.


def _warp(num_frames: int, strength: float) -> np.ndarray:
    """Monotonic time warp of [0, 1] (|strength| < 1 keeps it increasing)."""
    u = np.linspace(0.0, 1.0, num_frames)
    return u + strength * np.sin(2 * np.pi * u) / (2 * np.pi)


def _action_frames(rng, action: int, subject: Subject, max_frames: int) -> int:
    tempo = subject.tempo * np.clip(rng.normal(1.0, 0.1), 0.75, 1.3)
    if rng.random() < 0.05:  # An occasional very slow performance gives a long clip.
        tempo *= rng.uniform(1.6, 2.6)
    return int(np.clip(round(rng.uniform(*_ACTIONS[action].frames) * tempo), 16, max_frames))


def _action_tracks(rng, action: int, num_frames: int, subject: Subject) -> _Tracks:
    spec = _ACTIONS[action]
    tracks = spec.tracks(_warp(num_frames, rng.uniform(-0.35, 0.35)), rng, num_frames)
    if spec.mutual:  # Partners adapt to each other: right hands, meeting halfway, no own style.
        return tracks
    amplitude = subject.amplitude * float(np.clip(rng.normal(1.0, 0.08), 0.8, 1.2))
    tracks = _scale(tracks, subject.gains, amplitude)
    return _mirror(tracks) if subject.left_handed else tracks


def _idle_tracks(rng, num_frames: int) -> _Tracks:
    """Breathing, sway, small head and arm movements: nobody stands perfectly still."""
    frame = np.arange(num_frames)

    def wave(amplitude, period):
        phase = rng.uniform(0, 2 * np.pi)
        return amplitude * np.sin(2 * np.pi * frame / rng.uniform(*period) + phase)

    tracks = _zeros(num_frames)
    _rotate(tracks, kin.SPINE_MID, flex=wave(0.012, (70, 110)))
    _rotate(tracks, kin.NECK, flex=wave(0.03, (80, 160)), swing=wave(0.06, (90, 200)))
    for side in _SIDES:
        _rotate(tracks, _UPPER_ARM[side], side, flex=wave(0.03, (60, 140)))
    tracks.shift[:, 0] = wave(0.012, (100, 220))
    tracks.shift[:, 2] = wave(0.012, (100, 220))
    tracks.yaw[:] = wave(0.03, (120, 300))
    return tracks


def _animate(rng, tracks: _Tracks, subject: Subject, stage: np.ndarray, facing: float,
             active: np.ndarray | None = None) -> _WorldBody:
    """Poses a subject in the world: feet on the floor unless lifted, facing rotated about y."""
    tracks = _add(tracks, _idle_tracks(rng, len(tracks)))
    angles = tracks.angles + subject.posture
    for side in _SIDES:  # Keep feet flat on the floor whatever the knees and hips do.
        angles[:, _FOOT[side], 0] -= angles[:, _THIGH[side], 0] + angles[:, _SHANK[side], 0]
    yaw = facing + tracks.yaw
    positions, rotations = kin.forward_kinematics(
        subject.offsets, kin.euler_to_matrix(angles), kin.rotation_y(yaw),
        np.zeros((len(tracks), 3)))
    height = kin.FOOT_HEIGHT_M - positions[:, list(kin.FEET), 1].min(axis=1) + tracks.lift
    root = stage + tracks.shift @ kin.rotation_y(facing).T
    root[:, 1] += height
    positions += root[:, None, :]
    spine = positions[:, kin.SPINE_SHOULDER] - positions[:, kin.SPINE_BASE]
    spine = np.einsum("ti,tij->tj", spine, kin.rotation_y(yaw))  # Into the body's own frame.
    spine /= np.linalg.norm(spine, axis=1, keepdims=True)
    lean = np.stack([spine[:, 0], -spine[:, 2]], axis=1)
    active = np.ones(len(tracks), dtype=bool) if active is None else active
    return _WorldBody(positions, rotations, lean, active)


def _pair(rng, actor: _Tracks, subject: Subject, other: _Tracks, partner: Subject,
          stage: np.ndarray, facing: float) -> list[_WorldBody]:
    """Two people facing each other, side-on to the cameras, close enough for their hands to meet.

    The partner steps so that the right hands meet when the partner's hand is highest (the
    partner only moves for the mutual action).
    """
    turn = facing + rng.choice((-1.0, 1.0)) * np.pi / 2 + rng.normal(0.0, 0.15)
    half = 0.45 * kin.rotation_y(turn) @ np.array([0.0, 0.0, -1.0])
    first = _animate(rng, actor, subject, stage - half, turn)
    second = _animate(rng, other, partner, stage + half, turn + np.pi)
    meet = np.argmax(second.positions[:, kin.HAND_R, 1])
    step = first.positions[meet, kin.HAND_R] - second.positions[meet, kin.HAND_R]
    step[1] = 0.0
    return [first, dataclasses.replace(second, positions=second.positions + step)]


def _bystander(rng, num_frames: int, stage: np.ndarray) -> _WorldBody:
    """An idle person to one side and behind, present for part of the clip."""
    position = stage + np.array([rng.choice((-1.0, 1.0)) * rng.uniform(1.1, 1.7), 0.0,
                                 rng.uniform(0.4, 1.5)])
    length = int(rng.integers(max(1, int(0.3 * num_frames)), num_frames + 1))
    start = int(rng.integers(0, num_frames - length + 1))
    active = np.zeros(num_frames, dtype=bool)
    active[start:start + length] = True
    return _animate(rng, _zeros(num_frames), _draw_subject(rng), position, rng.normal(0.0, 0.5),
                    active)


def _perform_clip(rng, action: int, subject: Subject, facing: float, nuisance: Nuisance,
                  partner: Subject | None) -> list[_WorldBody]:
    """One NTU performance: an action with idle frames before and after, plus other people."""
    head, tail = (int(g) for g in rng.integers(3, 21, size=2))
    num_frames = _action_frames(rng, action, subject, MAX_CLIP_FRAMES - head - tail)
    tail = max(tail, MIN_CLIP_FRAMES - head - num_frames)
    stage = np.array([rng.normal(0.0, 0.15), 0.0, rng.normal(0.0, 0.15)])
    actor = _timeline([_action_tracks(rng, action, num_frames, subject)], [head, tail])
    if action in MUTUAL_ACTIONS:
        partner = partner or _draw_subject(rng)
        other = _timeline([_action_tracks(rng, action, num_frames, partner)], [head, tail])
        bodies = _pair(rng, actor, subject, other, partner, stage, facing)
    else:
        bodies = [_animate(rng, actor, subject, stage, facing)]
    if rng.random() < nuisance.bystander_prob:
        bodies.append(_bystander(rng, len(actor), stage))
    return bodies


def _perform_video(rng, actions: Sequence[int], subject: Subject, facing: float,
                   nuisance: Nuisance, partner: Subject
                   ) -> tuple[list[_WorldBody], list[tuple[int, int, int]]]:
    """One untrimmed PKU-MMD performance: actions separated by idle gaps.

    Returns:
      The bodies and (action, first frame, last frame) per instance, 0-based inclusive frames.
    """
    with_partner = any(a in MUTUAL_ACTIONS for a in actions)
    lengths = [_action_frames(rng, a, subject, 400) for a in actions]
    gaps = ([int(rng.integers(15, 61))] + [int(rng.integers(20, 91)) for _ in actions[1:]]
            + [int(rng.integers(15, 61))])
    segments = []
    for action, length in zip(actions, lengths):
        tracks = _action_tracks(rng, action, length, subject)
        if not with_partner:  # Between actions a lone subject drifts and turns a little.
            tracks = dataclasses.replace(
                tracks, yaw=tracks.yaw + rng.normal(0.0, 0.15),
                shift=tracks.shift + (rng.normal(0.0, 0.08), 0.0, rng.normal(0.0, 0.08)))
        segments.append(tracks)
    actor = _timeline(segments, gaps)
    starts = np.cumsum(gaps[:-1]) + np.concatenate([[0], np.cumsum(lengths[:-1])])
    instances = [(a, int(s), int(s) + n - 1) for a, s, n in zip(actions, starts, lengths)]
    stage = np.array([rng.normal(0.0, 0.15), 0.0, rng.normal(0.0, 0.15)])
    if with_partner:
        other = _timeline([_action_tracks(rng, a, n, partner) if a in MUTUAL_ACTIONS
                           else _zeros(n) for a, n in zip(actions, lengths)], gaps)
        bodies = _pair(rng, actor, subject, other, partner, stage, facing)
    else:
        bodies = [_animate(rng, actor, subject, stage, facing)]
        if rng.random() < nuisance.bystander_prob:
            bodies.append(_bystander(rng, len(actor), stage))
    return bodies, instances


# ----------------------------------------------------------------------------------------------
# Observation by one camera

_LIMBS = (
    (kin.ELBOW_R, kin.WRIST_R, kin.HAND_R, kin.HAND_TIP_R, kin.THUMB_R),
    (kin.ELBOW_L, kin.WRIST_L, kin.HAND_L, kin.HAND_TIP_L, kin.THUMB_L),
    (kin.HAND_R, kin.HAND_TIP_R, kin.THUMB_R),
    (kin.HAND_L, kin.HAND_TIP_L, kin.THUMB_L),
    (kin.KNEE_R, kin.ANKLE_R, kin.FOOT_R),
    (kin.KNEE_L, kin.ANKLE_L, kin.FOOT_L),
)


@dataclasses.dataclass(frozen=True)
class _Observed:
    xyz: np.ndarray  # (T, 25, 3) camera space.
    orientation: np.ndarray  # (T, 25, 4)
    tracking: np.ndarray  # (T, 25) joint tracking states.
    active: np.ndarray  # (T,) bool
    infos: list[writer.BodyInfo]


def _observe(rng, body: _WorldBody, camera: Camera, nuisance: Nuisance, sigma: float) -> _Observed:
    """A person as one Kinect reports it: noise, glitches, inferred joints, body-info fields."""
    num_frames = len(body.active)
    xyz = camera.to_camera(body.positions) + rng.normal(0.0, 1.0, body.positions.shape) * sigma
    orientation = kin.matrix_to_quaternion(camera.rotation.T @ body.rotations)
    tracking = np.where(rng.random((num_frames, kin.NUM_JOINTS)) < nuisance.inferred_joint_prob,
                        1, 2)
    if rng.random() < nuisance.glitch_prob:
        for _ in range(int(rng.integers(1, 4))):
            limb = list(_LIMBS[rng.integers(len(_LIMBS))])
            start = int(rng.integers(num_frames))
            frames = slice(start, start + int(rng.integers(1, 5)))
            xyz[frames, limb] += rng.normal(0.0, 0.12, 3)
            tracking[frames, limb] = 1
    lean = np.clip(body.lean + rng.normal(0.0, 0.02, body.lean.shape), -1.0, 1.0)
    hands = _hand_states(rng, num_frames)
    body_tracking = np.where(rng.random(num_frames) < 0.03, 1, 2)
    edges = _clipped_edges(xyz)
    infos = [writer.BodyInfo(
        clipped_edges=int(edges[t]), hand_left_confidence=int(hands[t, 0, 1]),
        hand_left_state=int(hands[t, 0, 0]), hand_right_confidence=int(hands[t, 1, 1]),
        hand_right_state=int(hands[t, 1, 0]), lean_x=float(lean[t, 0]),
        lean_y=float(lean[t, 1]), tracking_state=int(body_tracking[t]))
        for t in range(num_frames)]
    return _Observed(xyz, orientation, tracking, body.active, infos)


def _hand_states(rng, num_frames: int) -> np.ndarray:
    """(T, 2 hands, [state, confidence]): a usual state per hand with occasional flickers."""
    usual = rng.choice([2, 3, 1, 0], size=2, p=[0.5, 0.2, 0.2, 0.1])
    flicker = rng.random((num_frames, 2)) < 0.08
    states = np.where(flicker, rng.integers(0, 5, (num_frames, 2)), usual)
    confident = np.isin(states, (2, 3, 4)) & (rng.random((num_frames, 2)) > 0.2)
    return np.stack([states, confident.astype(int)], axis=-1)


def _clipped_edges(xyz: np.ndarray) -> np.ndarray:
    """FrameEdges bits per frame from where the joints fall in the depth image."""
    pixels = writer.project_to_depth(xyz)
    width, height = writer.DEPTH_SIZE
    return (1 * (pixels[..., 0] >= width).any(-1) + 2 * (pixels[..., 0] < 0).any(-1)
            + 4 * (pixels[..., 1] < 0).any(-1) + 8 * (pixels[..., 1] >= height).any(-1))


def _spurious_bodies(rng, num_frames: int) -> list[_Observed]:
    """1-3 short-lived 'bodies' that are furniture: 25 joints in a small, nearly still blob.

    They share an anchor frame so that, with two or more, a frame holds more than two bodies.
    """
    count = int(rng.choice([1, 2, 3], p=[0.65, 0.25, 0.1]))
    anchor = int(rng.integers(num_frames))
    blobs = []
    for _ in range(count):
        depth = rng.uniform(1.8, 4.0)  # In the sensor's field of view (about +-35 degrees).
        centre = np.array([rng.uniform(-0.6, 0.6) * depth, rng.uniform(-0.7, 0.2), depth])
        shape = rng.normal(0.0, rng.uniform(0.03, 0.12), (kin.NUM_JOINTS, 3))
        xyz = centre + shape + rng.normal(0.0, 0.004, (num_frames, kin.NUM_JOINTS, 3))
        before, after = rng.integers(1, max(2, int(0.25 * num_frames)), size=2)
        active = np.zeros(num_frames, dtype=bool)
        active[max(0, anchor - before):anchor + after] = True
        quaternions = rng.normal(size=(kin.NUM_JOINTS, 4))
        quaternions /= np.linalg.norm(quaternions, axis=1, keepdims=True)
        tracking = np.where(rng.random(kin.NUM_JOINTS) < 0.5, 1, 2)
        info = writer.BodyInfo(hand_left_confidence=0, hand_left_state=1, hand_right_confidence=0,
                               hand_right_state=1, lean_x=float(rng.uniform(-0.3, 0.3)),
                               lean_y=float(rng.uniform(-0.3, 0.3)), tracking_state=1)
        blobs.append(_Observed(xyz, np.broadcast_to(quaternions, (num_frames, kin.NUM_JOINTS, 4)),
                               np.broadcast_to(tracking, (num_frames, kin.NUM_JOINTS)), active,
                               [info] * num_frames))
    return blobs


def _render_ntu(rng, bodies: Sequence[_WorldBody], camera: Camera, nuisance: Nuisance
                ) -> list[list[writer.Body]]:
    """One camera's view of a performance as the frames of a ``.skeleton`` file."""
    num_frames = len(bodies[0].active)
    sigma = rng.uniform(*nuisance.joint_noise_m)
    observed = [_observe(rng, body, camera, nuisance, sigma) for body in bodies]
    leading_empty = 0
    if rng.random() < nuisance.leading_empty_prob:
        leading_empty = int(rng.integers(1, nuisance.max_leading_empty + 1))
    if rng.random() < nuisance.spurious_prob:
        observed += _spurious_bodies(rng, num_frames)
    # Kinect ids grow with each newly tracked body.
    ids = _BODY_ID_BASE + rng.integers(1000, 9000) + np.cumsum(rng.integers(1, 50, len(observed)))
    return [[] if t < leading_empty else
             [writer.Body(int(body_id), o.xyz[t], o.orientation[t], o.tracking[t], o.infos[t])
              for body_id, o in zip(ids, observed) if o.active[t]]
             for t in range(num_frames)]


def _render_pku(rng, bodies: Sequence[_WorldBody], camera: Camera, nuisance: Nuisance
                ) -> np.ndarray:
    """One camera's view of a performance as a (T, 2, 25, 3) PKU-MMD array."""
    sigma = rng.uniform(*nuisance.joint_noise_m)
    video = np.zeros((len(bodies[0].active), 2, kin.NUM_JOINTS, 3))
    for slot, body in enumerate(bodies[:2]):
        observed = _observe(rng, body, camera, nuisance, sigma)
        video[observed.active, slot] = observed.xyz[observed.active]
    return video


def synthesize_clip(rng: np.random.Generator, action: int, subject: Subject, camera: Camera, *,
                    facing_deg: float = 0.0, nuisance: Nuisance = DEFAULT_NUISANCE
                    ) -> list[list[writer.Body]]:
    """One NTU-style clip of an action as seen by one camera.

    Args:
      rng: source of all randomness of the clip.
      action: 0-based action index (``ACTION_NAMES``).
      subject: the performer (``make_subject``); a partner for mutual actions is drawn from rng.
      camera: the observing camera (``make_camera``, ``ntu_camera``).
      facing_deg: the subject's facing around the vertical; equal to a camera's yaw means facing
        that camera.
      nuisance: recording imperfections; ``NO_NUISANCE`` gives clean clips.

    Returns:
      The frames: per frame the list of bodies, input of ``skeleton_writer.format_ntu_skeleton``.

    Raises:
      ValueError: for an unknown action.
    """
    if not 0 <= action < NUM_ACTIONS:
        raise ValueError(f"action must be in 0..{NUM_ACTIONS - 1}, got {action}")
    bodies = _perform_clip(rng, action, subject, math.radians(facing_deg), nuisance, None)
    return _render_ntu(rng, bodies, camera, nuisance)


# ----------------------------------------------------------------------------------------------
# Datasets


@dataclasses.dataclass(frozen=True)
class GeneratedFile:
    """One output file and the facts that the command-line summary reports about it.

    Attributes:
      path: POSIX path relative to the output folder.
      data: the file's bytes.
      num_frames: frames of a skeleton file (0 for other files).
      max_bodies: most bodies in one frame of an NTU file.
      leading_empty: leading frames without a body in an NTU file.
      crlf: whether the file uses CRLF line endings.
      num_instances: action instances in a PKU-MMD label file.
    """

    path: str
    data: bytes
    num_frames: int = 0
    max_bodies: int = 0
    leading_empty: int = 0
    crlf: bool = False
    num_instances: int = 0


def _check_seed(seed: int):
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


def _check_num_classes(num_classes: int | None) -> int:
    if num_classes is None:
        return NUM_ACTIONS
    if not 1 <= num_classes <= NUM_ACTIONS:
        raise ValueError(f"num_classes must be in 1..{NUM_ACTIONS} (the synthetic actions), "
                         f"got {num_classes}")
    return num_classes


def _subject_order() -> tuple[int, ...]:
    """NTU-60 performers alternating between cross-subject train and test ones."""
    train = ntu_meta.NTU60_TRAIN_SUBJECTS
    test = tuple(p for p in range(1, _NTU_PERFORMERS + 1) if p not in train)
    return tuple(p for pair in zip(train, test) for p in pair)


_SUBJECT_ORDER = _subject_order()


def _ntu_plan(index: int, num_classes: int) -> ntu_meta.SampleId:
    """Setup, performer, replication and action (camera 0) of the index-th performance.

    Classes cycle fastest, so every prefix is balanced; within a round the classes go to different
    performers, alternating between train and test subjects. Each block of 80 rounds uses every
    (performer, replication, action) once; blocks shift the setup, so names never repeat.
    """
    round_index, action = divmod(index, num_classes)
    block, round_in_block = divmod(round_index, _NTU_PERFORMERS * _NTU_REPLICATIONS)
    performer = _SUBJECT_ORDER[(round_in_block + action) % _NTU_PERFORMERS]
    setup = 1 + (7 * performer + block) % ntu_meta.NTU60_NUM_SETUPS
    return ntu_meta.SampleId(setup, 0, performer, 1 + round_in_block // _NTU_PERFORMERS,
                             NTU_LABELS[action])


def max_ntu_clips(num_classes: int | None = None) -> int:
    """The most NTU clips with distinct names: 17 setups x 40 performers x 2 x classes x 3."""
    return (ntu_meta.NTU60_NUM_SETUPS * _NTU_PERFORMERS * _NTU_REPLICATIONS
            * _check_num_classes(num_classes) * len(NTU_CAMERA_YAW_DEG))


def ntu_sample_ids(num_clips: int, num_classes: int | None = None) -> list[ntu_meta.SampleId]:
    """The sample names ``iter_ntu_files`` gives, in its order, without generating any clip.

    Raises:
      ValueError: for num_clips outside 1..``max_ntu_clips(num_classes)``.
    """
    num_classes = _check_num_classes(num_classes)
    if not 1 <= num_clips <= max_ntu_clips(num_classes):
        raise ValueError(f"num_clips must be in 1..{max_ntu_clips(num_classes)} for "
                         f"{num_classes} classes (distinct NTU names), got {num_clips}")
    cameras = len(NTU_CAMERA_YAW_DEG)
    return [_ntu_plan(index // cameras, num_classes)._replace(camera=index % cameras + 1)
            for index in range(num_clips)]


def iter_ntu_files(num_clips: int, seed: int, *, num_classes: int | None = None,
                   crlf_fraction: float = 0.1, nuisance: Nuisance = DEFAULT_NUISANCE
                   ) -> Iterator[GeneratedFile]:
    """Generates NTU RGB+D ``.skeleton`` files named ``SsssCcccPpppRrrrAaaa.skeleton``.

    Each performance is written from cameras C001, C002 and C003 in turn, so names come in
    triples; classes are balanced (they differ by at most one performance).

    Args:
      num_clips: number of files, 1..``max_ntu_clips(num_classes)``.
      seed: non-negative dataset seed; the same seed gives the same bytes.
      num_classes: use actions 0..num_classes-1 (default all ``NUM_ACTIONS``).
      crlf_fraction: share of files written with CRLF line endings.
      nuisance: recording imperfections.

    Returns:
      An iterator over the files, in generation order; clips are made as it advances.

    Raises:
      ValueError: for an argument out of range (raised by this call, not by the iterator).
    """
    _check_seed(seed)
    sample_ids = ntu_sample_ids(num_clips, num_classes)
    if not 0.0 <= crlf_fraction <= 1.0:
        raise ValueError(f"crlf_fraction must be in [0, 1], got {crlf_fraction}")
    return _ntu_files(sample_ids, seed, crlf_fraction, nuisance)


def _ntu_files(sample_ids: Sequence[ntu_meta.SampleId], seed: int, crlf_fraction: float,
               nuisance: Nuisance) -> Iterator[GeneratedFile]:
    num_clips = len(sample_ids)
    cameras = len(NTU_CAMERA_YAW_DEG)
    for index in range(math.ceil(num_clips / cameras)):
        views = sample_ids[cameras * index:cameras * (index + 1)]
        plan = views[0]
        rng = np.random.default_rng([seed, _TAG_PERFORMANCE, index])
        partner = make_subject(seed, plan.subject % _NTU_PERFORMERS + 1)
        facing = math.radians(NTU_FACING_DEG[plan.replication] + rng.normal(0.0, 10.0))
        bodies = _perform_clip(rng, NTU_LABELS.index(plan.action),
                               make_subject(seed, plan.subject), facing,
                               nuisance, partner)
        for sample in views:
            view_rng = np.random.default_rng([seed, _TAG_VIEW, index, sample.camera])
            frames = _render_ntu(view_rng, bodies, ntu_camera(seed, sample.setup, sample.camera),
                                 nuisance)
            crlf = bool(view_rng.random() < crlf_fraction)
            text = writer.format_ntu_skeleton(frames, line_ending="\r\n" if crlf else "\n")
            yield GeneratedFile(
                path=sample.name + ".skeleton", data=text.encode("ascii"),
                num_frames=len(frames), max_bodies=max(len(bodies_t) for bodies_t in frames),
                leading_empty=_leading_empty(frames), crlf=crlf)


def _leading_empty(frames: Sequence[Sequence[writer.Body]]) -> int:
    return next((t for t, bodies in enumerate(frames) if bodies), len(frames))


def _pku_video(phase: int, index: int) -> tuple[str, int]:
    """Name stem (without view) and subject of the index-th PKU-MMD performance."""
    if phase == 1:
        return f"{index + 2:04d}", index % _PKU_PHASE1_SUBJECTS + 1
    subject = index % 13 + 1
    return f"A{index // 13 + 1:02d}N{subject:02d}", subject


def _pku_is_test_subject(phase: int, subject: int) -> bool:
    if phase == 1:
        return subject % 3 == 2
    return subject in _PKU_PHASE2_TEST_SUBJECTS


def iter_pku_files(num_videos: int, seed: int, *, phase: int = 1, num_classes: int | None = None,
                   nuisance: Nuisance | None = None) -> Iterator[GeneratedFile]:
    """Generates a PKU-MMD phase-1 or phase-2 layout: skeletons, labels and split files.

    Files: ``PKU_Skeleton_Renew/<video>.txt``, ``Train_Label_PKU_final/<video>.txt`` and, last,
    the two ``Split/`` files of the phase (``pku_meta.SPLIT_FILES``). Videos are ``XXXX-V``
    (phase 1, from 0002) or ``AxxNyy-V`` (phase 2, N = subject); each performance is written from
    views L, M and R. Cross-view trains on M and R; cross-subject holds out subjects 2, 5, 8, ...
    (phase 1) or N in {2, 5, 8, 11} (phase 2). Labels are the actions' ``PKU_LABELS``.

    Args:
      num_videos: number of skeleton files (views), at least ``PKU_MIN_VIDEOS``.
      seed: non-negative dataset seed.
      phase: 1 or 2 (noisier, fewer actions per video).
      num_classes: use actions 0..num_classes-1 (default all).
      nuisance: recording imperfections; default ``DEFAULT_NUISANCE`` (phase 1) or
        ``PKU_PHASE2_NUISANCE`` (phase 2).

    Returns:
      An iterator over the files; videos are made as it advances.

    Raises:
      ValueError: for an argument out of range (raised by this call, not by the iterator).
    """
    _check_seed(seed)
    num_classes = _check_num_classes(num_classes)
    if phase not in (1, 2):
        raise ValueError(f"PKU-MMD phase must be 1 or 2, got {phase}")
    limit = _PKU_PHASE1_MAX_VIDEOS if phase == 1 else PKU_PHASE2_MAX_VIDEOS
    if not PKU_MIN_VIDEOS <= num_videos <= limit:
        raise ValueError(f"num_videos must be in {PKU_MIN_VIDEOS}..{limit} for phase {phase} "
                         f"(fewer leave a split without test videos), got {num_videos}")
    if nuisance is None:
        nuisance = DEFAULT_NUISANCE if phase == 1 else PKU_PHASE2_NUISANCE
    return _pku_files(num_videos, seed, phase, num_classes, nuisance)


def _pku_files(num_videos: int, seed: int, phase: int, num_classes: int, nuisance: Nuisance
               ) -> Iterator[GeneratedFile]:
    room = np.random.default_rng([seed, _TAG_SETUP, 1000 + phase])
    height, distance, aim = room.uniform(0.9, 1.4), room.uniform(2.5, 3.2), room.uniform(0.6, 0.9)
    actions_per_video = (5, 10) if phase == 1 else (3, 7)
    splits = {"xsub": ([], []), "xview": ([], [])}
    views = tuple(PKU_VIEW_YAW_DEG)
    for index in range(math.ceil(num_videos / len(views))):
        stem, subject_id = _pku_video(phase, index)
        rng = np.random.default_rng([seed, _TAG_PKU_VIDEO, phase, index])
        count = min(num_classes, int(rng.integers(*actions_per_video)))
        actions = [int(a) for a in rng.choice(num_classes, size=count, replace=False)]
        subject = make_subject(seed, subject_id)
        partner = make_subject(seed, subject_id % _PKU_PHASE1_SUBJECTS + 1)
        bodies, instances = _perform_video(rng, actions, subject, rng.normal(0.0, 0.15),
                                           nuisance, partner)
        labels = writer.format_pku_labels(
            (PKU_LABELS[a], first + 1, last + 1, 2 if rng.random() < 0.8 else 1)
            for a, first, last in instances).encode("ascii")
        for view in views[:num_videos - len(views) * index]:
            name = f"{stem}-{view}"
            view_rng = np.random.default_rng([seed, _TAG_PKU_VIDEO, phase, index, ord(view)])
            camera = make_camera(PKU_VIEW_YAW_DEG[view] + view_rng.normal(0.0, 3.0),
                                 height=height, distance=distance, aim_height=aim)
            video = _render_pku(view_rng, bodies, camera, nuisance)
            yield GeneratedFile(f"PKU_Skeleton_Renew/{name}.txt",
                                writer.format_pku_skeleton(video).encode("ascii"),
                                num_frames=len(video))
            yield GeneratedFile(f"Train_Label_PKU_final/{name}.txt", labels,
                                num_instances=len(instances))
            splits["xsub"][_pku_is_test_subject(phase, subject_id)].append(name)
            splits["xview"][view == _PKU_TEST_VIEW].append(name)
    for protocol, (train, test) in splits.items():
        yield GeneratedFile(f"Split/{pku_meta.SPLIT_FILES[(phase, protocol)]}",
                            writer.format_pku_split(train, test).encode("ascii"))


def write_files(out_dir: str | pathlib.Path, files: Iterable[GeneratedFile]) -> list[pathlib.Path]:
    """Writes generated files below out_dir (created if needed), byte for byte.

    Returns:
      The written paths, in order.
    """
    out_dir = pathlib.Path(out_dir)
    paths = []
    for generated in files:
        path = out_dir / generated.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(generated.data)
        paths.append(path)
    return paths


def write_ntu_dataset(out_dir: str | pathlib.Path, num_clips: int, seed: int,
                      **kwargs) -> list[pathlib.Path]:
    """Writes ``iter_ntu_files(num_clips, seed, **kwargs)`` into out_dir; returns the paths."""
    return write_files(out_dir, iter_ntu_files(num_clips, seed, **kwargs))


def write_pku_dataset(out_dir: str | pathlib.Path, num_videos: int, seed: int,
                      **kwargs) -> list[pathlib.Path]:
    """Writes ``iter_pku_files(num_videos, seed, **kwargs)`` into out_dir; returns the paths."""
    return write_files(out_dir, iter_pku_files(num_videos, seed, **kwargs))


# ----------------------------------------------------------------------------------------------
# Command line


def _summary(files: Sequence[GeneratedFile], fmt: str, out_dir: str, seconds: float) -> str:
    skeletons = [f for f in files if f.num_frames]
    frames = np.array([f.num_frames for f in skeletons])
    lines = [f"Wrote {len(files)} files ({len(skeletons)} {fmt.upper()} skeleton files) to "
             f"{out_dir} in {seconds:.1f} s ({len(skeletons) / max(seconds, 1e-9):.1f} skeleton "
             f"files/s).",
             f"Frames per file: mean {frames.mean():.1f}, min {frames.min()}, max {frames.max()}."]
    if fmt == "ntu":
        lines.append(
            f"Files with leading empty frames: {sum(f.leading_empty > 0 for f in skeletons)}; "
            f"with more than 2 bodies in a frame: {sum(f.max_bodies > 2 for f in skeletons)}; "
            f"CRLF: {sum(f.crlf for f in skeletons)}.")
    else:
        lines.append(f"Action instances: {sum(f.num_instances for f in files)}.")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m skel_jax.data.synthetic --out DIR --clips N --seed S``."""
    parser = argparse.ArgumentParser(
        prog="python -m skel_jax.data.synthetic",
        description="Writes a synthetic skeleton action dataset in the official NTU RGB+D "
                    "(.skeleton) or PKU-MMD layout.")
    parser.add_argument("--out", required=True, help="output folder (created if needed)")
    parser.add_argument("--clips", type=int, required=True,
                        help="number of NTU clips, or of PKU-MMD videos (views)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    parser.add_argument("--format", choices=("ntu", "pku"), default="ntu")
    parser.add_argument("--num_classes", type=int, default=None,
                        help=f"number of actions, 1..{NUM_ACTIONS} (default all)")
    parser.add_argument("--crlf_fraction", type=float, default=0.1,
                        help="share of NTU files with CRLF line endings (default 0.1)")
    parser.add_argument("--phase", type=int, choices=(1, 2), default=1, help="PKU-MMD phase")
    args = parser.parse_args(argv)
    try:
        if args.format == "ntu":
            files = iter_ntu_files(args.clips, args.seed, num_classes=args.num_classes,
                                   crlf_fraction=args.crlf_fraction)
            total = args.clips
        else:
            files = iter_pku_files(args.clips, args.seed, phase=args.phase,
                                   num_classes=args.num_classes)
            total = 2 * args.clips + 2
        start = time.perf_counter()
        written = []
        for generated in tqdm.tqdm(files, total=total, desc="writing", unit="file",
                                   file=sys.stderr, mininterval=0.5):
            write_files(args.out, [generated])
            written.append(dataclasses.replace(generated, data=b""))
    except ValueError as error:
        parser.error(str(error))
    print(_summary(written, args.format, args.out, time.perf_counter() - start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
