"""The notes are what their code makes: every result recorded in README.org
is what its block produces now, every committed output (gradients.py, the
pictures in images/) is what README.org builds now, and gradients.py, run
on its own, prints what the notes record.

What "now" means comes from the build (.build/produced/, which `make test`
brings up to date first): Org's reading of README.org and one run of its
blocks on a fresh kernel, or the one kept from a build of the same code.
No test here runs a block or reads README.org itself."""

import difflib
import os
import re
import xml.etree.ElementTree

import pytest

from conftest import ROOT, committed, committed_output_problem, failing_on
from kernel_bridge import MEMORY_ADDRESS, stable_text, terminal_lines
import produced

NOTES = produced.load()
EVALUATED = NOTES.evaluated_blocks()
PICTURES = [b for b in EVALUATED if b.file]

# A warning as Python writes it: "FILE:LINE: CATEGORY: MESSAGE"; the notes
# name a block's file <cell>, the script its own.
WARNING = re.compile(r"^.*?:[0-9]+: ([A-Za-z_][\w.]*Warning: .*)$", re.M)


def comparable(text):
    """TEXT with its memory addresses, the only volatile part of a repr,
    masked: a recorded one is a bug in itself (see
    test_no_memory_address_is_recorded); and without blanks at its lines'
    ends, which an editor may take from an empty line's ": "."""
    return "\n".join(line.rstrip() for line in MEMORY_ADDRESS.sub("0x…", text or "").split("\n"))


def show(expected, actual, before="recorded in README.org", after="produced now"):
    return "\n".join(difflib.unified_diff(
        expected.splitlines(), actual.splitlines(), before, after, lineterm=""))


@pytest.mark.parametrize("block", EVALUATED, ids=lambda b: b.label)
def test_recorded_result(block):
    if not block.records:
        return
    expected, actual = comparable(block.recorded), comparable(block.produced)
    if block.recorded is None:
        assert not actual, (
            f"{block.where()} produces output but README.org records "
            f"none; run `make run`:\n{actual}")
    # Produced on the left: pytest's own diff then takes the recorded
    # lines away and adds the produced ones, as the one below does.
    assert actual == expected, (
        f"{block.where()}: the recorded result (line {block.results_line}) is "
        f"not what the block produces; if the change is intended, run "
        f"`make run`\n{show(expected, actual)}")


# A block the build does not run (:eval no, or under a COMMENT or archived
# heading, which Org's tangling leaves out) keeps whatever result it
# recorded.  Nothing can check it: make test says so, as a skip with the
# reason in its summary, never as a pass.  Defined only when there is one:
# an empty list would show as a skip of its own.
UNCHECKED = [b for b in NOTES.jupyter_blocks() if not b.runs and b.recorded]
if UNCHECKED:
    @pytest.mark.parametrize("block", UNCHECKED, ids=lambda b: b.label)
    def test_recorded_result_of_a_block_the_build_does_not_run(block):
        pytest.skip(f"{block.where()}: its recorded result (line {block.results_line}) "
                    f"is not checked: the build does not run the block, as {block.not_run}")


def test_no_memory_address_is_recorded():
    found = [b.label for b in NOTES.blocks if b.recorded and MEMORY_ADDRESS.search(b.recorded)]
    assert not found, f"results with a memory address in README.org: {found}"


@pytest.mark.parametrize("output", NOTES.outputs)
def test_committed_output_is_what_the_notes_build(output):
    message = committed_output_problem(NOTES, output)
    if message is None:
        return
    kept, built = ROOT / output, NOTES.folder / output
    if output.endswith(".py") and kept.exists() and kept.read_bytes() != built.read_bytes():
        message += (" (and edit README.org, not the tangled file)\n"
                    + show(kept.read_text(), built.read_text(),
                           f"{output} (committed)", f"{output} (tangled from README.org)"))
    # The tests that use gradients.py, skipped, say it once.
    problem = committed_output_problem(NOTES, output, modes=False)
    if problem:
        failing_on(problem)
    pytest.fail(message)


def test_every_picture_has_a_block():
    # Without images/, no picture lacks a block; the missing ones are
    # named by test_committed_output_is_what_the_notes_build.
    folder = ROOT / "images"
    on_disk = {f"images/{p.name}" for p in folder.iterdir()} if folder.is_dir() else set()
    stray = sorted(on_disk - set(NOTES.outputs))
    assert not stray, (f"{', '.join(stray)}: no block of README.org draws "
                       + ("them; remove them" if len(stray) > 1 else "it; remove it"))


