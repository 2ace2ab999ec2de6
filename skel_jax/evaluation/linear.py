"""Training a linear classifier on an encoder: linear evaluation and fine-tuning (method.md §7).

One loop serves both protocols; ``finetune`` switches what the step trains:

* ``finetune=False`` (linear evaluation): the encoder runs in inference mode (BatchNorm running
  statistics, no dropout) and its features pass through ``stop_gradient``; only the classifier
  learns. The encoder variables still travel through the step and come back out, so a test can
  check that they leave it bit-identical.
* ``finetune=True`` (fine-tuning, semi-supervised): the backbone runs in training mode (BatchNorm
  batch statistics, updating the running ones; dropout) and its parameters learn with the
  classifier, at ``encoder_lr_scale`` times the classifier's learning rate. The pretraining
  projection head is kept untouched: downstream models use the backbone's feature only.

Both use SGD with momentum and coupled weight decay (as PyTorch), a step decay of the learning
rate at ``decay_epochs``, batches of ``batch_size`` random training crops (scale U(0.5, 1), no
spatial augmentation) and a classifier ``LinearHead`` initialised normal(0, 0.01), bias 0. The
step is compiled once over the mesh like pretraining: batch sharded, state replicated and
donated.
"""

from collections.abc import Callable, Sequence
import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from flax import nnx
from jax.sharding import Mesh

from skel_jax import augment
from skel_jax import encoders
from skel_jax import sharding
from skel_jax.data import input_pipeline
from skel_jax.evaluation import features as features_lib
from skel_jax.models import heads

# Host batch fields the step reads.
BATCH_FIELDS = ("skeleton", "num_frames", "label")
# The part of the encoder's parameters a downstream model uses (the rest is the MLP head).
BACKBONE = "backbone"


@dataclasses.dataclass(frozen=True)
class Classifier:
    """A trained classifier and the encoder variables it was trained on.

    Attributes:
      graphdef: the ``LinearHead``'s static graph.
      params: its parameters, ``{"linear": {"kernel", "bias"}}``.
      encoder_variables: the encoder's variables after training (unchanged unless fine-tuned).
      history: per epoch, ``{"epoch", "loss", "accuracy", "learning_rate"}`` (training means).
    """

    graphdef: Any
    params: dict
    encoder_variables: dict
    history: list[dict[str, float]]


