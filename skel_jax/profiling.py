"""Where a compiled step spends its time: a JAX profiler trace summed per XLA operation.

``trace_calls`` runs calls of a compiled function under ``jax.profiler.trace``;
``op_breakdown`` reads the trace back and attributes the exclusive time of every executed HLO
instruction to its kind (the instruction name without its numeric suffix: ``ynn_fusion``,
``copy_bitcast_fusion``, ...), to its pass (``op_pass``) and to the JAX operation it came from
(the instruction's ``op_name`` metadata). Exclusive time matters because the body of a
``while`` loop (a ``lax.scan``) runs inside the loop's own event.

  python -m skel_jax.benchmark train --config=configs/ntu60.py:xsub --batch_size=16 --steps=2 \\
      --profile_dir=/tmp/profile
"""

from __future__ import annotations

import bisect
import collections
import gzip
import json
import pathlib
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax

# One HLO instruction of a compiled module's text: ``%name = ...``, possibly ``ROOT %name``.
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.*)$")
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_SUFFIX = re.compile(r"\.\d+$")
TRACE_FILE = "perfetto_trace.json.gz"


def instruction_sources(hlo_text: str) -> dict[str, str]:
    """Maps each instruction of a compiled HLO module's text to its ``op_name`` metadata.

    Args:
      hlo_text: ``compiled.as_text()`` of a ``jax.stages.Compiled``.

    Returns:
      {instruction name: op_name}, op_name "" when the instruction carries none. Instructions
      of every computation (loop bodies and fusions included) are listed.
    """
    sources = {}
    for line in hlo_text.splitlines():
        match = _INSTRUCTION.match(line)
        if match:
            source = _OP_NAME.search(match.group(2))
            sources[match.group(1)] = source.group(1) if source else ""
    return sources


def op_kind(name: str) -> str:
    """An instruction's kind: its name without XLA's ``.N`` uniquifying suffix."""
    return _SUFFIX.sub("", name)


def op_pass(source: str) -> str:
    """The pass an instruction belongs to, from its ``op_name``.

    ``backward``: made by JAX's transpose (reverse-mode) rules, custom VJPs included;
    ``forward``: the forward pass of a differentiated function (the query encoders and the loss
    in a training step); ``undifferentiated``: everything else (augmentation, the key encoders,
    the optimizer update, the queues).
    """
    if "transpose(" in source:
        return "backward"
    return "forward" if "jvp(" in source else "undifferentiated"


_WRAPPER = re.compile(r"^(?:transpose|jvp|vmap|remat|checkpoint|pjit)\((.*)\)$")
_CONTROL = re.compile(r"^(?:while|body|cond|closed_call|branch_\d+_fun)$")


def op_source(source: str) -> str:
    """The JAX operation behind an ``op_name``, without the wrappers autodiff and control flow add.

    ``jit(f)/transpose(jvp(tni,dgi->tdng))/dot_general`` and ``jit(f)/jvp(tni,dgi->tdng)/
    dot_general`` both give ``tni,dgi->tdng/dot_general`` (an einsum's spec names it), and
    ``jit(f)/jvp()/while/body/closed_call/dnh,dhg->dng/dot_general`` gives
    ``dnh,dhg->dng/dot_general``. Empty metadata gives ``?``.
    """
    parts = []
    for part in source.split("/")[1:]:  # The first part names the jitted function.
        while (match := _WRAPPER.match(part)):
            part = match.group(1)
        if part and not _CONTROL.match(part):
            parts.append(part)
    return "/".join(parts) or "?"


def _by_thread(events: Iterable[Mapping[str, Any]]) -> dict[tuple, list[Mapping[str, Any]]]:
    """Complete ("X") events per (pid, tid), outer events first when two start together."""
    threads = collections.defaultdict(list)
    for event in events:
        if event.get("ph") == "X" and "dur" in event:
            threads[(event.get("pid"), event.get("tid"))].append(event)
    for thread_events in threads.values():
        thread_events.sort(key=lambda e: (float(e["ts"]), -float(e["dur"])))
    return threads


def exclusive_times(events: Iterable[Mapping[str, Any]]) -> list[tuple[str, float]]:
    """Each complete ("X") trace event's duration minus its directly nested events', per thread.

    Args:
      events: Chrome/Perfetto trace events with ``ph``, ``pid``, ``tid``, ``ts``, ``dur``
        (microseconds) and ``name``.

    Returns:
      (name, exclusive microseconds) for every complete event, in start order per thread.
    """
    return _exclusive(_by_thread(events))


