"""`make test` builds into .build/produced/ without touching the committed
outputs, keeps the kernel's run while the code is the same (a prose edit
starts no kernel), and catches every planted fault."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import EMACS, ROOT, emacs, make, with_the_checkouts_build
from tiny_notes import HEADER, block, line_of, snapshot, write_readme

import produced  # noqa: E402 (tools/, on the path once conftest is)

# With this no kernel can start: a build that needs one fails, saying
# NEEDS_A_KERNEL.  (The venv's Python is part of the kept run's key.)
NO_KERNEL = ("--eval", "(advice-add 'gradients-start-session :override (lambda (name) "
                       "(error \"No kernel may start here (session %s)\" name)))")
NEEDS_A_KERNEL = "No kernel may start here"
# Nor any Python at all, a kernel's or another.
NO_PYTHON = ("--eval", """(dolist (starts '(call-process call-process-region make-process))
  (advice-add starts :before
              (lambda (&rest arguments)
                (let ((program (if (keywordp (car arguments))
                                   (car (plist-get arguments :command))
                                 (car (if (stringp (car arguments)) arguments (cddr arguments))))))
                  (when (and (stringp program) (string-match-p "python" program))
                    (error "No Python may start here (%s)" program))))))""")


def produce(folder, *options):
    return emacs(*options, "-l", "tools/build.el", "-f", "gradients-build-produce",
                 "README.org", cwd=folder, check=False, timeout=120)


def blocks_json(folder):
    return json.loads((folder / ".build" / "produced" / "blocks.json").read_text())


NOTES = HEADER + "\nSome prose.\n" + block("x = 6 * 7\nprint(x)", "answer") \
    + block("from graphviz import Digraph\nd = Digraph()\nd.node('x')\nd", "drawn",
            ":file images/drawn.svg")


def test_a_prose_edit_starts_no_kernel_and_a_code_edit_does(tiny, tmp_path_factory):
    write_readme(tiny, NOTES)
    first = produce(tiny)
    assert first.returncode == 0, first.stderr
    before = snapshot(tiny)
    produced = blocks_json(tiny)
    assert produced["blocks"][0]["produced"] == ": 42"

    # Prose only, and lines moved: no Python could start, neither a kernel
    # nor the check of the code that the kept run's passed, yet all is known.
    write_readme(tiny, NOTES.replace("Some prose.", "Some prose,\nnow on two lines."))
    again = produce(tiny, *NO_KERNEL, *NO_PYTHON)
    assert again.returncode == 0, again.stderr
    assert "results are reused" in again.stderr
    after = blocks_json(tiny)
    assert after["blocks"][0]["produced"] == ": 42"
    assert after["blocks"][0]["line"] == produced["blocks"][0]["line"] + 1
    assert (tiny / ".build/produced/images/drawn.svg").exists()
    assert snapshot(tiny) == {**before, "README.org": (tiny / "README.org").read_bytes()}

    # A code edit, a header argument, the lock: each runs the blocks again.
    for edit in (lambda t: t.replace("6 * 7", "6 * 8"),
                 lambda t: t.replace(":file images/drawn.svg", ":file images/drawn.svg :timeout 9")):
        write_readme(tiny, edit(NOTES))
        run = produce(tiny, *NO_KERNEL)
        assert run.returncode != 0 and NEEDS_A_KERNEL in run.stderr, run.stderr
    # Another dot first on the PATH: it draws the pictures.
    write_readme(tiny, NOTES)
    other = tmp_path_factory.mktemp("other-dot")
    (other / "dot").write_text(f'#!/bin/sh\nexec {shutil.which("dot")} "$@"\n')
    (other / "dot").chmod(0o755)
    run = emacs(*NO_KERNEL, "-l", "tools/build.el", "-f", "gradients-build-produce", "README.org",
                cwd=tiny, check=False, timeout=120,
                env=dict(os.environ, PATH=f"{other}:{os.environ['PATH']}"))
    assert run.returncode != 0 and NEEDS_A_KERNEL in run.stderr, run.stderr
    with open(tiny / "requirements.lock", "a") as lock:
        lock.write("# changed\n")
    run = produce(tiny, *NO_KERNEL)
    assert run.returncode != 0 and NEEDS_A_KERNEL in run.stderr, run.stderr


def other_dot(folder):
    """FOLDER/dot, a program of its own that runs the machine's dot."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dot").write_text(f'#!/bin/sh\nexec {shutil.which("dot")} "$@"\n')
    (folder / "dot").chmod(0o755)
    return folder / "dot"


def linked_dot(folder, target):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dot").symlink_to(target)
    return folder


# How the PATH changes after the build, and whether make must build again:
# each a function of a scratch folder, giving the settings to add.
PATHS = {
    "another dot first": (lambda tmp: {"PATH": str(other_dot(tmp / "other").parent)}, True),
    "the same dot, its folder spelled with a slash": (
        lambda tmp: {"PATH": str(Path(shutil.which("dot")).parent) + "/"}, False),
    "the same dot through a link": (
        lambda tmp: {"PATH": str(linked_dot(tmp / "link", shutil.which("dot")))}, False),
    "a link first, pointed at another dot": (
        lambda tmp: {"PATH": str(linked_dot(tmp / "link", other_dot(tmp / "other")))}, True),
    # make sets an activated environment's bin/ aside, for its $(shell) too.
    "another dot in an activated venv": (
        lambda tmp: {"PATH": str(other_dot(tmp / "venv" / "bin").parent),
                     "VIRTUAL_ENV": str(tmp / "venv")}, False),
}


@pytest.mark.parametrize("change", PATHS)
def test_make_sees_the_dot_on_the_path_change_as_a_file(project_copy, tmp_path_factory, change):
    """The kept run is keyed on the dot found then (above); make itself
    statted that file only, and took the build for up to date until some
    other change ran it; the same dot spelled otherwise made it build on
    every run."""
    built = with_the_checkouts_build(project_copy)
    # What `make test` keeps current (the outputs are, too, unless the
    # checkout's last build was by another Emacs or Org, as in CI's matrix).
    produced = ".build/produced/blocks.json"
    assert make("-q", produced, cwd=built).returncode == 0
    settings, builds_again = PATHS[change]
    added = settings(tmp_path_factory.mktemp("path"))
    env = {**os.environ, **added, "PATH": f"{added['PATH']}{os.pathsep}{os.environ['PATH']}"}
    assert make("-q", produced, cwd=built, env=env).returncode == (1 if builds_again else 0)
    assert make("-q", produced, cwd=built).returncode == 0


# A file the blocks write and then read back is theirs, no input: the
# import of gradients.py by `make test' would write it again, and make
# would take the kept run for out of date.
READS = HEADER + block("print(open('data/input.txt').read().strip())\n"
                       "with open('written.txt', 'w') as written:\n    written.write('not an input')\n"
                       "open('written.txt').read();", "reads")


def test_a_file_a_block_reads_is_part_of_the_kept_run(tiny):
    """A block's results depend on the files it reads: once one changes,
    the blocks run again, and make knows to build; a file written is no
    input, and a prose edit still starts no kernel."""
    (tiny / "data").mkdir()
    (tiny / "data" / "input.txt").write_text("first\n")
    write_readme(tiny, READS)
    first = produce(tiny)
    assert first.returncode == 0, first.stderr
    produced = blocks_json(tiny)
    assert [read["file"] for read in produced["reads"]] == ["data/input.txt"]
    # make's prerequisites of the build, so that `make test` builds again.
    assert re.search(r"^\.build/produced/blocks\.json .*: .*\bdata/input\.txt\b",
                     (tiny / ".build/produced/inputs.mk").read_text(), re.M)

    write_readme(tiny, READS + "\nMore prose.\n")
    again = produce(tiny, *NO_KERNEL)
    assert again.returncode == 0 and "results are reused" in again.stderr, again.stderr

    (tiny / "data" / "input.txt").write_text("second\n")
    refused = produce(tiny, *NO_KERNEL)
    assert refused.returncode != 0 and NEEDS_A_KERNEL in refused.stderr, refused.stderr
    rerun = produce(tiny)
    assert rerun.returncode == 0, rerun.stderr
    assert blocks_json(tiny)["blocks"][0]["produced"] == ": second"

    # Found by probing: a block that read the notes themselves, which
    # `make run' rewrites, made `make run' fail twice before it settled.
    write_readme(tiny, HEADER + block("x = 1", "tangled")
                 + block("print(len(open('README.org').read()) > 0)", "self", ":tangle no"))
    refused = produce(tiny)
    assert refused.returncode != 0
    assert ("README.org: a block reads README.org itself, which `make run' rewrites with the "
            "results") in refused.stderr, refused.stderr


def test_a_module_a_block_imports_is_read_as_its_source(tiny):
    """Python reads an imported module's bytecode once it has some: the
    source is what the run depends on, and what changes."""
    (tiny / "helper.py").write_text("X = 1\n")
    for code in ("import helper\nprint(helper.X)", "import helper\nprint(helper.X, 'again')"):
        write_readme(tiny, HEADER + block(code, "imports"))
        run = produce(tiny)
        assert run.returncode == 0, run.stderr
        assert [read["file"] for read in blocks_json(tiny)["reads"]] == ["helper.py"]
    assert list((tiny / "__pycache__").glob("helper.*.pyc")), "the second run read no bytecode"
    (tiny / "helper.py").write_text("X = 2\n")
    refused = produce(tiny, *NO_KERNEL)
    assert refused.returncode != 0 and NEEDS_A_KERNEL in refused.stderr, refused.stderr


def test_a_block_org_leaves_out_does_not_run_and_its_result_is_said_unchecked(tiny):
    """Org's tangling leaves out the blocks under a COMMENT or archived
    heading, and GitHub shows no COMMENT section: the build runs none of
    them, so the kernel runs what gradients.py holds; nor one of :eval no
    (and :tangle no).  A result recorded for a block that does not run is
    said by make test to be unchecked, as a skip."""
    logged = "open('{0}.log', 'a').write('ran')"
    recorded = "\n#+RESULTS: {0}\n:results:\n: 42\n:end:\n"
    text = (HEADER + block(logged.format("kept"), "kept")
            + "\n* COMMENT A draft\n" + block(logged.format("draft"), "draft")
            + recorded.format("draft")
            + "\n* Old notes :ARCHIVE:\n" + block(logged.format("archived"), "archived")
            + "\n* Later\n" + block(logged.format("eval-no"), "eval-no", ":eval no :tangle no")
            + recorded.format("eval-no")
            # Tangled, run and shown on GitHub, as a cell of the notebook too.
            + "\n* Aside :noexport:\nAside prose.\n" + block(logged.format("aside"), "aside")
            # Run and checked in the notes, but printed by no gradients.py.
            + "\n* Scratch\n" + block("print('scratch', 1 + 1)", "scratch", ":tangle no")
            + "\n#+RESULTS: scratch\n:results:\n: scratch 2\n:end:\n"
            + "\n* Last\nLast prose.\n")
    write_readme(tiny, text)
    # By make, whose note of the Emacs the make under pytest below finds.
    run = make(".build/produced/blocks.json", cwd=tiny)
    assert run.returncode == 0, run.stderr
    assert (tiny / "kept.log").exists()
    for name in ("draft", "archived", "eval-no"):
        assert not (tiny / f"{name}.log").exists(), f"block {name} ran"
    tangled = (tiny / ".build" / "produced" / "gradients.py").read_text()
    assert "kept.log" in tangled
    assert "draft.log" not in tangled and "archived.log" not in tangled
    blocks = blocks_json(tiny)["blocks"]
    assert [b["name"] for b in blocks if b["left_out"]] == ["draft", "archived"]
    why = {b["name"]: b["not_run"] for b in blocks}
    assert why == {"kept": None, "aside": None, "scratch": None,
                   "draft": "it is under a COMMENT heading",
                   "archived": "it is under an archived heading", "eval-no": "it has :eval no"}
    shown = subprocess.run([str(tiny / ".venv" / "bin" / "python"), "tools/notebook.py",
                            "README.org", "notes.ipynb"], cwd=tiny, capture_output=True,
                           text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    cells = (tiny / "notes.ipynb").read_text()
    assert "kept.log" in cells and "aside.log" in cells
    assert "Aside prose." in cells and "Last prose." in cells
    assert "draft.log" not in cells and "archived.log" not in cells
    assert make("tangle", cwd=tiny).returncode == 0
    notes = subprocess.run([str(tiny / ".venv" / "bin" / "python"), "-m", "pytest", "-p", "no:xdist",
                            "tests/test_notes.py", "-k",
                            "does_not_run or scratch or prints_what_the_document_records"],
                           cwd=tiny, capture_output=True, text=True, timeout=120)
    assert "2 skipped" in notes.stdout, notes.stdout
    assert "failed" not in notes.stdout and "error" not in notes.stdout, notes.stdout
    for name in ("draft", "eval-no"):
        reason = re.escape(f"README.org:{text.split(chr(10)).index(f'#+name: {name}') + 2}: "
                           f"block {name}: its recorded result (line ")
        assert re.search(f"SKIPPED .*{reason}.*is not checked: the build does not run the block, "
                         f"as {re.escape(why[name])}", notes.stdout), notes.stdout


def said_once(run, said):
    """The one line of `make test`'s summary (RUN) that fails on SAID; the
    others that meet it are skipped, in one line for all of them."""
    assert run.returncode != 0
    summary = run.stdout[run.stdout.index("short test summary info"):]
    failed = [line for line in summary.splitlines()
              if line.startswith(("FAILED", "ERROR")) and said in line]
    assert len(failed) == 1, summary
    skipped = [line for line in summary.splitlines() if said in line and "SKIPPED" in line]
    assert len(skipped) == 1 and re.match(r"SKIPPED \[\d\d+\] ", skipped[0]), summary
    return failed[0]


def test_a_gradients_py_that_fails_on_import_or_is_stale_is_said_once(tiny):
    """A block the kernel ran but gradients.py leaves out (:tangle no) that
    a tangled one needs: the first check of gradients.py fails in one line
    naming the error and the block, not with its traceback and the
    module's source; the others are skipped, in one line.  Found by a
    session: they failed in as many lines saying the same, and did when
    gradients.py was out of date."""
    text = (HEADER + block("helper = 41", "helper", ":tangle no")
            + block("answer = helper + 1\nprint(answer)", "uses-helper"))
    write_readme(tiny, text)
    assert make("tangle", cwd=tiny).returncode == 0
    wide = dict(os.environ, COLUMNS="1000")
    run = make("test", cwd=tiny, env=wide)
    failed = said_once(run, "gradients.py raised NameError: name 'helper' is not defined as it "
                            "was imported, at its line ")
    block_line = text.split("\n").index("#+name: uses-helper") + 2
    assert f"from README.org:{block_line}: block uses-helper" in failed
    # A traceback of the import, which quotes the module's source.
    assert "in <module>" not in run.stdout, run.stdout[-3000:]
    write_readme(tiny, text.replace("helper + 1", "41 + 1"))
    said_once(make("test", cwd=tiny, env=wide),
              "gradients.py is not what README.org builds now: run `make tangle`")


def plant(folder, path, old, new):
    text = (folder / path).read_text()
    assert old in text, f"{old!r} is not in {path}"
    (folder / path).write_text(text.replace(old, new, 1))


# Each fault `make test` must catch, and the line that must name it: its
# own block or file, and what to do, so that faults planted together still
# show one by one, and none fails in an error of its own (49 ImportErrors,
# a FileNotFoundError, a SyntaxError traceback).
FAULTS = {
    "a digit of a recorded result": (
        lambda f: plant(f, "README.org", ":results:\n: 20.0\n", ":results:\n: 21.0\n"),
        r"block f-of-3: the recorded result .* is not what the block produces"),
    # One that leaves it unimportable, too.
    "a hand edit to gradients.py": (
        lambda f: plant(f, "gradients.py", "def f(x):", "def f(x)"),
        r"gradients\.py is not what README\.org builds now: run `make tangle`"),
    "a missing picture": (
        lambda f: (f / "images" / "plot.png").unlink(),
        r"images/plot\.png is missing: run `make tangle`"),
    "gradients.py missing": (
        lambda f: (f / "gradients.py").unlink(),
        r"gradients\.py is missing: run `make tangle`"),
    "images/ gone": (
        lambda f: shutil.rmtree(f / "images"),
        r"images/plot\.png is missing: run `make tangle`"),
    # Its bytes right, make tangle would do nothing.
    "gradients.py not executable": (
        lambda f: (f / "gradients.py").chmod(0o644),
        r"gradients\.py is not executable, as README\.org builds it: run `chmod \+x"),
    # A picture of an older version of the notes, and a link to nowhere.
    "pictures no block draws": (
        lambda f: ((f / "images" / "old.svg").write_text("<svg/>"),
                   (f / "images" / "gone.png").symlink_to("nowhere.png")),
        r"images/gone\.png, images/old\.svg: no block of README\.org draws them; remove them"),
    "a constant in a block": (
        lambda f: plant(f, "README.org", "h = 0.0001", "h = 0.001"),
        r"block f-of-x-plus-h: the recorded result .* is not what the block produces"),
    "a wrong hand-filled gradient": (
        lambda f: plant(f, "README.org", "a.grad = 6.0", "a.grad = 6.5"),
        r"block check-L: the recorded result .* is not what the block produces"),
}
# The forms a failing check's line takes, whichever block or file a fault
# reaches besides its own (a constant changes the blocks after it).
CLEAR = re.compile(r"block [\w-]+: the recorded result .* is not what the block produces"
                   r"|[\w/.]+ (is missing|is not what README\.org builds now): run `make tangle`"
                   r"|[\w/.]+ is not executable, as README\.org builds it: run `chmod \+x"
                   r"|: no block of README\.org draws (them; remove them|it; remove it)")

# Faults planted together, one `make test` for each group: those that
# leave the code as it was (the kept kernel run serves), and those that
# change it (the blocks run again; gradients.py then differs too).  One
# file is either gone, or not as built, or only not executable (said only
# of the right bytes); pictures no block draws need the folder.
PLANTED_TOGETHER = {
    "code unchanged": ["a digit of a recorded result", "a hand edit to gradients.py",
                       "a missing picture"],
    "outputs gone": ["gradients.py missing", "images/ gone"],
    "modes and strays": ["gradients.py not executable", "pictures no block draws"],
    "code changed": ["a constant in a block", "a wrong hand-filled gradient"],
}


def test_every_planted_fault_is_in_a_group():
    assert sorted(sum(PLANTED_TOGETHER.values(), [])) == sorted(FAULTS)


@pytest.mark.long
@pytest.mark.parametrize("group", PLANTED_TOGETHER)
def test_make_test_catches_each_planted_fault_and_touches_nothing(project_copy, group):
    # The checkout's own kernel run, made by the `make test` before this
    # suite, holds for the copy's code: only a planted change runs blocks.
    # Once the checkout is tangled too, its stamps, copied with their
    # times, leave make nothing to do in the copy before the faults.
    with_the_checkouts_build(project_copy)
    assert make("tangle", cwd=project_copy).returncode == 0
    for fault in PLANTED_TOGETHER[group]:
        FAULTS[fault][0](project_copy)
    before = snapshot(project_copy)
    # Wide enough that pytest's summary keeps each line whole.
    run = make("test", cwd=project_copy, env=dict(os.environ, COLUMNS="1000"))
    assert run.returncode != 0, run.stdout[-3000:]
    missed = [fault for fault in PLANTED_TOGETHER[group]
              if not re.search(FAULTS[fault][1], run.stdout)]
    assert not missed, f"make test did not name {missed}:\n{run.stdout[-3000:]}"
    summary = [line for line in run.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    unclear = [line for line in summary if not CLEAR.search(line)]
    assert not unclear, "\n".join(unclear)
    for error in ("ModuleNotFoundError", "FileNotFoundError", "SyntaxError"):
        assert error not in run.stdout, run.stdout[-3000:]
    assert snapshot(project_copy) == before, "make test changed a committed file"


def lisp_the_build_loads():
    """The files of tools/ Emacs has loaded once build.el is loaded, by name."""
    run = emacs("--eval", '(load (expand-file-name "tools/build.el") nil t)', "--eval",
                """(dolist (entry load-history)
                     (when (and (stringp (car entry))
                                (equal (file-name-directory (car entry)) gradients-build-directory))
                       (princ (format "%s\\n" (file-name-nondirectory (car entry))))))""")
    return sorted(run.stdout.split())


def test_a_change_to_any_lisp_the_build_loads_builds_again(tiny):
    """Not only to the files a list names: gradients-editing.el, which
    ob-gradients.el loads, was left out of it once."""
    loaded = lisp_the_build_loads()
    assert {"build.el", "ob-gradients.el", "gradients-editing.el"} <= set(loaded), loaded
    write_readme(tiny, "* Notes\n\nProse only: no kernel.\n")
    target = ".build/produced/blocks.json"
    assert make(target, cwd=tiny).returncode == 0
    assert make("-q", target, cwd=tiny).returncode == 0
    missed = []
    for name in loaded:
        tool = tiny / "tools" / name
        original = tool.read_bytes()
        tool.write_bytes(original + b"\n;; edited\n")
        if make("-q", target, cwd=tiny).returncode == 0:
            missed.append(name)
        tool.write_bytes(original)
        os.utime(tool, (0, 0))
    assert missed == [], f"make would not build again after a change to {missed}"


def same_size_and_time(file, data):
    """Rewrite FILE with DATA, of its size, and give it back its time."""
    before = file.stat()
    assert len(data) == before.st_size and data != file.read_bytes()
    file.write_bytes(data)
    os.utime(file, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_emacs_or_its_lisp_replaced_in_place_builds_again(tiny, tmp_path_factory):
    """The same `emacs` and EMACSLOADPATH, but other files behind them: a
    library added where Emacs looks first (a newer Org), that library
    rewritten with its size and time kept (cp -p of another copy, a `git
    pull` within the second), then gone."""
    lisp = tmp_path_factory.mktemp("lisp")
    env = dict(os.environ, EMACSLOADPATH=f"{lisp}:")
    write_readme(tiny, "* Notes\n\nProse only: no kernel.\n")
    target = ".build/produced/blocks.json"

    def listed():
        assert make(target, cwd=tiny, env=env).returncode == 0
        assert make("-q", target, cwd=tiny, env=env).returncode == 0
        return (tiny / ".build/produced/emacs-files").read_text().splitlines()

    files = listed()
    program = os.path.realpath(shutil.which("emacs" if EMACS == "t" else EMACS))
    assert program in map(os.path.realpath, files), files[:3]
    # Org's elements cache, loaded by every Org the build supports.
    library = next(file for file in files if file.endswith("/avl-tree.elc"))
    copy = lisp / "avl-tree.elc"
    missed = []
    for change, replace in [
            ("added", lambda: copy.write_bytes(Path(library).read_bytes() + b"\n;; pulled\n")),
            ("rewritten", lambda: same_size_and_time(
                copy, copy.read_bytes().replace(b";; pulled", b";; pushed"))),
            ("gone", copy.unlink)]:
        replace()
        if make("-q", target, cwd=tiny, env=env).returncode == 0:
            missed.append(change)
        if change != "gone":
            assert str(copy) in listed(), change
    assert missed == [], f"make would not build again after Emacs's Lisp was {missed}"


DAMAGE = {
    "cut short": lambda text: text[:100],
    "a field gone": lambda text: text.replace('"sha256"', '"sha-256"', 1),
    "a block's field gone": lambda text: text.replace('"printed"', '"print"', 1),
}


def damaged_copy(folder, damage):
    """FOLDER with the checkout's README.org and kept run, its blocks.json
    damaged by DAMAGE."""
    shutil.copy2(ROOT / "README.org", folder / "README.org")
    shutil.copytree(ROOT / ".build" / "produced", folder / ".build" / "produced")
    kept = folder / ".build" / "produced" / "blocks.json"
    kept.write_text(DAMAGE[damage](kept.read_text()))
    return folder


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_blocks_json_is_said_in_one_line(tmp_path, damage):
    """make goes by its time, and takes it as up to date: what reads it
    must say what to do rather than fail on it."""
    with pytest.raises(produced.Stale) as said:
        produced.load(damaged_copy(tmp_path, damage))
    assert str(said.value).startswith(".build/produced/blocks.json is damaged (")
    assert str(said.value).endswith("remove .build/produced and run `make test`")


def test_make_test_says_so_of_a_damaged_blocks_json_before_any_check(project_copy):
    """And `make test` stops on that line, not inside pytest."""
    shutil.copytree(ROOT / ".build" / "produced", project_copy / ".build" / "produced")
    kept = project_copy / ".build" / "produced" / "blocks.json"
    assert make(str(kept.relative_to(project_copy)), cwd=project_copy).returncode == 0
    kept.write_text(DAMAGE["cut short"](kept.read_text()))
    run = make("test", cwd=project_copy)
    assert run.returncode != 0
    assert "INTERNALERROR" not in run.stdout + run.stderr, run.stdout[-3000:]
    assert ".build/produced/blocks.json is damaged (" in run.stdout, run.stdout[-3000:]
    assert "remove .build/produced and run `make test`" in run.stdout


def test_make_tangle_says_which_recorded_results_its_blocks_no_longer_produce(tiny):
    """Found by probing: the author learnt it from `make test' alone, a
    step after; `make tangle' had the blocks' new results in hand.  Not
    of a block whose result Org records nowhere (:results silent, none),
    which `make test' does not compare either."""
    write_readme(tiny, NOTES + block("print('unrecorded')", "quiet", ":results silent")
                 + block("print('unrecorded')", "mute", ":results none"))
    assert make("run", cwd=tiny).returncode == 0
    text = (tiny / "README.org").read_text()
    write_readme(tiny, text.replace("6 * 7", "6 * 8"))
    tangled = make("tangle", cwd=tiny)
    assert tangled.returncode == 0
    said = (f"1 recorded result is not what its block produces now (README.org:"
            f"{line_of(text, 'answer')}: block `answer'): `make run' records it")
    assert said in tangled.stdout + tangled.stderr, tangled.stderr
    assert make("run", cwd=tiny).returncode == 0
    (tiny / "README.org").write_text((tiny / "README.org").read_text() + "\nProse.\n")
    tangled = make("tangle", cwd=tiny)
    assert "recorded result" not in tangled.stdout + tangled.stderr, tangled.stderr


def test_make_tangle_builds_an_older_edit_that_make_test_built_first(tiny):
    """Found by probing: the build behind `make test` rewrote the digests
    `make tangle` went by too; an edit put back with an older time (cp -p,
    rsync -a, tar), built for `make test` first, left `make tangle` with
    nothing to do and `make test` asking for it for ever."""
    write_readme(tiny, NOTES)
    assert make("tangle", cwd=tiny).returncode == 0
    write_readme(tiny, NOTES.replace("6 * 7", "6 * 8"))
    os.utime(tiny / "README.org", (0, 0))
    checked = make("test", cwd=tiny)
    assert checked.returncode != 0
    assert "gradients.py is not what README.org builds now: run `make tangle`" in \
        checked.stdout + checked.stderr
    assert make("-q", "tangle", cwd=tiny).returncode != 0, "make tangle found nothing to do"
    assert make("tangle", cwd=tiny).returncode == 0
    assert "6 * 8" in (tiny / "gradients.py").read_text()


def test_a_picture_kept_while_the_notes_link_it_goes_once_they_do_not(tiny):
    """Found by probing: `make tangle` kept a picture whose :file was
    renamed, the notes still linking it, and dropped it from what it had
    installed; `make run` then wrote the new link, and nothing removed the
    old picture, which `make test` asked to have removed for ever."""
    write_readme(tiny, NOTES)
    assert make("run", cwd=tiny).returncode == 0
    assert "[[file:images/drawn.svg]]" in (tiny / "README.org").read_text()
    renamed = (tiny / "README.org").read_text().replace(":file images/drawn.svg",
                                                        ":file images/renamed.svg")
    write_readme(tiny, renamed)
    tangled = make("tangle", cwd=tiny)
    assert "kept images/drawn.svg: no block makes it now, but the notes link it" in \
        tangled.stdout + tangled.stderr
    ran = make("run", cwd=tiny)
    assert "removed images/drawn.svg: no block makes it now" in ran.stdout + ran.stderr
    assert not (tiny / "images" / "drawn.svg").exists()
    assert (tiny / "images" / "renamed.svg").exists()
    assert make("-q", "tangle", cwd=tiny).returncode == 0


def test_a_changed_input_builds_again_even_put_back_with_an_older_time(tiny):
    """What the notes read (a #+SETUPFILE, .dir-locals.el), as much as the
    notes and the build's tools: once changed, both `make tangle' and the
    build behind `make test' are to be made again.  cp -p, rsync -a and tar
    keep a file's time: make, going by times, would take the kept run for
    one put back so as up to date; their digests tell."""
    (tiny / "setup.org").write_text("#+PROPERTY: header-args :eval no\n")
    write_readme(tiny, "#+SETUPFILE: setup.org\n\n* Notes\n\nProse only: no kernel.\n")
    targets = [".build/produced/blocks.json", "tangle"]
    for target in targets:
        assert make(target, cwd=tiny).returncode == 0

    def up_to_date():
        return [target for target in targets if make("-q", target, cwd=tiny).returncode == 0]

    assert up_to_date() == targets
    with open(tiny / "setup.org", "a") as setup:
        setup.write("# edited, now\n")
    assert up_to_date() == [], "make missed a newer #+SETUPFILE"
    for target in targets:
        assert make(target, cwd=tiny).returncode == 0
    missed = []
    for name in ("README.org", "setup.org", ".dir-locals.el", "tools/build.el",
                 "tools/kernel_bridge.py"):
        path = tiny / name
        original = path.read_bytes()
        path.write_bytes(original + b"\n# edited\n")
        os.utime(path, (0, 0))
        if up_to_date():
            missed.append((name, up_to_date()))
        path.write_bytes(original)
        os.utime(path, (0, 0))
        assert up_to_date() == targets, f"{name} as it was is not up to date"
    assert missed == [], f"make missed an older {missed}"
