"""Evaluation results: accuracies, confusion matrices and the files they are written to.

For an output stem ``S`` (``<protocol>_<encoder>[_<step>][_random]``, see ``output_stem``) the
evaluation directory ``WORKDIR/eval`` receives:

* ``S.json``: the summary (protocol, encoder, step, dataset, sizes, settings and the
  accuracies as fractions in [0, 1], ``top1`` and, for classifiers, ``top5``);
* ``S_per_class.csv``: ``label,name,count,correct,accuracy`` for every class of the dataset
  (accuracy empty for classes absent from the test set);
* ``S_confusion.png``: the confusion matrix, row-normalised (row = true class, column =
  predicted class), white for 0 to dark blue for 1, with class ticks on both axes.

Top-k: an example counts as correct when fewer than k classes score strictly higher than its
true class, so exact ties count in its favour.
"""

from collections.abc import Mapping, Sequence
import csv
import json
import math
import os
from typing import Any

import numpy as np
from PIL import Image
from PIL import ImageDraw

EVAL_SUBDIR = "eval"

# Colour of rate 0 and rate 1 in the confusion image; rates blend linearly between them.
_LOW_RGB = np.array([255, 255, 255], np.float64)
_HIGH_RGB = np.array([8, 48, 107], np.float64)
_TARGET_IMAGE_PIXELS = 600  # Cells are sized so the matrix is about this wide.
_MARGIN = 40  # Room for the tick labels left of and above the matrix.


def top_k_accuracy(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of rows whose label is among the k highest logits (ties count as correct).

    Args:
      logits: (N, C) scores.
      labels: int (N,) true classes.
      k: how many top classes count, >= 1.

    Returns:
      The accuracy in [0, 1].

    Raises:
      ValueError: mismatched shapes, no rows, or k < 1.
    """
    logits, labels = np.asarray(logits), np.asarray(labels)
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"Need logits (N, C) and labels (N,); got {logits.shape} and "
                         f"{labels.shape}.")
    if not len(labels):
        raise ValueError("Cannot compute an accuracy over zero examples.")
    if k < 1:
        raise ValueError(f"k must be at least 1; got {k}.")
    true_scores = logits[np.arange(len(labels)), labels]
    higher = (logits > true_scores[:, None]).sum(axis=1)
    return float(np.mean(higher < k))


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray,
                     num_classes: int) -> np.ndarray:
    """Counts of (true, predicted) pairs.

    Args:
      labels: int (N,) true classes in [0, num_classes).
      predictions: int (N,) predicted classes in [0, num_classes).
      num_classes: C.

    Returns:
      int64 (C, C); entry [i, j] counts examples of class i predicted as j.

    Raises:
      ValueError: mismatched shapes or classes out of range.
    """
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if labels.ndim != 1 or labels.shape != predictions.shape:
        raise ValueError(f"labels and predictions must be 1-D of equal length; got "
                         f"{labels.shape} and {predictions.shape}.")
    for name, values in (("labels", labels), ("predictions", predictions)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} must lie in [0, {num_classes}); got values in "
                             f"[{values.min()}, {values.max()}].")
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def row_rates(confusion: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (rows of absent classes stay 0)."""
    totals = confusion.sum(axis=1, keepdims=True)
    return np.divide(confusion, totals, out=np.zeros(confusion.shape), where=totals > 0)


def output_stem(protocol: str, encoder: str, *, step: int | None = None,
                random_init: bool = False) -> str:
    """``<protocol>_<encoder>[_<step>][_random]``: the shared prefix of one result's files."""
    parts = [protocol, encoder]
    if step is not None:
        parts.append(str(step))
    if random_init:
        parts.append("random")
    return "_".join(parts)


def write_json(path: str, summary: Mapping[str, Any]) -> None:
    """Writes the summary as indented JSON (NaN as null, since strict JSON has no NaN)."""
    def clean(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, Mapping):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    with open(path, "w") as f:
        json.dump(clean(summary), f, indent=2, sort_keys=True, allow_nan=False)
        f.write("\n")


def write_per_class_csv(path: str, confusion: np.ndarray, class_names: Sequence[str]) -> None:
    """Writes ``label,name,count,correct,accuracy``, one row per class.

    Raises:
      ValueError: ``class_names`` does not name every class of the matrix.
    """
    if len(class_names) != len(confusion):
        raise ValueError(f"{len(class_names)} class names for a {len(confusion)}-class "
                         "confusion matrix.")
    counts, correct = confusion.sum(axis=1), np.diag(confusion)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["label", "name", "count", "correct", "accuracy"])
        for label, name in enumerate(class_names):
            accuracy = f"{correct[label] / counts[label]:.6f}" if counts[label] else ""
            writer.writerow([label, name, int(counts[label]), int(correct[label]), accuracy])


