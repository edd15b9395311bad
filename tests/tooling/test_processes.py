"""Nothing a session started outlives it: not the bridge, not its kernel,
not a process a block started, however that process detached itself (a
session of its own, `setsid ... &`, a double fork), and however the
session ended (end of input, SIGTERM, SIGHUP, both, the kernel's own end,
a timeout, SIGKILL of the bridge, a bridge stopped (SIGSTOP) and killed
for its silence, the Emacs gone, a build that succeeded or failed)."""

import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import kernel_bridge
import kernel_supervisor
from conftest import (FORGET_THE_NOTES_BUFFER, ROOT, Bridge, Daemon, a_users_make_environment,
                      alive, command_line, copy_project, gone, wait_for)
from tiny_notes import (HEADER, assert_no_kernel_left, block, bridge_and_supervisor, build,
                        line_of, write_readme)



def detaching(pids):
    """A block that starts four sleeps, each recording its number in the
    file PIDS: one in a session of its own, one through `setsid ... &`, one
    by a double fork (its parent gone at once), and one plain child."""
    return f"""import os, subprocess
def record(pid):
    with open({str(pids)!r}, 'a') as out:
        out.write(f'{{pid}}\\n')
record(subprocess.Popen(['sleep', '600'], start_new_session=True).pid)
os.system("setsid sh -c 'echo $$ >> {pids}; exec sleep 600' >/dev/null 2>&1 </dev/null &")
middle = os.fork()
if middle == 0:
    try:
        os.setsid()
        if os.fork() == 0:
            record(os.getpid())
            os.execvp('sleep', ['sleep', '600'])
    finally:
        os._exit(0)
os.waitpid(middle, 0)
record(subprocess.Popen(['sleep', '600']).pid)
# The shell of `setsid ... &` writes its number when it gets to it: the
# block goes on (and may end its kernel) only once all four are known.
import time
while len(open({str(pids)!r}).read().split()) < 4:
    time.sleep(0.01)"""


def recorded(pids, count=4):
    """The numbers the block recorded in PIDS, once all COUNT are there."""
    assert wait_for(lambda: pids.exists() and len(pids.read_text().split()) >= count, 30), \
        "the block did not start its processes"
    return {int(pid) for pid in pids.read_text().split()}


def assert_all_gone(pids):
    # The time allowed is for a loaded machine: the bridge waits for nothing.
    left = {pid: command_line(pid) for pid in pids if not gone(pid, 15)}
    assert not left, f"left running: {left}"


def kill_leftovers(pids):
    """Whatever a failing test left behind, the next one must not meet."""
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def leftovers():
    """A set for a test to put the processes it started in."""
    pids = set()
    yield pids
    kill_leftovers(pids)


@pytest.fixture
def bridge(tmp_path):
    started = Bridge(tmp_path)
    yield started
    started.kill()
    kill_leftovers(started.seen - {started.pid})


def during_the_kernels_start(bridge, stop):
    """STOP once the kernel process exists, before it answers."""
    assert wait_for(lambda: any(kernel_bridge.LAUNCH_KERNEL in command_line(pid)
                                for pid in bridge.look()), 30)
    stop()


def while_a_block_runs(bridge, stop):
    pids = bridge.folder / "pids"
    bridge.ready()
    bridge.send(detaching(pids) + "\nimport time\ntime.sleep(600)")
    bridge.seen |= recorded(pids)
    bridge.look()
    stop()


def right_after_a_reply(bridge, stop):
    pids = bridge.folder / "pids"
    bridge.ready()
    bridge.send(detaching(pids))
    bridge.seen |= recorded(pids)
    bridge.look()
    assert bridge.reply()["ok"] is True
    stop()


def while_idle(bridge, stop):
    pids = bridge.folder / "pids"
    bridge.ready()
    bridge.send(detaching(pids))
    assert bridge.reply()["ok"] is True
    bridge.seen |= recorded(pids)
    bridge.look()
    time.sleep(0.5)
    stop()


MOMENTS = {"during the kernel's start": during_the_kernels_start,
           "while a block runs": while_a_block_runs,
           "right after a reply": right_after_a_reply,
           "while idle": while_idle}

