"""Host input pipeline: TFDS data sources -> fixed-shape, host-local NumPy batches via grain.

Batches are dicts of NumPy arrays with a leading dimension of ``global_batch_size //
process_count``:

- ``skeleton``: float32 (B, max_frames, 2, 25, 3), frames, persons, joints, xyz; zeros after the
  clip's last frame;
- ``num_frames``: int32 (B,), the valid frames of each row, at least 1;
- ``label``: int32 (B,);
- ``index``: int32 (B,), the row's index in the source (-1 for padding rows), which maps results
  back to ``source[index]["sample_name"]``; the string fields themselves are dropped because
  they cannot go to devices;
- ``mask``: bool (B,), False for padding rows (only the last evaluation batch has any).

Padding rows hold a zero skeleton with ``num_frames`` 1 and label 0, so that every value is a
valid model input and only ``mask`` tells them apart.

Global batch ``b`` is the same for any number of processes: it is positions ``[b * G, (b + 1) *
G)`` of the epoch's order (a permutation for training, source order for evaluation), and process
``p`` holds its rows ``[p * G / P, (p + 1) * G / P)``, in order. Assembling the global array
process by process (``jax.make_array_from_process_local_data``) therefore gives the same batch
on one host or many.
"""

from collections.abc import Mapping, Sequence
import functools
from typing import Any

from absl import flags
import grain
import jax
import numpy as np
import tensorflow_datasets as tfds

from skel_jax import config_lib

# Persons, joints and coordinates of one frame, as the TFDS builders store them.
FRAME_SHAPE = (2, 25, 3)

_Example = Mapping[str, Any]
# (source index, example), or (-1, None) for a padding row.
_Row = tuple[int, _Example | None]


def load_source(name: str, split: str, data_dir: str | None) -> Sequence[dict[str, Any]]:
    """Opens a built dataset as a random-access TFDS data source (ArrayRecord, no TensorFlow).

    Args:
      name: builder and config, e.g. ``ntu_rgbd/ntu60_xsub``.
      split: TFDS split, e.g. ``train`` or ``test`` (slicing syntax allowed).
      data_dir: the TFDS data directory the dataset was built into; None for TFDS's default.

    Returns:
      A sequence of decoded examples (dicts of NumPy values and Python scalars).

    Raises:
      config_lib.ConfigError: ``name`` names no registered builder.
      FileNotFoundError: the dataset has not been built in ``data_dir``.
    """
    import tfds_builders  # noqa: F401  (registers our builders with TFDS)

    # With no data_dir TFDS reads its default ($TFDS_DATA_DIR or ~/tensorflow_datasets); the
    # messages name that directory, not "None".
    searched = data_dir or tfds.core.constants.DATA_DIR
    build_command = (f"python -m skel_jax.prepare --dataset={name} "
                     f"--manual_dir=<raw download> --data_dir={searched}")
    elsewhere = ("" if data_dir else
                 " If it was built elsewhere, pass that directory (--config.data.data_dir=DIR).")
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
        # TFDS's own message lists every dataset it knows; ours says what to do.
        raise config_lib.ConfigError(
            f"No TFDS builder is registered for dataset {name!r}, and {searched} holds no build "
            f"of it. Check the name (builders live in tfds_builders/, e.g. "
            f"ntu_rgbd/ntu60_xsub), then build it with: {build_command}") from e
    if not builder.is_prepared():
        raise FileNotFoundError(
            f"Dataset {name!r} (version {builder.version}) has not been built in {searched}. "
            f"Build it with: {build_command}.{elsewhere}")
    return builder.as_data_source(split=split)


def _sample_name(example: _Example) -> str:
    name = example.get("sample_name", "<no sample_name>")
    return name.decode() if isinstance(name, bytes) else str(name)


def _write_example(example: _Example, max_frames: int, skeleton_out: np.ndarray) -> tuple[int, int]:
    """Validates ``example`` and copies its first frames into the zeroed ``skeleton_out``.

    Returns:
      (num_frames, label): the frames kept and the label.
    """
    skeleton = np.asarray(example["skeleton"])
    if skeleton.ndim != 4 or skeleton.shape[1:] != FRAME_SHAPE:
        raise ValueError(
            f"Sample {_sample_name(example)}: skeleton has shape {skeleton.shape}, expected "
            f"(frames, {', '.join(map(str, FRAME_SHAPE))}).")
    num_frames = int(example["num_frames"])
    if num_frames != skeleton.shape[0]:
        raise ValueError(
            f"Sample {_sample_name(example)}: num_frames is {num_frames} but the skeleton has "
            f"{skeleton.shape[0]} frames.")
    if num_frames == 0:
        raise ValueError(f"Sample {_sample_name(example)} has 0 frames; rebuild the dataset "
                         f"without it.")
    kept = min(num_frames, max_frames)
    skeleton_out[:kept] = skeleton[:kept]
    return kept, int(example["label"])