def rate_colours(rates: np.ndarray) -> np.ndarray:
    """uint8 RGB (..., 3) of rates in [0, 1]: white at 0, dark blue at 1, linear in between."""
    rates = np.clip(rates, 0.0, 1.0)[..., None]
    return np.round((1.0 - rates) * _LOW_RGB + rates * _HIGH_RGB).astype(np.uint8)


def cell_size(num_classes: int) -> int:
    """Pixels per confusion-matrix cell."""
    return max(1, _TARGET_IMAGE_PIXELS // num_classes)


def write_confusion_png(path: str, confusion: np.ndarray) -> None:
    """Draws the row-normalised confusion matrix as a PNG.

    Cell (i, j) covers pixels ``[MARGIN + i * s, MARGIN + (i + 1) * s)`` down and
    ``[MARGIN + j * s, MARGIN + (j + 1) * s)`` across, s = ``cell_size(C)``; the margins hold
    class ticks.
    """
    num_classes = len(confusion)
    size = cell_size(num_classes)
    cells = np.repeat(np.repeat(rate_colours(row_rates(confusion)), size, 0), size, 1)
    side = _MARGIN + num_classes * size + 1
    image = Image.new("RGB", (side, side), "white")
    image.paste(Image.fromarray(cells), (_MARGIN, _MARGIN))
    draw = ImageDraw.Draw(image)
    draw.rectangle((_MARGIN - 1, _MARGIN - 1, side - 1, side - 1), outline="gray")
    draw.text((_MARGIN, 2), "predicted ->", fill="black")
    draw.text((2, 2), "true", fill="black")
    tick = next(t for t in (1, 2, 5, 10, 20, 50, 100, 200, 500) if num_classes / t <= 20)
    for label in range(0, num_classes, tick):
        centre = _MARGIN + label * size + size // 2
        draw.text((centre, _MARGIN - 12), str(label), fill="black", anchor="ms")
        draw.text((_MARGIN - 4, centre), str(label), fill="black", anchor="rm")
    image.save(path, format="PNG")


def write_outputs(eval_dir: str, stem: str, summary: Mapping[str, Any], labels: np.ndarray,
                  predictions: np.ndarray, class_names: Sequence[str]) -> dict[str, str]:
    """Writes a result's JSON summary, per-class table and confusion image.

    Args:
      eval_dir: the evaluation directory (created if needed).
      stem: the files' shared prefix (``output_stem``).
      summary: the JSON content.
      labels: int (N,) true classes of the test examples.
      predictions: int (N,) predicted classes.
      class_names: one name per class of the dataset.

    Returns:
      {"json", "per_class", "confusion"}: the written paths.
    """
    os.makedirs(eval_dir, exist_ok=True)
    confusion = confusion_matrix(labels, predictions, len(class_names))
    paths = {"json": os.path.join(eval_dir, f"{stem}.json"),
             "per_class": os.path.join(eval_dir, f"{stem}_per_class.csv"),
             "confusion": os.path.join(eval_dir, f"{stem}_confusion.png")}
    write_json(paths["json"], summary)
    write_per_class_csv(paths["per_class"], confusion, class_names)
    write_confusion_png(paths["confusion"], confusion)
    return paths
