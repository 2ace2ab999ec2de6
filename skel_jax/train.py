"""The ISC pretraining loop: data, compiled step, checkpoints, metrics, preemption.

``train(config, workdir)`` resumes from the workdir's latest checkpoint if there is one (train
state and input-iterator state, so the resumed run sees exactly the batches it would have seen),
writes checkpoints every ``checkpoint_every_*`` and at the end, saves once more on SIGTERM before
exiting, and stops at the first non-finite loss, keeping the last good checkpoint.
"""

import os
import signal
import time

import jax
import ml_collections
import numpy as np
from absl import logging

from skel_jax import checkpointing
from skel_jax import config_lib
from skel_jax import metrics_writer
from skel_jax import optim
from skel_jax import sharding
from skel_jax import train_state
from skel_jax import train_step
from skel_jax.data import input_pipeline


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss."""


def data_dir_of(config: ml_collections.ConfigDict, workdir: str) -> str | None:
    """Where the dataset lives: ``data.data_dir``, or ``WORKDIR/data`` for the synthetic one."""
    if config.data.data_dir:
        return os.path.expanduser(config.data.data_dir)
    if config.data.synthetic_clips:
        return os.path.join(workdir, "data")
    return None


def ensure_synthetic_dataset(config: ml_collections.ConfigDict, data_dir: str) -> None:
    """Generates and builds the synthetic NTU-format dataset once, if the config asks for it."""
    import tensorflow_datasets as tfds

    import tfds_builders  # noqa: F401  (registers the builders)
    from skel_jax import prepare
    from skel_jax.data import synthetic

    if tfds.builder(config.data.dataset, data_dir=data_dir).is_prepared():
        return
    raw = os.path.join(data_dir, "synthetic_raw")
    if not os.path.isdir(raw):
        logging.info("Generating %d synthetic clips into %s", config.data.synthetic_clips, raw)
        synthetic.write_ntu_dataset(raw, config.data.synthetic_clips, seed=config.seed)
    prepare.prepare(config.data.dataset, raw, data_dir)


class _Preemption:
    """Turns SIGTERM into a stop at a step that every process agrees on, so the loop can save.

    One process: a handler sets a flag read between steps. Several: JAX's preemption service
    (started by ``jax.distributed.initialize``) takes the SIGTERM of any process and picks the
    step all of them stop at; processes signalled a step apart would otherwise enter the
    checkpoint's collectives at different steps and abort.
    """

    def __init__(self):
        self._multiprocess = jax.process_count() > 1
        self._requested = False
        # Installing a Python handler would take SIGTERM away from JAX's preemption service.
        self._previous = None if self._multiprocess else signal.signal(signal.SIGTERM,
                                                                       self._handle)

    def _handle(self, signum, frame):
        del signum, frame
        logging.warning("SIGTERM received: saving a checkpoint and stopping.")
        self._requested = True

    def reached(self, step: int) -> bool:
        """Whether to save and stop after ``step``; call once per step on every process."""
        if self._multiprocess:
            from jax.experimental import multihost_utils
            self._requested = multihost_utils.reached_preemption_sync_point(step)
            if self._requested:
                logging.warning("Preemption: saving step %d and stopping.", step)
        return self._requested

    def restore(self):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def _check_finite(metrics: dict, step: int) -> None:
    loss = float(metrics["loss"])
    if not np.isfinite(loss):
        raise NonFiniteLossError(
            f"The loss became {loss} at step {step}. Training stopped; the last checkpoint "
            "written before this step is kept. Try a lower optimizer.learning_rate.")


def train(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Pretrains ISC as configured, writing checkpoints and metrics into ``workdir``.

    Args:
      config: an experiment config (see ``configs/``).
      workdir: where checkpoints, metrics and (for the synthetic config) the data go.

    Returns:
      The metrics of the last step, as floats.
    """
    config_lib.validate(config)
    os.makedirs(workdir, exist_ok=True)
    data_dir = data_dir_of(config, workdir)
    if config.data.synthetic_clips:
        if jax.process_index() == 0:
            ensure_synthetic_dataset(config, data_dir)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils
            multihost_utils.sync_global_devices("synthetic dataset built")
    source = input_pipeline.load_source(config.data.dataset, config.data.train_split, data_dir)
    steps_per_epoch = len(source) // config.global_batch_size
    if steps_per_epoch == 0:
        raise config_lib.ConfigError(
            f"The training split of {config.data.dataset} has {len(source)} "
            f"examples, fewer than one global batch ({config.global_batch_size}); lower "
            "global_batch_size.")
    num_steps = optim.total_steps(config, steps_per_epoch)
    checkpoint_every = config.checkpoint_every_steps or (
        config.checkpoint_every_epochs * steps_per_epoch)

    mesh = sharding.make_mesh()
    sharding.check_divisible(config.global_batch_size, mesh)
    tx, schedule = optim.make_optimizer(config, steps_per_epoch)
    defs, abstract_state = train_state.abstract(config, tx)
    state_shardings = sharding.state_shardings(mesh, abstract_state)
    data_iter = input_pipeline.train_iterator(
        source, global_batch_size=config.global_batch_size, seed=config.seed,
        max_frames=config.data.max_frames, read_threads=config.data.read_threads)

    checkpointer = checkpointing.Checkpointer(workdir, save_interval_steps=checkpoint_every,
                                              keep=config.keep_checkpoints)
    start = checkpointer.latest_step()
    if start is None:
        state = jax.jit(lambda key: train_state.create(config, key, tx)[1],
                        out_shardings=state_shardings)(jax.random.key(config.seed))
        start = 0
    else:
        logging.info("Resuming from the checkpoint of step %d in %s", start, workdir)
        state = checkpointer.restore(
            start, sharding.with_shardings(abstract_state, state_shardings),
            data_iterator=data_iter)
    step_fn = train_step.compile_train_step(
        train_step.make_train_step(config, defs, tx, schedule), mesh, state_shardings)

    writer = metrics_writer.MetricsWriter(workdir, enabled=jax.process_index() == 0)
    progress = metrics_writer.ProgressBar(num_steps, initial=start,
                                          enabled=None if jax.process_index() == 0 else False)
    preemption = _Preemption()
    logging.info("Training %s on %s for %d steps (%d per epoch) on %d devices.",
                 config.representations, config.data.dataset, num_steps, steps_per_epoch,
                 mesh.size)
    last, pending = {}, None
    window_start, window_steps = time.perf_counter(), 0
    try:
        for step in range(start + 1, num_steps + 1):
            batch = next(data_iter)
            state, metrics = step_fn(state, sharding.put_batch(
                {name: batch[name] for name in train_step.BATCH_FIELDS}, mesh))
            window_steps += 1
            # The previous step's metrics are read only now, so the host never waits for the
            # device in between and the next batch is already queued.
            if pending is not None:
                _check_finite(*pending)
            pending = (metrics, step)
            is_last = step == num_steps
            stop = preemption.reached(step)
            if step % config.log_every_steps == 0 or is_last or stop:
                _check_finite(*pending)
                elapsed = time.perf_counter() - window_start
                last = {k: float(v) for k, v in jax.device_get(metrics).items()}
                last["samples_per_s"] = window_steps * config.global_batch_size / elapsed
                last["ms_per_step"] = 1e3 * elapsed / window_steps
                last["epoch"] = step / steps_per_epoch
                writer.write_scalars(step, last)
                window_start, window_steps = time.perf_counter(), 0
            progress.update(step, {"loss": last["loss"]} if last else {})
            if step % checkpoint_every == 0 or is_last or stop:
                _check_finite(*pending)
                checkpointer.save(step, state, config=config, data_iterator=data_iter,
                                  force=True)
            if stop:
                logging.warning("Stopped at step %d after SIGTERM; rerun to resume.", step)
                break
    finally:
        preemption.restore()
        progress.close()
        checkpointer.wait_until_finished()
        checkpointer.close()
        writer.close()
    return last
