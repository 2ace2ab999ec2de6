r"""Pictures of skeleton clips and of learned features.

  python -m skel_jax.visualize clip --input=S001C002P003R002A013.skeleton --output=clip.gif
  python -m skel_jax.visualize clip --input=ntu_rgbd/ntu60_xsub:test:12 --data_dir=DIR \
      --output=strip.png
  python -m skel_jax.visualize features --workdir=DIR --encoder=graph --output=pca.png
  python -m skel_jax.visualize features --workdir=DIR --encoder=graph --projection=tsne \
      --output=tsne.png

``clip`` draws one clip as the model sees it (after the NTU pre-normalisation of data.md §2, so
the spine points up the image): an animated GIF with one frame per clip frame, or a PNG strip
of ``--strip_frames`` evenly spaced frames. ``--input`` is an NTU ``.skeleton`` file or
``DATASET:SPLIT:INDEX``, a sample of a built dataset. The 25 joints are joined by the bones of
``skel_jax.models.graph``; the first person is blue, the second red; the view looks along the
y axis (x across, z up).

``features`` plots the query encoder's features of the centre test crop of a split in the plane,
one colour per class: their first two principal components (``--projection=pca``) or a t-SNE
embedding (``--projection=tsne``, ``--perplexity``).
"""

import colorsys
import math
import os
import sys
from collections.abc import Sequence

import numpy as np
from absl import app
from absl import flags
from PIL import Image
from PIL import ImageDraw

from skel_jax.models import graph

_PERSON_COLOURS = ((31, 119, 180), (214, 39, 40))
_MARGIN_FRACTION = 0.08
_JOINT_RADIUS = 2
_BONE_WIDTH = 2
_POINT_RADIUS = 2
_LEGEND_WIDTH = 170  # At least; wider for long class names.
_LEGEND_TEXT_X = 14
_LEGEND_ROW = 12
# How ``features`` maps the features to the plane.
PROJECTIONS = ("pca", "tsne")


def present_persons(skeleton: np.ndarray) -> np.ndarray:
    """bool (T, M): whether person m has any nonzero coordinate in frame t."""
    return np.any(skeleton != 0, axis=(2, 3))


def project(skeleton: np.ndarray, size: int) -> np.ndarray:
    """Pixel positions of every joint, one scale for the whole clip.

    The view is along y: image column from x, image row from z (up is up). The bounding box of
    the joints of present persons over all frames is centred and scaled, aspect kept, to fill
    the square image less an 8 % margin.

    Args:
      skeleton: float (T, M, V, 3).
      size: image side in pixels.

    Returns:
      float64 (T, M, V, 2) (column, row).

    Raises:
      ValueError: no person is present in any frame.
    """
    present = present_persons(skeleton)
    if not present.any():
        raise ValueError("The clip holds no skeleton: every coordinate is zero.")
    plane = skeleton[..., [0, 2]].astype(np.float64)
    visible = plane[present]  # (P, V, 2)
    low, high = visible.min(axis=(0, 1)), visible.max(axis=(0, 1))
    usable = size * (1 - 2 * _MARGIN_FRACTION)
    scale = usable / max(float((high - low).max()), 1e-9)
    centre = (low + high) / 2
    column = size / 2 + (plane[..., 0] - centre[0]) * scale
    row = size / 2 - (plane[..., 1] - centre[1]) * scale
    return np.stack([column, row], axis=-1)


def draw_frame(points: np.ndarray, present: np.ndarray, size: int) -> Image.Image:
    """One frame: bones and joints of the present persons on white.

    Args:
      points: (M, V, 2) pixel positions of one frame (``project``).
      present: bool (M,).
      size: image side in pixels.

    Returns:
      An RGB image.
    """
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    for person in np.flatnonzero(present):
        colour = _PERSON_COLOURS[person % len(_PERSON_COLOURS)]
        joints = [tuple(p) for p in points[person]]
        for child, parent in graph.inward_edges():
            draw.line([joints[child], joints[parent]], fill=colour, width=_BONE_WIDTH)
        for x, y in joints:
            draw.ellipse((x - _JOINT_RADIUS, y - _JOINT_RADIUS, x + _JOINT_RADIUS,
                          y + _JOINT_RADIUS), fill=colour)
    return image


