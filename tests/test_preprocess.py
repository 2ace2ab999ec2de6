"""Tests for the 2s-AGCN/ISC preprocessing, against tests/reference_preprocess.py and by hand."""

import numpy as np
import pytest

from skel_jax.data import preprocess as pp
from skel_jax.data.ntu_skeleton import RawSkeleton, parse_skeleton
from tests import reference_preprocess as ref
from tests.skeleton_text import frames_from_slots, plausible_bodies, skeleton_text


def _raw(bodies, present=None):
    """RawSkeleton holding (S <= 4, T, 25, 3) slots, zeroed where `present` is False."""
    num_slots, num_frames = bodies.shape[:2]
    present = np.ones((num_slots, num_frames), bool) if present is None else present
    slots = np.zeros((4, num_frames, 25, 3), np.float32)
    slots[:num_slots] = np.where(present[..., None, None], bodies, 0)
    return RawSkeleton(num_frames=num_frames, bodies=slots,
                       body_counts=present.sum(0).astype(np.int32))


def _check_against_reference(raw):
    out, num_frames = pp.preprocess_ntu(raw)
    assert out.dtype == np.float32
    assert out.shape == (min(raw.num_frames, 300), 2, 25, 3)
    assert num_frames == out.shape[0]
    expected = ref.reference_preprocess_ntu(raw.bodies[:, :300].astype(np.float64))
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-4)
    return out


def _bodies(num_bodies, num_frames, seed):
    return plausible_bodies(np.random.default_rng(seed), num_bodies, num_frames)


# --- against the reference ----------------------------------------------------------------------

def test_reference_random_bodies():
    out = _check_against_reference(_raw(_bodies(2, 40, 0)))
    assert np.abs(out).max() > 0.1


def test_reference_empty_first_frames():
    present = np.ones((2, 30), bool)
    present[:, :6] = False
    _check_against_reference(_raw(_bodies(2, 30, 1), present))


def test_reference_one_body_absent_at_first():
    present = np.ones((2, 30), bool)
    present[1, :11] = False
    _check_against_reference(_raw(_bodies(2, 30, 2), present))


def test_reference_internal_gaps():
    present = np.ones((2, 30), bool)
    present[0, 10:13] = False
    present[1, [0, 4, 5, 20]] = False
    present[1, 25:] = False
    _check_against_reference(_raw(_bodies(2, 30, 3), present))


def test_reference_five_bodies_through_the_reader():
    bodies = _bodies(5, 20, 4)
    bodies[4] += np.linspace(0, 3, 20)[:, None, None]  # the most energetic, listed 5th: dropped
    bodies[2] += np.linspace(0, 1, 20)[:, None, None]
    raw = parse_skeleton(skeleton_text(frames_from_slots(bodies, np.ones((5, 20), bool))), "x")
    _check_against_reference(raw)
    # Slot 2 moves most among the four kept slots, so it becomes person 0.
    np.testing.assert_array_equal(pp.select_bodies(raw.bodies)[0], raw.bodies[2])


def test_reference_equal_energies():
    body = _bodies(1, 20, 5)[0]
    # Mirroring x leaves every std bit-identical, so slots 1 and 2 tie exactly; slot 0 moves less.
    raw = _raw(np.stack([body * 0.5, body, body * [-1, 1, 1]]))
    _check_against_reference(raw)
    np.testing.assert_array_equal(pp.select_bodies(raw.bodies), raw.bodies[[1, 2]])


def test_reference_empty_sample():
    raw = _raw(np.zeros((1, 12, 25, 3)))
    out = _check_against_reference(raw)
    assert not out.any()


def test_reference_person_one_empty():
    out = _check_against_reference(_raw(_bodies(1, 25, 6)))
    assert not out[:, 1].any()


def test_reference_more_than_300_frames():
    raw = _raw(_bodies(2, 310, 7))
    out = _check_against_reference(raw)
    assert out.shape[0] == 300
    short, num_frames = pp.preprocess_ntu(raw, max_frames=50)
    assert num_frames == 50
    np.testing.assert_allclose(
        short, ref.reference_preprocess_ntu(raw.bodies[:, :50].astype(np.float64)), atol=1e-4)


