"""Tests of skel_jax.checkpointing: round trips, shardings, partial restore, retention, errors."""

import logging
import os
import shutil

import grain
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from skel_jax import checkpointing
from skel_jax import config_lib
from skel_jax import encoders
from skel_jax import optim
from skel_jax import train_state

STEP = 3


def _config():
    config = config_lib.base_config()
    config_lib.apply_runlocal(config)
    return config


def _abstract_state(config):
    tx, _ = optim.make_optimizer(config, steps_per_epoch=10)
    return train_state.abstract(config, tx)[1]


def _filled(abstract, seed):
    """Concrete arrays of the abstract tree's shapes and dtypes, every value distinct."""
    rng = np.random.default_rng(seed)

    def fill(leaf):
        if jnp.issubdtype(leaf.dtype, jnp.floating):
            return jnp.asarray(rng.standard_normal(leaf.shape).astype(leaf.dtype))
        return jnp.asarray(rng.integers(1, 1000, leaf.shape).astype(leaf.dtype))

    return jax.tree.map(fill, abstract)


def _replicated(abstract, mesh):
    return jax.tree.map(lambda a: a.update(sharding=NamedSharding(mesh, P())), abstract)


def _single_device(abstract):
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.tree.map(lambda a: a.update(sharding=sharding), abstract)


