"""Every output path goes through one resolver (build.el's
`gradients-build-output-path'): two spellings of one file are one output,
a link cannot lead outside, no output replaces a source of the project or
has a name make cannot hold, and nothing is made before the checks pass.
Org sees the notes in their own folder, as the author does."""

import os
import subprocess

import pytest

from conftest import make
from tiny_notes import HEADER, assert_failed_cleanly, block, build, line_of, write_readme

DRAW = "from graphviz import Digraph\nd = Digraph()\nd.node('x')\nd"


SPELLINGS = ["images/x.svg", "./images/x.svg", "images//x.svg", "images/../images/x.svg",
             "images/./x.svg"]


def reported(run):
    return [line for line in run.stderr.splitlines() if line.startswith("README.org:")]


def test_one_picture_under_several_spellings_is_refused(tiny):
    text = HEADER + "".join(block(DRAW, f"draws-{n}", f":file {name}")
                            for n, name in enumerate(SPELLINGS))
    before = write_readme(tiny, text)
    run = build(tiny)
    said = [f"README.org:{line_of(text, f'draws-{n}')}: block `draws-{n}': :file {name} "
            "is drawn already by README.org:" for n, name in enumerate(SPELLINGS) if n]
    assert_failed_cleanly(run, tiny, before, said[0])
    assert [line[:len(s)] for line, s in zip(reported(run), said)] == said, run.stderr


def test_one_tangled_file_under_two_spellings_gets_every_block(tiny):
    text = HEADER + block("print('one')", "one", ":tangle ./gradients.py") \
        + block("print('two')", "two") + block("print('three')", "three", ":tangle gradients.py")
    write_readme(tiny, text)
    run = build(tiny)
    assert run.returncode == 0, run.stderr
    tangled = (tiny / "gradients.py").read_text()
    assert [line for line in tangled.splitlines() if line.startswith("print")] == \
        ["print('one')", "print('two')", "print('three')"]


# Each would replace a source of the project, or write where no output goes.
SOURCES = [":tangle Makefile", ":tangle README.org", ":tangle .git/hooks/post-checkout",
           ":tangle tools/build.el", ":tangle tests/conftest.py", ":tangle pyproject.toml",
           ":tangle requirements.lock", ":tangle .gitignore", ":tangle .build/outputs",
           ":file .ci/x.svg", ":file tools/x.svg"]


def test_no_output_replaces_a_source_of_the_project(tiny):
    text = HEADER + "".join(block(DRAW, f"bad-{n}", header) for n, header in enumerate(SOURCES))
    before = write_readme(tiny, text)
    run = build(tiny)
    said = [f"README.org:{line_of(text, f'bad-{n}')}: block `bad-{n}': {header} "
            "would replace a source of the project" for n, header in enumerate(SOURCES)]
    assert_failed_cleanly(run, tiny, before, said[0])
    assert [line[:len(s)] for line, s in zip(reported(run), said)] == said, run.stderr


# Make reads the list of outputs; recipes hand them to the shell.
UNHOLDABLE = ["images/a:b.svg", "images/a#b.svg", "images/a%b.svg", "images/a$b.svg",
              "images/a;b.svg", "images/a*b.svg", "images/a=b.svg"]


def test_a_name_make_cannot_hold_is_refused_and_make_still_works(tiny):
    text = HEADER + "".join(block(DRAW, f"odd-{n}", f":file {name}")
                            for n, name in enumerate(UNHOLDABLE))
    write_readme(tiny, text)
    run = make("tangle", cwd=tiny)
    assert run.returncode != 0
    said = [f"README.org:{line_of(text, f'odd-{n}')}: block `odd-{n}': :file {name} has "
            for n, name in enumerate(UNHOLDABLE)]
    assert [line[:len(s)] for line, s in zip(reported(run), said)] == said, run.stderr
    assert "make or the shell cannot hold" in run.stderr
    for target in ("help", "clean"):
        assert make(target, cwd=tiny).returncode == 0
    assert not list(tiny.rglob("odd*")) and not list(tiny.rglob("a?b.svg"))