def _check_max_frames(max_frames: int):
    if max_frames < 1:
        raise ValueError(f"max_frames must be at least 1, got {max_frames}.")


def pad_example(example: _Example, max_frames: int) -> dict[str, np.ndarray]:
    """Gives one example fixed shapes: zero-pads or truncates its frames to ``max_frames``.

    Args:
      example: a decoded example with ``skeleton`` (T, 2, 25, 3), ``num_frames`` (== T) and
        ``label``; other fields are ignored.
      max_frames: frames of the output; longer clips keep their first ``max_frames``.

    Returns:
      ``skeleton`` float32 (max_frames, 2, 25, 3), ``num_frames`` int32 = min(T, max_frames) and
      ``label`` int32.

    Raises:
      ValueError: the skeleton has the wrong shape, disagrees with ``num_frames`` or has no
        frames (the message names the sample), or ``max_frames`` < 1.
    """
    _check_max_frames(max_frames)
    skeleton = np.zeros((max_frames, *FRAME_SHAPE), np.float32)
    num_frames, label = _write_example(example, max_frames, skeleton)
    return {"skeleton": skeleton, "num_frames": np.int32(num_frames), "label": np.int32(label)}


def _collate(max_frames: int, rows: Sequence[_Row]) -> dict[str, np.ndarray]:
    """Pads and stacks rows in one pass: every example is copied once, into the batch itself."""
    size = len(rows)
    batch = {
        "skeleton": np.zeros((size, max_frames, *FRAME_SHAPE), np.float32),
        "num_frames": np.ones(size, np.int32),
        "label": np.zeros(size, np.int32),
        "index": np.full(size, -1, np.int32),
        "mask": np.zeros(size, bool),
    }
    for row, (index, example) in enumerate(rows):
        if example is None:
            continue
        batch["num_frames"][row], batch["label"][row] = _write_example(
            example, max_frames, batch["skeleton"][row])
        batch["index"][row] = index
        batch["mask"][row] = True
    return batch


def _with_source_index(num_examples: int, index: int, example: _Example) -> _Row:
    # Past the first epoch grain passes epoch-offset indices (epoch * len + i).
    return index % num_examples, example


def _eval_row(source: Sequence[_Example], position: int) -> _Row:
    if position < len(source):
        return position, source[position]
    return -1, None


def _resolve_processes(process_index: int | None, process_count: int | None) -> tuple[int, int]:
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(f"Need 0 <= process_index < process_count, got process_index="
                         f"{process_index}, process_count={process_count}.")
    return process_index, process_count


def _local_batch_size(global_batch_size: int, process_count: int) -> int:
    if global_batch_size < 1 or global_batch_size % process_count:
        raise ValueError(f"global_batch_size ({global_batch_size}) must be a positive multiple "
                         f"of process_count ({process_count}).")
    return global_batch_size // process_count


def _to_iterator(dataset: grain.MapDataset, read_threads: int, prefetch_batches: int,
                 worker_count: int) -> grain.DatasetIterator:
    if worker_count < 0:
        raise ValueError(f"worker_count must be >= 0, got {worker_count}.")
    iter_dataset = dataset.to_iter_dataset(
        grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=prefetch_batches))
    if worker_count:
        # grain 0.2.18 reads an absl flag when it starts workers and fails if flags were never
        # parsed, as in notebooks and tests (google/grain#1355, fixed upstream).
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
        iter_dataset = iter_dataset.mp_prefetch(grain.MultiprocessingOptions(
            num_workers=worker_count, per_worker_buffer_size=prefetch_batches))
    return iter(iter_dataset)


