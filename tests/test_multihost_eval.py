"""Multi-process evaluation: ``python -m skel_jax.evaluate`` as two local processes, one CPU
device each, gives the results of one process with two devices, and only process 0 writes.

The processes join through ``jax.distributed`` on localhost with gloo CPU collectives, started
by ``test_multihost``'s helpers. Every run, and each process of a pair, gets its own copy of
the checkpoints as its work directory, so a file under ``eval/`` shows which process wrote it.
"""

import json
import os
import shutil
import sys

import numpy as np
import pytest

from skel_jax import checkpointing
from skel_jax import config_lib
from skel_jax import metrics_writer
from skel_jax import prepare
from skel_jax import train
from skel_jax.data import synthetic
from skel_jax.evaluation import report
from tests import test_multihost as multihost

DATASET = "ntu_rgbd/ntu60_xsub"
ENCODER = "seq"
# Batches split evenly over two devices or two processes; two short epochs.
EVAL_FLAGS = ("--config.eval_batch_size=8", "--config.linear.epochs=2",
              "--config.linear.batch_size=8", "--config.linear.decay_epochs=(1,)")
PROTOCOL_FLAGS = {"knn": ("--k=1,3",), "linear": ()}
# Gloo may sum the two devices' gradients in another order than one process does.
LINEAR_RTOL = 1e-5


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """The checkpoint folder (steps 1 and 2) of a two-step BiGRU pretraining."""
    root = tmp_path_factory.mktemp("multihost_eval")
    # Four classes rather than sixty, so that the accuracies compared are not all near zero.
    synthetic.write_ntu_dataset(root / "raw", 48, seed=0, num_classes=4)
    prepare.prepare(DATASET, str(root / "raw"), str(root / "data"), num_workers=1)
    config = config_lib.base_config()
    config_lib.apply_runlocal(config)
    config.representations = ENCODER
    config.data.dataset = DATASET
    config.data.data_dir = str(root / "data")
    # Shorter clips make every feature cheaper; nothing multi-process depends on the length.
    config.data.clip_frames = 32
    config.total_steps = 2
    config.checkpoint_every_steps = 1
    workdir = str(root / "run")
    train.train(config, workdir)
    return os.path.join(workdir, checkpointing.CHECKPOINTS_SUBDIR)


def _workdir(checkpoints, path) -> str:
    shutil.copytree(checkpoints, path / checkpointing.CHECKPOINTS_SUBDIR)
    return str(path)


def _command(workdir, protocol, *flags):
    return [sys.executable, "-m", "skel_jax.evaluate", f"--workdir={workdir}",
            f"--protocol={protocol}", f"--encoder={ENCODER}", *EVAL_FLAGS,
            *PROTOCOL_FLAGS[protocol], *flags]


def _launch_pair(workdirs, log_stem, protocol, *flags):
    """The evaluation binary as processes 0 and 1 of a job, each on its own work directory."""
    port = multihost._free_port()
    commands = [_command(workdir, protocol, *flags, f"--coordinator_address=localhost:{port}",
                         "--num_processes=2", f"--process_id={index}")
                for index, workdir in enumerate(workdirs)]
    return multihost._running(commands, [multihost._clean_environment(1)] * 2, log_stem)


def _only_checkpoints(workdir) -> bool:
    return os.listdir(workdir) == [checkpointing.CHECKPOINTS_SUBDIR]


def _printed_summaries(log, protocol) -> int:
    """Summaries the binary printed to stdout (absl's log lines start with their level)."""
    with open(log) as f:
        return sum(line.startswith(f"{protocol} {ENCODER} step ") for line in f)


def _read(workdir, name, mode="r"):
    with open(os.path.join(workdir, report.EVAL_SUBDIR, name), mode) as f:
        return f.read()


@pytest.mark.parametrize("protocol", sorted(PROTOCOL_FLAGS))
def test_two_processes_evaluate_as_one_process_with_two_devices(checkpoints, tmp_path,
                                                                protocol):
    reference = _workdir(checkpoints, tmp_path / "reference")
    workdirs = [_workdir(checkpoints, tmp_path / f"process{i}") for i in range(2)]
    # The reference runs alongside the pair, which spends much of its time waiting on itself.
    with multihost._running([_command(reference, protocol)],
                            [multihost._clean_environment(2)], reference):
        with _launch_pair(workdirs, str(tmp_path / "pair"), protocol):
            pass

    assert _only_checkpoints(workdirs[1]), f"process 1 wrote {os.listdir(workdirs[1])}"
    assert [_printed_summaries(tmp_path / f"pair.{i}.log", protocol) for i in (0, 1)] == [1, 0]
    stem = f"{protocol}_{ENCODER}"
    files = [f"{stem}.json", f"{stem}_per_class.csv", f"{stem}_confusion.png"]
    eval_dir = os.path.join(workdirs[0], report.EVAL_SUBDIR)
    assert sorted(os.listdir(eval_dir)) == sorted(
        [*files, metrics_writer.METRICS_FILE, metrics_writer.TENSORBOARD_DIR])
    assert [r["step"] for r in metrics_writer.read_metrics(eval_dir)] == [2]

    got, want = (json.loads(_read(w, f"{stem}.json")) for w in (workdirs[0], reference))
    if protocol == "knn":
        # The same rows reach the same two devices either way, so the features, neighbours
        # and every prediction (per-class table, confusion image) are identical.
        assert got == want
        for name in files[1:]:
            assert _read(workdirs[0], name, "rb") == _read(reference, name, "rb"), name
    else:
        for key in ("top1", "top5", "final_train_loss", "final_train_accuracy"):
            np.testing.assert_allclose(got.pop(key), want.pop(key), rtol=LINEAR_RTOL,
                                       err_msg=key)
        assert got == want


def test_watching_processes_follow_the_listing_of_process_0(checkpoints, tmp_path):
    workdirs = [_workdir(checkpoints, tmp_path / f"process{i}") for i in range(2)]
    # Process 1 sees a step that process 0 does not (yet), as on a shared file system that
    # the processes list at different moments. Evaluating it alone, it would wait forever.
    step_dir = os.path.join(workdirs[1], checkpointing.CHECKPOINTS_SUBDIR, "{}")
    shutil.copytree(step_dir.format(2), step_dir.format(3))
    with _launch_pair(workdirs, str(tmp_path / "pair"), "knn", "--watch",
                      "--config.watch.poll_seconds=0.1"):
        pass

    assert _only_checkpoints(workdirs[1]), f"process 1 wrote {os.listdir(workdirs[1])}"
    assert [_printed_summaries(tmp_path / f"pair.{i}.log", "knn") for i in (0, 1)] == [2, 0]
    # Step 2 is the training config's final step, so process 0's watch ends there.
    eval_dir = os.path.join(workdirs[0], report.EVAL_SUBDIR)
    assert [r["step"] for r in metrics_writer.read_metrics(eval_dir)] == [1, 2]
