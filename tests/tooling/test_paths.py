"""Every output path goes through one resolver (build.el's
`gradients-build-output-path'): two spellings of one file are one output,
a link cannot lead outside, no output replaces a source of the project or
has a name make cannot hold, and nothing is made before the checks pass.
Org sees the notes in their own folder, as the author does.  C-c C-c,
which no build checks, fails a block whose :file cannot be written, and
follows a link to its :file as the build does."""

import os

import pytest

from conftest import copy_project, make
from tiny_notes import (HEADER, assert_failed_cleanly, assert_no_kernel_left, block, build,
                        line_of, write_readme)

import kernel_bridge  # noqa: E402 (tools/, on the path once conftest is)

DRAW = "from graphviz import Digraph\nd = Digraph()\nd.node('x')\nd"


def reported(run):
    return [line for line in run.stderr.splitlines() if line.startswith("README.org:")]


@pytest.fixture(scope="module")
def tangled_once(tmp_path_factory):
    """One successful `make tangle' of notes that name one output in
    several ways, with the scratch folders of an earlier build about:
    the notes' folder, the notes and the build."""
    folder = copy_project(tmp_path_factory.mktemp("tangled-once"))
    (folder / ".build").mkdir(exist_ok=True)
    # No process has a number this high (pid_max is at most 2^22).
    (folder / ".build" / "run-99999999-abcdef" / "images").mkdir(parents=True)
    (folder / ".build" / f"run-{os.getpid()}-abcdef").mkdir()
    text = HEADER + block("print('one')", "one", ":tangle ./gradients.py") \
        + block("print('two')", "two") \
        + block("print('three')", "three", f":tangle {folder}/gradients.py") \
        + block(DRAW, "picture", ":file images/abs.svg")
    write_readme(folder, text)
    return folder, build(folder)


@pytest.mark.xdist_group(f"{__name__}.tangled_once")
def test_one_tangled_file_under_two_spellings_gets_every_block(tangled_once):
    folder, run = tangled_once
    assert run.returncode == 0, run.stderr
    tangled = (folder / "gradients.py").read_text()
    assert [line for line in tangled.splitlines() if line.startswith("print")] == \
        ["print('one')", "print('two')", "print('three')"]


@pytest.mark.xdist_group(f"{__name__}.tangled_once")
def test_an_absolute_path_inside_the_project_is_the_same_file(tangled_once):
    folder, run = tangled_once
    assert run.returncode == 0, run.stderr
    assert (folder / "images" / "abs.svg").read_text().startswith("<?xml")
    assert (folder / ".build" / "outputs").read_text().splitlines() == \
        ["gradients.py", "images/abs.svg"]


@pytest.mark.xdist_group(f"{__name__}.tangled_once")
def test_a_scratch_folder_left_by_a_killed_build_is_removed(tangled_once):
    """Only that of a process that is gone: a build running beside this
    one keeps its own."""
    folder, run = tangled_once
    assert run.returncode == 0, run.stderr
    assert not (folder / ".build" / "run-99999999-abcdef").exists()
    assert (folder / ".build" / f"run-{os.getpid()}-abcdef").exists()


# Every refusal of an output path, each on its line, is checked in one
# Emacs by tests/ert/refusal-tests.el, through the same build in process;
# here, once, what only a real `make tangle' shows: make fails, nothing
# is written outside the project nor made there, no kernel is left, and
# make still works after.  Make reads the list of outputs, and recipes
# hand them to the shell.
UNHOLDABLE = ["images/a:b.svg", "images/a#b.svg", "images/a%b.svg", "images/a$b.svg",
              "images/a;b.svg", "images/a*b.svg", "images/a=b.svg"]