def test_every_picture_is_drawn_by_a_block_that_runs():
    drawn = {b.file for b in PICTURES}
    assert {o for o in NOTES.outputs if o.startswith("images/")} == drawn


@pytest.mark.parametrize("block", PICTURES, ids=lambda b: b.file)
def test_picture_is_linked_where_recorded(block):
    assert block.recorded and f"[[file:{block.file}]]" in block.recorded, (
        f"{block.where()}: its result should link {block.file}")


def picture_problem(path):
    """What is wrong with PATH as a picture of its kind, or None."""
    data = path.read_bytes()
    if path.suffix.lower() == ".png":
        return None if data.startswith(b"\x89PNG\r\n\x1a\n") else "holds no PNG"
    try:
        root = xml.etree.ElementTree.fromstring(data)
    except xml.etree.ElementTree.ParseError as error:
        return f"is no SVG: {error}"
    return None if root.tag.endswith("svg") else f"is no SVG: its root is <{root.tag}>"


@pytest.mark.parametrize("block", PICTURES, ids=lambda b: b.file)
def test_every_picture_is_a_picture_of_its_kind(block):
    """The build and the committed copy agree even on a picture gone bad:
    Fontconfig's FC_DEBUG once wrote its report into every SVG dot drew."""
    picture = ROOT / block.file
    if picture.exists():
        problem = picture_problem(picture)
        assert problem is None, f"{block.file}, drawn by {block.where()}, {problem}"


# A line of printed text, which Org shows as it is: a link there is no link.
FIXED_WIDTH = re.compile(r"[ \t]*:( |$)")


def test_every_picture_in_a_result_is_under_images():
    """An interactive run links the picture of a block without :file from
    .build/, which is not committed: GitHub would show it broken."""
    stray = [f"{b.where()}: {link}" for b in NOTES.blocks if b.recorded
             for line in b.recorded.splitlines() if not FIXED_WIDTH.match(line)
             for link in re.findall(r"\[\[file:([^]]+)\]\]", line)
             if not link.startswith("images/")]
    assert stray == [], "give these blocks a :file under images/"


def test_gradients_py_starts_with_shebang_and_header_and_is_executable():
    script = committed("gradients.py")
    lines = script.read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env python"
    assert "generated from README.org" in lines[1]
    assert os.access(script, os.X_OK)


def test_gradients_py_prints_what_the_document_records(gradients):
    """Imported on its own with no display, the script writes exactly
    what the blocks tangled into it printed on the build's kernel, whose
    drawers the notes record (a block of :tangle no prints in the notes
    alone), byte for byte: a progress bar's carriage returns, colours and
    what a subprocess writes as well; and it warns of nothing the kernel
    did not (a warning that only the script meets would go unseen)."""
    printed = gradients.printed_on_import
    tangled = [block for block in EVALUATED
               if os.path.normpath(block.header.get(":tangle") or "no") == "gradients.py"]
    for block in tangled:
        expected = block.printed or ""
        assert printed.startswith(expected), (
            f"gradients.py, imported, does not print what {block.where()} printed on the "
            f"build's kernel:\n  kernel:       {expected[:200]!r}\n"
            f"  gradients.py: {printed[:len(expected) + 40][:200]!r}")
        printed = printed[len(expected):]
    assert printed == "", f"gradients.py, imported, prints more than its blocks did: {printed[:200]!r}"
    # What the kernel showed, which the drawers record (but a silent
    # block's): the kernel names the block's file <cell>, the script its
    # own.  Each warning as the bridge puts it into a drawer: a library's
    # file by a stable name, its line as a terminal shows it.
    shown = "\n".join(block.produced or "" for block in tangled)
    warned = "\n".join(terminal_lines(stable_text(gradients.warned_on_import)))
    unshown = [warning for warning in WARNING.findall(warned) if warning not in shown]
    assert not unshown, (
        f"gradients.py, imported, warns where no block tangled into it did on the build's "
        f"kernel: {unshown}")


def test_every_block_that_runs_has_a_name_of_its_own():
    """Names are how results, tests and messages find a block."""
    names = [b.name for b in EVALUATED]
    unnamed = [b.where() for b in EVALUATED if b.name is None]
    assert not unnamed, "give each of these blocks a #+name: line: " + ", ".join(unnamed)
    assert len(set(names)) == len(names)


def test_the_generated_file_says_where_it_comes_from_and_is_not_shown():
    first = NOTES.jupyter_blocks()[0]
    assert first.name == "generated-header" and not first.exported
    assert "README.org" in first.code
