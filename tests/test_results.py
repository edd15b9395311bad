"""Every result recorded in README.org is what its block produces now,
every picture in images/ is what its block draws now, and gradients.py,
run on its own, prints what the document records."""

import difflib
import os
import re
import subprocess

import pytest

from conftest import README, ROOT
import orgdoc


DOC = orgdoc.parse(README)
EVALUATED = DOC.evaluated_blocks()
PICTURES = [b for b in EVALUATED if b.file]

# The only volatile part of a repr; a recorded one is a bug in itself
# (see test_no_memory_address_is_recorded), so it is masked for comparison.
ADDRESS = re.compile(r"\b0x[0-9a-f]{6,}\b")


def comparable(text):
    return ADDRESS.sub("0x…", text or "")


def show(expected, actual):
    return "\n".join(difflib.unified_diff(
        expected.splitlines(), actual.splitlines(), "recorded in README.org",
        "produced now", lineterm=""))


@pytest.mark.parametrize("block", EVALUATED, ids=lambda b: b.label)
def test_recorded_result(block, produced):
    results, _ = produced
    outcome = results[block.label]
    assert outcome.error is None, f"{block.where(README.name)} raised:\n{outcome.error}"
    if block.args.get("results") == "none":
        return
    expected, actual = comparable(block.result), comparable(outcome.org)
    if block.result is None:
        assert not actual, (
            f"{block.where(README.name)} produces output but README.org records "
            f"none; run `make run`:\n{actual}")
    assert expected == actual, (
        f"{block.where(README.name)}: the recorded result "
        f"(line {block.result_line}) is not what the block produces; if the "
        f"change is intended, run `make run`\n{show(expected, actual)}")


def test_no_memory_address_is_recorded():
    found = [b.label for b in DOC.blocks if b.result and ADDRESS.search(b.result)]
    assert not found, f"results with a memory address in README.org: {found}"


@pytest.mark.parametrize("block", PICTURES, ids=lambda b: b.file)
def test_picture_is_current(block, produced):
    _, drawn = produced
    committed = ROOT / block.file
    assert committed.exists(), f"{block.file} is missing: run `make tangle`"
    fresh = drawn / block.file
    assert fresh.exists(), f"{block.where(README.name)} drew nothing"
    assert committed.read_bytes() == fresh.read_bytes(), (
        f"{block.file} is not what {block.where(README.name)} draws now: "
        "run `make tangle`")


def test_every_picture_has_a_block():
    drawn = {b.file for b in PICTURES}
    on_disk = {f"images/{p.name}" for p in (ROOT / "images").iterdir()}
    assert on_disk - drawn == set(), "pictures that no block draws (remove them)"


@pytest.mark.parametrize("block", PICTURES, ids=lambda b: b.file)
def test_picture_is_linked_where_recorded(block):
    assert block.result and f"[[file:{block.file}]]" in block.result, (
        f"{block.where(README.name)}: its result should link {block.file}")


def test_gradients_py_prints_what_the_document_records(produced):
    """Run on its own with no display, the script prints exactly the
    recorded lines of the blocks that print."""
    results, _ = produced
    expected = []
    for block in EVALUATED:
        outputs = results[block.label].outputs or []   # None when it raised
        printed = sum(content["text"].count("\n")
                      for kind, content in outputs if kind == "stream")
        recorded = (block.result or "").splitlines()[:printed]
        expected += [re.sub(r"^: ?", "", line) for line in recorded]
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "MPLBACKEND")}
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env['PATH']}"
    run = subprocess.run(["./gradients.py"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    assert run.stdout.splitlines() == expected


def test_every_picture_in_a_result_is_under_images():
    """An interactive run links the picture of a block without :file from
    .build/, which is not committed: GitHub would show it broken."""
    stray = [f"{b.where(README.name)}: {link}" for b in DOC.blocks if b.result
             for link in re.findall(r"\[\[file:([^]]+)\]\]", b.result)
             if not link.startswith("images/")]
    assert stray == [], "give these blocks a :file under images/"
