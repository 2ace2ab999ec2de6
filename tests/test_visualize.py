"""Tests of skel_jax.visualize: clip drawings, the feature plots and the command line."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image, ImageDraw

from skel_jax import checkpointing
from skel_jax import config_lib
from skel_jax import optim
from skel_jax import prepare
from skel_jax import train_state
from skel_jax import visualize
from skel_jax.data import input_pipeline
from skel_jax.data import synthetic
from skel_jax.models import graph

DATASET = "ntu_rgbd/ntu60_xsub"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Six synthetic .skeleton files and the dataset built from them."""
    root = tmp_path_factory.mktemp("visualize")
    paths = synthetic.write_ntu_dataset(root / "raw", 6, seed=0, num_classes=2)
    prepare.prepare(DATASET, str(root / "raw"), str(root / "data"), num_workers=1)
    return root, [str(p) for p in paths if p.suffix == ".skeleton"]


@pytest.fixture(scope="module")
def workdir(files):
    """A checkpoint of an untrained runlocal intra-skeleton seq model on that dataset."""
    root, _ = files
    config = config_lib.base_config()
    config_lib.apply_runlocal(config)
    config.representations = "seq"
    config.data.dataset = DATASET
    config.data.data_dir = str(root / "data")
    tx, _ = optim.make_optimizer(config, steps_per_epoch=1)
    _, state = train_state.create(config, jax.random.key(0), tx)
    with checkpointing.Checkpointer(root / "run") as ckpt:
        ckpt.save(1, state, config=config)
    return str(root / "run")


def _skeleton(frames=1):
    return np.zeros((frames, 2, 25, 3), np.float32)


def test_present_persons():
    skeleton = _skeleton(3)
    skeleton[0, 0, 4, 1] = 1.0
    skeleton[2, 1, 0, 0] = -2.0
    np.testing.assert_array_equal(visualize.present_persons(skeleton),
                                  [[True, False], [False, False], [False, True]])


def test_project_hand_worked():
    skeleton = _skeleton()
    skeleton[0, 0, :, 0] = 2.0  # x
    skeleton[0, 0, :, 2] = 1.0  # z
    skeleton[0, 0, 0] = (0.0, 5.0, 0.0)  # y is the viewing direction: ignored.
    points = visualize.project(skeleton, 100)
    assert points.shape == (1, 2, 25, 2) and points.dtype == np.float64
    # Extent 2 (x) fills 84 px: scale 42 about the centre (x 1, z 0.5) -> pixel (50, 50).
    np.testing.assert_allclose(points[0, 0, 0], [8.0, 71.0])
    np.testing.assert_allclose(points[0, 0, 1], [92.0, 29.0])


def test_project_rejects_an_empty_clip():
    with pytest.raises(ValueError, match="holds no skeleton"):
        visualize.project(_skeleton(4), 64)


def test_draw_frame_colours_joints_and_bones_of_present_persons():
    points = np.zeros((2, 25, 2))
    points[0] = np.stack([np.linspace(10, 90, 25), np.full(25, 50.0)], axis=1)
    points[1] = 20.0
    image = np.asarray(visualize.draw_frame(points, np.array([True, False]), 100))
    assert image.shape == (100, 100, 3)
    blue = (31, 119, 180)
    assert tuple(image[50, 10]) == blue  # A joint.
    child, parent = graph.inward_edges()[0]
    middle = ((points[0, child] + points[0, parent]) / 2).round().astype(int)
    assert tuple(image[middle[1], middle[0]]) == blue  # On a bone.
    assert tuple(image[20, 20]) == (255, 255, 255)  # The absent person is not drawn.
    assert tuple(image[5, 95]) == (255, 255, 255)


@pytest.mark.parametrize("num_frames, count, expected", [
    (10, 4, [0, 3, 6, 9]), (3, 8, [0, 1, 2]), (1, 8, [0]), (65, 3, [0, 32, 64])])
def test_strip_indices(num_frames, count, expected):
    np.testing.assert_array_equal(visualize.strip_indices(num_frames, count), expected)


def test_class_colours_are_distinct():
    colours = visualize.class_colours(120)
    assert len(set(colours)) == 120
    assert all(0 <= c <= 255 for colour in colours for c in colour)


def test_gif_and_strip_of_a_skeleton_file(files, tmp_path):
    _, paths = files
    skeleton, num_frames, title = visualize.load_clip(paths[0], None)
    assert skeleton.shape == (num_frames, 2, 25, 3) and skeleton.dtype == np.float32
    assert title == os.path.basename(paths[0])
    frames = visualize.render_frames(skeleton, num_frames, 64)
    assert len(frames) == num_frames
    gif, png = str(tmp_path / "clip.gif"), str(tmp_path / "clip.png")
    visualize.save_clip(frames, gif, fps=25, strip_frames=5)
    visualize.save_clip(frames, png, fps=25, strip_frames=5)
    with Image.open(gif) as image:
        assert image.format == "GIF" and image.size == (64, 64)
        assert image.n_frames == num_frames and image.info["duration"] == 40
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size == (5 * 64, 64)


