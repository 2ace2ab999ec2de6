"""Event files against CRC-32C test vectors, a hand-written decoder and TensorBoard's reader."""

import glob
import math
import os
import re
import socket
import struct

import numpy as np
import pytest

from skel_jax import tensorboard_events


def _bitwise_crc32c(data):
    # Bit-at-a-time, so that it shares nothing with the table-driven version under test.
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 * (crc & 1))
    return crc ^ 0xFFFFFFFF


def _masked(crc):
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def _read_records(path):
    with open(path, "rb") as f:
        blob = f.read()
    records, pos = [], 0
    while pos < len(blob):
        header = blob[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        (header_crc,) = struct.unpack("<I", blob[pos + 8:pos + 12])
        assert header_crc == _masked(_bitwise_crc32c(header))
        data = blob[pos + 12:pos + 12 + length]
        assert len(data) == length, "truncated record"
        (data_crc,) = struct.unpack("<I", blob[pos + 12 + length:pos + 16 + length])
        assert data_crc == _masked(_bitwise_crc32c(data))
        records.append(data)
        pos += 16 + length
    return records


def _read_varint(buf, pos):
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _decode_fields(buf):
    """Protobuf message -> list of (field number, wire type, raw value)."""
    fields, pos = [], 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        field, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, pos = _read_varint(buf, pos)
        elif wire_type == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire_type == 2:
            length, pos = _read_varint(buf, pos)
            value, pos = buf[pos:pos + length], pos + length
        elif wire_type == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise AssertionError(f"unexpected wire type {wire_type}")
        fields.append((field, wire_type, value))
    return fields


def _decode_event(data):
    """Event bytes -> dict with wall_time, step, file_version and scalars (tag -> float)."""
    event = {"step": 0, "scalars": {}}
    for field, wire_type, value in _decode_fields(data):
        if (field, wire_type) == (1, 1):
            event["wall_time"] = struct.unpack("<d", value)[0]
        elif (field, wire_type) == (2, 0):
            event["step"] = value - 2**64 if value >= 2**63 else value
        elif (field, wire_type) == (3, 2):
            event["file_version"] = value.decode("utf-8")
        elif (field, wire_type) == (5, 2):
            for summary_field, summary_wire, value_bytes in _decode_fields(value):
                assert (summary_field, summary_wire) == (1, 2)
                parts = {(f, w): v for f, w, v in _decode_fields(value_bytes)}
                tag = parts[(1, 2)].decode("utf-8")
                event["scalars"][tag] = struct.unpack("<f", parts[(2, 5)])[0]
        else:
            raise AssertionError(f"unexpected field {field} (wire type {wire_type})")
    return event


def read_events(path):
    """Decoded events of one event file, each checked against both of its CRCs."""
    return [_decode_event(record) for record in _read_records(path)]


def _events(logdir):
    (path,) = glob.glob(os.path.join(logdir, "events.out.tfevents.*"))
    return read_events(path)


@pytest.mark.parametrize("data, expected", [
    (b"", 0x00000000),
    (b"123456789", 0xE3069283),
    (b"a", 0xC1D04330),
    (bytes(32), 0x8A9136AA),  # RFC 3720 B.4
    (b"\xff" * 32, 0x62A8AB43),
    (bytes(range(32)), 0x46DD794E),
    (bytes(range(31, -1, -1)), 0x113FDB5C),
])
def test_crc32c_known_vectors(data, expected):
    assert tensorboard_events.crc32c(data) == expected
    assert _bitwise_crc32c(data) == expected


def test_crc32c_matches_bitwise_on_random_bytes():
    rng = np.random.default_rng(0)
    for size in (1, 7, 64, 1000):
        data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        assert tensorboard_events.crc32c(data) == _bitwise_crc32c(data)


def test_masked_crc32c():
    # 0xE3069283 rotated right by 15 bits is 0x2507C60D; plus 0xA282EAD8 modulo 2**32.
    assert tensorboard_events.masked_crc32c(b"123456789") == 0xC78AB0E5


def test_file_name_and_version_record(tmp_path):
    with tensorboard_events.EventFileWriter(tmp_path / "tb") as writer:
        pass
    pattern = r"events\.out\.tfevents\.\d{10}\." + re.escape(socket.gethostname())
    assert re.fullmatch(pattern, os.path.basename(writer.path))
    (event,) = _events(tmp_path / "tb")
    assert event["file_version"] == "brain.Event:2"
    assert event["scalars"] == {}


def test_scalars_round_trip(tmp_path):
    with tensorboard_events.EventFileWriter(tmp_path) as writer:
        writer.add_scalars(0, {"loss": 3.25, "lr": 0.01}, wall_time=1234.5)
        writer.add_scalars(np.int64(120), {"loss": np.float32(1.5), "acc/top1": 0.4})
        writer.add_scalars(2**40, {"ünïcode": -2.0})
        writer.add_scalars(-3, {"negative_step": 1.0})
    events = _events(tmp_path)
    assert [e["step"] for e in events[1:]] == [0, 120, 2**40, -3]
    assert events[1]["wall_time"] == 1234.5
    assert events[1]["scalars"] == {"loss": 3.25, "lr": pytest.approx(0.01)}
    assert events[2]["scalars"] == {"loss": 1.5, "acc/top1": pytest.approx(0.4)}
    assert events[3]["scalars"] == {"ünïcode": -2.0}


def test_non_finite_and_out_of_float32_range(tmp_path):
    with tensorboard_events.EventFileWriter(tmp_path) as writer:
        writer.add_scalars(1, {"nan": math.nan, "inf": math.inf, "big": 1e300, "small": -1e300})
    scalars = _events(tmp_path)[1]["scalars"]
    assert math.isnan(scalars["nan"])
    assert scalars["inf"] == math.inf
    assert scalars["big"] == math.inf and scalars["small"] == -math.inf


def test_empty_scalars_write_nothing(tmp_path):
    with tensorboard_events.EventFileWriter(tmp_path) as writer:
        writer.add_scalars(5, {})
    assert len(_events(tmp_path)) == 1


def test_flush_policy(tmp_path):
    lazy = tensorboard_events.EventFileWriter(tmp_path / "lazy", flush_secs=3600)
    size = os.path.getsize(lazy.path)
    assert size > 0, "the version record is flushed at open"
    lazy.add_scalars(1, {"x": 1.0})
    assert os.path.getsize(lazy.path) == size
    lazy.flush()
    assert os.path.getsize(lazy.path) > size
    lazy.close()

    eager = tensorboard_events.EventFileWriter(tmp_path / "eager", flush_secs=0)
    size = os.path.getsize(eager.path)
    eager.add_scalars(1, {"x": 1.0})
    assert os.path.getsize(eager.path) > size
    eager.close()


def test_reopening_appends(tmp_path, monkeypatch):
    monkeypatch.setattr(tensorboard_events.time, "time", lambda: 1700000000.0)
    with tensorboard_events.EventFileWriter(tmp_path) as writer:
        writer.add_scalars(1, {"x": 1.0})
    with tensorboard_events.EventFileWriter(tmp_path) as writer:
        writer.add_scalars(2, {"x": 2.0})
    assert os.path.basename(writer.path).startswith("events.out.tfevents.1700000000.")
    events = _events(tmp_path)
    assert [e.get("file_version") for e in events] == ["brain.Event:2", None] * 2
    assert [e["scalars"] for e in events[1::2]] == [{"x": 1.0}, {"x": 2.0}]


def test_close_is_idempotent_and_final(tmp_path):
    writer = tensorboard_events.EventFileWriter(tmp_path)
    writer.close()
    writer.close()
    writer.flush()
    with pytest.raises(ValueError, match="is closed"):
        writer.add_scalars(1, {"x": 1.0})


@pytest.mark.parametrize("step, scalars, error, message", [
    (1.5, {"x": 1.0}, TypeError, "step must be an integer, got float"),
    (2**63, {"x": 1.0}, ValueError, "does not fit in an int64"),
    (1, {"": 1.0}, ValueError, "non-empty strings"),
    (1, {3: 1.0}, ValueError, "non-empty strings"),
    (1, {"x": "1.0"}, TypeError, "'x' must be a real number, got str"),
    (1, {"x": None}, TypeError, "'x' must be a real number, got NoneType"),
    (1, {"x": np.zeros(3)}, TypeError, "'x' must be a real number, got ndarray"),
])
def test_invalid_input(tmp_path, step, scalars, error, message):
    with tensorboard_events.EventFileWriter(tmp_path) as writer:
        with pytest.raises(error, match=message):
            writer.add_scalars(step, scalars)
    assert len(_events(tmp_path)) == 1, "nothing written for a rejected call"


def test_tensorboard_reads_the_file(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.compat.tensorflow_stub import pywrap_tensorflow

    for data in (b"", b"123456789", bytes(range(256))):
        assert tensorboard_events.masked_crc32c(data) == pywrap_tensorflow.masked_crc32c(data)

    with tensorboard_events.EventFileWriter(tmp_path) as writer:
        for step in range(0, 50, 10):
            writer.add_scalars(step, {"train/loss": 1.0 / (step + 1), "lr": 0.1})
    accumulator = event_accumulator.EventAccumulator(str(tmp_path))
    accumulator.Reload()
    assert sorted(accumulator.Tags()["scalars"]) == ["lr", "train/loss"]
    loss = accumulator.Scalars("train/loss")
    assert [s.step for s in loss] == [0, 10, 20, 30, 40]
    np.testing.assert_allclose([s.value for s in loss], [1.0 / (s + 1) for s in range(0, 50, 10)],
                               rtol=1e-7)
