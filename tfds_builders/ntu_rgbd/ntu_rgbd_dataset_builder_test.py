"""Builds ntu_rgbd from dummy_data without TensorFlow and reads it back as TFDS data sources."""

import pathlib
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import tensorflow_datasets as tfds

import tfds_builders  # noqa: F401  (registers the builders)
from skel_jax.data import ntu_meta
from skel_jax.data import ntu_sources
from skel_jax.prepare import prepare
from tfds_builders.ntu_rgbd import ntu_rgbd_dataset_builder as ntu_builder

DUMMY_DATA = pathlib.Path(ntu_builder.__file__).parent / "dummy_data"
CONFIGS = ("ntu60_xsub", "ntu60_xview", "ntu120_xsub", "ntu120_xset")
BENCHMARKS = dict(zip(CONFIGS, ("xsub60", "xview60", "xsub120", "xset120")))


def _dummy_names() -> list[str]:
    with zipfile.ZipFile(DUMMY_DATA / ntu_sources.ARCHIVE_NAMES[0]) as zf:
        names = [pathlib.PurePosixPath(m).stem for m in zf.namelist()]
    return sorted(names + [p.stem for p in (DUMMY_DATA / "extracted").glob("*.skeleton")])


def _missing() -> frozenset[str]:
    return ntu_meta.read_missing_list(
        (DUMMY_DATA / ntu_sources.MISSING_LIST_NAMES[60]).read_text())


def _build(config, manual_dir, data_dir, **kwargs):
    builder, built = prepare(f"ntu_rgbd/{config}", str(manual_dir), str(data_dir),
                             num_workers=kwargs.pop("num_workers", 1), **kwargs)
    assert built
    return builder


@pytest.mark.parametrize("config", CONFIGS)
def test_every_config_builds_with_the_official_split(config, tmp_path):
    builder = _build(config, DUMMY_DATA, tmp_path)
    expected = {"train": set(), "test": set()}
    # dummy_data holds only the NTU-60 list, which NTU-120 builds must not use as their own.
    missing = _missing() if config.startswith("ntu60") else frozenset()
    for name in _dummy_names():
        if name in missing:
            continue
        sample = ntu_meta.parse_sample_name(name)
        expected["train" if ntu_meta.is_train(sample, BENCHMARKS[config]) else "test"].add(name)
    for split in ("train", "test"):
        source = tfds.data_source(f"ntu_rgbd/{config}", data_dir=str(tmp_path), split=split)
        names = {source[i]["sample_name"].decode() for i in range(len(source))}
        assert names == expected[split]
    num_classes = 60 if config.startswith("ntu60") else 120
    assert builder.info.features["label"].num_classes == num_classes


def test_examples_equal_the_converted_raw_files(tmp_path):
    _build("ntu60_xview", DUMMY_DATA, tmp_path, num_workers=2)
    sources = ntu_sources.find_skeleton_sources(DUMMY_DATA)
    assert sum(s.member is not None for s in sources.values()) == 4  # Zip and plain files.
    for split in ("train", "test"):
        source = tfds.data_source("ntu_rgbd/ntu60_xview", data_dir=str(tmp_path), split=split)
        for i in range(len(source)):
            example = source[i]
            name = example["sample_name"].decode()
            expected = ntu_sources.convert_sample(sources[name]).example
            np.testing.assert_array_equal(example["skeleton"], expected["skeleton"])
            assert example["skeleton"].dtype == np.float32
            assert example["skeleton"].shape == (example["num_frames"], 2, 25, 3)
            sample = ntu_meta.parse_sample_name(name)
            assert example["label"] == sample.action - 1
            assert (example["setup"], example["camera"], example["subject"],
                    example["replication"]) == sample[:4]


def _copy_dummy(tmp_path) -> pathlib.Path:
    manual = tmp_path / "manual"
    shutil.copytree(DUMMY_DATA, manual)
    return manual