def _exclusive(threads: Mapping[tuple, list[Mapping[str, Any]]]) -> list[tuple[str, float]]:
    result = []
    for thread_events in threads.values():
        stack: list[list] = []  # [end, name, exclusive]
        for event in thread_events:
            start, duration = float(event["ts"]), float(event["dur"])
            while stack and stack[-1][0] <= start:
                result.append(tuple(stack.pop()[1:]))
            if stack:
                stack[-1][2] -= duration
            stack.append([start + duration, event["name"], duration])
        result.extend(tuple(entry[1:]) for entry in reversed(stack))
    return [(name, max(exclusive, 0.0)) for name, exclusive in result]


def op_breakdown(events: Iterable[Mapping[str, Any]], sources: Mapping[str, str], calls: int,
                 top: int = 15) -> dict[str, Any]:
    """Sums the exclusive time of the compiled module's instructions, per call.

    Args:
      events: the trace's events (``load_trace_events``).
      sources: ``instruction_sources`` of the traced module; events of other names (Python,
        the runtime, other modules) are left out.
      calls: how many calls of the module the trace holds.
      top: how many of the costliest instructions and sources to list.

    Returns:
      Dict with ``op_ms`` (all instructions, summed over threads, per call),
      ``busy_ms_per_thread`` (per thread that ran instructions, the time it spent in them per
      call, busiest first); ``alone_ms``, the time of outermost instructions during which no
      other thread ran one, and its split ``alone_by_kind`` and ``alone_by_source``;
      ``by_kind``, ``by_pass`` and ``by_source`` (``op_kind``, ``op_pass``, ``op_source``).
      The splits are {name: ms per call}, costliest first; those by source keep the ``top``
      costliest. ``top_ops`` lists the ``top`` costliest instructions as {name, ms, source}.

    Raises:
      ValueError: ``calls`` is not positive, or no event of the module is in the trace.
    """
    if calls < 1:
        raise ValueError(f"calls must be positive, got {calls}")
    # Only instructions count, and only nested instructions are subtracted: the runtime's own
    # events inside an instruction (thread-pool waits) are part of its time.
    threads = _by_thread(e for e in events if e.get("name") in sources)
    per_op = collections.Counter()
    for name, exclusive in _exclusive(threads):
        per_op[name] += exclusive / 1e3 / calls
    if not per_op:
        raise ValueError("The trace holds no operation of the compiled step: was it traced?")
    by_kind, by_pass, by_source = (collections.Counter() for _ in range(3))
    for name, ms in per_op.items():
        by_kind[op_kind(name)] += ms
        by_pass[op_pass(sources[name])] += ms
        by_source[op_source(sources[name])] += ms
    busy, alone = _thread_overlap(threads)
    alone_by_kind, alone_by_source = collections.Counter(), collections.Counter()
    for name, us in alone.items():
        alone_by_kind[op_kind(name)] += us / 1e3 / calls
        alone_by_source[op_source(sources[name])] += us / 1e3 / calls
    return {
        "op_ms": sum(per_op.values()),
        "busy_ms_per_thread": sorted((ms / 1e3 / calls for ms in busy), reverse=True),
        "alone_ms": sum(alone.values()) / 1e3 / calls,
        "alone_by_kind": dict(alone_by_kind.most_common()),
        "alone_by_source": dict(alone_by_source.most_common(top)),
        "by_kind": dict(by_kind.most_common()),
        "by_pass": dict(by_pass.most_common()),
        "by_source": dict(by_source.most_common(top)),
        "top_ops": [{"name": name, "ms": ms, "source": sources[name]}
                    for name, ms in per_op.most_common(top)],
    }


