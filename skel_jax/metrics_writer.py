"""Where the training loop and the evaluators send their scalar metrics.

One `MetricsWriter.write_scalars(step, scalars)` call goes to three places:

* `WORKDIR/metrics.jsonl`: one JSON object per call, `{"step": ..., "time": ..., **scalars}`,
  appended and flushed line by line, so a resumed run continues the same file and a crash
  loses nothing already written. Values are floats; NaN and +-inf, which strict JSON lacks,
  are written as the strings "NaN", "Infinity" and "-Infinity" (the spellings `float()`
  parses), and `read_metrics` turns them back into floats.
* `WORKDIR/tensorboard/`: a TensorBoard event file (see `tensorboard_events`).
* The console, through absl logging, as one compact line:
  `step 120 | loss 3.2104 | lr 0.0100 | 152.3 samples/s | 210.0 ms/step`.
  A name of the form `<thing>_per_s` prints as a rate, `<value> <thing>/s`, and one of the form
  `ms_per_<thing>` as a duration, `<value> ms/<thing>`; these unit metrics come last.

Only one process of a multi-host job should write: pass `enabled=jax.process_index() == 0`.
"""

import json
import math
import operator
import os
import sys
import time
from collections.abc import Mapping

import numpy as np
import tqdm
from absl import logging

from skel_jax import tensorboard_events

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"

_RESERVED_KEYS = ("step", "time")
_NON_FINITE_TO_JSON = {math.inf: "Infinity", -math.inf: "-Infinity"}
_JSON_TO_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_RATE_SUFFIX = "_per_s"
_DURATION_PREFIX = "ms_per_"


def _to_float(name, value):
    array = np.asarray(value)
    # Kinds float() would accept wrongly (complex drops its imaginary part, strings parse) or
    # not at all; bfloat16 and the other ml_dtypes floats are kind "V" and convert fine.
    if array.ndim == 0 and array.dtype.kind not in "cSUOMm":
        try:
            return float(array)
        except (TypeError, ValueError):
            pass
    raise TypeError(f"metric {name!r} must be a real scalar, got "
                    f"{type(value).__name__} of dtype {array.dtype} and shape {array.shape}")


def _json_value(value):
    if math.isnan(value):
        return "NaN"
    return _NON_FINITE_TO_JSON.get(value, value)


def format_value(value: float) -> str:
    """Formats a metric for the console with a precision that suits its magnitude.

    Args:
        value: The metric.

    Returns:
        "0" for zero; 4 decimals below 100 (3.2104, 0.0100); 1 decimal below 1e6 (152.3);
        otherwise, and for nonzero values below 1e-3, scientific notation (5.00e-04,
        1.234e+07); "nan", "inf" or "-inf" for non-finite values.
    """
    if value == 0:
        return "0"
    if not math.isfinite(value):
        return str(value)
    magnitude = abs(value)
    if magnitude < 1e-3:
        return f"{value:.2e}"
    if magnitude < 100:
        return f"{value:.4f}"
    if magnitude < 1e6:
        return f"{value:.1f}"
    return f"{value:.3e}"


def _unit_label(name):
    """"samples/s" for "samples_per_s", "ms/step" for "ms_per_step", else None."""
    if name.endswith(_RATE_SUFFIX) and len(name) > len(_RATE_SUFFIX):
        return name[:-len(_RATE_SUFFIX)] + "/s"
    if name.startswith(_DURATION_PREFIX) and len(name) > len(_DURATION_PREFIX):
        return "ms/" + name[len(_DURATION_PREFIX):]
    return None


def format_console_line(step: int, scalars: Mapping[str, float]) -> str:
    """The one-line console summary of a `write_scalars` call.

    Args:
        step: Training step.
        scalars: Metric name to value (floats), in the order to print them.

    Returns:
        `step <step> | <name> <value> | ...`, with rate (`*_per_s`) and duration (`ms_per_*`)
        metrics moved to the end and printed with their units.
    """
    plain, with_units = [f"step {step}"], []
    for name, value in scalars.items():
        label = _unit_label(name)
        if label is None:
            plain.append(f"{name} {format_value(value)}")
        else:
            with_units.append(f"{format_value(value)} {label}")
    return " | ".join(plain + with_units)


def _terminate_partial_line(path):
    # A run killed in the middle of a write can leave a line without its newline; without
    # this, the resumed run's first record would be glued onto it and both would be lost.
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return
    with open(path, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) != b"\n":
            f.write(b"\n")


