"""`make tangle` and `make run` off the happy path once blocks run:
runaway and misbehaving blocks, an edit made meanwhile, folders the build
cannot write, Ctrl-C.  Each case ends in one clear line naming README.org
and the line, with nothing changed, nothing written elsewhere and nothing
left running.  (Input refused before any block runs: test_bad_input.py.)"""

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import textwrap
import time

import pytest

import kernel_supervisor
from conftest import (EMACS, ROOT, a_users_make_environment, alive, command_line,
                      ctrl_c_as_in_a_terminal, emacs, gone, make, start_make, wait_for)
from tiny_notes import (CHILD, HEADER, assert_failed_cleanly, assert_no_kernel_left, block,
                        bridge_and_supervisor, build, line_of, snapshot, write_readme)


def build_with_tmpdir(folder, target="tangle", settings=()):
    """A build whose temporary files go to a folder of the test's own,
    to look in afterwards; started as a terminal starts it, in a process
    group of its own, with the Lisp SETTINGS evaluated first.  Returns the
    process and that folder."""
    temporary = folder / "tmp"
    temporary.mkdir(exist_ok=True)
    evaluated = [argument for setting in settings for argument in ("--eval", setting)]
    process = subprocess.Popen(
        [EMACS, "-Q", "--batch", *evaluated, "-l", "tools/build.el", "-f", f"gradients-build-{target}",
         "README.org"], cwd=folder, env=dict(os.environ, TMPDIR=str(temporary)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=ctrl_c_as_in_a_terminal)
    return process, temporary


# How long a loaded machine may take to end a process or start a build:
# a bound for what hangs, never a measure of speed.
PATIENCE = 60


def finish(process):
    """The build's error output once it has ended, within PATIENCE seconds;
    a build that does not end is stopped, with all it started."""
    try:
        return process.communicate(timeout=PATIENCE)[1]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def assert_no_leftovers(folder, temporary):
    """No folder in /tmp, no scratch folder, no kernel, no process a block
    started."""
    child = int((folder / "child.pid").read_text())
    assert gone(child, PATIENCE), "a process started by a block outlived the build"
    assert list(temporary.iterdir()) == []
    assert not list((folder / ".build").glob("run-*"))


def running_from(folder):
    """The processes whose command line names FOLDER: bridges, kernels."""
    found = subprocess.run(["pgrep", "-a", "-f", str(folder)], capture_output=True, text=True)
    return found.stdout.splitlines()


@pytest.fixture(autouse=True)
def nothing_left_running(tiny):
    """After every build of this file, however it ended: no bridge or kernel
    of its project copy outlives it.  The bridge stops its kernel just after
    Emacs exits, in a moment; any left are ended, not to pile up."""
    yield
    try:
        assert wait_for(lambda: not running_from(tiny), PATIENCE), \
            f"a bridge or kernel outlived the build: {running_from(tiny)}"
    finally:
        for line in running_from(tiny):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(line.split()[0]), signal.SIGKILL)


def test_a_runaway_block_times_out_naming_itself_and_leaves_nothing(tiny):
    text = HEADER + block(CHILD, "child", ":tangle no") + \
        block("while True:\n    pass", "runaway", ":timeout 0.5") + block("x = 1", "after")
    before = write_readme(tiny, text)
    process, temporary = build_with_tmpdir(tiny)
    stderr = finish(process)
    run = subprocess.CompletedProcess(process.args, process.returncode, "", stderr)
    assert_failed_cleanly(run, tiny, {**before, "child.pid": (tiny / "child.pid").read_bytes()},
                          f"README.org:{line_of(text, 'runaway')}: block `runaway' "
                          "ran past its time limit of 0.5 s")
    assert "running README.org" in stderr and "`after'" not in stderr
    assert_no_leftovers(tiny, temporary)


def test_a_block_that_calls_exit_is_blamed_not_a_later_one(tiny):
    text = HEADER + block("exit()", "exits") + block("x = 1", "after") + block("x", "later")
    before = write_readme(tiny, text)
    run = build(tiny)
    assert_failed_cleanly(run, tiny, before, f"README.org:{line_of(text, 'exits')}: block "
                          "`exits' stopped the kernel: it called exit() or quit()")


def test_a_build_whose_kernel_died_returns_with_the_lock_free(tiny):
    """The bridge of a kernel that died holds the checkout's lock until it
    has cleaned up and exited: make returned before, and the next build
    found the checkout locked."""
    write_readme(tiny, HEADER + block("x = 1", "before") + block("import os\nos._exit(3)", "dies"))
    held = 0
    for _ in range(3):
        assert make("tangle", cwd=tiny).returncode != 0
        held += subprocess.run(["flock", "--nonblock", str(tiny), "true"]).returncode != 0
    assert held == 0, f"the lock was still held after {held} of 3 builds"


def test_readme_edited_during_make_run_is_kept(tiny):
    text = HEADER + block("open('README.org', 'a').write('\\nAn edit made meanwhile.\\n')\n1 + 1",
                          "edits")
    before = write_readme(tiny, text)
    run = build(tiny, "run")
    assert run.returncode != 0
    assert "README.org changed on disk while the blocks ran" in run.stderr
    assert (tiny / "README.org").read_text() == text + "\nAn edit made meanwhile.\n"
    before["README.org"] = (tiny / "README.org").read_bytes()
    assert snapshot(tiny) == before


@pytest.mark.parametrize("target", ["tangle", "run"])
def test_readme_touched_during_a_build_is_no_edit(tiny, target):
    """Found by probing: `touch README.org`, or an editor saving the same
    bytes, while the blocks ran made Emacs ask, as Org visited the notes
    again to tangle them, whether to read the file again; the question
    failed the build.  Here a block touches the notes itself."""
    text = HEADER + block("import os\nos.utime('README.org', (1, 1))\n6 * 7", "touches")
    write_readme(tiny, text)
    run = build(tiny, target)
    assert run.returncode == 0, run.stderr
    assert "Reread" not in run.stderr and "changed on disk" not in run.stderr, run.stderr
    assert "6 * 7" in (tiny / "gradients.py").read_text()


def test_readme_edited_during_make_tangle_is_built_by_the_next_one(tiny):
    """The list of outputs is make's stamp: written after the edit, it
    would tell make that the edit was built."""
    text = HEADER + block("open('README.org', 'a').write('\\nAn edit made meanwhile.\\n')",
                          "edits")
    before = write_readme(tiny, text)
    run = build(tiny)
    assert run.returncode != 0
    assert "README.org changed on disk while the blocks ran" in run.stderr
    assert "run `make tangle' again" in run.stderr.replace("\u2018", "`").replace("\u2019", "'")
    assert not (tiny / ".build" / "outputs").exists()
    before["README.org"] = (tiny / "README.org").read_bytes()
    assert snapshot(tiny) == before


def test_two_builds_asked_for_at_once_run_the_blocks_once(tiny):
    """`make -j tangle test` (or MAKEFLAGS=-j) asks for two builds of the
    same notes at once: one runs the blocks, the other waits for it and
    reuses its run."""
    write_readme(tiny, HEADER + block("import time\ntime.sleep(1)\nprint(6 * 7)", "slow"))
    run = make("-j2", "tangle", ".build/produced/blocks.json", cwd=tiny, timeout=PATIENCE * 2)
    assert run.returncode == 0, run.stderr
    assert run.stderr.count("running README.org:8: block `slow'") == 1, run.stderr
    assert "results are reused" in run.stderr, run.stderr


