"""README.org as a Jupyter notebook.

    python tools/notebook.py README.org gradients.ipynb

Each exported `jupyter-python` block becomes a code cell, in document order,
carrying its recorded result: text as output, tables as Markdown, pictures
embedded from images/.  A block the page does not show becomes a cell with
its code hidden, unless it holds only comments (the generated-file header).  The prose between the cells becomes Markdown cells, written by
pandoc from the Org text (GitHub-flavoured Markdown, which Jupyter renders).
"""

import base64
import os
import re
import sys
import tempfile
from pathlib import Path

import nbformat
import pypandoc
from nbformat import v4

sys.path.insert(0, str(Path(__file__).resolve().parent))
import produced  # noqa: E402
from kernel_bridge import why_unwritable, write_atomically  # noqa: E402


class NotebookError(Exception):
    pass

# pandoc starts once for all the prose: the chunks go in as one Org text,
# each followed by this raw HTML line, which pandoc copies to its output
# untouched, so the output splits back into one text per chunk.
CELL_BREAK = "<!-- gradients.ipynb: end of cell -->"

# Org's #+TITLE is metadata to pandoc, which the body never shows: the
# template puts it above the body as the notebook's one level-1 heading.
TEMPLATE = "$if(title)$\n# $title$\n\n$endif$\n$body$\n"

# The notes are written to be read on GitHub, whose Org renderer shows
# "x86_64" as typed, not with a subscript 64; Org options set in the
# document itself come later and still win.  Likewise "..." and "--" stay
# as typed: pandoc's special_strings is off in the call below.
# GitHub shows a section tagged :noexport: (or with a tag the notes name
# in #+EXCLUDE_TAGS), and Org tangles and runs its blocks, which the
# notebook keeps as cells: pandoc, which would leave the section out as
# an Org export does, and the cells' ends with it, is told to leave out
# none, and never sees the notes' own list.
READ_AS_GITHUB = "#+OPTIONS: ^:{}\n#+EXCLUDE_TAGS:\n"
EXCLUDE_TAGS = re.compile(r"^[ \t]*#\+(?:exclude|select)_tags:.*$", re.IGNORECASE | re.MULTILINE)

PANDOC_ARGS = [
    # Org's top headings sit one level under the title.
    "--shift-heading-level-by=1",
    # Line breaks as in README.org, so a cell reads like its source.
    "--wrap=preserve",
    # A footnote's text goes right after its paragraph, in the same cell,
    # rather than at the very end, in the last one.
    "--reference-location=block",
]


def markdown(chunks):
    """Each Org prose chunk of CHUNKS (a list of texts) as Markdown."""
    org = READ_AS_GITHUB + "".join(
        f"{EXCLUDE_TAGS.sub('', chunk)}\n\n#+begin_export html\n{CELL_BREAK}\n#+end_export\n\n"
        for chunk in chunks)
    with tempfile.TemporaryDirectory(prefix="gradients-pandoc-") as scratch:
        template = Path(scratch) / "notebook.md"
        template.write_text(TEMPLATE)
        # The formats are fixed, so pypandoc need not ask pandoc for its list.
        text = pypandoc.convert_text(
            org, "gfm", format="org-special_strings", verify_format=False,
            extra_args=[*PANDOC_ARGS, "--standalone", f"--template={template}"])
    parts = text.split(CELL_BREAK)
    if len(parts) != len(chunks) + 1 or parts[-1].strip():
        raise NotebookError(
            f"pandoc gave {len(parts) - 1} prose cells for {len(chunks)} chunks: "
            f"does the prose itself contain {CELL_BREAK!r}?")
    return [part.strip("\n") for part in parts[:-1]]


