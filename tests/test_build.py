"""The committed outputs are what README.org builds, and the build behaves:
gradients.py runs on its own, and a failing block changes nothing."""

import difflib
import os
import re
import subprocess

import pytest

from conftest import README, ROOT, emacs


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


@pytest.mark.xdist_group("kernel")
def test_gradients_py_prints_what_the_document_records(doc, produced):
    """Run on its own with no display, the script prints exactly the
    recorded lines of the blocks that print."""
    results, _ = produced
    expected = []
    for block in doc.jupyter_blocks():
        outcome = results.get(block.label)
        if not block.evaluated or outcome is None or not outcome.outputs:
            continue
        printed = sum(content["text"].count("\n")
                      for kind, content in outcome.outputs if kind == "stream")
        recorded = (block.result or "").splitlines()[:printed]
        expected += [re.sub(r"^: ?", "", line) for line in recorded]
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "MPLBACKEND")}
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env['PATH']}"
    run = subprocess.run(["./gradients.py"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    assert run.stdout.splitlines() == expected


def test_a_block_that_raises_stops_the_build_and_changes_nothing(project_copy, doc):
    readme = project_copy / "README.org"
    lines = readme.read_text().split("\n")
    line = doc.block("expression-L").line
    lines.insert(line, "raise ValueError('nudged too far')")
    readme.write_text("\n".join(lines))
    before = {p: p.read_bytes() for p in project_copy.rglob("*")
              if p.is_file() and ".venv" not in p.parts}

    run = emacs("-l", "tools/build.el", "-f", "gradients-build-tangle", "README.org",
                cwd=project_copy, check=False)

    assert run.returncode != 0
    assert f"README.org:{line}: block `expression-L' raised" in run.stderr
    assert "ValueError: nudged too far" in run.stderr
    after = {p: p.read_bytes() for p in project_copy.rglob("*")
             if p.is_file() and ".venv" not in p.parts and ".build" not in p.parts}
    assert after.keys() == before.keys()
    assert [str(p) for p in after if after[p] != before[p]] == []
