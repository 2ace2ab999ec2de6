"""ISC augmentations (method.md §3, data.md §5.1), batched and jit-able, for use inside the step.

Layouts: one sample's skeleton is (T, M, V, C=3) (frames, persons, joints, xyz), zero-padded past
its `num_frames`; a batch adds a leading N. Every random choice comes from a per-sample PRNG key
built by `sample_keys` from the seed, the step and the sample's *global* index, so a view depends
only on those three values and not on how the batch is split over devices.

The per-sample functions are written for `jax.vmap`; the `*_views` functions are their batched
forms. Everything has static output shapes; the crop length is a traced value and the crop is a
gather of two neighbouring frames plus a linear blend, so nothing is recompiled per sample.
"""

from typing import NamedTuple

import functools

import jax
import jax.numpy as jnp
import numpy as np

CLIP_FRAMES = 64
NUM_CORRUPTED_JOINTS = 15
PRETRAIN_SCALE = (0.1, 1.0)
DOWNSTREAM_TRAIN_SCALE = (0.5, 1.0)

# The original takes start = int((1 - 0.95) * num_frames / 2); for integer frame counts that is
# num_frames // 40, which keeps the test crop in exact integer arithmetic.
_CENTER_CROP_DIVISOR = 40

# Each PRNG call compiles to its own hash computation and a dozen of them dominated the compile
# time of a view, so each augmentation takes all its random numbers from one uniform draw.
_SHEAR_DRAWS = 6  # a..f

# One-hot 3x3 matrices at (0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1): the shear's a..f. A
# weighted sum of constants, unlike a scatter or a concatenation with constants, stays valid
# when the batch is explicitly sharded and no mesh is set.
_OFF_DIAGONAL_BASIS = np.eye(9, dtype=np.float32)[[1, 2, 3, 5, 6, 7]].reshape(6, 3, 3)


class CropWindow(NamedTuple):
    """A temporal crop: frames [start, start + length) of one sample (int32 scalars)."""

    start: jax.Array
    length: jax.Array


def _check_clip(clip, name, ndim):
    if clip.ndim != ndim or clip.shape[-1] != 3:
        layout = "(T, M, V, 3)" if ndim == 4 else "(N, T, M, V, 3)"
        raise ValueError(f"{name} must have layout {layout}, got shape {clip.shape}")
    if clip.dtype != jnp.float32:
        raise ValueError(f"{name} must be float32, got {clip.dtype}")


def _check_frame_count(num_frames, shape):
    num_frames = jnp.asarray(num_frames)
    if num_frames.shape != shape or not jnp.issubdtype(num_frames.dtype, jnp.integer):
        raise ValueError(
            f"num_frames must be an integer array of shape {shape}, "
            f"got {num_frames.dtype} of shape {num_frames.shape}")
    return num_frames.astype(jnp.int32)


def _check_keys(keys, shape):
    if not jnp.issubdtype(keys.dtype, jax.dtypes.prng_key):
        raise ValueError(f"expected typed PRNG keys (jax.random.key), got dtype {keys.dtype}")
    if keys.shape != shape:
        raise ValueError(f"expected keys of shape {shape}, got {keys.shape}")


def _check_out_frames(out_frames):
    if not isinstance(out_frames, int) or out_frames < 1:
        raise ValueError(f"out_frames must be a positive int, got {out_frames!r}")


def sample_keys(seed_key, step, sample_index):
    """Per-sample keys from (seed, step, global sample index).

    Args:
        seed_key: typed PRNG key (`jax.random.key(seed)`) of the run.
        step: int scalar, the training step (may be traced).
        sample_index: int (N,) global indices of the batch rows, so that a row gets the same key
            whichever device or batch slice computes it.

    Returns:
        (N,) typed PRNG keys.

    Raises:
        ValueError: `seed_key` is not one typed key or `sample_index` is not a 1-D integer array.
    """
    _check_keys(seed_key, ())
    sample_index = jnp.asarray(sample_index)
    if sample_index.ndim != 1 or not jnp.issubdtype(sample_index.dtype, jnp.integer):
        raise ValueError(
            f"sample_index must be a 1-D integer array, "
            f"got {sample_index.dtype} of shape {sample_index.shape}")
    step_key = jax.random.fold_in(seed_key, step)
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(step_key, sample_index)


def crop_length(num_frames, scale, out_frames=CLIP_FRAMES):
    """ISC crop length: min(max(floor(num_frames * scale), out_frames), num_frames).

    Args:
        num_frames: int scalar, valid frames of the sample.
        scale: float scalar, the sampled crop ratio.
        out_frames: the minimum crop length (the model's clip length).

    Returns:
        int32 scalar crop length in [1, num_frames] for num_frames >= 1.
    """
    scaled = jnp.floor(num_frames * scale).astype(jnp.int32)
    return jnp.minimum(jnp.maximum(scaled, out_frames), num_frames)


