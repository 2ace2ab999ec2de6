"""Tests for skel_jax.data.input_pipeline on in-memory sources and a tiny built TFDS dataset."""

import itertools
import json
import sys
import types

import numpy as np
import orbax.checkpoint as ocp
import pytest
import tensorflow_datasets as tfds

from skel_jax.data import input_pipeline as ip


def _example(index, num_frames, rng):
    # Scalars are Python ints, as TFDS data sources return them.
    return {
        "skeleton": rng.normal(size=(num_frames, 2, 25, 3)).astype(np.float32),
        "num_frames": num_frames,
        "label": index % 7,
        "sample_name": f"S001C001P001R001A{index:03d}".encode(),
        "setup": 1,
        "camera": 1,
        "subject": 1,
        "replication": 1,
    }


class InMemorySource:
    """A list-backed random-access source; module-level so that grain workers can unpickle it."""

    def __init__(self, num_examples, seed=0, min_frames=1, max_frames=40):
        rng = np.random.default_rng(seed)
        lengths = rng.integers(min_frames, max_frames + 1, size=num_examples)
        self._examples = [_example(i, int(t), rng) for i, t in enumerate(lengths)]

    def __len__(self):
        return len(self._examples)

    def __getitem__(self, index):
        return self._examples[index]


def _take(iterator, count):
    return [next(iterator) for _ in range(count)]


def _indices(batches):
    return [b["index"].tolist() for b in batches]


def _assert_rows_match_source(batch, source, max_frames):
    for row, index in enumerate(batch["index"]):
        if index < 0:
            continue
        expected = ip.pad_example(source[index], max_frames)
        np.testing.assert_array_equal(batch["skeleton"][row], expected["skeleton"])
        assert batch["num_frames"][row] == expected["num_frames"]
        assert batch["label"][row] == expected["label"]


# --- pad_example ---------------------------------------------------------------------------


def test_pad_example_pads_short_clip_with_zeros():
    example = _example(3, 5, np.random.default_rng(0))
    padded = ip.pad_example(example, 8)
    assert set(padded) == {"skeleton", "num_frames", "label"}
    assert padded["skeleton"].shape == (8, 2, 25, 3) and padded["skeleton"].dtype == np.float32
    assert padded["num_frames"].dtype == np.int32 and padded["num_frames"] == 5
    assert padded["label"].dtype == np.int32 and padded["label"] == 3
    np.testing.assert_array_equal(padded["skeleton"][:5], example["skeleton"])
    assert not padded["skeleton"][5:].any()


def test_pad_example_truncates_long_clip_and_accepts_numpy_scalars():
    example = _example(0, 12, np.random.default_rng(1))
    example.update(num_frames=np.int32(12), label=np.int64(59),
                   skeleton=example["skeleton"].astype(np.float64))
    padded = ip.pad_example(example, 10)
    assert padded["num_frames"] == 10 and padded["label"] == 59
    assert padded["skeleton"].dtype == np.float32
    np.testing.assert_allclose(padded["skeleton"], example["skeleton"][:10], rtol=1e-6)


@pytest.mark.parametrize("change, message", [
    (dict(num_frames=0, skeleton=np.zeros((0, 2, 25, 3), np.float32)),
     "S001C001P001R001A004 has 0 frames"),
    (dict(num_frames=6), "S001C001P001R001A004: num_frames is 6 but the skeleton has 5 frames"),
    (dict(skeleton=np.zeros((5, 25, 3), np.float32)),
     r"S001C001P001R001A004: skeleton has shape \(5, 25, 3\), expected \(frames, 2, 25, 3\)"),
])
def test_pad_example_rejects_bad_examples_naming_them(change, message):
    example = _example(4, 5, np.random.default_rng(0)) | change
    with pytest.raises(ValueError, match=message):
        ip.pad_example(example, 300)


def test_pad_example_rejects_nonpositive_max_frames():
    with pytest.raises(ValueError, match="max_frames must be at least 1, got 0"):
        ip.pad_example(_example(0, 5, np.random.default_rng(0)), 0)


