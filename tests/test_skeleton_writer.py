"""Tests of the NTU and PKU-MMD text writers (data.md §1.3, §3.2, §3.3, §3.5)."""

import re

import numpy as np
import pytest

from skel_jax.data import ntu_skeleton
from skel_jax.data import pku_mmd
from skel_jax.data import skeleton_writer as writer

_SEVEN_DIGITS = re.compile(r"^-?(\d+\.?\d*|\.\d+)(e[+-]\d+)?$")


def _xyz(rng, centre=(0.2, 0.1, 3.0)):
    return np.asarray(centre) + rng.normal(0.0, 0.3, (25, 3))


def _two_frames(rng):
    first = writer.Body(72057594037930147, _xyz(rng))
    second = writer.Body(
        72057594037930200, _xyz(rng, (-0.5, 0.0, 3.5)),
        joint_tracking=np.array([2] * 24 + [1]),
        info=writer.BodyInfo(clipped_edges=8, hand_left_state=3, lean_x=0.02764709,
                             lean_y=-0.05745083, tracking_state=1))
    return [[], [first, second]]


def _significant_digits(token: str) -> int:
    mantissa = token.lstrip("-").split("e")[0].replace(".", "").lstrip("0")
    return len(mantissa)


def test_ntu_text_follows_the_grammar():
    frames = _two_frames(np.random.default_rng(0))
    lines = writer.format_ntu_skeleton(frames).split("\n")
    assert lines[-1] == ""  # The text ends with a line ending.
    lines = lines[:-1]
    assert lines[:3] == ["2", "0", "2"]
    assert len(lines) == 3 + 2 * (2 + 25)
    info = lines[3].split()
    assert info == ["72057594037930147", "0", "1", "2", "1", "2", "0", "0", "0", "2"]
    assert lines[4] == "25"
    second_info = lines[3 + 27].split()
    assert second_info == ["72057594037930200", "8", "1", "3", "1", "2", "0", "0.02764709",
                           "-0.05745083", "1"]
    joint_lines = lines[5:30] + lines[32:57]
    for line in joint_lines:
        fields = line.split(" ")
        assert len(fields) == 12
        assert fields[11] in ("1", "2")
        for token in fields[:11]:
            assert _SEVEN_DIGITS.match(token), token
            assert _significant_digits(token) <= 7, token
    assert lines[56].split()[11] == "1"  # The last joint of the second body is inferred.
    assert lines[5].split()[7:11] == ["1", "0", "0", "0"]  # Default orientation: identity.


def test_ntu_numbers_and_projection_match_real_files():
    xyz = np.tile([0.2181153, -0.1725972, 3.785547], (25, 1))
    line = writer.format_ntu_skeleton([[writer.Body(1, xyz)]]).split("\n")[4]
    fields = line.split()
    assert fields[:3] == ["0.2181153", "-0.1725972", "3.785547"]
    depth = (256.0 + 365.5 * 0.2181153 / 3.785547, 212.0 + 365.5 * 0.1725972 / 3.785547)
    color = (959.5 + 1081.4 * (0.2181153 + 0.052) / 3.785547,
             539.5 + 1081.4 * 0.1725972 / 3.785547)
    np.testing.assert_allclose([float(v) for v in fields[3:7]], depth + color, rtol=1e-6)


def test_projection_geometry():
    on_axis = np.array([0.0, 0.0, 2.0])
    np.testing.assert_allclose(writer.project_to_depth(on_axis), writer.DEPTH_CENTRE_PX)
    left, up = np.array([0.5, 0.0, 2.0]), np.array([0.0, 0.5, 2.0])
    # +x is the sensor's left, which the (mirrored) depth image shows on the right.
    assert writer.project_to_depth(left)[0] > writer.DEPTH_CENTRE_PX[0]
    assert writer.project_to_depth(up)[1] < writer.DEPTH_CENTRE_PX[1]
    assert writer.project_to_color(left)[0] > writer.project_to_color(on_axis)[0]
    # A person 3 m away fits in both images.
    person = np.array([[0.0, 1.0, 3.0], [0.0, -0.9, 3.0], [0.4, 0.0, 3.0], [-0.4, 0.0, 3.0]])
    for pixels, size in ((writer.project_to_depth(person), writer.DEPTH_SIZE),
                         (writer.project_to_color(person), writer.COLOR_SIZE)):
        assert np.all((pixels >= 0) & (pixels < size))