def _assert_bit_identical(restored, expected):
    assert jax.tree.structure(restored) == jax.tree.structure(expected)
    for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(expected)):
        assert isinstance(got, jax.Array)
        assert got.dtype == want.dtype and got.shape == want.shape
        assert np.asarray(got).tobytes() == np.asarray(want).tobytes()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A workdir holding one runlocal seq-graph train state at STEP."""
    workdir = tmp_path_factory.mktemp("run")
    config = _config()
    abstract = _abstract_state(config)
    state = _filled(abstract, seed=0)
    with checkpointing.Checkpointer(workdir) as ckpt:
        assert ckpt.save(STEP, state, config=config)
    return workdir, config, abstract, state


@pytest.fixture
def saved_copy(saved, tmp_path):
    workdir, config, abstract, state = saved
    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy)
    return copy, config, abstract, state


# ----------------------------------------------------------------------------- round trips


def test_state_round_trip_is_bit_identical(saved):
    workdir, _, abstract, state = saved
    with checkpointing.Checkpointer(workdir, read_only=True) as ckpt:
        assert ckpt.all_steps() == [STEP] and ckpt.latest_step() == STEP
        restored = ckpt.restore(None, _single_device(abstract))
    _assert_bit_identical(restored, state)
    assert restored["step"].dtype == jnp.int32
    assert restored["queue_ptr"]["seq"].dtype == jnp.int32


def test_a_read_only_open_asks_orbax_for_no_write_option(saved, caplog):
    # Orbax warns for every write option it must switch off in a read-only manager.
    workdir = saved[0]
    with caplog.at_level(logging.WARNING):
        with checkpointing.Checkpointer(workdir, read_only=True) as ckpt:
            assert ckpt.latest_step() == STEP
    switched = [r.getMessage() for r in caplog.records
                if "CheckpointManagerOptions.read_only=True" in r.getMessage()]
    assert switched == []


def test_restore_places_arrays_by_the_target_shardings_on_eight_devices(saved):
    workdir, _, abstract, state = saved
    assert jax.device_count() == 8
    mesh = jax.make_mesh((8,), ("data",))
    target = _replicated(abstract, mesh)
    queue_sharding = NamedSharding(mesh, P("data", None))
    target["queues"] = jax.tree.map(lambda a: a.update(sharding=queue_sharding),
                                    abstract["queues"])
    with checkpointing.Checkpointer(workdir, read_only=True) as ckpt:
        restored = ckpt.restore(STEP, target)
    _assert_bit_identical(restored, state)
    queue = restored["queues"]["graph"]
    assert queue.sharding == queue_sharding
    rows = queue.shape[0] // 8
    assert {s.data.shape for s in queue.addressable_shards} == {(rows, 128)}
    for shard in queue.addressable_shards:
        np.testing.assert_array_equal(shard.data, np.asarray(state["queues"]["graph"])[shard.index])
    kernel = restored["encoders"]["query"]["seq"]["params"]["head"]["output"]["kernel"]
    assert kernel.sharding == NamedSharding(mesh, P())
    assert len(kernel.addressable_shards) == 8


@pytest.mark.parametrize("which", ["query", "key"])
def test_restore_encoder_reads_one_encoder(saved, which):
    workdir, config, _, state = saved
    # The target comes from the encoder alone: no optimizer, no queues.
    abstract = _single_device(encoders.abstract(config, "graph")[1])
    with checkpointing.Checkpointer(workdir, read_only=True) as ckpt:
        variables = ckpt.restore_encoder(STEP, "graph", abstract, which=which)
    _assert_bit_identical(variables, state["encoders"][which]["graph"])


def test_config_round_trips_into_a_valid_config_dict(saved):
    workdir, config, _, _ = saved
    with checkpointing.Checkpointer(workdir, read_only=True) as ckpt:
        restored = ckpt.restore_config()
    config_lib.validate(restored)
    assert restored.to_dict() == config.to_dict()
    assert restored.model.graph.channels == (16, 16, 32, 32)


def test_data_iterator_position_round_trips(tmp_path):
    dataset = grain.MapDataset.range(40).shuffle(seed=7).batch(4).to_iter_dataset()
    iterator = iter(dataset)
    next(iterator), next(iterator)
    state = {"x": jnp.arange(3.0)}
    with checkpointing.Checkpointer(tmp_path) as ckpt:
        ckpt.save(1, state, config={"representations": "seq"}, data_iterator=iterator)
        expected = [next(iterator) for _ in range(3)]
        fresh = iter(dataset)
        ckpt.restore(1, _single_device(jax.eval_shape(lambda: state)), data_iterator=fresh)
    for want in expected:
        np.testing.assert_array_equal(next(fresh), want)


def test_state_buffers_can_be_deleted_once_save_returns(tmp_path):
    state = {"x": jnp.arange(1000.0), "y": {"z": jnp.ones((30, 40), jnp.int32)}}
    expected = jax.tree.map(np.asarray, state)
    abstract = _single_device(jax.eval_shape(lambda: state))
    with checkpointing.Checkpointer(tmp_path) as ckpt:
        ckpt.save(1, state, config={})
        for leaf in jax.tree.leaves(state):
            leaf.delete()  # What donating the state to the next train step does.
        restored = ckpt.restore(1, abstract)
    _assert_bit_identical(restored, expected)


# ----------------------------------------------------------------------------- policies


def test_retention_keeps_the_latest_steps(tmp_path):
    state = {"x": jnp.arange(3.0)}
    with checkpointing.Checkpointer(tmp_path, keep=2) as ckpt:
        for step in range(1, 5):
            assert ckpt.save(step, state, config={})
        ckpt.wait_until_finished()
        assert ckpt.all_steps() == [3, 4]
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["3", "4"]


def test_save_interval_and_force(tmp_path):
    state = {"x": jnp.arange(3.0)}
    with checkpointing.Checkpointer(tmp_path, save_interval_steps=2) as ckpt:
        assert not ckpt.save(1, state, config={})
        assert ckpt.save(2, state, config={})
        assert ckpt.save(3, state, config={}, force=True)
        assert not ckpt.save(3, state, config={})  # Not newer than the latest.
        ckpt.wait_until_finished()
        assert ckpt.all_steps() == [2, 3]


def test_read_only_reader_sees_steps_saved_later(tmp_path):
    state = {"x": jnp.arange(3.0)}
    with checkpointing.Checkpointer(tmp_path) as writer:
        writer.save(1, state, config={})
        writer.wait_until_finished()
        with checkpointing.Checkpointer(tmp_path, read_only=True) as reader:
            assert reader.all_steps() == [1]
            writer.save(2, state, config={})
            writer.wait_until_finished()
            assert reader.latest_step() == 2


# ----------------------------------------------------------------------------- errors


def test_empty_workdir_says_how_checkpoints_get_there(tmp_path):
    with checkpointing.Checkpointer(tmp_path, read_only=True) as ckpt:
        assert ckpt.latest_step() is None
        for call in (ckpt.restore_config,
                     lambda: ckpt.restore(None, {}),
                     lambda: ckpt.restore_encoder(None, "seq", {})):
            with pytest.raises(FileNotFoundError) as error:
                call()
            message = str(error.value)
            assert str(tmp_path) in message
            assert "python -m skel_jax.main" in message
            assert "python -m skel_jax.import_torch" in message


def test_missing_step_lists_the_available_ones(saved):
    workdir, _, abstract, _ = saved
    with checkpointing.Checkpointer(workdir, read_only=True) as ckpt:
        with pytest.raises(FileNotFoundError, match=r"step 7 .*available steps: \[3\]"):
            ckpt.restore(7, _single_device(abstract))
        with pytest.raises(FileNotFoundError, match=r"available steps: \[3\]"):
            ckpt.restore_config(7)


def test_untrained_representation_names_the_trained_ones(saved):
    workdir, config, _, _ = saved
    abstract = _single_device(encoders.abstract(config, "image")[1])
    with checkpointing.Checkpointer(workdir, read_only=True) as ckpt:
        with pytest.raises(ValueError, match=r"\('seq', 'graph'\).*no 'image' encoder"):
            ckpt.restore_encoder(STEP, "image", abstract)


def test_unknown_encoder_role(saved):
    workdir, _, _, _ = saved
    with checkpointing.Checkpointer(workdir, read_only=True) as ckpt:
        with pytest.raises(ValueError, match="which must be one of"):
            ckpt.restore_encoder(STEP, "seq", {}, which="momentum")


def test_target_without_shardings_is_rejected(saved):
    workdir, config, abstract, _ = saved
    with checkpointing.Checkpointer(workdir, read_only=True) as ckpt:
        with pytest.raises(ValueError, match=r"leaf \['encoders'\]\['key'\].* has no sharding"):
            ckpt.restore(STEP, abstract)
        with pytest.raises(ValueError, match="has no sharding"):
            ckpt.restore_encoder(STEP, "seq", encoders.abstract(config, "seq")[1])


def test_encoder_of_another_size_is_reported(saved):
    workdir, config, _, _ = saved
    bigger = _config()
    bigger.model.seq.num_layers = config.model.seq.num_layers + 1
    abstract = _single_device(encoders.abstract(bigger, "seq")[1])
    with checkpointing.Checkpointer(workdir, read_only=True) as ckpt:
        with pytest.raises(checkpointing.CheckpointReadError,
                           match=r"has no array encoders/query/seq/params/backbone/layers/2/.*"
                                 r"another config"):
            ckpt.restore_encoder(STEP, "seq", abstract)


def test_state_of_another_config_is_reported(saved):
    workdir, _, abstract, _ = saved
    other = _config()
    other.contrastive.queue_size = 128
    with checkpointing.Checkpointer(workdir, read_only=True) as ckpt:
        with pytest.raises(checkpointing.CheckpointReadError,
                           match=rf"step {STEP} at .* holds queues/graph as float32 \(64, 128\); "
                                 r"the restore target asks for float32 \(128, 128\)"):
            ckpt.restore(STEP, _single_device(_abstract_state(other)))
        partial = dict(abstract)
        del partial["queue_ptr"]
        with pytest.raises(checkpointing.CheckpointReadError,
                           match="holds arrays the restore target lacks, e.g. queue_ptr/graph"):
            ckpt.restore(STEP, _single_device(partial))


# Damage is done to metadata files: a damaged array store also raises CheckpointReadError, but
# Orbax then abandons one read coroutine per array, whose warnings flood the test log at exit.


def test_truncated_state_metadata_names_step_and_path(saved_copy):
    workdir, config, abstract, _ = saved_copy
    step_dir = workdir / "checkpoints" / str(STEP)
    metadata = step_dir / "state" / "_METADATA"
    metadata.write_text(metadata.read_text()[:100])
    with checkpointing.Checkpointer(workdir, read_only=True) as ckpt:
        for call in (lambda: ckpt.restore(STEP, _single_device(abstract)),
                     lambda: ckpt.restore_encoder(
                         STEP, "seq", _single_device(encoders.abstract(config, "seq")[1]))):
            with pytest.raises(checkpointing.CheckpointReadError) as error:
                call()
            message = str(error.value)
            assert f"step {STEP} at {step_dir}" in message
            assert "JSONDecodeError" in message and "missing or damaged" in message


@pytest.mark.parametrize("damage, cause", [
    (lambda path: path.write_text(path.read_text()[:20]), "JSONDecodeError"),
    (os.remove, "FileNotFoundError"),
])
def test_damaged_config_names_step_and_path(saved_copy, damage, cause):
    workdir, _, _, _ = saved_copy
    damage(workdir / "checkpoints" / str(STEP) / "config" / "metadata")
    with checkpointing.Checkpointer(workdir, read_only=True) as ckpt:
        with pytest.raises(checkpointing.CheckpointReadError,
                           match=rf"(?s)step {STEP} at .*{cause}.*missing or damaged"):
            ckpt.restore_config(STEP)


def test_restoring_an_iterator_position_that_was_not_saved(saved):
    workdir, _, abstract, _ = saved
    iterator = iter(grain.MapDataset.range(8).batch(2).to_iter_dataset())
    with checkpointing.Checkpointer(workdir, read_only=True) as ckpt:
        with pytest.raises(ValueError, match="saved without data_iterator"):
            ckpt.restore(STEP, _single_device(abstract), data_iterator=iterator)


def test_read_only_checkpointer_refuses_to_save(saved):
    workdir, config, _, state = saved
    with checkpointing.Checkpointer(workdir, read_only=True) as ckpt:
        with pytest.raises(ValueError, match="read_only=True; it cannot save"):
            ckpt.save(STEP + 1, state, config=config)


def test_forced_save_of_an_existing_step(saved_copy):
    workdir, config, _, state = saved_copy
    with checkpointing.Checkpointer(workdir) as ckpt:
        with pytest.raises(FileExistsError, match=rf"already holds a checkpoint for step {STEP}"):
            ckpt.save(STEP, state, config=config, force=True)


@pytest.mark.parametrize("kwargs, message", [
    (dict(keep=0), "keep must be at least 1"),
    (dict(save_interval_steps=0), "save_interval_steps must be at least 1"),
])
def test_invalid_options(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        checkpointing.Checkpointer(tmp_path, **kwargs)


def test_a_relative_workdir_is_resolved(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with checkpointing.Checkpointer("relative/workdir") as ckpt:
        assert ckpt.workdir == str(tmp_path / "relative" / "workdir")
        assert ckpt.latest_step() is None
