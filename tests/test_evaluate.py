"""End-to-end tests of the evaluation protocols (skel_jax.evaluation, skel_jax.evaluate) and
unit tests of skel_jax.evaluation.report.

One module-scoped run: synthetic NTU clips (4 classes, 24 train and 24 test) -> ``prepare`` ->
runlocal seq-graph pretraining (checkpoints at steps 3 and 6). Every protocol runs on it with
settings shrunk to an epoch or two.
"""

import csv
import json
import math
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from skel_jax import checkpointing
from skel_jax import config_lib
from skel_jax import evaluation
from skel_jax import optim
from skel_jax import prepare
from skel_jax import sharding
from skel_jax import train
from skel_jax import train_state
from skel_jax.data import synthetic
from skel_jax.evaluation import features as features_lib
from skel_jax.evaluation import report

DATASET = "ntu_rgbd/ntu60_xsub"
NUM_CLASSES = 60  # The dataset's label space; the synthetic clips use classes 0-3.
NUM_TEST = 24


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A work directory of a finished runlocal seq-graph pretraining (steps 3 and 6)."""
    root = tmp_path_factory.mktemp("evaluate")
    raw, data_dir = root / "raw", root / "data"
    synthetic.write_ntu_dataset(raw, 48, seed=0, num_classes=4)
    prepare.prepare(DATASET, str(raw), str(data_dir), num_workers=1)
    config = config_lib.base_config()
    config_lib.apply_runlocal(config)
    config.data.dataset = DATASET
    config.data.data_dir = str(data_dir)
    workdir = root / "run"
    train.train(config, str(workdir))
    return str(workdir)


@pytest.fixture
def run_copy(run, tmp_path):
    """A copy of the run's checkpoints, to damage or to watch (outputs go to the copy)."""
    copy = tmp_path / "copy"
    shutil.copytree(os.path.join(run, "checkpoints"), copy / "checkpoints")
    return str(copy)


def _config():
    config = evaluation.default_config()
    config.eval_batch_size = 8
    for section in (config.linear, config.finetune):
        section.epochs = 2
        section.batch_size = 8
        section.decay_epochs = (1,)
    return config


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _check_outputs(workdir, stem, summary):
    """The three files exist and agree with the summary."""
    eval_dir = os.path.join(workdir, "eval")
    with open(os.path.join(eval_dir, f"{stem}.json")) as f:
        saved = json.load(f)
    assert saved == json.loads(json.dumps(summary))
    rows = _read_csv(os.path.join(eval_dir, f"{stem}_per_class.csv"))
    assert [int(r["label"]) for r in rows] == list(range(NUM_CLASSES))
    assert rows[0]["name"] == "drink water"
    assert sum(int(r["count"]) for r in rows) == summary["num_test"] == NUM_TEST
    correct = sum(int(r["correct"]) for r in rows)
    assert math.isclose(correct / NUM_TEST, summary["top1"])
    for r in rows:
        if int(r["count"]):
            assert math.isclose(float(r["accuracy"]), int(r["correct"]) / int(r["count"]),
                                abs_tol=1e-6)
        else:
            assert r["accuracy"] == ""
    with Image.open(os.path.join(eval_dir, f"{stem}_confusion.png")) as image:
        assert image.format == "PNG"
        assert image.size[0] == image.size[1] > NUM_CLASSES * report.cell_size(NUM_CLASSES)