# Code of a block that creates `ran', then waits until its test creates
# `go' (within two minutes): what the test does meanwhile is sure to
# happen while the block runs, however loaded the machine is.  A block
# that slept a few seconds instead ended first under `stress --cpu 2'.
WAITS_FOR_GO = """import os, time
open('ran', 'w').close()
deadline = time.monotonic() + 120
while not os.path.exists('go') and time.monotonic() < deadline:
    time.sleep(0.05)
"""

# A block that notes in runs.log when it starts and ends, and waits for
# its test in between.
LOGGED_RUN = ("import os, time\nopen('runs.log', 'a').write('start\\n')\n" + WAITS_FOR_GO
              + "open('runs.log', 'a').write('end\\n')\nprint(6 * 7)")


# What a build or `make clean` says while another build holds the lock.
WAITING = "waiting for the other build of "


def run_while_a_block_waits(folder, command, env=None):
    """COMMAND run in FOLDER while a block of a build there waits for `go',
    which is created once COMMAND says it waits for that build (or, that
    failing, after PATIENCE seconds): a CompletedProcess, its output as
    text."""
    with tempfile.TemporaryFile() as errors:
        # Read with pread: the offset the command writes at is left alone.
        def said():
            return os.pread(errors.fileno(), 1 << 20, 0).decode("utf-8", "replace")
        process = subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.PIPE,
                                   stderr=errors, text=True)
        try:
            wait_for(lambda: WAITING in said() or process.poll() is not None, PATIENCE)
        finally:
            (folder / "go").touch()
        try:
            output, _ = process.communicate(timeout=PATIENCE * 2)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        return subprocess.CompletedProcess(command, process.returncode, output, said())


@pytest.mark.long
@pytest.mark.parametrize("removal", ["make clean", "rm -rf .build"])
def test_a_build_whose_scratch_files_are_removed_still_runs_alone(tiny, removal):
    """Scratch files may be cleared (make clean, git clean -fdX) while a
    build runs in another terminal: make clean waits for the build rather
    than take its venv and scratch folder from under it, and a build
    started meanwhile still waits for the first one."""
    write_readme(tiny, HEADER + block(LOGGED_RUN, "slow"))
    first = start_make("tangle", cwd=tiny)
    try:
        assert wait_for(lambda: (tiny / "runs.log").exists(), PATIENCE)
        if removal == "make clean":
            cleared = run_while_a_block_waits(tiny, ["make", "clean"], a_users_make_environment())
            assert cleared.returncode == 0, cleared.stderr
            assert WAITING in cleared.stderr, cleared.stderr
            # The block writes "end" once make clean waits: had make clean
            # not waited, it would have returned before.  (make tangle
            # itself may still be exiting once its Emacs has freed the lock.)
            ran = (tiny / "runs.log").read_text()
            assert ran == "start\nend\n", f"make clean returned while the build ran: {ran!r}"
            (tiny / ".venv").symlink_to(ROOT / ".venv")
            second = make(".build/produced/blocks.json", cwd=tiny, timeout=PATIENCE * 2)
        else:
            subprocess.run(["rm", "-rf", ".build"], cwd=tiny, check=True)
            second = run_while_a_block_waits(tiny, ["make", ".build/produced/blocks.json"],
                                             a_users_make_environment())
        _, first_stderr = first.communicate(timeout=PATIENCE)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGTERM)
            first.wait()
    assert second.returncode == 0, second.stderr
    # After make clean, which waited, the first build has ended already.
    assert (WAITING in second.stderr) == (removal == "rm -rf .build"), second.stderr
    assert "start\nstart" not in (tiny / "runs.log").read_text(), (first_stderr, second.stderr)
    if removal == "make clean":
        assert first.returncode == 0, first_stderr


def test_make_run_refuses_a_readme_it_would_replace_against_its_owners_wish(tiny):
    """The install renames a new file over README.org.  A read-only one is
    refused the same way (tests/ert/refusal-tests.el checks both)."""
    text = HEADER + block("print(1)", "one")
    write_readme(tiny, text)
    readme = tiny / "README.org"
    readme.rename(tiny / "notes.org")
    readme.symlink_to("notes.org")
    before = snapshot(tiny)
    run = build(tiny, "run")
    assert_failed_cleanly(run, tiny, before, "README.org is a symbolic link")
    assert readme.is_symlink()


def test_make_run_keeps_the_permissions_of_readme(tiny):
    write_readme(tiny, HEADER + block("print(1)", "one"))
    (tiny / "README.org").chmod(0o664)
    assert build(tiny, "run").returncode == 0
    assert "1" in (tiny / "README.org").read_text().split("#+RESULTS: one")[1]
    assert (tiny / "README.org").stat().st_mode & 0o777 == 0o664


def test_every_kernel_runs_in_the_folder_of_the_notes(tiny, tmp_path_factory):
    """Whatever folder Emacs starts in, and for a session started after the
    build moved into its scratch folder, whose files would be taken for
    outputs."""
    code = "import os\nprint(os.getcwd())\nopen('{}.txt', 'w').close()"
    write_readme(tiny, HEADER + block(code.format("first"), "first")
                 + block(code.format("other"), "other", ":session other :tangle no"))
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    run = emacs("-l", str(tiny / "tools" / "build.el"), "-f", "gradients-build-run",
                str(tiny / "README.org"), cwd=elsewhere, check=False)
    assert run.returncode == 0, run.stderr
    text = (tiny / "README.org").read_text()
    # The notes' folder, as a drawer names it wherever the clone lies.
    assert text.count(": <notes>\n") == 2 and str(elsewhere) not in text, text
    assert ".build" not in text
    assert (tiny / "first.txt").exists() and (tiny / "other.txt").exists()
    assert list(elsewhere.iterdir()) == []
    assert "wrote other.txt" not in run.stderr


def test_a_file_where_an_output_needs_a_folder_stops_the_build_before_any_block(tiny):
    """Found by the checks of every output path, for :file and :tangle
    alike, not at the install once every block has run (the install
    still checks, for a file put there meanwhile: build-tests.el)."""
    picture = "from graphviz import Digraph\nd = Digraph()\nd.node('x')\nd"
    text = (HEADER + block(picture, "a", ":file a/x.svg") + block(picture, "b", ":file b/x.svg")
            + block("x = 1", "c", ":tangle c/deeper/x.py"))
    write_readme(tiny, text)
    (tiny / "b").write_text("a file where the build wants a folder")
    (tiny / "c").write_text("another")
    before = snapshot(tiny)
    run = build(tiny)
    assert_failed_cleanly(run, tiny, before, f"README.org:{line_of(text, 'b')}: block `b': "
                          ":file b/x.svg goes in b, which is a file, not a folder")
    assert (f"README.org:{line_of(text, 'c')}: block `c': :tangle c/deeper/x.py goes in c, "
            "which is a file, not a folder") in run.stderr
    assert "running" not in run.stderr
    assert not (tiny / "a").exists()



def test_a_checkout_where_the_build_cannot_keep_its_scratch_files_is_named(tiny):
    """As in a read-only checkout, or with .build a link to a folder no one
    may write: Emacs's own error on the file, said as README.org's, with
    .build/ as the user knows it, and the kernel started early stopped."""
    before = write_readme(tiny, HEADER + block("x = 1", "one"))
    shutil.rmtree(tiny / ".build")
    # Even root cannot make a folder under /proc.
    (tiny / ".build").symlink_to("/proc/sys")
    run = build(tiny)
    assert_failed_cleanly(run, tiny, before, "README.org: the build cannot keep its scratch "
                          "files in .build/ (a read-only checkout, or another user's?): Creating "
                          "directory with prefix: No such file or directory, .build/run-")
    assert_no_kernel_left(tiny)

