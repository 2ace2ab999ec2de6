"""Tests for the NTU `.skeleton` reader."""

import itertools
import pickle

import numpy as np
import pytest

from skel_jax.data import ntu_skeleton as ns
from tests.skeleton_text import BODY_INFO, frames_from_slots, plausible_bodies, skeleton_text

SOURCE = "S001C001P001R001A001.skeleton"


def _text(num_frames=3, num_bodies=1, seed=0, newline="\n"):
    """A valid file and the float64 (num_bodies, num_frames, 25, 3) xyz it holds."""
    bodies = plausible_bodies(np.random.default_rng(seed), num_bodies, num_frames)
    present = np.ones((num_bodies, num_frames), bool)
    return skeleton_text(frames_from_slots(bodies, present), newline), bodies


def _lines(num_frames=3, num_bodies=1):
    return _text(num_frames, num_bodies)[0].decode().split("\n")[:-1]


def _join(lines):
    # latin-1 turns a "\xe9" in a test line into the single non-ASCII byte 0xe9.
    return ("\n".join(lines) + "\n").encode("latin-1")


def _error(data):
    with pytest.raises(ns.SkeletonFormatError) as info:
        ns.parse_skeleton(data, SOURCE)
    return info.value


# Line numbers (1-based) in a file with one body per frame: frame f (0-based) starts at
# 2 + 28 f with its body count, then body info, joint count, 25 joint lines.
def _body_count_line(f):
    return 2 + 28 * f


def _joint_line(f, j):
    return 5 + 28 * f + j


# --- valid input ------------------------------------------------------------------------------

@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_round_trip_exact(newline):
    data, bodies = _text(num_frames=7, num_bodies=2, newline=newline)
    raw = ns.parse_skeleton(data, SOURCE)
    assert raw.num_frames == 7
    assert raw.bodies.shape == (4, 7, 25, 3) and raw.bodies.dtype == np.float32
    assert raw.body_counts.dtype == np.int32
    np.testing.assert_array_equal(raw.body_counts, [2] * 7)
    np.testing.assert_array_equal(raw.bodies[:2], bodies.astype(np.float32))
    assert not raw.bodies[2:].any()


def test_slots_follow_listing_order_and_fifth_body_is_dropped():
    bodies = plausible_bodies(np.random.default_rng(1), 5, 6)
    present = np.ones((5, 6), bool)
    present[:, 1] = False  # a frame without bodies
    present[2:, 3] = False  # two bodies
    present[0, 4] = False  # the second slot's body is listed first in frame 4
    raw = ns.parse_skeleton(skeleton_text(frames_from_slots(bodies, present)), SOURCE)
    np.testing.assert_array_equal(raw.body_counts, [5, 0, 5, 2, 4, 5])
    expected = np.zeros((4, 6, 25, 3), np.float32)
    for f in range(6):
        listed = bodies[present[:, f], f][:4]
        expected[:len(listed), f] = listed
    np.testing.assert_array_equal(raw.bodies, expected)


def test_zero_frames():
    raw = ns.parse_skeleton(b"0\r\n", SOURCE)
    assert raw.num_frames == 0
    assert raw.bodies.shape == (4, 0, 25, 3)
    assert raw.body_counts.shape == (0,)


def test_any_whitespace_and_blank_lines():
    data, bodies = _text(num_frames=2)
    messy = b"\n\n" + data.replace(b" ", b" \t  ").replace(b"\n", b"  \r\n\n ") + b"\n \n"
    raw = ns.parse_skeleton(messy, SOURCE)
    np.testing.assert_array_equal(raw.bodies[0], bodies[0].astype(np.float32))


