"""The tutorials are stored without outputs; the docs build executes them (docs/conf.py)."""

import json
from pathlib import Path

import pytest

TUTORIALS = sorted((Path(__file__).resolve().parents[2] / "tutorials").glob("*.ipynb"))


def test_there_are_tutorials():
    assert len(TUTORIALS) >= 8


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda path: path.name)
def test_tutorial_is_stored_without_outputs(path):
    cells = json.loads(path.read_text())["cells"]
    stored = [
        index
        for index, cell in enumerate(cells)
        if cell["cell_type"] == "code" and (cell["outputs"] or cell["execution_count"])
    ]
    assert not stored, (
        f"{path.name} is stored with outputs in cells {stored}; clear them before "
        "committing (the docs build executes the notebooks): Jupyter's 'Clear All "
        "Outputs', or python -c \"import nbformat as f; p='tutorials/"
        f"{path.name}'; n=f.read(p, 4); [c.update(outputs=[], execution_count=None) "
        "for c in n.cells if c.cell_type == 'code']; f.write(n, p)\""
    )


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda path: path.name)
def test_only_the_import_cell_hides_stderr(path):
    """The docs hide only start-up logs of C++ runtimes (conf.py), never Python warnings.

    TensorFlow's start-up banner (the import cell), and Ray's: the C++ core worker of
    the notebook's own process logs to stderr whatever Python's logging says, so a
    cell that starts Ray (``ray.init``) may hide its stderr too.
    """
    code = [cell for cell in json.loads(path.read_text())["cells"] if cell["cell_type"] == "code"]
    hidden = [cell for cell in code if "remove-stderr" in cell["metadata"].get("tags", [])]
    imports = [cell for cell in hidden if "import keras" in "".join(cell["source"])]
    assert len(imports) == 1
    others = [cell for cell in hidden if cell not in imports]
    assert all("ray.init(" in "".join(cell["source"]) for cell in others)
