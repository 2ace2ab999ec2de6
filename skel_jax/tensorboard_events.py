"""TensorBoard scalar event files, written without TensorFlow or protobuf.

An event file is a sequence of TFRecord records. Each record is

    uint64 length | uint32 masked_crc32c(length bytes) | data | uint32 masked_crc32c(data)

(little-endian), and each record's data is a serialized `tensorflow.Event`. Only the fields
that scalar logging needs are encoded here:

    Event:         1 wall_time (double), 2 step (int64), 3 file_version (string),
                   5 summary (Summary)
    Summary:       1 value (repeated Summary.Value)
    Summary.Value: 1 tag (string), 2 simple_value (float)

The first record of a file carries `file_version = "brain.Event:2"`, which tells TensorBoard to
purge orphaned steps only on an explicit restart marker, so the steps of a resumed run that
repeat earlier ones are kept rather than silently dropped.
"""

import operator
import os
import socket
import struct
import time
from collections.abc import Mapping

FILE_VERSION = "brain.Event:2"

_CRC32C_POLY = 0x82F63B78  # Castagnoli, bit-reflected.
_CRC_MASK_DELTA = 0xA282EAD8
_UINT32 = 0xFFFFFFFF
_UINT64 = 0xFFFFFFFFFFFFFFFF
_INT64_RANGE = range(-(2**63), 2**63)

# Protobuf wire types.
_VARINT = 0
_FIXED64 = 1
_LENGTH_DELIMITED = 2
_FIXED32 = 5


def _make_crc32c_table():
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _CRC32C_POLY if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC32C_TABLE = _make_crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of `data`, as used by TFRecord framing.

    Args:
        data: Bytes to checksum.

    Returns:
        The checksum as an unsigned 32-bit integer.
    """
    table = _CRC32C_TABLE
    crc = _UINT32
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ _UINT32


def masked_crc32c(data: bytes) -> int:
    """The masked CRC-32C that TFRecord stores next to the length and the data.

    TFRecord masks its checksums because a CRC computed over bytes that themselves contain
    CRCs is weak; the mask is a rotation by 15 bits plus a constant.

    Args:
        data: Bytes to checksum.

    Returns:
        ((crc >> 15) | (crc << 17)) + 0xa282ead8, modulo 2**32.
    """
    crc = crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & _UINT32) + _CRC_MASK_DELTA) & _UINT32


def _varint(value):
    # Negative int64 values are encoded as their 64-bit two's complement (10 bytes).
    value &= _UINT64
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _key(field, wire_type):
    return _varint((field << 3) | wire_type)


def _length_delimited(field, payload):
    return _key(field, _LENGTH_DELIMITED) + _varint(len(payload)) + payload


def _float32(value):
    try:
        return struct.pack("<f", value)
    except OverflowError:
        # Beyond float32's range: store the infinity that a float32 cast would give.
        return struct.pack("<f", float("inf") if value > 0 else float("-inf"))


def _encode_summary_value(tag, value):
    return (_length_delimited(1, tag.encode("utf-8"))
            + _key(2, _FIXED32) + _float32(value))


def _encode_event(wall_time, *, step=None, file_version=None, summary_values=()):
    parts = [_key(1, _FIXED64), struct.pack("<d", wall_time)]
    if step is not None:
        parts += [_key(2, _VARINT), _varint(step)]
    if file_version is not None:
        parts.append(_length_delimited(3, file_version.encode("utf-8")))
    if summary_values:
        summary = b"".join(_length_delimited(1, _encode_summary_value(tag, value))
                           for tag, value in summary_values)
        parts.append(_length_delimited(5, summary))
    return b"".join(parts)


def _frame_record(data):
    header = struct.pack("<Q", len(data))
    return (header + struct.pack("<I", masked_crc32c(header))
            + data + struct.pack("<I", masked_crc32c(data)))


def _check_step(step):
    try:
        step = operator.index(step)
    except TypeError:
        raise TypeError(f"step must be an integer, got {type(step).__name__}") from None
    if step not in _INT64_RANGE:
        raise ValueError(f"step {step} does not fit in an int64")
    return step


def _check_scalar(tag, value):
    if not isinstance(tag, str) or not tag:
        raise ValueError(f"scalar tags must be non-empty strings, got {tag!r}")
    # float() would parse a string, which is never a scalar metric.
    if isinstance(value, (str, bytes)):
        raise TypeError(f"scalar {tag!r} must be a real number, got {type(value).__name__}")
    try:
        return tag, float(value)
    except (TypeError, ValueError) as error:
        raise TypeError(f"scalar {tag!r} must be a real number, got "
                        f"{type(value).__name__}: {error}") from None


class EventFileWriter:
    """Appends scalar summaries to one TensorBoard event file in `logdir`.

    The file is named `events.out.tfevents.<unix time, 10 digits>.<hostname>`, the pattern
    TensorBoard scans for. A writer opened in the same second on the same host as an earlier
    one appends to that writer's file, which TensorBoard reads as one stream of records.

    Records are buffered and reach the disk on `flush()`, on `close()`, and on the first
    `add_scalars` call that comes `flush_secs` or more after the previous flush; no background
    thread is involved.

    Args:
        logdir: Directory for the event file; created if missing. Local filesystem only.
        flush_secs: Longest time, in seconds, that written records may stay buffered (checked
            at each `add_scalars`).
    """

    def __init__(self, logdir: str | os.PathLike, *, flush_secs: float = 10.0):
        os.makedirs(logdir, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}"
        self.path = os.path.join(os.fspath(logdir), name)
        self._flush_secs = flush_secs
        self._file = open(self.path, "ab")
        self._file.write(_frame_record(_encode_event(time.time(), file_version=FILE_VERSION)))
        self.flush()

    def add_scalars(self, step: int, scalars: Mapping[str, float],
                    wall_time: float | None = None) -> None:
        """Writes one event that holds every scalar of `scalars` at `step`.

        Args:
            step: Training step (any integer, including NumPy and JAX integer scalars).
            scalars: Tag to value. Values are stored as float32, so values beyond float32's
                range become +-inf. An empty mapping writes nothing.
            wall_time: Seconds since the epoch; defaults to now.

        Raises:
            TypeError: If `step` is not an integer or a value is not a real number.
            ValueError: If the writer is closed, `step` does not fit in an int64, or a tag is
                not a non-empty string.
        """
        if self._file.closed:
            raise ValueError(f"EventFileWriter for {self.path} is closed")
        step = _check_step(step)
        values = [_check_scalar(tag, value) for tag, value in scalars.items()]
        if not values:
            return
        wall_time = time.time() if wall_time is None else float(wall_time)
        event = _encode_event(wall_time, step=step, summary_values=values)
        self._file.write(_frame_record(event))
        if time.monotonic() - self._last_flush >= self._flush_secs:
            self.flush()

    def flush(self) -> None:
        """Pushes buffered records to the operating system; a no-op once closed."""
        if not self._file.closed:
            self._file.flush()
        self._last_flush = time.monotonic()

    def close(self) -> None:
        """Flushes and closes the file. Calling it again does nothing."""
        self.flush()
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
