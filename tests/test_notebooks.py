"""Every notebook in notebooks/ runs top to bottom on the bundled default model."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))
OUT = Path(__file__).parent.parent / "test-output" / "notebooks"


@pytest.mark.real_model
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path):
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
    errors = [
        out
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.output_type == "error"
    ]
    assert not errors
    OUT.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, OUT / path.name)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_colab_cell_installs_what_the_project_builds(path):
    # no lmscope release is on PyPI: a bare `pip install lmscope` would run whatever someone
    # else registers under that name
    code = "\n".join(
        "".join(c.source) for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"
    )
    assert "%pip install -q lmscope" not in code and "%pip install lmscope" not in code
    assert 'glob.glob("/content/lmscope-*.whl")' in code and "%pip install -q {found[-1]}" in code
