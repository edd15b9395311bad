"""gradients.py is what README.org tangles to, and a failing block stops
the build without changing anything."""

import difflib
import os
import re
import subprocess

from conftest import ROOT, emacs
from tiny_notes import HEADER, assert_failed_cleanly, block, build, line_of, write_readme


def test_gradients_py_is_what_readme_tangles_to(tmp_path):
    emacs("-l", "tools/build.el", "-f", "gradients-build-tangle-into",
          "README.org", str(tmp_path))
    tangled = (tmp_path / "gradients.py").read_text()
    committed = (ROOT / "gradients.py").read_text()
    diff = "\n".join(difflib.unified_diff(
        committed.splitlines(), tangled.splitlines(),
        "gradients.py (committed)", "gradients.py (tangled from README.org)",
        lineterm=""))
    assert committed == tangled, (
        "gradients.py is not what README.org tangles to: run `make tangle` "
        "(and edit README.org, not gradients.py)\n" + diff)


def test_gradients_py_starts_with_shebang_and_header_and_is_executable():
    lines = (ROOT / "gradients.py").read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env python"
    assert "generated from README.org" in lines[1]
    assert os.access(ROOT / "gradients.py", os.X_OK)


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
    run = subprocess.run(["make", "--no-print-directory", "help"], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    listed = [line.split()[1] for line in run.stdout.splitlines()]
    assert sorted(listed) == sorted(t for t in phony if t != "FORCE")
    assert all(len(line.split(None, 2)) == 3 for line in run.stdout.splitlines())
