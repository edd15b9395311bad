"""Shared fixtures: the notes as the build read them (.build/produced/,
which `make test` brings up to date first), and the imported gradients.py;
and for the tooling's tests in tooling/, ways to drive Emacs."""

import ast
import contextlib
import importlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.org"
sys.path.insert(0, str(ROOT / "tools"))

import kernel_supervisor  # noqa: E402
import produced  # noqa: E402

# No test may open a window or depend on one; Matplotlib then draws with
# Agg in this process, and kernels pick their own inline backend.
os.environ.pop("DISPLAY", None)
os.environ.pop("MPLBACKEND", None)


def make_environment():
    """This environment for a make started from a test run: without the
    jobserver of the make that started pytest, whose pipe this process
    does not pass on; its variables (EMACS=...) stay."""
    env = dict(os.environ)
    flags = [flag for flag in env.get("MAKEFLAGS", "").split(" ")
             if not flag.startswith(("--jobserver", "-j"))]
    env["MAKEFLAGS"] = " ".join(flags)
    return env


def a_users_make_environment(env=None):
    """ENV (by default this process's) as a make typed in a shell sees it:
    without the variables through which the make that started pytest hands
    its options down (`make -s check` would silence the make of every test,
    `-n` would run none of it, `-k`, `-B`, its jobserver, its level...),
    nor MAKEFILES.  What the Makefile exports (EMACS=...) stays."""
    env = dict(os.environ if env is None else env)
    for name in list(env):
        if name.startswith(("MAKE", "GNUMAKE")) or name == "MFLAGS":
            del env[name]
    return env


def make(*args, cwd, env=None, timeout=300, **options):
    """Run make in CWD as a user would, its output captured as text.  As
    typed, with no option but those given: the Makefile's own reading of
    MAKEFLAGS differs with none at all."""
    return subprocess.run(["make", *args], cwd=cwd,
                          env=a_users_make_environment(env), capture_output=True,
                          text=True, timeout=timeout, **options)