def _thread_overlap(threads: Mapping[tuple, list[Mapping[str, Any]]]
                    ) -> tuple[list[float], collections.Counter]:
    """Each thread's time in instructions, and instruction time with no other thread in one.

    A thread outside any instruction may still be working: the trace does not name the parallel
    parts of another thread's instruction (library thread-pool tasks) after the instruction.

    Args:
      threads: ``_by_thread`` of the instructions' events.

    Returns:
      (busy microseconds per thread, {instruction: microseconds during which it was an
      outermost instruction and no other thread ran one}).
    """
    spans = {key: [(float(e["ts"]), float(e["ts"]) + float(e["dur"]), e["name"])
                   for e in thread_events] for key, thread_events in threads.items()}
    merged = {key: _merged(thread_spans) for key, thread_spans in spans.items()}
    busy = [sum(stop - start for start, stop in intervals) for intervals in merged.values()]
    alone = collections.Counter()
    for key, thread_spans in spans.items():
        others = _merged([interval for other, intervals in merged.items() if other != key
                          for interval in intervals])
        starts = [start for start, _ in others]
        end = float("-inf")
        for start, stop, name in thread_spans:  # Already outer-first (``_by_thread``).
            if start < end:  # Nested in an instruction already counted (a loop's body).
                continue
            end = stop
            alone[name] += (stop - start) - _overlap(others, starts, start, stop)
    return busy, alone


def _merged(spans: Iterable[tuple]) -> list[tuple[float, float]]:
    """The union of intervals (start, end, ...) as sorted, disjoint (start, end) pairs."""
    result: list[tuple[float, float]] = []
    for start, stop, *_ in sorted(spans):
        if result and start <= result[-1][1]:
            result[-1] = (result[-1][0], max(result[-1][1], stop))
        else:
            result.append((start, stop))
    return result


def _overlap(merged: list[tuple[float, float]], starts: list[float], start: float,
             stop: float) -> float:
    """How much of [start, stop) sorted disjoint intervals (with their starts) cover."""
    total = 0.0
    index = max(bisect.bisect_right(starts, start) - 1, 0)
    while index < len(merged) and merged[index][0] < stop:
        total += max(0.0, min(stop, merged[index][1]) - max(start, merged[index][0]))
        index += 1
    return total


def load_trace_events(profile_dir: str | pathlib.Path) -> list[dict]:
    """The events of the newest trace ``jax.profiler.trace`` wrote under ``profile_dir``.

    Raises:
      FileNotFoundError: no ``perfetto_trace.json.gz`` under the directory.
    """
    traces = sorted(pathlib.Path(profile_dir).glob(f"**/{TRACE_FILE}"),
                    key=lambda path: path.stat().st_mtime)
    if not traces:
        raise FileNotFoundError(f"No {TRACE_FILE} under {profile_dir}: the profiler wrote no "
                                "trace there.")
    with gzip.open(traces[-1], "rt") as f:
        return json.load(f)["traceEvents"]


def trace_calls(call: Callable[[], Any], calls: int, profile_dir: str | pathlib.Path) -> None:
    """Runs ``call()`` ``calls`` times under the profiler.

    Args:
      call: one call of the compiled function, which waits for its result (and keeps whatever
        state the next call needs, e.g. a donated train state).
      calls: number of traced calls.
      profile_dir: where the trace is written (``TRACE_FILE`` in a dated subdirectory).
    """
    with jax.profiler.trace(str(profile_dir), create_perfetto_trace=True):
        for _ in range(calls):
            call()


def format_breakdown(breakdown: Mapping[str, Any], wall_ms: float, kinds: int = 10) -> str:
    """A readable table of ``op_breakdown``'s result next to the wall time of one call."""
    busy = ", ".join(f"{ms:.0f}" for ms in breakdown["busy_ms_per_thread"])
    lines = [f"op time {breakdown['op_ms']:.1f} ms per step (summed over threads), "
             f"wall {wall_ms:.1f} ms, threads in instructions {busy} ms"]
    lines.append(f"run alone (no other thread in an instruction) {breakdown['alone_ms']:.1f} ms")
    for label, split in (("kind", "alone_by_kind"), ("source", "alone_by_source")):
        lines.append(f"  by {label}: " + ", ".join(
            f"{name} {ms:.1f}" for name, ms in list(breakdown[split].items())[:kinds // 2]))
    lines.append("by pass: " + ", ".join(f"{name} {ms:.1f} ms"
                                         for name, ms in breakdown["by_pass"].items()))
    for split in ("by_kind", "by_source"):
        lines.append(f"{split.replace('_', ' ')}:")
        lines += [f"  {ms:9.1f} ms  {name}"
                  for name, ms in list(breakdown[split].items())[:kinds]]
    lines.append("costliest operations:")
    lines += [f"  {op['ms']:9.1f} ms  {op['name']}  <- {op['source'] or '?'}"
              for op in breakdown["top_ops"]]
    return "\n".join(lines)
