"""Downstream evaluation of a pretrained encoder (method.md §7): the protocols and their runner.

``evaluate(workdir, protocol, representation)`` reads the training config saved with a
checkpoint (dataset, representations, model sizes), restores the query encoder of one
representation and nothing else, runs one protocol and writes its results into
``WORKDIR/eval`` (see ``report``), plus one record per result in ``WORKDIR/eval/metrics.jsonl``
(and TensorBoard) at the checkpoint's step. ``watch`` does so for every new checkpoint of a
running training.

Protocols:

* ``linear``: a linear classifier on the frozen encoder (inference mode), ``config.linear``.
* ``knn``: cosine k-NN of test-crop features against the training set's (``knn``).
* ``finetune``: encoder and classifier trained with all labels, ``config.finetune``.
* ``semi``: as ``finetune`` on class-stratified subsets of the labels (``subsets``), for each
  label fraction and seed; mean and spread over the seeds are reported.

Fine-tuning schedule (our choice; method.md gives none): the linear protocol's SGD (momentum
0.9, 80 epochs, x0.1 at epochs 50 and 70, batch 64) with learning rate 0.1 for the classifier
and 0.01 for the backbone (``encoder_lr_scale`` 0.1, so the pretrained features are adapted
rather than overwritten), and weight decay 1e-4 (as in pretraining) against overfitting the
small labelled subsets.
"""

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from skel_jax import checkpointing
from skel_jax import config_lib
from skel_jax import metrics_writer
from skel_jax import optim
from skel_jax import sharding
from skel_jax import train
from skel_jax.data import input_pipeline
from skel_jax.evaluation import features as features_lib
from skel_jax.evaluation import knn as knn_lib
from skel_jax.evaluation import linear as linear_lib
from skel_jax.evaluation import report
from skel_jax.evaluation import subsets

PROTOCOLS = ("linear", "knn", "semi", "finetune")
DEFAULT_KS = (1,)
DEFAULT_LABEL_FRACTIONS = (0.01, 0.1)
DEFAULT_NUM_SEEDS = 3


def default_config() -> ml_collections.ConfigDict:
    """The evaluation settings, overridable with ``--config.<field>=<value>``."""
    c = ml_collections.ConfigDict()
    c.dataset = ""  # TFDS name/config; "" evaluates on the pretraining dataset.
    c.data_dir = ""  # "" reads the data where pretraining did.
    c.train_split = "train"
    c.test_split = "test"
    c.seed = 0
    c.read_threads = 2
    c.eval_batch_size = 256  # Clips per compiled call when extracting test-crop features.
    c.knn_chunk_size = 1024  # Test rows compared with the whole training set at once.
    # method.md §7 linear evaluation.
    c.linear = ml_collections.ConfigDict(dict(
        learning_rate=0.1, momentum=0.9, weight_decay=0.0, epochs=80, decay_epochs=(50, 70),
        decay_factor=0.1, batch_size=64))
    # Fine-tuning and semi-supervised (see the module docstring).
    c.finetune = ml_collections.ConfigDict(dict(
        learning_rate=0.1, encoder_lr_scale=0.1, momentum=0.9, weight_decay=1e-4, epochs=80,
        decay_epochs=(50, 70), decay_factor=0.1, batch_size=64))
    c.watch = ml_collections.ConfigDict(dict(
        poll_seconds=60.0,
        # Stop when no new checkpoint has appeared for this long.
        idle_timeout_seconds=3600.0))
    return c


