"""README.org as a Jupyter notebook.

    python tools/notebook.py README.org gradients.ipynb

Prose becomes Markdown cells (headings, lists, links and inline code kept),
each `jupyter-python` block a code cell in document order, carrying its
recorded result: text as output, tables as Markdown, pictures embedded from
images/.  Blocks not exported (the generated-file header) are left out.
"""

import base64
import re
import sys
from pathlib import Path

import nbformat
from nbformat import v4

sys.path.insert(0, str(Path(__file__).resolve().parent))
import orgdoc  # noqa: E402
from kernel_bridge import write_atomically  # noqa: E402

LINK = re.compile(r"\[\[([^]]+)\](?:\[([^]]+)\])?\]")
VERBATIM = re.compile(r"(?<![\w=~])[=~]([^\s=~](?:[^=~]*?[^\s=~])?)[=~](?![\w=~])")
ITALIC = re.compile(r"(?<![\w/])/([^\s/](?:[^/]*?[^\s/])?)/(?![\w/])")
BOLD = re.compile(r"(?<![\w*])\*([^\s*](?:[^*]*?[^\s*])?)\*(?![\w*])")


def inline(text):
    """Org inline markup as Markdown; code spans are protected first."""
    spans = []

    def keep(markdown):
        spans.append(markdown)
        return f"\0{len(spans) - 1}\0"

    text = VERBATIM.sub(lambda m: keep(f"`{m.group(1)}`"), text)

    def link(m):
        target, label = m.group(1), m.group(2)
        if target.startswith("file:"):
            target = target[len("file:"):]
        return keep(f"[{' '.join((label or target).split())}]({target})")

    text = LINK.sub(link, text)
    text = BOLD.sub(r"**\1**", text)
    text = ITALIC.sub(r"_\1_", text)
    return re.sub("\0(\\d+)\0", lambda m: spans[int(m.group(1))], text)


def markdown(lines):
    """Org prose lines (no blocks, no results) as one Markdown text."""
    out, paragraph = [], []

    def end_paragraph():
        # Inline markup, links above all, may run across line breaks.
        if paragraph:
            out.append(inline("\n".join(paragraph)))
            paragraph.clear()

    for line in lines:
        if m := orgdoc.HEADING.match(line):
            end_paragraph()
            out.append("#" * (len(m.group(1)) + 1) + " " + inline(m.group(2)))
        elif re.match(r"^\s*#\+title:", line, re.I):
            end_paragraph()
            out.append("# " + line.split(":", 1)[1].strip())
        elif re.match(r"^\s*#(\+|\s|$)", line):
            continue   # keywords and comments
        elif line.startswith(": ") or line == ":":
            end_paragraph()
            out.append("    " + line[2:])
        elif not line.strip():
            end_paragraph()
            out.append("")
        else:
            paragraph.append(line)
    end_paragraph()
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip("\n")


def outputs_for(block, root, doc_path):
    """The recorded result of BLOCK as notebook outputs."""
    if not block.result:
        return []
    outputs, text, table = [], [], []
    for line in block.result.splitlines():
        if line.startswith(":"):
            text.append(line[2:])
        elif line.startswith("|"):
            table.append(re.sub(r"^\|([-+]+)\|$", lambda m: "|" + m.group(1).replace("+", "|") + "|", line))
        elif m := re.fullmatch(r"\[\[file:(.*)\]\]", line):
            picture = root / m.group(1)
            if not picture.is_file():
                raise orgdoc.OrgError(
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


def notebook(org_file):
    doc = orgdoc.parse(org_file)
    root = Path(org_file).resolve().parent
    cells, prose = [], []
    blocks = {b.line: b for b in doc.blocks}
    results = {b.result_line: b for b in doc.blocks if b.result_line}

    def flush():
        text = markdown(prose)
        if text:
            cells.append(v4.new_markdown_cell(text))
        prose.clear()

    lines = doc.lines
    i = 0
    while i < len(lines):
        number = i + 1
        if number in blocks:
            block = blocks[number]
            if prose and orgdoc.NAME.match(prose[-1]):
                prose.pop()
            if block.lang == "jupyter-python" and block.exported:
                flush()
                cell = v4.new_code_cell(block.code.strip("\n"))
                cell.outputs = outputs_for(block, root, org_file)
                cells.append(cell)
            elif block.lang != "jupyter-python":
                prose.append(f"```{block.lang}")
                prose.extend(block.code.strip("\n").splitlines())
                prose.append("```")
            i = block.end_line
            continue
        if number in results:
            i = results[number].result_end
            continue
        prose.append(lines[i])
        i += 1
    flush()
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
    except orgdoc.OrgError as error:
        sys.exit(str(error))
    # Through a temporary file, so a failure leaves no half-written notebook.
    write_atomically(ipynb, (nbformat.writes(nb) + "\n").encode())
    print(f"wrote {ipynb}: {len(nb.cells)} cells")