@pytest.mark.parametrize("emacs_given", [False, True])
def test_make_in_a_checkout_where_it_cannot_keep_its_notes_leaves_the_telling_to_the_build(
        tiny, emacs_given):
    """make keeps a note of which Emacs built last in .build/, written by
    make itself.  Where .build/ cannot be written, the build still says
    why, as README.org's, not make of its note ("open: .build/emacs-id")."""
    before = write_readme(tiny, HEADER + block("x = 1", "one"))
    shutil.rmtree(tiny / ".build")
    (tiny / ".build").symlink_to("/proc/sys")
    given = [f"EMACS={shutil.which(EMACS)}"] if emacs_given else []
    run = make(".build/produced/blocks.json", *given, cwd=tiny)
    assert "emacs-id" not in run.stderr, run.stderr
    assert_failed_cleanly(run, tiny, before, "README.org: the build cannot keep its scratch "
                          "files in .build/")
    assert_no_kernel_left(tiny)


# Only the moves into the project count: inside .build/ the build keeps
# what it produced, for `make test`.
FAIL_THE_SECOND_MOVE = """;;; -*- lexical-binding: t -*-
(advice-add 'rename-file :before
            (let ((moves 0))
              (lambda (_from to &rest _)
                (unless (string-match-p "/\\.build/" to)
                  (when (= (setq moves (1+ moves)) 2)
                    (signal 'file-error '("Renaming" "No space left on device")))))))
"""


def test_a_move_that_fails_anyway_is_reported_as_it_is(tiny):
    """Not "Nothing was changed." after a first move, nor a backtrace, nor
    a scratch folder left behind."""
    write_readme(tiny, HEADER + block("print('new')", "one", ":tangle gradients.py")
                 .replace("jupyter-python", "python")
                 + block("print('new')", "two", ":tangle images/two.py")
                 .replace("jupyter-python", "python"))
    (tiny / "fail.el").write_text(FAIL_THE_SECOND_MOVE)
    run = emacs("-l", "fail.el", "-l", "tools/build.el", "-f", "gradients-build-tangle",
                "README.org", cwd=tiny, check=False)
    assert run.returncode == 1, run.stderr
    assert "No space left on device" in run.stderr
    assert "Only some outputs were changed: " in run.stderr
    assert "Nothing was changed." not in run.stderr
    assert "Debugger entered" not in run.stderr and "kill-emacs-hook" not in run.stderr
    assert not list((tiny / ".build").glob("run-*"))


def test_no_venv_is_said_in_one_line(tiny):
    before = write_readme(tiny, HEADER + block("x = 1", "one"))
    run = emacs("--eval", '(setq gradients-python "/nonexistent/python")',
                "-l", "tools/build.el", "-f", "gradients-build-tangle", "README.org",
                cwd=tiny, check=False)
    assert run.returncode == 1
    lines = run.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("No /nonexistent/python: run "), run.stderr
    assert lines[1] == "Nothing was changed."
    assert snapshot(tiny) == before


def test_ctrl_c_while_a_block_runs_changes_nothing_and_leaves_nothing(tiny):
    """A failed build is the runaway block's test, a successful one the
    indented block's."""
    text = HEADER + block(CHILD, "child", ":tangle no") + block(
        "open('sleeping', 'w').close()\nimport time\ntime.sleep(300)", "sleeps")
    before = write_readme(tiny, text)
    # An Emacs that waited for its bridges to stop their kernels would
    # wait out their patience, as an Emacs exiting on a signal may not see
    # them end: ten times what the build is given to stop, so that such a
    # wait shows however busy the machine.
    process, temporary = build_with_tmpdir(
        tiny, settings=[f"(setq gradients-stop-patience {10 * PATIENCE})"])
    try:
        assert wait_for((tiny / "sleeping").exists, PATIENCE), "the block did not start"
        os.killpg(process.pid, signal.SIGINT)   # as Ctrl-C in a terminal does
        pressed = time.monotonic()
    finally:
        stderr = finish(process)
    assert process.returncode != 0, stderr
    assert stderr.endswith("README.org: the build was stopped (Ctrl-C or a signal) before it "
                           f"ended, as README.org:{line_of(text, 'sleeps')}: block `sleeps' "
                           "ran.\nNothing was changed.\n"), stderr
    assert time.monotonic() - pressed < PATIENCE, "the build waited for its kernels to stop"
    assert_no_leftovers(tiny, temporary)
    assert snapshot(tiny) == {**before, "child.pid": (tiny / "child.pid").read_bytes(),
                              "sleeping": b""}


def start_make_while_a_block_sleeps(folder):
    """make tangle of notes in FOLDER whose second block starts a process
    (child.pid) and sleeps; returned once that block runs."""
    write_readme(folder, HEADER + block("x = 1", "tangled")
                 + block(CHILD + "\nopen('sleeping', 'w').close()\nimport time\ntime.sleep(300)",
                         "sleeps", ":tangle no"))
    process = start_make("tangle", cwd=folder)
    if not wait_for((folder / "sleeping").exists, PATIENCE):
        finish(process)
        pytest.fail("the block did not start")
    return process


def signal_pending(pid, signum):
    """Whether process PID has SIGNUM sent and not yet delivered."""
    with open(f"/proc/{pid}/status") as status:
        masks = [int(line.split()[1], 16) for line in status
                 if line.startswith(("SigPnd:", "ShdPnd:"))]
    return any(mask & (1 << (signum - 1)) for mask in masks)


# Holds a build at its end, once all its work is done, as it waits for
# its kernel to stop: the moment the test needs, as long as it needs it.
HELD_AS_THE_KERNEL_STOPS = """(advice-add 'gradients-stop-sessions :before
  (lambda (&optional no-wait)
    (unless no-wait
      (write-region "" nil "stopping")
      (sleep-for 300))))"""


@pytest.mark.parametrize("target", ["tangle", "produce"])
def test_ctrl_c_while_the_kernel_stops_after_the_build_says_what_it_did(tiny, target):
    """The build has done all its work (installed its outputs and written
    make's stamp, or kept its run for make test), and waits for its kernel
    to end: stopped then, it said nothing, and make only that its recipe
    was interrupted; make test's build said its outputs were in place."""
    write_readme(tiny, HEADER + block("print(6 * 7)", "tangled"))
    before = (tiny / "gradients.py").read_bytes()
    process, _ = build_with_tmpdir(tiny, target, settings=[HELD_AS_THE_KERNEL_STOPS])
    try:
        assert wait_for((tiny / "stopping").exists, PATIENCE), "the build did not end its work"
        os.killpg(process.pid, signal.SIGINT)   # as Ctrl-C in a terminal does
    finally:
        stderr = finish(process)
    assert process.returncode != 0, stderr
    done = {"tangle": "every output is in place",
            "produce": "what it made is whole in .build/produced/"}[target]
    assert stderr.endswith("README.org: the build was stopped (Ctrl-C or a signal) as its kernel "
                           f"stopped, after all its work: {done}.\n"), stderr
    assert (tiny / ".build" / "produced" / "blocks.json").exists()
    if target == "tangle":
        assert (tiny / "gradients.py").read_text().endswith("print(6 * 7)\n")
        assert (tiny / ".build" / "outputs").exists()
    else:
        assert (tiny / "gradients.py").read_bytes() == before
    assert_no_kernel_left(tiny)


# Removing the scratch folder fails, as where a network disk still holds
# a file in it.
CLEANUP_FAILS = """(advice-add 'gradients-build--cleanup :after
  (lambda (&rest _)
    (signal 'file-error (list "Removing directory" "Device or resource busy"
                              ".build/run-1"))))"""


