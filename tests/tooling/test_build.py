"""A failing block stops the build without changing anything, and make
knows its own targets."""

import re

from conftest import ROOT, make
from tiny_notes import HEADER, assert_failed_cleanly, block, build, line_of, write_readme


def test_a_block_that_raises_stops_the_build_and_changes_nothing(tiny):
    # A picture is drawn, and gradients.py tangled, before the block that
    # raises: both are dropped.
    text = HEADER + block("from graphviz import Digraph\nDigraph()", "drawn",
                          ":file images/drawn.svg") \
        + block("print('tangled')", "tangled") \
        + block("raise ValueError('nudged too far')", "raises")
    before = write_readme(tiny, text)
    run = build(tiny)
    assert_failed_cleanly(run, tiny, before, f"README.org:{line_of(text, 'raises')}: "
                          "block `raises' raised")
    assert "ValueError: nudged too far" in run.stderr


def test_make_help_lists_every_target_once():
    makefile = (ROOT / "Makefile").read_text()
    phony = re.search(r"^\.PHONY:(.*)$", makefile, re.M).group(1).split()
    run = make("help", cwd=ROOT, check=True)
    listed = [line.split()[1] for line in run.stdout.splitlines()]
    assert sorted(listed) == sorted(t for t in phony if t != "FORCE")
    assert all(len(line.split(None, 2)) == 3 for line in run.stdout.splitlines())


def test_the_notes_make_bench_times_are_notes_the_build_takes(tmp_path):
    """make bench builds notes of its own, which the build's checks had
    come to refuse (:results without drawer) with nothing to say so."""
    import bench
    folder = bench.small_notes(tmp_path / "notes", 3)
    run = build(folder)
    assert run.returncode == 0, run.stderr
    assert "wrote gradients.py" in run.stderr, run.stderr
