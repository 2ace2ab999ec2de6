"""Multi-process training: two local JAX processes train exactly as one process with two devices.

The processes talk through ``jax.distributed`` on localhost and gloo CPU collectives, each with
one CPU device; the reference is one process with two. Also covers preemption (SIGTERM reaching
the processes at different steps), resuming through ``launch/slurm.sbatch`` (a stand-in srun
starts the processes with SLURM's variables, from which JAX finds its peers), and how
``skel_jax.distributed`` is triggered.
"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from skel_jax import config_lib
from skel_jax import distributed
from skel_jax import metrics_writer
from skel_jax import train
from tests.conftest import CPU_COLLECTIVES_FLAG

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 240
# The intra-skeleton BiGRU run compiles fastest. A constant learning rate makes the losses of
# the first steps independent of total_steps, so runs of different lengths are comparable.
CONFIG = "configs/demo.py:runlocal,representations=seq"
OVERRIDES = ("--config.optimizer.schedule=step", "--config.optimizer.decay_epochs=(1000,)",
             "--config.checkpoint_every_steps=1000")
PREEMPTED_RUN_STEPS = 1000  # Far more than run before the SIGTERM takes effect.
# Stands in for srun inside an allocation of SLURM_NTASKS tasks on this one machine.
FAKE_SRUN = """#!{python}
import os, subprocess, sys
args, env = sys.argv[1:], dict(os.environ)
while args[0].startswith("--"):
    option = args.pop(0)
    if option.startswith("--export=ALL,"):
        env.update(pair.split("=", 1) for pair in option[len("--export=ALL,"):].split(","))
tasks = [subprocess.Popen(args, env=dict(env, SLURM_PROCID=str(i), SLURM_LOCALID=str(i)))
         for i in range(int(env["SLURM_NTASKS"]))]
