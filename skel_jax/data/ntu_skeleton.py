"""Reader for NTU RGB+D `.skeleton` text files (grammar: data.md §1.3).

A file is a header line holding the frame count F, then per frame a body-count line B_f and per
body a 10-field body-info line, a joint-count line (always 25) and 25 joint lines of 12 fields.
Fields are separated by any ASCII whitespace, lines end in LF or CRLF, and blank lines are
ignored. Only x, y, z (the first three joint fields) are kept, for the first four bodies listed in
each frame, exactly as the 2s-AGCN/ISC reader does (slot m is the m-th listed body of that frame).

Accepted token syntax:
- counts (F, B_f, joint count) and bodyID: decimal integers `[+-]?[0-9]+`; counts must not be
  negative, the joint count must be 25; bodyID may exceed float64 precision and is not converted.
- every other field: a decimal number `[+-]?(digits[.digits] | .digits)([eE][+-]?digits)?`.
  `nan`/`inf`/`infinity` (any case, optional sign) are accepted only in fields skel_jax does not
  use (body-info, depth/colour pixel coordinates, orientation, tracking state): they cannot
  affect the output. An x, y or z that is not finite, or too large for float32, is an error.

Frames, bodies and joints are numbered from 1 in error messages, like the 1-based line numbers.

Speed: `parse_skeleton` first runs a vectorised parser (`scan_number_text` locates and validates
every token with a handful of NumPy passes over the bytes, the structure is checked from the
per-line token counts, and only the x, y, z tokens are converted). Anything it cannot vouch for
sends the file to a line-by-line validating parser, whose job is to report the first bad line (or
to parse the rare valid file the fast path declines, e.g. one with `nan` in an unused field).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re

import numpy as np

NUM_JOINTS = 25
NUM_SLOTS = 4
BODY_INFO_FIELDS = 10
JOINT_FIELDS = 12

_BODY_INFO_NAMES = (
    "bodyID", "clipedEdges", "handLeftConfidence", "handLeftState", "handRightConfidence",
    "handRightState", "isResticted", "leanX", "leanY", "trackingState")
_JOINT_NAMES = (
    "x", "y", "z", "depthX", "depthY", "colorX", "colorY", "orientationW", "orientationX",
    "orientationY", "orientationZ", "trackingState")
# A body occupies its info line, its joint-count line and its joint lines.
_BODY_LINES = 2 + NUM_JOINTS


class SkeletonFormatError(ValueError):
    """A skeleton or label file does not follow its format.

    Attributes:
        source: the file path, or "archive.zip:member".
        line: 1-based line number of the problem, or None when it concerns no single line.
        reason: what is wrong, in words.
    """

    def __init__(self, source: str, line: int | None, reason: str):
        # All three go to ValueError so that the exception survives pickling (worker processes).
        super().__init__(source, line, reason)
        self.source = source
        self.line = line
        self.reason = reason

    def __str__(self) -> str:
        if self.line is None:
            return f"{self.source}: {self.reason}"
        return f"{self.source}:{self.line}: {self.reason}"


@dataclasses.dataclass(frozen=True)
class RawSkeleton:
    """The x, y, z content of one `.skeleton` file.

    Attributes:
        num_frames: the frame count F from the file header.
        bodies: float32 (4, F, 25, 3); bodies[m, f] holds the m-th body listed in frame f, zeros
            where frame f lists fewer than m + 1 bodies. Bodies listed 5th or later are dropped.
        body_counts: int32 (F,), the number of bodies listed in each frame (may exceed 4).
    """

    num_frames: int
    bodies: np.ndarray
    body_counts: np.ndarray


# ---------------------------------------------------------------------------------------------
# Token syntax, shared with the PKU-MMD reader.

_DECIMAL_RE = re.compile(rb"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NON_FINITE_RE = re.compile(rb"[+-]?(?:nan|inf|infinity)", re.IGNORECASE)
_INTEGER_RE = re.compile(rb"[+-]?[0-9]+")
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def parse_number_token(token: bytes) -> float | None:
    """Converts one numeric field.

    Args:
        token: one whitespace-free field.

    Returns:
        Its value (possibly nan or inf when spelled so, or on overflow), or None when the token is
        not a decimal number nor a spelled-out nan/inf/infinity.
    """
    if _DECIMAL_RE.fullmatch(token) or _NON_FINITE_RE.fullmatch(token):
        return float(token)
    return None


def in_float32_range(values: np.ndarray | float) -> np.ndarray | bool:
    """Whether values are finite and stay finite when stored as float32.

    Args:
        values: float64 array or scalar.

    Returns:
        Elementwise bool; False for NaN, infinities and magnitudes above float32's maximum.
    """
    return np.abs(values) <= _FLOAT32_MAX


def show_token(token: bytes) -> str:
    """Quotes a token for an error message.

    Args:
        token: raw field bytes.

    Returns:
        The token in single quotes, non-ASCII bytes written as \\xNN escapes.
    """
    return "'" + token.decode("ascii", "backslashreplace") + "'"


# Byte classes for the vectorised scan. Every byte outside these classes is _OTHER.
_WS, _DIGIT, _DOT, _SIGN, _EXP, _OTHER = range(6)
_NUM_CLASSES = 6
_WHITESPACE = b" \t\n\r\x0b\x0c"  # what bytes.split() splits on


def _class_table() -> bytes:
    table = bytearray([_OTHER]) * 256
    for members, cls in ((_WHITESPACE, _WS), (b"0123456789", _DIGIT), (b".", _DOT),
                         (b"+-", _SIGN), (b"eE", _EXP)):
        for byte in members:
            table[byte] = cls
    return bytes(table)


def _allowed_in_number(prev: int, cur: int, nxt: int) -> bool:
    """Whether byte class `cur` may sit between `prev` and `nxt` inside a decimal token.

    Together with "at most one '.', at most one exponent, '.' before the exponent" (checked
    separately), these local rules accept exactly the tokens that _DECIMAL_RE accepts.
    """
    if cur in (_WS, _DIGIT):
        return True
    if cur == _DOT:  # needs a digit on at least one side: "1.", ".5", "1.5"
        return prev in (_WS, _DIGIT, _SIGN) and nxt in (_WS, _DIGIT, _EXP) and _DIGIT in (prev, nxt)
    if cur == _SIGN:  # leads the mantissa, or the exponent (then a digit must follow)
        return (prev == _WS and nxt in (_DIGIT, _DOT)) or (prev == _EXP and nxt == _DIGIT)
    if cur == _EXP:
        return prev in (_DIGIT, _DOT) and nxt in (_DIGIT, _SIGN)
    return False


def _bad_trigram_table() -> np.ndarray:
    bad = np.zeros(_NUM_CLASSES ** 3, bool)
    for prev, cur, nxt in itertools.product(range(_NUM_CLASSES), repeat=3):
        bad[(prev * _NUM_CLASSES + cur) * _NUM_CLASSES + nxt] = not _allowed_in_number(
            prev, cur, nxt)
    return bad


_CLASS_OF_BYTE = _class_table()
_BAD_TRIGRAM = _bad_trigram_table()
_LOWER_EXP = bytes.maketrans(b"E", b"e")
_DIGITS_AND_SIGNS = b"0123456789+-"
# Tokens converted per block by decimal_values: small enough for its temporaries to stay in cache.
_DECIMAL_BLOCK = 1 << 14
# Longest token converted in bulk: 15 characters hold at most 15 digits, below 2**53.
_BULK_CHARS = 15


@dataclasses.dataclass(frozen=True)
class NumberText:
    """Located (not yet converted) decimal tokens of a text buffer.

    Attributes:
        data: the buffer.
        starts: int64 (N,) byte offset of each token.
        ends: int64 (N,) byte offset one past each token.
        line_numbers: int64 (L,) 1-based line number of each non-blank line.
        line_starts: int64 (L,) index (into starts) of the first token of each non-blank line.
        line_sizes: int64 (L,) number of tokens on each non-blank line.
    """

    data: bytes
    starts: np.ndarray
    ends: np.ndarray
    line_numbers: np.ndarray
    line_starts: np.ndarray
    line_sizes: np.ndarray


def scan_number_text(data: bytes) -> NumberText | None:
    """Locates the whitespace-separated tokens of `data`, all of which must be decimal numbers.

    Args:
        data: text with LF or CRLF line ends.

    Returns:
        The token table, or None when some token is not a decimal number (_DECIMAL_RE) or some
        byte is neither ASCII whitespace nor part of one; the caller then falls back to a parser
        that can say what is wrong.
    """
    classes = np.frombuffer(data.translate(_CLASS_OF_BYTE), np.uint8)
    if _has_bad_trigram(classes):
        return None
    # With digits and signs deleted, a valid token is "", ".", "e" or ".e"; any two adjacent
    # non-space marks other than ".e" mean a second '.', a second exponent, or '.' after it.
    marks = np.frombuffer(data.translate(_LOWER_EXP, _DIGITS_AND_SIGNS), np.uint8)
    joined = (marks[:-1] > 32) & (marks[1:] > 32)
    if (joined & ~((marks[:-1] == ord(".")) & (marks[1:] == ord("e")))).any():
        return None

    # Token boundaries alternate start, end, start, ... once the text is padded with whitespace.
    is_ws = classes == _WS
    inner = np.flatnonzero(is_ws[:-1] != is_ws[1:]) + 1
    head = [0] if classes.size and not is_ws[0] else []
    tail = [classes.size] if classes.size and not is_ws[-1] else []
    bounds = np.concatenate([head, inner, tail]).astype(np.int64)
    starts, ends = bounds[0::2], bounds[1::2]
    newlines = np.flatnonzero(np.frombuffer(data, np.uint8) == ord("\n"))
    line_bounds = np.empty(newlines.size + 2, np.int64)
    line_bounds[0] = 0
    line_bounds[1:-1] = np.searchsorted(starts, newlines)
    line_bounds[-1] = starts.size
    sizes = np.diff(line_bounds)
    non_blank = np.flatnonzero(sizes)
    return NumberText(data=data, starts=starts, ends=ends, line_numbers=non_blank + 1,
                      line_starts=line_bounds[non_blank], line_sizes=sizes[non_blank])


def _has_bad_trigram(classes: np.ndarray) -> bool:
    """Whether any byte breaks the local rules of _allowed_in_number (text edges count as ws)."""
    if classes.size == 0:
        return False
    second = int(classes[1]) if classes.size > 1 else _WS
    next_to_last = int(classes[-2]) if classes.size > 1 else _WS
    edges = ((_WS, int(classes[0]), second), (next_to_last, int(classes[-1]), _WS))
    if any(_BAD_TRIGRAM[(p * _NUM_CLASSES + c) * _NUM_CLASSES + n] for p, c, n in edges):
        return True
    code = classes[:-2] * np.uint8(_NUM_CLASSES * _NUM_CLASSES)
    code += classes[1:-1] * np.uint8(_NUM_CLASSES)
    code += classes[2:]
    return bool(np.take(_BAD_TRIGRAM, code).any())


def decimal_values(data: bytes, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Converts decimal tokens to float64, with the same result as Python's float().

    Tokens of at most 15 characters without an exponent (all real skeleton values) are converted
    in bulk: their digits form an integer below 10**15 < 2**53, exact in float64, and a single
    division by an exact power of ten then rounds correctly. Other tokens go through float().

    Args:
        data: the text buffer.
        starts: int64 (N,) byte offsets of tokens that match _DECIMAL_RE.
        ends: int64 (N,) byte offsets one past each token.

    Returns:
        float64 (N,) values.
    """
    out = np.empty(starts.size, np.float64)
    buf = np.frombuffer(data, np.uint8)
    for lo in range(0, starts.size, _DECIMAL_BLOCK):
        hi = min(lo + _DECIMAL_BLOCK, starts.size)
        out[lo:hi] = _decimal_block(buf, data, starts[lo:hi], ends[lo:hi])
    return out


