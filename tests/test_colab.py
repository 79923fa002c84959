"""The Colab notebooks run end to end (nbclient, CPU, tiny config) and draw their plots."""

import json
import os
import pathlib

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

COLAB = pathlib.Path(__file__).resolve().parents[1] / "colab"


def execute(name: str, env: dict[str, str], monkeypatch) -> nbformat.NotebookNode:
  for k, v in env.items():
    monkeypatch.setenv(k, v)
  nb = nbformat.read(COLAB / name, as_version=4)
  assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{name}: outputs not stripped"
  NotebookClient(nb, timeout=900, kernel_name="python3",
                 resources={"metadata": {"path": str(COLAB)}}).execute()
  return nb


def images(nb: nbformat.NotebookNode) -> int:
  return sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def text(nb: nbformat.NotebookNode) -> str:
  return "".join(o.get("text", "") + json.dumps(o.get("data", {})) for c in nb.cells
                 if c.cell_type == "code" for o in c.outputs)


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory):
  """The quickstart notebook executed once with the tiny config: (notebook, workdir)."""
  tmp = tmp_path_factory.mktemp("quickstart")
  with pytest.MonkeyPatch.context() as mp:
    nb = execute("quickstart.ipynb", {"JAXREC_NOTEBOOK_TINY": "1", "JAXREC_NOTEBOOK_WORKDIR": str(tmp / "run"),
                                      "JAXREC_CACHE": str(tmp / "cache")}, mp)
  return nb, tmp / "run"


def test_quickstart_trains_plots_and_recommends(quickstart_run):
  nb, workdir = quickstart_run
  out = text(nb)
  assert "runtime: cpu" in out and "jaxrec installed" in out
  assert images(nb) == 2                                   # training curves, metrics vs popularity
  for png in ("curves.png", "metrics.png"):
    assert (workdir / "report" / png).stat().st_size > 5000
  assert "| demo:learn |" in out and "| popularity |" in out
  assert "recommended:" in out and "  10. " in out         # ten titles for the user's history
  assert (workdir / "tensorboard").is_dir() and (workdir / "results.json").is_file()


def test_ablations_plot_the_committed_office_results(tmp_path, monkeypatch):
  nb = execute("learn_ablations.ipynb", {"JAXREC_ABLATIONS_OUT": str(tmp_path)}, monkeypatch)
  assert images(nb) == 3
  for png in ("content_vs_id.png", "variants.png", "cold_start.png"):
    assert (tmp_path / png).stat().st_size > 5000, png
  out = text(nb)
  assert "office-id" in out and "office-paper-v2" in out and "office-cold-learn" in out


def test_ablations_fall_back_to_fresh_results(quickstart_run, tmp_path, monkeypatch):
  _, workdir = quickstart_run
  nb = execute("learn_ablations.ipynb", {"JAXREC_ABLATIONS_OUT": str(tmp_path),
                                         "JAXREC_RESULTS_GLOB": str(workdir / "results.json")}, monkeypatch)
  assert images(nb) >= 1 and (tmp_path / "content_vs_id.png").stat().st_size > 5000


@pytest.mark.parametrize("name", ["quickstart", "learn_ablations"])
def test_notebook_and_its_py_pair_hold_the_same_cells(name):
  py = jupytext.read(COLAB / f"{name}.py")
  nb = nbformat.read(COLAB / f"{name}.ipynb", as_version=4)
  assert [(c.cell_type, c.source) for c in py.cells] == [(c.cell_type, c.source) for c in nb.cells], \
      f"run: jupytext --sync colab/{name}.py"
