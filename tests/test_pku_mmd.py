"""Tests for the PKU-MMD readers."""

import logging

import numpy as np
import pytest

from skel_jax.data import pku_mmd as pku
from skel_jax.data.ntu_skeleton import SkeletonFormatError
from tests import reference_preprocess as ref
from tests.skeleton_text import plausible_bodies

SOURCE = "0002-L.txt"


def _video(num_frames, seed=0):
    """float64 (F, 2, 25, 3) with 6 decimals, second body absent in even frames."""
    bodies = plausible_bodies(np.random.default_rng(seed), 2, num_frames).transpose(1, 0, 2, 3)
    bodies[::2, 1] = 0.0
    return np.round(bodies, 6)


def _skeleton_bytes(video):
    # Like the real files: LF, a leading space on every row after the first, six decimals.
    rows = [" ".join("%.6f" % v for v in frame.ravel()) for frame in video]
    return ("\n ".join(rows) + "\n").encode()


def _format_error(function, data):
    with pytest.raises(SkeletonFormatError) as info:
        function(data, SOURCE)
    assert info.value.source == SOURCE
    return info.value


# --- skeleton files -----------------------------------------------------------------------------

def test_skeleton_layout_is_body_major():
    row = np.arange(150) / 8.0  # exact in binary, so the text round-trips
    video = pku.read_pku_skeleton((" ".join(map(str, row)) + "\n").encode(), SOURCE)
    assert video.shape == (1, 2, 25, 3) and video.dtype == np.float32
    for b, j, c in [(0, 0, 0), (0, 24, 2), (1, 0, 1), (1, 7, 2)]:
        assert video[0, b, j, c] == row[75 * b + 3 * j + c]


def test_skeleton_round_trip():
    video = _video(40)
    data = _skeleton_bytes(video)
    parsed = pku.read_pku_skeleton(data, SOURCE)
    np.testing.assert_array_equal(parsed, video.astype(np.float32))
    np.testing.assert_array_equal(pku._read_pku_skeleton_checked(data, SOURCE), parsed)
    crlf = b"\r\n\r\n" + data.replace(b"\n", b"\r\n\r\n")
    np.testing.assert_array_equal(pku.read_pku_skeleton(crlf, SOURCE), parsed)


def test_typical_skeleton_takes_the_vectorised_path(monkeypatch):
    video = _video(20)

    def refuse(*args):
        raise AssertionError("the line-by-line reader ran on a valid file")

    monkeypatch.setattr(pku, "_read_pku_skeleton_checked", refuse)
    np.testing.assert_array_equal(pku.read_pku_skeleton(_skeleton_bytes(video), SOURCE),
                                  video.astype(np.float32))


def _rows(num_frames=3):
    return _skeleton_bytes(_video(num_frames)).decode().split("\n")[:-1]


@pytest.mark.parametrize("row, content, line, message", [
    (1, "1 2 3", 2, "expected 150 values per frame, found 3"),
    (2, "0.5 " * 151, 3, "expected 150 values per frame, found 151"),
    (2, "0.5 " * 149 + "x1", 3, "value 150 is not a number: 'x1'"),
    (0, "0.5 nan " + "0.5 " * 148, 1, "value 2 is not a finite float32: 'nan'"),
    (0, "0.5 1e400 " + "0.5 " * 148, 1, "value 2 is not a finite float32: '1e400'"),
    (1, "0.5 " * 149 + "4e38", 2, "value 150 is not a finite float32: '4e38'"),
])
def test_skeleton_bad_line(row, content, line, message):
    rows = _rows()
    rows[row] = content
    err = _format_error(pku.read_pku_skeleton, ("\n".join(rows) + "\n").encode())
    assert err.line == line
    assert err.reason == message


@pytest.mark.parametrize("data", [b"", b"\n \n"])
def test_skeleton_empty_file(data):
    err = _format_error(pku.read_pku_skeleton, data)
    assert (err.line, err.reason) == (1, "empty file: no frames")


# --- label files --------------------------------------------------------------------------------

def test_labels():
    data = b"41,1,70,1\r\n\r\n 5 , 100 , 180 , 2 ,\n51,200,200,1"
    labels = pku.read_pku_labels(data, SOURCE)
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, [[41, 1, 70, 1], [5, 100, 180, 2], [51, 200, 200, 1]])
    assert pku.read_pku_labels(b"", SOURCE).shape == (0, 4)


def test_labels_swap_reversed_rows(caplog):
    with caplog.at_level(logging.WARNING):
        labels = pku.read_pku_labels(b"1,5,9,1\n2,90,80,2\n", SOURCE)
    np.testing.assert_array_equal(labels, [[1, 5, 9, 1], [2, 80, 90, 2]])
    assert f"{SOURCE}:2: start 90 > end 80, swapping them" in caplog.text


