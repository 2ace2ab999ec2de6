"""Tests for the per-operation breakdown of profiler traces (`skel_jax.profiling`)."""

import gzip
import json

import jax
import jax.numpy as jnp
import pytest

from skel_jax import benchmark
from skel_jax import profiling

HLO = """HloModule jit_step

%body (p: (s32[], f32[4,8])) -> (s32[], f32[4,8]) {
  %dot.3 = f32[4,8]{1,0} dot(%a, %b), metadata={op_name="jit(step)/jvp()/while/body/dot_general" source_file="x.py"}
  ROOT %tuple.1 = (s32[], f32[4,8]) tuple(%i, %dot.3)
}

ENTRY %main.9 (x: f32[4,8]) -> f32[4,8] {
  %copy_fusion.12 = f32[8,4]{1,0} fusion(%x), kind=kLoop, calls=%fused_computation, metadata={op_name="jit(step)/transpose(jvp())/transpose"}
  %copy_fusion = f32[8,4]{1,0} fusion(%x), kind=kLoop, calls=%fused_computation.1, metadata={op_name="jit(step)/add"}
  %while.2 = (s32[], f32[4,8]) while(%t), condition=%cond, body=%body
  ROOT %x.1 = f32[4,8] parameter(0)
}
"""


def _event(name, ts, dur, tid=1):
    return {"ph": "X", "pid": 7, "tid": tid, "ts": ts, "dur": dur, "name": name}


def test_instruction_sources_reads_every_computation():
    sources = profiling.instruction_sources(HLO)
    assert sources["dot.3"] == "jit(step)/jvp()/while/body/dot_general"
    assert sources["copy_fusion.12"] == "jit(step)/transpose(jvp())/transpose"
    assert sources["copy_fusion"] == "jit(step)/add"
    assert sources["while.2"] == "" and sources["tuple.1"] == "" and sources["x.1"] == ""


def test_kind_and_pass():
    assert profiling.op_kind("ynn_fusion.283") == "ynn_fusion"
    assert profiling.op_kind("copy_bitcast_fusion") == "copy_bitcast_fusion"
    assert profiling.op_pass("jit(f)/transpose(jvp(btv,bw->bv))/dot_general") == "backward"
    assert profiling.op_pass("jit(f)/jvp()/while/body/dot_general") == "forward"
    assert profiling.op_pass("jit(f)/dot_general") == "undifferentiated"


@pytest.mark.parametrize("source,expected", [
    ("jit(train_step)/jvp(tni,dgi->tdng)/dot_general", "tni,dgi->tdng/dot_general"),
    ("jit(train_step)/transpose(jvp(tni,dgi->tdng))/dot_general", "tni,dgi->tdng/dot_general"),
    ("jit(train_step)/tni,dgi->tdng/dot_general", "tni,dgi->tdng/dot_general"),
    ("jit(f)/transpose(jvp())/while/body/closed_call/dng,dgh->dnh/dot_general",
     "dng,dgh->dnh/dot_general"),
    ("jit(f)/transpose(jvp())/cond/branch_0_fun/conv_general_dilated", "conv_general_dilated"),
    ("jit(f)/add", "add"),
    ("", "?"),
])
def test_op_source_strips_autodiff_and_control_flow(source, expected):
    assert profiling.op_source(source) == expected


def test_exclusive_times_subtract_nested_events_per_thread():
    events = [
        _event("while.2", 0, 100), _event("dot.3", 10, 30), _event("dot.3", 50, 40),
        _event("copy_fusion", 100, 5),  # starts as the loop ends: not nested in it
        _event("copy_fusion.12", 0, 60, tid=2),  # another thread: not nested either
        {"ph": "M", "pid": 7, "name": "thread_name"},
    ]
    times = sorted(profiling.exclusive_times(events))
    assert times == [("copy_fusion", 5.0), ("copy_fusion.12", 60.0), ("dot.3", 30.0),
                     ("dot.3", 40.0), ("while.2", 30.0)]


def test_op_breakdown_hand_worked():
    events = [
        _event("$api.py:1 block_until_ready", 0, 1000),  # Python: not an HLO instruction
        _event("while.2", 0, 100), _event("dot.3", 10, 30), _event("dot.3", 50, 40),
        _event("copy_fusion.12", 200, 60), _event("copy_fusion", 300, 20),
    ]
    result = profiling.op_breakdown(events, profiling.instruction_sources(HLO), calls=2)
    # Per call, in ms: dot 0.035, copy_fusion 0.04, while (exclusive) 0.015.
    assert result["op_ms"] == pytest.approx(0.09)
    assert result["by_kind"] == pytest.approx({"copy_fusion": 0.04, "dot": 0.035, "while": 0.015})
    assert list(result["by_kind"]) == ["copy_fusion", "dot", "while"]
    assert result["by_pass"] == pytest.approx(
        {"forward": 0.035, "backward": 0.03, "undifferentiated": 0.025})
    assert result["by_source"] == pytest.approx(
        {"dot_general": 0.035, "transpose": 0.03, "?": 0.015, "add": 0.01})
    # One thread, busy over [0, 100], [200, 260] and [300, 320] us; nothing overlaps it.
    assert result["busy_ms_per_thread"] == pytest.approx([0.09])
    assert result["alone_ms"] == pytest.approx(0.09)
    top = result["top_ops"][0]
    assert (top["name"], top["source"]) == ("dot.3", "jit(step)/jvp()/while/body/dot_general")
    assert top["ms"] == pytest.approx(0.035)
    text = profiling.format_breakdown(result, wall_ms=0.1)
    assert "dot.3" in text and "backward" in text and "wall 0.1 ms" in text


