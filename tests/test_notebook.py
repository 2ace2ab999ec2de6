"""The Colab notebook runs top to bottom outside Colab, on the synthetic data, as a smoke run."""

import os

import nbclient
import nbformat
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO, "notebooks", "skel_jax_colab.ipynb")
# Papermill-style: a cell after the one tagged "parameters" overrides its values.
SMOKE_PARAMETERS = """\
USE_SYNTHETIC = True
CONFIG_FILE = "configs/demo.py"
CONFIG_ARG = "runlocal,representations=seq"
RUN_NAME = "smoke"
PROTOCOLS = ("knn",)
"""


def _with_parameters(notebook, source):
    index = next(i for i, cell in enumerate(notebook.cells)
                 if "parameters" in cell.metadata.get("tags", []))
    notebook.cells.insert(index + 1, nbformat.v4.new_code_cell(source))
    return notebook


def test_the_notebook_runs_on_the_synthetic_data(tmp_path, monkeypatch):
    # The kernel inherits this environment: one CPU device keeps the smoke run fast.
    monkeypatch.setenv("SKEL_JAX_NOTEBOOK_ROOT", str(tmp_path))
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
    notebook = _with_parameters(nbformat.read(NOTEBOOK, as_version=4), SMOKE_PARAMETERS)
    # Raises CellExecutionError, naming the cell and its traceback, if any cell fails.
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()

    run = tmp_path / "runs" / "smoke"
    assert sorted(os.listdir(run / "checkpoints")) == ["3", "6"]
    for name in ("eval/knn_seq.json", "eval/knn_seq_confusion.png", "test_clip.png",
                 "features_seq.png"):
        assert (run / name).is_file(), name
    images = [output for cell in notebook.cells for output in cell.get("outputs", [])
              if "image/png" in output.get("data", {})]
    assert len(images) == 4  # The loss curve, the confusion matrix, the clip, the features.


def test_a_failing_cell_fails_the_run(tmp_path, monkeypatch):
    monkeypatch.setenv("SKEL_JAX_NOTEBOOK_ROOT", str(tmp_path))
    notebook = _with_parameters(nbformat.read(NOTEBOOK, as_version=4),
                                SMOKE_PARAMETERS + "USE_SYNTHETIC = False\n")
    with pytest.raises(nbclient.exceptions.CellExecutionError,
                       match="is empty: put the NTU RGB\\+D skeleton archives there"):
        nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                resources={"metadata": {"path": str(tmp_path)}}).execute()