def train_iterator(source: Sequence[_Example], *, global_batch_size: int, seed: int,
                   max_frames: int = 300, process_index: int | None = None,
                   process_count: int | None = None, read_threads: int = 2,
                   prefetch_batches: int = 4, worker_count: int = 0) -> grain.DatasetIterator:
    """An endless, resumable iterator of shuffled host-local training batches.

    Every epoch is a new permutation of the whole source, drawn from (seed, epoch). Its first
    ``len(source) // global_batch_size`` global batches are used, the remainder dropped, so
    every process yields the same number of full batches per epoch and each process reads a
    disjoint part of every epoch. Batches never straddle epochs.

    ``get_state()`` is a small JSON-serialisable dict; ``set_state()`` on a new iterator built
    with the same arguments (same process count and ``worker_count``) continues with exactly the
    batches the old one would have yielded. See ``checkpoint_save_args`` for Orbax.

    Args:
      source: random-access examples (``load_source``, or any sequence of such dicts).
      global_batch_size: examples per step over all processes.
      seed: shuffling seed, >= 0; equal seeds give equal orders.
      max_frames: frames per example after padding/truncation.
      process_index: this process; defaults to ``jax.process_index()``.
      process_count: processes; defaults to ``jax.process_count()``.
      read_threads: threads assembling batches (in each worker when there are workers).
      prefetch_batches: batches read ahead (per worker when there are workers).
      worker_count: grain worker processes; 0 reads in this process, which suits small hosts.
        With workers, ``source`` must be picklable (TFDS data sources are).

    Returns:
      A grain ``DatasetIterator`` of batches with leading dimension
      ``global_batch_size // process_count`` (see the module docstring for the keys).

    Raises:
      ValueError: inconsistent sizes, process ids or options; ``global_batch_size`` larger
        than the dataset.
    """
    process_index, process_count = _resolve_processes(process_index, process_count)
    local_batch_size = _local_batch_size(global_batch_size, process_count)
    _check_max_frames(max_frames)
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}.")
    num_examples = len(source)
    batches_per_epoch = num_examples // global_batch_size
    if not batches_per_epoch:
        raise ValueError(f"global_batch_size ({global_batch_size}) exceeds the dataset "
                         f"({num_examples} examples): not one full batch per epoch.")
    # grain seeds epoch e with shuffle_seed + e, so hash the user seed: otherwise a run with
    # seed s + 1 would replay the epochs of a run with seed s, shifted by one.
    shuffle_seed = int(np.random.SeedSequence(seed).generate_state(1)[0])
    dataset = (
        grain.MapDataset.source(source)
        .map_with_index(functools.partial(_with_source_index, num_examples))
        .shuffle(seed=shuffle_seed)
        # Local batches of consecutive positions; global batch b is local batches
        # b * P ... b * P + P - 1, of which this process takes the one at offset process_index.
        .batch(local_batch_size, drop_remainder=True,
               batch_fn=functools.partial(_collate, max_frames))
        .slice(slice(process_index, batches_per_epoch * process_count, process_count))
        .repeat())
    return _to_iterator(dataset, read_threads, prefetch_batches, worker_count)


def eval_iterator(source: Sequence[_Example], *, global_batch_size: int, max_frames: int = 300,
                  process_index: int | None = None, process_count: int | None = None,
                  read_threads: int = 2, prefetch_batches: int = 4) -> grain.DatasetIterator:
    """One deterministic pass over the source in order, every example exactly once overall.

    All processes yield ``ceil(len(source) / global_batch_size)`` batches (so they stay in
    lockstep); the last global batch is filled with padding rows whose ``mask`` is False and
    ``index`` is -1.

    Args:
      source: random-access examples.
      global_batch_size: rows per step over all processes.
      max_frames: frames per example after padding/truncation.
      process_index: this process; defaults to ``jax.process_index()``.
      process_count: processes; defaults to ``jax.process_count()``.
      read_threads: threads assembling batches.
      prefetch_batches: batches read ahead.

    Returns:
      A grain ``DatasetIterator`` of batches with leading dimension
      ``global_batch_size // process_count`` (see the module docstring for the keys).

    Raises:
      ValueError: inconsistent sizes or process ids, or an empty source.
    """
    process_index, process_count = _resolve_processes(process_index, process_count)
    local_batch_size = _local_batch_size(global_batch_size, process_count)
    _check_max_frames(max_frames)
    if not len(source):
        raise ValueError("Cannot evaluate on an empty source.")
    num_batches = -(-len(source) // global_batch_size)
    dataset = (
        grain.MapDataset.range(num_batches * global_batch_size)
        .map(functools.partial(_eval_row, source))
        .batch(local_batch_size, batch_fn=functools.partial(_collate, max_frames))
        .slice(slice(process_index, None, process_count)))
    return _to_iterator(dataset, read_threads, prefetch_batches, worker_count=0)


def checkpoint_save_args(iterator: grain.DatasetIterator) -> grain.checkpoint.CheckpointSave:
    """Orbax args that save ``iterator``'s position, e.g. as one item of ``ocp.args.Composite``.

    Each process writes its own ``process_<i>-of-<n>.json``, so restoring needs the same
    process count.

    Args:
      iterator: a ``train_iterator``.

    Returns:
      Args for ``CheckpointManager.save(step, args=ocp.args.Composite(data=...))``.
    """
    return grain.checkpoint.CheckpointSave(iterator)


def checkpoint_restore_args(iterator: grain.DatasetIterator) -> grain.checkpoint.CheckpointRestore:
    """Orbax args that move a freshly built ``iterator`` to the saved position, in place.

    Args:
      iterator: a new ``train_iterator`` built with the saved run's arguments.

    Returns:
      Args for ``CheckpointManager.restore(step, args=ocp.args.Composite(data=...))``.
    """
    return grain.checkpoint.CheckpointRestore(iterator)