def test_crlf_only_changes_line_endings():
    frames = _two_frames(np.random.default_rng(1))
    lf = writer.format_ntu_skeleton(frames)
    crlf = writer.format_ntu_skeleton(frames, line_ending="\r\n")
    assert crlf.count("\r\n") == lf.count("\n")
    assert "\n" not in crlf.replace("\r\n", "")
    assert crlf.replace("\r\n", "\n") == lf


@pytest.mark.parametrize("line_ending", ["\n", "\r\n"])
def test_ntu_round_trip_through_the_reader(line_ending):
    rng = np.random.default_rng(2)
    frames = _two_frames(rng) + [[writer.Body(5, _xyz(rng))]]
    text = writer.format_ntu_skeleton(frames, line_ending=line_ending)
    raw = ntu_skeleton.parse_skeleton(text.encode("ascii"), "written.skeleton")
    assert raw.num_frames == 3
    np.testing.assert_array_equal(raw.body_counts, [0, 2, 1])
    for f, bodies in enumerate(frames):
        for slot, body in enumerate(bodies):
            np.testing.assert_allclose(raw.bodies[slot, f], body.xyz, atol=1e-6)
    assert not raw.bodies[0, 0].any()


def test_body_orientation_and_tracking_are_written():
    rng = np.random.default_rng(4)
    quaternions = rng.normal(size=(25, 4))
    quaternions /= np.linalg.norm(quaternions, axis=1, keepdims=True)
    body = writer.Body(7, _xyz(rng), orientation=quaternions, joint_tracking=np.full(25, 0))
    lines = writer.format_ntu_skeleton([[body]]).split("\n")[4:29]
    table = np.array([line.split() for line in lines], dtype=float)
    np.testing.assert_allclose(table[:, 7:11], quaternions, atol=1e-6)
    assert np.all(table[:, 11] == 0)


@pytest.mark.parametrize("kwargs, message", [
    ({"body_id": -1}, "body_id"),
    ({"body_id": 2**64}, "body_id"),
    ({"body_id": 1.5}, "body_id"),
    ({"xyz": np.ones((24, 3))}, r"xyz must have shape \(25, 3\)"),
    ({"xyz": np.full((25, 3), np.nan)}, "xyz must be finite"),
    ({"xyz": np.zeros((25, 3))}, "z > 0"),
    ({"orientation": np.ones((25, 3))}, r"orientation must have shape \(25, 4\)"),
    ({"orientation": np.ones((25, 4))}, "unit quaternions"),
    ({"joint_tracking": np.full(25, 3)}, "joint_tracking"),
    ({"joint_tracking": np.full(24, 2)}, "joint_tracking"),
])
def test_body_rejects_bad_fields(kwargs, message):
    fields = {"body_id": 1, "xyz": np.tile([0.0, 0.0, 3.0], (25, 1))} | kwargs
    with pytest.raises(ValueError, match=message):
        writer.Body(**fields)


@pytest.mark.parametrize("kwargs, message", [
    ({"clipped_edges": 16}, "clipped_edges"),
    ({"hand_left_confidence": 2}, "hand_left_confidence"),
    ({"hand_right_state": 5}, "hand_right_state"),
    ({"is_restricted": -1}, "is_restricted"),
    ({"tracking_state": 3}, "tracking_state"),
    ({"lean_x": float("inf")}, "lean must be finite"),
])
def test_body_info_rejects_bad_fields(kwargs, message):
    with pytest.raises(ValueError, match=message):
        writer.BodyInfo(**kwargs)


def test_ntu_writer_rejects_bad_arguments():
    body = writer.Body(1, np.tile([0.0, 0.0, 3.0], (25, 1)))
    with pytest.raises(ValueError, match="line_ending"):
        writer.format_ntu_skeleton([[body]], line_ending="\r")
    with pytest.raises(ValueError, match="frame 1 must be a sequence of Body"):
        writer.format_ntu_skeleton([[body], body])
    with pytest.raises(ValueError, match="frame 0 must be a sequence of Body"):
        writer.format_ntu_skeleton([[np.zeros((25, 3))]])