def test_a_failure_cleaning_up_after_the_work_is_said_once(tiny):
    """Said as a refusal (\"Only some outputs were changed\"), then as a
    Ctrl-C no one pressed; the exit hook, failing again, added Emacs's raw
    \"Error in kill-emacs-hook\"."""
    write_readme(tiny, HEADER + block("print(6 * 7)", "tangled"))
    process, _ = build_with_tmpdir(tiny, settings=[CLEANUP_FAILS])
    stderr = finish(process)
    assert process.returncode == 1, stderr
    assert stderr.endswith("README.org: cleaning up after the build failed, after all its work "
                           "(every output is in place): Removing directory: Device or resource "
                           "busy, .build/run-1\n"), stderr
    assert stderr.count("cleaning up") == 1 and "kill-emacs-hook" not in stderr, stderr
    assert (tiny / "gradients.py").read_text().endswith("print(6 * 7)\n")


def test_a_supervisor_held_stopped_a_while_keeps_its_kernel(tiny):
    """Its wait for a signal, woken past its time (Python 3.11), returned
    what it never filled in, which it took for a signal to stop: the
    kernel was killed, and the block blamed."""
    write_readme(tiny, HEADER + block("x = 1", "tangled") + block(WAITS_FOR_GO, "waits", ":tangle no"))
    process = start_make("tangle", cwd=tiny)
    try:
        assert wait_for((tiny / "ran").exists, PATIENCE), "the block did not start"
        _, supervisor = bridge_and_supervisor(tiny)
        os.kill(supervisor, signal.SIGSTOP)
        time.sleep(2.5)   # past the end of its one-second wait
        os.kill(supervisor, signal.SIGCONT)
        (tiny / "go").touch()
    finally:
        stderr = finish(process)
    assert process.returncode == 0, stderr


def test_a_supervisor_held_stopped_still_stops_its_kernel_when_the_build_ends(tiny):
    """The bridge told it to stop, and Emacs, whose patience is shorter
    than the bridge's, killed the bridge: the stopped supervisor and its
    kernel stayed, holding the checkout's lock for good."""
    write_readme(tiny, HEADER + block("x = 1", "tangled") + block(WAITS_FOR_GO, "waits", ":tangle no"))
    process = start_make("tangle", cwd=tiny)
    supervisor = None
    try:
        assert wait_for((tiny / "ran").exists, PATIENCE), "the block did not start"
        _, supervisor = bridge_and_supervisor(tiny)
        os.kill(supervisor, signal.SIGSTOP)
        (tiny / "go").touch()
        stderr = finish(process)
        assert process.returncode == 0, stderr
        freed = subprocess.run(["flock", "-w", str(PATIENCE), ".", "true"], cwd=tiny)
        assert freed.returncode == 0, "the lock stayed held"
        assert_no_kernel_left(tiny)
    finally:
        if supervisor and alive(supervisor):
            os.kill(supervisor, signal.SIGCONT)


def test_a_bridge_held_stopped_is_waited_for_without_spinning_and_ctrl_c_ends_it(tiny):
    """A bridge stopped (SIGSTOP, a shell's Ctrl-Z on it) is a process Emacs
    returned from waiting on at once: the build spun a processor's worth
    for as long, and Emacs, stopped by Ctrl-C then, aborted without a word
    and left the bridge, its kernel and the lock held."""
    process = start_make_while_a_block_sleeps(tiny)
    bridge = None
    try:
        bridge, _ = bridge_and_supervisor(tiny)
        emacs = kernel_supervisor.process_table()[bridge]
        os.kill(bridge, signal.SIGSTOP)
        used = processor_seconds(emacs)
        time.sleep(2)
        used = processor_seconds(emacs) - used
        os.killpg(process.pid, signal.SIGINT)   # as Ctrl-C in a terminal does
        stderr = finish(process)
    finally:
        if bridge:
            os.kill(bridge, signal.SIGCONT)
    # Waiting costs next to nothing; spinning took the whole of it, and at
    # least a quarter even on a machine busy elsewhere.
    assert used < 0.4, f"Emacs used {used:.2f} s of processor in 2 s of waiting"
    assert process.returncode != 0, stderr
    # Found by probing: it did not say which block it stopped in.
    assert re.search(r"README\.org: the build was stopped \(Ctrl-C or a signal\) before it "
                     r"ended, as README\.org:\d+: block `sleeps' ran\.", stderr), stderr
    subprocess.run(["flock", "-w", str(PATIENCE), ".", "true"], cwd=tiny, check=True)
    assert not alive(int((tiny / "child.pid").read_text()))
    assert_no_kernel_left(tiny)