sys.exit(max(task.wait() for task in tasks))
"""


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """The runlocal synthetic dataset, built once so the runs under test only train."""
    path = str(tmp_path_factory.mktemp("data"))
    config = config_lib.base_config()
    config.data.synthetic_clips = 60
    train.ensure_synthetic_dataset(config, path)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _clean_environment(devices: int) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "OMPI_", "PMI_", "TPU_", "JAX_COORDINATOR"))
           and k != distributed.ENV_VAR}
    env.update(JAX_PLATFORMS="cpu", JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices} "
                        f"{CPU_COLLECTIVES_FLAG}")
    return env


def _tail(path, lines=25) -> str:
    with open(path, errors="replace") as f:
        return "".join(f.readlines()[-lines:])


@contextlib.contextmanager
def _running(commands, env, log_stem: str):
    """Starts the commands; on leaving, waits for them to succeed, or kills them all."""
    procs, logs = [], []
    try:
        for index, (command, command_env) in enumerate(zip(commands, env)):
            logs.append(f"{log_stem}.{index}.log")
            with open(logs[-1], "a") as log:
                procs.append(subprocess.Popen(
                    command, cwd=REPO, env=command_env, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True))
        yield procs
        deadline = time.monotonic() + TIMEOUT_S
        for proc, log in zip(procs, logs):
            try:
                code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pytest.fail(f"{log}: no exit after {TIMEOUT_S} s:\n{_tail(log)}")
            assert code == 0, f"{log}: exit code {code}:\n{_tail(log)}"
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _train_flags(data_dir, *flags):
    return [f"--config={CONFIG}", f"--config.data.data_dir={data_dir}", *OVERRIDES, *flags]


def _launch(workdir, data_dir, processes: int, devices: int, *flags: str):
    """``skel_jax.main`` as ``processes`` processes, given their peers by flags."""
    port = _free_port()
    commands = []
    for index in range(processes):
        distributed_flags = [] if processes == 1 else [
            f"--coordinator_address=localhost:{port}", f"--num_processes={processes}",
            f"--process_id={index}"]
        commands.append([sys.executable, "-m", "skel_jax.main", f"--workdir={workdir}",
                         *_train_flags(data_dir, *flags), *distributed_flags])
    return _running(commands, [_clean_environment(devices)] * processes, workdir)


def _launch_with_slurm(workdir, data_dir, bin_dir, processes: int, *flags: str):
    """``launch/slurm.sbatch`` as inside a SLURM job of ``processes`` one-device tasks."""
    fake_srun = os.path.join(bin_dir, "srun")
    with open(fake_srun, "w") as f:
        f.write(FAKE_SRUN.format(python=sys.executable))
    os.chmod(fake_srun, 0o755)
    env = dict(_clean_environment(1), PATH=f"{bin_dir}:{os.environ['PATH']}", SLURM_JOB_ID="1",
               SLURM_NTASKS=str(processes), SLURM_STEP_NODELIST="localhost",
               JAX_COORDINATOR_PORT=str(_free_port()), PYTHON=sys.executable, WORKDIR=workdir)
    # The script passes --workdir=$WORKDIR itself.
    return _running([["bash", "launch/slurm.sbatch", *_train_flags(data_dir, *flags)]], [env],
                    workdir + ".slurm")


def _wait_for_steps(workdir, procs, steps: int) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    path = os.path.join(workdir, metrics_writer.METRICS_FILE)
    while time.monotonic() < deadline:
        if os.path.exists(path) and len(metrics_writer.read_metrics(workdir)) >= steps:
            return
        assert all(p.poll() is None for p in procs), "a process exited before being preempted"
        time.sleep(0.1)
    pytest.fail(f"{workdir}: fewer than {steps} steps logged after {TIMEOUT_S} s")


def _losses(workdir) -> dict[int, float]:
    records = metrics_writer.read_metrics(workdir)
    steps = [r["step"] for r in records]
    # Process 1 writes nothing; if it did, every step would be there twice.
    assert len(steps) == len(set(steps)), f"steps logged more than once: {steps}"
    return {r["step"]: r["loss"] for r in records}


def test_two_processes_train_as_one_process_with_two_devices(data_dir, tmp_path):
    workdir = str(tmp_path / "multi")
    # SIGTERM reaches the processes a second apart, as a cluster's preemption may; they must
    # still agree on one step to save at.
    with _launch(workdir, data_dir, 2, 1, f"--config.total_steps={PREEMPTED_RUN_STEPS}") as procs:
        _wait_for_steps(workdir, procs, 2)
        procs[0].send_signal(signal.SIGTERM)
        time.sleep(1.0)
        if procs[1].poll() is None:
            procs[1].send_signal(signal.SIGTERM)
    stopped_at = max(_losses(workdir))
    assert stopped_at < PREEMPTED_RUN_STEPS, "the pair ran to the end instead of stopping"
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == [str(stopped_at)]
    # JAX's preemption service picks the stop step; how many steps that takes depends on the
    # step time, so the reference is sized afterwards to cover the resumed run.
    with _launch(str(tmp_path / "reference"), data_dir, 1, 2,
                 f"--config.total_steps={stopped_at + 2}"):
        pass
    reference = _losses(tmp_path / "reference")
    assert sorted(reference) == list(range(1, stopped_at + 3))

    # A new pair of processes, started as a SLURM job, resumes from the checkpoint both wrote.
    with _launch_with_slurm(workdir, data_dir, str(tmp_path), 2,
                            f"--config.total_steps={stopped_at + 2}"):
        pass
    losses = _losses(workdir)
    assert sorted(losses) == list(range(1, stopped_at + 3))
    for step, loss in losses.items():
        np.testing.assert_allclose(loss, reference[step], rtol=1e-5, err_msg=f"step {step}")


def test_partial_flags_are_rejected_by_main(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "skel_jax.main", f"--config={CONFIG}",
         f"--workdir={tmp_path}", "--num_processes=2", "--process_id=0"],
        cwd=REPO, env=_clean_environment(1), capture_output=True, text=True, timeout=TIMEOUT_S)
    assert result.returncode != 0
    assert ("got --num_processes, --process_id without --coordinator_address"
            in result.stderr), result.stderr


def test_the_environment_variable_without_a_cluster_is_explained(tmp_path):
    env = _clean_environment(1)
    env[distributed.ENV_VAR] = "1"
    result = subprocess.run(
        [sys.executable, "-m", "skel_jax.main", f"--config={CONFIG}", f"--workdir={tmp_path}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert result.returncode != 0
    assert "SKEL_JAX_DISTRIBUTED=1 asks for a multi-process run, but JAX detected no " \
           "cluster" in result.stderr, result.stderr
    assert "Pass --coordinator_address, --num_processes and --process_id" in result.stderr


@pytest.mark.parametrize("flags, message", [
    (dict(coordinator_address="localhost:1234"),
     "got --coordinator_address without --num_processes, --process_id"),
    (dict(coordinator_address="localhost", num_processes=2, process_id=0),
     "must be HOST:PORT"),
    (dict(coordinator_address="localhost:1234", num_processes=2, process_id=2),
     "0 <= process_id < num_processes; got --num_processes=2 --process_id=2"),
    (dict(coordinator_address="localhost:1234", num_processes=0, process_id=0),
     "num_processes >= 1"),
])
def test_inconsistent_flags_are_rejected_before_jax_is_called(monkeypatch, flags, message):
    monkeypatch.setattr(jax.distributed, "initialize", pytest.fail)
    with pytest.raises(ValueError, match=message):
        distributed.maybe_initialize(**flags, environ={})


@pytest.mark.parametrize("value", ["", "0", "false", "No"])
def test_nothing_happens_unless_asked(monkeypatch, value):
    monkeypatch.setattr(jax.distributed, "initialize", pytest.fail)
    assert not distributed.maybe_initialize(environ={distributed.ENV_VAR: value})
    assert not distributed.maybe_initialize(environ={})


def test_an_unrecognised_environment_value_is_an_error():
    with pytest.raises(ValueError, match=r"SKEL_JAX_DISTRIBUTED='on please' is neither on"):
        distributed.requested_by_environment({distributed.ENV_VAR: "on please"})


def test_the_triggers_pass_what_they_know_to_jax(monkeypatch):
    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kwargs: calls.append(kwargs))
    assert distributed.maybe_initialize(environ={distributed.ENV_VAR: "TRUE"})
    assert distributed.maybe_initialize("10.0.0.1:1234", 4, 3, environ={})
    assert calls == [{}, dict(coordinator_address="10.0.0.1:1234", num_processes=4,
                              process_id=3)]