def test_pku_rows_are_body_major_with_six_decimals():
    rng = np.random.default_rng(5)
    video = rng.normal(0.0, 1.0, (3, 2, 25, 3))
    video[1, 1] = 0.0  # An absent second body.
    text = writer.format_pku_skeleton(video)
    assert "\r" not in text and text.endswith("\n")
    rows = text.split("\n")[:-1]
    assert len(rows) == 3
    assert not rows[0].startswith(" ") and all(row.startswith(" ") for row in rows[1:])
    for f, row in enumerate(rows):
        tokens = row.split()
        assert len(tokens) == 150
        assert all(re.match(r"^-?\d+\.\d{6}$", token) for token in tokens)
        values = np.array(tokens, dtype=float)
        for b, j, c in ((0, 0, 0), (0, 24, 2), (1, 3, 1), (1, 24, 2)):
            assert values[75 * b + 3 * j + c] == pytest.approx(video[f, b, j, c], abs=5e-7)
    assert rows[1].split()[75:] == ["0.000000"] * 75
    np.testing.assert_allclose(np.loadtxt(text.splitlines()), video.reshape(3, 150), atol=5e-7)
    read = pku_mmd.read_pku_skeleton(text.encode("ascii"), "video.txt")
    np.testing.assert_allclose(read, video, atol=1e-6)


@pytest.mark.parametrize("video, message", [
    (np.zeros((3, 1, 25, 3)), r"shape \(F, 2, 25, 3\)"),
    (np.zeros((3, 150)), r"shape \(F, 2, 25, 3\)"),
    (np.zeros((0, 2, 25, 3)), "at least one frame"),
    (np.full((1, 2, 25, 3), np.inf), "finite"),
])
def test_pku_skeleton_rejects_bad_videos(video, message):
    with pytest.raises(ValueError, match=message):
        writer.format_pku_skeleton(video)


def test_pku_labels():
    text = writer.format_pku_labels([(8, 1, 80, 2), (np.int64(51), 100, 100, 1)])
    assert text == "8,1,80,2\n51,100,100,1\n"
    np.testing.assert_array_equal(pku_mmd.read_pku_labels(text.encode("ascii"), "labels.txt"),
                                  [[8, 1, 80, 2], [51, 100, 100, 1]])
    assert writer.format_pku_labels([]) == ""


@pytest.mark.parametrize("row, message", [
    ((1, 2, 3), "label row 1 must be 4 integers"),
    ((1, 2.0, 3, 1), "label row 1 must be 4 integers"),
    ((0, 1, 2, 1), r"label row 1: label must be in 1\.\.51"),
    ((52, 1, 2, 1), r"label row 1: label must be in 1\.\.51"),
    ((1, 0, 2, 1), "label row 1: need 1 <= start <= end"),
    ((1, 5, 4, 1), "label row 1: need 1 <= start <= end"),
    ((1, 1, 2, 3), "label row 1: confidence must be 1 or 2"),
])
def test_pku_labels_reject_bad_rows(row, message):
    with pytest.raises(ValueError, match=message):
        writer.format_pku_labels([(1, 1, 2, 1), row])


def test_pku_split_format_and_aimclr_style_parsing():
    text = writer.format_pku_split(["0002-M", "0002-R"], ["0002-L"])
    assert text == "Training videos:\n0002-M, 0002-R,\nValidation videos:\n0002-L,\n"
    lines = text.split("\n")
    parsed = [[name.strip() for name in lines[i].split(",") if name.strip()] for i in (1, 3)]
    assert parsed == [["0002-M", "0002-R"], ["0002-L"]]
    assert pku_mmd.read_pku_split(text.encode("ascii"), "split.txt") == tuple(parsed)


@pytest.mark.parametrize("train, test, message", [
    ([], ["a"], "needs training and test videos, got 0 training and 1 test"),
    (["a"], [], "needs training and test videos, got 1 training and 0 test"),
    (["a", "a"], ["b"], r"repeated: \['a'\]"),
    (["a"], ["b", "a"], r"repeated: \['a'\]"),
    (["a,b"], ["c"], "without commas or whitespace"),
    (["a b"], ["c"], "without commas or whitespace"),
    ([""], ["c"], "non-empty"),
    ([3], ["c"], "non-empty strings"),
])
def test_pku_split_rejects_bad_names(train, test, message):
    with pytest.raises(ValueError, match=message):
        writer.format_pku_split(train, test)
