"""gradients.ipynb, made from README.org, runs in Jupyter and shows what
README.org records."""

import dataclasses
import re
import shutil
import subprocess
import sys

import pytest

from conftest import README, ROOT
import kernel_bridge

# Jupyter's libraries are imported by the functions that use them: every
# worker of `make check` collects this file, and one runs its tests.

# Its tests share fixtures made once for the module: one worker runs them all.
pytestmark = pytest.mark.xdist_group(__name__)


@pytest.fixture(scope="module")
def notebook(tmp_path_factory):
    path = tmp_path_factory.mktemp("notebook") / "gradients.ipynb"
    run = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "notebook.py"), str(README), str(path)],
        capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    import nbformat
    return nbformat.read(path, as_version=4)


@pytest.mark.parametrize("made", ["a folder", "a link outside"])
def test_a_notebook_that_cannot_be_written_is_said_in_one_line(project_copy, tmp_path_factory,
                                                               made):
    # The checkout's own build of the same README.org, which `make test` made.
    shutil.copytree(ROOT / ".build" / "produced", project_copy / ".build" / "produced")
    outside = tmp_path_factory.mktemp("outside") / "gradients.ipynb"
    outside.write_text("kept")
    ipynb = project_copy / "gradients.ipynb"
    if made == "a folder":
        ipynb.mkdir()
    else:
        ipynb.symlink_to(outside)
    run = subprocess.run([sys.executable, "tools/notebook.py", "README.org", "gradients.ipynb"],
                         cwd=project_copy, capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert run.stderr.splitlines() == [{
        "a folder": "cannot write gradients.ipynb: it is a folder",
        "a link outside": "gradients.ipynb is a link that leads outside the project, to "
                          f"{outside}; remove the link"}[made]], run.stderr
    assert outside.read_text() == "kept"
    assert not list(project_copy.glob(".tmp-*"))


def exported(doc):
    """The blocks that are code cells."""
    import notebook as notebook_module
    return [b for b in doc.jupyter_blocks() if notebook_module.in_notebook(b)]


def as_messages(outputs):
    """Notebook outputs in the form the kernel bridge formats."""
    return [(o.output_type, o) for o in outputs]


def test_cells_follow_the_document(doc, notebook):
    import nbformat
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
    from nbclient import NotebookClient
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
        if shown != (block.recorded or ""):
            wrong.append((block.label, block.recorded, shown))
    assert wrong == []


# What Jupyter shows of a Markdown cell: nbconvert's HTML exporter renders
# each one with this function's renderer (mistune), without the page around.
def rendered(markdown_cells):
    from bs4 import BeautifulSoup
    from nbconvert.filters import markdown2html_mistune
    return [BeautifulSoup(markdown2html_mistune(source), "html.parser")
            for source in markdown_cells]


def prose_lines(doc):
    """README.org's lines outside source blocks and recorded results, with
    their line numbers: what a reader sees as the notes' text."""
    hidden = set()
    for block in doc.blocks:
        hidden.update(range(block.line, block.last_line + 1))
        if block.results_line:
            hidden.update(range(block.results_line, block.results_last_line + 1))
    return [(n, line) for n, line in enumerate(doc.lines, 1) if n not in hidden]


# Org's verbatim and code markup, with the borders Org requires around it.
ORG_CODE = re.compile(r"(?:^|(?<=[\s({'\"-]))([=~])(\S|\S.*?\S)\1(?=$|[\s.,;:!?')}\"\[-])",
                      re.MULTILINE)
ORG_LINK = re.compile(r"\[\[([^]]+)\](?:\[([^]]+)\])?\]")
ORG_RULE = re.compile(r"\|[-+]+\|")


def org_tables(doc):
    """Each table in the prose: its first line and its rows of cells, as a
    reader should see them (code markup shows as its text)."""
    tables, rows, start = [], [], None
    for n, line in prose_lines(doc) + [(None, "")]:
        if line.strip().startswith("|"):
            start = start or n
            if not ORG_RULE.fullmatch(line.strip()):
                rows.append([ORG_CODE.sub(r"\2", cell.strip())
                             for cell in line.strip().strip("|").split("|")])
        elif rows:
            tables.append((start, rows))
            rows, start = [], None
    return tables


def org_links(doc):
    """Each link in the prose, as (where it points, the text it shows)."""
    text = "\n".join(line for _, line in prose_lines(doc))
    return [(target.removeprefix("file:"), " ".join((label or target).split()))
            for target, label in ORG_LINK.findall(text)]


def what_is_wrong(doc, pages):
    """The prose's tables and links that PAGES (rendered Markdown cells) do
    not show as such, and the Org markup they show as text."""
    from bs4 import BeautifulSoup
    tables = [[[" ".join(td.get_text().split()) for td in tr.find_all(["th", "td"])]
               for tr in table.find_all("tr")]
              for page in pages for table in page.find_all("table")]
    links = {(a["href"], " ".join(a.get_text().split()))
             for page in pages for a in page.find_all("a", href=True)}
    visible = []
    for page in pages:
        page = BeautifulSoup(str(page), "html.parser")
        # Code shows its text verbatim by design, Org markup included.
        for code in page.find_all(["code", "pre"]):
            code.decompose()
        visible.append(page.get_text())
    markup = [m.group(0) for text in visible
              for m in (*ORG_CODE.finditer(text), *re.finditer(r"\[\[[^]]*\]?|#\+\w+", text))]
    return {
        "tables": [f"README.org:{line}" for line, rows in org_tables(doc) if rows not in tables],
        "links": [link for link in org_links(doc) if link not in links],
        "markup": markup,
    }


def test_markdown_cells_show_tables_and_links_and_no_org_markup(doc, notebook):
    assert org_links(doc), "README.org's prose has no link"
    pages = rendered(c.source for c in notebook.cells if c.cell_type == "markdown")
    assert what_is_wrong(doc, pages) == {"tables": [], "links": [], "markup": []}


# The notes' prose may hold no table; the check must still see one.
A_TABLE = ["", "| input | slope |", "|-------+-------|", "| =a=   |    -3 |", ""]


def test_the_rendering_check_sees_org_that_was_left_as_it_is(doc):
    """The check above, fed the prose as Org text, finds every kind of fault."""
    doc = dataclasses.replace(doc, lines=doc.lines + A_TABLE)
    pages = rendered(["\n".join(line for _, line in prose_lines(doc))])
    wrong = what_is_wrong(doc, pages)
    assert all(wrong[kind] for kind in ("tables", "links", "markup")), wrong