def processor_seconds(pid):
    """The processor time process PID has used, in seconds."""
    fields = kernel_supervisor.process_status(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# Waits for its test (WAITS_FOR_GO) only on the second kernel, that of
# make run's own run: the build's run, first, leaves a file behind.
WAITS_THE_SECOND_TIME = ("import os\nif os.path.exists('ran-once'):\n"
                         + textwrap.indent(WAITS_FOR_GO, "    ")
                         + "open('ran-once', 'w').close()")


def refuses_make_run(tiny, text, meanwhile, said):
    """make run of the notes TEXT, with MEANWHILE (given the process) done
    once its own run sleeps, ends saying SAID, then "Nothing was
    changed.", and leaves README.org as it was."""
    before = write_readme(tiny, text)
    process, _ = build_with_tmpdir(tiny, "run")
    try:
        assert wait_for((tiny / "ran").exists, PATIENCE), "the block did not start"
        meanwhile(process)
    finally:
        stderr = finish(process)
    assert process.returncode != 0, stderr
    assert stderr.endswith(f"{said}\nNothing was changed.\n"), stderr
    assert (tiny / "README.org").read_bytes() == before["README.org"]


@pytest.mark.parametrize("target", ["tangle", "run"])
def test_a_reader_that_stops_reading_does_not_stop_the_build_half_way(tiny, target):
    """`make tangle 2>&1 | head -1`: the build's next message went to a
    pipe nobody read, and Emacs died of SIGPIPE where it stood, its
    scratch folder left and (between two moves) half of its outputs in
    place.  It runs to its end instead: what it said is lost, not what
    it did."""
    # The first block outlasts the reader, which leaves with make's first
    # line: every message of the build after it meets a broken pipe.
    write_readme(tiny, HEADER + block("import time\ntime.sleep(2)\n'first'", "first")
                 + block("'second'", "second"))
    subprocess.run(["sh", "-c", f"make {target} 2>&1 | head -1 >/dev/null"], cwd=tiny,
                   env=a_users_make_environment(), timeout=PATIENCE * 2)
    assert not list((tiny / ".build").glob("run-*"))
    assert_no_kernel_left(tiny)
    tangled = (tiny / "gradients.py").read_text()
    assert "time.sleep(2)" in tangled and "'second'" in tangled
    if target == "tangle":
        assert make("-q", "tangle", cwd=tiny).returncode == 0, "the build was not recorded"
    else:
        notes = (tiny / "README.org").read_text()
        assert ":results:\n: 'first'\n:end:" in notes and ":results:\n: 'second'\n:end:" in notes, notes


@pytest.mark.parametrize("target", ["tangle", "run", "test"])
def test_a_question_a_build_meets_is_not_waited_for_on_a_terminal(tiny, tmp_path_factory,
                                                                  target):
    """Emacs in batch reads any question from its standard input (Org 9.6
    asked which coding to save the raw bytes of a latin-1 setup file in):
    typed in a terminal, the build waited there for an answer no one knew
    was asked.  The question fails instead, and the build says so."""
    question = tmp_path_factory.mktemp("question") / "question.el"
    question.write_text('(with-eval-after-load (quote org) (read-string "Which coding? "))\n')
    before = snapshot(tiny)
    terminal, its_end = os.openpty()
    make_it = subprocess.Popen(["make", target, f"EMACS={EMACS} -l {question}"], cwd=tiny,
                               stdin=its_end, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=a_users_make_environment(), start_new_session=True)
    try:
        said = make_it.communicate(timeout=PATIENCE * 2)[0]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(make_it.pid, signal.SIGKILL)
        make_it.wait()
        os.close(terminal)
        os.close(its_end)
    assert make_it.returncode != 0
    assert "Error reading from stdin" in said, said
    assert snapshot(tiny) == before
    assert_no_kernel_left(tiny)


def test_ctrl_c_while_make_run_runs_its_blocks_is_said(tiny):
    """Its blocks run with their messages held back: the build's last
    words were lost with them."""
    text = HEADER + block(WAITS_THE_SECOND_TIME, "sleeps")
    refuses_make_run(tiny, text, lambda process: os.killpg(process.pid, signal.SIGINT),
                     "README.org: the build was stopped (Ctrl-C or a signal) before it ended, "
                     f"as README.org:{line_of(text, 'sleeps')}: block `sleeps' ran.")


def test_a_file_the_blocks_read_changed_while_make_run_ran_is_named(tiny):
    """make run wrote what its own run made of the old file, and the build
    kept a run of the new one: make test failed right after."""
    (tiny / "input.txt").write_text("one\n")
    refuses_make_run(tiny, HEADER + block("print(open('input.txt').read())", "reads")
                     + block(WAITS_THE_SECOND_TIME, "sleeps"),
                     lambda _: ((tiny / "input.txt").write_text("two\n"), (tiny / "go").touch()),
                     "README.org: input.txt, which the blocks read, changed while `make run' "
                     "ran; run it again")


@pytest.mark.parametrize("removed", [".build/produced", ".build"])
def test_the_builds_files_removed_while_make_run_ran_are_said_gone(tiny, removed):
    """Found by probing: .build/produced/ removed by hand as make run ran
    its blocks failed it with "Format specifier doesn't match argument
    type"."""
    def remove(_):
        shutil.rmtree(tiny / removed)
        (tiny / "go").touch()
    refuses_make_run(tiny, HEADER + block(WAITS_THE_SECOND_TIME, "sleeps"), remove,
                     "README.org: .build/produced/blocks.json, which the build made, went "
                     "while it ran (rm -rf .build, git clean -fdX?); run it again")


def test_the_checks_started_during_make_run_wait_for_its_end(tiny):
    """The build's half of make run had made .build/produced/ up to date:
    pytest read it, and the notes not yet rewritten, at once."""
    write_readme(tiny, HEADER + block("print('made')", "prints")
                 + block(WAITS_THE_SECOND_TIME, "sleeps"))
    process = start_make("run", cwd=tiny)
    try:
        assert wait_for((tiny / "ran").exists, PATIENCE), "the block did not start"
        checks = run_while_a_block_waits(
            tiny, [str(tiny / ".venv" / "bin" / "python"), "-m", "pytest", "-p", "no:xdist",
                   "tests/test_notes.py", "-k", "recorded_result or committed_output"])
    finally:
        stderr = finish(process)
    assert process.returncode == 0, stderr
    assert "waiting for the other build" in checks.stderr, checks.stderr
    assert checks.returncode == 0, checks.stdout[-3000:]


def test_a_build_started_after_ctrl_c_waits_for_the_last_kernel_to_be_gone(tiny):
    """Emacs exits at Ctrl-C without waiting for its bridge to stop the
    kernel, so make returns first: the next build, waiting on the lock
    as make's builds do, must start only once that kernel and what its
    blocks started have ended."""
    process = start_make_while_a_block_sleeps(tiny)
    try:
        os.killpg(process.pid, signal.SIGINT)
    finally:
        stderr = finish(process)
    assert process.returncode != 0, stderr
    child = int((tiny / "child.pid").read_text())
    subprocess.run(["flock", "-w", str(PATIENCE), ".", "true"], cwd=tiny, check=True)
    assert not alive(child), "the lock was free while the block's process still ran"


def test_a_bridge_killed_outright_leaves_the_lock_held_until_its_kernel_is_gone(tiny):
    """SIGKILL of the bridge alone: Emacs, then make, end at once, while the
    kernel's supervisor has yet to kill the kernel and what its blocks
    started.  The lock goes with the supervisor, so a next build cannot
    start beside them.  The supervisor is held stopped meanwhile, which
    makes the moment as long as the test needs."""
    process = start_make_while_a_block_sleeps(tiny)
    supervisor = None
    try:
        bridge, supervisor = bridge_and_supervisor(tiny)
        os.kill(supervisor, signal.SIGSTOP)
        os.kill(bridge, signal.SIGKILL)
        stderr = finish(process)
        assert process.returncode != 0, stderr
        child = int((tiny / "child.pid").read_text())
        assert alive(child)
        held = subprocess.run(["flock", "--nonblock", ".", "true"], cwd=tiny).returncode != 0
        assert held, "the lock was free while the kernel's supervisor had still to stop the block's process"
    finally:
        if supervisor:
            os.kill(supervisor, signal.SIGCONT)
    subprocess.run(["flock", "-w", str(PATIENCE), ".", "true"], cwd=tiny, check=True)
    assert not alive(child), "the lock was free while the block's process still ran"
    assert_no_kernel_left(tiny)


INTERRUPT_AFTER_FIRST_MOVE = """;;; -*- lexical-binding: t -*-
(advice-add 'rename-file :after
            (let ((done nil))
              (lambda (_from to &rest _)
                (unless (or done (string-match-p "/\\.build/" to))
                  (setq done t)
                  (signal-process (emacs-pid) 'SIGINT)
                  (sleep-for 1)))))
"""


def test_ctrl_c_during_the_install_completes_it(tiny):
    """Either every output is new or every one is old, never a mix."""
    # Python blocks are tangled but not run: no kernel is needed here.
    write_readme(tiny, HEADER + block("print('new')", "one", ":tangle gradients.py")
                 .replace("jupyter-python", "python")
                 + block("print('new')", "two", ":tangle images/two.py")
                 .replace("jupyter-python", "python"))
    (tiny / "images" / "two.py").write_text("old")
    (tiny / "gradients.py").write_text("old")
    (tiny / "interrupt.el").write_text(INTERRUPT_AFTER_FIRST_MOVE)
    run = emacs("-l", "interrupt.el", "-l", "tools/build.el", "-f", "gradients-build-tangle",
                "README.org", cwd=tiny, check=False)
    # The first move's own "wrote" line is lost to Ctrl-C; its file is not,
    # nor is it from the build's last words.
    assert run.returncode != 0 and "wrote" in run.stderr, run.stderr
    stopped, written = run.stderr.splitlines()[-2:]
    assert stopped == "README.org: the build was stopped (Ctrl-C or a signal) before it ended."
    assert written.startswith("Changed before it stopped: "), run.stderr
    assert sorted(written.split(": ", 1)[1].split(", ")) == ["gradients.py", "images/two.py"]
    for output in ("gradients.py", "images/two.py"):
        assert "new" in (tiny / output).read_text(), f"{output} is still old"
    assert not list((tiny / ".build").glob("run-*"))


INTERRUPT_AFTER_FIRST_REMOVAL = """;;; -*- lexical-binding: t -*-
(advice-add 'delete-file :after
            (let ((done nil))
              (lambda (file &rest _)
                (unless (or done (string-match-p "/\\.build/" file))
                  (setq done t)
                  (signal-process (emacs-pid) 'SIGINT)
                  (sleep-for 1)))))
"""


def test_ctrl_c_while_retired_outputs_go_names_those_gone(tiny):
    """A removal is a change: the build's last words list it."""
    def tangled_into(*files):
        return HEADER + "".join(block(f"print({file!r})", f"b{number}", f":tangle {file}")
                                .replace("jupyter-python", "python")
                                for number, file in enumerate(files))

    write_readme(tiny, tangled_into("gradients.py", "images/a.py", "images/b.py"))
    assert build(tiny).returncode == 0
    write_readme(tiny, tangled_into("gradients.py"))
    (tiny / "interrupt.el").write_text(INTERRUPT_AFTER_FIRST_REMOVAL)
    run = emacs("-l", "interrupt.el", "-l", "tools/build.el", "-f", "gradients-build-tangle",
                "README.org", cwd=tiny, check=False)
    assert run.returncode != 0, run.stderr
    stopped, changed = run.stderr.splitlines()[-2:]
    assert stopped == "README.org: the build was stopped (Ctrl-C or a signal) before it ended."
    gone = [output for output in ("images/a.py", "images/b.py") if not (tiny / output).exists()]
    assert len(gone) == 1, run.stderr
    assert changed == f"Changed before it stopped: {gone[0]} (removed)", run.stderr


def outputs_state(folder):
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in [folder / "gradients.py", *sorted((folder / "images").iterdir())]}