def start_make(*args, cwd):
    """Start make in CWD as a user would in a terminal, in a session of its
    own (for Ctrl-C: os.killpg(process.pid, SIGINT)), its errors kept."""
    return subprocess.Popen(["make", *args], cwd=cwd,
                            env=a_users_make_environment(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=ctrl_c_as_in_a_terminal)


@contextlib.contextmanager
def as_in_a_kernel():
    """This process's environment, while gradients.py or what it imports is
    imported, as a kernel's (kernel_environment in tools/kernel_bridge.py):
    a MATPLOTLIBRC, an FC_DEBUG or a ~/.config/matplotlib/matplotlibrc of
    the caller's would change what the module prints or draws here and not
    in the build.  Matplotlib's backend is left to choose: the script alone
    has no kernel to draw inline into.  Its standard input is at its end,
    as a kernel's: a block that read it was refused by pytest's capture
    (found by probing), where the kernel gave it nothing."""
    from kernel_bridge import kernel_environment
    kept = dict(os.environ)
    kept_input, kept_descriptor = sys.stdin, os.dup(0)
    try:
        os.environ.clear()
        os.environ.update(kernel_environment(kept))
        del os.environ["MPLBACKEND"]
        with open(os.devnull) as nothing:
            os.dup2(nothing.fileno(), 0)
            sys.stdin = nothing
            yield
    finally:
        os.environ.clear()
        os.environ.update(kept)
        sys.stdin = kept_input
        os.dup2(kept_descriptor, 0)
        os.close(kept_descriptor)


def import_what_gradients_imports(pointless=lambda: False):
    """Import the libraries gradients.py imports at its top (NumPy,
    Matplotlib...): most of the time its import takes.  Named by the
    committed file itself, read as Python; one that fails to import is
    left for the import of gradients.py to report.  Once POINTLESS() is
    true, the rest are left: a build that failed at once (an EMACS that
    is not one) had the failing make wait a second for Matplotlib."""
    try:
        tree = ast.parse((ROOT / "gradients.py").read_bytes())
    except (OSError, SyntaxError):
        return
    with as_in_a_kernel():
        for statement in tree.body:
            if isinstance(statement, ast.Import):
                names = [alias.name for alias in statement.names]
            elif isinstance(statement, ast.ImportFrom) and statement.level == 0:
                names = [statement.module]
            else:
                continue
            for name in names:
                if pointless():
                    return
                with contextlib.suppress(Exception), contextlib.redirect_stdout(io.StringIO()), \
                     contextlib.redirect_stderr(io.StringIO()):
                    importlib.import_module(name)


def passed_on(descriptor):
    """The writing end of a pipe whose reading end a thread copies to this
    process's DESCRIPTOR as it comes, and that thread, which ends with
    the pipe.  Once the copy fails (its reader gone, or it closed), the
    rest is read and dropped: whoever writes never dies of SIGPIPE, nor
    waits on a full pipe."""
    reading, writing = os.pipe()

    def copy():
        target = descriptor
        with open(reading, "rb", buffering=0) as source:
            while chunk := source.read(65536):
                while target is not None and chunk:
                    try:
                        chunk = chunk[os.write(target, chunk):]
                    except OSError:
                        target = None
    thread = threading.Thread(target=copy, daemon=True)
    thread.start()
    return writing, thread


# The signals that asked this run to stop.  Each is raised where it lands,
# as a KeyboardInterrupt, and code that catches every exception swallows
# it there (one library's import in some hundred, caught by CI as SIGTERM
# to make): the run looks again between its steps (stop_if_asked).
STOPS_ASKED = []
STOPPING_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


# Non-empty while a stop is only noted, to be raised once there is
# something to stop: a signal raised as the build was started ended pytest
# before it knew the build, which ran on, holding the checkout's lock.
STOPS_HELD = []


def stop_as_on_ctrl_c(signum, frame):
    STOPS_ASKED.append(signum)
    if not STOPS_HELD:
        raise KeyboardInterrupt(f"stopped by signal {signum}")


@contextlib.contextmanager
def stops_held():
    STOPS_HELD.append(True)
    try:
        yield
    finally:
        STOPS_HELD.pop()


def stop_if_asked():
    """Stop, as the signal asked, if one did and was swallowed."""
    if STOPS_ASKED:
        raise KeyboardInterrupt(f"stopped by signal {STOPS_ASKED[0]}")


def stop_on_signals():
    """SIGTERM (a CI's timeout, kill, pkill) and SIGHUP (the terminal
    closed) end pytest as Ctrl-C does, through every fixture's teardown:
    by default it dies at once, and the Emacsen, X servers and kernels the
    fixtures started live on, as does the build it waits for.  A signal
    the caller ignores stays ignored (nohup, a job started in the
    background, which ignores SIGINT)."""
    for each in STOPPING_SIGNALS:
        if signal.getsignal(each) != signal.SIG_IGN:
            signal.signal(each, stop_as_on_ctrl_c)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    stop_if_asked()


def pytest_configure(config):
    """Bring .build/produced/ up to date with README.org (make, the one
    judge of what is stale, runs the build only if something changed):
    the checks compare against it.  The libraries gradients.py needs are
    imported meanwhile, so that the test run and the build overlap.  In
    xdist's workers, the controller did this already."""
    stop_on_signals()
    if hasattr(config, "workerinput"):
        return
    # After any build under way (a `make run` in another terminal): make
    # would find the first half of its work up to date, and the tests read
    # the checkout before its end.
    # In a process group of its own, which a stopped run stops: left to
    # itself, the build ran on after pytest was gone, holding the
    # checkout's lock.  With SIGTERM, which the build takes as it takes
    # Ctrl-C: SIGINT is ignored by whatever a script starts in the
    # background, and ran on too.
    # Its output passed on, not inherited: a reader that stopped reading
    # (`make test | head`) killed the make with SIGPIPE at its first line,
    # and the tests stopped, blaming the build.
    # And told to stop (SIGTERM) when pytest ends, however it ends: killed,
    # or Ctrl-\ (SIGQUIT), which no handler of Python's sees.  The shell
    # that takes it hands it to its whole group: the wait for another
    # build's lock, left alone, waited on and then ran the build.  (The
    # wait goes in the background: a shell runs its traps only once the
    # command in the foreground is done.)
    pytest_pid = os.getpid()

    def ends_with_pytest():
        if not kernel_supervisor.die_with_parent(signal.SIGTERM, pytest_pid):
            os._exit(128 + signal.SIGTERM)

    with stops_held():
        (output, output_copied), (error, error_copied) = passed_on(1), passed_on(2)
        try:
            build = subprocess.Popen(
                ["sh", "-c",
                 "trap 'trap - TERM; kill -TERM 0' TERM; sh tools/one-build-at-a-time true & "
                 'wait $! && exec make --no-print-directory "$1"',
                 "sh", str(produced.FOLDER / "blocks.json")],
                cwd=ROOT, env=make_environment(), process_group=0, stdout=output, stderr=error,
                preexec_fn=ends_with_pytest)
        finally:
            os.close(output)
            os.close(error)
    try:
        stop_if_asked()
        # The tooling's suite alone (make check) never imports gradients.py.
        tooling = Path(__file__).parent / "tooling"
        if not all(Path(arg.split("::")[0]).resolve().is_relative_to(tooling)
                   for arg in config.args):
            import_what_gradients_imports(pointless=lambda: build.poll() not in (None, 0))
            stop_if_asked()
        status = build.wait()
        # Its last words before the tests' first: the pipes end with the
        # build, unless something it left running still holds them.
        output_copied.join(timeout=5)
        error_copied.join(timeout=5)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(build.pid, signal.SIGTERM)
        build.wait()
        raise
    if status != 0:
        pytest.exit("the build of README.org failed (make said why, above)", returncode=2)


def pytest_collection_modifyitems(items):
    """Tests marked long start first.  pytest-xdist hands tests to its
    workers in this order, and one long test handed out last runs alone
    while the other workers, done, wait: longest first, the workers end
    together."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


def pytest_sessionstart(session):
    """Notes the build has not read as they are now (README.org saved while
    it ran) stop the run at once, with one line, instead of every test
    failing on them."""
    try:
        produced.load()
    except produced.Stale as error:
        pytest.exit(str(error), returncode=1)


@pytest.fixture(scope="session")
def doc():
    return produced.load()


def committed_output_problem(notes, output, modes=True):
    """Why the committed OUTPUT is not what NOTES build now, in one line
    that names it and says what to do; None when it is.  MODES false, only
    its bytes count."""
    committed, built = ROOT / output, notes.folder / output
    if output not in notes.outputs:
        return f"README.org makes no {output} (no block tangles or draws it)"
    if not committed.exists():
        return f"{output} is missing: run `make tangle`"
    if committed.read_bytes() != built.read_bytes():
        return f"{output} is not what README.org builds now: run `make tangle`"
    # Lost to a copy or a checkout that keeps no modes; the bytes are
    # right, so make tangle, going by times and bytes, would do nothing.
    if modes and os.access(built, os.X_OK) and not os.access(committed, os.X_OK):
        return f"{output} is not executable, as README.org builds it: run `chmod +x {output}`"
    return None


# Each problem a test failed on, with that test: every other test that
# meets it is skipped, naming the one that failed.  A gradients.py out of
# date or failing on import otherwise failed each of the 49 tests that
# use it, in as many lines saying the same.  The run still fails, once.
FAILED_ON = {}
SKIPPED_AS_FAILED = set()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A test skipped by fail_once is said to be skipped there, so that the
    summary gathers them all in one line, not one a test function."""
    report = (yield).get_result()
    if report.skipped and isinstance(report.longrepr, tuple) and \
       report.longrepr[2].removeprefix("Skipped: ") in SKIPPED_AS_FAILED:
        report.longrepr = (__file__, fail_once.__code__.co_firstlineno, report.longrepr[2])


def running_test():
    """The node id of the test running now."""
    return os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]


