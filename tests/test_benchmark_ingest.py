"""Tests for `python -m skel_jax.benchmark ingest`."""

import json
import subprocess
import sys

import numpy as np
import pytest

from skel_jax import benchmark
from tests.skeleton_text import frames_from_slots, plausible_bodies, skeleton_text


@pytest.fixture(scope="module")
def manual_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("ntu")
    (root / "sub").mkdir()
    rng = np.random.default_rng(0)
    for i, folder in enumerate([root, root, root / "sub", root / "sub"]):
        bodies = plausible_bodies(rng, 1 + i % 2, 12)
        data = skeleton_text(frames_from_slots(bodies, np.ones(bodies.shape[:2], bool)))
        (folder / f"S001C001P001R001A{i + 1:03d}.skeleton").write_bytes(data)
    (root / "notes.txt").write_text("not a skeleton")
    return root


def test_json_line(manual_dir, capsys):
    assert benchmark.main(["ingest", f"--manual_dir={manual_dir}", "--json",
                           "--num_workers=2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result["num_files"] == 4
    assert result["num_workers"] == 2
    assert 0 < result["ms_per_file"] < 1000
    assert 0 < result["ms_per_file_mean"] < 1000
    assert result["files_per_s"] > 0


def test_max_files_and_table(manual_dir, capsys):
    assert benchmark.main(["ingest", f"--manual_dir={manual_dir}", "--max_files=2",
                           "--num_workers=1"]) == 0
    out = capsys.readouterr().out
    assert "files                 2\n" in out
    assert "ms/file" in out and "1 workers, files/s" in out


def test_find_skeleton_files(manual_dir):
    files = benchmark.find_skeleton_files(manual_dir, None)
    assert [f.rsplit("A", 1)[1] for f in files] == ["001.skeleton", "002.skeleton",
                                                    "003.skeleton", "004.skeleton"]
    assert benchmark.ingest_file(files[0]) == 12


@pytest.mark.parametrize("extra, message", [
    ([], "no *.skeleton files below --manual_dir"),
    (["--max_files=0"], "--max_files: must be >= 1, got 0"),
])
def test_usage_errors(tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as info:
        benchmark.main(["ingest", f"--manual_dir={tmp_path}", *extra])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_directory(tmp_path, capsys):
    with pytest.raises(SystemExit):
        benchmark.main(["ingest", f"--manual_dir={tmp_path / 'absent'}"])
    assert "is not a directory" in capsys.readouterr().err


def test_module_entry_point(manual_dir):
    result = subprocess.run(
        [sys.executable, "-m", "skel_jax.benchmark", "ingest", f"--manual_dir={manual_dir}",
         "--json", "--num_workers=2"], capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(result.stdout)["num_files"] == 4