def test_make_tangle_rewrites_exactly_what_changed_and_knows_every_output(tiny):
    """Even the picture of an indented block, which no reader but Org's
    would see; and a successful build leaves nothing running or lying about."""
    def notes(label):
        return HEADER + block(CHILD, "child", ":tangle no") \
            + block("from graphviz import Digraph", "imports") \
            + "\n  #+name: indented\n  #+begin_src jupyter-python :file images/indented.svg\n" \
            "  d = Digraph()\n  d.node('x')\n  d\n  #+end_src\n" \
            + block(f"d = Digraph()\nd.node('{label}')\nd", "other", ":file images/other.svg")

    write_readme(tiny, notes("first"))
    temporary = tiny / "tmp"
    temporary.mkdir()

    def make_tangle(*options):
        return make(*options, "tangle", cwd=tiny, env=dict(os.environ, TMPDIR=str(temporary)),
                    timeout=PATIENCE * 2)

    first = make_tangle()
    assert first.returncode == 0, first.stderr
    assert (tiny / "images" / "indented.svg").exists()
    assert_no_leftovers(tiny, temporary)
    assert make_tangle("-q").returncode == 0, "a second make tangle would build again"

    before = outputs_state(tiny)
    write_readme(tiny, notes("second"))
    assert make_tangle().returncode == 0
    after = outputs_state(tiny)
    changed = sorted(p for p in after if after[p] != before[p])
    assert changed == ["gradients.py", "images/other.svg"]

    # An output no block makes any more is removed, as the build wrote it;
    # one changed since is named and kept.
    write_readme(tiny, notes("second").replace("images/other.svg", "images/renamed.svg")
                 .replace("images/indented.svg", "images/indented2.svg"))
    (tiny / "images" / "indented.svg").write_text("<svg>drawn by hand</svg>")
    third = make_tangle()
    said = third.stdout + third.stderr
    assert third.returncode == 0, said
    assert not (tiny / "images" / "other.svg").exists(), said
    assert "removed images/other.svg: no block makes it now" in said
    assert (tiny / "images" / "indented.svg").read_text() == "<svg>drawn by hand</svg>"
    assert "kept images/indented.svg: no block makes it now, but it changed" in said
    assert make_tangle("-q").returncode == 0, "a second make tangle would build again"

    # A picture `make run' drew again is still the build's, and make run
    # removes it as make tangle does; one the notes link (a result left
    # behind) stays.
    third = (tiny / "README.org").read_text().replace("d.node('second')", "d.node('third')")
    write_readme(tiny, third)
    ran = make("run", cwd=tiny, timeout=PATIENCE * 2)
    assert ran.returncode == 0, ran.stderr
    write_readme(tiny, (tiny / "README.org").read_text()
                 .replace(":file images/renamed.svg", ":file images/renamed2.svg")
                 .replace(":file images/indented2.svg", ":file images/indented3.svg")
                 + "\nAs drawn before: [[file:images/indented2.svg]]\n")
    # Its results drawers, which linked the old names, link the new ones.
    ran = make("run", cwd=tiny, timeout=PATIENCE * 2)
    said = ran.stdout + ran.stderr
    assert ran.returncode == 0, said
    assert "removed images/renamed.svg: no block makes it now" in said
    assert "kept images/indented2.svg: no block makes it now, but the notes link it" in said
    assert (tiny / "images" / "indented2.svg").exists()
    assert make_tangle("-q").returncode == 0, "make run left make tangle something to build"
    (tiny / "images" / "indented2.svg").rename(tiny / "images" / "indented3-old.svg")
    (tiny / "images" / "indented3.svg").unlink()

    assert make_tangle("-q").returncode == 1, "make does not know the picture is missing"

    # Found by probing: notes cut short (`: > README.org`) took every
    # output with them, the build saying it succeeded.
    before = outputs_state(tiny)
    for cut_short in ("", "* Notes\n\nProse only.\n"):
        write_readme(tiny, cut_short)
        for goal in ("tangle", "run"):
            refused = make(goal, cwd=tiny, timeout=PATIENCE * 2)
            assert refused.returncode != 0
            assert any(line.startswith(
                "README.org makes no output now (no block is tangled or draws a picture), and "
                "the build would remove every one it made before (gradients.py, images/")
                for line in refused.stderr.splitlines()), refused.stderr
            assert outputs_state(tiny) == before
    # Retired by hand, they are no longer the build's.
    for output in before:
        (tiny / output).unlink()
    assert make_tangle().returncode == 0


def test_make_n_and_make_q_write_nothing(project_copy):
    """`make -n` says what a build would do and `make -q` whether one is
    needed; neither writes a file, not even the note of which Emacs read
    the notes last, and both take an Emacs other than that one as a
    reason to build."""
    shutil.rmtree(project_copy / ".build")   # as after `git clone`
    would = make("-n", "tangle", cwd=project_copy)
    assert would.returncode == 0 and "gradients-build-tangle" in would.stdout, would.stderr
    assert make("-q", "tangle", cwd=project_copy).returncode == 1
    assert not (project_copy / ".build").exists()
    (project_copy / ".build").mkdir()
    (project_copy / ".build" / "emacs-id").write_text("another-emacs \n")
    would = make("-n", ".build/produced/blocks.json", cwd=project_copy)
    assert "gradients-build-produce" in would.stdout, would.stdout
    assert make("-q", ".build/produced/blocks.json", cwd=project_copy).returncode == 1
    assert (project_copy / ".build" / "emacs-id").read_text() == "another-emacs \n"


@pytest.mark.parametrize("folder, what", [(".build", "a file"), (".venv", "a file"),
                                          (".build", "a link to nowhere")])
def test_a_file_where_make_keeps_a_folder_is_named_in_one_line(project_copy, folder, what):
    """A file named .build or .venv (a stray `touch`, an unpacked archive),
    or a link to a folder since removed, stops make at once with one line
    naming it, and `make clean`, which would remove it, still runs."""
    path = project_copy / folder
    if path.is_symlink() or path.is_file():
        path.unlink()
    else:
        shutil.rmtree(path)
    if what == "a file":
        path.write_text("")
    else:
        path.symlink_to(project_copy / "removed")
    for target in ("tangle", "test"):
        run = make(target, cwd=project_copy)
        assert run.returncode != 0
        said = run.stderr.strip().splitlines()
        assert len(said) == 1 and f"{folder} is {what}, not a folder" in said[0], run.stderr
        assert "make clean" in said[0]
    assert make("clean", cwd=project_copy).returncode == 0
    assert not path.exists() and not path.is_symlink()