# --- train_iterator ------------------------------------------------------------------------


def _train(source, **kwargs):
    kwargs = dict(global_batch_size=4, seed=0, max_frames=32, process_index=0,
                  process_count=1) | kwargs
    return ip.train_iterator(source, **kwargs)


def test_train_batches_have_fixed_shapes_and_the_source_content():
    source = InMemorySource(22, max_frames=50)
    batches = _take(_train(source, global_batch_size=8, process_index=1, process_count=2), 4)
    for batch in batches:
        assert {k: (v.shape, v.dtype) for k, v in batch.items()} == {
            "skeleton": ((4, 32, 2, 25, 3), np.float32),
            "num_frames": ((4,), np.int32),
            "label": ((4,), np.int32),
            "index": ((4,), np.int32),
            "mask": ((4,), np.bool_),
        }
        assert batch["mask"].all()
        _assert_rows_match_source(batch, source, 32)
    # Clips up to 50 frames against max_frames 32: some rows are truncated, some padded.
    num_frames = np.concatenate([b["num_frames"] for b in batches])
    assert num_frames.max() == 32 and num_frames.min() < 32


def test_each_epoch_is_a_new_permutation_fixed_by_the_seed():
    source = InMemorySource(12)
    epochs = np.array(_indices(_take(_train(source, seed=3), 9))).reshape(3, 12)
    for epoch in epochs:
        assert sorted(epoch) == list(range(12))
    assert len({tuple(e) for e in epochs}) == 3
    same_seed = np.array(_indices(_take(_train(source, seed=3), 9))).reshape(3, 12)
    np.testing.assert_array_equal(same_seed, epochs)
    other_seed = np.array(_indices(_take(_train(source, seed=4), 9))).reshape(3, 12)
    assert not (other_seed == epochs).all(axis=1).any()
    # Nor does the next seed replay this run's later epochs.
    assert not (other_seed[:2] == epochs[1:]).all(axis=1).any()


def test_drop_remainder_keeps_full_batches_within_each_epoch():
    source = InMemorySource(14)  # 3 batches of 4 per epoch; 2 examples dropped each epoch.
    batches = _take(_train(source), 12)
    assert all(b["index"].shape == (4,) for b in batches)
    epochs = np.array(_indices(batches)).reshape(4, 12)
    dropped = set()
    for epoch in epochs:
        assert len(set(epoch)) == 12
        dropped |= set(range(14)) - set(epoch)
    # The dropped examples change from epoch to epoch.
    assert len(dropped) > 2


@pytest.mark.parametrize("process_count", [2, 4])
def test_processes_read_disjoint_shards_forming_the_single_process_batches(process_count):
    source = InMemorySource(37)  # 4 global batches of 8 per epoch, 5 examples dropped.
    single = _indices(_take(_train(source, global_batch_size=8), 8))
    shards = [_indices(_take(_train(source, global_batch_size=8, process_index=p,
                                    process_count=process_count), 8))
              for p in range(process_count)]
    for step in range(8):
        rows = [shard[step] for shard in shards]
        assert all(len(r) == 8 // process_count for r in rows)
        # Process p holds rows [p * B, (p + 1) * B) of the single-process global batch.
        assert list(itertools.chain(*rows)) == single[step]
    for epoch in range(2):
        steps = range(4 * epoch, 4 * epoch + 4)
        per_process = [{i for s in steps for i in shard[s]} for shard in shards]
        assert sum(map(len, per_process)) == len(set().union(*per_process)) == 32


@pytest.mark.parametrize("process_index, process_count, consumed", [(0, 1, 2), (1, 2, 5)])
def test_set_state_resumes_exactly_across_epoch_boundaries(process_index, process_count, consumed):
    source = InMemorySource(14)  # 3 global batches of 4 per epoch.
    kwargs = dict(process_index=process_index, process_count=process_count)
    iterator = _train(source, **kwargs)
    _take(iterator, consumed)
    state = json.loads(json.dumps(iterator.get_state()))
    expected = _take(iterator, 5)
    resumed = _train(source, **kwargs)
    resumed.set_state(state)
    for got, want in zip(_take(resumed, 5), expected, strict=True):
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])