class MetricsWriter:
    """Writes scalar metrics to `metrics.jsonl`, TensorBoard and the console.

    Args:
        workdir: Run directory; created if missing. Local filesystem only, because the JSONL
            file is appended to.
        enabled: If False, nothing is created or written and every method does nothing (for
            every process but process 0 of a multi-host job).
        console: Whether `write_scalars` also logs a one-line summary.
    """

    def __init__(self, workdir: str | os.PathLike, *, enabled: bool = True,
                 console: bool = True):
        self._enabled = enabled
        self._console = console
        self._closed = False
        if not enabled:
            return
        os.makedirs(workdir, exist_ok=True)
        path = os.path.join(workdir, METRICS_FILE)
        _terminate_partial_line(path)
        self._jsonl = open(path, "a", encoding="utf-8")
        self._events = tensorboard_events.EventFileWriter(os.path.join(workdir, TENSORBOARD_DIR))

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        """Records `scalars` at `step` in every output.

        Args:
            step: Training step (a Python, NumPy or JAX integer).
            scalars: Metric name to value. Values may be Python numbers or NumPy or JAX
                scalars (0-d arrays); they are stored as Python floats.

        Raises:
            TypeError: If `step` is not an integer or a value is not a real scalar.
            ValueError: If the writer is closed, a name is "step", "time" or not a non-empty
                string, or `step` does not fit in an int64.
        """
        if not self._enabled:
            return
        if self._closed:
            raise ValueError("MetricsWriter is closed")
        for name in scalars:
            if name in _RESERVED_KEYS:
                raise ValueError(f"metric name {name!r} is reserved for the record's own field")
        values = {name: _to_float(name, value) for name, value in scalars.items()}
        now = time.time()
        # First, because it validates the step and the names before anything is written.
        self._events.add_scalars(step, values, wall_time=now)
        record = {"step": operator.index(step), "time": now}
        record.update((name, _json_value(value)) for name, value in values.items())
        self._jsonl.write(json.dumps(record, allow_nan=False) + "\n")
        self._jsonl.flush()
        if self._console:
            logging.info(format_console_line(step, values))

    def flush(self) -> None:
        """Pushes buffered TensorBoard records to the operating system."""
        if self._enabled and not self._closed:
            self._events.flush()

    def close(self) -> None:
        """Flushes and closes every output. Calling it again does nothing."""
        if self._enabled and not self._closed:
            self._jsonl.close()
            self._events.close()
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def read_metrics(workdir: str | os.PathLike) -> list[dict]:
    """Loads every record of `WORKDIR/metrics.jsonl`, in the order written.

    A line that is not valid JSON (a write cut short by a crash) is skipped with a warning.

    Args:
        workdir: The run directory given to `MetricsWriter`.

    Returns:
        One dict per `write_scalars` call, with "step" (int), "time" (float) and the metrics
        as floats, non-finite values included.

    Raises:
        FileNotFoundError: If the workdir has no metrics file.
    """
    path = os.path.join(workdir, METRICS_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no {METRICS_FILE} in {os.fspath(workdir)}: was a "
                                "MetricsWriter ever enabled for this workdir?")
    records = []
    with open(path, encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                logging.warning("%s:%d is not valid JSON (a write cut short?); skipped",
                                path, line_number)
                continue
            records.append({k: _JSON_TO_NON_FINITE.get(v, v) if isinstance(v, str) else v
                            for k, v in record.items()})
    return records


class ProgressBar:
    """A tqdm progress bar over training steps, shown only on an interactive terminal.

    Args:
        total_steps: Step count at which the bar is full.
        initial: Step the bar starts at (for a resumed run).
        enabled: True or False to force the bar on or off; None shows it only when stderr is
            a TTY, so that log files and CI output do not fill with carriage returns.
    """

    def __init__(self, total_steps: int, *, initial: int = 0, enabled: bool | None = None):
        if enabled is None:
            enabled = sys.stderr.isatty()
        self._bar = (tqdm.tqdm(total=total_steps, initial=initial, unit="step",
                               file=sys.stderr, dynamic_ncols=True)
                     if enabled else None)

    @property
    def enabled(self) -> bool:
        """Whether the bar is shown."""
        return self._bar is not None

    def update(self, step: int, postfix: Mapping[str, float] | None = None) -> None:
        """Moves the bar to `step` and shows `postfix` (metric name to value) after it.

        Args:
            step: The step just completed.
            postfix: Metrics to show, formatted as on the console line.
        """
        if self._bar is None:
            return
        if postfix:
            text = ", ".join(f"{name}={format_value(_to_float(name, value))}"
                             for name, value in postfix.items())
            # The update below redraws the bar, rate-limited by tqdm; redrawing here too
            # would bypass that limit.
            self._bar.set_postfix_str(text, refresh=False)
        self._bar.update(step - self._bar.n)

    def close(self) -> None:
        """Closes the bar, leaving its last state on the terminal."""
        if self._bar is not None:
            self._bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