def failing_on(problem):
    """Note that the running test fails on PROBLEM, unless an earlier one
    did; the test that did, first."""
    return FAILED_ON.setdefault(problem, running_test())


def fail_once(problem):
    """Fail the running test on PROBLEM, one line; or, if an earlier test
    failed on it, skip this one, naming that test."""
    first = failing_on(problem)
    if first != running_test():
        reason = f"{problem} (as {first} failed, above)"
        SKIPPED_AS_FAILED.add(reason)
        pytest.skip(reason)
    pytest.fail(problem, pytrace=False)


def committed(output, modes=True):
    """The path of the committed OUTPUT, once it is what the notes build
    now; failing that, the test fails in the line saying why.  Checks of
    a missing or stale file would each fail in their own words (an
    ImportError, a FileNotFoundError, an old function's wrong answer)."""
    problem = committed_output_problem(produced.load(), output, modes)
    if problem:
        fail_once(problem)
    return ROOT / output


def import_failure(error):
    """What the import of gradients.py raising ERROR says: the error, its
    line in gradients.py, and the block of README.org that line is from."""
    tangled = str(ROOT / "gradients.py")
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename == tangled]
    where = ""
    if frames:
        line = (frames[-1].line or "").strip()
        blocks = [b for b in produced.load().jupyter_blocks() if line and line in b.code]
        where = f", at its line {frames[-1].lineno}" + (
            f", from {blocks[0].where()}" if len(blocks) == 1 else "")
    return (f"gradients.py raised {type(error).__name__}: {error} as it was imported{where}; "
            "does it need a block that is not tangled (:tangle no)?")