def test_a_bad_file_stops_the_build_naming_file_and_line(tmp_path):
    manual = _copy_dummy(tmp_path)
    bad = manual / "extracted" / "S001C001P001R001A001.skeleton"
    bad.write_text("2\n1\n" + "72057594037931101 0 1 1 1 1 0 0.1 0.1 2\n25\n"
                   + "0.1 0.2 abc 1 1 1 1 0 0 0 1 2\n")
    with pytest.raises(ntu_builder.BadSampleError, match=f"(?s){bad}:5: .*not a number.*skip_bad_files"):
        _build("ntu60_xsub", manual, tmp_path / "data")
    # Nothing half-built is left as a dataset, and the build restarts once the file is fixed.
    assert not tfds.builder("ntu_rgbd/ntu60_xsub", data_dir=str(tmp_path / "data")).is_prepared()
    bad.unlink()
    _build("ntu60_xsub", manual, tmp_path / "data")


def test_the_prepare_command_states_a_bad_file_without_a_traceback(tmp_path):
    manual = _copy_dummy(tmp_path)
    bad = manual / "extracted" / "S001C001P001R001A001.skeleton"
    bad.write_text("2\n1\n" + "72057594037931101 0 1 1 1 1 0 0.1 0.1 2\n25\n"
                   + "0.1 0.2 abc 1 1 1 1 0 0 0 1 2\n")
    done = subprocess.run(
        [sys.executable, "-m", "skel_jax.prepare", "--dataset=ntu_rgbd/ntu60_xsub",
         f"--manual_dir={manual}", f"--data_dir={tmp_path / 'data'}", "--num_workers=1"],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert f"prepare: {bad}:5: " in done.stderr and "--skip_bad_files" in done.stderr


def test_skip_bad_files_lists_them_beside_the_dataset(tmp_path):
    manual = _copy_dummy(tmp_path)
    (manual / "extracted" / "S001C001P001R001A001.skeleton").write_text("3\n0\n0\n")
    builder = _build("ntu60_xsub", manual, tmp_path / "data", skip_bad_files=True)
    skipped = (pathlib.Path(builder.data_dir) / ntu_builder.SKIPPED_FILES_NAME).read_text()
    assert skipped.startswith("S001C001P001R001A001\t")
    assert "S001C001P001R001A001" not in {
        e["sample_name"].decode() for e in builder.as_data_source(split="train")}
    assert sum(s.num_examples for s in builder.info.splits.values()) == len(_dummy_names()) - 1


def test_without_a_missing_list_empty_files_are_skipped_with_a_warning(tmp_path, caplog):
    manual = _copy_dummy(tmp_path)
    (manual / ntu_sources.MISSING_LIST_NAMES[60]).unlink()
    (manual / "extracted" / "S001C001P001R001A001.skeleton").write_text("2\n0\n0\n")
    builder = _build("ntu60_xsub", manual, tmp_path / "data")
    assert "sample set may differ" in caplog.text
    # The listed sample comes back (no list), the empty one is left out and listed.
    assert sum(s.num_examples for s in builder.info.splits.values()) == len(_dummy_names())
    skipped = (pathlib.Path(builder.data_dir) / ntu_builder.SKIPPED_FILES_NAME).read_text()
    assert skipped == "S001C001P001R001A001\tno body in any frame\n"


def test_empty_manual_dir_and_unknown_dataset_errors(tmp_path):
    (tmp_path / "manual").mkdir()
    (tmp_path / "manual" / "notes.txt").write_text("nothing here")
    with pytest.raises(FileNotFoundError, match="No .skeleton files or official archives"):
        _build("ntu60_xsub", tmp_path / "manual", tmp_path / "data")
    with pytest.raises(ValueError, match="Unknown --dataset=ntu_rgbd/ntu61_xsub.*'ntu60_xsub'"):
        _build("ntu61_xsub", tmp_path / "manual", tmp_path / "data")
    with pytest.raises(ValueError, match="Unknown --dataset=ntu/ntu60_xsub.*'pku_mmd'"):
        prepare("ntu/ntu60_xsub", str(tmp_path / "manual"), str(tmp_path / "data"))
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        _build("ntu60_xsub", tmp_path / "nowhere", tmp_path / "data")


def test_a_file_name_that_is_not_a_sample_name_is_named(tmp_path):
    manual = _copy_dummy(tmp_path)
    (manual / "extracted" / "notes.skeleton").write_text("1\n0\n")
    with pytest.raises(ValueError, match="notes.skeleton.*not an NTU RGB\\+D sample name"):
        _build("ntu60_xsub", manual, tmp_path / "data")