def _decimal_block(buf: np.ndarray, data: bytes, starts: np.ndarray,
                   ends: np.ndarray) -> np.ndarray:
    lengths = ends - starts
    # Longer tokens are converted one by one below; capping the width keeps place values finite.
    width = min(int(lengths.max()), _BULK_CHARS)
    rows = np.arange(width)[:, None]
    # (width, N) characters, right-aligned so that a row's place value is the same for all.
    chars = np.take(buf, ends - width + rows, mode="clip")
    inside = rows >= width - lengths
    digits = chars - np.uint8(ord("0"))  # wraps to >= 10 for non-digits
    values = np.where((digits < 10) & inside, digits, 0).astype(np.float64)
    place = 10.0 ** np.arange(width - 1, -1, -1)
    # The dot counts as a zero digit: "12.5" reads 1205, and the dot's place value is 10**f
    # with f the number of fraction digits; dropping that zero gives 125, and 125 / 10**f.
    spread = place @ values
    dot_place = place @ ((chars == ord(".")) & inside)
    has_dot = dot_place > 0
    unit = np.where(has_dot, dot_place, 1.0)
    fraction = np.fmod(spread, unit)
    result = np.where(has_dot, (spread - fraction) / 10 + fraction, spread) / unit
    result = np.where(buf[starts] == ord("-"), -result, result)
    has_exp = (((chars | 32) == ord("e")) & inside).any(0)
    for i in np.flatnonzero(has_exp | (lengths > _BULK_CHARS)):
        result[i] = float(data[starts[i]:ends[i]])
    return result


