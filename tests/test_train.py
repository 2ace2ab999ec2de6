"""The training loop: exact resume, preemption, the NaN guard, and the demo entry point."""

import os
import signal
import threading
import time

import jax
import numpy as np
import pytest

from skel_jax import checkpointing
from skel_jax import config_lib
from skel_jax import metrics_writer
from skel_jax import optim
from skel_jax import sharding
from skel_jax import train
from skel_jax import train_state


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A tiny synthetic NTU-format dataset built once for the module."""
    path = str(tmp_path_factory.mktemp("data"))
    train.ensure_synthetic_dataset(_config(path), path)
    return path


def _config(data_dir, **overrides):
    c = config_lib.base_config()
    config_lib.apply_runlocal(c)
    c.data.synthetic_clips = 60
    c.data.data_dir = data_dir
    c.data.max_frames = 120
    c.representations = "graph"
    c.optimizer.schedule = "step"
    c.optimizer.decay_epochs = (1000,)
    for key, value in overrides.items():
        if isinstance(value, dict):
            c[key].update(value)
        else:
            c[key] = value
    return c


def _losses(workdir):
    return {m["step"]: m["loss"] for m in metrics_writer.read_metrics(workdir)}


def test_a_resumed_run_sees_exactly_what_an_uninterrupted_run_sees(data_dir, tmp_path):
    full = _config(data_dir, total_steps=6)
    train.train(full, str(tmp_path / "full"))
    # Stop after 3 steps (a checkpoint is written there), then continue the same run to 6.
    train.train(_config(data_dir, total_steps=3), str(tmp_path / "split"))
    train.train(full, str(tmp_path / "split"))
    uninterrupted, resumed = _losses(tmp_path / "full"), _losses(tmp_path / "split")
    assert sorted(uninterrupted) == sorted(resumed) == [1, 2, 3, 4, 5, 6]
    for step in range(1, 7):
        np.testing.assert_allclose(resumed[step], uninterrupted[step], rtol=1e-6, err_msg=step)
    # The final states agree too (queues and momentum encoders included).
    tx, _ = optim.make_optimizer(full, 1)
    _, abstract = train_state.abstract(full, tx)
    target = sharding.with_shardings(
        abstract, sharding.state_shardings(sharding.make_mesh(), abstract))
    states = []
    for name in ("full", "split"):
        with checkpointing.Checkpointer(str(tmp_path / name), read_only=True) as ckpt:
            states.append(jax.device_get(ckpt.restore(6, target)))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), *states)


def test_sigterm_saves_and_stops(data_dir, tmp_path):
    workdir = str(tmp_path / "run")
    metrics_file = os.path.join(workdir, "metrics.jsonl")

    def preempt_after_two_steps():
        deadline = time.time() + 300
        while time.time() < deadline:
            if os.path.exists(metrics_file) and len(open(metrics_file).readlines()) >= 2:
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.05)

    previous_handler = signal.getsignal(signal.SIGTERM)
    killer = threading.Thread(target=preempt_after_two_steps)
    killer.start()
    train.train(_config(data_dir, total_steps=5000, checkpoint_every_steps=1000), workdir)
    killer.join()
    assert signal.getsignal(signal.SIGTERM) is previous_handler  # Training restored it.
    with checkpointing.Checkpointer(workdir, read_only=True) as ckpt:
        stopped_at = ckpt.latest_step()
    assert 2 <= stopped_at < 5000
    assert max(_losses(workdir)) == stopped_at  # The last step was logged and saved.


def test_a_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(data_dir, tmp_path):
    config = _config(data_dir, total_steps=40, checkpoint_every_steps=1)
    config.optimizer.learning_rate = 1e30
    workdir = str(tmp_path / "run")
    with pytest.raises(train.NonFiniteLossError, match=r"loss became nan at step \d+"):
        train.train(config, workdir)
    with checkpointing.Checkpointer(workdir, read_only=True) as ckpt:
        steps = ckpt.all_steps()
        tx, _ = optim.make_optimizer(config, 1)
        _, abstract = train_state.abstract(config, tx)
        target = sharding.with_shardings(
            abstract, sharding.state_shardings(sharding.make_mesh(), abstract))
        state = ckpt.restore(max(steps), target)
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(jax.device_get(state["encoders"])))
    assert max(steps) < 40


def test_too_small_a_dataset_is_reported(data_dir, tmp_path):
    with pytest.raises(ValueError, match="fewer than one global batch \\(512\\)"):
        train.train(_config(data_dir, global_batch_size=512, contrastive=dict(queue_size=512)), str(tmp_path))
