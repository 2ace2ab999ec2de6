"""Tests of skel_jax.embed: batching, steps, heads, and every error the user can meet."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from skel_jax import checkpointing
from skel_jax import config_lib
from skel_jax import embed
from skel_jax import encoders
from skel_jax import optim
from skel_jax import train_state

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = (5, 6)


def _filled(abstract, seed):
    """Random values of the abstract tree's shapes; running variances positive."""
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        if not jnp.issubdtype(leaf.dtype, jnp.floating):
            return jnp.zeros(leaf.shape, leaf.dtype)
        if jax.tree_util.keystr(path).endswith("['running_var']"):
            return jnp.asarray(rng.uniform(0.5, 1.5, leaf.shape), leaf.dtype)
        return jnp.asarray(rng.normal(0.0, 0.2, leaf.shape), leaf.dtype)

    return jax.tree_util.tree_map_with_path(fill, abstract)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A runlocal seq-graph run with a checkpoint at each of STEPS, each with its own values."""
    path = tmp_path_factory.mktemp("run")
    config = config_lib.base_config()
    config_lib.apply_runlocal(config)
    tx, _ = optim.make_optimizer(config, steps_per_epoch=10)
    abstract = train_state.abstract(config, tx)[1]
    with checkpointing.Checkpointer(path) as ckpt:
        for seed, step in enumerate(STEPS):
            ckpt.save(step, _filled(abstract, seed), config=config)
    return path


def _clips(n, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 3, 64, 25, 2)).astype(np.float32)


def _direct(workdir, rep, clips, step):
    """The encoder applied to all clips at once, outside embed."""
    with checkpointing.Checkpointer(workdir, read_only=True) as ckpt:
        config = ckpt.restore_config(step)
        defn, abstract = encoders.abstract(config, rep)
        device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        variables = ckpt.restore_encoder(step, rep, jax.tree.map(
            lambda a: a.update(sharding=device), abstract))
    features, projections, _ = jax.jit(
        lambda v, x: encoders.apply(defn, v, x, train=False))(variables,
                                                              clips.transpose(0, 2, 4, 3, 1))
    return np.asarray(features), np.asarray(projections)


def test_batched_features_and_projections_equal_one_big_batch(workdir, monkeypatch):
    clips = _clips(5)
    traces = []
    apply = encoders.apply
    monkeypatch.setattr(encoders, "apply", lambda *a, **k: traces.append(1) or apply(*a, **k))
    features = embed.embed(str(workdir), "graph", clips, batch_size=2)
    assert len(traces) == 1  # Batches of 2, 2 and a padded 1: one compilation.
    projections = embed.embed(str(workdir), "graph", clips, batch_size=2, head=True)
    want_features, want_projections = _direct(workdir, "graph", clips, STEPS[-1])
    assert features.dtype == np.float32 and features.shape == (5, 32)
    assert projections.dtype == np.float32 and projections.shape == (5, 128)
    np.testing.assert_allclose(features, want_features, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(projections, want_projections, rtol=1e-5, atol=1e-6)


def test_step_selects_the_weights(workdir):
    clips = _clips(2, seed=1)
    for step in STEPS:
        features = embed.embed(str(workdir), "seq", clips, step=step)
        np.testing.assert_allclose(features, _direct(workdir, "seq", clips, step)[0],
                                   rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(embed.embed(str(workdir), "seq", clips), features)


@pytest.mark.parametrize("clips, message", [
    (np.zeros((2, 3, 64, 25, 2)), r"must be float32; got float64"),
    (np.zeros((3, 64, 25, 2), np.float32), r"must be 5-D .* got 4-D shape \(3, 64, 25, 2\)"),
    (np.zeros((2, 3, 32, 25, 2), np.float32), r"must have shape \(N, 3, 64, 25, 2\)"),
    (np.zeros((2, 64, 2, 25, 3), np.float32), r"the original's \(N, C, T, V, M\) layout"),
    (np.zeros((0, 3, 64, 25, 2), np.float32), r"holds no clips"),
])
def test_bad_clips(workdir, clips, message):
    with pytest.raises(ValueError, match=message):
        embed.check_clips(clips, 64)
    with pytest.raises(ValueError, match=message):
        embed.embed(str(workdir), "seq", clips)


def test_bad_input_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="No input file"):
        embed.read_clips(str(tmp_path / "missing.npy"))
    (tmp_path / "notes.txt").write_text("not an array")
    with pytest.raises(ValueError, match=r"notes.txt is not a \.npy array file"):
        embed.read_clips(str(tmp_path / "notes.txt"))
    np.savez(tmp_path / "clips.npz", a=_clips(1))
    with pytest.raises(ValueError, match="archive of several arrays"):
        embed.read_clips(str(tmp_path / "clips.npz"))
    np.save(tmp_path / "clips.npy", _clips(1))
    assert embed.read_clips(str(tmp_path / "clips.npy")).shape == (1, 3, 64, 25, 2)


def test_encoder_the_checkpoint_lacks(workdir):
    with pytest.raises(ValueError, match=r"trains the encoders \('seq', 'graph'\); it has no "
                                         r"'image' encoder"):
        embed.embed(str(workdir), "image", _clips(1))


def test_workdir_without_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError, match="No checkpoint in .*python -m skel_jax.main"):
        embed.embed(str(tmp_path), "seq", _clips(1))


def test_bad_batch_size(workdir):
    with pytest.raises(ValueError, match="batch_size must be positive; got 0"):
        embed.embed(str(workdir), "seq", _clips(1), batch_size=0)


def test_command_reports_errors_without_a_traceback(workdir, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "skel_jax.embed", f"--workdir={workdir}", "--encoder=seq",
         f"--input={tmp_path / 'missing.npy'}", f"--output={tmp_path / 'out.npy'}"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert f"embed: No input file {tmp_path / 'missing.npy'}" in result.stderr
    assert "Traceback" not in result.stderr
