"""Tests for `python -m skel_jax.benchmark train|augment|eval` and the measuring helpers."""

import json

import jax
import jax.numpy as jnp
import pytest

from skel_jax import benchmark
from skel_jax import perf

RUNLOCAL = "configs/ntu60.py:xsub,runlocal"


def _json_line(capsys):
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    return json.loads(lines[0])


def _check_train_result(result, batch_size, input_kind):
    assert result["batch_size"] == batch_size and result["input"] == input_kind
    assert result["steps"] == 2 and result["representations"] == "seq-graph"
    assert 0 < result["step_ms_min"] <= result["step_ms"] < 600_000
    assert result["samples_per_s"] == pytest.approx(batch_size / (result["step_ms"] / 1e3))
    # A runlocal step is millions to billions of FLOPs; the machine does at least 1 GFLOP/s.
    assert 1e6 < result["flops_per_step"] < 1e12
    assert 1e6 < result["matmul_flops_per_step"] < 1e12
    assert result["peak_flops"] == result["peak_flops_float32"] > 1e9
    assert result["peak_flops_bfloat16"] > 1e8
    assert result["peak_fraction"] == pytest.approx(
        result["flops_per_step"] / (result["step_ms"] / 1e3) / result["peak_flops"])
    assert result["matmul_peak_fraction"] == pytest.approx(
        result["matmul_flops_per_step"] / (result["step_ms"] / 1e3) / result["peak_flops"])
    assert 0 < result["peak_fraction"] < 1 and 0 < result["matmul_peak_fraction"] < 1
    assert result["devices"] == len(jax.devices())


def test_train_synthetic_json(capsys):
    assert benchmark.main(["train", f"--config={RUNLOCAL}", "--steps=2", "--json"]) == 0
    result = _json_line(capsys)
    assert result["config"] == RUNLOCAL
    _check_train_result(result, batch_size=8, input_kind="synthetic")


def test_train_pipeline_json_with_batch_override(tmp_path, capsys):
    # The demo config builds its synthetic dataset into the workdir first.
    assert benchmark.main(["train", "--config=configs/demo.py:runlocal", "--steps=2",
                           "--input=pipeline", f"--workdir={tmp_path}", "--batch_size=16",
                           "--config.contrastive.queue_size=32", "--json"]) == 0
    _check_train_result(_json_line(capsys), batch_size=16, input_kind="pipeline")
    assert (tmp_path / "data" / "ntu_rgbd" / "ntu60_xsub").is_dir()


def test_augment_json(capsys):
    assert benchmark.main(["augment", "--batch_size=8", "--max_frames=80", "--steps=2",
                           "--json"]) == 0
    result = _json_line(capsys)
    assert (result["batch_size"], result["max_frames"], result["clip_frames"],
            result["steps"]) == (8, 80, 64, 2)
    assert 0 < result["batch_ms_min"] <= result["batch_ms"] < 60_000
    assert result["pairs_per_s"] == pytest.approx(8 / (result["batch_ms"] / 1e3))


def test_eval_json(capsys):
    assert benchmark.main(["eval", f"--config={RUNLOCAL}", "--representation=graph",
                           "--batch_size=8", "--steps=2", "--num_train=300", "--num_test=40",
                           "--json"]) == 0
    result = _json_line(capsys)
    assert result["representation"] == "graph"
    assert result["feature_dim"] == 32  # runlocal AGCN channels end at 32.
    assert (result["num_train"], result["num_test"], result["batch_size"]) == (300, 40, 8)
    assert result["features_per_s"] == pytest.approx(8 / (result["feature_batch_ms"] / 1e3))
    assert result["knn_queries_per_s"] == pytest.approx(40 / (result["knn_ms"] / 1e3))
    assert result["features_per_s"] > 0 and result["knn_queries_per_s"] > 0


def test_table_output_names_every_field(capsys):
    assert benchmark.main(["augment", "--batch_size=8", "--max_frames=80", "--steps=1"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert names == ["pairs_per_s", "batch_ms", "batch_ms_mean", "batch_ms_min", "batch_size",
                     "max_frames", "clip_frames", "steps"]


def test_load_config_applies_typed_overrides():
    config = benchmark.load_config(RUNLOCAL, ["--config.model.compute_dtype=bfloat16",
                                              "--config.global_batch_size=16",
                                              "--config.model.graph.channels=(8, 16)"])
    assert config.model.compute_dtype == "bfloat16"
    assert config.global_batch_size == 16
    assert tuple(config.model.graph.channels) == (8, 16)
    assert config.data.dataset == "ntu_rgbd/ntu60_xsub"


@pytest.mark.parametrize("override,message", [
    ("--config.model.no_such_field=1", "cannot apply"),
    ("--config.global_batch_size", "expected --config.FIELD=VALUE"),
    ("--steps=3", "expected --config.FIELD=VALUE"),
])
def test_load_config_rejects_bad_overrides(override, message):
    with pytest.raises(ValueError, match=message):
        benchmark.load_config(RUNLOCAL, [override])


def test_unknown_argument_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        benchmark.main(["augment", "--config.global_batch_size=4"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_missing_config_file_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        benchmark.main(["train", "--config=configs/missing.py"])
    assert exit_info.value.code == 2
    assert "not found" in capsys.readouterr().err


def test_a_batch_size_the_config_cannot_run_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        benchmark.main(["train", f"--config={RUNLOCAL}", "--batch_size=7", "--steps=1"])
    assert exit_info.value.code == 2
    assert "must be a positive multiple of global_batch_size (7)" in capsys.readouterr().err


def test_matmul_flops_counts_every_scan_iteration_and_both_passes():
    def scanned(x, w):
        def body(h, _):
            return jnp.tanh(h @ w), None
        return jax.lax.scan(body, x, None, length=10)[0]

    x, w = jnp.ones((4, 8)), jnp.ones((8, 8))
    forward = 10 * 2 * 4 * 8 * 8
    assert perf.matmul_flops(scanned, x, w) == forward
    # The backward pass of h @ w is two products of the same size (dh and dw).
    grad = jax.jit(jax.grad(lambda x, w: scanned(x, w).sum(), argnums=1))
    assert perf.matmul_flops(grad, x, w) == 3 * forward


def test_matmul_flops_counts_the_branch_of_the_platform_that_runs():
    def switch(x):
        return jax.lax.platform_dependent(x, cpu=lambda x: x @ x,
                                          default=lambda x: (x @ x) @ x)

    x = jnp.ones((4, 4))
    one_product = 2 * 4 * 4 * 4
    assert perf.matmul_flops(switch, x, platform="cpu") == one_product
    assert perf.matmul_flops(switch, x, platform="cuda") == 2 * one_product
    assert perf.matmul_flops(switch, x) == one_product  # the tests run on CPU
    # An ordinary cond may take either branch: the costlier one counts.
    ordinary = lambda x: jax.lax.cond(x[0, 0] > 0, lambda x: x @ x, lambda x: (x @ x) @ x, x)
    assert perf.matmul_flops(ordinary, x, platform="cpu") == 2 * one_product


def test_matmul_flops_of_a_strided_convolution():
    def conv(x, kernel):
        return jax.lax.conv_general_dilated(x, kernel, (2, 1), ((4, 4), (0, 0)),
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))

    x = jax.ShapeDtypeStruct((2, 16, 5, 3), jnp.float32)
    kernel = jax.ShapeDtypeStruct((9, 1, 3, 7), jnp.float32)
    # Output (2, 8, 5, 7), each a 9 x 3 dot product.
    assert perf.matmul_flops(conv, x, kernel) == 2 * (2 * 8 * 5 * 7) * 9 * 3