def crop_window(key, num_frames, *, min_scale, max_scale, out_frames=CLIP_FRAMES):
    """Samples an ISC random temporal crop for one sample.

    Args:
        key: typed PRNG key of the sample.
        num_frames: int scalar, 1 <= num_frames.
        min_scale: lower bound of the crop ratio, 0 < min_scale <= max_scale.
        max_scale: upper bound of the crop ratio.
        out_frames: the model's clip length, also the minimum crop length.

    Returns:
        CropWindow with length = crop_length(num_frames, U(min_scale, max_scale)) and start
        ~ U{0 .. num_frames - length}, so the window never reaches frame num_frames.

    Raises:
        ValueError: on a bad scale range, out_frames or num_frames.
    """
    if not 0 < min_scale <= max_scale:
        raise ValueError(f"need 0 < min_scale <= max_scale, got ({min_scale}, {max_scale})")
    _check_out_frames(out_frames)
    _check_keys(key, ())
    num_frames = _check_frame_count(num_frames, ())
    scale_draw, start_draw = jax.random.uniform(key, (2,))
    length = crop_length(num_frames, min_scale + (max_scale - min_scale) * scale_draw, out_frames)
    slots = num_frames - length + 1
    # floor(u * slots) is uniform on {0 .. slots - 1} up to float32 resolution; the minimum
    # guards against u * slots rounding up to slots.
    start = jnp.minimum(jnp.floor(start_draw * slots).astype(jnp.int32), slots - 1)
    return CropWindow(start, length)


def resize_window(skeleton, window, out_frames=CLIP_FRAMES):
    """Resizes frames [start, start + length) to out_frames by linear interpolation.

    Matches torch `F.interpolate(mode='bilinear', align_corners=False)` along time: output frame i
    samples source position (i + 0.5) * length / out_frames - 0.5, clamped to [0, length - 1].
    Only frames inside the window are read.

    Args:
        skeleton: float32 (T, M, V, 3), one sample.
        window: CropWindow with 0 <= start and start + length <= T, length >= 1.
        out_frames: number of output frames.

    Returns:
        float32 (out_frames, M, V, 3).

    Raises:
        ValueError: on a bad layout/dtype or out_frames.
    """
    _check_clip(skeleton, "skeleton", 4)
    _check_out_frames(out_frames)
    length = window.length.astype(jnp.float32)
    position = (jnp.arange(out_frames, dtype=jnp.float32) + 0.5) * length / out_frames - 0.5
    position = jnp.clip(position, 0.0, length - 1.0)
    lower = jnp.floor(position).astype(jnp.int32)
    upper = jnp.minimum(lower + 1, window.length - 1)
    weight = (position - lower)[:, None, None, None]
    lower_frames = jnp.take(skeleton, window.start + lower, axis=0)
    upper_frames = jnp.take(skeleton, window.start + upper, axis=0)
    return (1.0 - weight) * lower_frames + weight * upper_frames


def temporal_crop_resize(key, skeleton, num_frames, *, min_scale, max_scale,
                         out_frames=CLIP_FRAMES):
    """ISC random temporal crop of one sample, resized to out_frames (data.md §5.1).

    Clips shorter than out_frames are stretched whole.

    Args:
        key: typed PRNG key of the sample.
        skeleton: float32 (T, M, V, 3).
        num_frames: int scalar, 1 <= num_frames <= T.
        min_scale: lower bound of the crop ratio.
        max_scale: upper bound of the crop ratio.
        out_frames: output clip length.

    Returns:
        float32 (out_frames, M, V, 3).
    """
    window = crop_window(key, num_frames, min_scale=min_scale, max_scale=max_scale,
                         out_frames=out_frames)
    return resize_window(skeleton, window, out_frames)


def center_window(num_frames):
    """The downstream test crop: start = floor(0.025 * num_frames), end = num_frames - start.

    Args:
        num_frames: int scalar, 1 <= num_frames.

    Returns:
        CropWindow of the centre crop.
    """
    num_frames = _check_frame_count(num_frames, ())
    start = num_frames // _CENTER_CROP_DIVISOR
    return CropWindow(start, num_frames - 2 * start)


def center_crop_resize(skeleton, num_frames, out_frames=CLIP_FRAMES):
    """Deterministic centre crop of one sample, resized to out_frames.

    Args:
        skeleton: float32 (T, M, V, 3).
        num_frames: int scalar, 1 <= num_frames <= T.
        out_frames: output clip length.

    Returns:
        float32 (out_frames, M, V, 3).
    """
    return resize_window(skeleton, center_window(num_frames), out_frames)


