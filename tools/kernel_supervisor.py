"""Run a kernel so that nothing it starts can outlive it or its bridge.

    python kernel_supervisor.py BRIDGE_PID COMMAND...

The bridge starts this program in place of the kernel; it starts COMMAND
(the kernel) as its only child and stays above it until the end.  Linux
hands it every process that leaves the kernel's family (a child subreaper):
a process started in a session of its own, `setsid ... &`, or the
grandchild of a double fork all end up below it, where they can be found.

It ends, killing every process below it, when the kernel ends (exit(), a
crash, the bridge's shutdown), when it is told to (SIGTERM or SIGHUP), or
when the bridge is gone, however it went: even a bridge killed by SIGKILL
sends it SIGTERM as it dies (a parent-death signal).  The kernel in turn
gets SIGKILL if this process dies first.

The same `kill_tree` serves the bridge, which adopts orphans too, in case
this process was itself killed without a chance to clean up.
"""

import ctypes
import os
import signal
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

# Signals that end the supervision, and the one that says a child ended.
STOPPING = {signal.SIGTERM, signal.SIGHUP}

# The exit code of a supervision ended by one of those: a kernel's own
# maps to 0-127, or 128 and a signal's number (`exit_code').
TOLD_TO_STOP = 250

# How long kill_tree insists on processes that SIGKILL does not end at once
# (an uninterruptible wait on a disk or a network file system).
KILL_PATIENCE = 10


def prctl(option, value):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def adopt_orphans():
    """Become the process that inherits every orphan below this one,
    instead of init."""
    prctl(PR_SET_CHILD_SUBREAPER, 1)


def die_with_parent(signum, parent):
    """Get SIGNUM when the parent dies; False if PARENT is gone already
    (it died before the request could be made, and never will again)."""
    prctl(PR_SET_PDEATHSIG, signum)
    return os.getppid() == parent


def process_status(pid):
    """The fields of /proc/PID/stat after the command name (state first,
    parent second, start time at index 19), as bytes; None once PID is
    gone.  A process can end between any two steps of reading its entry:
    the open then fails with FileNotFoundError, the read after a good open
    with ProcessLookupError, and either is the same news."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            text = stat.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name, in parentheses, may hold anything, ") " included.
    _, closing, fields = text.rpartition(b") ")
    return fields.split() if closing else None


# The variable that gives the kernel the descriptor of the file it counts
# its interrupts in (see tools/kernel_bridge.py), which stays open for it.
INTERRUPTS_TAKEN = "GRADIENTS_INTERRUPTS_TAKEN"

# Fields of process_status, by index.
PARENT, PROCESS_GROUP = 1, 2


def process_table(field=PARENT):
    """{pid: its FIELD of process_status, a number: by default its parent's
    pid} of every process but zombies, which have ended and have no
    children any more."""
    table = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (fields := process_status(name)) and fields[0] != b"Z":
            table[int(name)] = int(fields[field])
    return table


def descendants(root, table=None):
    """Every live process below ROOT."""
    children = {}
    for pid, parent in (process_table() if table is None else table).items():
        children.setdefault(parent, []).append(pid)
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def kill_below(pids, root):
    """SIGKILL those of PIDS that are still processes below ROOT.  Each is
    signalled through a pidfd, opened before ROOT's family is looked at
    again: a number then names one process for good, so that a stranger
    given the number of a process that ended meanwhile is not killed."""
    handles = {}
    for pid in pids:
        try:
            handles[pid] = os.pidfd_open(pid)
        except ProcessLookupError:
            pass
        except OSError:   # no pidfds (an old kernel): the small risk remains
            handles[pid] = None
    try:
        for pid in descendants(root) & handles.keys():
            try:
                if handles[pid] is None:
                    os.kill(pid, signal.SIGKILL)
                else:
                    signal.pidfd_send_signal(handles[pid], signal.SIGKILL)
            except ProcessLookupError:
                pass
    finally:
        for handle in handles.values():
            if handle is not None:
                os.close(handle)


def reap_children():
    """Collect the children of this process that ended; return
    {pid: wait status}."""
    ended = {}
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return ended
        if pid == 0:
            return ended
        ended[pid] = status


def kill_tree(root, reap=False):
    """Kill every process below ROOT, until none is left: one that forks
    meanwhile has its child found on the next pass (below ROOT still, when
    ROOT adopts orphans).  With REAP (ROOT is this process), collect the
    children that ended, so that none is left a zombie.  True when nothing
    is left."""
    deadline = time.monotonic() + KILL_PATIENCE
    while True:
        found = descendants(root)
        if not found:
            return True
        kill_below(found, root)
        if reap:
            reap_children()
        if time.monotonic() > deadline:
            return not descendants(root)
        time.sleep(0.01)


def exit_code(status):
    """The code of a process that ended with wait STATUS, as a shell
    gives it."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def supervise(bridge, command):
    """Run COMMAND until it ends, this process is told to stop, or BRIDGE
    (the parent) is gone; then kill everything below.  Return the
    command's exit code (1 if it was still running)."""
    # Blocked, the stopping signals wait until asked for: one that comes
    # at any moment, even before the kernel starts, is not lost.
    watched = STOPPING | {signal.SIGCHLD}
    unblocked = signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    # Jupyter interrupts a kernel by signalling its process group, which
    # this process is part of; the interrupt is the kernel's alone.
    interrupt = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    adopt_orphans()
    if not die_with_parent(signal.SIGTERM, bridge):
        return 1
    me = os.getpid()
    kernel = os.fork()
    if kernel == 0:
        try:
            # What the bridge handed over (the build's lock) stays here: a
            # process the kernel started and left could keep it for ever.
            # All but the file the kernel counts its interrupts in, which
            # the kernel itself keeps from what it starts.
            counted = os.environ.get(INTERRUPTS_TAKEN, "")
            kept = int(counted) if counted.isdigit() else 2
            os.closerange(3, kept)
            os.closerange(max(3, kept + 1), os.sysconf("SC_OPEN_MAX"))
            signal.pthread_sigmask(signal.SIG_SETMASK, unblocked)
            signal.signal(signal.SIGINT, signal.SIG_IGN if interrupt == signal.SIG_IGN
                          else signal.SIG_DFL)
            # As subprocess does for a child: Python ignores these itself.
            for each in (signal.SIGPIPE, signal.SIGXFSZ):
                signal.signal(each, signal.SIG_DFL)
            if die_with_parent(signal.SIGKILL, me):
                os.execvp(command[0], command)
        except BaseException as error:
            print(f"kernel_supervisor: cannot run {command[0]}: {error}", file=sys.stderr)
        os._exit(127)
    code = 1
    while True:
        # Besides its parent-death signal, a bridge gone is seen within a
        # second by the change of parent: a second way that costs nothing.
        info = signal.sigtimedwait(watched, 1.0)
        if info is None:
            if os.getppid() != bridge:
                break
        elif info.si_signo == signal.SIGCHLD:
            ended = reap_children()
            if kernel in ended:
                code = exit_code(ended[kernel])
                break
        elif info.si_signo in STOPPING:
            code = TOLD_TO_STOP
            break
        # Anything else is no signal: Python 3.11's sigtimedwait, woken
        # (EINTR, as by SIGSTOP then SIGCONT) past its time, returns what
        # it never filled in, and the kernel was killed for it.
    kill_tree(me, reap=True)
    return code


if __name__ == "__main__":
    sys.exit(supervise(int(sys.argv[1]), sys.argv[2:]))