def _metrics(workdir):
    with open(os.path.join(workdir, "eval", "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_knn(run):
    summary = evaluation.evaluate(run, "knn", "graph", config=_config(), ks=(1, 3))
    assert summary["protocol"] == "knn" and summary["encoder"] == "graph"
    assert summary["step"] == 6 and not summary["random_init"]
    assert summary["k"] == [1, 3] and summary["top1"] == summary["top1_by_k"][1]
    assert summary["num_train"] == 24 and summary["num_classes"] == NUM_CLASSES
    assert summary["pretraining"] == {"representations": "seq-graph", "dataset": DATASET}
    _check_outputs(run, "knn_graph", summary)
    record = [m for m in _metrics(run) if "knn_graph/top1_k1" in m][-1]
    assert record["step"] == 6
    assert record["knn_graph/top1_k3"] == summary["top1_by_k"][3]


def test_linear(run):
    summary = evaluation.evaluate(run, "linear", "seq", config=_config())
    assert 0.0 <= summary["top1"] <= summary["top5"] <= 1.0
    assert summary["settings"] == _config().linear.to_dict()
    assert math.isfinite(summary["final_train_loss"])
    _check_outputs(run, "linear_seq", summary)


def test_finetune_from_random_init(run):
    summary = evaluation.evaluate(run, "finetune", "seq", config=_config(), random_init=True)
    assert summary["random_init"] and summary["protocol"] == "finetune"
    assert 0.0 <= summary["top1"] <= summary["top5"] <= 1.0
    assert summary["settings"]["encoder_lr_scale"] == 0.1
    _check_outputs(run, "finetune_seq_random", summary)


def test_semi(run):
    summary = evaluation.evaluate(run, "semi", "seq", config=_config(), step=3,
                                  label_fractions=(0.34,), num_seeds=2)
    assert summary["step"] == 3
    result = summary["label_fractions"]["0.34"]
    assert [r["seed"] for r in result["runs"]] == [0, 1]
    # round(0.34 * 6) = 2 of each of the 4 classes.
    assert [r["num_labelled"] for r in result["runs"]] == [8, 8]
    top1 = [r["top1"] for r in result["runs"]]
    assert math.isclose(result["top1"]["mean"], np.mean(top1))
    assert math.isclose(result["top1"]["std"], np.std(top1, ddof=1))
    assert result["top1"]["min"] == min(top1) and result["top1"]["max"] == max(top1)
    with open(os.path.join(run, "eval", "semi_seq_3.json")) as f:
        assert json.load(f) == json.loads(json.dumps(summary))
    for seed in (0, 1):
        stem = f"semi_seq_3_34pct_seed{seed}"
        with open(os.path.join(run, "eval", f"{stem}.json")) as f:
            per_seed = json.load(f)
        assert per_seed["label_fraction"] == 0.34 and per_seed["num_labelled"] == 8
        _check_outputs(run, stem, per_seed)


def test_load_encoder_takes_the_query_encoder_of_the_step(run):
    mesh = sharding.make_mesh()
    config, step, _, variables = features_lib.load_encoder(run, "seq", step=3, mesh=mesh)
    assert step == 3 and config.representations == "seq-graph"
    tx, _ = optim.make_optimizer(config, steps_per_epoch=3)
    abstract = train_state.abstract(config, tx)[1]
    replicated = sharding.replicated(mesh)
    with checkpointing.Checkpointer(run, read_only=True) as ckpt:
        state = ckpt.restore(3, jax.tree.map(lambda a: a.update(sharding=replicated), abstract))
    query, key = state["encoders"]["query"]["seq"], state["encoders"]["key"]["seq"]
    for got, want in zip(jax.tree.leaves(variables), jax.tree.leaves(query)):
        assert np.asarray(got).tobytes() == np.asarray(want).tobytes()
    assert any(not np.array_equal(a, b) for a, b in
               zip(jax.tree.leaves(variables["params"]), jax.tree.leaves(key["params"])))
    _, _, _, random = features_lib.load_encoder(run, "seq", step=3, mesh=mesh,
                                                random_init=True)
    assert jax.tree.structure(random) == jax.tree.structure(variables)
    assert all(not np.array_equal(a, b) for a, b in
               zip(jax.tree.leaves(random["params"]), jax.tree.leaves(variables["params"])))


def test_wrong_representation(run):
    with pytest.raises(ValueError, match="trains the encoders \\('seq', 'graph'\\); it has no "
                                         "'image' encoder"):
        evaluation.evaluate(run, "knn", "image", config=_config())


def test_no_checkpoint_in_the_workdir(tmp_path):
    with pytest.raises(FileNotFoundError, match="No checkpoint in .*Checkpoints are written by"):
        evaluation.evaluate(str(tmp_path), "knn", "graph", config=_config())


def test_missing_step(run):
    with pytest.raises(FileNotFoundError,
                       match=r"No checkpoint for step 5 .*available steps: \[3, 6\]"):
        evaluation.evaluate(run, "knn", "graph", config=_config(), step=5)


@pytest.mark.parametrize("item, file", [("state", "_METADATA"), ("config", "metadata")])
def test_corrupted_step(run_copy, item, file):
    path = os.path.join(run_copy, "checkpoints", "6", item, file)
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text[:20])
    with pytest.raises(checkpointing.CheckpointReadError,
                       match="(?s)Cannot read checkpoint step 6 .*missing or damaged"):
        evaluation.evaluate(run_copy, "knn", "graph", config=_config())


def test_dataset_not_built(run, tmp_path):
    config = _config()
    config.data_dir = str(tmp_path)
    with pytest.raises(FileNotFoundError, match=f"has not been built in {tmp_path}"):
        evaluation.evaluate(run, "knn", "graph", config=config)


@pytest.mark.parametrize("protocol, encoder, kwargs, message", [
    ("svm", "graph", {}, "Unknown protocol 'svm'"),
    ("knn", "skeleton", {}, "Unknown encoder 'skeleton'"),
    ("knn", "graph", dict(ks=(0, 1)), "k values must be positive"),
    ("semi", "graph", dict(label_fractions=(0.0,)), r"must lie in \(0, 1\]"),
    ("semi", "graph", dict(num_seeds=0), "at least 1"),
])
def test_bad_requests(run, protocol, encoder, kwargs, message):
    with pytest.raises(ValueError, match=message):
        evaluation.evaluate(run, protocol, encoder, config=_config(), **kwargs)


def test_bad_settings(run):
    config = _config()
    config.linear.epochs = 0
    with pytest.raises(ValueError, match="config.linear needs epochs >= 1"):
        evaluation.evaluate(run, "linear", "graph", config=config)


class _FakeTime:
    """A clock that only moves when the watcher sleeps; runs a callback on each sleep."""

    def __init__(self, on_sleep=lambda count: None):
        self.now, self.sleeps, self._on_sleep = 0.0, 0, on_sleep

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps += 1
        self.now += seconds
        self._on_sleep(self.sleeps)


def test_watch_evaluates_new_checkpoints_until_the_final_step(run_copy, tmp_path):
    step6 = os.path.join(run_copy, "checkpoints", "6")
    shutil.move(step6, tmp_path / "held_back")

    def publish(count):  # Training "writes" step 6 while the watcher waits.
        if count == 2:
            shutil.move(tmp_path / "held_back", step6)

    fake = _FakeTime(publish)
    config = _config()
    config.watch.poll_seconds = 10.0
    summaries = evaluation.watch(run_copy, "knn", "graph", config=config, clock=fake.clock,
                                 sleep=fake.sleep)
    assert [s["step"] for s in summaries] == [3, 6]
    assert fake.sleeps == 2  # Stopped at the final step (total_steps 6) without waiting.
    for step in (3, 6):
        assert os.path.isfile(os.path.join(run_copy, "eval", f"knn_graph_{step}.json"))


def test_watch_stops_after_the_idle_timeout(run_copy):
    shutil.rmtree(os.path.join(run_copy, "checkpoints", "6"))
    fake = _FakeTime()
    config = _config()
    config.watch.poll_seconds = 10.0
    config.watch.idle_timeout_seconds = 35.0
    summaries = evaluation.watch(run_copy, "knn", "graph", config=config, clock=fake.clock,
                                 sleep=fake.sleep)
    assert [s["step"] for s in summaries] == [3]
    assert fake.sleeps == 4 and fake.now == 40.0


def test_final_step(run):
    with checkpointing.Checkpointer(run, read_only=True) as ckpt:
        config = ckpt.restore_config(3)
    assert evaluation.final_step(run, config, 3) == 6  # runlocal total_steps.
    config.unlock()
    config.imported_from = "checkpoint_0450.pth.tar"
    assert evaluation.final_step(run, config, 450) == 450


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "skel_jax.evaluate", *args],
                          capture_output=True, text=True, timeout=300, env=os.environ.copy())