def test_a_missing_readme_is_named_by_make_alone(project_copy):
    """make names it, in its own line; the shell's complaint about opening
    it would come first, and say nothing make does not."""
    (project_copy / "README.org").unlink()
    for target in ("tangle", "test"):
        run = make(target, cwd=project_copy)
        assert run.returncode != 0
        said = run.stderr.strip().splitlines()
        assert "*** No rule to make target 'README.org'" in said[0], run.stderr
        assert "README.org: No such file" not in run.stderr, run.stderr


def test_an_emacs_named_that_is_not_there_is_said_and_nothing_installed(project_copy):
    """EMACS=... names the caller's own Emacs: Debian's emacs-nox would not
    put it there, so none is installed (nor asked of sudo); one line says
    what is wrong, before any build starts."""
    (project_copy / ".build" / "emacs-id").unlink(missing_ok=True)
    for target in ("tangle", "test"):
        run = make(target, "EMACS=/nonexistent/emacs", cwd=project_copy)
        assert run.returncode != 0
        assert "installing" not in run.stdout and "apt-get" not in run.stderr, run.stderr
        said = run.stderr.strip().splitlines()
        assert said[0] == ("EMACS=/nonexistent/emacs names no program on this machine: install "
                           "it there, or leave EMACS unset to use Debian's"), run.stderr
        assert "flock" not in run.stderr, run.stderr


@pytest.mark.parametrize("chosen, said", [
    ("true", "it printed nothing"),
    ("echo", "-Q --batch --eval"),
    (f"{EMACS} --no-such-option", "--no-such-option"),
], ids=["exits at once", "echoes its arguments", "an option Emacs refuses"])
def test_an_emacs_named_that_does_not_run_as_one_is_said_before_any_build(project_copy,
                                                                          chosen, said):
    """Whatever EMACS names is run once as the build runs it: `true` made
    `make tangle` pass having built nothing, and an option Emacs refuses
    gave its backtrace."""
    for target in ("tangle", "test"):
        run = make(target, f"EMACS={chosen}", cwd=project_copy)
        assert run.returncode != 0
        first = run.stderr.strip().splitlines()[0]
        assert first.startswith(f"EMACS={chosen} does not run as an Emacs (as {chosen} -Q "
                                "--batch): ") and said in first, run.stderr
        assert first.endswith("; name GNU Emacs, or leave EMACS unset to use Debian's"), first
        assert "Debugger entered" not in run.stderr.split("\n", 1)[1], run.stderr


@pytest.mark.parametrize("program, shim, package, said", [
    ("emacs", "exec true", "emacs-nox", "asked with -Q --batch, it said nothing"),
    ("dot", "exec true", "graphviz", "asked with -V, it said nothing"),
    ("dot", "echo junk from a shim", "graphviz", "asked with -V, it said: junk from a shim"),
], ids=["emacs that exits at once", "dot that exits at once", "dot that prints"])
def test_a_program_of_a_package_shadowed_on_the_path_is_said_before_any_build(
        project_copy, tmp_path, program, shim, package, said):
    """Another `emacs` first on the PATH made `make tangle` pass having
    built nothing; another `dot` wrote empty pictures over the committed
    ones."""
    shims = tmp_path / "shims"
    shims.mkdir()
    (shims / program).write_text(f"#!/bin/sh\n{shim}\n")
    (shims / program).chmod(0o755)
    before = snapshot(project_copy)
    # The emacs the PATH finds is the build's only by default: the suite
    # may run under another one (EMACS=/opt/.../emacs).
    run = make("tangle", *(["EMACS=emacs"] if program == "emacs" else []), cwd=project_copy,
               env=dict(os.environ, PATH=f"{shims}{os.pathsep}{os.environ['PATH']}"))
    assert run.returncode != 0
    assert run.stderr.splitlines()[0] == (
        f"the {program} first on the PATH ({shims / program}) is not {package}'s: {said}; "
        "put Debian's first on the PATH"), run.stderr
    assert snapshot(project_copy) == before


# What each is asked, and the shims that only pass that on.
ASKED = {"sh": "-c 'echo ...'", "env": "to run /bin/sh", "flock": "to run /bin/sh holding a lock",
         "xargs": "to run /bin/sh with an argument"}
PASSES_VERSION_ON = 'case $1 in --version) exec /usr/bin/{} "$@";; esac\nexit 0'


@pytest.mark.parametrize("program, shim, said", [
    ("sh", "echo junk", "junk"),
    ("env", 'echo "$@"', "PROGRAMS_SUM=42 /bin/sh -c echo \"env answers $PROGRAMS_SUM\""),
    ("flock", "exit 0", "nothing"),
    ("sha256sum", "echo 0000 requirements.lock", "0000 requirements.lock"),
    ("git", "exit 0", "nothing"),
    ("grep", "echo grep", "grep"),
    # Found by probing: the --version of the real one, and nothing else.
    ("env", PASSES_VERSION_ON.format("env"), "nothing"),
    ("flock", PASSES_VERSION_ON.format("flock"), "nothing"),
    ("xargs", PASSES_VERSION_ON.format("xargs"), "nothing"),
], ids=lambda value: value if " " not in value else None)
def test_a_program_make_runs_by_name_that_is_another_is_said_before_any_build(
        project_copy, tmp_path, program, shim, said):
    """An `env`, `flock` or `sh` first on the PATH that only printed made
    `make tangle` pass having built nothing; a `sha256sum` read as a lock
    older than pyproject.toml; a `git` as every output ignored by git."""
    shims = tmp_path / "shims"
    shims.mkdir()
    (shims / program).write_text(f"#!/bin/sh\n{shim}\n")
    (shims / program).chmod(0o755)
    (project_copy / "README.org").write_text(
        (project_copy / "README.org").read_text().replace("f(3.0)\n", "f(2.0)\n", 1))
    before = snapshot(project_copy)
    run = make("tangle", cwd=project_copy,
               env=dict(os.environ, PATH=f"{shims}{os.pathsep}{os.environ['PATH']}"))
    assert run.returncode != 0
    assert run.stderr.splitlines() == [
        f"Makefile:{run.stderr.split(':')[1]}: *** the {program} first on the PATH "
        f"({shims / program}) is not {program}: asked {ASKED.get(program, '--version')}, "
        f"it said: {said}; put the system's {program} first on the PATH.  Stop."], run.stderr
    assert snapshot(project_copy) == before
    assert not (project_copy / ".build" / "produced").exists()


# A program that never answers when asked who it is (it waits on
# something), by each way of asking: the programs make runs by name, the
# packages' programs, and the Emacs make is given.  The limit, 30 and 60 s
# for use, is 2 s here.
NEVER_ANSWERS = {
    "make's git": ("git", "sh", "-c", 'set -- cat git; . "$0"', "tools/programs-answer",
                   "the git first on the PATH ({shim}) did not answer in 2 s: asked --version, "
                   "it said: nothing; put the system's git first on the PATH, or see what it "
                   "waits for"),
    "the package's emacs": ("emacs", "sh", "tools/require-debian-packages",
                            "emacs-nox=command -v emacs",
                            "the emacs first on the PATH ({shim}) is not emacs-nox's: asked with "
                            "-Q --batch, did not answer in 2 s, it said nothing; put Debian's "
                            "first on the PATH"),
    "the package's dot": ("dot", "sh", "tools/require-debian-packages", "graphviz=command -v dot",
                          "the dot first on the PATH ({shim}) is not graphviz's: asked with -V, "
                          "did not answer in 2 s, it said nothing; put Debian's first on the PATH"),
    "EMACS=": ("emacs", "sh", "tools/require-debian-packages", "EMACS={shim}",
               "EMACS={shim} does not run as an Emacs (as {shim} -Q --batch): did not answer "
               "in 2 s, it printed nothing; name GNU Emacs, or leave EMACS unset to use Debian's"),
}