@contextlib.contextmanager
def written_to_descriptors(written):
    """Gather what is written to file descriptors 1 and 2 meanwhile, by
    print(), os.write or a subprocess alike and in the order written, into
    WRITTEN["stdout"] and WRITTEN["stderr"] (text decoded as the bridge
    decodes a kernel's, and as it passes a block's printed text on).  sys.stdout and sys.stderr write through to them."""
    # Here, not at the top: the tooling's workers never need the bridge.
    from kernel_bridge import readable_by_emacs
    saved_streams = sys.stdout, sys.stderr
    files, saved = {}, {}
    try:
        for name, descriptor in (("stdout", 1), ("stderr", 2)):
            files[name] = tempfile.TemporaryFile()
            saved[descriptor] = os.dup(descriptor)
            os.dup2(files[name].fileno(), descriptor)
        sys.stdout, sys.stderr = (
            io.TextIOWrapper(os.fdopen(os.dup(descriptor), "wb", buffering=0),
                             encoding="utf-8", errors="surrogateescape", write_through=True)
            for descriptor in (1, 2))
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            if stream not in saved_streams:
                stream.close()
        sys.stdout, sys.stderr = saved_streams
        for descriptor, copy in saved.items():
            os.dup2(copy, descriptor)
            os.close(copy)
        for name, file in files.items():
            file.seek(0)
            written[name] = readable_by_emacs(file.read().decode("utf-8", "replace"))
            file.close()