# SIGHUP alone is not among them: the bridge hands SIGHUP and SIGTERM to
# one handler, so that case would run the SIGTERM case's code again (the
# endings that pair SIGHUP with something else still send it for real).
# test_sighup_and_sigterm_reach_one_handler fails if that stops being so.
ENDINGS = {
    "SIGTERM": lambda bridge: bridge.signal(signal.SIGTERM),
    "end of input": lambda bridge: bridge.close_input(),
    "SIGHUP and SIGTERM together": lambda bridge: (bridge.signal(signal.SIGHUP),
                                                    bridge.signal(signal.SIGTERM)),
    "input closed, then SIGTERM": lambda bridge: (bridge.close_input(),
                                                  bridge.signal(signal.SIGTERM)),
    "SIGHUP, then input closed": lambda bridge: (bridge.signal(signal.SIGHUP),
                                                 bridge.close_input()),
    "SIGKILL of the bridge": lambda bridge: bridge.signal(signal.SIGKILL),
}


# The two endings the bridge acts on at every moment; a SIGKILL, which it
# never sees, where the supervisor's state differs (the kernel still
# starting, or running a block that detached children); each ending of two
# steps once, at the moment whose state its second step finds in the middle
# of its first: two signals while a block's reply is awaited, the end of
# input seen while the bridge waits for a request (idle), then a SIGTERM on
# the way out, and a SIGHUP's stop under way when the input ends.
STOPS = [(moment, ending) for moment in MOMENTS for ending in ("SIGTERM", "end of input")] + [
    ("during the kernel's start", "SIGKILL of the bridge"),
    ("while a block runs", "SIGKILL of the bridge"),
    ("while a block runs", "SIGHUP and SIGTERM together"),
    ("while idle", "input closed, then SIGTERM"),
    ("while a block runs", "SIGHUP, then input closed"),
]


@pytest.mark.parametrize(("moment", "ending"), STOPS)
def test_a_stopped_bridge_leaves_nothing_running(bridge, moment, ending):
    MOMENTS[moment](bridge, lambda: ENDINGS[ending](bridge))
    code = bridge.process.wait(timeout=30)
    if ending != "SIGKILL of the bridge":
        assert code == 0, bridge.log()
    assert_all_gone(bridge.seen)


# Run by the bridge where its kernel would start, once its handlers are set.
HANDLERS_SEEN = """
import io, signal, sys
sys.path.insert(0, sys.argv[1])
import kernel_bridge

def handlers_instead_of_a_kernel(*_):
    hup, term = signal.getsignal(signal.SIGHUP), signal.getsignal(signal.SIGTERM)
    print(callable(term), hup is term)
    raise kernel_bridge.Stopped()

kernel_bridge.Kernel = handlers_instead_of_a_kernel
kernel_bridge.serve(io.StringIO(), sys.stdout)
"""