def test_zero_frame_file():
    out, num_frames = pp.preprocess_ntu(parse_skeleton(b"0\n", "x"))
    assert out.shape == (0, 2, 25, 3) and out.dtype == np.float32 and num_frames == 0


# --- energy and selection -----------------------------------------------------------------------

def test_body_energy_by_hand():
    body = np.zeros((4, 25, 3))
    body[1] = 1.0
    body[3] = 2.0
    body[3, 0] = (2.0, 5.0, -1.0)
    kept = body[[1, 3]].reshape(-1, 3)
    expected = sum(np.sqrt(np.mean((kept[:, c] - kept[:, c].mean()) ** 2)) for c in range(3))
    assert pp.body_energy(body) == pytest.approx(expected, rel=1e-12)
    assert pp.body_energy(np.zeros((5, 25, 3))) == 0.0
    assert pp.body_energy(np.zeros((0, 25, 3))) == 0.0


def test_select_bodies_order_and_ties():
    still = np.ones((6, 25, 3))
    moving = still * np.arange(1, 7)[:, None, None]
    bodies = np.stack([np.zeros_like(still), still, moving, still])
    selected = pp.select_bodies(bodies, num_keep=3)
    assert selected.dtype == np.float32 and selected.shape == (3, 6, 25, 3)
    # moving first; then the zero-energy tie between slots 0, 1 and 3 keeps slot order.
    np.testing.assert_array_equal(selected, bodies[[2, 0, 1]])


@pytest.mark.parametrize("bodies, num_keep, message", [
    (np.zeros((4, 5, 24, 3)), 2, r"bodies must have shape \(B, T, 25, 3\), got \(4, 5, 24, 3\)"),
    (np.zeros((1, 5, 25, 3)), 2, "cannot keep 2 bodies out of 1"),
    (np.full((2, 5, 25, 3), np.nan), 2, "NaN or infinite"),
])
def test_select_bodies_errors(bodies, num_keep, message):
    with pytest.raises(ValueError, match=message):
        pp.select_bodies(bodies, num_keep)


def test_body_energy_shape_error():
    with pytest.raises(ValueError, match=r"body must have shape \(T, 25, 3\), got \(5, 25\)"):
        pp.body_energy(np.zeros((5, 25)))


# --- step A (data.md §2.4 hand-worked examples) --------------------------------------------------

def _marked(num_frames, valid):
    """Person 0 whose frame t holds the value t + 1 where valid."""
    x = np.zeros((num_frames, 2, 25, 3))
    for t in valid:
        x[t, 0] = t + 1
    return x


def test_pad_compacts_then_loops():
    out = pp.pad_null_frames(_marked(10, range(2, 7)))
    np.testing.assert_array_equal(out[:, 0, 0, 0], [3, 4, 5, 6, 7, 3, 4, 5, 6, 7])
    assert not out[:, 1].any()


def test_pad_keeps_internal_gaps_when_frame_0_is_valid():
    out = pp.pad_null_frames(_marked(8, [0, 1, 3, 4]))
    np.testing.assert_array_equal(out[:, 0, 0, 0], [1, 2, 0, 4, 5, 1, 2, 0])


def test_pad_leaves_full_and_empty_persons():
    x = _marked(4, range(4))
    np.testing.assert_array_equal(pp.pad_null_frames(x), x)


# --- step B -----------------------------------------------------------------------------------

def test_centre_on_spine_by_hand():
    x = np.zeros((2, 2, 25, 3))
    x[0, 0] = np.arange(75).reshape(25, 3) + 1.0
    x[0, 0, 7] = 0.0  # an empty joint stays empty
    x[:, 1] = 10.0  # person 1 is present in frame 1, where person 0 is not
    out = pp.centre_on_spine(x)
    np.testing.assert_array_equal(out[0, 0], np.where(x[0, 0] != 0, x[0, 0] - x[0, 0, 1], 0))
    np.testing.assert_array_equal(out[0, 1], np.broadcast_to(10.0 - x[0, 0, 1], (25, 3)))
    np.testing.assert_array_equal(out[1, 1], 10.0)
    assert not out[1, 0].any()


