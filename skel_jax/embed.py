r"""Features of skeleton clips from the query encoder of a checkpoint.

  python -m skel_jax.embed --workdir=DIR --encoder=graph --input=clips.npy \
      --output=features.npy [--step=N] [--head] [--batch_size=256]

``clips.npy`` holds float32 clips in the original's layout (N, C=3, T, V=25, M=2), T the
config's ``data.clip_frames`` (64). The output is float32 (N, d): the query encoder's feature
in inference mode (BatchNorm running statistics, no dropout), d = 2048 (seq), 256 (graph) or
4096 (image) at full size; with ``--head``, the 128-d projection before L2 normalisation.
Works on any work directory, including one written by ``skel_jax.import_torch``.

The encoder runs on one device, jit-compiled once: every batch, the last one padded, has the
same shape.
"""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from absl import app
from absl import flags

from skel_jax import checkpointing
from skel_jax import config_lib
from skel_jax import encoders

# Persons, joints and coordinates in the original's (C, T, V, M) clip layout.
NUM_COORDINATES, NUM_JOINTS, NUM_PERSONS = 3, 25, 2


def check_clips(clips: np.ndarray, clip_frames: int) -> None:
    """Checks a clip array against the layout the encoders expect.

    Args:
      clips: the array.
      clip_frames: T of the checkpoint's config.

    Raises:
      ValueError: wrong dtype, number of dimensions or shape, or no clips.
    """
    expected = f"(N, {NUM_COORDINATES}, {clip_frames}, {NUM_JOINTS}, {NUM_PERSONS})"
    if clips.dtype != np.float32:
        raise ValueError(f"Clips must be float32; got {clips.dtype} (convert with "
                         "clips.astype(np.float32)).")
    if clips.ndim != 5:
        raise ValueError(f"Clips must be 5-D (N, C, T, V, M) = {expected}; got {clips.ndim}-D "
                         f"shape {clips.shape}.")
    if clips.shape[1:] != (NUM_COORDINATES, clip_frames, NUM_JOINTS, NUM_PERSONS):
        raise ValueError(f"Clips must have shape {expected} (the original's (N, C, T, V, M) "
                         f"layout); got {clips.shape}.")
    if not clips.shape[0]:
        raise ValueError("The clip array holds no clips (N = 0).")


def read_clips(path: str) -> np.ndarray:
    """Loads a ``.npy`` clip file.

    Raises:
      FileNotFoundError: no such file.
      ValueError: the file is not a NumPy array file.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No input file {path}.")
    try:
        clips = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise ValueError(f"{path} is not a .npy array file: {error}") from error
    if not isinstance(clips, np.ndarray):  # An .npz archive.
        clips.close()
        raise ValueError(f"{path} is not a .npy array file but an archive of several arrays.")
    return clips


def embed(workdir: str, representation: str, clips: np.ndarray, *, step: int | None = None,
          head: bool = False, batch_size: int = 256) -> np.ndarray:
    """Encodes clips with the query encoder of one representation.

    Args:
      workdir: the work directory holding the checkpoints.
      representation: ``"seq"``, ``"graph"`` or ``"image"``.
      clips: float32 (N, 3, T, 25, 2) clips in the original's layout.
      step: the checkpoint step; None for the latest.
      head: return the 128-d projection (before normalisation) instead of the feature.
      batch_size: clips per compiled call.

    Returns:
      float32 (N, d) features, or (N, 128) projections.

    Raises:
      ValueError: a bad ``batch_size`` or clip array, or an encoder the checkpoint lacks.
      FileNotFoundError: no checkpoint (at ``step``).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive; got {batch_size}.")
    device = jax.devices()[0]
    with checkpointing.Checkpointer(workdir, read_only=True) as ckpt:
        config = ckpt.restore_config(step)
        check_clips(clips, config.data.clip_frames)
        defn, abstract = encoders.abstract(config, representation)
        sharding = jax.sharding.SingleDeviceSharding(device)
        variables = ckpt.restore_encoder(
            step, representation, jax.tree.map(lambda a: a.update(sharding=sharding), abstract))

    @jax.jit
    def forward(variables, batch):
        # (N, C, T, V, M) -> the encoders' (N, T, M, V, C).
        features, projections, _ = encoders.apply(
            defn, variables, jnp.transpose(batch, (0, 2, 4, 3, 1)), train=False, head=head)
        return (projections if head else features).astype(jnp.float32)

    size = min(batch_size, len(clips))
    outputs = []
    for start in range(0, len(clips), size):
        batch = clips[start:start + size]
        padded = np.zeros((size, *clips.shape[1:]), np.float32)
        padded[:len(batch)] = batch
        outputs.append(np.asarray(forward(variables, jax.device_put(padded, device)))[:len(batch)])
    return np.concatenate(outputs)


def _define_flags() -> None:
    # Defined only when run as a program, so that importing this module next to other binaries
    # cannot clash on flag names.
    flags.DEFINE_string("workdir", None, "Work directory holding the checkpoints.", required=True)
    flags.DEFINE_integer("step", None, "Checkpoint step; default the latest.")
    flags.DEFINE_enum("encoder", None, config_lib.SINGLES,
                      "Which query encoder to run.", required=True)
    flags.DEFINE_string("input", None, "float32 .npy clips (N, 3, T, 25, 2).", required=True)
    flags.DEFINE_string("output", None, "Where to write the float32 (N, d) .npy features.",
                        required=True)
    flags.DEFINE_bool("head", False, "Output the 128-d projection (before normalisation).")
    flags.DEFINE_integer("batch_size", 256, "Clips per compiled call.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    args = flags.FLAGS
    try:
        features = embed(args.workdir, args.encoder, read_clips(args.input), step=args.step,
                         head=args.head, batch_size=args.batch_size)
    except (FileNotFoundError, ValueError, checkpointing.CheckpointReadError) as error:
        sys.exit(f"embed: {error}")
    np.save(args.output, features)
    print(f"Wrote {features.shape} features to {args.output}.")


if __name__ == "__main__":
    _define_flags()
    app.run(main)