def test_outputs_refused_by_make_tangle_leave_nothing_anywhere(tiny, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    (tiny / "linked").symlink_to(outside)
    deep = tmp_path_factory.mktemp("od") / "x" / "deep"
    text = HEADER + "".join(block(DRAW, f"odd-{n}", f":file {name}")
                            for n, name in enumerate(UNHOLDABLE)) \
        + block(DRAW, "linked", ":file linked/x.svg") \
        + block(DRAW, "elsewhere", f":file x.svg :output-dir {deep}")
    before = write_readme(tiny, text)
    run = make("tangle", cwd=tiny)
    said = [f"README.org:{line_of(text, f'odd-{n}')}: block `odd-{n}': :file {name} has "
            for n, name in enumerate(UNHOLDABLE)] \
        + [f"README.org:{line_of(text, 'linked')}: block `linked': :file linked/x.svg "
           "leads outside the project, to ",
           f"README.org:{line_of(text, 'elsewhere')}: block `elsewhere': :file "]
    assert_failed_cleanly(run, tiny, before, said[0])
    assert [line[:len(s)] for line, s in zip(reported(run), said)] == said, run.stderr
    assert "make or the shell cannot hold" in run.stderr
    assert list(outside.iterdir()) == []
    assert not deep.parent.exists()
    assert_no_kernel_left(tiny)
    for target in ("help", "clean"):
        assert make(target, cwd=tiny).returncode == 0
    assert not list(tiny.rglob("odd*")) and not list(tiny.rglob("a?b.svg"))


@pytest.fixture(scope="module")
def run_twice_then_tangled(tmp_path_factory):
    """Notes whose header values Org computes in their folder, from a
    #+SETUPFILE there and from Lisp, and a block made of another by
    noweb: `make run' twice, then `make tangle'.  The notes' folder,
    README.org after the first run, and the three builds."""
    folder = copy_project(tmp_path_factory.mktemp("run-twice"))
    (folder / "setup.org").write_text("#+PROPERTY: header-args:jupyter-python+ :var answer=42\n")
    text = HEADER.replace("* Notes", "#+SETUPFILE: setup.org\n\n* Notes") \
        + block("print(path, answer)", "where", ':var path=(expand-file-name "data.csv")') \
        + block("X = 41", "helper", ":eval no :tangle no") \
        + block("<<helper>>\nprint(X + 1)", "uses", ":noweb yes")
    write_readme(folder, text)
    first = build(folder, "run")
    once = (folder / "README.org").read_text()
    second = build(folder, "run")
    return folder, first, once, second, build(folder)


@pytest.mark.xdist_group(f"{__name__}.run_twice_then_tangled")
def test_lisp_header_values_and_setupfile_see_the_notes_folder(run_twice_then_tangled):
    folder, first, once, second, _ = run_twice_then_tangled
    assert first.returncode == 0, first.stderr
    # The path Lisp made, relative to the notes' folder as a drawer names it.
    assert ": data.csv 42" in once and str(folder) not in once
    assert second.returncode == 0 and "wrote README.org" not in second.stderr, second.stderr


@pytest.mark.xdist_group(f"{__name__}.run_twice_then_tangled")
def test_noweb_references_are_expanded_as_org_expands_them(run_twice_then_tangled):
    folder, first, once, _, tangled = run_twice_then_tangled
    assert first.returncode == 0, first.stderr
    assert ":results:\n: 42\n:end:" in once
    assert tangled.returncode == 0, tangled.stderr
    assert "X = 41\nprint(X + 1)" in (folder / "gradients.py").read_text()


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
    assert f"README.org:{line_of(text, 'wrapped')}: block `wrapped': :wrap example" in run.stderr
    # `make run' starts its kernel while Org loads; the refusal stops it.
    assert_no_kernel_left(tiny)


def test_an_output_that_became_a_link_to_nowhere_is_built_again(tiny):
    """make counts a dangling link as a file by its name, then finds no
    rule to make it: the build must run, and name the link if it leads
    outside, rather than make stop on "No rule to make target"."""
    text = HEADER + block(DRAW, "drawn", ":file images/drawn.svg")
    write_readme(tiny, text)
    assert make("tangle", cwd=tiny).returncode == 0
    picture = tiny / "images" / "drawn.svg"
    picture.unlink()
    picture.symlink_to(tiny.parent / "nowhere" / "drawn.svg")
    run = make("tangle", cwd=tiny)
    assert run.returncode != 0
    assert reported(run) and reported(run)[0].startswith(
        f"README.org:{line_of(text, 'drawn')}: block `drawn': :file images/drawn.svg "
        "leads outside the project, to "), run.stderr
    # Inside, it is named too: the drawer would link the link.
    picture.unlink()
    picture.symlink_to("gone.svg")
    assert make("-q", "tangle", cwd=tiny).returncode == 1
    run = make("tangle", cwd=tiny)
    assert run.returncode != 0
    assert reported(run) == [
        f"README.org:{line_of(text, 'drawn')}: block `drawn': :file images/drawn.svg leads to "
        "images/gone.svg through a symbolic link, and the drawer would link the link; remove "
        "it, or name images/gone.svg"], run.stderr
    assert not (tiny / "images" / "gone.svg").exists()
    picture.unlink()
    run = make("tangle", cwd=tiny)
    assert run.returncode == 0, run.stderr
    assert picture.read_text().startswith("<?xml")
    assert make("-q", "tangle", cwd=tiny).returncode == 0


class ShowsOnePicture:
    """A kernel, as `execute' sees one, whose every block shows one SVG,
    and evaluates no expression after it."""

    evaluated, known_running = {}, set()

    def in_notes(self, text):
        return text

    def run(self, code, timeout, expressions=None, max_printed=None, notes=None):
        return [("display_data", {"data": {"image/svg+xml": "<svg/>"}, "metadata": {}})]


@pytest.mark.parametrize("where, why", [
    ("a-file/x.svg", "a-file is a file, not a folder"),
    ("a-file/deeper/x.svg", "a-file is a file, not a folder"),
    ("a-folder.svg", "it is a folder"),
])
def test_a_picture_c_c_c_cannot_write_fails_its_block_not_the_bridge(tmp_path, monkeypatch,
                                                                      where, why):
    """C-c C-c writes a :file where the author's notes say, unchecked by
    the build: what the file system refuses is the block's error, named
    as the build names it, and the bridge, its kernel and their variables
    live on.  (An OSError out of `execute' ended the bridge.)"""
    import kernel_bridge
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("in the way")
    (tmp_path / "a-folder.svg").mkdir()
    with pytest.raises(kernel_bridge.BlockError) as refused:
        kernel_bridge.execute(ShowsOnePicture(), "d", file=where)
    assert refused.value.kind == "output"
    assert str(refused.value) == f"has :file {where}, which cannot be written: {why}"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a-file", "a-folder.svg"]


def test_a_picture_c_c_c_draws_through_a_link_lands_where_the_build_puts_it(tmp_path):
    """The build follows a link for an output (one file, two spellings);
    C-c C-c replaced the link itself with a file, so that the two wrote
    the same :file to different places."""
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "drawn.svg").write_text("old")
    (tmp_path / "drawn.svg").symlink_to("shared/drawn.svg")
    (tmp_path / "gone.svg").symlink_to("shared/gone.svg")
    kernel_bridge.write_atomically(str(tmp_path / "drawn.svg"), b"new")
    kernel_bridge.write_atomically(str(tmp_path / "gone.svg"), b"new")
    assert os.readlink(tmp_path / "drawn.svg") == "shared/drawn.svg"
    assert os.readlink(tmp_path / "gone.svg") == "shared/gone.svg"
    assert {p.name: p.read_text() for p in (tmp_path / "shared").iterdir()} == \
        {"drawn.svg": "new", "gone.svg": "new"}