def test_unusual_but_valid_tokens():
    # Forms the vectorised path declines or converts one by one; every path must agree.
    lines = _lines(num_frames=2)
    lines[_joint_line(0, 0) - 1] = "1.5e-05 -0 +.5 nan inf -Infinity 1e3 5. 0 0 0 2"
    lines[_joint_line(0, 1) - 1] = "0.12345678901234567 1E-7 -2.5E+2 1 1 1 1 1 1 1 1 2"
    lines[3] = "+25"
    lines[2] = "18446744073709551615 0 1 1 1 1 0 nan 0.05 2"
    raw = ns.parse_skeleton(_join(lines), SOURCE)
    np.testing.assert_array_equal(raw.bodies[0, 0, 0], np.float32([1.5e-05, 0.0, 0.5]))
    np.testing.assert_array_equal(raw.bodies[0, 0, 1],
                                  np.float32([0.12345678901234567, 1e-7, -250.0]))


def test_fast_and_validating_parsers_agree():
    rng = np.random.default_rng(2)
    bodies = plausible_bodies(rng, 3, 20) * rng.choice([1e-6, 1.0, 1e3], size=(3, 20, 25, 3))
    present = rng.random((3, 20)) < 0.7
    data = skeleton_text(frames_from_slots(bodies, present))
    fast = ns.parse_skeleton(data, SOURCE)
    slow = ns._parse_checked(data, SOURCE)
    np.testing.assert_array_equal(fast.bodies, slow.bodies)
    np.testing.assert_array_equal(fast.body_counts, slow.body_counts)


def test_typical_file_takes_the_vectorised_path(monkeypatch):
    data, bodies = _text(num_frames=50, num_bodies=2, newline="\r\n")

    def refuse(*args):
        raise AssertionError("the validating parser ran on a valid, typical file")

    monkeypatch.setattr(ns, "_parse_checked", refuse)
    raw = ns.parse_skeleton(data, SOURCE)
    np.testing.assert_array_equal(raw.bodies[:2], bodies.astype(np.float32))


def test_read_skeleton_file(tmp_path):
    data, bodies = _text()
    path = tmp_path / SOURCE
    path.write_bytes(data)
    raw = ns.read_skeleton_file(path)
    np.testing.assert_array_equal(raw.bodies[0], bodies[0].astype(np.float32))
    path.write_bytes(b"x\n")
    with pytest.raises(ns.SkeletonFormatError, match=f"^{path}:1: "):
        ns.read_skeleton_file(path)


# --- number tokens ------------------------------------------------------------------------------

@pytest.mark.parametrize("block", [7, 1 << 14])
def test_decimal_values_match_float(monkeypatch, block):
    monkeypatch.setattr(ns, "_DECIMAL_BLOCK", block)
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, 3000) * 10.0 ** rng.integers(-8, 8, 3000)
    formats = ["%.7g", "%.17g", "%.3f", "%e", "%+.9f", "%.15g"]
    tokens = [fmt % v for v, fmt in zip(x, itertools.cycle(formats))]
    tokens += ["0", "-0", "-0.0", "5.", ".5", "+3", "007.50", "123456789012345",
               "1234567890123456789", "0.000000000000000000001", "1e308", "1e400", "9" * 400]
    data = " ".join(tokens).encode()
    text = ns.scan_number_text(data)
    values = ns.decimal_values(data, text.starts, text.ends)
    assert values.dtype == np.float64
    np.testing.assert_array_equal(values, [float(t) for t in tokens])


def test_scan_accepts_exactly_decimal_tokens():
    # All strings over one representative of each byte class up to length 6.
    for length in range(1, 7):
        for chars in itertools.product("1.-e", repeat=length):
            token = "".join(chars).encode()
            accepted = ns.scan_number_text(b" 7 " + token + b" 8\n") is not None
            assert accepted == bool(ns._DECIMAL_RE.fullmatch(token)), token


@pytest.mark.parametrize("data", [b"1 nan", b"1\x00", b"\xc3\xa9", b"1_0", b"0x1f", b"1,5",
                                  b".", b"-", b"e", b"1.", b"1e"])