def render_frames(skeleton: np.ndarray, num_frames: int, size: int) -> list[Image.Image]:
    """Every valid frame of a clip as an image (frames past ``num_frames`` are padding)."""
    skeleton = skeleton[:num_frames]
    points, present = project(skeleton, size), present_persons(skeleton)
    return [draw_frame(points[t], present[t], size) for t in range(len(skeleton))]


def strip_indices(num_frames: int, count: int) -> np.ndarray:
    """``count`` evenly spaced frame indices from the first to the last (fewer if short)."""
    return np.unique(np.round(np.linspace(0, num_frames - 1, min(count, num_frames))).astype(int))


def save_clip(frames: Sequence[Image.Image], path: str, *, fps: float,
              strip_frames: int) -> None:
    """Writes an animated GIF (``.gif``) or a PNG strip of evenly spaced frames (``.png``).

    Raises:
      ValueError: another file extension.
    """
    extension = os.path.splitext(path)[1].lower()
    if extension == ".gif":
        frames[0].save(path, save_all=True, append_images=list(frames[1:]),
                       duration=max(1, round(1000 / fps)), loop=0)
    elif extension == ".png":
        chosen = [frames[i] for i in strip_indices(len(frames), strip_frames)]
        size = chosen[0].width
        strip = Image.new("RGB", (size * len(chosen), size), "white")
        for i, frame in enumerate(chosen):
            strip.paste(frame, (i * size, 0))
        strip.save(path, format="PNG")
    else:
        raise ValueError(f"Output {path} must end in .gif (animation) or .png (strip).")


def load_clip(spec: str, data_dir: str | None) -> tuple[np.ndarray, int, str]:
    """Reads a clip from an NTU ``.skeleton`` file or ``DATASET:SPLIT:INDEX`` of a built dataset.

    Args:
      spec: the file path, or e.g. ``ntu_rgbd/ntu60_xsub:test:12``.
      data_dir: the TFDS data directory of a dataset sample.

    Returns:
      (float32 (T, 2, 25, 3) pre-normalised skeleton, T, a description).

    Raises:
      FileNotFoundError: no such file, or the dataset is not built.
      ValueError: a spec that is neither, or an index out of range.
    """
    # The readers are imported when needed: TFDS is slow to import and files need no TFDS.
    if spec.endswith(".skeleton"):
        from skel_jax.data import ntu_skeleton
        from skel_jax.data import preprocess

        if not os.path.isfile(spec):
            raise FileNotFoundError(f"No skeleton file {spec}.")
        skeleton, num_frames = preprocess.preprocess_ntu(ntu_skeleton.read_skeleton_file(spec))
        return skeleton, num_frames, os.path.basename(spec)
    parts = spec.rsplit(":", 2)
    if len(parts) != 3 or not parts[2].lstrip("-").isdigit():
        raise ValueError(f"--input {spec!r} is neither an NTU .skeleton file nor "
                         "DATASET:SPLIT:INDEX (e.g. ntu_rgbd/ntu60_xsub:test:12).")
    from skel_jax.data import input_pipeline

    name, split, index = parts[0], parts[1], int(parts[2])
    source = input_pipeline.load_source(name, split, data_dir)
    if not 0 <= index < len(source):
        raise ValueError(f"Index {index} is out of range: {name} split {split} has "
                         f"{len(source)} examples.")
    example = source[index]
    labels = source.dataset_info.features["label"]
    sample_name = example["sample_name"]
    sample_name = sample_name.decode() if isinstance(sample_name, bytes) else sample_name
    return (np.asarray(example["skeleton"], np.float32), int(example["num_frames"]),
            f"{sample_name} ({labels.int2str(int(example['label']))})")