def make_schedule(settings: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.Schedule:
    """``learning_rate``, times ``decay_factor`` from the first step of each ``decay_epochs``.

    Epochs count from 0, as in the original's ``epoch >= milestone`` rule: with 80 epochs and
    ``decay_epochs=(50, 70)`` the 51st epoch is the first at 0.1 x, the 71st the first at 0.01 x.
    """
    return optax.piecewise_constant_schedule(
        settings.learning_rate,
        {int(epoch * steps_per_epoch): settings.decay_factor for epoch in settings.decay_epochs})


def _sgd(settings, learning_rate) -> optax.GradientTransformation:
    return optax.chain(optax.add_decayed_weights(settings.weight_decay),
                       optax.sgd(learning_rate, momentum=settings.momentum))


def make_optimizer(settings: ml_collections.ConfigDict, steps_per_epoch: int, *,
                   finetune: bool) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The optimizer over ``{"classifier": ..., ["backbone": ...]}`` and the classifier's schedule.

    Args:
      settings: ``learning_rate``, ``momentum``, ``weight_decay``, ``decay_epochs``,
        ``decay_factor`` and, with ``finetune``, ``encoder_lr_scale``.
      steps_per_epoch: optimizer steps per epoch.
      finetune: also optimise the backbone, at ``encoder_lr_scale`` times the learning rate.

    Returns:
      (optimizer, learning-rate schedule of the classifier).
    """
    schedule = make_schedule(settings, steps_per_epoch)
    if not finetune:
        return _sgd(settings, schedule), schedule
    scale = settings.encoder_lr_scale
    tx = optax.multi_transform(
        {"classifier": _sgd(settings, schedule),
         BACKBONE: _sgd(settings, lambda count: scale * schedule(count))},
        {"classifier": "classifier", BACKBONE: BACKBONE})
    return tx, schedule


def init_classifier(feature_dim: int, num_classes: int, key: jax.Array) -> tuple[Any, dict]:
    """A ``LinearHead`` (normal(0, 0.01) weights, zero bias) as (graphdef, pure-dict params)."""
    head = heads.LinearHead(feature_dim, num_classes, rngs=nnx.Rngs(params=key))
    graphdef, params = nnx.split(head, nnx.Param)
    return graphdef, nnx.to_pure_dict(params)


def apply_classifier(graphdef: Any, params: dict, features: jax.Array) -> jax.Array:
    """Logits (N, num_classes) of float32 features (N, d)."""
    return nnx.merge(graphdef, params)(features.astype(jnp.float32))


def _trainable(state: dict, finetune: bool) -> dict:
    trainable = {"classifier": state["classifier"]}
    if finetune:
        trainable[BACKBONE] = state["encoder"]["params"][BACKBONE]
    return trainable


def init_state(encoder_variables: dict, classifier_params: dict,
               tx: optax.GradientTransformation, *, finetune: bool, mesh: Mesh) -> dict:
    """The classifier-training state, replicated over the mesh.

    The state is a copy: the step donates it, and the caller's ``encoder_variables`` must stay
    valid.

    Returns:
      ``{"step", "classifier", "encoder": {"params", "batch_stats"}, "opt_state"}``.
    """
    state = {"step": jnp.zeros((), jnp.int32), "classifier": classifier_params,
             "encoder": encoder_variables}
    state["opt_state"] = tx.init(_trainable(state, finetune))
    return jax.device_put(state, sharding.replicated(mesh), may_alias=False)


def make_train_step(defn: encoders.EncoderDef, classifier_def: Any,
                    tx: optax.GradientTransformation, schedule: optax.Schedule, *,
                    finetune: bool, seed: int,
                    clip_frames: int = augment.CLIP_FRAMES) -> Callable:
    """Builds ``train_step(state, batch) -> (state, metrics)`` as a pure function.

    Args:
      defn: the encoder's static part.
      classifier_def: the ``LinearHead``'s graphdef.
      tx: the optimizer (``make_optimizer``).
      schedule: the classifier's learning-rate schedule (reported).
      finetune: train the backbone too (training mode) instead of freezing it (inference mode).
      seed: seed of the crops and of dropout.
      clip_frames: frames of the training crops.

    Returns:
      The step, not yet jitted (see ``compile_train_step``). ``batch`` holds ``skeleton``
      float32 (B, T, 2, 25, 3), ``num_frames`` (B,) and ``label`` (B,); metrics are the batch's
      mean ``loss`` and ``accuracy`` and the ``learning_rate``.
    """
    seed_key = jax.random.key(seed)
    crop_key, dropout_key = jax.random.fold_in(seed_key, 0), jax.random.fold_in(seed_key, 1)

    def train_step(state, batch):
        step = state["step"]
        rows = jnp.arange(batch["skeleton"].shape[0])
        clips = augment.downstream_train_views(augment.sample_keys(crop_key, step, rows),
                                               batch["skeleton"], batch["num_frames"],
                                               clip_frames)
        encoder = state["encoder"]

        def encoder_params(trainable):
            if finetune:
                return {**encoder["params"], BACKBONE: trainable[BACKBONE]}
            return encoder["params"]

        def loss_fn(trainable):
            features, _, batch_stats = encoders.apply(
                defn, {"params": encoder_params(trainable),
                       "batch_stats": encoder["batch_stats"]},
                clips, train=finetune, head=False,
                dropout_key=jax.random.fold_in(dropout_key, step) if finetune else None)
            if not finetune:
                features = jax.lax.stop_gradient(features)
            logits = apply_classifier(classifier_def, trainable["classifier"], features)
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
            return loss, (batch_stats, logits)

        trainable = _trainable(state, finetune)
        (loss, (batch_stats, logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            trainable)
        updates, opt_state = tx.update(grads, state["opt_state"], trainable)
        trainable = optax.apply_updates(trainable, updates)
        new_state = {
            "step": step + 1,
            "classifier": trainable["classifier"],
            "encoder": {"params": encoder_params(trainable), "batch_stats": batch_stats},
            "opt_state": opt_state,
        }
        metrics = {"loss": loss,
                   "accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"]),
                   "learning_rate": schedule(step)}
        return new_state, metrics

    return train_step


def compile_train_step(step_fn: Callable, mesh: Mesh) -> Callable:
    """Jits the step over the mesh: batch sharded, state replicated and donated."""
    replicated = sharding.replicated(mesh)
    batch_shardings = {name: sharding.batch_sharding(mesh) for name in BATCH_FIELDS}
    return jax.jit(step_fn, in_shardings=(replicated, batch_shardings),
                   out_shardings=(replicated, replicated), donate_argnums=(0,))


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """Full batches per epoch (the remainder is dropped, reshuffled every epoch).

    Raises:
      ValueError: fewer examples than one batch.
    """
    if num_examples < batch_size:
        raise ValueError(
            f"The labelled training set has {num_examples} examples, fewer than one batch of "
            f"{batch_size}; lower the batch size (e.g. --config.linear.batch_size or "
            "--config.finetune.batch_size) or use more labels.")
    return num_examples // batch_size


def train_classifier(defn: encoders.EncoderDef, encoder_variables: dict,
                     source: Sequence[Any], *, feature_dim: int, num_classes: int,
                     settings: ml_collections.ConfigDict, finetune: bool, mesh: Mesh,
                     max_frames: int, seed: int = 0, read_threads: int = 2,
                     clip_frames: int = augment.CLIP_FRAMES) -> Classifier:
    """Trains a linear classifier on the encoder's features (and, with ``finetune``, the encoder).

    Args:
      defn: the encoder's static part.
      encoder_variables: its variables, replicated over ``mesh``; not modified.
      source: labelled random-access training examples.
      feature_dim: the encoder's feature size d.
      num_classes: the classifier's outputs.
      settings: ``epochs``, ``batch_size`` and the ``make_optimizer`` settings.
      finetune: train the backbone too.
      mesh: the device mesh.
      max_frames: frames each stored clip is padded or truncated to.
      seed: seed of the classifier initialisation, data order, crops and dropout.
      read_threads: threads assembling batches.
      clip_frames: frames of the training crops (the pretraining config's
        ``data.clip_frames``).

    Returns:
      The trained ``Classifier``.

    Raises:
      ValueError: fewer examples than one batch, or a batch that does not split over the
        devices.
    """
    sharding.check_divisible(settings.batch_size, mesh)
    per_epoch = steps_per_epoch(len(source), settings.batch_size)
    tx, schedule = make_optimizer(settings, per_epoch, finetune=finetune)
    classifier_def, classifier_params = init_classifier(feature_dim, num_classes,
                                                        jax.random.key(seed))
    state = init_state(encoder_variables, classifier_params, tx, finetune=finetune, mesh=mesh)
    step_fn = compile_train_step(
        make_train_step(defn, classifier_def, tx, schedule, finetune=finetune, seed=seed,
                        clip_frames=clip_frames), mesh)
    batches = input_pipeline.train_iterator(
        source, global_batch_size=settings.batch_size, seed=seed, max_frames=max_frames,
        read_threads=read_threads)
    history = []
    for epoch in range(1, settings.epochs + 1):
        epoch_metrics = []
        for _ in range(per_epoch):
            batch = next(batches)
            state, metrics = step_fn(state, sharding.put_batch(
                {name: batch[name] for name in BATCH_FIELDS}, mesh))
            epoch_metrics.append(metrics)
        # Read once per epoch, so the host does not wait for the device after every step.
        means = jax.tree.map(lambda *v: float(np.mean(v)), *jax.device_get(epoch_metrics))
        history.append({"epoch": epoch, **means})
        logging.info("%s epoch %d/%d: loss %.4f, train accuracy %.4f, lr %.2e",
                     "fine-tune" if finetune else "linear", epoch, settings.epochs,
                     means["loss"], means["accuracy"], means["learning_rate"])
    return Classifier(classifier_def, jax.device_get(state["classifier"]),
                      state["encoder"], history)


def predict(classifier: Classifier, feature_fn: Callable, source: Sequence[Any], *,
            mesh: Mesh, batch_size: int, max_frames: int, read_threads: int = 2
            ) -> tuple[np.ndarray, np.ndarray]:
    """Logits of the centre test crop of every example, the encoder in inference mode.

    Args:
      classifier: a trained classifier.
      feature_fn: the encoder's ``features.make_feature_fn``.
      source: random-access labelled examples.
      mesh: the device mesh.
      batch_size: examples per compiled call; a multiple of the device count.
      max_frames: frames each stored clip is padded or truncated to.
      read_threads: threads assembling batches.

    Returns:
      (float32 (N, num_classes) logits, int32 (N,) labels), in source order.
    """
    features, labels = features_lib.extract_features(
        feature_fn, classifier.encoder_variables, source, mesh=mesh, batch_size=batch_size,
        max_frames=max_frames, read_threads=read_threads)
    logits = jax.jit(lambda params, x: apply_classifier(classifier.graphdef, params, x))(
        classifier.params, features)
    return np.asarray(logits, np.float32), labels