def test_scan_at_text_edges(data):
    # The first and last bytes have no neighbour on one side; the text edge counts as space.
    assert (ns.scan_number_text(data) is not None) == bool(ns._DECIMAL_RE.fullmatch(data))
    assert (ns.scan_number_text(data + b" 5") is not None) == bool(ns._DECIMAL_RE.fullmatch(data))
    assert (ns.scan_number_text(b"5 " + data) is not None) == bool(ns._DECIMAL_RE.fullmatch(data))


def test_scan_lines():
    text = ns.scan_number_text(b"1 2\r\n\n  \n3\n4 5 6")
    np.testing.assert_array_equal(text.line_numbers, [1, 4, 5])
    np.testing.assert_array_equal(text.line_sizes, [2, 1, 3])
    np.testing.assert_array_equal(text.line_starts, [0, 2, 3])
    np.testing.assert_array_equal(text.starts, [0, 2, 9, 11, 13, 15])
    np.testing.assert_array_equal(text.ends, [1, 3, 10, 12, 14, 16])


def test_parse_number_token():
    assert ns.parse_number_token(b"-1.5e2") == -150.0
    assert np.isnan(ns.parse_number_token(b"NaN"))
    assert ns.parse_number_token(b"-Infinity") == -np.inf
    for bad in (b"1_0", b"0x10", b"1.2.3", b"", b"e5", b"nanx"):
        assert ns.parse_number_token(bad) is None


# --- errors -------------------------------------------------------------------------------------

def test_error_message_and_attributes():
    err = ns.SkeletonFormatError("a.zip:b.skeleton", 7, "bad")
    assert str(err) == "a.zip:b.skeleton:7: bad"
    assert (err.source, err.line, err.reason) == ("a.zip:b.skeleton", 7, "bad")
    assert str(ns.SkeletonFormatError("f", None, "bad")) == "f: bad"
    assert isinstance(err, ValueError)
    copy = pickle.loads(pickle.dumps(err))
    assert str(copy) == str(err) and copy.line == 7


@pytest.mark.parametrize("data", [b"", b" \r\n\n\t"])
def test_empty_file(data):
    err = _error(data)
    assert (err.source, err.line) == (SOURCE, 1)
    assert "empty file" in err.reason


def _with_line(number, content, num_frames=3, num_bodies=1):
    lines = _lines(num_frames, num_bodies)
    lines[number - 1] = content
    return _join(lines)