def as_a_script_shows_warnings():
    """Python's default warning filters, the module gradients taken for the
    script it is when run (__main__)."""
    warnings.resetwarnings()
    warnings.simplefilter("default")
    for category in (ResourceWarning, ImportWarning, PendingDeprecationWarning,
                     DeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
    warnings.filterwarnings("default", category=DeprecationWarning, module="gradients")


@pytest.fixture
def gradients(imported_gradients):
    """The tangled module, imported; what it writes on import is kept."""
    module, problem = imported_gradients
    if problem:
        fail_once(problem)
    return module


@pytest.fixture(scope="session")
def imported_gradients():
    """The tangled module and None; or None and why it cannot be imported,
    in one line: not its traceback and gradients.py's source."""
    problem = committed_output_problem(produced.load(), "gradients.py", modes=False)
    if problem:
        return None, problem
    written = {}
    sys.path.insert(0, str(ROOT))
    # The document's own code leaves no bytecode beside README.org; the
    # tests' own, rewritten by pytest, is kept in tests/__pycache__/.
    writes_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        # pytest takes every warning raised during a test for its summary,
        # under filters of its own: they are taken here instead, under
        # Python's, as the script run on its own would show them.
        with as_in_a_kernel(), written_to_descriptors(written), \
             warnings.catch_warnings(record=True) as raised:
            as_a_script_shows_warnings()
            module = importlib.import_module("gradients")
    except Exception as error:
        return None, import_failure(error)
    finally:
        sys.dont_write_bytecode = writes_bytecode
        sys.path.remove(str(ROOT))
    module.printed_on_import = written["stdout"]
    module.warned_on_import = written["stderr"] + "".join(
        warnings.formatwarning(w.message, w.category, w.filename, w.lineno, w.line)
        for w in raised)
    return module, None


# The Emacs under test, as `make test EMACS=...` names it; an Org on
# EMACSLOADPATH reaches it through the environment.
EMACS = os.environ.get("EMACS", "emacs")


def client_of(emacs):
    """EMACS's own emacsclient, where it has one beside it (Emacs 30 in
    /opt), or the one on the PATH."""
    client = os.path.join(os.path.dirname(shutil.which(emacs) or emacs), "emacsclient")
    return client if os.access(client, os.X_OK) else "emacsclient"


EMACSCLIENT = client_of(EMACS)


# For the interactive Emacsen the tests start (a daemon, one in tmux): a
# native-compiling Emacs would otherwise compile Org and friends in the
# background, at the expense of every test running beside it; and with
# Emacs's own garbage-collection threshold, loading Org collects fifteen
# times, each a scan of the whole Emacs (half a second), as the build
# would without its own (tools/build.el).  What the tests check is what
# the executor does, not how often Emacs collects.
TEST_EMACS_SETTINGS = ("(setq native-comp-deferred-compilation nil"
                       " native-comp-jit-compilation nil"
                       " gc-cons-threshold (* 64 1024 1024))")


def ctrl_c_as_in_a_terminal():
    """For a child process: Ctrl-C (SIGINT) stops it, as in a terminal, even
    when the tests were started where SIGINT is ignored (a background job
    of a script), which the child would inherit."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def emacs(*args, cwd=ROOT, check=True, timeout=120, env=None):
    """Run Emacs in batch mode the way the Makefile does, with the tests'
    settings (in ENV, by default this process's environment)."""
    return subprocess.run(
        [EMACS, "-Q", "--batch", "--eval", TEST_EMACS_SETTINGS, *args], cwd=cwd,
        capture_output=True, text=True, check=check, timeout=timeout, env=env,
        preexec_fn=ctrl_c_as_in_a_terminal)


def pytest_report_header(config):
    try:
        notes = produced.load()
    except produced.Stale:
        return None
    return f"README.org read by Emacs {notes.emacs}, Org {notes.org} ({EMACS})"


class EmacsServer:
    """The client's side of an Emacs serving the socket `emacs-server` in
    FOLDER: Lisp evaluated in it, and whether it answers."""

    def __init__(self, folder, emacs=EMACS):
        self.folder = folder
        self.socket = folder / "emacs-server"
        self.client = client_of(emacs)
        # Emacs's own temporary files (Org's babel-XXXX folder, which an
        # interactive Emacs makes as it loads Org and removes as it exits)
        # beside FOLDER: an Emacs a test kills leaves them there, not in /tmp.
        temporary = folder.parent / f"{folder.name}-emacs-tmp"
        temporary.mkdir(exist_ok=True)
        self.settings = (f"(progn {TEST_EMACS_SETTINGS}"
                         f" (setq temporary-file-directory {json.dumps(str(temporary) + '/')}))")

    def answers(self):
        if not self.socket.exists():
            return False
        try:
            return subprocess.run([self.client, "-s", str(self.socket), "-e", "t"],
                                  capture_output=True, timeout=10).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def state(self):
        """What to say of the Emacs when a call fails."""
        return ""

    def wait_until_it_answers(self):
        # Its socket is made a moment before it listens.  Generous: a
        # loaded machine, a fresh HOME.
        assert wait_for(self.answers, 60), f"the Emacs server did not start; {self.state()}"

    def __call__(self, expression, timeout=60):
        """Evaluate EXPRESSION; return its value, read back into Python
        through JSON in a file (emacsclient's own output breaks long lines)."""
        answer = self.folder / "answer.json"
        run = subprocess.run(
            [self.client, "-s", str(self.socket), "-e",
             f"(let ((value {expression})) (require 'json)"
             f" (with-temp-file {json.dumps(str(answer))} (insert (json-encode value))) t)"],
            # The client's folder becomes the folder the expression runs in.
            cwd=self.folder, capture_output=True, text=True, timeout=timeout)
        assert run.returncode == 0, f"{run.stderr}\n{self.state()}"
        return json.loads(answer.read_text())


class Daemon(EmacsServer):
    """An Emacs serving the socket `emacs-server` in FOLDER.  By default a
    daemon of the Emacs under test; ARGS given instead must start the
    server themselves.  The tests' settings come first either way."""

    def __init__(self, folder, emacs=EMACS, args=None, env=None):
        super().__init__(folder, emacs)
        self.log = folder / "emacs-stderr.log"
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                [emacs, "-Q", "--eval", self.settings,
                 *(args or [f"--fg-daemon={self.socket}"])],
                cwd=folder, env=env,
                stdout=subprocess.DEVNULL, stderr=log)
        self.wait_until_it_answers()

    def state(self):
        status = self.process.poll()
        return (("it runs" if status is None else f"it exited with {status}")
                + f", having written:\n{self.log.read_text()}")

    def close(self):
        try:
            subprocess.run([self.client, "-s", str(self.socket), "-e", "(kill-emacs)"],
                           capture_output=True, timeout=10)
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


class TerminalEmacs(EmacsServer):
    """`emacs -nw` of the Emacs under test as the author runs it, in a
    160x45 terminal of a tmux server of its own, in the project FOLDER,
    with the executor loaded and then SETUP (Lisp) evaluated."""

    SETUP = """;;; -*- lexical-binding: t -*-
{test_emacs_settings}
(setq org-modules nil server-name {socket})
(server-start)
(load-file "tools/ob-gradients.el")
(setq org-confirm-babel-evaluate nil)
{setup}
"""

    def __init__(self, folder, setup):
        super().__init__(folder)
        (folder / "setup.el").write_text(self.SETUP.format(
            test_emacs_settings=self.settings,
            socket=json.dumps(str(self.socket)), setup=setup))
        self.tmux = ["tmux", "-L", f"gradients-{os.getpid()}-{id(self)}"]
        subprocess.run([*self.tmux, "new-session", "-d", "-x", "160", "-y", "45",
                        "-c", str(folder), f"{EMACS} -nw -Q -l setup.el"],
                       check=True, env=dict(os.environ, TERM="xterm-256color"))
        self.wait_until_it_answers()

    def keys(self, *names):
        subprocess.run([*self.tmux, "send-keys", *names], check=True)

    def screen(self):
        """The terminal's text; nothing once Emacs has quit, and its tmux."""
        return subprocess.run([*self.tmux, "capture-pane", "-p"],
                              capture_output=True, text=True).stdout

    def state(self):
        return f"the screen:\n{self.screen()}"

    def until(self, probe, what, seconds=30):
        """PROBE's first true value within SECONDS; failing, WHAT and the screen."""
        value = wait_for(probe, seconds)
        assert value, f"{what}; {self.state()}"
        return value

    def close(self):
        subprocess.run([*self.tmux, "kill-server"], capture_output=True)


def copy_project(folder):
    """Copy the project's tracked files into FOLDER, with a link to the real
    venv and its stamp, a copy of the kernels' caches and of the programs
    known to be the packages'; return FOLDER."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.split("\0")
    for name in filter(None, tracked):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, folder / name)
    (folder / ".venv").symlink_to(ROOT / ".venv")
    # As in a checkout built before: without Matplotlib's list of the
    # machine's fonts, the first kernel of every copy that imports it
    # would spend half a second making the list again.  A cache only: what
    # a build produces does not depend on it.
    caches = ROOT / ".build" / "kernel"
    if caches.is_dir():
        shutil.copytree(caches, folder / ".build" / "kernel", symlinks=True)
    # And the programs found to be the packages' (tools/require-debian-packages)
    # and those make runs by name (tools/programs-answer), each noted by
    # the file it is: asking Emacs again costs a start of it in every copy
    # that builds, asking the others two dozen processes.
    for name in ("answered", "programs-answered"):
        answered = ROOT / ".build" / name
        if answered.is_file():
            (folder / ".build").mkdir(exist_ok=True)
            shutil.copy2(answered, folder / ".build" / name)
    return folder


def a_path_of_what_make_names(folder, *programs):
    """FOLDER made a PATH of links to the programs the Makefile says make
    runs (NEEDED_PROGRAMS), and to PROGRAMS: a recipe that runs another
    program fails there.  Debian's python3, not a shim in front of it."""
    named = make("-s", "--eval", "print-needed: ; @echo $(NEEDED_PROGRAMS)", "print-needed",
                 cwd=ROOT).stdout.split()
    assert "grep" in named, named
    for program in {*named, *programs}:
        found = "/usr/bin/python3" if program == "python3" else shutil.which(program)
        (folder / program).symlink_to(found)
    return str(folder)


def with_the_checkouts_build(folder):
    """FOLDER, a copy of the project, given the checkout's kept kernel run
    and stamps, with their times: make then has nothing to do there."""
    shutil.copytree(ROOT / ".build" / "produced", folder / ".build" / "produced")
    for stamp in ("outputs", "outputs.sha256", "emacs-id"):
        if (ROOT / ".build" / stamp).exists():
            shutil.copy2(ROOT / ".build" / stamp, folder / ".build" / stamp)
    return folder


@pytest.fixture
def project_copy(tmp_path):
    """A copy of the files the build reads and writes, with the real venv."""
    return copy_project(tmp_path)


@pytest.fixture
def tiny(project_copy):
    """A copy of the project, for a README.org of the test's own (see
    tiny_notes.py)."""
    return project_copy


# Lisp for a daemon shared by tests that each write README.org anew: the
# buffer of an earlier test's notes goes, unsaved, so that the next visit
# reads the file as it is now.
FORGET_THE_NOTES_BUFFER = """(let ((earlier (get-file-buffer "README.org")))
    (when earlier
      (with-current-buffer earlier (set-buffer-modified-p nil))
      (kill-buffer earlier)))"""


def command_line(pid):
    """The command line process PID runs, its words joined by spaces; ""
    once it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return ""


def alive(pid):
    """Whether process PID runs (a zombie has finished)."""
    fields = kernel_supervisor.process_status(pid)
    return fields is not None and fields[0] != b"Z"


class Bridge:
    """A kernel bridge as Emacs runs it, in FOLDER, in the environment ENV
    (this process's by default); its error output in FOLDER."""

    def __init__(self, folder, env=None):
        self.folder = folder
        self.stderr = open(folder / "bridge-stderr.log", "w")
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "tools" / "kernel_bridge.py")], cwd=folder,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True,
            env=env)
        self.pid = self.process.pid
        self.seen = {self.pid}

    def look(self):
        """Note every process below the bridge now; return them."""
        found = kernel_supervisor.descendants(self.pid)
        self.seen |= found
        return found

    def said(self):
        """The bridge's next line but those saying it is alive; None at
        the end of its output."""
        while True:
            line = self.process.stdout.readline()
            if not line:
                return None
            said = json.loads(line)
            if said != {"alive": True}:
                return said

    def ready(self):
        said = self.said()
        assert said, f"the bridge ended before its kernel was ready: {self.log()}"
        assert said["ready"], said
        kernel = said["kernel_pid"]
        self.look()
        assert kernel in self.seen
        return kernel

    def send(self, code, id=1, **options):
        self.process.stdin.write(json.dumps({"id": id, "code": code, **options}) + "\n")
        self.process.stdin.flush()

    def interrupt(self, id):
        """Ask the bridge to interrupt request ID, as Emacs does."""
        self.process.stdin.write(json.dumps({"interrupt": id}) + "\n")
        self.process.stdin.flush()

    def reply(self):
        said = self.said()
        assert said, f"the bridge ended without a reply: {self.log()}"
        return said

    def close_input(self):
        self.process.stdin.close()

    def signal(self, signum):
        self.process.send_signal(signum)

    def log(self):
        return (self.folder / "bridge-stderr.log").read_text()

    def kill(self):
        self.process.kill()
        self.process.wait()
        self.stderr.close()