def _shear_matrix(draws):
    """S = [[1, a, b], [c, 1, d], [e, f, 1]] with a..f = 2 * draws - 1, so ~ U(-1, 1)."""
    a_to_f = 2.0 * draws - 1.0
    return jnp.eye(3, dtype=jnp.float32) + jnp.sum(a_to_f[:, None, None] * _OFF_DIAGONAL_BASIS, 0)


def _map_joints(clip, maps):
    """out[t, m, v] = clip[t, m, v] @ maps[v] (xyz as a row vector, one 3x3 map per joint)."""
    # Written out as three multiply-adds. Unlike a matmul it is not rounded to bfloat16/TF32 by
    # default TPU/GPU precision, so an identity map leaves a joint bit-exact on every backend;
    # unlike a sum over a size-3 axis it fuses into one loop (about 10x faster on CPU).
    return clip[..., 0:1] * maps[:, 0] + clip[..., 1:2] * maps[:, 1] + clip[..., 2:3] * maps[:, 2]


def _shear_maps(draws, num_joints):
    # p -> S p is the row-vector map p -> p S^T, the same for every joint.
    return jnp.broadcast_to(_shear_matrix(draws).T, (num_joints, 3, 3))


def _corruption_draws(num_joints):
    if num_joints < NUM_CORRUPTED_JOINTS:
        raise ValueError(
            f"joint corruption needs at least {NUM_CORRUPTED_JOINTS} joints, got {num_joints}")
    return 1 + 9 + num_joints  # branch, R, one score per joint


def _corruption_maps(draws, num_joints):
    zero_them, matrix, scores = draws[0] < 0.5, 2.0 * draws[1:10] - 1.0, draws[10:]
    # The joints with the NUM_CORRUPTED_JOINTS lowest of the i.i.d. scores are a uniformly random
    # subset of that size. Compared, not scattered, to stay valid under explicit batch sharding.
    chosen = jnp.argsort(scores)[:NUM_CORRUPTED_JOINTS]
    is_chosen = jnp.any(jnp.arange(num_joints)[:, None] == chosen, axis=1)
    # Zeroing is the zero map, which sends every finite point to exactly 0.
    matrix = jnp.where(zero_them, 0.0, matrix).reshape(3, 3)
    return jnp.where(is_chosen[:, None, None], matrix, jnp.eye(3, dtype=jnp.float32))


def shear(key, clip):
    """Shears every xyz point of one clip: p -> S p, S = [[1, a, b], [c, 1, d], [e, f, 1]].

    a..f ~ U(-1, 1), one S for the whole clip.

    Args:
        key: typed PRNG key.
        clip: float32 (T, M, V, 3).

    Returns:
        float32 (T, M, V, 3).

    Raises:
        ValueError: on a bad layout or dtype.
    """
    _check_clip(clip, "clip", 4)
    return _map_joints(clip, _shear_maps(jax.random.uniform(key, (_SHEAR_DRAWS,)), clip.shape[2]))


def joint_corruption(key, clip):
    """ISC joint corruption of one clip.

    Picks NUM_CORRUPTED_JOINTS joints without replacement. With probability 0.5 they are zeroed
    in all frames and for all persons; otherwise their points become p^T R, with R 3x3 and
    entries ~ U(-1, 1), one R for all of them. Coordinates are assumed finite.

    Args:
        key: typed PRNG key.
        clip: float32 (T, M, V, 3) with V >= NUM_CORRUPTED_JOINTS.

    Returns:
        float32 (T, M, V, 3).

    Raises:
        ValueError: on a bad layout/dtype or too few joints.
    """
    _check_clip(clip, "clip", 4)
    num_joints = clip.shape[2]
    draws = jax.random.uniform(key, (_corruption_draws(num_joints),))
    return _map_joints(clip, _corruption_maps(draws, num_joints))


def spatial_augment(key, clip):
    """With probability 0.5 `shear`, otherwise `joint_corruption` (method.md §3 step 2).

    Both augmentations are per-joint linear maps, so the branch is chosen between their 3x3
    maps and the clip is transformed once.

    Args:
        key: typed PRNG key.
        clip: float32 (T, M, V, 3) with V >= NUM_CORRUPTED_JOINTS.

    Returns:
        float32 (T, M, V, 3).

    Raises:
        ValueError: on a bad layout/dtype or too few joints.
    """
    _check_clip(clip, "clip", 4)
    num_joints = clip.shape[2]
    draws = jax.random.uniform(key, (1 + _SHEAR_DRAWS + _corruption_draws(num_joints),))
    shear_draws, corruption_draws = draws[1:1 + _SHEAR_DRAWS], draws[1 + _SHEAR_DRAWS:]
    maps = jnp.where(draws[0] < 0.5, _shear_maps(shear_draws, num_joints),
                     _corruption_maps(corruption_draws, num_joints))
    return _map_joints(clip, maps)