def test_render_frames_ignores_padding_frames():
    skeleton = _skeleton(6)
    skeleton[:3, 0] = np.random.default_rng(0).standard_normal((3, 25, 3))
    assert len(visualize.render_frames(skeleton, 3, 32)) == 3


def test_sample_of_a_built_dataset(files):
    root, _ = files
    skeleton, num_frames, title = visualize.load_clip(f"{DATASET}:train:0", str(root / "data"))
    assert skeleton.shape == (num_frames, 2, 25, 3)
    assert title.startswith("S0") and title.endswith(")")


@pytest.mark.parametrize("spec, error, message", [
    ("missing.skeleton", FileNotFoundError, "No skeleton file missing.skeleton"),
    ("clip.npy", ValueError, "neither an NTU .skeleton file nor DATASET:SPLIT:INDEX"),
    (f"{DATASET}:train:x", ValueError, "neither an NTU .skeleton file"),
    (f"{DATASET}:train:99", ValueError, "Index 99 is out of range"),
    (f"{DATASET}:train:-1", ValueError, "Index -1 is out of range"),
])
def test_load_clip_errors(files, spec, error, message):
    root, _ = files
    with pytest.raises(error, match=message):
        visualize.load_clip(spec, str(root / "data"))


def test_save_clip_rejects_other_formats(tmp_path):
    frame = Image.new("RGB", (8, 8))
    with pytest.raises(ValueError, match=r"must end in .gif \(animation\) or .png \(strip\)"):
        visualize.save_clip([frame], str(tmp_path / "clip.mp4"), fps=30, strip_frames=4)


def test_feature_plot(files, workdir, tmp_path):
    output = str(tmp_path / "pca.png")
    count = visualize.plot_features(workdir, "seq", output, split="train", size=200)
    with Image.open(output) as image:
        assert image.format == "PNG" and image.size[0] == 200 + visualize._LEGEND_WIDTH
    root, _ = files
    assert count == len(input_pipeline.load_source(DATASET, "train", str(root / "data"))) > 2
    fewer = visualize.plot_features(workdir, "seq", output, split="train", max_points=2)
    assert fewer == 2
    tsne = str(tmp_path / "tsne.png")
    assert visualize.plot_features(workdir, "seq", tsne, split="train", size=200,
                                   projection="tsne", perplexity=1.5) == count
    with Image.open(tsne) as image:
        assert image.format == "PNG" and image.size[1] == 200


@pytest.mark.parametrize("kwargs, message", [
    (dict(output="pca.jpg"), "must end in .png"),
    (dict(max_points=1), "max_points must be at least 2"),
    (dict(projection="umap"), "Unknown projection 'umap'"),
    (dict(projection="tsne", perplexity=100.0),
     r"perplexity must be in \(0, N - 1\) = \(0, \d+\) for \d+ points"),
])
def test_feature_plot_errors(workdir, tmp_path, kwargs, message):
    args = dict(output=str(tmp_path / "pca.png"))
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        visualize.plot_features(workdir, "seq", args.pop("output"), **args)


def test_scatter_puts_classes_in_the_legend():
    points = np.array([[0.0, 0.0], [1.0, 1.0], [0.5, 0.2]])
    image = visualize.scatter(points, np.array([0, 2, 2]), ["a", "b", "c"], 100)
    pixels = np.asarray(image)
    colours = visualize.class_colours(3)
    # Corners of the plot area: x 0 -> column 8, y 0 -> row 92; legend swatches at rows 6, 18.
    assert tuple(pixels[92, 8]) == colours[0]
    assert tuple(pixels[8, 92]) == colours[2]
    assert tuple(pixels[6, 107]) == colours[0] and tuple(pixels[18, 107]) == colours[2]
    assert image.size == (100 + visualize._LEGEND_WIDTH, 100)


def test_scatter_legend_fits_long_class_names():
    long_name = "standing up (from sitting position)"
    points = np.array([[0.0, 0.0], [1.0, 1.0]])
    short = visualize.scatter(points, np.array([0, 1]), ["a", "b"], 100)
    image = visualize.scatter(points, np.array([0, 1]), ["a", long_name + long_name], 100)
    assert short.size[0] == 100 + visualize._LEGEND_WIDTH
    entry_width = ImageDraw.Draw(image).textlength("1 " + long_name + long_name)
    assert image.size[0] >= 100 + visualize._LEGEND_TEXT_X + entry_width
    # The entry's last characters are drawn: dark pixels near the legend's right edge.
    legend = np.asarray(image.convert("L"))[12:24, image.size[0] - 30:]
    assert (legend < 128).any()


def test_command_line(files, tmp_path):
    _, paths = files
    output = str(tmp_path / "cli.png")
    done = subprocess.run(
        [sys.executable, "-m", "skel_jax.visualize", "clip", f"--input={paths[1]}",
         f"--output={output}", "--size=48", "--strip_frames=3"],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Wrote" in done.stdout
    with Image.open(output) as image:
        assert image.size == (3 * 48, 48)
    failed = subprocess.run(
        [sys.executable, "-m", "skel_jax.visualize", "clip", f"--input={paths[1]}",
         "--output=clip.bmp"], capture_output=True, text=True, timeout=120)
    assert failed.returncode == 1 and "visualize: Output clip.bmp must end in" in failed.stderr