def test_sighup_and_sigterm_reach_one_handler():
    """Why ENDINGS sends SIGHUP alone in no case: the SIGTERM cases test it."""
    run = subprocess.run([sys.executable, "-c", HANDLERS_SEEN, str(ROOT / "tools")],
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "True True\n", run.stdout + run.stderr


ENDS_ITS_KERNEL = {
    "os._exit": ("import os\nos._exit(3)", {}, "died"),
    "exit()": ("exit()", {}, "died"),
    "a timeout it ignores": (
        "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(600)",
        {"timeout": 0.5}, "died"),
}


@pytest.mark.long
@pytest.mark.parametrize("case", ENDS_ITS_KERNEL)
def test_a_block_that_ends_its_kernel_leaves_nothing_running(bridge, case):
    code, options, kind = ENDS_ITS_KERNEL[case]
    pids = bridge.folder / "pids"
    bridge.ready()
    bridge.send(detaching(pids) + "\n" + code, **options)
    reply = bridge.reply()
    bridge.seen |= recorded(pids)
    assert (reply["ok"], reply["kind"]) == (False, kind), reply
    assert bridge.process.wait(timeout=30) == 0, bridge.log()
    assert_all_gone(bridge.seen)


def test_a_kernel_of_this_process_is_killed_with_what_it_started(tmp_path, leftovers):
    """The tests' own kernels (conftest), as much as the bridge's."""
    pids = tmp_path / "pids"
    kernel = kernel_bridge.Kernel()
    try:
        leftovers.add(kernel.pid)
        kernel_bridge.execute(kernel, detaching(pids))
        leftovers.update(recorded(pids))
    finally:
        kernel.kill()
    assert_all_gone(leftovers)


# Emacs's side: the bridges it starts, stopped by the author or by the
# Emacs ending.

SETUP = r"""
(progn
  (setq org-modules nil org-confirm-babel-evaluate nil)
  (load-file "tools/ob-gradients.el")
  t)
"""

# The README.org a test has just written, visited afresh: the buffer of an
# earlier test's notes goes first.
RUN_DETACHES = f"""
(progn
  {FORGET_THE_NOTES_BUFFER}
  (find-file "README.org")
  (org-babel-goto-named-src-block "detaches")
  (org-babel-execute-src-block)
  t)
"""


class SharedEmacs:
    """The interactive Emacs (a daemon) with the executor loaded that this
    file's tests share, in a copy of the project; started again for the
    next test where one killed it."""

    def __init__(self, folder):
        self.folder = folder
        self.daemon = None

    def running(self):
        if self.daemon is None or self.daemon.process.poll() is not None:
            self.close()
            self.daemon = Daemon(self.folder)
            assert self.daemon(SETUP) is True
        return self.daemon

    def close(self):
        if self.daemon is not None:
            self.daemon.close()


@pytest.fixture(scope="module")
def shared_emacs(tmp_path_factory):
    emacs = SharedEmacs(copy_project(tmp_path_factory.mktemp("sessions")))
    yield emacs
    emacs.close()


@pytest.fixture
def emacs_with_a_session(shared_emacs, tmp_path_factory):
    """An interactive Emacs (a daemon) that ran a block starting detached
    processes; with the processes it started, all recorded.  Afterwards
    no session of it runs, whatever the test did (a restart starts one)."""
    pids = tmp_path_factory.mktemp("pids") / "pids"
    write_readme(shared_emacs.folder,
                 HEADER + block(detaching(pids) + "\nimport time\ntime.sleep(600)",
                                "detaches", ":async yes :tangle no"))
    daemon = shared_emacs.running()
    started = set()
    try:
        assert daemon(RUN_DETACHES) is True
        started = recorded(pids) | kernel_supervisor.descendants(daemon.process.pid)
        assert any("kernel_bridge.py" in command_line(pid) for pid in started)
        yield daemon, started
    finally:
        if daemon.process.poll() is None:
            started |= kernel_supervisor.descendants(daemon.process.pid)
            daemon("(progn (gradients-stop-sessions) t)")
        kill_leftovers(started)


@pytest.mark.xdist_group(f"{__name__}.shared_emacs")
@pytest.mark.parametrize("command", ["gradients-stop-sessions", "gradients-restart"])
def test_stopping_a_session_leaves_nothing_of_it_running(emacs_with_a_session, command):
    daemon, started = emacs_with_a_session
    daemon(f'(with-current-buffer "README.org" ({command}))')
    assert_all_gone(started)


@pytest.mark.xdist_group(f"{__name__}.shared_emacs")
def test_an_emacs_killed_leaves_nothing_running(emacs_with_a_session):
    daemon, started = emacs_with_a_session
    daemon.process.kill()
    daemon.process.wait()
    assert_all_gone(started)


@pytest.mark.parametrize("outcome", ["succeeds", "fails"])
def test_a_build_leaves_nothing_running(tiny, tmp_path_factory, leftovers, outcome):
    pids = tmp_path_factory.mktemp("pids") / "pids"
    ending = "\nraise ValueError('nudged too far')" if outcome == "fails" else ""
    # Not tangled: a tangled block may leave nothing running (make test
    # imports gradients.py in its own process); the build stops what
    # any other one leaves.
    write_readme(tiny, HEADER + block("x = 1", "tangled")
                 + block(detaching(pids) + ending, "detaches", ":tangle no"))
    run = build(tiny)
    # The build returns once its kernel is gone: a script's next build
    # finds the checkout's lock free, and nothing of this one running.
    assert_no_kernel_left(tiny, patience=0)
    assert (run.returncode == 0) == (outcome == "succeeds"), run.stderr
    leftovers.update(recorded(pids))
    assert_all_gone(leftovers)


def test_a_supervisor_whose_bridge_is_already_gone_starts_nothing(tmp_path):
    """A bridge may die before its supervisor asks to be told of that
    death; the supervisor then sees it has another parent already."""
    finished = subprocess.Popen(["true"])
    finished.wait()
    marker = tmp_path / "ran"
    run = subprocess.run([sys.executable, str(ROOT / "tools" / "kernel_supervisor.py"),
                          str(finished.pid), "touch", str(marker)], timeout=30)
    assert run.returncode != 0
    assert not marker.exists()


@pytest.mark.parametrize("ends", ["before the open", "between open and read"])
def test_a_process_that_ends_while_it_is_looked_at_counts_as_gone(monkeypatch, ends):
    """Every look at a process goes through process_status, and a process
    can end at any point of it: /proc then says so by a different error
    depending on the step (a missing file, or ESRCH from a read)."""
    child = subprocess.Popen(["sleep", "60"])

    def end_it():
        child.kill()
        child.wait()

    if ends == "before the open":
        end_it()
    else:
        def open_then_end(*args, **kwargs):
            handle = open(*args, **kwargs)
            end_it()
            return handle
        monkeypatch.setattr(kernel_supervisor, "open", open_then_end, raising=False)
    assert kernel_supervisor.process_status(child.pid) is None
    assert not alive(child.pid)
    assert child.pid not in kernel_supervisor.process_table()


# A bridge stopped (SIGSTOP) under an interactive Emacs: the `:async yes`
# blocks it holds, which no one waits for, fail once its patience is out,
# as a block waited for does, and leave nothing of the bridge running.

def lisp_string(text):
    return json.dumps(text)


def in_the_notes(expression):
    return f'(with-current-buffer "README.org" {expression})'


def drawer_text(name):
    return (f"(save-excursion (org-babel-goto-named-src-block {lisp_string(name)})"
            " (gradients--drawer-text))")


def run_blocks(*names):
    """Run the blocks NAMES; the value is their drawers' text right after,
    in the same command: no timer of the Emacs runs in between."""
    return in_the_notes("(progn " + " ".join(
        f"(org-babel-goto-named-src-block {lisp_string(name)}) (org-babel-execute-src-block)"
        for name in names) + " (list " + " ".join(map(drawer_text, names)) + "))")


def waiting(drawers):
    return all(re.fullmatch(r": \[waiting for the kernel: request \d+\]", text or "")
               for text in drawers)


def drawer(name):
    return in_the_notes(drawer_text(name))


PLACEHOLDERS = in_the_notes("(gradients-placeholder-lines)")
WATCHING = "(and (memq gradients--watch-timer timer-list) t)"
MESSAGES = '(with-current-buffer "*Messages*" (buffer-string))'
# What the Emacs said before goes: an earlier test's message would match.
FORGET_THE_MESSAGES = """(with-current-buffer "*Messages*"
    (let ((inhibit-read-only t)) (erase-buffer)))"""
PATIENCE = ("(list gradients-bridge-patience gradients--kernel-start-limit"
            " gradients-watch-interval)")


@pytest.fixture
def silent_bridge_emacs(shared_emacs):
    """The shared Emacs, its bridges' patience, their kernels' time to
    start and the watch's interval put back after the test, and its
    sessions stopped; with a set for the test to put the processes it saw
    in."""
    daemon = shared_emacs.running()
    patience, start_limit, interval = daemon(PATIENCE)
    # Looked at ten times a second: the test waits for the looks.
    daemon("(progn (setq gradients-watch-interval 0.1) t)")
    seen = set()
    try:
        yield daemon, seen
    finally:
        if daemon.process.poll() is None:
            seen |= kernel_supervisor.descendants(daemon.process.pid)
            daemon(f"(progn (setq gradients-bridge-patience {patience}"
                   f" gradients--kernel-start-limit {start_limit}"
                   f" gradients-watch-interval {interval})"
                   " (gradients-stop-sessions) t)")
        kill_leftovers(seen)


def said(daemon, pattern):
    """The first message matching PATTERN the Emacs logged."""
    return re.search(pattern, daemon(MESSAGES))


@pytest.mark.xdist_group(f"{__name__}.shared_emacs")
@pytest.mark.parametrize("behind", [0, 1], ids=["alone", "one block queued behind"])
def test_an_async_block_on_a_stopped_bridge_fails_and_leaves_nothing_running(
        shared_emacs, silent_bridge_emacs, behind):
    daemon, seen = silent_bridge_emacs
    write_readme(shared_emacs.folder,
                 HEADER + block("1 + 1", "warm", ":async yes :tangle no")
                 + block("import time\ntime.sleep(600)", "stuck", ":async yes :tangle no")
                 + "#+RESULTS: stuck\n:results:\nearlier\n:end:\n"
                 + block("3 * 3", "after", ":async yes :tangle no"))
    assert daemon(f'(progn {FORGET_THE_NOTES_BUFFER} (find-file "README.org") t)') is True
    assert waiting(daemon(run_blocks("warm")))
    assert wait_for(lambda: daemon(drawer("warm")) == ": 2", 60), daemon(MESSAGES)
    bridge = daemon('(process-id (cdr (assoc "gradients" gradients--sessions)))')
    seen |= kernel_supervisor.descendants(daemon.process.pid)
    assert bridge in seen
    # Stopped before the block is sent, a block with no time limit (as
    # blocks run by hand have), and no patience for a bridge that says
    # nothing from then on.  Emacs writes nothing to a bridge it knows is
    # stopped: the block waits its turn, and fails as one the bridge was
    # stopped in the middle of would, with the kernel said lost.
    os.kill(bridge, signal.SIGSTOP)
    patience = daemon("gradients-bridge-patience")
    assert daemon(f"(progn {FORGET_THE_MESSAGES} (setq gradients-bridge-patience 0) t)") is True
    assert waiting(daemon(run_blocks("stuck", *["after"] * behind)))
    failed = ("block `stuck' lost its kernel: the kernel bridge said nothing for 0 s"
              r" while it held a block \(held stopped from outside\), and was killed")
    assert wait_for(lambda: said(daemon, failed), 60), daemon(MESSAGES)
    # With no patience, the fresh kernel of the block queued behind may
    # be taken for a silent one too: it runs again with the patience back.
    daemon(f"(progn (setq gradients-bridge-patience {patience}) t)")
    assert_all_gone(seen)
    assert daemon(drawer("stuck")) == "earlier"
    if behind:
        assert said(daemon, failed + r"\.  Its variables are gone; the block"
                          " queued behind it runs on a fresh kernel")
        assert wait_for(lambda: daemon(PLACEHOLDERS) is None, 60), daemon(MESSAGES)
        if daemon(drawer("after")) != ": 9":
            assert waiting(daemon(run_blocks("after")))
        assert wait_for(lambda: daemon(drawer("after")) == ": 9", 60), daemon(MESSAGES)
        daemon("(progn (gradients-stop-sessions) t)")
    assert daemon(PLACEHOLDERS) is None
    assert wait_for(lambda: not kernel_supervisor.descendants(daemon.process.pid), 60)
    assert wait_for(lambda: not daemon(WATCHING), 60)


@pytest.mark.xdist_group(f"{__name__}.shared_emacs")
def test_a_block_run_while_its_bridge_is_held_stopped_runs_once_it_goes_on(
        shared_emacs, silent_bridge_emacs):
    """C-c C-c on a block while something holds the bridge stopped (kill
    -STOP, a debugger): Emacs would not write to it, the block was taken
    for sent all the same, and a minute after the bridge went on it was
    killed for its silence, the block blamed for stopping the kernel."""
    daemon, seen = silent_bridge_emacs
    write_readme(shared_emacs.folder,
                 HEADER + block("x = 21", "warm", ":async yes :tangle no")
                 + block("x * 2", "after", ":async yes :tangle no"))
    assert daemon(f'(progn {FORGET_THE_NOTES_BUFFER} {FORGET_THE_MESSAGES}'
                  ' (find-file "README.org") t)') is True
    assert waiting(daemon(run_blocks("warm")))
    assert wait_for(lambda: daemon(PLACEHOLDERS) is None, 60), daemon(MESSAGES)
    bridge = daemon('(process-id (cdr (assoc "gradients" gradients--sessions)))')
    seen |= kernel_supervisor.descendants(daemon.process.pid)
    os.kill(bridge, signal.SIGSTOP)
    try:
        assert wait_for(lambda: daemon('(process-status (cdr (assoc "gradients"'
                                       ' gradients--sessions)))') == "stop", 60)
        assert waiting(daemon(run_blocks("after")))
    finally:
        os.kill(bridge, signal.SIGCONT)
    # The same kernel: x is still there.
    assert wait_for(lambda: daemon(drawer("after")) == ": 42", 60), daemon(MESSAGES)
    assert not said(daemon, "was killed")


@pytest.mark.xdist_group(f"{__name__}.shared_emacs")
def test_async_blocks_queued_on_a_bridge_stopped_before_its_kernel_is_ready_all_fail(
        shared_emacs, silent_bridge_emacs):
    daemon, seen = silent_bridge_emacs
    write_readme(shared_emacs.folder,
                 HEADER + block("1 + 1", "first", ":async yes :tangle no")
                 + block("2 + 2", "second", ":async yes :tangle no"))
    # Stopped as it starts: it has sent no word, so Emacs has read none.
    bridge = daemon(f'(progn {FORGET_THE_NOTES_BUFFER} (find-file "README.org")'
                    " (setq gradients-bridge-patience 0 gradients--kernel-start-limit 0)"
                    ' (let ((bridge (gradients-start-session "gradients")))'
                    "   (signal-process bridge 'SIGSTOP)"
                    "   (process-id bridge)))")
    seen |= kernel_supervisor.descendants(daemon.process.pid)
    assert bridge in seen
    assert daemon(f"(progn {FORGET_THE_MESSAGES} t)") is True
    assert waiting(daemon(run_blocks("first", "second")))
    for name in ("first", "second"):
        failed = (f"block `{name}' did not run: the kernel bridge gave no answer 0 s past"
                  r" the 0 s its kernel has to start \(held stopped from outside\), and was killed")
        assert wait_for(lambda: said(daemon, failed), 60), daemon(MESSAGES)
        assert daemon(drawer(name)) is None
    assert daemon(PLACEHOLDERS) is None
    assert_all_gone(seen)
    assert wait_for(lambda: not kernel_supervisor.descendants(daemon.process.pid), 60)
    assert wait_for(lambda: not daemon(WATCHING), 60)


# A test whose fixture starts a process, and which waits for good.
WAITING_TEST = """
import os, pathlib, subprocess, time
import pytest

@pytest.fixture
def child():
    process = subprocess.Popen(["sleep", "600"])
    pathlib.Path(os.environ["CHILD_PID"]).write_text(str(process.pid))
    yield process
    process.kill()
    process.wait()

def test_waits(child):
    time.sleep(600)
"""


def processes_in(folder):
    """The processes running in FOLDER or below, but this one.  Any of them
    may end while it is looked at (CI caught one between its listing and
    its command line): it is then left out, as gone."""
    found = []
    for pid in kernel_supervisor.process_table():
        try:
            cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
        except OSError:
            continue
        if pid != os.getpid() and cwd.is_relative_to(folder) and (command := command_line(pid)):
            found.append(f"{pid} {command}")
    return found


# How make test is stopped while it builds: the process, the signal, and
# when: as Emacs builds, as soon as pytest starts the build (the signal
# landed in Popen, and pytest ended knowing no build to stop), or while
# the build waits for another's lock.
STOPPING_MAKE_TEST = {
    "make": ("make", signal.SIGTERM, "building"),
    "pytest": ("pytest", signal.SIGTERM, "building"),
    "pytest hung up": ("pytest", signal.SIGHUP, "building"),
    "pytest killed": ("pytest", signal.SIGKILL, "building"),
    "pytest quit (Ctrl-\\)": ("pytest", signal.SIGQUIT, "building"),
    "pytest as it starts the build": ("pytest", signal.SIGTERM, "starting"),
    "pytest killed as its build waits for the lock": ("pytest", signal.SIGKILL, "waiting"),
}


def children_of(pid):
    """PID's children, read from /proc alone: cheap enough to ask every
    millisecond, where process_table reads every process's entry."""
    try:
        return [int(child) for child in
                Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def pytest_of(make_test):
    """The pytest that MAKE_TEST runs, once it does (None before): make runs
    it in place of its shell, so make's child, once that shell has run the
    commands before it."""
    return next((pid for pid in children_of(make_test.pid)
                 if "-m pytest" in command_line(pid)), None)


@pytest.mark.long
@pytest.mark.parametrize("stopped", STOPPING_MAKE_TEST, ids=list(STOPPING_MAKE_TEST))
def test_make_test_stopped_while_it_builds_leaves_nothing_running(project_copy, stopped):
    """SIGTERM to make alone (a CI's timeout, `kill`) reached only the
    shell it ran pytest from, and SIGTERM or SIGHUP (a terminal closed) to
    pytest never the build pytest waited for: each ran on, holding the
    checkout's lock.  Found by probing: so did the build of a pytest
    killed, or quit with Ctrl-\\, or stopped as it started the build, and
    the lock's waiter of a pytest killed while another build held it, which
    ran the build once that one was done."""
    who, signum, when = STOPPING_MAKE_TEST[stopped]
    held = os.open(project_copy, os.O_RDONLY)
    if when == "waiting":
        fcntl.flock(held, fcntl.LOCK_EX)
    make_test = subprocess.Popen(["make", "test"], cwd=project_copy, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True,
                                 env=a_users_make_environment())
    try:
        if when == "starting":
            assert wait_for(lambda: (pid := pytest_of(make_test)) and children_of(pid), 60,
                            every=0.001)
        elif when == "waiting":
            assert wait_for(lambda: any(p.split()[1:2] == ["flock"]
                                        for p in processes_in(project_copy)), 60), \
                processes_in(project_copy)
        else:
            assert wait_for(lambda: any("gradients-build-produce" in p
                                        for p in processes_in(project_copy)), 60), \
                processes_in(project_copy)
        os.kill(make_test.pid if who == "make" else pytest_of(make_test), signum)
        said = make_test.communicate(timeout=60)[0]
        assert make_test.returncode != 0, said
        assert wait_for(lambda: not processes_in(project_copy), 20), processes_in(project_copy)
        os.close(held)
        held = None
        # Stopped, not run to its end once make was gone.
        assert not (project_copy / ".build" / "produced" / "blocks.json").exists(), said
        assert " passed" not in said, said
    finally:
        if held is not None:
            os.close(held)
        make_test.kill()
        make_test.wait()


# A module that catches the KeyboardInterrupt a stop raises in it, as one
# library's import in some hundred does, and leaves a file for each step.
SWALLOWS_A_STOP = """import pathlib, time
pathlib.Path("importing").touch()
try:
    time.sleep(60)
except BaseException:
    pathlib.Path("swallowed").touch()
"""


@pytest.mark.long
def test_a_stop_swallowed_where_it_landed_still_stops_make_test(project_copy):
    """Found by CI: SIGTERM to make reached pytest as it imported what
    gradients.py imports, and the library being imported caught it, so
    every check ran to its end.  A SIGHUP the caller ignores (nohup) stays
    ignored."""
    (project_copy / "swallows_a_stop.py").write_text(SWALLOWS_A_STOP)
    gradients = project_copy / "gradients.py"
    gradients.write_text("import swallows_a_stop\n" + gradients.read_text())
    make_test = subprocess.Popen(["make", "test"], cwd=project_copy, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True,
                                 env=a_users_make_environment(),
                                 preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    try:
        assert wait_for(lambda: (project_copy / "importing").exists(), 60)
        os.kill(pytest_of(make_test), signal.SIGHUP)
        time.sleep(1)
        assert not (project_copy / "swallowed").exists(), "an ignored SIGHUP stopped pytest"
        make_test.send_signal(signal.SIGTERM)
        said = make_test.communicate(timeout=60)[0]
        assert (project_copy / "swallowed").exists(), said
        assert make_test.returncode != 0, said
        assert " passed" not in said and " failed" not in said, said
        assert wait_for(lambda: not processes_in(project_copy), 20), processes_in(project_copy)
    finally:
        make_test.kill()
        make_test.wait()


# Who is stopped from outside while a block runs, how, and what the block
# is then said to have met.
FROM_OUTSIDE = {
    "SIGTERM to the bridge": ("bridge", signal.SIGTERM,
                              "the kernel bridge was told to stop from outside (SIGTERM or SIGHUP)"),
    "SIGHUP to the bridge": ("bridge", signal.SIGHUP,
                             "the kernel bridge was told to stop from outside (SIGTERM or SIGHUP)"),
    "SIGKILL to the supervisor": ("supervisor", signal.SIGKILL,
                                  "the kernel's supervisor was killed by signal 9 from outside"),
    "SIGTERM to the supervisor": ("supervisor", signal.SIGTERM,
                                  "the kernel's supervisor was told to stop from outside "
                                  "(SIGTERM or SIGHUP)"),
    "SIGTERM to the kernel": ("kernel", signal.SIGTERM,
                              "the kernel was ended by signal 15 (SIGTERM), sent by kill or a "
                              "shutdown, or by the code it ran"),
    # As the system's memory limit does.
    "SIGKILL to the kernel": ("kernel", signal.SIGKILL,
                              "the kernel was killed by signal 9 (the system's memory limit, "
                              "or kill -9)"),
}


@pytest.mark.parametrize("stopped", FROM_OUTSIDE)
def test_a_kernel_stopped_from_outside_does_not_blame_the_block(tiny, stopped):
    """The bridge stops its kernel and exits 0, as when Emacs stops it; the
    supervisor, killed, ends the kernel with it: the block was said to
    have stopped the kernel itself."""
    whom, signum, why = FROM_OUTSIDE[stopped]
    text = HEADER + block("import time\nopen('started', 'w').close()\ntime.sleep(60)", "waits")
    write_readme(tiny, text)
    building = subprocess.Popen(["make", "tangle"], cwd=tiny, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                env=a_users_make_environment())
    try:
        assert wait_for((tiny / "started").exists, 60)
        bridge, supervisor = bridge_and_supervisor(tiny)
        (kernel,) = [child for child, parent in kernel_supervisor.process_table().items()
                     if parent == supervisor]
        pid = {"bridge": bridge, "supervisor": supervisor, "kernel": kernel}[whom]
        os.kill(pid, signum)
        _, said = building.communicate(timeout=60)
        assert building.returncode != 0
        assert f"README.org:{line_of(text, 'waits')}: block `waits' lost its kernel: {why}" in said, said
        assert wait_for(lambda: not processes_in(tiny), 20), processes_in(tiny)
    finally:
        building.kill()
        building.wait()


@pytest.mark.parametrize("who, when", [("the kernel", "before the block"),
                                       ("the kernel", "while it runs"),
                                       ("the kernel's supervisor", "while it runs")])
def test_a_kernel_held_stopped_past_a_time_limit_is_lost_not_blamed_on_the_block(
        bridge, who, when):
    """A kernel held stopped (kill -STOP, a debugger) takes no interrupt,
    nor one killed while its supervisor is held stopped, which then tells
    of no end: the block that ran out of time was said to have stopped
    the kernel, having run past its limit and ignored the interrupt."""
    kernel = bridge.ready()
    stopped = kernel if who == "the kernel" else kernel_supervisor.process_table()[kernel]
    if when == "before the block":
        os.kill(stopped, signal.SIGSTOP)
    bridge.send("import time\ntime.sleep(0.5 if __name__ else 0)\nprint('ran')", timeout=1)
    if when == "while it runs":
        time.sleep(0.2)
        os.kill(stopped, signal.SIGSTOP)
    if who != "the kernel":
        os.kill(kernel, signal.SIGKILL)
    reply = bridge.reply()
    assert (reply["ok"], reply["kind"], reply["killed"]) == (False, "died", True), reply
    assert reply["error"] == (f"{who} was held stopped from outside (SIGSTOP) when the block's "
                              "time limit of 1 s ran out, so the kernel was killed"), reply
    assert wait_for(lambda: not alive(kernel), 30)


def test_pytest_stopped_by_sigterm_tears_its_fixtures_down(tmp_path):
    """A CI's timeout, kill or pkill ends pytest with SIGTERM: it stops as
    on Ctrl-C, through the fixtures' teardown, rather than die and leave
    the Emacsen, X servers and kernels they started running."""
    (tmp_path / "test_waiting.py").write_text(WAITING_TEST)
    pid_file = tmp_path / "child.pid"
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:xdist", "-p", "no:cacheprovider",
         "-p", "conftest", "test_waiting.py"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=dict(os.environ, CHILD_PID=str(pid_file),
                 PYTHONPATH=str(ROOT / "tests") + os.pathsep + str(ROOT / "tools")))
    try:
        assert wait_for(pid_file.exists, 120), run.communicate()[0]
        child = int(pid_file.read_text())
        run.send_signal(signal.SIGTERM)
        output = run.communicate(timeout=60)[0]
        assert wait_for(lambda: not alive(child), 10), f"the fixture's process lives on:\n{output}"
    finally:
        run.kill()
        run.wait()
        if pid_file.exists() and alive(int(pid_file.read_text())):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