def test_orbax_checkpoint_manager_restores_the_iterator(tmp_path):
    source = InMemorySource(14)
    iterator = _train(source)
    _take(iterator, 4)
    with ocp.CheckpointManager(tmp_path) as manager:
        manager.save(4, args=ocp.args.Composite(data=ip.checkpoint_save_args(iterator)))
        manager.wait_until_finished()
    expected = _indices(_take(iterator, 4))
    resumed = _train(source)
    with ocp.CheckpointManager(tmp_path) as manager:
        restored = manager.restore(
            4, args=ocp.args.Composite(data=ip.checkpoint_restore_args(resumed)))
    assert restored.data is resumed
    assert _indices(_take(resumed, 4)) == expected


def test_worker_process_gives_the_same_batches_and_resumes():
    source = InMemorySource(14)
    expected = _indices(_take(_train(source), 6))
    iterator = _train(source, worker_count=1)
    assert _indices(_take(iterator, 2)) == expected[:2]
    state = json.loads(json.dumps(iterator.get_state()))
    resumed = _train(source, worker_count=1)
    resumed.set_state(state)
    assert _indices(_take(resumed, 4)) == expected[2:]


@pytest.mark.parametrize("kwargs, message", [
    (dict(global_batch_size=6, process_count=4),
     r"global_batch_size \(6\) must be a positive multiple of process_count \(4\)"),
    (dict(global_batch_size=0), r"global_batch_size \(0\) must be a positive multiple"),
    (dict(global_batch_size=16),
     r"global_batch_size \(16\) exceeds the dataset \(14 examples\)"),
    (dict(process_index=2, process_count=2),
     "Need 0 <= process_index < process_count, got process_index=2, process_count=2"),
    (dict(seed=-1), "seed must be >= 0, got -1"),
    (dict(max_frames=0), "max_frames must be at least 1, got 0"),
    (dict(worker_count=-1), "worker_count must be >= 0, got -1"),
])
def test_train_iterator_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _train(InMemorySource(14), **kwargs)


def test_train_iterator_reports_a_bad_example_by_name():
    source = InMemorySource(4)
    source[2].update(num_frames=0, skeleton=np.zeros((0, 2, 25, 3), np.float32))
    with pytest.raises(ValueError, match="S001C001P001R001A002 has 0 frames"):
        next(_train(source))


# --- eval_iterator -------------------------------------------------------------------------


