"""The compiled ISC step: one device vs eight, gradients, queues, momentum (method.md §5)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from skel_jax import config_lib
from skel_jax import contrastive
from skel_jax import optim
from skel_jax import sharding
from skel_jax import train_state
from skel_jax import train_step


def _config(representations):
    c = config_lib.base_config()
    config_lib.apply_runlocal(c)
    c.representations = representations
    c.global_batch_size = 8
    c.contrastive.queue_size = 32
    return c


def _batch(seed, batch_size=8, max_frames=80):
    rng = np.random.default_rng(seed)
    num_frames = rng.integers(20, max_frames + 1, size=batch_size).astype(np.int32)
    skeleton = rng.normal(size=(batch_size, max_frames, 2, 25, 3)).astype(np.float32)
    skeleton *= (np.arange(max_frames)[None, :, None, None, None] < num_frames[:, None, None,
                                                                                None, None])
    return {"skeleton": skeleton, "num_frames": num_frames}


def _run(config, devices, num_steps=2):
    tx, schedule = optim.make_optimizer(config, steps_per_epoch=10)
    defs, state = train_state.create(config, jax.random.key(0), tx)
    mesh = sharding.make_mesh(devices)
    shardings = sharding.state_shardings(mesh, state)
    state = jax.device_put(state, shardings)
    step = train_step.compile_train_step(
        train_step.make_train_step(config, defs, tx, schedule), mesh, shardings)
    all_metrics = []
    for i in range(num_steps):
        state, metrics = step(state, sharding.put_batch(_batch(i), mesh))
        all_metrics.append(jax.device_get(metrics))
    return jax.device_get(state), all_metrics, state


@pytest.mark.parametrize("representations", ["seq-graph", "graph-image"])
def test_eight_devices_compute_the_same_step_as_one(representations):
    config = _config(representations)
    one, metrics_one, _ = _run(config, jax.devices()[:1])
    eight, metrics_eight, sharded_state = _run(config, jax.devices()[:8])
    for m1, m8 in zip(metrics_one, metrics_eight):
        for name in m1:
            np.testing.assert_allclose(m1[name], m8[name], rtol=2e-4, atol=1e-6, err_msg=name)
    # Parameters after two SGD steps carry the gradients; queues carry the keys. Sums over 8
    # shards add in another order, and BatchNorm's divisions amplify that a little.
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-3, atol=1e-4),
                 one["encoders"], eight["encoders"])
    for rep in one["queues"]:
        np.testing.assert_allclose(one["queues"][rep], eight["queues"][rep], rtol=1e-3, atol=1e-5)
        # The queue really is split along K: each device holds K/8 rows.
        shard_shapes = {s.data.shape for s in sharded_state["queues"][rep].addressable_shards}
        assert shard_shapes == {(4, 128)}


def test_step_updates_queues_pointers_and_key_encoders():
    config = _config("seq-graph")
    tx, schedule = optim.make_optimizer(config, steps_per_epoch=10)
    defs, state = train_state.create(config, jax.random.key(0), tx)
    before = jax.device_get(state)
    step = jax.jit(train_step.make_train_step(config, defs, tx, schedule))
    after, metrics = step(state, _batch(0))
    after = jax.device_get(after)
    assert int(after["step"]) == 1
    for rep in ("seq", "graph"):
        assert int(after["queue_ptr"][rep]) == 8
        # The first slot of every batch position was replaced by a unit-norm key.
        new_rows = after["queues"][rep].reshape(8, 4, 128)[:, 0]
        np.testing.assert_allclose(np.linalg.norm(new_rows, axis=1), 1.0, rtol=1e-5)
        np.testing.assert_array_equal(after["queues"][rep].reshape(8, 4, 128)[:, 1:],
                                      before["queues"][rep].reshape(8, 4, 128)[:, 1:])
        # Key params = m * old key + (1 - m) * old query (equal at init, so unchanged).
        jax.tree.map(np.testing.assert_allclose, after["encoders"]["key"][rep]["params"],
                     before["encoders"]["query"][rep]["params"])
    assert set(metrics) >= {"loss", "acc_seq_graph", "acc_graph_seq", "loss_seq_graph",
                            "learning_rate", "grad_norm"}
    assert np.isfinite(float(metrics["loss"]))
    # With random encoders, each term's loss is about log(K + 1).
    assert abs(float(metrics["loss_seq_graph"]) - np.log(33)) < 1.0


def test_first_step_reports_the_learning_rate_and_moves_the_query_parameters():
    config = _config("graph")
    config.model.graph.channels = (8, 8)
    config.model.graph.strides = (1, 2)
    tx, schedule = optim.make_optimizer(config, steps_per_epoch=10)
    defs, state = train_state.create(config, jax.random.key(1), tx)
    step = jax.jit(train_step.make_train_step(config, defs, tx, schedule))
    batch = _batch(3)
    new_state, metrics = step(jax.tree.map(jnp.copy, state), batch)
    moved = jax.tree.map(lambda a, b: a - b, new_state["encoders"]["query"]["graph"]["params"],
                         state["encoders"]["query"]["graph"]["params"])
    assert float(metrics["grad_norm"]) > 0
    assert np.isclose(float(metrics["learning_rate"]), config.optimizer.learning_rate)
    assert max(float(jnp.abs(x).max()) for x in jax.tree.leaves(moved)) > 0