# --- rotations ----------------------------------------------------------------------------------

def test_angle_between():
    assert pp.angle_between([1, 0, 0], [0, 2, 0]) == pytest.approx(np.pi / 2)
    assert pp.angle_between([1, 1, 0], [-3, -3, 0]) == pytest.approx(np.pi)
    assert pp.angle_between([1e-7, 0, 0], [0, 1, 0]) == 0.0
    # Rounding can push the cosine of parallel vectors past 1; the clip keeps this finite.
    assert pp.angle_between([0.1, 0.2, 0.3], [0.1, 0.2, 0.3]) == pytest.approx(0.0, abs=1e-7)


def test_rotation_matrix_maps_vector_to_target():
    rng = np.random.default_rng(8)
    for _ in range(20):
        v = rng.normal(size=3)
        target = rng.normal(size=3)
        matrix = pp.rotation_matrix(np.cross(v, target), pp.angle_between(v, target))
        np.testing.assert_allclose(matrix @ matrix.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(matrix) == pytest.approx(1.0)
        np.testing.assert_allclose(matrix @ v / np.linalg.norm(v),
                                   target / np.linalg.norm(target), atol=1e-12)


def test_rotation_matrix_quarter_turn_about_z():
    np.testing.assert_allclose(pp.rotation_matrix([0, 0, 5], np.pi / 2),
                               [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-15)


@pytest.mark.parametrize("axis, angle", [([1e-7, 0, 0], 1.0), ([0, 1, 0], 1e-7),
                                         ([0, 0, 0], 0.0)])
def test_rotation_matrix_identity_cases(axis, angle):
    np.testing.assert_array_equal(pp.rotation_matrix(axis, angle), np.eye(3))


def test_align_bone_puts_spine_on_z():
    x = np.zeros((3, 2, 25, 3))
    x[:2] = _bodies(2, 2, 9).transpose(1, 0, 2, 3)
    out = pp.align_bone(x, pp.SPINE_BONE, np.array([0.0, 0.0, 1.0]))
    spine = out[0, 0, 1] - out[0, 0, 0]
    np.testing.assert_allclose(spine[:2], 0, atol=1e-12)
    assert spine[2] > 0
    np.testing.assert_allclose(np.linalg.norm(out, axis=-1), np.linalg.norm(x, axis=-1))
    assert not out[2].any()


def test_pre_normalize_geometry():
    x = _bodies(2, 10, 10).transpose(1, 0, 2, 3)
    out = pp.pre_normalize(x)
    assert out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_array_equal(out[:, 0, 1], 0)  # centred on person 0's SpineMid
    shoulders = out[0, 0, 8] - out[0, 0, 4]
    np.testing.assert_allclose(shoulders[1:], 0, atol=1e-6)
    assert shoulders[0] > 0
    # A near-upright person stays near-upright: the spine is close to +z after step D.
    spine = out[0, 0, 1] - out[0, 0, 0]
    assert spine[2] / np.linalg.norm(spine) > 0.95


@pytest.mark.parametrize("function", [pp.pre_normalize, pp.pad_null_frames, pp.centre_on_spine])
def test_sample_shape_error(function):
    with pytest.raises(ValueError, match=r"x must have shape \(T, M, 25, 3\) with M >= 1, got "
                                         r"\(5, 2, 25\)"):
        function(np.zeros((5, 2, 25)))


def test_align_bone_needs_a_frame():
    with pytest.raises(ValueError, match="x has no frames"):
        pp.align_bone(np.zeros((0, 2, 25, 3)), pp.SPINE_BONE, np.array([0.0, 0.0, 1.0]))


def test_preprocess_ntu_max_frames_error():
    with pytest.raises(ValueError, match="max_frames must be >= 1, got 0"):
        pp.preprocess_ntu(_raw(_bodies(1, 3, 11)), max_frames=0)