@pytest.mark.parametrize("process_count", [1, 3])
def test_eval_covers_every_example_once_in_source_order(process_count):
    source = InMemorySource(10)
    shards = [list(ip.eval_iterator(source, global_batch_size=6, max_frames=32,
                                    process_index=p, process_count=process_count))
              for p in range(process_count)]
    assert [len(shard) for shard in shards] == [2] * process_count
    rows = []
    for step in range(2):
        for shard in shards:
            batch = shard[step]
            assert batch["skeleton"].shape == (6 // process_count, 32, 2, 25, 3)
            np.testing.assert_array_equal(batch["mask"], batch["index"] >= 0)
            _assert_rows_match_source(batch, source, 32)
            rows += batch["index"].tolist()
    # Global batches are consecutive source positions; two padding rows fill the last one.
    assert rows == list(range(10)) + [-1, -1]
    padding = [b for shard in shards for b in shard if not b["mask"].all()]
    for batch in padding:
        pad = ~batch["mask"]
        assert not batch["skeleton"][pad].any()
        assert (batch["num_frames"][pad] == 1).all() and (batch["label"][pad] == 0).all()


@pytest.mark.parametrize("source, kwargs, message", [
    (InMemorySource(0), {}, "Cannot evaluate on an empty source"),
    (InMemorySource(4), dict(global_batch_size=5, process_count=2),
     r"global_batch_size \(5\) must be a positive multiple of process_count \(2\)"),
    (InMemorySource(4), dict(process_index=-1), "Need 0 <= process_index < process_count"),
])
def test_eval_iterator_rejects_bad_arguments(source, kwargs, message):
    kwargs = dict(global_batch_size=4, process_index=0, process_count=1) | kwargs
    with pytest.raises(ValueError, match=message):
        ip.eval_iterator(source, **kwargs)


# --- load_source ---------------------------------------------------------------------------


class InputPipelineTestSkeletons(tfds.core.GeneratorBasedBuilder):
    """A five-example skeleton dataset with the features of the real builders."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "skeleton": tfds.features.Tensor(shape=(None, 2, 25, 3), dtype=np.float32),
            "num_frames": tfds.features.Scalar(np.int32),
            "label": tfds.features.ClassLabel(num_classes=7),
            "sample_name": tfds.features.Text(),
        }))

    def _split_generators(self, dl_manager):
        del dl_manager
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        rng = np.random.default_rng(0)
        for i in range(5):
            example = _example(i, 3 + i, rng)
            yield i, {k: example[k] for k in ("skeleton", "num_frames", "label", "sample_name")}


@pytest.fixture(name="no_project_builders")
def _no_project_builders(monkeypatch):
    # Keeps these tests independent of the project's builders, which load_source imports.
    monkeypatch.setitem(sys.modules, "tfds_builders", types.ModuleType("tfds_builders"))


@pytest.mark.usefixtures("no_project_builders")
def test_load_source_explains_an_unknown_dataset(tmp_path):
    with pytest.raises(ValueError) as error:
        ip.load_source("no_such_dataset/xsub", "train", str(tmp_path))
    message = str(error.value)
    assert "'no_such_dataset/xsub'" in message and f"{tmp_path} holds no build" in message
    assert ("python -m skel_jax.prepare --dataset=no_such_dataset/xsub --manual_dir=<raw "
            f"download> --data_dir={tmp_path}") in message


@pytest.mark.usefixtures("no_project_builders")
def test_load_source_explains_how_to_build_a_missing_dataset(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        ip.load_source("input_pipeline_test_skeletons", "train", str(tmp_path))
    message = str(error.value)
    assert ("'input_pipeline_test_skeletons' (version 1.0.0) has not been built in "
            f"{tmp_path}.") in message
    assert ("python -m skel_jax.prepare --dataset=input_pipeline_test_skeletons --manual_dir=<raw "
            f"download> --data_dir={tmp_path}.") in message
    assert "--config.data.data_dir" not in message


@pytest.mark.usefixtures("no_project_builders")
def test_load_source_without_data_dir_names_the_tfds_default(tmp_path, monkeypatch):
    # TFDS reads its default directory when data_dir is None; the message must name it.
    monkeypatch.setattr(tfds.core.constants, "DATA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError) as error:
        ip.load_source("input_pipeline_test_skeletons", "train", None)
    message = str(error.value)
    assert "None" not in message
    assert f"has not been built in {tmp_path}." in message
    assert f"--data_dir={tmp_path}." in message
    assert "--config.data.data_dir=DIR" in message


@pytest.mark.usefixtures("no_project_builders")
def test_load_source_reads_a_built_dataset_into_the_pipeline(tmp_path):
    builder = InputPipelineTestSkeletons(data_dir=str(tmp_path), file_format="array_record")
    builder.download_and_prepare()
    source = ip.load_source("input_pipeline_test_skeletons", "train", str(tmp_path))
    assert len(source) == 5
    batches = list(ip.eval_iterator(source, global_batch_size=4, max_frames=6,
                                    process_index=0, process_count=1))
    assert [b["index"].tolist() for b in batches] == [[0, 1, 2, 3], [4, -1, -1, -1]]
    for batch in batches:
        _assert_rows_match_source(batch, source, 6)