def test_a_link_leading_outside_is_refused_and_nothing_is_written_there(tiny, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    (tiny / "images").rename(tiny / "images-real")
    (tiny / "images").symlink_to(outside)
    text = HEADER + block(DRAW, "linked", ":file images/x.svg")
    before = write_readme(tiny, text)
    assert_failed_cleanly(build(tiny), tiny, before,
                          f"README.org:{line_of(text, 'linked')}: block `linked': "
                          ":file images/x.svg is outside the project (it leads to ")
    assert list(outside.iterdir()) == []


def test_an_absolute_path_inside_the_project_is_the_same_file(tiny):
    text = HEADER + block(DRAW, "absolute", f":file {tiny}/images/abs.svg")
    write_readme(tiny, text)
    run = build(tiny)
    assert run.returncode == 0, run.stderr
    assert (tiny / "images" / "abs.svg").read_text().startswith("<?xml")


def test_a_refused_output_dir_is_not_made(tiny, tmp_path_factory):
    deep = tmp_path_factory.mktemp("od") / "x" / "deep"
    text = HEADER + block(DRAW, "elsewhere", f":file x.svg :output-dir {deep}")
    before = write_readme(tiny, text)
    assert_failed_cleanly(build(tiny), tiny, before,
                          f"README.org:{line_of(text, 'elsewhere')}: block `elsewhere': :file ")
    assert not deep.parent.exists()


def test_mkdirp_no_with_a_missing_folder_is_named(tiny):
    text = HEADER + block("x = 1", "nowhere", ":tangle missing/x.py :mkdirp no")
    before = write_readme(tiny, text)
    assert_failed_cleanly(build(tiny), tiny, before,
                          f"README.org:{line_of(text, 'nowhere')}: block `nowhere': :tangle "
                          "missing/x.py goes in a folder that does not exist")


def test_two_blocks_of_one_name_are_refused_on_both_lines(tiny):
    text = HEADER + block("1", "dupe") + block("2", "dupe").replace("#+name: dupe", "#+NAME: dupe")
    before = write_readme(tiny, text)
    run = build(tiny)
    lines = text.split("\n")
    named = [n for n, line in enumerate(lines, 1) if line.lower() == "#+name: dupe"]
    for line in named:
        assert_failed_cleanly(run, tiny, before,
                              f"README.org:{line}: the name `dupe' is given to more than one block")


def test_lisp_header_values_and_setupfile_see_the_notes_folder(tiny):
    (tiny / "setup.org").write_text("#+PROPERTY: header-args:jupyter-python+ :var answer=42\n")
    text = HEADER.replace("* Notes", "#+SETUPFILE: setup.org\n\n* Notes") + block(
        "print(path, answer)", "where", ':var path=(expand-file-name "data.csv")')
    write_readme(tiny, text)
    run = build(tiny, "run")
    assert run.returncode == 0, run.stderr
    assert f": {tiny}/data.csv 42" in (tiny / "README.org").read_text()
    again = build(tiny, "run")
    assert again.returncode == 0 and "wrote README.org" not in again.stderr, again.stderr


def test_a_scratch_folder_left_by_a_killed_build_is_removed(tiny):
    (tiny / ".build").mkdir(exist_ok=True)
    # No process has a number this high (pid_max is at most 2^22).
    abandoned = tiny / ".build" / "run-99999999-abcdef"
    (abandoned / "images").mkdir(parents=True)
    mine = tiny / ".build" / f"run-{os.getpid()}-abcdef"
    mine.mkdir()
    write_readme(tiny, HEADER + block("x = 1", "one"))
    assert build(tiny).returncode == 0
    assert not abandoned.exists() and mine.exists()


def test_a_result_org_cannot_replace_or_would_run_is_refused(tiny):
    """Raw text outside a drawer has no end Org can find: each `make run`
    would add it again.  A result recorded as code would be run and tangled."""
    text = HEADER + block("print('one')", "fine") + block("x = 1", "raw", ":results raw replace") \
        + block("x = 1", "wrapped", ":results raw replace :wrap example") \
        + block("x = 1", "code", ":results code")
    before = write_readme(tiny, text)
    run = build(tiny, "run")
    assert_failed_cleanly(run, tiny, before,
                          f"README.org:{line_of(text, 'raw')}: block `raw': :results raw "
                          "outside a drawer")
    assert f"README.org:{line_of(text, 'code')}: block `code': :results code" in run.stderr
    assert "`wrapped'" not in run.stderr


# Found by probing: more members of the same families, one build for all.
MORE = [
    ("Dup", "", "its name differs only in case from another block's"),
    ("dup", "", "its name differs only in case from another block's"),
    ("pic", ":file images/x.png", None),
    ("tan", ":tangle images/x.png", ":tangle images/x.png is drawn already by"),
    ("in-sub", ":dir sub", ":dir sub is not followed by the kernel"),
    ("target", ":tangle tangle", ":tangle tangle would replace a source of the project"),
    ("ignored", ":tangle gradients.ipynb", ":tangle gradients.ipynb is ignored by git"),
    ("folder", ":tangle out/", ":tangle out/ is a folder"),
    ("shouting", ":tangle GRADIENTS.py", ":tangle GRADIENTS.py and gradients.py, tangled by"),
]


def test_more_outputs_and_names_that_would_go_wrong_are_refused(tiny):
    subprocess.run(["git", "init", "-q"], cwd=tiny, check=True)
    text = HEADER + "".join(block("1", name, args) for name, args, _ in MORE) \
        + "\n#+RESULTS: renamed\n:results:\n: 1\n:end:\n"
    before = write_readme(tiny, text)
    run = build(tiny)
    said = [f"README.org:{line_of(text, name)}: block `{name}': {what}"
            for name, _, what in MORE if what]
    said.insert(2, f"README.org:{text.split(chr(10)).index('#+RESULTS: renamed') + 1}: "
                   "#+RESULTS: renamed belongs to no block")
    assert_failed_cleanly(run, tiny, before, said[0])
    lines = reported(run)
    for expected in said:
        assert any(line.startswith(expected) for line in lines), (expected, run.stderr)


def test_noweb_references_are_expanded_as_org_expands_them(tiny):
    text = HEADER + block("X = 41", "helper", ":eval no :tangle no") \
        + block("<<helper>>\nprint(X + 1)", "uses", ":noweb yes")
    write_readme(tiny, text)
    run = build(tiny, "run")
    assert run.returncode == 0, run.stderr
    assert ":results:\n: 42\n:end:" in (tiny / "README.org").read_text()
    tangled = build(tiny)
    assert tangled.returncode == 0, tangled.stderr
    assert "X = 41\nprint(X + 1)" in (tiny / "gradients.py").read_text()


def test_make_builds_again_when_a_file_the_notes_read_changes(tiny):
    (tiny / "setup.org").write_text("#+PROPERTY: header-args:jupyter-python+ :var n=1\n")
    text = HEADER.replace("* Notes", "#+SETUPFILE: setup.org\n\n* Notes") \
        + block("print(n)", "reads")
    write_readme(tiny, text)
    assert build(tiny, "run").returncode == 0
    assert make("tangle", cwd=tiny).returncode == 0
    assert make("-q", "tangle", cwd=tiny).returncode == 0
    (tiny / "setup.org").write_text("#+PROPERTY: header-args:jupyter-python+ :var n=2\n")
    assert make("-q", "tangle", cwd=tiny).returncode == 1, "make missed the #+SETUPFILE"
    # README.org put back with an older time: its digest tells.
    os.utime(tiny / "setup.org", (0, 0))
    make("tangle", cwd=tiny)
    original = (tiny / "README.org").read_text()
    (tiny / "README.org").write_text(original.replace("print(n)", "print(n + 1)"))
    os.utime(tiny / "README.org", (0, 0))
    assert make("-q", "tangle", cwd=tiny).returncode == 1, "make missed an older README.org"
