"""MetricsWriter outputs (JSONL, TensorBoard, console), read_metrics and ProgressBar."""

import glob
import io
import json
import logging
import math
import os

import jax.numpy as jnp
import numpy as np
import pytest

from skel_jax import metrics_writer
from tests.test_tensorboard_events import read_events


def _events(logdir):
    (path,) = glob.glob(os.path.join(logdir, "events.out.tfevents.*"))
    return read_events(path)


def _lines(workdir):
    with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_jsonl_records_and_types(tmp_path):
    with metrics_writer.MetricsWriter(tmp_path, console=False) as writer:
        writer.write_scalars(np.int64(10), {"loss": np.float32(2.5), "acc": jnp.asarray(0.25),
                                            "count": np.int32(7), "lr": 0.1})
        writer.write_scalars(20, {"loss": jnp.asarray(1.0, jnp.bfloat16)})
    first, second = _lines(tmp_path)
    assert list(first) == ["step", "time", "loss", "acc", "count", "lr"]
    assert first["step"] == 10 and type(first["step"]) is int
    assert isinstance(first["time"], float) and abs(first["time"] - second["time"]) < 60
    assert first["loss"] == 2.5 and first["acc"] == 0.25 and first["lr"] == 0.1
    assert first["count"] == 7.0 and type(first["count"]) is float
    assert second == {"step": 20, "time": second["time"], "loss": 1.0}
    assert metrics_writer.read_metrics(tmp_path) == [first, second]


def test_each_line_is_on_disk_before_close(tmp_path):
    writer = metrics_writer.MetricsWriter(tmp_path, console=False)
    writer.write_scalars(1, {"loss": 1.0})
    assert [r["loss"] for r in metrics_writer.read_metrics(tmp_path)] == [1.0]
    writer.close()


def test_resumed_run_appends(tmp_path):
    with metrics_writer.MetricsWriter(tmp_path, console=False) as writer:
        writer.write_scalars(1, {"loss": 3.0})
        writer.write_scalars(2, {"loss": 2.0})
    with metrics_writer.MetricsWriter(tmp_path, console=False) as writer:
        writer.write_scalars(3, {"loss": 1.0})
    records = metrics_writer.read_metrics(tmp_path)
    assert [(r["step"], r["loss"]) for r in records] == [(1, 3.0), (2, 2.0), (3, 1.0)]
    # One event file, or two if the writers opened in different seconds.
    paths = glob.glob(os.path.join(tmp_path, "tensorboard", "events.out.tfevents.*"))
    steps = sorted(e["step"] for path in paths for e in read_events(path) if e["scalars"])
    assert steps == [1, 2, 3]


