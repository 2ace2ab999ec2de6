"""ISC augmentations against NumPy float64 references, hand-worked cases and binomial bounds."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from skel_jax import augment

T_MAX = 300
FRAME_COUNTS = (1, 30, 63, 64, 65, 200, T_MAX)
BATCH = 16
BATCH_FRAMES = np.resize(np.array(FRAME_COUNTS, np.int32), BATCH)

# Compiled once and shared, so that the tests stay fast on a small CPU.
two_views = jax.jit(augment.two_views)
downstream_train_views = jax.jit(augment.downstream_train_views)
downstream_test_views = jax.jit(augment.downstream_test_views)


def _skeletons(n, frames=T_MAX, seed=0):
    return np.random.default_rng(seed).normal(size=(n, frames, 2, 25, 3)).astype(np.float32)


def _keys(n, seed=0):
    return jax.random.split(jax.random.key(seed), n)


def _binomial_ok(successes, trials, p=0.5, sigmas=5.0):
    return abs(successes - trials * p) <= sigmas * np.sqrt(trials * p * (1 - p))


def _reference_resize(crop, out_frames=64):
    """float64 half-pixel linear resize of the time axis, per channel with np.interp."""
    crop = np.asarray(crop, np.float64)
    length = crop.shape[0]
    position = np.clip((np.arange(out_frames) + 0.5) * length / out_frames - 0.5, 0, length - 1)
    flat = crop.reshape(length, -1)
    columns = [np.interp(position, np.arange(length), flat[:, j]) for j in range(flat.shape[1])]
    return np.stack(columns, axis=1).reshape((out_frames,) + crop.shape[1:])


def _changed_joints(before, after):
    return np.any(np.asarray(before) != np.asarray(after), axis=(0, 1, 3))


# --- shapes, dtypes, compilation -------------------------------------------------------------


def test_batched_views_have_model_shape_and_float32():
    skeleton = _skeletons(BATCH)
    keys = _keys(BATCH)
    view1, view2 = two_views(keys, skeleton, BATCH_FRAMES)
    outputs = (view1, view2, downstream_train_views(keys, skeleton, BATCH_FRAMES),
               downstream_test_views(skeleton, BATCH_FRAMES))
    for out in outputs:
        assert out.shape == (BATCH, 64, 2, 25, 3)
        assert out.dtype == jnp.float32


def test_jit_matches_eager_and_two_views_use_keys_folded_with_0_and_1():
    skeleton = _skeletons(BATCH)
    keys = _keys(BATCH, seed=3)
    rows = slice(3, 7)  # eager runs op by op; a few rows keep it quick
    jitted = two_views(keys, skeleton, BATCH_FRAMES)
    for view in (0, 1):
        view_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys[rows], view)
        eager = augment.pretrain_views(view_keys, skeleton[rows], BATCH_FRAMES[rows])
        assert eager.dtype == jnp.float32
        np.testing.assert_allclose(eager, jitted[view][rows], rtol=1e-6, atol=1e-6)
    assert not np.allclose(jitted[0], jitted[1])


# --- temporal crop ---------------------------------------------------------------------------


def test_crop_length_hand_worked_cases():
    cases = [(300, 0.1, 64), (300, 0.5, 150), (300, 1.0, 300), (50, 0.9, 50), (64, 0.25, 64),
             (100, 0.5, 64), (1, 0.1, 1)]
    for num_frames, scale, expected in cases:
        assert int(augment.crop_length(num_frames, scale)) == expected


def test_crop_length_matches_numpy_on_a_grid():
    # Dyadic scales keep num_frames * scale exact in float32, so floor agrees with float64.
    num_frames = np.arange(1, T_MAX + 1)[:, None]
    scales = (np.arange(6, 65) / 64.0)[None, :]
    expected = np.minimum(np.maximum(np.floor(num_frames * scales), 64), num_frames)
    got = augment.crop_length(jnp.asarray(num_frames, jnp.int32), jnp.asarray(scales, jnp.float32))
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == jnp.int32


@functools.partial(jax.jit, static_argnames=("min_scale", "max_scale"))
def _sample_windows(keys, num_frames, *, min_scale, max_scale):
    return jax.vmap(lambda key: augment.crop_window(
        key, num_frames, min_scale=min_scale, max_scale=max_scale))(keys)


def _windows(num_frames, scale_range, n=4000):
    start, length = _sample_windows(_keys(n, seed=7), np.int32(num_frames),
                                    min_scale=scale_range[0], max_scale=scale_range[1])
    return np.asarray(start), np.asarray(length)


def test_pretrain_crop_window_distribution():
    num_frames = T_MAX
    start, length = _windows(num_frames, augment.PRETRAIN_SCALE)
    assert length.min() == 64 and length.max() <= num_frames
    assert np.all(start >= 0) and np.all(start + length <= num_frames)
    # length == 64 exactly when floor(300 s) <= 64, i.e. s < 65/300, with s ~ U(0.1, 1).
    p_min = (65 / 300 - 0.1) / 0.9
    assert _binomial_ok(np.sum(length == 64), len(length), p_min)
    grid = np.linspace(0.1, 1.0, 1_000_001)[:-1]
    mean_length = np.mean(np.maximum(np.floor(num_frames * grid), 64))
    assert abs(length.mean() - mean_length) < 5 * length.std() / np.sqrt(len(length))
    # Given the length, start is uniform on {0 .. num_frames - length}; its relative position
    # (start + 0.5) / (slots) is then uniform on (0, 1) up to discretisation.
    slots = num_frames - length + 1
    relative = (start + 0.5) / slots
    assert abs(relative.mean() - 0.5) < 5 * np.sqrt(1 / 12 / len(relative))
    assert np.any(start == 0) and np.any(start == num_frames - length)


def test_downstream_train_crop_window_bounds():
    start, length = _windows(T_MAX, augment.DOWNSTREAM_TRAIN_SCALE)
    assert length.min() >= 150 and length.max() <= T_MAX
    assert np.all(start >= 0) and np.all(start + length <= T_MAX)


@pytest.mark.parametrize("num_frames", [1, 30, 63, 64])
def test_short_clips_are_taken_whole(num_frames):
    start, length = _windows(num_frames, augment.PRETRAIN_SCALE)
    np.testing.assert_array_equal(start, 0)
    np.testing.assert_array_equal(length, num_frames)


def test_temporal_crop_resize_matches_numpy_reference():
    skeleton = _skeletons(1)[0]
    for i, num_frames in enumerate(FRAME_COUNTS):
        for scale_range in (augment.PRETRAIN_SCALE, augment.DOWNSTREAM_TRAIN_SCALE):
            key = jax.random.key(100 + i)
            start, length = (int(v) for v in augment.crop_window(
                key, num_frames, min_scale=scale_range[0], max_scale=scale_range[1]))
            got = augment.temporal_crop_resize(key, skeleton, num_frames,
                                               min_scale=scale_range[0], max_scale=scale_range[1])
            expected = _reference_resize(skeleton[start:start + length])
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_downstream_train_views_are_plain_crops_with_scale_one_half_to_one():
    skeleton = _skeletons(BATCH, seed=2)
    keys = _keys(BATCH, seed=4)
    got = downstream_train_views(keys, skeleton, BATCH_FRAMES)
    for row, count in enumerate(BATCH_FRAMES):
        start, length = (int(v) for v in augment.crop_window(
            keys[row], count, min_scale=0.5, max_scale=1.0))
        expected = _reference_resize(skeleton[row, start:start + length])
        np.testing.assert_allclose(got[row], expected, rtol=1e-5, atol=1e-5)


def test_resize_hand_worked_upsample_of_two_frames():
    a, b = 2.0, 10.0
    skeleton = np.zeros((3, 1, 1, 3), np.float32)
    skeleton[1], skeleton[2] = a, b
    got = augment.resize_window(skeleton, augment.CropWindow(jnp.int32(1), jnp.int32(2)), 4)
    # Source positions -0.25, 0.25, 0.75, 1.25 clamp to 0, 0.25, 0.75, 1.
    expected = [a, 0.75 * a + 0.25 * b, 0.25 * a + 0.75 * b, b]
    np.testing.assert_allclose(got[:, 0, 0, 0], expected, rtol=1e-6)


def test_resize_of_64_frames_is_the_identity():
    skeleton = _skeletons(1, frames=70)[0]
    got = augment.resize_window(skeleton, augment.CropWindow(jnp.int32(5), jnp.int32(64)))
    np.testing.assert_array_equal(got, skeleton[5:69])


def test_resize_agrees_with_jax_image_resize_without_antialiasing():
    # jax.image.resize with antialias=False is torch's bilinear align_corners=False resize.
    skeleton = _skeletons(1)[0]
    got = augment.resize_window(skeleton, augment.CropWindow(jnp.int32(10), jnp.int32(173)))
    expected = jax.image.resize(skeleton[10:183], (64, 2, 25, 3), "linear", antialias=False)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_crops_never_read_frames_at_or_past_num_frames():
    skeleton = _skeletons(BATCH)
    valid_max = np.abs(skeleton).max()
    for seed, poison in enumerate((np.nan, 1e30, -np.inf)):
        poisoned = skeleton.copy()
        for row, count in enumerate(BATCH_FRAMES):
            poisoned[row, count:] = poison
        keys = _keys(BATCH, seed=11 + seed)
        crops = (downstream_train_views(keys, poisoned, BATCH_FRAMES),
                 downstream_test_views(poisoned, BATCH_FRAMES))
        for out in crops:
            assert np.all(np.isfinite(out)) and np.abs(out).max() <= valid_max * (1 + 1e-6)
        for view in two_views(keys, poisoned, BATCH_FRAMES):
            # Shear and corruption matrix entries are within [-1, 1]: |S p|, |p R| <= 3 max|p|.
            assert np.all(np.isfinite(view)) and np.abs(view).max() <= 3 * valid_max


# --- centre crop -----------------------------------------------------------------------------


def test_center_window_matches_the_original_expression():
    for num_frames in range(1, 3001):
        start, length = (int(v) for v in augment.center_window(num_frames))
        assert start == int((1 - 0.95) * num_frames / 2) == int(np.floor(0.025 * num_frames))
        assert length == num_frames - 2 * start


def test_center_crop_resize_matches_numpy_reference_and_is_deterministic():
    skeleton = _skeletons(BATCH, seed=1)
    got = downstream_test_views(skeleton, BATCH_FRAMES)
    np.testing.assert_array_equal(got, downstream_test_views(skeleton, BATCH_FRAMES))
    for row, count in enumerate(FRAME_COUNTS):
        start = int(np.floor(0.025 * count))
        expected = _reference_resize(skeleton[row, start:count - start])
        np.testing.assert_allclose(got[row], expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(augment.center_crop_resize(skeleton[row], count), expected,
                                   rtol=1e-5, atol=1e-5)


# --- spatial augmentations -------------------------------------------------------------------


def _assert_uniform_on_minus_one_to_one(values):
    assert np.abs(values).max() <= 1 + 1e-5
    assert values.min() < -0.95 and values.max() > 0.95
    # U(-1, 1): mean 0 (sd 1/sqrt(3n)), variance 1/3 (sd sqrt(4/45/n) < 0.006 for n >= 1800).
    assert abs(values.mean()) < 5 * np.sqrt(1 / 3 / values.size)
    assert abs(values.var() - 1 / 3) < 5 * np.sqrt(4 / 45 / values.size)


def _clip(seed=0, frames=2):
    return _skeletons(1, frames=frames, seed=seed)[0]


def test_shear_is_linear_with_unit_diagonal_and_uniform_off_diagonals():
    clip = _clip()
    n = 300
    outputs = np.asarray(jax.jit(jax.vmap(augment.shear, in_axes=(0, None)))(_keys(n), clip))
    points = clip.reshape(-1, 3).astype(np.float64)
    off_diagonal = []
    for out in outputs:
        solution, residual, _, _ = np.linalg.lstsq(points, out.reshape(-1, 3), rcond=None)
        matrix = solution.T  # out = points @ S^T
        assert residual.max() < 1e-8
        np.testing.assert_allclose(np.diag(matrix), 1.0, atol=1e-5)
        off_diagonal.append(matrix[~np.eye(3, dtype=bool)])
    _assert_uniform_on_minus_one_to_one(np.concatenate(off_diagonal))


def test_joint_corruption_changes_exactly_15_joints_with_either_branch():
    clip = _clip(seed=1)
    n = 1000
    outputs = np.asarray(
        jax.jit(jax.vmap(augment.joint_corruption, in_axes=(0, None)))(_keys(n, seed=2), clip))
    zeroed = 0
    selection_counts = np.zeros(25)
    entries = []
    for out in outputs:
        changed = _changed_joints(clip, out)
        assert changed.sum() == 15
        np.testing.assert_array_equal(out[:, :, ~changed], clip[:, :, ~changed])
        selection_counts += changed
        corrupted = out[:, :, changed]
        if np.all(corrupted == 0):
            zeroed += 1
            continue
        # One R for all chosen joints, frames and persons: rows p -> p R exactly.
        points = clip[:, :, changed].reshape(-1, 3).astype(np.float64)
        matrix, residual, _, _ = np.linalg.lstsq(points, corrupted.reshape(-1, 3), rcond=None)
        assert residual.max() < 1e-8
        entries.append(matrix.ravel())
    _assert_uniform_on_minus_one_to_one(np.concatenate(entries))
    assert _binomial_ok(zeroed, n)
    selection_rate = selection_counts / n
    assert np.all(np.abs(selection_rate - 0.6) < 5 * np.sqrt(0.6 * 0.4 / n))


def test_spatial_augment_picks_shear_or_corruption_half_the_time():
    clip = _clip(seed=4)
    n = 2000
    outputs = jax.jit(jax.vmap(augment.spatial_augment, in_axes=(0, None)))(_keys(n, seed=5), clip)
    changed = np.any(np.asarray(outputs) != clip, axis=(1, 2, 4)).sum(axis=1)
    assert set(np.unique(changed)) == {15, 25}  # corruption touches 15 joints, shear all 25
    assert _binomial_ok(np.sum(changed == 25), n)


def test_pretrain_view_is_crop_then_spatial_augmentation():
    skeleton = _skeletons(1)[0]

    @jax.jit
    def view_and_parts(key):
        crop_key, spatial_key = jax.random.split(key)
        crop = augment.temporal_crop_resize(crop_key, skeleton, 200, min_scale=0.1,
                                            max_scale=1.0)
        return (augment.pretrain_view(key, skeleton, 200), crop,
                augment.spatial_augment(spatial_key, crop))

    view, crop, augmented_crop = view_and_parts(jax.random.key(9))
    np.testing.assert_array_equal(view, augmented_crop)
    assert _changed_joints(crop, view).sum() in (15, 25)


# --- keys and device independence ------------------------------------------------------------


def test_sample_keys_are_distinct_and_depend_only_on_the_global_index():
    seed = jax.random.key(0)
    index = np.arange(64, dtype=np.int32)
    all_keys = np.concatenate([jax.random.key_data(augment.sample_keys(seed, step, index))
                               for step in range(3)])
    assert len({tuple(k) for k in all_keys}) == 3 * 64
    whole = jax.random.key_data(augment.sample_keys(seed, 2, index))
    tail = jax.random.key_data(augment.sample_keys(seed, 2, index[40:]))
    np.testing.assert_array_equal(whole[40:], tail)
    other_seed = jax.random.key_data(augment.sample_keys(jax.random.key(1), 2, index))
    assert not np.any(np.all(other_seed == whole, axis=1))


def test_views_do_not_depend_on_how_the_batch_is_split():
    skeleton = _skeletons(BATCH)
    index = np.arange(100, 100 + BATCH, dtype=np.int32)
    seed = jax.random.key(42)
    whole = two_views(augment.sample_keys(seed, 7, index), skeleton, BATCH_FRAMES)
    half = BATCH // 2
    parts = [two_views(augment.sample_keys(seed, 7, index[s]), skeleton[s], BATCH_FRAMES[s])
             for s in (slice(0, half), slice(half, BATCH))]
    for view in range(2):
        np.testing.assert_array_equal(
            whole[view], np.concatenate([parts[0][view], parts[1][view]]))


def test_views_match_when_the_batch_is_sharded_over_8_devices():
    assert jax.device_count() == 8
    mesh = jax.make_mesh((8,), ("data",))
    skeleton = _skeletons(BATCH)
    index = np.arange(BATCH, dtype=np.int32)
    seed = jax.random.key(3)

    def step_views(step, index, skeleton, num_frames):
        return augment.two_views(augment.sample_keys(seed, step, index), skeleton, num_frames)

    reference = two_views(augment.sample_keys(seed, 5, index), skeleton, BATCH_FRAMES)
    data = NamedSharding(mesh, P("data"))
    sharded_args = [jax.device_put(a, data) for a in (index, skeleton, BATCH_FRAMES)]
    step = jnp.int32(5)  # traced, as in the training step
    # Plain jit on sharded inputs (no mesh set), and per-device work under shard_map.
    sharded = jax.jit(step_views)(step, *sharded_args)
    per_device = jax.jit(jax.shard_map(
        step_views, mesh=mesh, in_specs=(P(), P("data"), P("data"), P("data")),
        out_specs=P("data")))(step, *sharded_args)
    for view in range(2):
        np.testing.assert_array_equal(sharded[view], reference[view])
        np.testing.assert_array_equal(per_device[view], reference[view])


# --- error paths -----------------------------------------------------------------------------


def test_errors_name_the_problem():
    skeleton = _skeletons(2, frames=70)
    num_frames = np.array([10, 70], np.int32)
    keys = _keys(2)
    with pytest.raises(ValueError, match=r"layout \(N, T, M, V, 3\)"):
        augment.pretrain_views(keys, skeleton[..., :2], num_frames)
    with pytest.raises(ValueError, match=r"layout \(T, M, V, 3\)"):
        augment.shear(jax.random.key(0), skeleton)
    with pytest.raises(ValueError, match="must be float32"):
        augment.downstream_test_views(skeleton.astype(np.float16), num_frames)
    with pytest.raises(ValueError, match=r"num_frames must be an integer array of shape \(2,\)"):
        augment.downstream_test_views(skeleton, num_frames[:1])
    with pytest.raises(ValueError, match="num_frames must be an integer array"):
        augment.downstream_test_views(skeleton, num_frames.astype(np.float32))
    with pytest.raises(ValueError, match=r"typed PRNG keys \(jax.random.key\)"):
        augment.two_views(jax.random.key_data(keys), skeleton, num_frames)
    with pytest.raises(ValueError, match=r"expected keys of shape \(2,\), got \(3,\)"):
        augment.downstream_train_views(_keys(3), skeleton, num_frames)
    with pytest.raises(ValueError, match="0 < min_scale <= max_scale"):
        augment.temporal_crop_resize(keys[0], skeleton[0], 10, min_scale=0.9, max_scale=0.5)
    with pytest.raises(ValueError, match="out_frames must be a positive int"):
        augment.center_crop_resize(skeleton[0], 10, out_frames=0)
    with pytest.raises(ValueError, match="at least 15 joints, got 10"):
        augment.joint_corruption(keys[0], skeleton[0, :, :, :10])
    with pytest.raises(ValueError, match="at least 15 joints, got 10"):
        augment.spatial_augment(keys[0], skeleton[0, :, :, :10])
    with pytest.raises(ValueError, match=r"typed PRNG keys \(jax.random.key\)"):
        augment.sample_keys(jax.random.PRNGKey(0), 0, np.arange(2))
    with pytest.raises(ValueError, match="sample_index must be a 1-D integer array"):
        augment.sample_keys(jax.random.key(0), 0, np.zeros((2, 2), np.int32))
