"""Every config builds and validates; every invalid combination fails with a clear message."""

import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

from skel_jax import config_lib

CONFIG_DIR = pathlib.Path(__file__).parent.parent / "configs"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, CONFIG_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config


@pytest.mark.parametrize("name,arg,dataset", [
    ("ntu60", None, "ntu_rgbd/ntu60_xsub"),
    ("ntu60", "xview", "ntu_rgbd/ntu60_xview"),
    ("ntu120", "xsub", "ntu_rgbd/ntu120_xsub"),
    ("ntu120", "xset,representations=graph-image", "ntu_rgbd/ntu120_xset"),
    ("pku_mmd", "phase2_xview", "pku_mmd/phase2_xview"),
    ("demo", None, "ntu_rgbd/ntu60_xsub"),
])
@pytest.mark.parametrize("runlocal", [False, True])
def test_every_config_builds_and_validates(name, arg, dataset, runlocal):
    arg = ",".join(filter(None, [arg, "runlocal" if runlocal else None]))
    config = _load(name)(arg or None)
    config_lib.validate(config)
    assert config.data.dataset == dataset
    if runlocal:
        assert config.total_steps > 0 and config.global_batch_size <= 8
        assert config.model.seq.hidden_size <= 64


def test_defaults_are_the_originals_hyper_parameters():
    c = _load("ntu60")("xsub")
    assert (c.optimizer.learning_rate, c.optimizer.momentum, c.optimizer.weight_decay) == (
        0.01, 0.9, 1e-4)
    assert (c.global_batch_size, c.contrastive.queue_size, c.contrastive.momentum,
            c.contrastive.temperature) == (64, 16384, 0.999, 0.07)
    assert (c.num_epochs, tuple(c.optimizer.decay_epochs)) == (451, (351,))
    c120 = _load("ntu120")("xsub")
    assert (c120.num_epochs, tuple(c120.optimizer.decay_epochs)) == (351, (251, 351))
    assert c.representations == "seq-graph" and c.model.seq.hidden_size == 1024


@pytest.mark.parametrize("override,message", [
    (dict(global_batch_size=48), "queue_size \\(16384\\) must be a positive multiple of "
                                 "global_batch_size \\(48\\)"),
    (dict(representations="seq-depth"), "Unknown representations 'seq-depth'"),
    (dict(representations="graph-image", clip_frames=32), "image representation.*64"),
    (dict(schedule="linear"), "optimizer.schedule must be one of"),
    (dict(compute_dtype="float16"), "compute_dtype must be one of"),
    (dict(representations="graph", intra_weight=1.0), "already intra-skeleton"),
    (dict(momentum=1.0), "momentum must be in \\[0, 1\\)"),
    (dict(temperature=0.0), "temperature must be positive"),
    (dict(clip_frames=400), "exceeds data.max_frames"),
])
def test_invalid_combinations_fail_before_any_work(override, message):
    c = _load("ntu60")("xsub")
    for key, value in override.items():
        if key in ("clip_frames",):
            c.data[key] = value
        elif key in ("schedule",):
            c.optimizer[key] = value
        elif key in ("compute_dtype",):
            c.model[key] = value
        elif key in ("momentum", "temperature"):
            c.contrastive[key] = value
        else:
            c[key] = value
    with pytest.raises(ValueError, match=message):
        config_lib.validate(c)


@pytest.mark.parametrize("name,arg,message", [
    ("ntu60", "xset", "NTU-60 benchmarks are xsub and xview"),
    ("ntu120", "xview", "NTU-120 benchmarks are xsub and xset"),
    ("pku_mmd", "phase3_xsub", "PKU-MMD splits are"),
    ("ntu60", "xsub,batch=3", "Unknown config argument 'batch'"),
    ("ntu60", "xsub,xview", "Unexpected config argument 'xview'"),
    ("demo", "runlocal=maybe", "is not a boolean"),
])
def test_bad_config_arguments(name, arg, message):
    with pytest.raises(ValueError, match=message):
        _load(name)(arg)


def test_parse_arg_types():
    assert config_lib.parse_arg("a,n=3,x=0.5,flag", positional=("a",), a="", n=1, x=0.1,
                                flag=False) == dict(a="a", n=3, x=0.5, flag=True)
    with pytest.raises(ValueError, match="n='three' is not a int"):
        config_lib.parse_arg("n=three", n=1)


def test_main_rejects_a_misspelt_override_naming_it(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "skel_jax.main", f"--config={CONFIG_DIR / 'ntu60.py'}:xsub",
         "--config.global_bach_size=16", f"--workdir={tmp_path}"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "global_bach_size" in result.stderr
    assert not any(tmp_path.iterdir())  # Nothing was started.


def _main(tmp_path, *flags):
    return subprocess.run(
        [sys.executable, "-m", "skel_jax.main", f"--workdir={tmp_path / 'run'}", *flags],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "TFDS_DATA_DIR": str(tmp_path / "tfds")})


def test_main_states_an_invalid_combination_without_a_traceback(tmp_path):
    result = _main(tmp_path, f"--config={CONFIG_DIR / 'demo.py'}",
                   "--config.contrastive.queue_size=100")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "main: contrastive.queue_size (100) must be a positive multiple of global_batch_size "
        "(32), so that whole batches enter the queue.")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()  # Rejected before any work.


def test_main_says_how_to_build_a_missing_dataset(tmp_path):
    result = _main(tmp_path, f"--config={CONFIG_DIR / 'ntu120.py'}:xsub,runlocal")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"main: Dataset 'ntu_rgbd/ntu120_xsub' (version 1.0.0) has not been "
                           f"built in {tmp_path / 'tfds'}. Build it with: python -m "
                           "skel_jax.prepare --dataset=ntu_rgbd/ntu120_xsub")


@pytest.mark.parametrize("change, message", [
    (dict(representations="seq-seq"), "Unknown representations 'seq-seq'"),
    (dict(global_batch_size=0), "global_batch_size must be positive"),
])
def test_validation_errors_are_config_errors(change, message):
    # main prints ConfigError without a traceback; validate must raise that type.
    config = _load("demo")(None)
    for key, value in change.items():
        setattr(config, key, value)
    with pytest.raises(config_lib.ConfigError, match=message):
        config_lib.validate(config)
