"""Checkpoints of ISC runs: the one module that talks to Orbax.

Layout of a work directory::

  WORKDIR/checkpoints/<step>/
    state/   the train state pytree (``skel_jax.train_state``), ``ocp.args.StandardSave``
    config/  the run's config, ``ocp.args.JsonSave(config.to_dict())``
    data/    optional: the grain input iterator's position, one JSON file per process

Training saves through ``Checkpointer.save`` (asynchronously); resuming restores the whole state
onto an abstract target that carries the shardings the arrays must have. The evaluation binary
and ``skel_jax.embed`` open the directory with ``read_only=True`` and restore one encoder only
(``restore_encoder``), which reads ``state/encoders/<query|key>/<rep>`` and nothing else, so
they need neither the optimizer state nor the queues. Which steps are written and which are kept
are Orbax policies: ``save_decision_policy`` (every ``save_interval_steps``) and
``preservation_policy`` (the latest ``keep`` steps).

This uses Orbax's V0 API (``CheckpointManager`` with ``args=ocp.args.Composite(...)``), which
Orbax calls legacy but keeps as its top-level API until 1.0; moving to V1 stays local to here.
"""

import os
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp
from etils import epath

from skel_jax import config_lib
from skel_jax.data import input_pipeline

CHECKPOINTS_SUBDIR = "checkpoints"
ENCODER_ROLES = ("query", "key")
_ITEMS = ("state", "config", "data")
_HOW_CHECKPOINTS_GET_THERE = (
    "Checkpoints are written by training (python -m skel_jax.main --config=... --workdir=DIR) "
    "or by importing an original ISC checkpoint (python -m skel_jax.import_torch "
    "--checkpoint=FILE.pth.tar --pair=... --out=DIR).")
# Orbax and TensorStore errors can carry kilobytes of driver specs; the first lines say enough.
_MAX_CAUSE_LINES = 8
_MAX_CAUSE_LINE_CHARS = 300


class CheckpointReadError(RuntimeError):
    """A checkpoint step exists but cannot be read as requested."""


def _lists_to_tuples(value: Any) -> Any:
    # JSON has no tuples; the configs use tuples for every sequence (channels, strides, ...).
    if isinstance(value, dict):
        return {k: _lists_to_tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_lists_to_tuples(v) for v in value)
    return value


def _summary(error: Exception) -> str:
    lines = str(error).strip().splitlines()[:_MAX_CAUSE_LINES]
    lines = [line[:_MAX_CAUSE_LINE_CHARS] + (" ..." if len(line) > _MAX_CAUSE_LINE_CHARS else "")
             for line in lines]
    return f"{type(error).__name__}: " + "\n  ".join(lines)


def _path_names(path: tuple[Any, ...]) -> tuple[str, ...]:
    # Saved trees come back with string dict keys and namedtuples as dicts or sequences, so
    # compare paths by their bare names: DictKey.key, GetAttrKey.name, SequenceKey.idx.
    return tuple(str(next(getattr(k, a) for a in ("key", "name", "idx") if hasattr(k, a)))
                 for k in path)


def _describe(leaf: Any) -> str:
    return f"{leaf.dtype} {tuple(leaf.shape)}"


def _check_shardings(tree: Any, what: str) -> None:
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if getattr(leaf, "sharding", None) is None:
            raise ValueError(
                f"The {what} leaf {jax.tree_util.keystr(path)} has no sharding. Restored arrays "
                "are placed by the target's shardings, so give every leaf one, e.g. "
                "jax.tree.map(lambda a: a.update(sharding=NamedSharding(mesh, P())), target).")