def pretrain_view(key, skeleton, num_frames, out_frames=CLIP_FRAMES):
    """One pretraining view: crop-resize with scale U(0.1, 1), then `spatial_augment`.

    Args:
        key: typed PRNG key of the sample and view.
        skeleton: float32 (T, M, V, 3).
        num_frames: int scalar, 1 <= num_frames <= T.

    Returns:
        float32 (out_frames, M, V, 3).
    """
    crop_key, spatial_key = jax.random.split(key)
    clip = temporal_crop_resize(crop_key, skeleton, num_frames,
                                min_scale=PRETRAIN_SCALE[0], max_scale=PRETRAIN_SCALE[1],
                                out_frames=out_frames)
    return spatial_augment(spatial_key, clip)


def downstream_train_view(key, skeleton, num_frames, out_frames=CLIP_FRAMES):
    """Downstream training view: crop-resize with scale U(0.5, 1), no spatial augmentation.

    Args:
        key: typed PRNG key of the sample.
        skeleton: float32 (T, M, V, 3).
        num_frames: int scalar, 1 <= num_frames <= T.

    Returns:
        float32 (out_frames, M, V, 3).
    """
    return temporal_crop_resize(key, skeleton, num_frames, min_scale=DOWNSTREAM_TRAIN_SCALE[0],
                                max_scale=DOWNSTREAM_TRAIN_SCALE[1], out_frames=out_frames)


def downstream_test_view(skeleton, num_frames, out_frames=CLIP_FRAMES):
    """Downstream test view: the deterministic centre crop resized to 64 frames.

    Args:
        skeleton: float32 (T, M, V, 3).
        num_frames: int scalar, 1 <= num_frames <= T.

    Returns:
        float32 (out_frames, M, V, 3).
    """
    return center_crop_resize(skeleton, num_frames, out_frames)


def _check_batch(keys, skeleton, num_frames):
    _check_clip(skeleton, "skeleton", 5)
    batch = skeleton.shape[:1]
    if keys is not None:
        _check_keys(keys, batch)
    return _check_frame_count(num_frames, batch)


def pretrain_views(keys, skeleton, num_frames, out_frames=CLIP_FRAMES):
    """Batched `pretrain_view`.

    Args:
        keys: (N,) typed PRNG keys, one per sample (see `sample_keys`).
        skeleton: float32 (N, T, M, V, 3).
        num_frames: int (N,), 1 <= num_frames <= T.

    Returns:
        float32 (N, out_frames, M, V, 3).

    Raises:
        ValueError: if the shapes or dtypes of the arguments do not agree.
    """
    num_frames = _check_batch(keys, skeleton, num_frames)
    return jax.vmap(functools.partial(pretrain_view, out_frames=out_frames))(
        keys, skeleton, num_frames)


def two_views(keys, skeleton, num_frames, out_frames=CLIP_FRAMES):
    """The two independent pretraining views of each sample, from fold_in(key, 0) and (key, 1).

    Args:
        keys: (N,) typed PRNG keys, one per sample (see `sample_keys`).
        skeleton: float32 (N, T, M, V, 3).
        num_frames: int (N,), 1 <= num_frames <= T.

    Returns:
        (view1, view2), each float32 (N, out_frames, M, V, 3).

    Raises:
        ValueError: if the shapes or dtypes of the arguments do not agree.
    """
    num_frames = _check_batch(keys, skeleton, num_frames)
    fold = jax.vmap(jax.random.fold_in, in_axes=(0, None))
    return (pretrain_views(fold(keys, 0), skeleton, num_frames, out_frames),
            pretrain_views(fold(keys, 1), skeleton, num_frames, out_frames))


def downstream_train_views(keys, skeleton, num_frames, out_frames=CLIP_FRAMES):
    """Batched `downstream_train_view`.

    Args:
        keys: (N,) typed PRNG keys, one per sample (see `sample_keys`).
        skeleton: float32 (N, T, M, V, 3).
        num_frames: int (N,), 1 <= num_frames <= T.

    Returns:
        float32 (N, out_frames, M, V, 3).

    Raises:
        ValueError: if the shapes or dtypes of the arguments do not agree.
    """
    num_frames = _check_batch(keys, skeleton, num_frames)
    return jax.vmap(functools.partial(downstream_train_view, out_frames=out_frames))(
        keys, skeleton, num_frames)


def downstream_test_views(skeleton, num_frames, out_frames=CLIP_FRAMES):
    """Batched `downstream_test_view`.

    Args:
        skeleton: float32 (N, T, M, V, 3).
        num_frames: int (N,), 1 <= num_frames <= T.

    Returns:
        float32 (N, out_frames, M, V, 3).

    Raises:
        ValueError: if the shapes or dtypes of the arguments do not agree.
    """
    num_frames = _check_batch(None, skeleton, num_frames)
    return jax.vmap(functools.partial(downstream_test_view, out_frames=out_frames))(
        skeleton, num_frames)