def class_colours(num_classes: int) -> list[tuple[int, int, int]]:
    """Distinct RGB colours: hues spaced by the golden ratio, alternating brightness."""
    colours = []
    for label in range(num_classes):
        hue = (label * 0.618033988749895) % 1.0
        value = 0.85 if label % 2 == 0 else 0.6
        colours.append(tuple(round(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.85, value)))
    return colours


def scatter(points: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
            size: int) -> Image.Image:
    """A scatter plot of 2-D points coloured by class, with a legend of the classes shown.

    Args:
      points: (N, 2) coordinates (x right, y up).
      labels: int (N,) classes.
      class_names: names of all classes.
      size: side of the plot area in pixels; the legend is added on the right, as wide as its
        longest entry (at least ``_LEGEND_WIDTH``).

    Returns:
      An RGB image.
    """
    colours = class_colours(len(class_names))
    low, high = points.min(axis=0), points.max(axis=0)
    scale = size * (1 - 2 * _MARGIN_FRACTION) / np.maximum(high - low, 1e-9)
    columns = size * _MARGIN_FRACTION + (points[:, 0] - low[0]) * scale[0]
    rows = size * (1 - _MARGIN_FRACTION) - (points[:, 1] - low[1]) * scale[1]
    shown = np.unique(labels)
    entries = [f"{label} {class_names[label]}" for label in shown]
    # The legend grows to its longest entry: NTU class names run to 40 characters and more.
    text_width = max(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(e) for e in entries)
    width = size + max(_LEGEND_WIDTH, _LEGEND_TEXT_X + math.ceil(text_width) + 6)
    image = Image.new("RGB", (width, max(size, _LEGEND_ROW * (len(shown) + 1))), "white")
    draw = ImageDraw.Draw(image)
    for x, y, label in zip(columns, rows, labels):
        draw.ellipse((x - _POINT_RADIUS, y - _POINT_RADIUS, x + _POINT_RADIUS, y + _POINT_RADIUS),
                     fill=colours[label])
    for row, (label, entry) in enumerate(zip(shown, entries)):
        y = _LEGEND_ROW * (row + 0.5)
        draw.rectangle((size + 4, y - 3, size + 10, y + 3), fill=colours[label])
        draw.text((size + _LEGEND_TEXT_X, y), entry, fill="black", anchor="lm")
    return image


def plot_features(workdir: str, representation: str, output: str, *, step: int | None = None,
                  split: str = "test", max_points: int = 2000, size: int = 600,
                  data_dir: str | None = None, projection: str = "pca",
                  perplexity: float = 30.0) -> int:
    """Plots a query encoder's test-crop features of one split in 2-D, coloured by class.

    Args:
      workdir: a training or importer work directory.
      representation: ``"seq"``, ``"graph"`` or ``"image"``.
      output: a ``.png`` path.
      step: the checkpoint step; None for the latest.
      split: the split of the pretraining dataset to plot.
      max_points: at most this many examples, drawn at random (seed 0) when the split is larger.
      size: plot side in pixels.
      data_dir: where the dataset is built (default: where pretraining read it).
      projection: ``"pca"`` (first two principal components) or ``"tsne"``.
      perplexity: t-SNE's effective number of neighbours, below the number of points - 1.

    Returns:
      The number of points drawn.

    Raises:
      ValueError: an output that is not ``.png``, ``max_points`` < 2, an unknown projection, or
        a perplexity the number of points cannot have (checked before any feature is computed).
    """
    # Imported here: drawing clips needs neither JAX nor TFDS.
    from skel_jax import evaluation
    from skel_jax import projection as projection_lib
    from skel_jax import sharding
    from skel_jax import train
    from skel_jax.data import input_pipeline
    from skel_jax.evaluation import features as features_lib
    from skel_jax.evaluation import subsets

    if not output.lower().endswith(".png"):
        raise ValueError(f"Output {output} must end in .png.")
    if max_points < 2:
        raise ValueError(f"max_points must be at least 2; got {max_points}.")
    if projection not in PROJECTIONS:
        raise ValueError(f"Unknown projection {projection!r}; use one of {PROJECTIONS}.")
    workdir = os.path.abspath(os.path.expanduser(workdir))
    mesh = sharding.make_mesh()
    config, _, defn, variables = features_lib.load_encoder(workdir, representation, step=step,
                                                           mesh=mesh)
    source = input_pipeline.load_source(config.data.dataset, split,
                                        data_dir or train.data_dir_of(config, workdir))
    class_names = source.dataset_info.features["label"].names
    if len(source) > max_points:
        rng = np.random.default_rng(0)
        source = subsets.Subset(source, np.sort(rng.choice(len(source), max_points,
                                                            replace=False)))
    if projection == "tsne":  # Checked before the features are computed.
        projection_lib.check_perplexity(perplexity, len(source))
    features, labels = features_lib.extract_features(
        features_lib.make_feature_fn(defn, mesh, config.data.clip_frames), variables, source,
        mesh=mesh,
        batch_size=evaluation.default_config().eval_batch_size,
        max_frames=config.data.max_frames)
    if projection == "tsne":
        points = projection_lib.tsne_2d(features, perplexity=perplexity)
    else:
        points = projection_lib.pca_2d(features)
    scatter(points, labels, class_names, size).save(output, format="PNG")
    return len(labels)