class Checkpointer:
    """Saves and restores the checkpoints of one work directory.

    Use as a context manager, or call ``close()``: saving is asynchronous, and ``close()`` waits
    for pending saves.

    Args:
      workdir: the run's work directory; checkpoints live in ``workdir/checkpoints``.
      save_interval_steps: ``save`` writes only steps that are multiples of this (unless
        ``force``).
      keep: how many of the latest steps to keep; older ones are deleted after each save.
      read_only: never write or delete; each listing rereads the directory, so a reader sees the
        steps a concurrent trainer adds.

    Raises:
      ValueError: ``keep`` or ``save_interval_steps`` is smaller than 1.
    """

    def __init__(self, workdir: str | os.PathLike, *, save_interval_steps: int = 1, keep: int = 5,
                 read_only: bool = False):
        if keep < 1:
            raise ValueError(f"keep must be at least 1 (the latest checkpoint is always kept); "
                             f"got {keep}.")
        if save_interval_steps < 1:
            raise ValueError(f"save_interval_steps must be at least 1; got {save_interval_steps}.")
        # Orbax requires absolute paths; users pass relative workdirs.
        self.workdir = os.path.abspath(os.path.expanduser(os.fspath(workdir)))
        self.directory = os.path.join(self.workdir, CHECKPOINTS_SUBDIR)
        self.read_only = read_only
        if read_only:
            # Stated outright: Orbax logs a warning for every write option it has to switch off.
            options = ocp.CheckpointManagerOptions(read_only=True, save_interval_steps=0,
                                                   create=False)
        else:
            options = ocp.CheckpointManagerOptions(
                save_decision_policy=ocp.checkpoint_managers.FixedIntervalPolicy(
                    save_interval_steps),
                preservation_policy=ocp.checkpoint_managers.LatestN(keep))
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=_ITEMS)

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Waits for pending saves and releases Orbax's resources."""
        self._manager.close()

    def wait_until_finished(self) -> None:
        """Blocks until every pending asynchronous save is written."""
        self._manager.wait_until_finished()

    def step_dir(self, step: int) -> str:
        """The folder of one step."""
        return os.path.join(self.directory, str(step))

    def all_steps(self) -> list[int]:
        """The saved steps, ascending."""
        if self.read_only:
            self._manager.reload()
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        """The newest saved step, or None when there is none."""
        steps = self.all_steps()
        return steps[-1] if steps else None

    def save(self, step: int, state: Any, *, config: ml_collections.ConfigDict | dict,
             data_iterator: Any = None, force: bool = False) -> bool:
        """Starts saving a step in the background.

        The arrays are copied to host memory before this returns, so the caller may donate or
        delete them right away (e.g. pass the state to a step that donates it).

        Args:
          step: the step number, also the folder name.
          state: the train state (a pytree of arrays).
          config: the run's config (ConfigDict or plain dict); stored as JSON.
          data_iterator: a grain ``DatasetIterator`` whose position to store, or None.
          force: save even if ``step`` is not a multiple of ``save_interval_steps``.

        Returns:
          Whether a save was started: False for steps off the interval, or not newer than the
          latest saved step.

        Raises:
          ValueError: the checkpointer is read-only.
          FileExistsError: ``force`` and the step is already saved.
        """
        if self.read_only:
            raise ValueError(f"This Checkpointer of {self.directory} was opened read_only=True; "
                             "it cannot save.")
        if force and step in self._manager.all_steps():
            raise FileExistsError(f"{self.step_dir(step)} already holds a checkpoint for step "
                                  f"{step}; remove it or choose another output directory.")
        if isinstance(config, ml_collections.ConfigDict):
            config = config.to_dict()
        items = {"state": ocp.args.StandardSave(state), "config": ocp.args.JsonSave(config)}
        if data_iterator is not None:
            items["data"] = input_pipeline.checkpoint_save_args(data_iterator)
        return self._manager.save(step, args=ocp.args.Composite(**items), force=force)

    def _resolve_step(self, step: int | None) -> int:
        if not self.read_only:
            self._manager.wait_until_finished()
        steps = self.all_steps()
        if not steps:
            raise FileNotFoundError(
                f"No checkpoint in {self.directory} (work directory {self.workdir}). "
                f"{_HOW_CHECKPOINTS_GET_THERE}")
        if step is None:
            return steps[-1]
        if step not in steps:
            raise FileNotFoundError(
                f"No checkpoint for step {step} in {self.directory}; available steps: {steps}.")
        return step

    def _read_error(self, step: int, error: Exception) -> CheckpointReadError:
        return CheckpointReadError(
            f"Cannot read checkpoint step {step} at {self.step_dir(step)}: {_summary(error)}\n"
            "Files of this step are missing or damaged (e.g. an interrupted copy); restore "
            "another step or delete this one.")

    def _check_against_saved(self, step: int, target: Any,
                             prefix: tuple[str, ...] = ()) -> None:
        # Orbax fails on a mismatch too, but mid-read: with a less direct message, and leaving
        # one abandoned read per array that floods stderr at exit. A target under a prefix is a
        # partial restore; one without must cover every saved array.
        handler = ocp.PyTreeCheckpointHandler()
        try:
            saved_tree = handler.metadata(epath.Path(self.step_dir(step)) / "state").tree
        except Exception as error:  # Orbax raises many types for one cause.
            raise self._read_error(step, error) from error
        finally:
            handler.close()
        saved = {_path_names(path): leaf
                 for path, leaf in jax.tree_util.tree_flatten_with_path(saved_tree)[0]}
        where = f"Checkpoint step {step} at {self.step_dir(step)}"
        advice = ("The restore target was built from another config than the one saved with "
                  "this step (see restore_config()).")
        requested = set()
        for path, leaf in jax.tree_util.tree_flatten_with_path(target)[0]:
            name = prefix + _path_names(path)
            requested.add(name)
            if name not in saved:
                raise CheckpointReadError(f"{where} has no array {'/'.join(name)}. {advice}")
            if (saved[name].dtype, tuple(saved[name].shape)) != (leaf.dtype, tuple(leaf.shape)):
                raise CheckpointReadError(
                    f"{where} holds {'/'.join(name)} as {_describe(saved[name])}; the restore "
                    f"target asks for {_describe(leaf)}. {advice}")
        unrequested = sorted(set(saved) - requested)
        if not prefix and unrequested:
            raise CheckpointReadError(
                f"{where} holds arrays the restore target lacks, e.g. "
                f"{'/'.join(unrequested[0])}. {advice}")

    def _restore_items(self, step: int, items: dict[str, Any]) -> Any:
        try:
            return self._manager.restore(step, args=ocp.args.Composite(**items))
        except Exception as error:  # Orbax/TensorStore raise many types for one cause.
            raise self._read_error(step, error) from error

    def restore(self, step: int | None, abstract_state: Any, *, data_iterator: Any = None) -> Any:
        """Restores a whole train state (and optionally the input position).

        Args:
          step: the step, or None for the latest.
          abstract_state: the state's structure as ``jax.ShapeDtypeStruct`` leaves, each with
            the ``sharding`` its restored array must have (e.g. queues ``P('data', None)``).
          data_iterator: a freshly built grain iterator to move to the saved position in place.

        Returns:
          The state, arrays placed as ``abstract_state`` says.

        Raises:
          FileNotFoundError: no checkpoint at all, or none for ``step``.
          ValueError: a target leaf lacks a sharding, or ``data_iterator`` is given but the
            step was saved without one.
          CheckpointReadError: the step is damaged, or its arrays differ from
            ``abstract_state`` (names, shapes or dtypes).
        """
        step = self._resolve_step(step)
        _check_shardings(abstract_state, "abstract_state")
        self._check_against_saved(step, abstract_state)
        items = {"state": ocp.args.StandardRestore(abstract_state)}
        if data_iterator is not None:
            if not (epath.Path(self.step_dir(step)) / "data").is_dir():
                raise ValueError(
                    f"Checkpoint step {step} at {self.step_dir(step)} holds no input-iterator "
                    "position (it was saved without data_iterator); restore without one.")
            items["data"] = input_pipeline.checkpoint_restore_args(data_iterator)
        return self._restore_items(step, items)["state"]

    def restore_config(self, step: int | None = None) -> ml_collections.ConfigDict:
        """The config saved with a step (default: the latest), with JSON lists back as tuples.

        Raises:
          FileNotFoundError: no checkpoint at all, or none for ``step``.
          CheckpointReadError: the step's config is missing or damaged.
        """
        step = self._resolve_step(step)
        raw = self._restore_items(step, {"config": ocp.args.JsonRestore()})["config"]
        return ml_collections.ConfigDict(_lists_to_tuples(raw))

    def restore_encoder(self, step: int | None, representation: str, abstract_variables: Any,
                        which: str = "query") -> Any:
        """Reads one encoder's variables, and nothing else, from a step.

        Args:
          step: the step, or None for the latest.
          representation: ``"seq"``, ``"graph"`` or ``"image"``.
          abstract_variables: the encoder's ``{"params", "batch_stats"}`` structure as
            ``jax.ShapeDtypeStruct`` leaves with shardings (see ``encoders.abstract``).
          which: ``"query"`` (the encoder downstream tasks use) or ``"key"`` (its EMA copy).

        Returns:
          The variables, arrays placed as ``abstract_variables`` says.

        Raises:
          FileNotFoundError: no checkpoint at all, or none for ``step``.
          ValueError: unknown ``which``, a representation the checkpoint does not train, or a
            target leaf without a sharding.
          CheckpointReadError: the step is damaged, or lacks or differs in variables the target
            asks for.
        """
        if which not in ENCODER_ROLES:
            raise ValueError(f"which must be one of {ENCODER_ROLES}; got {which!r}.")
        step = self._resolve_step(step)
        trained = config_lib.representation_names(self.restore_config(step).representations)
        if representation not in trained:
            raise ValueError(
                f"Checkpoint step {step} in {self.directory} trains the encoders {trained}; it "
                f"has no {representation!r} encoder.")
        _check_shardings(abstract_variables, "abstract_variables")
        prefix = ("encoders", which, representation)
        self._check_against_saved(step, abstract_variables, prefix)
        target = {"encoders": {which: {representation: abstract_variables}}}
        # A reader of its own: the manager binds item "state" to StandardSave's handler, and
        # only PyTreeRestore reads a subtree.
        try:
            with ocp.Checkpointer(ocp.PyTreeCheckpointHandler()) as reader:
                restored = reader.restore(
                    os.path.join(self.step_dir(step), "state"),
                    args=ocp.args.PyTreeRestore(
                        item=target,
                        restore_args=ocp.checkpoint_utils.construct_restore_args(target),
                        partial_restore=True))
        except Exception as error:  # Orbax/TensorStore raise many types for one cause.
            raise self._read_error(step, error) from error
        return restored["encoders"][which][representation]