# ---------------------------------------------------------------------------------------------
# Fast path.

def _all_integers(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> bool:
    """Whether decimal tokens (already validated) are all integers: no '.' and no exponent."""
    if starts.size == 0:
        return True
    index = starts[:, None] + np.arange(int((ends - starts).max()))
    chars = buf[np.minimum(index, buf.size - 1)]
    fractional = (chars == ord(".")) | ((chars | 32) == ord("e"))
    return not (fractional & (index < ends[:, None])).any()


def _parse_fast(text: NumberText) -> RawSkeleton | None:
    """Parses a file whose tokens are all decimal numbers, or returns None if anything is off."""
    sizes = text.line_sizes
    num_lines = sizes.size
    if num_lines == 0 or sizes[0] != 1:
        return None
    # Infer the structure from the token counts alone, then check that it is the grammar's:
    # body-info lines are the 10-token lines, frame headers the 1-token lines that do not follow
    # one (those are joint counts), and each body spans exactly _BODY_LINES lines.
    body_lines = np.flatnonzero(sizes == BODY_INFO_FIELDS)
    if body_lines.size and body_lines[-1] + _BODY_LINES > num_lines:
        return None
    after_info = np.zeros(num_lines, bool)
    after_info[body_lines + 1] = True
    frame_lines = np.flatnonzero((sizes == 1) & ~after_info)[1:]
    expected = np.full(num_lines, JOINT_FIELDS, np.int64)
    expected[0] = 1
    expected[frame_lines] = 1
    expected[body_lines] = BODY_INFO_FIELDS
    expected[body_lines + 1] = 1
    if not np.array_equal(expected, sizes):
        return None
    # Frame headers and bodies must tile lines 1.. exactly, starting with a header (or the end): a
    # header is followed directly by the next header or body, a body by the next after its joints.
    marks = np.concatenate([frame_lines, body_lines, [num_lines]])
    step = np.concatenate([np.ones(frame_lines.size, np.int64),
                           np.full(body_lines.size, _BODY_LINES), [0]])
    order = np.argsort(marks)
    marks, step = marks[order], step[order]
    if marks[0] != 1 or step[0] == _BODY_LINES or not np.array_equal(np.diff(marks), step[:-1]):
        return None

    buf = np.frombuffer(text.data, np.uint8)
    first_token = text.line_starts
    count_tokens = first_token[np.concatenate([[0], frame_lines, body_lines + 1])]
    integer_tokens = np.concatenate([count_tokens, first_token[body_lines]])
    if not _all_integers(buf, text.starts[integer_tokens], text.ends[integer_tokens]):
        return None
    counts = decimal_values(text.data, text.starts[count_tokens], text.ends[count_tokens])
    frame_of_body = np.searchsorted(frame_lines, body_lines) - 1
    listed = np.bincount(frame_of_body, minlength=frame_lines.size)
    if (counts[0] != frame_lines.size
            or not np.array_equal(counts[1:1 + frame_lines.size], listed)
            or (counts[1 + frame_lines.size:] != NUM_JOINTS).any()):
        return None

    slot = np.arange(body_lines.size) - (np.cumsum(listed) - listed)[frame_of_body]
    kept = slot < NUM_SLOTS
    joint_lines = body_lines[kept, None] + 2 + np.arange(NUM_JOINTS)
    xyz_tokens = (first_token[joint_lines][..., None] + np.arange(3)).ravel()
    xyz = decimal_values(text.data, text.starts[xyz_tokens], text.ends[xyz_tokens])
    if not in_float32_range(xyz).all():
        return None
    bodies = np.zeros((NUM_SLOTS, frame_lines.size, NUM_JOINTS, 3), np.float32)
    bodies[slot[kept], frame_of_body[kept]] = xyz.reshape(-1, NUM_JOINTS, 3)
    return RawSkeleton(num_frames=int(frame_lines.size), bodies=bodies,
                       body_counts=listed.astype(np.int32))


# ---------------------------------------------------------------------------------------------
# Validating line-by-line parser.

class _Lines:
    """The non-blank lines of a buffer, split into fields, consumed in order."""

    def __init__(self, data: bytes, source: str):
        self.source = source
        self._lines = [(number, fields)
                       for number, fields in enumerate((line.split() for line in data.split(b"\n")),
                                                       1)
                       if fields]
        self._next = 0

    def __len__(self) -> int:
        return len(self._lines)

    def error(self, line: int | None, reason: str) -> SkeletonFormatError:
        return SkeletonFormatError(self.source, line, reason)

    def take(self, what: str) -> tuple[int, list[bytes]]:
        """Returns the next line's number and fields; `what` names it for the end-of-file error."""
        if self._next == len(self._lines):
            end = self._lines[-1][0] + 1 if self._lines else 1
            raise self.error(end, f"unexpected end of file: expected {what}")
        self._next += 1
        return self._lines[self._next - 1]

    def take_fields(self, what: str, count: int) -> tuple[int, list[bytes]]:
        """Like take, and checks that the line has `count` fields."""
        line, fields = self.take(what)
        if len(fields) != count:
            raise self.error(line, f"expected {count} fields in {what}, found {len(fields)}")
        return line, fields

    def take_count(self, what: str) -> int:
        """Reads a line holding one non-negative integer."""
        line, fields = self.take(what)
        if len(fields) != 1:
            raise self.error(line, f"expected {what} alone on its line, found {len(fields)} fields")
        if not _INTEGER_RE.fullmatch(fields[0]):
            raise self.error(line, f"{what} must be an integer, found {show_token(fields[0])}")
        value = int(fields[0])
        if value < 0:
            raise self.error(line, f"{what} is negative: {value}")
        return value

    def remaining_line(self) -> int | None:
        """Number of the first unread line, or None when all were read."""
        return self._lines[self._next][0] if self._next < len(self._lines) else None


def _read_body(lines: _Lines, body: str) -> np.ndarray:
    """Reads one body's info, joint-count and joint lines; returns its float64 (25, 3) xyz."""
    line, fields = lines.take_fields(f"the body-info line of {body}", BODY_INFO_FIELDS)
    if not _INTEGER_RE.fullmatch(fields[0]):
        raise lines.error(line, f"bodyID of {body} must be an integer, found "
                                f"{show_token(fields[0])}")
    for k in range(1, BODY_INFO_FIELDS):
        if parse_number_token(fields[k]) is None:
            raise lines.error(line, f"body-info field {k + 1} ({_BODY_INFO_NAMES[k]}) of {body} is "
                                    f"not a number: {show_token(fields[k])}")
    joint_count_line = lines.remaining_line()
    num_joints = lines.take_count(f"the joint count of {body}")
    if num_joints != NUM_JOINTS:
        raise lines.error(joint_count_line,
                          f"the joint count of {body} is {num_joints}, expected {NUM_JOINTS}")
    xyz = np.empty((NUM_JOINTS, 3))
    for j in range(NUM_JOINTS):
        joint = f"joint {j + 1} of {body}"
        line, fields = lines.take_fields(f"the line of {joint}", JOINT_FIELDS)
        for k, field in enumerate(fields):
            value = parse_number_token(field)
            if value is None:
                raise lines.error(line, f"field {k + 1} ({_JOINT_NAMES[k]}) of {joint} is not a "
                                        f"number: {show_token(field)}")
            if k < 3:
                if not in_float32_range(value):
                    raise lines.error(line, f"{_JOINT_NAMES[k]} of {joint} is not a finite "
                                            f"float32: "
                                            f"{show_token(field)}")
                xyz[j, k] = value
    return xyz


def _parse_checked(data: bytes, source: str) -> RawSkeleton:
    """Parses line by line, raising SkeletonFormatError at the first deviation from §1.3."""
    lines = _Lines(data, source)
    if not len(lines):
        raise lines.error(1, "empty file: expected the frame count")
    num_frames = lines.take_count("the frame count")
    body_counts = []
    placed = []  # (slot, frame, xyz); the array is allocated once the frame count is proven
    for f in range(num_frames):
        frame = f"frame {f + 1} of {num_frames}"
        num_bodies = lines.take_count(f"the body count of {frame}")
        body_counts.append(num_bodies)
        for m in range(num_bodies):
            xyz = _read_body(lines, f"body {m + 1} of {num_bodies} in {frame}")
            if m < NUM_SLOTS:
                placed.append((m, f, xyz))
    extra = lines.remaining_line()
    if extra is not None:
        raise lines.error(extra, f"data after the last frame (the header declares {num_frames} "
                                 "frames)")
    bodies = np.zeros((NUM_SLOTS, num_frames, NUM_JOINTS, 3), np.float32)
    for slot, f, xyz in placed:
        bodies[slot, f] = xyz
    return RawSkeleton(num_frames=num_frames, bodies=bodies,
                       body_counts=np.array(body_counts, np.int32))


# ---------------------------------------------------------------------------------------------
# Public entry points.

def parse_skeleton(data: bytes, source: str) -> RawSkeleton:
    """Parses the bytes of one `.skeleton` file.

    Args:
        data: the file content.
        source: where the bytes came from (a path, or "archive.zip:member"), for error messages.

    Returns:
        The file's x, y, z content; see RawSkeleton.

    Raises:
        SkeletonFormatError: the content does not follow the grammar (see the module docstring);
            the message names `source` and the 1-based line.
    """
    text = scan_number_text(data)
    if text is not None:
        raw = _parse_fast(text)
        if raw is not None:
            return raw
    return _parse_checked(data, source)


def read_skeleton_file(path: str | os.PathLike) -> RawSkeleton:
    """Reads and parses one `.skeleton` file.

    Args:
        path: the file.

    Returns:
        The file's x, y, z content; see RawSkeleton.

    Raises:
        SkeletonFormatError: the file does not follow the grammar; the message names the path.
        OSError: the file cannot be read.
    """
    with open(path, "rb") as f:
        data = f.read()
    return parse_skeleton(data, str(path))