_SUBCOMMANDS = ("clip", "features")


def _define_flags() -> None:
    # Defined only when run as a program, so that importing this module next to other binaries
    # cannot clash on flag names.
    flags.DEFINE_string("input", None, "clip: a .skeleton file or DATASET:SPLIT:INDEX.")
    flags.DEFINE_string("output", None, "The .gif or .png to write.")
    flags.DEFINE_string("data_dir", None, "TFDS data directory of the dataset.")
    flags.DEFINE_integer("size", None, "Side of one frame (clip, default 256) or of the plot "
                         "(features, default 600).")
    flags.DEFINE_float("fps", 30.0, "clip: GIF frames per second (NTU records at 30).")
    flags.DEFINE_integer("strip_frames", 8, "clip: frames in a PNG strip.")
    flags.DEFINE_string("workdir", None, "features: the work directory.")
    flags.DEFINE_enum("encoder", None, ("seq", "graph", "image"),
                      "features: which query encoder.")
    flags.DEFINE_integer("step", None, "features: checkpoint step; default the latest.")
    flags.DEFINE_string("split", "test", "features: the split to plot.")
    flags.DEFINE_integer("max_points", 2000, "features: most examples to plot.")
    flags.DEFINE_enum("projection", "pca", PROJECTIONS, "features: PCA or t-SNE.")
    flags.DEFINE_float("perplexity", 30.0, "features: t-SNE's effective number of neighbours.")


def _require(*names):
    missing = [f"--{name}" for name in names if flags.FLAGS[name].value is None]
    if missing:
        raise app.UsageError(f"Missing {', '.join(missing)}.")


def main(argv):
    if len(argv) != 2 or argv[1] not in _SUBCOMMANDS:
        raise app.UsageError(f"Give one subcommand, {' or '.join(_SUBCOMMANDS)}; got "
                             f"{argv[1:]}.")
    args = flags.FLAGS
    try:
        if argv[1] == "clip":
            _require("input", "output")
            skeleton, num_frames, title = load_clip(args.input, args.data_dir)
            save_clip(render_frames(skeleton, num_frames, args.size or 256), args.output,
                      fps=args.fps, strip_frames=args.strip_frames)
            print(f"Wrote {title}, {num_frames} frames, to {args.output}.")
        else:
            _require("workdir", "encoder", "output")
            count = plot_features(args.workdir, args.encoder, args.output, step=args.step,
                                  split=args.split, max_points=args.max_points,
                                  size=args.size or 600, data_dir=args.data_dir,
                                  projection=args.projection, perplexity=args.perplexity)
            method = "PCA" if args.projection == "pca" else "t-SNE"
            print(f"Wrote the {method} of {count} {args.encoder} features to {args.output}.")
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"visualize: {error}")


if __name__ == "__main__":
    _define_flags()
    app.run(main)
