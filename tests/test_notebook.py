"""gradients.ipynb, made from README.org, runs in Jupyter and shows what
README.org records."""

import subprocess
import sys

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import README, ROOT
import kernel_bridge


@pytest.fixture(scope="module")
def notebook(tmp_path_factory):
    path = tmp_path_factory.mktemp("notebook") / "gradients.ipynb"
    run = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "notebook.py"), str(README), str(path)],
        capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return nbformat.read(path, as_version=4)


def exported(doc):
    return [b for b in doc.jupyter_blocks() if b.exported]


def as_messages(outputs):
    """Notebook outputs in the form the kernel bridge formats."""
    return [(o.output_type, o) for o in outputs]


def test_cells_follow_the_document(doc, notebook):
    nbformat.validate(notebook)
    code = [c.source for c in notebook.cells if c.cell_type == "code"]
    assert code == [b.code.strip("\n") for b in exported(doc)]
    prose = "\n".join(c.source for c in notebook.cells if c.cell_type == "markdown")
    for _, title, _ in doc.headings:
        assert f" {title}\n" in prose + "\n"
    assert "[micrograd](https://github.com/karpathy/micrograd)" in prose
    assert "`Value`" in prose


def test_recorded_pictures_are_embedded(doc, notebook):
    cells = [c for c in notebook.cells if c.cell_type == "code"]
    for cell, block in zip(cells, exported(doc)):
        if block.file:
            kinds = [mime for o in cell.outputs if o.output_type == "display_data"
                     for mime in o.data]
            assert kinds == ["image/png" if block.file.endswith(".png") else "image/svg+xml"]


def test_the_notebook_runs_in_a_fresh_kernel_and_shows_the_recorded_results(
        doc, notebook, tmp_path):
    manager = kernel_bridge.kernel_manager(str(tmp_path))
    client = NotebookClient(notebook, km=manager, timeout=120,
                            resources={"metadata": {"path": str(ROOT)}})
    with pytest.MonkeyPatch.context() as env:
        for key, value in kernel_bridge.kernel_environment().items():
            env.setenv(key, value)
        client.execute()
    cells = [c for c in notebook.cells if c.cell_type == "code"]
    wrong = []
    for cell, block in zip(cells, exported(doc)):
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors, f"{block.label}: {errors[0].ename}: {errors[0].evalue}"
        shown = kernel_bridge.org_result(as_messages(cell.outputs), block.file)
        if shown != (block.result or ""):
            wrong.append((block.label, block.result, shown))
    assert wrong == []