def test_partial_last_line_is_skipped_and_not_glued_to_the_next(tmp_path, caplog):
    with metrics_writer.MetricsWriter(tmp_path, console=False) as writer:
        writer.write_scalars(1, {"loss": 3.0})
    with open(tmp_path / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write('{"step": 2, "ti')
    with metrics_writer.MetricsWriter(tmp_path, console=False) as writer:
        writer.write_scalars(3, {"loss": 1.0})
    with caplog.at_level(logging.WARNING):
        records = metrics_writer.read_metrics(tmp_path)
    assert [r["step"] for r in records] == [1, 3]
    assert "metrics.jsonl:2 is not valid JSON" in caplog.text


def test_non_finite_values(tmp_path):
    with metrics_writer.MetricsWriter(tmp_path, console=False) as writer:
        writer.write_scalars(1, {"nan": np.float32("nan"), "inf": math.inf, "ninf": -jnp.inf})
    with open(tmp_path / "metrics.jsonl", encoding="utf-8") as f:
        line = f.read()
    # Strict JSON: Python's parser must not need its NaN extension.
    strict = json.loads(line, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert (strict["nan"], strict["inf"], strict["ninf"]) == ("NaN", "Infinity", "-Infinity")
    (record,) = metrics_writer.read_metrics(tmp_path)
    assert math.isnan(record["nan"])
    assert record["inf"] == math.inf and record["ninf"] == -math.inf


def test_disabled_writer_creates_nothing(tmp_path):
    workdir = tmp_path / "run"
    with metrics_writer.MetricsWriter(workdir, enabled=False) as writer:
        writer.write_scalars(1, {"loss": "not even checked"})
        writer.flush()
    writer.write_scalars(2, {"loss": 1.0})
    assert not workdir.exists()


def test_tensorboard_gets_the_same_scalars(tmp_path):
    with metrics_writer.MetricsWriter(tmp_path, console=False) as writer:
        writer.write_scalars(5, {"loss": 0.5, "acc": np.float64(0.75), "bad": math.nan})
    (jsonl,) = metrics_writer.read_metrics(tmp_path)
    version, event = _events(tmp_path / "tensorboard")
    assert version["file_version"] == "brain.Event:2"
    assert event["step"] == 5 and event["wall_time"] == jsonl["time"]
    assert event["scalars"]["loss"] == 0.5 and event["scalars"]["acc"] == 0.75
    assert math.isnan(event["scalars"]["bad"])


def test_console_line_is_logged(tmp_path, caplog):
    with metrics_writer.MetricsWriter(tmp_path) as writer, caplog.at_level(logging.INFO):
        writer.write_scalars(120, {"loss": 3.21041, "samples_per_s": 152.31, "lr": 0.01,
                                   "ms_per_step": 210.04, "acc_seq": 0.412})
    assert ("step 120 | loss 3.2104 | lr 0.0100 | acc_seq 0.4120 | 152.3 samples/s | "
            "210.0 ms/step") in caplog.messages


def test_console_can_be_silenced(tmp_path, caplog):
    with metrics_writer.MetricsWriter(tmp_path, console=False) as writer, \
            caplog.at_level(logging.INFO):
        writer.write_scalars(1, {"loss": 1.0})
    assert not [m for m in caplog.messages if m.startswith("step ")]


@pytest.mark.parametrize("value, text", [
    (0.0, "0"), (-0.0, "0"), (3.21041, "3.2104"), (0.01, "0.0100"), (-42.0, "-42.0000"),
    (99.99999, "100.0000"), (152.31, "152.3"), (123456.0, "123456.0"), (1.234e7, "1.234e+07"),
    (5e-4, "5.00e-04"), (math.nan, "nan"), (math.inf, "inf"), (-math.inf, "-inf"),
])
def test_format_value(value, text):
    assert metrics_writer.format_value(value) == text


def test_unit_names_need_a_stem():
    line = metrics_writer.format_console_line(3, {"_per_s": 1.0, "ms_per_": 2.0,
                                                  "steps_per_s": 4.0})
    assert line == "step 3 | _per_s 1.0000 | ms_per_ 2.0000 | 4.0000 steps/s"


@pytest.mark.parametrize("step, scalars, error, message", [
    (1, {"step": 1.0}, ValueError, "'step' is reserved"),
    (1, {"time": 1.0}, ValueError, "'time' is reserved"),
    (1, {"loss": np.ones(2)}, TypeError, r"'loss' must be a real scalar, got ndarray .*\(2,\)"),
    (1, {"loss": "1.0"}, TypeError, "'loss' must be a real scalar, got str"),
    (1, {"loss": 1 + 2j}, TypeError, "'loss' must be a real scalar, got complex"),
    (1, {"loss": None}, TypeError, "'loss' must be a real scalar, got NoneType"),
    (1, {7: 1.0}, ValueError, "non-empty strings, got 7"),
    (1.0, {"loss": 1.0}, TypeError, "step must be an integer, got float"),
])
def test_invalid_input_writes_nothing(tmp_path, step, scalars, error, message):
    with metrics_writer.MetricsWriter(tmp_path, console=False) as writer:
        with pytest.raises(error, match=message):
            writer.write_scalars(step, scalars)
    assert metrics_writer.read_metrics(tmp_path) == []
    assert len(_events(tmp_path / "tensorboard")) == 1


def test_closed_writer_refuses_writes(tmp_path):
    writer = metrics_writer.MetricsWriter(tmp_path, console=False)
    writer.close()
    writer.close()
    writer.flush()
    with pytest.raises(ValueError, match="MetricsWriter is closed"):
        writer.write_scalars(1, {"loss": 1.0})


def test_read_metrics_without_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no metrics.jsonl in .*MetricsWriter"):
        metrics_writer.read_metrics(tmp_path)


def test_progress_bar_off_when_stderr_is_not_a_tty(monkeypatch):
    stderr = io.StringIO()
    monkeypatch.setattr("sys.stderr", stderr)
    with metrics_writer.ProgressBar(100) as bar:
        assert not bar.enabled
        bar.update(10, {"loss": 1.0})
    with metrics_writer.ProgressBar(100, enabled=False) as bar:
        bar.update(10, {"loss": 1.0})
    assert stderr.getvalue() == ""


def test_progress_bar_on_when_stderr_is_a_tty(monkeypatch):
    stderr = io.StringIO()
    stderr.isatty = lambda: True
    monkeypatch.setattr("sys.stderr", stderr)
    bar = metrics_writer.ProgressBar(100)
    assert bar.enabled
    bar.close()


def test_progress_bar_forced_on(monkeypatch):
    stderr = io.StringIO()
    monkeypatch.setattr("sys.stderr", stderr)
    with metrics_writer.ProgressBar(200, initial=50, enabled=True) as bar:
        bar.update(80, {"loss": np.float32(0.5), "lr": 1e-4})
        bar.update(120)
    output = stderr.getvalue()
    assert "50/200" in output
    assert "120/200" in output
    assert "loss=0.5000, lr=1.00e-04" in output
    with metrics_writer.ProgressBar(10, enabled=True) as bar:
        with pytest.raises(TypeError, match="'loss' must be a real scalar"):
            bar.update(1, {"loss": "x"})