def validate(protocol: str, representation: str, config: ml_collections.ConfigDict, *,
             ks: Sequence[int], label_fractions: Sequence[float], num_seeds: int) -> None:
    """Checks the request before any checkpoint or data is read.

    Raises:
      ValueError: naming the offending setting.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"Unknown protocol {protocol!r}; choose one of {PROTOCOLS}.")
    if representation not in config_lib.SINGLES:
        raise ValueError(f"Unknown encoder {representation!r}; choose one of "
                         f"{config_lib.SINGLES}.")
    if not ks or any(k < 1 for k in ks):
        raise ValueError(f"k values must be positive integers; got {tuple(ks)}.")
    if not label_fractions or any(not 0 < f <= 1 for f in label_fractions):
        raise ValueError(f"Label fractions must lie in (0, 1]; got {tuple(label_fractions)}.")
    if num_seeds < 1:
        raise ValueError(f"The number of seeds must be at least 1; got {num_seeds}.")
    for name in ("linear", "finetune"):
        section = config[name]
        if section.epochs < 1 or section.batch_size < 1 or section.learning_rate <= 0:
            raise ValueError(f"config.{name} needs epochs >= 1, batch_size >= 1 and "
                             f"learning_rate > 0; got {section.epochs}, {section.batch_size} "
                             f"and {section.learning_rate}.")


class _Data:
    """The evaluation dataset's splits and the settings to read them."""

    def __init__(self, train_config, config, workdir):
        self.dataset = config.dataset or train_config.data.dataset
        data_dir = config.data_dir or train.data_dir_of(train_config, workdir)
        self.train = input_pipeline.load_source(self.dataset, config.train_split, data_dir)
        self.test = input_pipeline.load_source(self.dataset, config.test_split, data_dir)
        self.max_frames = train_config.data.max_frames
        self.class_names = list(self.train.dataset_info.features["label"].names)
        self.num_classes = len(self.class_names)


def _fraction_tag(fraction: float) -> str:
    return f"{100 * fraction:g}pct"