@pytest.mark.parametrize("data, line, message", [
    (b"1,2,3\n", 1, "expected 4 comma-separated fields (label,start,end,confidence), found 3"),
    (b"1,2,3,4\n1,2,3,4,5\n", 2,
     "expected 4 comma-separated fields (label,start,end,confidence), found 5"),
    (b"1,2,3,4\n\n1,2,x,4\n", 3, "end must be an integer, found 'x'"),
    (b"1.0,2,3,4\n", 1, "label must be an integer, found '1.0'"),
    (b"0,2,3,4\n", 1, "label 0 is outside 1..51"),
    (b"52,2,3,4\n", 1, "label 52 is outside 1..51"),
    (b"3,-2,3,4\n", 1, "negative frame number in start -2, end 3"),
])
def test_labels_errors(data, line, message):
    err = _format_error(pku.read_pku_labels, data)
    assert err.line == line
    assert err.reason == message


# --- split files --------------------------------------------------------------------------------

def test_split():
    data = b"Training videos:\r\n0002-L, 0002-M,0003-R , \r\nValidation videos:\r\n0004-L,\r\n"
    train, test = pku.read_pku_split(data, SOURCE)
    assert train == ["0002-L", "0002-M", "0003-R"]
    assert test == ["0004-L"]


@pytest.mark.parametrize("data, line, message", [
    (b"Training videos:\n0002-L\n", None, "expected 4 lines (headline, training videos, "
                                          "headline, test videos), found 2"),
    (b"T:\n , ,\nV:\n0002-L\n", 2, "no video names on this line"),
    (b"T:\n0002-L\nV:\n\n", 4, "no video names on this line"),
    (b"T:\n0002-L, 0003-M\nV:\n0003-M, 0004-R\n", 4,
     "1 videos are listed for both training (line 2) and testing, e.g. '0003-M'"),
])
def test_split_errors(data, line, message):
    err = _format_error(pku.read_pku_split, data)
    assert err.line == line
    assert err.reason == message


# --- clips --------------------------------------------------------------------------------------

def test_cut_clip_is_one_based_inclusive_copy():
    video = np.arange(10, dtype=np.float32)[:, None, None, None] * np.ones((10, 2, 25, 3))
    clip = pku.cut_clip(video, 3, 5, SOURCE)
    assert clip.shape == (3, 2, 25, 3)
    np.testing.assert_array_equal(clip[:, 0, 0, 0], [2, 3, 4])
    clip[:] = -1
    assert video.min() == 0
    assert pku.cut_clip(video, 10, 10).shape[0] == 1


@pytest.mark.parametrize("start, end, message", [
    (5, 11, "clip frames 5..11 run past the end of the video (10 frames)"),
    (0, 4, "invalid clip frames 0..4 (1-based, start must be >= 1 and <= end)"),
    (6, 4, "invalid clip frames 6..4"),
])
def test_cut_clip_errors(start, end, message):
    with pytest.raises(SkeletonFormatError) as info:
        pku.cut_clip(np.zeros((10, 2, 25, 3)), start, end, SOURCE)
    assert str(info.value).startswith(f"{SOURCE}: {message}")


def test_preprocess_pku_keeps_file_order():
    clip = _video(30, seed=1)
    clip[:, 1] = clip[:, 0] + np.linspace(0, 2, 30)[:, None, None]  # body 1 moves more
    out, num_frames = pku.preprocess_pku(clip)
    assert out.dtype == np.float32 and out.shape == (30, 2, 25, 3) and num_frames == 30
    buffer = np.zeros((1, 3, 300, 25, 2))
    buffer[0, :, :30] = clip.transpose(3, 0, 2, 1)
    expected = ref.pre_normalization(buffer)[0].transpose(1, 3, 2, 0)[:30]
    np.testing.assert_allclose(out, expected, atol=1e-4)


def test_preprocess_pku_truncates():
    clip = _video(20, seed=2)
    out, num_frames = pku.preprocess_pku(clip, max_frames=8)
    assert num_frames == 8 and out.shape == (8, 2, 25, 3)
    np.testing.assert_array_equal(out, pku.preprocess_pku(clip[:8])[0])


@pytest.mark.parametrize("clip, max_frames, message", [
    (np.zeros((5, 2, 25, 3)), 0, "max_frames must be >= 1, got 0"),
    (np.zeros((5, 3, 25, 3)), 300, r"clip must have shape \(T, 2, 25, 3\), got \(5, 3, 25, 3\)"),
])
def test_preprocess_pku_errors(clip, max_frames, message):
    with pytest.raises(ValueError, match=message):
        pku.preprocess_pku(clip, max_frames)