def test_runtime_events_inside_an_instruction_are_part_of_its_time():
    events = [_event("while.2", 0, 100), _event("SlinkyThreadPool::Await", 20, 50),
              _event("dot.3", 80, 10)]
    result = profiling.op_breakdown(events, profiling.instruction_sources(HLO), calls=1)
    # Only the nested instruction is subtracted from the loop: 100 - 10 us.
    assert result["by_kind"] == pytest.approx({"while": 0.09, "dot": 0.01})


def test_busy_and_alone_times_per_thread():
    events = [
        # Thread 1: a loop (with a nested body instruction), then a copy.
        _event("while.2", 0, 100), _event("dot.3", 10, 30), _event("copy_fusion", 100, 30),
        # Thread 2 overlaps both of them in part.
        _event("dot.3", 50, 20, tid=2), _event("copy_fusion.12", 120, 40, tid=2),
        _event("$python", 0, 10_000, tid=3),  # not an instruction: not a busy thread
    ]
    result = profiling.op_breakdown(events, profiling.instruction_sources(HLO), calls=1)
    assert result["busy_ms_per_thread"] == pytest.approx([0.13, 0.06])
    # Alone: the loop 100 - 20 us; the copies (30 - 10) + (40 - 10) us; thread 2's dot never.
    assert result["alone_by_kind"] == pytest.approx({"while": 0.08, "copy_fusion": 0.05,
                                                     "dot": 0.0})
    assert result["alone_ms"] == pytest.approx(0.13)
    # The loop has no metadata; the copies come from two sources.
    assert result["alone_by_source"] == pytest.approx(
        {"?": 0.08, "transpose": 0.03, "add": 0.02, "dot_general": 0.0})
    text = profiling.format_breakdown(result, wall_ms=0.2)
    assert "run alone (no other thread in an instruction) 0.1 ms" in text
    assert "  by kind: while 0.1, copy_fusion 0.1" in text


def test_op_breakdown_errors():
    sources = profiling.instruction_sources(HLO)
    with pytest.raises(ValueError, match="calls must be positive"):
        profiling.op_breakdown([_event("dot.3", 0, 1)], sources, calls=0)
    with pytest.raises(ValueError, match="no operation of the compiled step"):
        profiling.op_breakdown([_event("other.1", 0, 1)], sources, calls=1)


def test_missing_trace_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="No perfetto_trace.json.gz under"):
        profiling.load_trace_events(tmp_path)


def test_load_trace_events_reads_the_newest_trace(tmp_path):
    for run, name in enumerate(("old.1", "new.1")):
        path = tmp_path / "plugins" / "profile" / f"run{run}" / profiling.TRACE_FILE
        path.parent.mkdir(parents=True)
        with gzip.open(path, "wt") as f:
            json.dump({"traceEvents": [_event(name, 0, 1)]}, f)
    assert [e["name"] for e in profiling.load_trace_events(tmp_path)] == ["new.1"]


def test_a_real_trace_of_a_compiled_gradient(tmp_path):
    x = jnp.ones((64, 256))
    grad = jax.jit(jax.grad(lambda x: jnp.sum(jnp.tanh(x @ x.T) ** 2)))
    compiled = grad.lower(x).compile()
    profiling.trace_calls(lambda: jax.block_until_ready(compiled(x)), 3, tmp_path)
    result = profiling.op_breakdown(profiling.load_trace_events(tmp_path),
                                    profiling.instruction_sources(compiled.as_text()), calls=3)
    assert result["op_ms"] > 0
    assert result["op_ms"] == pytest.approx(sum(result["by_kind"].values()))
    assert result["op_ms"] == pytest.approx(sum(result["by_pass"].values()))
    assert set(result["by_pass"]) <= {"forward", "backward", "undifferentiated"}
    assert "backward" in result["by_pass"]


def test_benchmark_train_profile(tmp_path, capsys):
    assert benchmark.main(["train", "--config=configs/ntu60.py:xsub,runlocal", "--steps=1",
                           f"--profile_dir={tmp_path}", "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    profile = result["profile"]
    assert profile["op_ms"] > 0 and {"forward", "backward"} <= set(profile["by_pass"])
    assert all(op["ms"] > 0 for op in profile["top_ops"])
    assert list(tmp_path.glob(f"**/{profiling.TRACE_FILE}"))