def gone(pid, seconds=3):
    """Whether process PID has finished, or does within SECONDS."""
    deadline = time.monotonic() + seconds
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


def wait_for(probe, seconds=10, every=0.1):
    """PROBE's first true value within SECONDS, asked EVERY so many, or
    its last false one."""
    deadline = time.monotonic() + seconds
    while not (value := probe()) and time.monotonic() < deadline:
        time.sleep(every)
    return value


# For the tests' interactive Emacsen: whether a block of the executor's
# sessions runs or waits to run.
TEST_BUSY = r"""
  (defun test-busy ()
    (and (cl-some (lambda (session)
                    (let ((process (cdr session)))
                      (or (process-get process 'current) (process-get process 'queue))))
                  gradients--sessions)
         t))
"""


def the_build_uv():
    """The uv the project's make uses, as an absolute path; made as make
    makes it when the machine has none and the checkout has not made it
    yet (a checkout whose venv came from elsewhere)."""
    uv = ROOT / make("-s", "--eval", "print-uv: ; @echo $(UV)", "print-uv",
                     cwd=ROOT).stdout.strip()
    if not uv.exists():
        made = make(str(uv.relative_to(ROOT)), cwd=ROOT)
        assert made.returncode == 0, made.stdout + made.stderr
    return uv


def small_project(folder):
    """The build's files in FOLDER, with a lock of graphviz alone: enough
    for make to make a venv, in seconds."""
    for name in ("Makefile", "README.org", "pyproject.toml", "tools/require-debian-packages",
                 "tools/one-build-at-a-time", "tools/programs-answer",
                 "tools/uv-requirements.txt"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, folder / name)
    lock = (ROOT / "requirements.lock").read_text()
    graphviz = re.search(r"^graphviz==.*?(?=\n\S)", lock, re.M | re.S).group()
    # With the line that says which pyproject.toml the lock comes from.
    (folder / "requirements.lock").write_text(f"{graphviz}\n{lock.splitlines()[-1]}\n")
    return folder