def test_command_line(run):
    done = _cli(f"--workdir={run}", "--protocol=knn", "--encoder=seq", "--step=6", "--k=1,2",
                "--config.eval_batch_size=8")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "knn seq step 6 on ntu_rgbd/ntu60_xsub:" in done.stdout
    assert "top1_k2:" in done.stdout
    with open(os.path.join(run, "eval", "knn_seq_6.json")) as f:
        assert json.load(f)["top1_by_k"].keys() == {"1", "2"}
    failed = _cli(f"--workdir={run}", "--protocol=knn", "--encoder=image")
    assert failed.returncode == 1
    assert "evaluate: Checkpoint step 6" in failed.stderr
    assert "has no 'image' encoder" in failed.stderr


# ------------------------------------------------------------------------------------------
# report


def test_top_k_accuracy_matches_argsort():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((50, 7))
    labels = rng.integers(0, 7, 50)
    for k in (1, 3, 7):
        top = np.argsort(-logits, axis=1)[:, :k]
        want = np.mean([label in row for label, row in zip(labels, top)])
        assert report.top_k_accuracy(logits, labels, k) == pytest.approx(want)


def test_top_k_accuracy_counts_ties_as_correct():
    logits = np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 1.0]])
    assert report.top_k_accuracy(logits, np.array([1, 2]), 1) == 0.5
    assert report.top_k_accuracy(logits, np.array([1, 2]), 2) == 1.0