@pytest.mark.parametrize("number, content, line, message", [
    (1, "abc", 1, "the frame count must be an integer, found 'abc'"),
    (1, "1.5", 1, "the frame count must be an integer, found '1.5'"),
    (1, "-3", 1, "the frame count is negative: -3"),
    (1, "3 3", 1, "expected the frame count alone on its line, found 2 fields"),
    (_body_count_line(1), "x", _body_count_line(1),
     "the body count of frame 2 of 3 must be an integer, found 'x'"),
    (_body_count_line(1), "-1", _body_count_line(1), "the body count of frame 2 of 3 is negative"),
    (3, "72057594037931101 0 1 1 1 1 0 0.02 0.05", 3,
     "expected 10 fields in the body-info line of body 1 of 1 in frame 1 of 3, found 9"),
    (3, "7.2e16 0 1 1 1 1 0 0.02 0.05 2", 3, "bodyID of body 1 of 1 in frame 1 of 3 must be an "
                                            "integer, found '7.2e16'"),
    (3, "7 0 1 1 1 1 0 0.02 abc 2", 3, "body-info field 9 (leanY) of body 1 of 1 in frame 1 of 3 "
                                       "is not a number: 'abc'"),
    (4, "2 5", 4, "expected the joint count of body 1 of 1 in frame 1 of 3 alone on its line"),
    (4, "25.0", 4, "the joint count of body 1 of 1 in frame 1 of 3 must be an integer"),
    (4, "24", 4, "the joint count of body 1 of 1 in frame 1 of 3 is 24, expected 25"),
    (_joint_line(2, 6), "0.1 0.2 3.1 1 1 1 1 1 1 1 2", _joint_line(2, 6),
     "expected 12 fields in the line of joint 7 of body 1 of 1 in frame 3 of 3, found 11"),
    (_joint_line(2, 6), "0.1 0.2 3.1 1 1 1 1 1 1 1 2 2 2", _joint_line(2, 6), "found 13"),
    (_joint_line(0, 0), "0.1 0.2x 3.1 1 1 1 1 1 1 1 1 2", _joint_line(0, 0),
     "field 2 (y) of joint 1 of body 1 of 1 in frame 1 of 3 is not a number: '0.2x'"),
    (_joint_line(0, 0), "0.1 0.2 3.1 1 1 1 1.2.3 1 1 1 1 2", _joint_line(0, 0),
     "field 7 (colorY) of joint 1"),
    (_joint_line(0, 24), "0.1 0.2 3.1 1 1 1 1 1 1 1 1 \xe9", _joint_line(0, 24),
     "field 12 (trackingState) of joint 25"),
    (_joint_line(1, 3), "0.1 NaN 3.1 1 1 1 1 1 1 1 1 2", _joint_line(1, 3),
     "y of joint 4 of body 1 of 1 in frame 2 of 3 is not a finite float32: 'NaN'"),
    (_joint_line(1, 3), "-inf 0.2 3.1 1 1 1 1 1 1 1 1 2", _joint_line(1, 3), "x of joint 4"),
    (_joint_line(1, 3), "0.1 0.2 1e999 1 1 1 1 1 1 1 1 2", _joint_line(1, 3),
     "z of joint 4 of body 1 of 1 in frame 2 of 3 is not a finite float32: '1e999'"),
    (_joint_line(1, 3), "0.1 -3.5e38 3.1 1 1 1 1 1 1 1 1 2", _joint_line(1, 3),
     "y of joint 4 of body 1 of 1 in frame 2 of 3 is not a finite float32: '-3.5e38'"),
])
def test_bad_line(number, content, line, message):
    err = _error(_with_line(number, content))
    assert (err.source, err.line) == (SOURCE, line)
    assert message in err.reason
    assert str(err).startswith(f"{SOURCE}:{line}: ")


def test_non_ascii_byte_is_not_a_number():
    lines = _lines()
    data = _join(lines).replace(b"25\n", b"2\xff5\n", 1)
    err = _error(data)
    assert err.line == 4
    assert "must be an integer, found '2\\xff5'" in err.reason


@pytest.mark.parametrize("keep, line, message", [
    (1, 2, "expected the body count of frame 1 of 3"),
    (2, 3, "expected the body-info line of body 1 of 1 in frame 1 of 3"),
    (3, 4, "expected the joint count of body 1 of 1 in frame 1 of 3"),
    (_joint_line(1, 6) - 1, _joint_line(1, 6), "expected the line of joint 7 of body 1 of 1 in "
                                               "frame 2 of 3"),
    (_body_count_line(2) - 1, _body_count_line(2), "expected the body count of frame 3 of 3"),
])
def test_truncated_file(keep, line, message):
    err = _error(_join(_lines()[:keep]))
    assert err.line == line
    assert err.reason == f"unexpected end of file: {message}"


def test_body_count_past_end_of_file():
    lines = _lines()
    lines[_body_count_line(2) - 1] = "3"
    err = _error(_join(lines))
    assert err.line == len(lines) + 1
    assert err.reason == ("unexpected end of file: expected the body-info line of body 2 of 3 in "
                          "frame 3 of 3")


def test_body_count_overrunning_next_frame():
    lines = _lines()
    lines[_body_count_line(0) - 1] = "2"
    err = _error(_join(lines))
    assert err.line == _body_count_line(1)
    assert "expected 10 fields in the body-info line of body 2 of 2 in frame 1 of 3, found 1" \
        in err.reason


