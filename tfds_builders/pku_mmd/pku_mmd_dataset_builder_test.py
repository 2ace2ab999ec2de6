"""Builds pku_mmd from dummy_data without TensorFlow and reads it back as TFDS data sources."""

import pathlib
import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds

import tfds_builders  # noqa: F401  (registers the builders)
from skel_jax.data import pku_mmd
from skel_jax.data import pku_sources
from skel_jax.prepare import prepare
from tfds_builders.pku_mmd import pku_mmd_dataset_builder as pku_builder

DUMMY_DATA = pathlib.Path(pku_builder.__file__).parent / "dummy_data"
CONFIGS = ("phase1_xsub", "phase1_xview", "phase2_xsub", "phase2_xview")


def _build(config, manual_dir, data_dir, **kwargs):
    builder, built = prepare(f"pku_mmd/{config}", str(manual_dir), str(data_dir),
                             num_workers=kwargs.pop("num_workers", 1), **kwargs)
    assert built
    return builder


def _read_split_file(config):
    phase, protocol = int(config[5]), config.split("_")[1]
    path = pku_sources.find_split_file(DUMMY_DATA, phase, protocol)
    return pku_mmd.read_pku_split(path.read_bytes(), str(path))


@pytest.mark.parametrize("config", CONFIGS)
def test_every_config_builds_one_clip_per_label_row(config, tmp_path):
    _build(config, DUMMY_DATA, tmp_path)
    phase = int(config[5])
    videos = pku_sources.find_videos(DUMMY_DATA, phase)
    for split, names in zip(("train", "test"), _read_split_file(config)):
        source = tfds.data_source(f"pku_mmd/{config}", data_dir=str(tmp_path), split=split)
        expected = {}
        for name in names:
            rows = pku_mmd.read_pku_labels(pathlib.Path(videos[name].label_path).read_bytes(), "")
            for i, row in enumerate(rows, start=1):
                expected[f"{name}_{i:03d}"] = row
        got = {source[i]["sample_name"].decode(): source[i] for i in range(len(source))}
        assert got.keys() == expected.keys()
        for key, example in got.items():
            label, start, end, _ = expected[key]
            assert example["label"] == label - 1
            assert example["num_frames"] == end - start + 1 == example["skeleton"].shape[0]
            assert example["replication"] == int(key[-3:])


def test_clips_equal_the_cut_and_normalised_video(tmp_path):
    _build("phase2_xview", DUMMY_DATA, tmp_path, num_workers=2)
    videos = pku_sources.find_videos(DUMMY_DATA, 2)
    source = tfds.data_source("pku_mmd/phase2_xview", data_dir=str(tmp_path), split="train")
    assert len(source) > 0
    for i in range(len(source)):
        example = source[i]
        name, row = example["sample_name"].decode().rsplit("_", 1)
        video = videos[name]
        frames = pku_mmd.read_pku_skeleton(pathlib.Path(video.skeleton_path).read_bytes(), "")
        label, start, end, _ = pku_mmd.read_pku_labels(
            pathlib.Path(video.label_path).read_bytes(), "")[int(row) - 1]
        expected, _ = pku_mmd.preprocess_pku(pku_mmd.cut_clip(frames, start, end))
        np.testing.assert_array_equal(example["skeleton"], expected)
        setup, camera, subject = pku_sources.video_fields(name, 2)
        assert (example["setup"], example["camera"], example["subject"]) == (setup, camera, subject)
        assert camera in (2, 3)  # Cross-view trains on views M and R.


def _copy_dummy(tmp_path) -> pathlib.Path:
    manual = tmp_path / "manual"
    shutil.copytree(DUMMY_DATA, manual)
    return manual


def test_a_label_row_past_the_video_end_stops_the_build_or_is_skipped(tmp_path):
    manual = _copy_dummy(tmp_path)
    label = manual / "phase1" / "Train_Label_PKU_final" / "0002-L.txt"
    label.write_text("3,10,999,1\n")
    with pytest.raises(pku_builder.BadSampleError, match=f"(?s){label}.*skip_bad_files"):
        _build("phase1_xsub", manual, tmp_path / "data")
    builder = _build("phase1_xsub", manual, tmp_path / "data", skip_bad_files=True)
    skipped = (pathlib.Path(builder.data_dir) / pku_builder.SKIPPED_FILES_NAME).read_text()
    assert skipped.startswith("0002-L\t")
    names = {e["sample_name"].decode() for e in builder.as_data_source(split="train")}
    assert names and not any(n.startswith("0002-L") for n in names)


def test_a_bad_skeleton_row_is_named(tmp_path):
    manual = _copy_dummy(tmp_path)
    skeleton = manual / "phase1" / "PKU_Skeleton_Renew" / "0003-M.txt"
    lines = skeleton.read_text().splitlines()
    lines[4] = " ".join(lines[4].split()[:149])
    skeleton.write_text("\n".join(lines) + "\n")
    with pytest.raises(pku_builder.BadSampleError, match=f"{skeleton}:5:"):
        _build("phase1_xview", manual, tmp_path / "data")


def test_missing_split_file_and_videos_are_reported(tmp_path):
    manual = _copy_dummy(tmp_path)
    (manual / "phase1" / "Split" / "cross-view.txt").unlink()
    with pytest.raises(FileNotFoundError, match="cross-view.txt .*phase 1, xview"):
        _build("phase1_xview", manual, tmp_path / "data")
    shutil.rmtree(manual / "phase2" / "PKU_Skeleton_Renew")
    with pytest.raises(FileNotFoundError, match="No PKU-MMD phase 2 videos"):
        _build("phase2_xsub", manual, tmp_path / "data")