@pytest.mark.parametrize("args, message", [
    ((np.zeros((2, 3)), np.zeros(3, int), 1), r"Need logits \(N, C\) and labels \(N,\)"),
    ((np.zeros((0, 3)), np.zeros(0, int), 1), "zero examples"),
    ((np.zeros((2, 3)), np.zeros(2, int), 0), "k must be at least 1"),
])
def test_top_k_accuracy_errors(args, message):
    with pytest.raises(ValueError, match=message):
        report.top_k_accuracy(*args)


def test_confusion_matrix_matches_a_loop():
    rng = np.random.default_rng(1)
    labels, predictions = rng.integers(0, 5, 40), rng.integers(0, 5, 40)
    want = np.zeros((5, 5), int)
    for t, p in zip(labels, predictions):
        want[t, p] += 1
    got = report.confusion_matrix(labels, predictions, 5)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("labels, predictions, message", [
    (np.array([0, 1]), np.array([0]), "equal length"),
    (np.array([0, 5]), np.array([0, 1]), r"labels must lie in \[0, 5\)"),
    (np.array([0, 1]), np.array([-1, 1]), r"predictions must lie in \[0, 5\)"),
])
def test_confusion_matrix_errors(labels, predictions, message):
    with pytest.raises(ValueError, match=message):
        report.confusion_matrix(labels, predictions, 5)


def test_confusion_png_colours_cells_by_row_rate(tmp_path):
    confusion = np.array([[3, 1, 0], [0, 0, 0], [0, 2, 2]])
    path = str(tmp_path / "c.png")
    report.write_confusion_png(path, confusion)
    size = report.cell_size(3)
    rates = {(0, 0): 0.75, (0, 1): 0.25, (0, 2): 0.0, (1, 1): 0.0, (2, 1): 0.5, (2, 2): 0.5}
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))
    origin = pixels.shape[0] - 1 - 3 * size  # The matrix ends one pixel (the frame) early.
    for (i, j), rate in rates.items():
        centre = pixels[origin + i * size + size // 2, origin + j * size + size // 2]
        want = np.round((1 - rate) * np.array([255, 255, 255]) + rate * np.array([8, 48, 107]))
        np.testing.assert_array_equal(centre, want)


def test_per_class_csv_and_its_error(tmp_path):
    confusion = np.array([[3, 1], [0, 0]])
    path = str(tmp_path / "t.csv")
    report.write_per_class_csv(path, confusion, ["a", "b"])
    assert _read_csv(path) == [
        {"label": "0", "name": "a", "count": "4", "correct": "3", "accuracy": "0.750000"},
        {"label": "1", "name": "b", "count": "0", "correct": "0", "accuracy": ""}]
    with pytest.raises(ValueError, match="1 class names for a 2-class confusion matrix"):
        report.write_per_class_csv(path, confusion, ["a"])


def test_json_writes_non_finite_values_as_null(tmp_path):
    path = str(tmp_path / "s.json")
    report.write_json(path, {"a": float("nan"), "b": [1.0, float("inf")], "c": {1: 2.5}})
    with open(path) as f:
        assert json.load(f) == {"a": None, "b": [1.0, None], "c": {"1": 2.5}}


def test_output_stem():
    assert report.output_stem("linear", "seq") == "linear_seq"
    assert report.output_stem("knn", "graph", step=30) == "knn_graph_30"
    assert report.output_stem("semi", "image", step=5, random_init=True) == "semi_image_5_random"


def _summary(protocol, **fields):
    return dict(protocol=protocol, encoder="graph", random_init=False, step=6,
                dataset="ntu_rgbd/ntu60_xsub", **fields)


@pytest.mark.parametrize("summary, lines", [
    (_summary("knn", top1_by_k={1: 0.5, 5: 0.25}),
     ["knn graph step 6 on ntu_rgbd/ntu60_xsub:", "  top1_k1: 50.00%", "  top1_k5: 25.00%"]),
    (_summary("linear", top1=0.3, top5=0.75, final_train_accuracy=0.125),
     ["linear graph step 6 on ntu_rgbd/ntu60_xsub:", "  top1: 30.00%", "  top5: 75.00%",
      "  training accuracy, last epoch: 12.50%"]),
    (dict(_summary("semi"), random_init=True,
          label_fractions={"0.01": {"top1": {"mean": 0.2}, "top5": {"mean": 0.4}}}),
     ["semi graph (random init) step 6 on ntu_rgbd/ntu60_xsub:", "  1pct_top1: 20.00%",
      "  1pct_top5: 40.00%"]),
])
def test_format_summary(summary, lines):
    assert evaluation.format_summary(summary).splitlines() == lines
