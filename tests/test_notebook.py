"""The notebook example in docs/ runs end to end, executed by a real Jupyter kernel (nbclient)."""

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).parents[1] / "docs" / "python-api.ipynb"


def test_the_python_api_notebook_runs(tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    printed = "".join(out.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                      for out in cell.get("outputs", []))
    assert "chosen: " in printed and "mean val_acc" in printed
    assert (tmp_path / "report" / "index.html").is_file()
    assert len(list((tmp_path / "studies" / "own-model" / "runs").glob("mlp-l2/*/summary.json"))) == 3 * 2
