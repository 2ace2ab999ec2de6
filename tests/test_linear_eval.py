"""Tests of skel_jax.evaluation.linear (linear probe and fine-tuning) and .features."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from skel_jax import augment
from skel_jax import config_lib
from skel_jax import encoders
from skel_jax import sharding
from skel_jax.evaluation import features as features_lib
from skel_jax.evaluation import linear

MAX_FRAMES = 80
NUM_CLASSES = 3


def _settings(**overrides):
    settings = dict(learning_rate=0.1, encoder_lr_scale=0.1, momentum=0.9, weight_decay=0.0,
                    epochs=3, decay_epochs=(2,), decay_factor=0.1, batch_size=8)
    settings.update(overrides)
    return ml_collections.ConfigDict(settings)


def _source(num_examples, seed=0):
    """Clips whose motion depends on the class, with varied lengths."""
    rng = np.random.default_rng(seed)
    examples = []
    for i in range(num_examples):
        label = i % NUM_CLASSES
        frames = int(rng.integers(40, MAX_FRAMES + 1))
        t = np.linspace(0.0, 1.0, frames, dtype=np.float32)[:, None, None, None]
        skeleton = (rng.standard_normal((1, 2, 25, 3)).astype(np.float32) * 0.3
                    + np.sin((label + 1) * 3.0 * t) * np.float32(label - 1))
        examples.append({"skeleton": skeleton.astype(np.float32), "num_frames": frames,
                         "label": label, "sample_name": f"clip{i}"})
    return examples


def _host_copy(tree):
    return jax.tree.map(lambda a: np.array(a, copy=True), tree)


def _assert_bit_identical(got, want):
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        assert np.asarray(a).dtype == b.dtype and np.asarray(a).shape == b.shape
        assert np.asarray(a).tobytes() == b.tobytes()


@pytest.fixture(scope="module")
def mesh():
    return sharding.make_mesh()


@pytest.fixture(scope="module")
def encoder(mesh):
    """A random runlocal AGCN (it has BatchNorm statistics) replicated over the mesh."""
    config = config_lib.base_config()
    config_lib.apply_runlocal(config)
    defn, variables = encoders.create(config, "graph", jax.random.key(0))
    return defn, jax.device_put(variables, sharding.replicated(mesh))


@pytest.fixture(scope="module")
def source():
    return _source(16)


def test_schedule_decays_at_epoch_boundaries():
    schedule = linear.make_schedule(_settings(decay_epochs=(2, 3)), steps_per_epoch=5)
    lrs = [float(schedule(step)) for step in (0, 9, 10, 14, 15, 100)]
    np.testing.assert_allclose(lrs, [0.1, 0.1, 0.01, 0.01, 0.001, 0.001], rtol=1e-6)


def test_finetune_optimizer_scales_the_backbone_learning_rate():
    settings = _settings(momentum=0.0, weight_decay=0.5, encoder_lr_scale=0.25)
    tx, _ = linear.make_optimizer(settings, steps_per_epoch=10, finetune=True)
    params = {"classifier": jnp.array([1.0, -2.0]), "backbone": jnp.array([4.0])}
    grads = {"classifier": jnp.array([0.5, 0.5]), "backbone": jnp.array([1.0])}
    updates, _ = tx.update(grads, tx.init(params), params)
    # Hand-worked SGD with coupled decay: -lr * (g + wd * p).
    np.testing.assert_allclose(updates["classifier"], [-0.1 * (0.5 + 0.5), -0.1 * (0.5 - 1.0)],
                               rtol=1e-6)
    np.testing.assert_allclose(updates["backbone"], [-0.025 * (1.0 + 2.0)], rtol=1e-6)


def test_init_classifier():
    graphdef, params = linear.init_classifier(256, 60, jax.random.key(0))
    kernel, bias = params["linear"]["kernel"], params["linear"]["bias"]
    assert kernel.shape == (256, 60) and bias.shape == (60,)
    assert kernel.dtype == jnp.float32 and bias.dtype == jnp.float32
    assert np.all(np.asarray(bias) == 0)
    assert abs(float(np.std(kernel)) - 0.01) < 0.0005 and abs(float(np.mean(kernel))) < 0.0005
    x = np.random.default_rng(0).standard_normal((4, 256)).astype(np.float32)
    logits = linear.apply_classifier(graphdef, params, jnp.asarray(x))
    np.testing.assert_allclose(logits, x @ np.asarray(kernel) + np.asarray(bias), rtol=1e-5,
                               atol=1e-6)


def test_extract_features_matches_a_direct_encoder_call(encoder, mesh):
    defn, variables = encoder
    examples = _source(11, seed=1)
    features, labels = features_lib.extract_features(
        features_lib.make_feature_fn(defn, mesh), variables, examples, mesh=mesh, batch_size=8,
        max_frames=MAX_FRAMES)
    assert features.shape == (11, 32) and features.dtype == np.float32
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(labels, [e["label"] for e in examples])
    # One unbatched, unsharded call on the same test crops.
    skeleton = np.zeros((11, MAX_FRAMES, 2, 25, 3), np.float32)
    for i, e in enumerate(examples):
        skeleton[i, :e["num_frames"]] = e["skeleton"]
    frames = jnp.array([e["num_frames"] for e in examples], jnp.int32)
    clips = augment.downstream_test_views(jnp.asarray(skeleton), frames)
    want, _, _ = encoders.apply(defn, jax.device_get(variables), clips, train=False, head=False)
    np.testing.assert_allclose(features, want, rtol=1e-4, atol=1e-5)
    assert features_lib.feature_dim(defn, variables, 64) == 32


def test_linear_probe_leaves_the_encoder_bit_identical(encoder, mesh, source):
    defn, variables = encoder
    before = _host_copy(variables)
    assert before["batch_stats"], "the test needs an encoder with BatchNorm statistics"
    trained = linear.train_classifier(defn, variables, source, feature_dim=32,
                                      num_classes=NUM_CLASSES, settings=_settings(),
                                      finetune=False, mesh=mesh, max_frames=MAX_FRAMES)
    _assert_bit_identical(trained.encoder_variables, before)
    # The caller's arrays are neither changed nor donated away.
    _assert_bit_identical(variables, before)
    assert [h["epoch"] for h in trained.history] == [1, 2, 3]
    assert trained.history[-1]["loss"] < trained.history[0]["loss"]
    # decay_epochs=(2,) counts epochs from 0, as the original: the third epoch is decayed.
    np.testing.assert_allclose([h["learning_rate"] for h in trained.history],
                               [0.1, 0.1, 0.01], rtol=1e-6)
    _, init_params = linear.init_classifier(32, NUM_CLASSES, jax.random.key(0))
    assert not np.array_equal(trained.params["linear"]["kernel"], init_params["linear"]["kernel"])

    feature_fn = features_lib.make_feature_fn(defn, mesh)
    logits, labels = linear.predict(trained, feature_fn, source, mesh=mesh, batch_size=8,
                                    max_frames=MAX_FRAMES)
    features, _ = features_lib.extract_features(feature_fn, variables, source, mesh=mesh,
                                                batch_size=8, max_frames=MAX_FRAMES)
    assert logits.shape == (16, NUM_CLASSES) and logits.dtype == np.float32
    np.testing.assert_array_equal(labels, [e["label"] for e in source])
    kernel = np.asarray(trained.params["linear"]["kernel"])
    np.testing.assert_allclose(logits, features @ kernel + trained.params["linear"]["bias"],
                               rtol=1e-4, atol=1e-5)


def test_finetuning_trains_the_backbone_and_its_statistics_only(encoder, mesh, source):
    defn, variables = encoder
    before = _host_copy(variables)
    trained = linear.train_classifier(defn, variables, source, feature_dim=32,
                                      num_classes=NUM_CLASSES, settings=_settings(epochs=2),
                                      finetune=True, mesh=mesh, max_frames=MAX_FRAMES)
    after = trained.encoder_variables
    _assert_bit_identical(variables, before)
    # The pretraining projection head is not part of the downstream model.
    _assert_bit_identical(after["params"]["head"], before["params"]["head"])
    changed = [not np.array_equal(a, b) for a, b in
               zip(jax.tree.leaves(after["params"]["backbone"]),
                   jax.tree.leaves(before["params"]["backbone"]))]
    assert sum(changed) > len(changed) // 2
    # BatchNorm ran on batch statistics and updated every running mean and variance.
    for a, b in zip(jax.tree.leaves(after["batch_stats"]), jax.tree.leaves(before["batch_stats"])):
        assert not np.array_equal(a, b)


def test_too_few_examples_for_one_batch(encoder, mesh):
    defn, variables = encoder
    with pytest.raises(ValueError, match="has 5 examples, fewer than one batch of 8"):
        linear.train_classifier(defn, variables, _source(5), feature_dim=32,
                                num_classes=NUM_CLASSES, settings=_settings(), finetune=False,
                                mesh=mesh, max_frames=MAX_FRAMES)


def test_batch_must_split_over_the_devices(encoder, mesh, source):
    defn, variables = encoder
    with pytest.raises(ValueError, match=r"multiple of the number of devices \(8\)"):
        linear.train_classifier(defn, variables, source, feature_dim=32,
                                num_classes=NUM_CLASSES, settings=_settings(batch_size=12),
                                finetune=False, mesh=mesh, max_frames=MAX_FRAMES)


def test_sgd_reference_for_the_linear_optimizer():
    """The probe's optimizer is PyTorch SGD: buf = m * buf + g; p -= lr * buf."""
    tx, _ = linear.make_optimizer(_settings(), steps_per_epoch=100, finetune=False)
    params = {"classifier": jnp.array([1.0])}
    state = tx.init(params)
    buf, p = 0.0, 1.0
    for g in (0.5, -0.25, 1.0):
        updates, state = tx.update({"classifier": jnp.array([g])}, state, params)
        params = optax.apply_updates(params, updates)
        buf = 0.9 * buf + g
        p -= 0.1 * buf
        np.testing.assert_allclose(params["classifier"], [p], rtol=1e-6)