def test_joint_lines_moved_between_bodies():
    # One joint line fewer in frame 1 and one more in frame 2 keep the line count unchanged.
    lines = _lines()
    del lines[_joint_line(0, 24) - 1]
    lines.insert(_joint_line(1, 0) - 1, lines[_joint_line(1, 0) - 2])
    err = _error(_join(lines))
    assert err.line == _body_count_line(1) - 1
    assert "expected 12 fields in the line of joint 25 of body 1 of 1 in frame 1 of 3, found 1" \
        in err.reason


def test_first_body_count_missing():
    lines = _lines()
    del lines[_body_count_line(0) - 1]
    err = _error(_join(lines))
    assert err.line == 2
    assert "expected the body count of frame 1 of 3 alone on its line, found 10 fields" \
        in err.reason


def test_data_after_last_frame():
    lines = _lines() + ["", "1"]
    err = _error(_join(lines))
    assert err.line == len(lines)
    assert err.reason == "data after the last frame (the header declares 3 frames)"


def test_frame_count_larger_than_file():
    err = _error(_join(["1000000000000"] + _lines()[1:]))
    assert err.line == _body_count_line(3)
    assert "expected the body count of frame 4 of 1000000000000" in err.reason


def test_body_info_constant_is_valid():
    assert len(BODY_INFO.split()) == ns.BODY_INFO_FIELDS


def _outcome(parse, data):
    try:
        raw = parse(data, SOURCE)
    except ns.SkeletonFormatError as err:
        return str(err)
    return raw.num_frames, raw.bodies.tobytes(), raw.body_counts.tolist()


def test_mutated_files_fast_path_never_accepts_more():
    """Random edits: parse_skeleton must give exactly what the validating parser gives."""
    rng = np.random.default_rng(12)
    bodies = plausible_bodies(rng, 2, 3)
    present = np.array([[True, False, True], [True, True, False]])
    base = skeleton_text(frames_from_slots(bodies, present), "\n").decode().split("\n")[:-1]
    replacements = ["", "0", "1", "2", "-1", "25", "24", "x", BODY_INFO, base[4], base[4] + " 1"]
    tokens = ["1e5", "nan", "1.2.3", "+", "-0", "007", "1_0", ".", "25.0", "2", "-1e-3", "1e"]
    outcomes = set()
    for _ in range(500):
        lines = list(base)
        # Half of the edits hit the header and first body, where the structure is decided.
        k = int(rng.integers(6 if rng.random() < 0.5 else len(lines)))
        edit = rng.integers(4)
        if edit == 0:
            lines[k] = str(rng.choice(replacements))
        elif edit == 1:
            del lines[k]
        elif edit == 2:
            lines.insert(k, lines[k])
        else:
            fields = lines[k].split()
            fields[int(rng.integers(len(fields)))] = str(rng.choice(tokens))
            lines[k] = " ".join(fields)
        data = _join(lines)
        fast = _outcome(ns.parse_skeleton, data)
        assert fast == _outcome(ns._parse_checked, data), data
        outcomes.add(isinstance(fast, str))
    assert outcomes == {True, False}  # both valid and invalid edits were exercised


def test_byte_edits_fast_path_never_accepts_more():
    """Random byte edits: only SkeletonFormatError or the validating parser's exact result."""
    rng = np.random.default_rng(13)
    bodies = plausible_bodies(rng, 2, 2)
    base = skeleton_text(frames_from_slots(bodies, np.array([[True, True], [True, False]])), "\n")
    alphabet = b"0123456789.-+eE \n\r\tx"
    for _ in range(400):
        data = bytearray(base)
        for _ in range(int(rng.integers(1, 4))):
            k = int(rng.integers(len(data)))
            byte = alphabet[int(rng.integers(len(alphabet)))]
            edit = rng.integers(3)
            if edit == 0:
                data[k] = byte
            elif edit == 1:
                del data[k]
            else:
                data.insert(k, byte)
        assert _outcome(ns.parse_skeleton, bytes(data)) == _outcome(ns._parse_checked, bytes(data))