@pytest.mark.parametrize("case", NEVER_ANSWERS)
def test_a_program_that_never_answers_who_it_is_is_said_in_time(tmp_path, case):
    """Found by probing: make waited, saying nothing, for as long as the
    program did."""
    program, *command, said = NEVER_ANSWERS[case]
    shims = tmp_path / "shims"
    shims.mkdir()
    shim = shims / program
    shim.write_text("#!/bin/sh\nwhile :; do sleep 1; done\n")
    shim.chmod(0o755)
    command = [str(ROOT / word) if word.startswith("tools/") else word.format(shim=shim)
               for word in command]
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PATH=f"{shims}{os.pathsep}{os.environ['PATH']}",
                                  programs_limit="2", answer_limit="2"))
    assert run.returncode != 0 or run.stdout, run
    assert (run.stdout + run.stderr).strip() == said.format(shim=shim)
    # Nor is it left waiting.
    assert wait_for(lambda: not any(str(shims) in command_line(pid)
                                    for pid in kernel_supervisor.process_table()), 10)


def test_a_python3_that_never_answers_is_said_in_time(project_copy, tmp_path):
    """Found by probing: make venv waited, saying nothing, on a python3
    first on the PATH that never answered what version it is."""
    shims = tmp_path / "shims"
    shims.mkdir()
    (shims / "python3").write_text("#!/bin/sh\nwhile :; do sleep 1; done\n")
    (shims / "python3").chmod(0o755)
    (project_copy / ".venv").unlink()
    run = make("venv", cwd=project_copy, timeout=60,
               env=dict(os.environ, PATH=f"{shims}{os.pathsep}{os.environ['PATH']}",
                        answer_limit="2"))
    assert run.returncode != 0
    assert (f"python3 ({shims / 'python3'}) did not answer in 2 s: put a working Python 3.11 or "
            "newer first on the PATH, or see what it waits for") in run.stderr.splitlines(), \
        run.stderr
    assert wait_for(lambda: not any(str(shims) in command_line(pid)
                                    for pid in kernel_supervisor.process_table()), 10)


def test_a_library_the_loader_cannot_preload_is_named_not_a_program(project_copy):
    """Found by probing: cat, the first program asked, was said not to be
    cat, for the loader's complaint every program makes."""
    run = make("tangle", cwd=project_copy,
               env=dict(os.environ, LD_PRELOAD=str(project_copy / "no-such-library.so")))
    assert run.returncode != 0
    said = [line for line in run.stderr.splitlines() if line.startswith("Makefile:")]
    assert len(said) == 1 and said[0].split(": *** ")[1].startswith(
        "LD_PRELOAD names a library the system cannot load, and every program make runs says "
        "so before its own words ("), run.stderr
    assert "is not" not in run.stderr
    assert not (project_copy / ".build" / "produced").exists()


def test_an_emacs_named_with_an_option_it_takes_builds(project_copy):
    write_readme(project_copy, "* Notes\n\nProse only: no kernel.\n")
    run = make("tangle", f"EMACS={EMACS} --no-site-file", cwd=project_copy)
    assert run.returncode == 0, run.stderr


def test_an_emacs_whose_path_holds_a_space_is_said_so(project_copy, tmp_path):
    """make splits EMACS at its spaces (so that it may carry options), so
    such a program cannot be run: said so, rather than "EMACS=/tmp/a names
    no program", a path cut at the space."""
    folder = tmp_path / "an emacs"
    folder.mkdir()
    (folder / "emacs").symlink_to(shutil.which(EMACS))
    run = make("tangle", f"EMACS={folder / 'emacs'}", cwd=project_copy)
    assert run.returncode != 0
    assert run.stderr.strip().splitlines()[0] == (
        f"EMACS={folder / 'emacs'}: make splits a command at its spaces, and this "
        "program's path holds one; give a link to it whose path has none"), run.stderr


def test_readme_edited_during_make_test_says_to_run_make_test_again(tiny):
    """The build behind `make test` names its own target, not `make tangle`,
    and leaves no blocks.json that would pass for a build of the edit."""
    text = HEADER + block("open('README.org', 'a').write('\\nAn edit made meanwhile.\\n')",
                          "edits")
    before = write_readme(tiny, text)
    run = build(tiny, "produce")
    assert run.returncode != 0
    said = run.stderr.replace("\u2018", "`").replace("\u2019", "'")
    assert "README.org changed on disk while the blocks ran" in said, run.stderr
    assert "run `make test' again" in said, run.stderr
    assert not (tiny / ".build" / "produced" / "blocks.json").exists()
    before["README.org"] = (tiny / "README.org").read_bytes()
    assert snapshot(tiny) == before


# Ctrl-C once the last build's .build/produced/ is moved aside, before the
# new one takes its place.
INTERRUPT_WHILE_PRODUCED_IS_SWAPPED = """;;; -*- lexical-binding: t -*-
(advice-add 'rename-file :after
            (lambda (from _to &rest _)
              (when (string-match-p "/\\\\.build/produced/?\\\\'" from)
                (signal-process (emacs-pid) 'SIGINT)
                (sleep-for 1))))
"""


def test_ctrl_c_while_the_produced_folder_is_replaced_leaves_no_copy_of_it(tiny):
    write_readme(tiny, "* Notes\n\nProse only: no kernel.\n")
    assert build(tiny, "produce").returncode == 0
    (tiny / "interrupt.el").write_text(INTERRUPT_WHILE_PRODUCED_IS_SWAPPED)
    run = emacs("-l", "interrupt.el", "-l", "tools/build.el", "-f", "gradients-build-produce",
                "README.org", cwd=tiny, check=False)
    assert run.returncode != 0 and "the build was stopped" in run.stderr, run.stderr
    assert sorted(p.name for p in (tiny / ".build").iterdir()
                  if p.name not in ("kernel", "produced", "answered", "programs-answered")) == [], \
        run.stderr
    assert build(tiny, "produce").returncode == 0
    assert (tiny / ".build" / "produced" / "blocks.json").exists()


def test_an_output_put_back_with_an_older_time_is_built_again(tiny):
    """cp -p, rsync -a and tar keep a file's time: an output they put back
    is no newer than make's stamp, yet not what the build wrote, and make
    test would send the author to a make tangle that did nothing."""
    # Python blocks are tangled but not run: no kernel is needed here.
    write_readme(tiny, HEADER + block("print('new')", "one", ":tangle gradients.py")
                 .replace("jupyter-python", "python")
                 + block("print('new')", "two", ":tangle images/two.py")
                 .replace("jupyter-python", "python"))
    assert make("tangle", cwd=tiny).returncode == 0
    for output in ("gradients.py", "images/two.py"):
        path = tiny / output
        written = path.read_bytes()
        path.write_text("print('old')\n")
        os.utime(path, (0, 0))
        assert make("-q", "tangle", cwd=tiny).returncode == 1, f"make missed an older {output}"
        run = make("tangle", cwd=tiny)
        assert run.returncode == 0, run.stderr
        assert path.read_bytes() == written
        assert make("-q", "tangle", cwd=tiny).returncode == 0