def outputs_for(block, root, doc_path):
    """The recorded result of BLOCK as notebook outputs."""
    if not block.recorded:
        return []
    outputs, text, table = [], [], []
    for line in block.recorded.splitlines():
        if line.startswith(":"):
            text.append(line[2:])
        elif line.startswith("|"):
            table.append(re.sub(r"^\|([-+]+)\|$", lambda m: "|" + m.group(1).replace("+", "|") + "|", line))
        elif m := re.fullmatch(r"\[\[file:(.*)\]\]", line):
            picture = root / m.group(1)
            if not picture.is_file():
                raise NotebookError(
                    f"{block.where(doc_path)}: its result links {m.group(1)}, "
                    "which does not exist: run `make tangle`")
            if picture.suffix == ".png":
                data = {"image/png": base64.b64encode(picture.read_bytes()).decode()}
            else:
                data = {"image/svg+xml": picture.read_text()}
            outputs.append(v4.new_output("display_data", data=data))
    if text:
        outputs.insert(0, v4.new_output("stream", name="stdout", text="\n".join(text) + "\n"))
    if table:
        outputs.append(v4.new_output("execute_result", execution_count=None, data={
            "text/markdown": "\n".join(table), "text/plain": "\n".join(table)}))
    return outputs


def in_notebook(block):
    """Whether BLOCK is a code cell: when it is shown, or when it runs and
    has code (not only comments) that later cells may need; never when
    Org leaves it out, under a COMMENT or archived heading."""
    if block.left_out:
        return False
    if block.exported:
        return True
    code = [line for line in block.code.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]
    return block.runs and bool(code)


def notebook(org_file):
    """The notebook of ORG_FILE, from what the build read of it."""
    root = Path(org_file).resolve().parent
    doc = produced.load(root)
    # Every jupyter-python block leaves the prose with its name and its
    # result, each as a range of lines: by first line, the last.
    taken_out = {}
    for block in doc.jupyter_blocks():
        taken_out[block.first_line] = block.last_line
        if block.results_line:
            taken_out[block.results_line] = block.results_last_line
    code_cells = {b.first_line: b for b in doc.jupyter_blocks() if in_notebook(b)}

    # The cells in order: code cells, and for each prose chunk its index in
    # CHUNKS, until pandoc has made all of them Markdown.
    cells, chunks, prose = [], [], []

    def end_chunk():
        if any(line.strip() for line in prose):
            cells.append(len(chunks))
            chunks.append("\n".join(prose))
        prose.clear()

    number = 1
    while number <= len(doc.lines):
        if number in taken_out:
            if number in code_cells:
                block = code_cells[number]
                end_chunk()
                cell = v4.new_code_cell(block.code.strip("\n"))
                cell.outputs = outputs_for(block, root, org_file)
                if not block.exported:
                    # Code the page leaves out, but later cells need.
                    cell.metadata["jupyter"] = {"source_hidden": True}
                cells.append(cell)
            number = taken_out[number] + 1
            continue
        prose.append(doc.lines[number - 1])
        number += 1
    end_chunk()

    texts = markdown(chunks)
    cells = [v4.new_markdown_cell(texts[c]) if isinstance(c, int) else c for c in cells]
    # A chunk of keywords and comments only has nothing to show.
    cells = [c for c in cells if c.cell_type == "code" or c.source.strip()]
    nb = v4.new_notebook(cells=cells)
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    }
    for n, cell in enumerate(nb.cells):
        cell.id = f"cell-{n}"   # stable ids: the same README gives the same bytes
    return nb


if __name__ == "__main__":
    org_file, ipynb = sys.argv[1:]
    try:
        nb = notebook(org_file)
        nbformat.validate(nb)
    except (NotebookError, produced.Stale) as error:
        sys.exit(str(error))
    # As the build writes an output: never through a link to a file
    # outside the project, and through a temporary file, so that a failure
    # leaves no half-written notebook; said in one line.
    project = os.path.dirname(os.path.realpath(org_file))
    target = os.path.realpath(ipynb)
    spelled = os.path.join(project, os.path.relpath(os.path.abspath(ipynb),
                                                    os.path.dirname(os.path.abspath(org_file))))

    def inside(path):
        return os.path.commonpath([project, path]) == project

    if inside(os.path.normpath(spelled)) and not inside(target):
        sys.exit(f"{ipynb} is a link that leads outside the project, to {target}; "
                 "remove the link")
    try:
        write_atomically(ipynb, (nbformat.writes(nb) + "\n").encode())
    except OSError as error:
        sys.exit(f"cannot write {ipynb}: {why_unwritable(ipynb, error)}")
    print(f"wrote {ipynb}: {len(nb.cells)} cells")