def _spread(values: Sequence[float]) -> dict[str, float]:
    values = np.asarray(values, np.float64)
    return {"mean": float(values.mean()),
            "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "min": float(values.min()), "max": float(values.max())}


class _Run:
    """One protocol on one restored encoder: shared state of the protocol functions."""

    def __init__(self, workdir, protocol, representation, config, step, random_init, mesh,
                 ks, label_fractions, num_seeds):
        self.protocol, self.representation, self.config = protocol, representation, config
        self.mesh, self.ks = mesh, tuple(ks)
        self.label_fractions, self.num_seeds = tuple(label_fractions), num_seeds
        self.random_init = random_init
        self.train_config, self.step, self.defn, self.variables = features_lib.load_encoder(
            workdir, representation, step=step, mesh=mesh, random_init=random_init,
            seed=config.seed)
        self.data = _Data(self.train_config, config, workdir)
        self.eval_dir = os.path.join(workdir, report.EVAL_SUBDIR)
        self.stem = report.output_stem(protocol, representation, step=step,
                                       random_init=random_init)
        self.feature_fn = features_lib.make_feature_fn(self.defn, mesh,
                                                       self.train_config.data.clip_frames)
        self.feature_dim = features_lib.feature_dim(self.defn, self.variables,
                                                    self.train_config.data.clip_frames)

    def summary(self, **fields) -> dict[str, Any]:
        return {
            "protocol": self.protocol, "encoder": self.representation, "step": self.step,
            "random_init": self.random_init,
            "pretraining": {"representations": self.train_config.representations,
                            "dataset": self.train_config.data.dataset},
            "dataset": self.data.dataset, "train_split": self.config.train_split,
            "test_split": self.config.test_split, "num_train": len(self.data.train),
            "num_test": len(self.data.test), "num_classes": self.data.num_classes,
            **fields}

    def features(self, source):
        return features_lib.extract_features(
            self.feature_fn, self.variables, source, mesh=self.mesh,
            batch_size=self.config.eval_batch_size, max_frames=self.data.max_frames,
            read_threads=self.config.read_threads)

    def write(self, stem, summary, labels, predictions):
        if jax.process_index() == 0:
            paths = report.write_outputs(self.eval_dir, stem, summary, labels, predictions,
                                         self.data.class_names)
            logging.info("Wrote %s", ", ".join(paths.values()))

    def knn(self) -> dict[str, Any]:
        train_features, train_labels = self.features(self.data.train)
        test_features, test_labels = self.features(self.data.test)
        predictions = knn_lib.knn_predict(train_features, train_labels, test_features, self.ks,
                                          self.data.num_classes, mesh=self.mesh,
                                          chunk_size=self.config.knn_chunk_size)
        top1 = {k: float(np.mean(predictions[k] == test_labels)) for k in self.ks}
        summary = self.summary(k=list(self.ks), top1=top1[self.ks[0]], top1_by_k=top1)
        self.write(self.stem, summary, test_labels, predictions[self.ks[0]])
        return summary

    def classifier(self, source, *, finetune: bool, seed: int) -> tuple[dict, np.ndarray,
                                                                       np.ndarray]:
        settings = self.config.finetune if finetune else self.config.linear
        trained = linear_lib.train_classifier(
            self.defn, self.variables, source, feature_dim=self.feature_dim,
            num_classes=self.data.num_classes, settings=settings, finetune=finetune,
            mesh=self.mesh, max_frames=self.data.max_frames, seed=seed,
            read_threads=self.config.read_threads,
            clip_frames=self.train_config.data.clip_frames)
        logits, labels = linear_lib.predict(
            trained, self.feature_fn, self.data.test, mesh=self.mesh,
            batch_size=self.config.eval_batch_size, max_frames=self.data.max_frames,
            read_threads=self.config.read_threads)
        results = {"top1": report.top_k_accuracy(logits, labels, 1),
                   "top5": report.top_k_accuracy(logits, labels, 5),
                   "final_train_loss": trained.history[-1]["loss"],
                   "final_train_accuracy": trained.history[-1]["accuracy"],
                   "settings": settings.to_dict()}
        return results, labels, np.argmax(logits, axis=-1)

    def linear(self) -> dict[str, Any]:
        return self._supervised(finetune=False)

    def finetune(self) -> dict[str, Any]:
        return self._supervised(finetune=True)

    def _supervised(self, *, finetune):
        results, labels, predictions = self.classifier(self.data.train, finetune=finetune,
                                                       seed=self.config.seed)
        summary = self.summary(**results)
        self.write(self.stem, summary, labels, predictions)
        return summary

    def semi(self) -> dict[str, Any]:
        all_labels = subsets.read_labels(self.data.train)
        by_fraction = {}
        for fraction in self.label_fractions:
            runs = []
            for offset in range(self.num_seeds):
                seed = self.config.seed + offset
                indices = subsets.stratified_subset(all_labels, fraction, seed)
                results, labels, predictions = self.classifier(
                    subsets.Subset(self.data.train, indices), finetune=True, seed=seed)
                run = {"seed": seed, "num_labelled": len(indices), **results}
                self.write(f"{self.stem}_{_fraction_tag(fraction)}_seed{seed}",
                           self.summary(label_fraction=fraction, **run), labels, predictions)
                runs.append(run)
            by_fraction[str(fraction)] = {
                "top1": _spread([r["top1"] for r in runs]),
                "top5": _spread([r["top5"] for r in runs]),
                "runs": [{k: r[k] for k in ("seed", "num_labelled", "top1", "top5")}
                         for r in runs]}
        summary = self.summary(label_fractions=by_fraction,
                               settings=self.config.finetune.to_dict())
        if jax.process_index() == 0:
            os.makedirs(self.eval_dir, exist_ok=True)
            report.write_json(os.path.join(self.eval_dir, f"{self.stem}.json"), summary)
        return summary


def scalars_of(summary: dict[str, Any]) -> dict[str, float]:
    """The headline numbers of a summary, as ``{"<protocol>_<encoder>[_random]/<metric>": v}``.

    Accuracies are fractions; semi-supervised results give the mean over seeds per fraction.
    """
    prefix = f"{summary['protocol']}_{summary['encoder']}"
    if summary["random_init"]:
        prefix += "_random"
    if summary["protocol"] == "semi":
        return {f"{prefix}/{_fraction_tag(float(fraction))}_{metric}": spread[metric]["mean"]
                for fraction, spread in summary["label_fractions"].items()
                for metric in ("top1", "top5")}
    if summary["protocol"] == "knn":
        return {f"{prefix}/top1_k{k}": v for k, v in summary["top1_by_k"].items()}
    return {f"{prefix}/top1": summary["top1"], f"{prefix}/top5": summary["top5"]}


def format_summary(summary: dict[str, Any]) -> str:
    """One line per headline number, accuracies in percent."""
    head = (f"{summary['protocol']} {summary['encoder']}"
            f"{' (random init)' if summary['random_init'] else ''} step {summary['step']} on "
            f"{summary['dataset']}:")
    lines = [head]
    for name, value in scalars_of(summary).items():
        lines.append(f"  {name.split('/', 1)[1]}: {100 * value:.2f}%")
    # Shown because a classifier that has not fitted its training crops says little about the
    # features: the paper's linear schedule underfits some encoders.
    if "final_train_accuracy" in summary:
        train = summary["final_train_accuracy"]
        lines.append(f"  training accuracy, last epoch: {100 * train:.2f}%")
    return "\n".join(lines)


def evaluate(workdir: str, protocol: str, representation: str, *,
             config: ml_collections.ConfigDict | None = None, step: int | None = None,
             random_init: bool = False, ks: Sequence[int] = DEFAULT_KS,
             label_fractions: Sequence[float] = DEFAULT_LABEL_FRACTIONS,
             num_seeds: int = DEFAULT_NUM_SEEDS,
             mesh: Mesh | None = None) -> dict[str, Any]:
    """Runs one evaluation protocol on the query encoder of one representation.

    Args:
      workdir: a training or importer work directory (only read, except ``WORKDIR/eval``).
      protocol: ``"linear"``, ``"knn"``, ``"semi"`` or ``"finetune"``.
      representation: ``"seq"``, ``"graph"`` or ``"image"``.
      config: evaluation settings (``default_config()`` if None).
      step: the checkpoint step; None for the latest. Given, it is part of the output names.
      random_init: evaluate an untrained encoder of the same architecture instead (outputs
        get a ``_random`` suffix).
      ks: neighbour counts for ``knn``; the first one is the headline and the confusion matrix.
      label_fractions: label shares for ``semi``.
      num_seeds: subsets (seeds ``config.seed``, ``config.seed + 1``, ...) per fraction for
        ``semi``.
      mesh: the device mesh (default: all devices).

    Returns:
      The summary written to ``WORKDIR/eval/<stem>.json``.

    Raises:
      ValueError: a bad request, or a representation the checkpoint does not train.
      FileNotFoundError: no checkpoint (at ``step``), or the dataset is not built.
      checkpointing.CheckpointReadError: a damaged checkpoint.
    """
    config = default_config() if config is None else config
    # Orbax accepts absolute paths only.
    workdir = os.path.abspath(os.path.expanduser(workdir))
    validate(protocol, representation, config, ks=ks, label_fractions=label_fractions,
             num_seeds=num_seeds)
    mesh = sharding.make_mesh() if mesh is None else mesh
    start = time.perf_counter()
    run = _Run(workdir, protocol, representation, config, step, random_init, mesh, ks,
               label_fractions, num_seeds)
    summary = getattr(run, protocol)()
    logging.info("%s (%.0f s)", format_summary(summary), time.perf_counter() - start)
    with metrics_writer.MetricsWriter(run.eval_dir, enabled=jax.process_index() == 0) as writer:
        writer.write_scalars(run.step, scalars_of(summary))
    return summary


def final_step(workdir: str, train_config: ml_collections.ConfigDict, step: int) -> int:
    """The last step a training run will checkpoint, judged from the config of ``step``.

    An imported work directory holds its one imported step, so that step is the last.
    """
    if "imported_from" in train_config:
        return step
    source = input_pipeline.load_source(train_config.data.dataset, train_config.data.train_split,
                                        train.data_dir_of(train_config, workdir))
    return optim.total_steps(train_config, len(source) // train_config.global_batch_size)


def _as_process_0_sees(new_steps: list[int], idle: bool) -> tuple[list[int], bool]:
    """Process 0's new checkpoint steps and idle-timeout verdict, on every process.

    Each process lists the shared checkpoint directory and reads its clock at its own moment,
    so one may see a step, or a timeout, that another does not yet; acting on their own views
    they would evaluate different steps and wait forever in each other's collectives.
    """
    if jax.process_count() == 1:
        return new_steps, idle
    count = int(multihost_utils.broadcast_one_to_all(np.int32(len(new_steps))))
    # Shapes must agree on every process: only process 0's values are broadcast.
    values = np.zeros(count + 1, np.int32)
    if jax.process_index() == 0:
        values[:] = [idle, *new_steps]
    values = multihost_utils.broadcast_one_to_all(values)
    return [int(step) for step in values[1:]], bool(values[0])


def watch(workdir: str, protocol: str, representation: str, *,
          config: ml_collections.ConfigDict | None = None,
          clock: Callable[[], float] = time.monotonic,
          sleep: Callable[[float], None] = time.sleep, **kwargs) -> list[dict[str, Any]]:
    """Evaluates every checkpoint of a (running) training as it appears.

    Polls ``WORKDIR/checkpoints`` every ``config.watch.poll_seconds``; stops once the training
    config's final step is evaluated, or when no new checkpoint has appeared for
    ``config.watch.idle_timeout_seconds``. A step the trainer deletes before its turn is
    skipped. Outputs are named with their step. In a multi-process job every process follows
    process 0's listing and clock, so all of them evaluate the same steps and stop together.

    Args:
      workdir: the work directory of the training.
      protocol: as for ``evaluate``.
      representation: as for ``evaluate``.
      config: evaluation settings (``default_config()`` if None).
      clock: monotonic seconds (replaceable in tests).
      sleep: waits a number of seconds (replaceable in tests).
      **kwargs: further ``evaluate`` arguments (``random_init``, ``ks``, ...), not ``step``.

    Returns:
      The summaries, in the order evaluated.
    """
    config = default_config() if config is None else config
    workdir = os.path.abspath(os.path.expanduser(workdir))
    validate(protocol, representation, config, ks=kwargs.get("ks", DEFAULT_KS),
             label_fractions=kwargs.get("label_fractions", DEFAULT_LABEL_FRACTIONS),
             num_seeds=kwargs.get("num_seeds", DEFAULT_NUM_SEEDS))
    done, summaries, final = set(), [], None
    idle_since = clock()
    with checkpointing.Checkpointer(workdir, read_only=True) as ckpt:
        while True:
            new_steps, idle = _as_process_0_sees(
                [s for s in ckpt.all_steps() if s not in done],
                clock() - idle_since >= config.watch.idle_timeout_seconds)
            for step in new_steps:
                try:
                    if final is None:
                        final = final_step(workdir, ckpt.restore_config(step), step)
                    summaries.append(evaluate(workdir, protocol, representation, config=config,
                                              step=step, **kwargs))
                except FileNotFoundError:
                    if step in ckpt.all_steps():
                        raise
                    logging.warning("Checkpoint step %d was deleted before it could be "
                                    "evaluated; skipped.", step)
                done.add(step)
                idle_since = clock()
            if final is not None and final in done:
                logging.info("Evaluated the final step %d; stopping.", final)
                return summaries
            if not new_steps and idle:
                logging.info("No new checkpoint in %s for %.0f s; stopping.", ckpt.directory,
                             config.watch.idle_timeout_seconds)
                return summaries
            sleep(config.watch.poll_seconds)
