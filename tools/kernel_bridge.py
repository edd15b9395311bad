"""Run code on a Jupyter kernel and report what it produced, for org-babel.

Emacs starts this program once per session and talks to it over a pipe,
one JSON object per line each way:

    request:  {"id": 7, "code": "...",
               "file": "images/x.png" or null,
               "write_to": "/where/the/picture/goes.png" or null,
               "timeout": seconds or null, "max_lines": 1000 or null,
               "results": the block's :results words, "wrap": whether it has a :wrap,
               "loose_pictures": {"folder": "/where/they/go", "link": "as the drawer
                                  names that folder"} or null,
               "for_the_notes": whether the build records the result,
               "tangled": the file the build tangles the block into, or null}
    reply:    {"id": 7, "ok": true,  "org": "<text for the results drawer>",
               "printed": "<what it wrote to its standard output>"}
              {"id": 7, "ok": false, "kind": KIND, "error": "<message>",
               "summary": "<its one line>", "killed": whether the kernel was
               killed from outside, no doing of the block's}

With "loose_pictures", the pictures of a block without a :file are saved
in that folder and linked from the drawer.  With "for_the_notes", what
the notes could not keep as the block made it is refused: a picture
without a :file, and a memory address, which changes on every run; and
with "tangled", a display, which the tangled script would not show.

KIND says what went wrong: "raised" (the code raised; "error" is the
traceback, "summary" its last line), "interrupted" (KeyboardInterrupt, from
an interrupt), "timeout" (the block ran past its time limit and was
interrupted), "died" (the kernel is gone, and this bridge exits right after
the reply) or "output" (the block ran, but what it produced cannot go into
the notes).  Messages other than tracebacks read on from the block's name:
"block `plot' has :file ... but displayed no image/png".  Every reply names the
request it answers, so Emacs never writes one block's result into another.

The first line the bridge prints is {"ready": true, "kernel_pid": PID}
once the kernel answers.  A line {"interrupt": ID} asks the bridge to
interrupt request ID, read even while a block runs: the bridge sends
SIGINT to the kernel, as Jupyter does, once the kernel has begun the
block (see Kernel.run), or drops the ask if the request has ended.  At
the end of its input, or on SIGTERM or SIGHUP, the bridge stops the
kernel and every process the kernel started, even in the middle of a
block, and exits.  The kernel runs below
kernel_supervisor.py, which Linux gives every process that leaves the
kernel's family, and which ends them all with the kernel, or with the
bridge, however the bridge ends (SIGKILL included).

The kernel listens on abstract Unix sockets (Linux), which live in no
folder; the connection file's folder is removed as soon as the kernel has
read it, so a bridge that is killed leaves nothing behind in /tmp.

The same functions serve the tests (`Kernel`, `execute`, `org_result`),
so what the tests compare is produced exactly as the build produces it.
"""

import ast
import base64
import collections
import ctypes
import datetime
import glob
import hashlib
import hmac
import json
import os
import queue
import re
import resource
import shutil
import signal
import site
import stat
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid

import zmq

# Emacs starts the bridge isolated (python -I), which leaves this file's
# folder off sys.path; kernel_supervisor.py lies beside it.
TOOLS_FOLDER = os.path.dirname(os.path.abspath(__file__))
if TOOLS_FOLDER not in sys.path:
    sys.path.insert(0, TOOLS_FOLDER)
import kernel_supervisor  # noqa: E402

# A picture's mime type follows from the extension of its :file; the
# build reads the same file to refuse any other extension before running.
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "pictures.json")) as table:
    MIME_BY_EXTENSION = {f".{extension}": mime for extension, mime in json.load(table).items()}

# How long an interrupted kernel gets to finish its block before it is killed.
INTERRUPT_GRACE = 5

# How long past a block's time limit a kernel that has not begun the block
# (and is not held stopped) gets to begin it: one that is busy with what
# an earlier block left (a thread that holds it, output still going out)
# or on a loaded machine.
UNBEGUN_PATIENCE = 30

# Python runs a signal's handler in the main thread, between two steps of
# its code.  A signal that the system hands to another thread (it may, when
# two come together) does not wake a main thread blocked in a wait, so the
# main thread never waits longer than this at a time.
WAKE_UP = 0.2

# A SIGINT that lands just before the kernel's main thread enters a
# blocking call (time.sleep's, at the very start of a block) only marks
# the interrupt as due: Python raises KeyboardInterrupt when the call
# returns, tens of seconds later.  So after an interrupt the main thread
# is sent this signal, whose handler does nothing: it breaks the call
# off, and Python, resuming it, raises the due KeyboardInterrupt first.
# Unlike a second SIGINT, it gives a block that caught the first
# KeyboardInterrupt no other.  It is sent only while the kernel has not
# yet raised every KeyboardInterrupt it was sent (INTERRUPTS_TAKEN), and
# for WAKE_FOR seconds at most after the SIGINT, for the block's own
# handler of SIGINT, if it has one, counts none: a block that caught the
# interrupt and went on had its waits broken off too, and some do not
# come back whole (a write returns having written part, pyzmq's recv
# starts its timeout again, so that one of over two seconds never ran
# out).  The first comes WAKE_FIRST seconds after the SIGINT, each next
# after twice as long.
WAKE_SIGNAL = signal.SIGRTMIN + 4
WAKE_FIRST = 0.05
WAKE_FOR = 5.0
# The variable that gives the kernel (and its supervisor, which keeps it
# open for the kernel) the descriptor of the file it adds a byte to for
# each KeyboardInterrupt its SIGINT handler raises: a file removed as soon
# as made, so that nothing is left of it whichever way the processes end.
INTERRUPTS_TAKEN = kernel_supervisor.INTERRUPTS_TAKEN
# Python's handler of SIGINT, which counts each KeyboardInterrupt it
# raises: ipykernel installs signal.default_int_handler while it runs a
# block, taking it from the module as it imports it.  A traceback of the
# interrupt goes through it, named COUNTING_FILE, which failure() leaves
# out: the block's own line is the last, as with Python's handler.
COUNTING_FILE = "<the kernel's count of interrupts, from tools/kernel_bridge.py>"
COUNTING_INTERRUPTS = """\
# The file it was given, not another a block opened under its number.
taken = os.fstat(interrupts_taken)
taken = (taken.st_dev, taken.st_ino)
os.set_inheritable(interrupts_taken, False)
def default_int_handler(signum, frame, raise_it=signal.default_int_handler):
    try:
        same = os.fstat(interrupts_taken)
        if (same.st_dev, same.st_ino) == taken:
            os.write(interrupts_taken, b"!")
    except OSError:
        pass
    raise_it(signum, frame)
signal.default_int_handler = default_int_handler
del default_int_handler
"""

SUPERVISOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernel_supervisor.py")

# How long the supervisor gets to kill what the kernel started (it insists
# on each process for KILL_PATIENCE) before the bridge kills it instead.
SUPERVISOR_PATIENCE = kernel_supervisor.KILL_PATIENCE + 5


# The signals a process meets through what it runs: a crash, an abort, a
# limit of the shell's.  Any other that ends a kernel was sent to it.
CRASH_SIGNALS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGABRT,
                 signal.SIGSYS, signal.SIGTRAP, signal.SIGXCPU, signal.SIGXFSZ}


class BlockError(Exception):
    """The block did not produce a result; KIND says why (see the module
    docstring), the message is for the author.  KILLED: its kernel was
    killed from outside, no doing of the block's."""

    def __init__(self, message, kind="raised", summary=None, killed=False):
        super().__init__(message)
        self.kind = kind
        self.summary = summary or message.splitlines()[0]
        self.killed = killed


class KernelDied(BlockError):
    def __init__(self, message, killed=False):
        super().__init__(message, "died", killed=killed)


class Stopped(Exception):
    """The bridge was asked to stop while its kernel started or a block ran."""


# What a block writes reaches the kernel's streams (ipykernel's OutStream,
# one for standard output, one for error output) in the order it wrote
# it, and as text the notes can hold:
# - what lands on file descriptor 1 or 2 (a subprocess, os.system,
#   os.write, a C library) is read from the pipe ipykernel puts there
#   before anything else goes into the stream, and at each flush (before a
#   display, a value, the end of the block).  ipykernel's own thread moved
#   it whenever it woke, so that a later print() came before it, into its
#   middle, or the block ended without it;
# - bytes are decoded as one text, a character split between two reads
#   whole;
# - printed text must be text UTF-8 can carry, as for the tangled script
#   on its own (PYTHONUTF8: its standard output writes a surrogate that
#   stands for a byte as that byte, and raises on any other): ipykernel
#   would take any text, fail to send it, and put the error of its own
#   failure in the block's output instead, the text lost.
# - standard output and error are sent apart, each when its own timer
#   says: a warning written before a print came after it on one run and
#   before it on the next.  Text goes into them one piece at a time, under
#   one lock for both, held from reading a pipe to writing the stream, by
#   the thread that waits on a pipe as by the block; what the other stream
#   holds is sent before a piece goes in, and before any piece, what
#   waits in both pipes is read, standard output's first.  So what a block
#   wrote before it prints is never overtaken: a subprocess's error after
#   a print came before the print, sent as the block printed again.  What
#   a program writes to both descriptors in one go is read as the pipes
#   hold it (the order of two pipes' bytes is nowhere to be read).
#   Neither the thread that sends nor a forked child takes that lock: a
#   flush waits for the first, and the second may hold a copy taken
#   mid-write.
# The file name a traceback through it gives.
STREAMS_FILE = "<the kernel's streams, from tools/kernel_bridge.py>"
KERNEL_STREAMS = """\
import codecs, os, select, sys, threading
import ipykernel.iostream
from IPython.core.interactiveshell import InteractiveShell
def streams(OutStream=ipykernel.iostream.OutStream):
    write, flush = OutStream.write, OutStream.flush
    order = threading.RLock()
    def ours():
        return [stream for stream in (sys.stdout, sys.stderr) if isinstance(stream, OutStream)]
    def unordered(stream):
        sender = getattr(stream.pub_thread, "thread", None)
        return (not stream._is_master_process()
                or (sender is not None and sender.ident == threading.get_ident()))
    def others_first(stream):
        for other in ours():
            if other is not stream:
                with other._buffer_lock:
                    pending = any(buffer.tell()
                                  for buffer in getattr(other, "_buffers", {}).values())
                if pending:
                    flush(other)
    def take_in(stream, text):
        others_first(stream)
        write(stream, text)
    def drain(stream):
        fid = getattr(stream, "_fid", None)
        if fid is None:
            return True
        while select.select([fid], [], [], 0)[0]:
            decoder = stream.__dict__.get("_gradients_decoder")
            if decoder is None:
                decoder = stream._gradients_decoder = codecs.getincrementaldecoder("utf-8")("replace")
            data = os.read(fid, 65536)
            if not data:
                return False
            text = decoder.decode(data)
            if text:
                take_in(stream, text)
            os.write(stream._original_stdstream_copy, data)
        return True
    def drain_all():
        for stream in ours():
            drain(stream)
    def watch(stream):
        while stream._should_watch:
            select.select([stream._fid], [], [])
            with order:
                for other in ours():
                    if other is not stream:
                        drain(other)
                if not drain(stream):
                    return
    def checked_write(stream, text):
        if isinstance(text, str):
            # Printed text UTF-8 cannot carry (a lone surrogate) fails
            # here, as print() fails in the script run on its own.
            text.encode("utf-8", "surrogateescape")
        if unordered(stream):
            return write(stream, text)
        with order:
            drain_all()
            # Text between the bytes of a character breaks it, as in the
            # script's own output.
            finish(stream)
            others_first(stream)
            return write(stream, text)
    def drained_flush(stream):
        if not unordered(stream):
            with order:
                drain_all()
        return flush(stream)
    # A block's bytes end with it: a character it left unfinished is
    # said where it was written (as the script's own decoding would),
    # not carried into the next block's output.
    def finish(stream):
        decoder = stream.__dict__.get("_gradients_decoder")
        rest = decoder.decode(b"", final=True) if decoder is not None else ""
        if rest:
            take_in(stream, rest)
    run_cell_async = InteractiveShell.run_cell_async
    async def finishing_run_cell_async(*args, **kwargs):
        try:
            return await run_cell_async(*args, **kwargs)
        finally:
            with order:
                drain_all()
                for stream in ours():
                    finish(stream)
    OutStream._watch_pipe_fd = watch
    OutStream.write = checked_write
    OutStream.flush = drained_flush
    InteractiveShell.run_cell_async = finishing_run_cell_async
streams()
del streams
"""

# `python -m ipykernel_launcher`, run as that command runs it, less the
# debugger it would load into every kernel (debugpy: a third of the
# kernel's start), which nothing that talks to the bridge can use, and
# with KERNEL_STREAMS.  The launcher itself keeps the notes' folder off
# the path while the kernel loads (a random.py of the notes would
# otherwise replace the standard one in zmq and stop the kernel), IPython
# then puts it after the standard library, and a block sees the launcher
# as sys.argv[0]: all as in Jupyter.
# ipykernel decides once, when its debugger module is first imported,
# whether debugpy is there; a None in sys.modules makes that import fail,
# and is then taken out again, so that a block may still import debugpy.
# A message holding a lone surrogate that stands for no byte (an
# exception's text, \ud800) is sent with it escaped, as JSON can: UTF-8
# cannot carry it, and the kernel would report its own UnicodeEncodeError
# in place of the block's exception (Python, running the script, shows
# the exception so escaped).  And the kernel takes WAKE_SIGNAL, doing
# nothing with it, and counts the KeyboardInterrupts it raises in the
# file INTERRUPTS_TAKEN gives, if any (COUNTING_INTERRUPTS).
LAUNCH_KERNEL = f"""\
import linecache, os, runpy, signal, sys
notes_folder = sys.path.pop(0)
signal.signal({WAKE_SIGNAL}, lambda signum, frame: None)
interrupts_taken = os.environ.pop({INTERRUPTS_TAKEN!r}, None)
if interrupts_taken:
    interrupts_taken = int(interrupts_taken)
    exec(compile({COUNTING_INTERRUPTS!r}, {COUNTING_FILE!r}, "exec"))
sys.modules["debugpy"] = None
import ipykernel.debugger
del sys.modules["debugpy"]
""" + f"""\
streams_source = {KERNEL_STREAMS!r}
# Named, and its lines known, so that a traceback through it shows them.
linecache.cache[{STREAMS_FILE!r}] = (len(streams_source), None,
                                     streams_source.splitlines(True), {STREAMS_FILE!r})
exec(compile(streams_source, {STREAMS_FILE!r}, "exec"))
del streams_source
""" + """\
import json, jupyter_client.session
def escaping_what_utf_8_cannot_carry(init):
    def __init__(session, *args, **kwargs):
        init(session, *args, **kwargs)
        pack = session.pack
        def escaping(message):
            try:
                return pack(message)
            except UnicodeEncodeError:
                return json.dumps(message, default=jupyter_client.session.json_default,
                                  allow_nan=False).encode()
        session.pack = escaping
    return __init__
jupyter_client.session.Session.__init__ = escaping_what_utf_8_cannot_carry(
    jupyter_client.session.Session.__init__)
del escaping_what_utf_8_cannot_carry
# IOPub keeps every message for a reader that falls behind: ZeroMQ drops
# those past its high-water mark (1000), the block's end among them, and
# the bridge, busy or held up by the machine's load, waited for ever.
import ipykernel.kernelapp, zmq
def keeping_every_message(bind):
    def _bind_socket(app, socket, port):
        if socket.type == zmq.XPUB:
            socket.sndhwm = 0
        return bind(app, socket, port)
    return _bind_socket
ipykernel.kernelapp.IPKernelApp._bind_socket = keeping_every_message(
    ipykernel.kernelapp.IPKernelApp._bind_socket)
del keeping_every_message
sys.path.insert(0, notes_folder)
import os
# The error output as the kernel got it: ipykernel puts a pipe of its own
# in its place, read by a thread, and neither outlives os._exit below.
error_output = os.dup(2)
try:
    runpy.run_module("ipykernel_launcher", run_name="__main__", alter_sys=True)
except BaseException as failure:
    if isinstance(failure, SystemExit) and failure.code in (None, 0):
        raise
    # A kernel that failed may hold ZeroMQ sockets still open, and the
    # interpreter's exit would then wait for ever on their context: said
    # (the last line is what the bridge reports) and ended now.
    if isinstance(failure, SystemExit) and isinstance(failure.code, int):
        code = failure.code
    else:
        import traceback
        os.write(error_output, "".join(traceback.format_exception(failure)).encode(
            "utf-8", "backslashreplace"))
        code = 1
    os._exit(code)
"""


def held_locks():
    """The descriptors of folders this process holds: the lock on the
    notes' folder a build takes (tools/one-build-at-a-time), which Emacs
    hands on to its bridges.  Handed on again to the supervisor, they keep
    the lock until everything the kernel started has been killed: held by
    the bridge alone, the lock went with a bridge killed by SIGKILL, and
    the next build could start while the supervisor still killed the
    kernel."""
    held = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if int(name) > 2 and stat.S_ISDIR(os.fstat(int(name)).st_mode):
                held.append(int(name))
        except OSError:
            pass  # the listing's own descriptor, closed by now
    return held


def kernel_command(connection_file):
    """The command that starts a kernel for CONNECTION_FILE: this
    interpreter's ipykernel, whatever "python3" kernelspec is installed
    elsewhere on the machine, below kernel_supervisor.py (isolated from the
    environment, for it needs nothing but the standard library), which ends
    when this process, or rather this thread, ends.  Its history stays in
    memory: the blocks of every build would otherwise go into the user's
    ~/.ipython history database, outside the project."""
    return [sys.executable, "-I", "-S", SUPERVISOR, str(os.getpid()),
            sys.executable, "-c", LAUNCH_KERNEL, "-f", connection_file,
            "--HistoryManager.enabled=False"]


# The limits a process inherits from its shell, each with the words of
# the errors that meeting it gives, and whether it can end a process
# outright (a signal, a crash): a kernel that cannot start under one says
# only "Too many open files" or "can't start new thread", one that dies
# under one says nothing, and the limit, set once in a shell's startup
# file, is long forgotten.  The kernel has this process's limits.  Each
# is said as `ulimit` says it.
MEMORY_WORDS = ("can't start new thread", "MemoryError", "Cannot allocate memory",
                "Resource temporarily unavailable", "failed to map segment",
                "pthread_create failed", "bad_alloc")
LIMITS = (
    # (the command, the limit, its unit in bytes, the words, ends a process)
    ("ulimit -n", resource.RLIMIT_NOFILE, 1, ("Too many open files",), False),
    ("ulimit -v", resource.RLIMIT_AS, 1024, MEMORY_WORDS, True),
    ("ulimit -d", resource.RLIMIT_DATA, 1024, MEMORY_WORDS, True),
    ("ulimit -s", resource.RLIMIT_STACK, 1024, ("can't start new thread",), True),
    ("ulimit -t", resource.RLIMIT_CPU, 1, (), True),
    ("ulimit -u", resource.RLIMIT_NPROC, 1,
     ("can't start new thread", "Resource temporarily unavailable", "pthread_create failed"),
     False),
)


def lowered(limit, value):
    """Whether VALUE, LIMIT's value now, is lower than the system sets it:
    the number of processes is limited by default, to half the threads
    the system allows (Linux), the stack to 8 MiB, the others not at all
    (files open at once are limited everywhere, but only their own error
    names that limit)."""
    if limit == resource.RLIMIT_NPROC:
        try:
            with open("/proc/sys/kernel/threads-max") as threads:
                return value < int(threads.read()) // 2
        except (OSError, ValueError):
            return False
    if limit == resource.RLIMIT_STACK:
        return value != resource.RLIM_INFINITY and value < 8 * 1024 * 1024
    return value != resource.RLIM_INFINITY


def lowered_limits(error=None):
    """The lowered limits in force that ERROR, a line that says why a
    process failed, names by its words, or with no ERROR those that can
    end a process outright, each as `ulimit` says it."""
    met = []
    for command, limit, unit, words, ends in LIMITS:
        soft, _ = resource.getrlimit(limit)
        if ((any(word in error for word in words) if error is not None else ends)
                and lowered(limit, soft)):
            met.append(f"`{command}` is {soft // unit}")
    return met


def limits_in_force(error=None):
    """`lowered_limits` as words to add to a message ("" for none)."""
    met = lowered_limits(error)
    return f" (limits in force: {', '.join(met)})" if met else ""


def with_the_limits_it_met(error):
    """ERROR, a line that says why a process failed, followed by the
    lowered limits in force that it may have met, if any."""
    return error + limits_in_force(error)


def kernel_address():
    """A name for a kernel's sockets: abstract Unix sockets (the leading
    @), which live in no folder.  No TCP port, nothing on the network."""
    return "@gradients-kernel-" + uuid.uuid4().hex[:16]


def kernel_manager(folder):
    """A jupyter_client manager of the kernel `Kernel` starts, for tools
    that drive a kernel through jupyter_client (nbclient), its connection
    file in FOLDER.  The bridge itself does without jupyter_client, whose
    import costs more than the rest of the bridge's start."""
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import KernelManager

    class ThisInterpreter(KernelSpecManager):
        def get_kernel_spec(self, kernel_name):
            return KernelSpec(argv=kernel_command("{connection_file}"),
                              display_name="gradients", language="python")

    return KernelManager(
        kernel_name="python3",
        kernel_spec_manager=ThisInterpreter(),
        transport="ipc",
        ip=kernel_address(),
        connection_file=os.path.join(folder, "connection.json"),
    )


class Channels:
    """The bridge's end of a kernel's shell and IOPub sockets, in the
    Jupyter messaging protocol: each message a multipart ZeroMQ message,
    its parts JSON, signed with HMAC-SHA256 under the connection's key.
    Only what the bridge asks for is spoken (kernel_info, execute); the
    kernel's other sockets (stdin, control, heartbeat) go unused, as a
    block may not read input and a kernel is stopped by signals."""

    PROTOCOL = "5.3"
    DELIMITER = b"<IDS|MSG>"
    # Where each socket listens: the kernel binds "ADDRESS-PORT".
    PORTS = {"shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4,
             "hb_port": 5}
    # The kernel binds its sockets a few tenths of a second after the
    # bridge connects; until then ZeroMQ tries again every RECONNECT_IVL,
    # whose default, 100 ms, was up to that much more waiting for the
    # shell socket's first answer, then again for IOPub's, on every build
    # and every session's start.
    RECONNECT_INTERVAL_MS = 5

    def __init__(self, address, key):
        self.key = key.encode()
        self.session = uuid.uuid4().hex
        self.context = zmq.Context()
        self.shell = self.context.socket(zmq.DEALER)
        self.iopub = self.context.socket(zmq.SUB)
        self.iopub.setsockopt(zmq.SUBSCRIBE, b"")
        # Every message the kernel sends, however far behind the bridge
        # is (see LAUNCH_KERNEL): none dropped past a high-water mark.
        self.iopub.rcvhwm = 0
        for socket, port in ((self.shell, "shell_port"), (self.iopub, "iopub_port")):
            socket.linger = 0
            socket.reconnect_ivl = self.RECONNECT_INTERVAL_MS
            socket.connect(f"ipc://{address}-{self.PORTS[port]}")

    @classmethod
    def connection(cls, address, key):
        """What a kernel's connection file holds for these channels."""
        return {**cls.PORTS, "ip": address, "key": key, "transport": "ipc",
                "signature_scheme": "hmac-sha256", "kernel_name": ""}

    def signature(self, parts):
        digest = hmac.new(self.key, digestmod=hashlib.sha256)
        for part in parts:
            digest.update(part)
        return digest.hexdigest().encode()

    def send(self, msg_type, content):
        """Send a request on the shell socket; return its message id."""
        msg_id = uuid.uuid4().hex
        header = {"msg_id": msg_id, "session": self.session, "username": "gradients",
                  "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                  "msg_type": msg_type, "version": self.PROTOCOL}
        parts = [json.dumps(part).encode() for part in (header, {}, {}, content)]
        self.shell.send_multipart([self.DELIMITER, self.signature(parts), *parts])
        return msg_id

    def receive(self, socket, timeout):
        """The next message SOCKET gets within TIMEOUT seconds, or None.
        A message not signed with the key is passed over: it is not the
        kernel's."""
        deadline = time.monotonic() + timeout
        while socket.poll(max(0, deadline - time.monotonic()) * 1000):
            frames = socket.recv_multipart()
            try:
                signature, *parts = frames[frames.index(self.DELIMITER) + 1:]
            except ValueError:
                continue
            if len(parts) < 4 or not hmac.compare_digest(signature,
                                                         self.signature(parts[:4])):
                continue
            # jupyter_client's session writes a lone surrogate of a block's
            # text (an exception's message, a value's repr) as the byte it
            # escapes: read back so, it is refused by name downstream
            # instead of ending the bridge.
            header, parent, metadata, content = (
                json.loads(part.decode("utf-8", "surrogateescape")) for part in parts[:4])
            return {"header": header, "msg_type": header["msg_type"],
                    "parent_header": parent, "metadata": metadata, "content": content}
        return None

    def close(self):
        self.context.destroy(linger=0)


# The project's scratch folder, beside this file's tools/ folder.
BUILD_FOLDER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            ".build")

# Where the kernel, and what it runs, keep their settings and caches: each
# variable names a folder under .build/kernel/.  Not the user's home, which
# may be unwritable (a service user's HOME=/nonexistent): each library would
# then say so in the first drawer, with a random path, and leave a folder
# of its own in /tmp behind.  Nor the user's own settings, such as a
# matplotlibrc or an IPython start-up file, which would change what the
# notes record on that one machine.
KERNEL_FOLDERS = {
    # For whatever reads its settings from the home folder itself, as
    # fontconfig reads ~/.fonts.conf and ~/.fonts whatever the XDG
    # folders say (a user's font settings changed every graph dot drew).
    "HOME": "home",
    "MPLCONFIGDIR": "matplotlib",          # its settings and font cache
    "IPYTHONDIR": "ipython",               # the profile ipykernel loads
    "JUPYTER_CONFIG_DIR": "jupyter/config",
    "JUPYTER_DATA_DIR": "jupyter/data",
    "JUPYTER_RUNTIME_DIR": "jupyter/runtime",
    # For everything else that follows the XDG rules: fontconfig, which
    # Graphviz's dot uses, and the libraries the notes may import later.
    "XDG_CONFIG_HOME": "config",
    "XDG_CACHE_HOME": "cache",
    "XDG_DATA_HOME": "data",
    "XDG_STATE_HOME": "state",
}


# What a kernel keeps of the caller's environment: where programs are,
# whose files it may read (its home is the build's) and where its
# temporary files go.  Nothing
# else reaches it, for each setting a library reads may change what a
# block prints or draws, and the same code must record the same result
# whoever builds it: Python's own (PYTHONPATH and PYTHONHOME replace the
# modules, PYTHONWARNINGS=error turns a warning into a traceback); those
# of Jupyter, IPython and ipykernel (a JUPYTER_CONFIG_PATH config that
# runs code at start); those of every library the notes draw or compute
# with (MPLBACKEND=TkAgg, a MATPLOTLIBRC with other colours, Graphviz's
# font paths, NumPy's threads, which change the last digits of a sum,
# Fontconfig's FC_DEBUG, which writes into the SVG dot draws); the locale
# and the time zone; an environment activated in the caller's shell; and
# pytest's PYTEST_CURRENT_TEST, under which ipykernel stops sending what
# is written to file descriptors 1 and 2 as printed text.  A list of what
# to withhold missed one of them after the other; this one names what is
# needed.  The kernel gets the build's own values of what it needs besides.
KEPT_FOR_THE_KERNEL = ("PATH", "USER", "LOGNAME", "TMPDIR", "LD_LIBRARY_PATH")


def deactivated_path(environ):
    """ENVIRON's PATH without the bin folders of the environments it says
    are activated, as `deactivate` would leave it."""
    activated = {os.path.normpath(os.path.join(environ[name], "bin"))
                 for name in ("VIRTUAL_ENV", "CONDA_PREFIX") if environ.get(name)}
    return os.pathsep.join(folder for folder in environ.get("PATH", os.defpath).split(os.pathsep)
                           if os.path.normpath(folder or ".") not in activated)


def kernel_environment(environ=None, caches=None):
    """The environment a kernel runs in: the caller's ENVIRON (this
    process's by default), of it only KEPT_FOR_THE_KERNEL, with the
    folders of KERNEL_FOLDERS made in CACHES, by default BUILD_FOLDER's
    kernel/ (an OSError when it cannot be written).  Pictures come
    from the inline backend's display output.  The kernel keeps the
    bytecode of the packages it imports even where PYTHONDONTWRITEBYTECODE
    is set: uv installs them uncompiled, and compiling NumPy, Matplotlib
    and IPython again would add seconds to every start.  The blocks
    themselves run from strings, so this leaves no bytecode beside the
    notes."""
    environ = os.environ if environ is None else environ
    env = {name: environ[name] for name in KEPT_FOR_THE_KERNEL if name in environ}
    env.update(PATH=deactivated_path(environ),
               MPLBACKEND="module://matplotlib_inline.backend_inline",
               PYTHONHASHSEED="0", TZ="UTC", LC_ALL="C.UTF-8")
    caches = caches or os.path.join(BUILD_FOLDER, "kernel")
    for variable, folder in KERNEL_FOLDERS.items():
        path = os.path.join(caches, folder)
        os.makedirs(path, exist_ok=True)
        env[variable] = path
    return env


# The connection file's folder, named after the bridge that made it.
FOLDER_PREFIX = "gradients-kernel-"


def remove_stale_folders():
    """Remove the connection folders of bridges that no longer run.  A
    bridge removes its own once the kernel has started; one killed before
    that (SIGKILL, a crash) cannot, and the next bridge cleans up after it.
    Bridges start side by side: a folder listed here may be gone a moment
    later, removed by its own bridge or by another one cleaning up."""
    for path in glob.glob(os.path.join(tempfile.gettempdir(), FOLDER_PREFIX + "*-*")):
        pid = os.path.basename(path)[len(FOLDER_PREFIX):].split("-")[0]
        try:
            if not pid.isdigit() or os.stat(path).st_uid != os.getuid():
                continue
        except FileNotFoundError:
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:
            pass   # a process of another user has that number now


# Set by a bridge (serve), which is given the orphans of a supervisor that
# was killed before it could kill them itself.
ADOPTS_ORPHANS = False


def first_child(parent):
    """The process PARENT started first among its children that run."""
    children = [pid for pid, its_parent in kernel_supervisor.process_table().items()
                if its_parent == parent]

    def started(pid):
        fields = kernel_supervisor.process_status(pid)
        return float("inf") if fields is None else int(fields[19])
    return min(children, key=started, default=None)


class ErrorOutput:
    """What a kernel writes to its error output, passed on to this
    process's as it comes (ipykernel echoes a block's own there too), its
    end kept for the reason a dying kernel gives."""

    def __init__(self, pipe):
        self.pipe = pipe
        self.tail = b""
        self.thread = threading.Thread(target=self.pass_on, daemon=True)
        self.thread.start()

    def pass_on(self):
        sink = getattr(sys.stderr, "buffer", None)
        while True:
            try:
                data = os.read(self.pipe.fileno(), 65536)
            except OSError:
                data = b""
            if not data:
                break
            self.tail = (self.tail + data)[-4096:]
            if sink is not None:
                try:
                    sink.write(data)
                    sink.flush()
                except (OSError, ValueError):
                    sink = None   # nowhere to show it; the tail is still kept
        self.pipe.close()

    def reason(self):
        """Why the kernel ended, as it said it, once it has ended."""
        # Its writers are gone once its supervisor is: the pipe ends soon.
        self.thread.join(timeout=SUPERVISOR_PATIENCE)
        return reason_in(self.tail.decode("utf-8", "replace"))


# Lines that open or join a Python traceback, none of which says why.
TRACEBACK_HEADINGS = re.compile(r"Traceback \(most recent call last\):|Exception in thread .*:"
                                r"|During handling of the above exception"
                                r"|The above exception was the direct cause")


def reason_in(said):
    """The line of SAID, a dying process's error output, that names why:
    the last line a traceback ends with, or a line outside any.  Its last
    line may not be one: two threads' tracebacks interleave, and one is
    cut where the process ended, after a frame (indented, as its code
    lines are) or after its heading."""
    lines = [line.rstrip() for line in said.splitlines() if line.strip()]
    reasons = [line for line in lines
               if not line[0].isspace() and not TRACEBACK_HEADINGS.match(line)]
    return (reasons or lines or [""])[-1].strip()


# Asked after every block that ran without an error: IPython writes to
# both as it begins a block, and fails before the block's code, sending
# no reply, where one of them cannot be written to.
STREAMS_WRITABLE = ("all(callable(getattr(stream, 'write', None)) "
                    "for stream in (__import__('sys').stdout, __import__('sys').stderr))")


# How IPython names a line of a cell's code in a traceback, and in the
# text of a SyntaxError (the cell's file, which only a cell being
# compiled, the last, has).
CELL_PLACE = re.compile(r"\bCell In\[(\d+)\], line (\d+)")
SYNTAX_ERROR_PLACE = re.compile(r"\(\d+\.py, line (\d+)\)")


def catches(pid, signum):
    """Whether process PID has a handler for SIGNUM (not the default, nor
    ignored), as /proc says: in its status, for the bitmap in its stat
    (process_status) leaves the real-time signals out."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False


def signal_thread(pid, signum):
    """SIGNUM to the main thread of process PID alone; nothing if it is
    gone.  Python has no tgkill, and pthread_kill takes this process's
    threads only."""
    ctypes.CDLL(None, use_errno=True).tgkill(pid, pid, signum)


def signal_group(group, main, signum):
    """SIGNUM to every process of process group GROUP, as killpg sends
    it, but to the main thread of process MAIN alone (tgkill)."""
    for pid, its_group in kernel_supervisor.process_table(kernel_supervisor.PROCESS_GROUP).items():
        if its_group != group:
            continue
        if pid == main:
            signal_thread(pid, signum)
            continue
        try:
            os.kill(pid, signum)
        except OSError:
            pass   # gone meanwhile


def message_date(msg, default):
    """When the kernel made MSG, in seconds since the epoch; DEFAULT for
    no message, or one with no date this can read."""
    try:
        return datetime.datetime.fromisoformat(msg["header"]["date"]).timestamp()
    except (TypeError, KeyError, ValueError, AttributeError):
        return default


class Kernel:
    """One running kernel, started as Jupyter starts one (in a session of
    its own, its connection file read at start, JPY_PARENT_PID naming this
    process).  STOP_REQUESTED, when given, is asked while the kernel starts
    and while a block runs: once it says yes, they end at once, raising
    Stopped.  INTERRUPT_ASKED, when given, is asked while a block runs:
    each time its count grows, the block is interrupted."""

    def __init__(self, stop_requested=None, interrupt_asked=None):
        self.stop_requested = stop_requested or (lambda: False)
        # Asked while a block runs: how many times it was asked to be
        # interrupted.
        self.interrupt_asked = interrupt_asked or (lambda: 0)
        self.channels = self.supervisor = self.caches = self.pid = self.taken_file = None
        # What was running when the last block for the notes ended.
        self.known_running = set()
        # Where in the notes each cell's code begins, by its number, and
        # the number of the last cell run: see in_notes.
        self.cells = {}
        self.cell = None
        self.evaluated = {}
        remove_stale_folders()
        folder = tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{os.getpid()}-")
        connection_file = os.path.join(folder, "connection.json")
        try:
            address, key = kernel_address(), str(uuid.uuid4())
            with open(connection_file, "w") as connection:
                json.dump(Channels.connection(address, key), connection)
            try:
                environment = kernel_environment()
            except OSError:
                # A checkout this bridge cannot write (read-only, another
                # user's) still runs its notes: the caches go to a folder
                # of the bridge's own, removed with its kernel, or by the
                # next bridge if this one is killed (remove_stale_folders).
                self.caches = tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{os.getpid()}-caches-")
                environment = kernel_environment(caches=self.caches)
            environment["JPY_PARENT_PID"] = str(os.getpid())
            self.taken_file = tempfile.TemporaryFile(dir=folder)
            environment[INTERRUPTS_TAKEN] = str(self.taken_file.fileno())
            # Its standard input is nobody's: not the bridge's, which
            # carries Emacs's requests, nor a pipe no one writes to or
            # closes, on which a block reading sys.stdin (or a command it
            # runs, as `cat') would wait for ever, its placeholder and the
            # blocks queued behind it with it; it reads an end of file at
            # once.  input() asks the frontend, which refuses it by name.
            # Its standard output is nobody's: ipykernel sends what a
            # block, its subprocesses or a C library write to file
            # descriptor 1 as printed text, and echoes a copy there, which
            # on the bridge's standard output would be taken for replies,
            # and on its error output would bury the lines that say why a
            # kernel failed.
            # Its error output reaches this process's through a pipe: a
            # kernel that dies as it starts says why there, and that line
            # goes into this bridge's own error, the one a batch build
            # shows (its Emacs, and the buffer of this error output, end
            # with it).
            # The build's lock goes to the supervisor too (see held_locks).
            self.supervisor = subprocess.Popen(kernel_command(connection_file),
                                               env=environment, stdin=subprocess.DEVNULL,
                                               stdout=subprocess.DEVNULL,
                                               stderr=subprocess.PIPE,
                                               start_new_session=True,
                                               pass_fds=[*held_locks(),
                                                         self.taken_file.fileno()])
            self.errors = ErrorOutput(self.supervisor.stderr)
            self.channels = Channels(address, key)
            self.wait_for_ready(timeout=60)
            # Nothing else runs below the supervisor before a block does.
            self.pid = first_child(self.supervisor.pid)
        except BaseException:
            self.kill()
            raise
        finally:
            # The kernel read its connection file when it started.
            shutil.rmtree(folder, ignore_errors=True)

    def check_stop(self):
        if self.stop_requested():
            raise Stopped()

    def is_alive(self):
        return self.supervisor is not None and self.supervisor.poll() is None

    def held_stopped(self):
        """Which of the kernel and its supervisor is held stopped from
        outside, which no block can do, and how: "the kernel was held
        stopped from outside (SIGSTOP)", or "(a debugger)" for one stopped
        under ptrace; None while both run.  The supervisor held stopped
        neither passes an interrupt on nor tells of the kernel's end."""
        for name, pid in (("the kernel", self.pid),
                          ("the kernel's supervisor",
                           self.supervisor.pid if self.supervisor else None)):
            fields = kernel_supervisor.process_status(pid) if pid else None
            how = {b"T": "SIGSTOP", b"t": "a debugger"}.get(fields[0] if fields else None)
            if how:
                return f"{name} was held stopped from outside ({how})"
        return None

    def died(self, why, during=" while running it"):
        """KernelDied for a kernel gone for WHY, said from what its
        supervisor's exit tells: the supervisor killed (kill -9) or told to
        stop (kill) from outside, which the block did nothing to; the
        kernel killed by SIGKILL, as the system's memory limit does; or
        the kernel's own end, DURING a block (said so) or between two
        (DURING "", said by the caller)."""
        code = self.supervisor.returncode if self.supervisor is not None else None
        if code is not None and code < 0:
            return KernelDied(f"the kernel's supervisor was killed by signal {-code} "
                              "from outside", killed=True)
        if code == kernel_supervisor.TOLD_TO_STOP:
            return KernelDied("the kernel's supervisor was told to stop from outside "
                              "(SIGTERM or SIGHUP)", killed=True)
        # A limit of the shell's may have ended it (processor time, by
        # SIGXCPU then SIGKILL; memory or stack, by a crash): said with it.
        limits = limits_in_force()
        if code == 128 + signal.SIGKILL:
            # One cause among the others, not a second aside after them.
            met = lowered_limits()
            return KernelDied("the kernel was killed by signal 9 (the system's memory limit, "
                              + (f"kill -9, or a limit in force: {', '.join(met)})" if met
                                 else "or kill -9)"), killed=True)
        if code is not None and code > 128:
            number = code - 128
            try:
                name = f" ({signal.Signals(number).name})"
            except ValueError:
                name = ""
            # A signal that asks a process to end (kill, a shutdown, a
            # terminal's hang-up) comes from outside nearly always: said as
            # a loss, as kill -9 is.  One a crash raises (SIGSEGV, SIGABRT)
            # or a limit (SIGXCPU) is the code's own doing.
            if number not in CRASH_SIGNALS:
                return KernelDied(f"the kernel was ended by signal {number}{name}, sent by "
                                  "kill or a shutdown, or by the code it ran" + limits,
                                  killed=True)
            return KernelDied(f"the kernel died of signal {number}{name}{during}" + limits)
        # Its own exit, with the status it gave: os._exit(0) is no crash.
        if code is not None and code >= 0:
            return KernelDied(f"the kernel died{during}, exiting with status {code} "
                              "(os._exit, exit(), or a library that ended the process)" + limits)
        return KernelDied(why + limits)

    def wait_for_ready(self, timeout):
        """Wait for the kernel's first answer, asking meanwhile whether to
        stop.  An answer on the shell socket is not enough: IOPub, where
        the outputs come, may not be connected yet, and is once it carries
        the status messages of a request."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_stop()
            self.channels.send("kernel_info_request", {})
            reply = self.channels.receive(self.channels.shell, WAKE_UP)
            if (reply is not None and reply["msg_type"] == "kernel_info_reply"
                    and self.channels.receive(self.channels.iopub, 0.2) is not None):
                break
            if not self.is_alive():
                last = self.errors.reason()
                raise RuntimeError("Kernel died before replying to kernel_info"
                                   + (f": {with_the_limits_it_met(last)}" if last else ""))
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kernel didn't respond in {timeout:g} seconds")
        # What IOPub still holds answers these requests: run() passes over
        # it by its parent, so no time is spent waiting for it to go quiet.

    def interrupt(self):
        """What Jupyter does, SIGINT to the kernel's process group (whose
        supervisor ignores it), but to the kernel's main thread itself:
        sent to the process, Linux may hand it to another of its threads
        (ZeroMQ's, ipykernel's), and a block waiting in time.sleep() or on
        a lock went on until its wait ended, long after the interrupt."""
        if self.supervisor is not None:
            signal_group(self.supervisor.pid, self.pid, signal.SIGINT)

    def taken(self):
        """How many KeyboardInterrupts the kernel raised for a SIGINT."""
        try:
            return os.fstat(self.taken_file.fileno()).st_size
        except (OSError, AttributeError, ValueError):
            return 0

    def wake(self):
        """WAKE_SIGNAL to the kernel's main thread (see there), unless the
        kernel no longer has a handler for it: a block may have set it back
        to the default, which ends a process."""
        if self.pid is not None and catches(self.pid, WAKE_SIGNAL):
            signal_thread(self.pid, WAKE_SIGNAL)

    def reply_to(self, msg_id):
        """The shell's reply to request MSG_ID, which follows its outputs,
        or None when the kernel handled the request without one: a
        KeyboardInterrupt that lands in ipykernel's handling of a block,
        outside its code, is caught there, and no reply is sent.  The
        kernel answers its shell in order, so a reply to a request sent
        after MSG_ID ended says that none will come for MSG_ID."""
        deadline = time.monotonic() + 60
        probe = None
        while time.monotonic() < deadline:
            reply = self.channels.receive(self.channels.shell, WAKE_UP)
            answers = reply["parent_header"].get("msg_id") if reply is not None else None
            if answers == msg_id:
                return reply
            if probe is not None and answers == probe:
                return None
            if not self.is_alive():
                break
            if probe is None:
                probe = self.channels.send("kernel_info_request", {})
        raise self.died("the kernel did not reply after running it")

    def execute(self, code, expressions=None, silent=False):
        """Send an execute_request for CODE, asking also for EXPRESSIONS
        and whether the kernel can still write its streams; its id.
        SILENT, it is not counted, nor kept in the history."""
        return self.channels.send("execute_request", {
            "code": code, "silent": silent, "store_history": not silent,
            "user_expressions": {**(expressions or {}), "streams_writable": STREAMS_WRITABLE},
            # The bridge sends one request at a time: an error has no
            # queue to abort, but would abort the check after it.
            "allow_stdin": False, "stop_on_error": False})

    def run(self, code, timeout=None, expressions=None, max_printed=None, notes=None):
        """Execute CODE; return its outputs as a list of (kind, content).
        Past TIMEOUT seconds the kernel is interrupted and BlockError raised.
        EXPRESSIONS, {name: Python expression}, are evaluated once CODE has
        run, their values' text kept in self.evaluated by name.  Past
        MAX_PRINTED characters of printed text, the kernel is interrupted,
        the rest of what it prints dropped, and BlockError raised once it
        has stopped: a block printing hundreds of megabytes kept the bridge
        reading them, silent, until Emacs took it for stuck and killed it,
        or printed until its time limit ran out."""
        msg_id = self.execute(code, expressions)
        self.evaluated = {}
        deadline = time.monotonic() + timeout if timeout else None
        # ipykernel ignores SIGINT but while it handles a request, and says
        # execute_input once it does: a SIGINT sent before then is lost,
        # and the block runs to its end, however early the interrupt came
        # (a block interrupted as it is sent, a loaded machine).  Every
        # interrupt is wanted first, and sent once the block has begun:
        # one for each ask, and one for a limit met.
        begun_at = None
        # The interrupts asked for that were sent, and the SIGINTs that
        # sent them: asks read together go as one SIGINT, as two Ctrl-C
        # in a row reach Python as one KeyboardInterrupt.
        sent = signals = 0
        # The kernel counts the interrupts it took over its life; this
        # block's are those past the count it starts with.
        taken_before = self.taken()
        wake_at = wake_every = last_sent = None
        # When the first SIGINT went, by the clock the kernel dates its
        # messages with.
        signalled_at = None
        interrupted_at = None
        outputs = []
        printed = 0
        # Why the kernel was interrupted, once it was, as said of a kernel
        # held stopped then and of a block that went on: the block's time
        # limit, or what it printed.  Either is followed by a kill when the
        # block does not stop.  The clock is read on every pass: a block
        # that prints without pause sends a message on every one.
        limit = None
        while True:
            self.check_stop()
            msg = self.channels.receive(self.channels.iopub, WAKE_UP)
            now = time.monotonic()
            ours = msg is not None and msg["parent_header"].get("msg_id") == msg_id
            if begun_at is None and ours and msg["msg_type"] == "execute_input":
                begun_at = now
                self.cell = msg["content"].get("execution_count")
                if notes:
                    self.cells[self.cell] = (notes["file"], notes["line"])
            if interrupted_at is None and deadline and now > deadline:
                interrupted_at = now
                limit = (f"the block's time limit of {timeout:g} s ran out",
                         f"ran past its time limit of {timeout:g} s")
            elif interrupted_at is not None and self.overdue(now, interrupted_at, begun_at,
                                                             signalled_at, msg):
                held = self.held_stopped()
                self.kill()
                if held:
                    raise KernelDied(f"{held} when {limit[0]}, so the kernel was killed",
                                     killed=True)
                if begun_at is None:
                    raise KernelDied(f"the kernel had not begun the block {UNBEGUN_PATIENCE} s "
                                     f"after {limit[0]} (busy with what an earlier block left "
                                     "running?), so the kernel was killed", killed=True)
                raise KernelDied(f"it {limit[1]} and did not stop when interrupted, so the "
                                 f"kernel was killed")
            wanted = self.interrupt_asked() + (interrupted_at is not None)
            if begun_at is not None and wanted > sent:
                self.interrupt()
                sent = wanted
                signals += 1
                signalled_at = signalled_at or time.time()
                last_sent = now
                wake_every = WAKE_FIRST
                wake_at = now + wake_every
            elif (signals and wake_at <= now <= last_sent + WAKE_FOR
                  and self.taken() - taken_before < signals):
                self.wake()
                wake_every *= 2
                wake_at = now + wake_every
            if msg is None:
                if not self.is_alive():
                    raise self.died("the kernel died while running it "
                                    "(os._exit, a crash, or a signal)")
                continue
            if not ours:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "status" and content["execution_state"] == "idle":
                break
            if kind == "stream" and max_printed:
                if printed > max_printed:
                    continue
                printed += len(content.get("text", ""))
                if printed > max_printed:
                    if interrupted_at is None:
                        interrupted_at = now
                    limit = (f"the block had printed more than {max_printed:,} characters",
                             f"printed more than {max_printed:,} characters")
                    continue
            if kind in ("stream", "execute_result", "display_data", "error", "clear_output",
                        "update_display_data"):
                outputs.append((kind, content))
        reply = self.reply_to(msg_id)
        if reply is None and not sent:
            # ipykernel failed in its own handling of the block, as it
            # will for every block after: a kernel of no more use.
            self.kill()
            said = self.errors.reason()
            raise KernelDied("the kernel failed to run it" + (f" ({said})" if said else "")
                             + ", as it would every block after, so it was stopped")
        reply = reply or {"content": {"status": "error", "ename": "KeyboardInterrupt"}}
        if max_printed and printed > max_printed:
            raise BlockError(f"printed more than {max_printed:,} characters, and was "
                             "interrupted; a result may hold far fewer in the notes: print "
                             "less (a summary, or a slice)", "output")
        content = reply["content"]
        self.evaluated = {name: value.get("data", {}).get("text/plain")
                          for name, value in (content.get("user_expressions") or {}).items()
                          if isinstance(value, dict) and value.get("status") == "ok"}
        if content.get("status") == "error" and not any(kind == "error" for kind, _ in outputs):
            # The kernel could not send the block's error (its text held
            # what its messages cannot carry); the reply still says so.
            outputs.append(("error", {
                "ename": content.get("ename", "Error"), "evalue": content.get("evalue", ""),
                "traceback": content.get("traceback") or
                [f"{content.get('ename', 'Error')}: {content.get('evalue', '')}"]}))
        if self.evaluated.get("streams_writable") == "False":
            self.kill()
            raise KernelDied("it left sys.stdout or sys.stderr with no write() (set to None?), "
                             "which IPython writes to as it runs any block, so the kernel was "
                             "stopped")
        if content.get("status") == "error" and not sent and not self.runs_blocks():
            raised = failure(outputs, self.in_notes)
            self.kill()
            said = self.errors.reason()
            raise KernelDied(f"it raised {raised.summary if raised else 'an error'} and left "
                             "the kernel unable to run another block"
                             + (f" ({said})" if said else "") + ", so the kernel was stopped")
        if any(p.get("source") == "ask_exit" for p in content.get("payload", [])):
            # exit() ends the kernel only after this reply: blame this block.
            self.kill()
            raise KernelDied("it called exit() or quit()")
        if interrupted_at is not None:
            raise BlockError(f"ran past its time limit of {timeout:g} s and was "
                             f"interrupted (give it more with :timeout SECONDS)", "timeout")
        return outputs

    def in_notes(self, text):
        """TEXT, an error's, with the lines of cells that IPython names
        ("Cell In[3], line 2"; a SyntaxError's "(1886342180.py, line 2)",
        always the last cell's) named as the notes' lines ("README.org:141"),
        for each cell run from a block whose place in the notes is known."""
        def cell_line(match):
            place = self.cells.get(int(match.group(1)))
            return f"{place[0]}:{place[1] + int(match.group(2)) - 1}" if place else match.group()

        def last_cell_line(match):
            place = self.cells.get(self.cell)
            return (f"({place[0]}:{place[1] + int(match.group(1)) - 1})" if place
                    else match.group())
        return SYNTAX_ERROR_PLACE.sub(last_cell_line, CELL_PLACE.sub(cell_line, text))

    def overdue(self, now, interrupted_at, begun_at, signalled_at, msg):
        """Whether a block interrupted for a limit at INTERRUPTED_AT is past
        its grace.  The grace counts from the SIGINT, sent at SIGNALLED_AT
        once the kernel had begun the block (at BEGUN_AT): a block begun
        late (a loaded machine, an earlier block's thread) was killed as
        one that ignored its interrupt.  And it is read on the kernel's
        clock, by the date of MSG, the message being read: what a block
        printed before the interrupt is read after it, and reading the
        megabytes a block printed fast took longer than the grace, on a
        loaded machine, though the block had stopped at once.  A kernel
        that has not begun the block is given longer, unless it is held
        stopped, which it will not begin."""
        if begun_at is not None:
            if signalled_at is None:
                return False
            return message_date(msg, time.time()) - signalled_at > INTERRUPT_GRACE
        waited = now - interrupted_at
        return waited > UNBEGUN_PATIENCE or (waited > INTERRUPT_GRACE
                                             and self.held_stopped() is not None)

    def runs_blocks(self):
        """Whether the kernel still runs a block: asked after one that
        failed, after which no user expression is evaluated."""
        reply = self.reply_to(self.execute("", silent=True))
        if reply is None:
            return False
        value = (reply["content"].get("user_expressions") or {}).get("streams_writable") or {}
        return (value.get("data") or {}).get("text/plain") != "False"

    def kill(self):
        """Stop the kernel at once, with every process it started, however
        they detached themselves.  The one place where what a session
        started is stopped: every way a session ends comes here (a stop
        asked for, the end of input, the kernel's death, a timeout, exit(),
        a kernel that did not start), and may come here more than once."""
        supervisor, self.supervisor = self.supervisor, None
        if supervisor is not None:
            if supervisor.poll() is None:
                # It kills everything below it, then ends; held stopped
                # (SIGSTOP), only once it goes on.
                supervisor.send_signal(signal.SIGTERM)
                supervisor.send_signal(signal.SIGCONT)
                try:
                    supervisor.wait(timeout=SUPERVISOR_PATIENCE)
                except subprocess.TimeoutExpired:
                    pass
            # A supervisor that did not end, and the processes of the
            # kernel's process group with it.
            try:
                os.killpg(supervisor.pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                supervisor.wait(timeout=SUPERVISOR_PATIENCE)
            except subprocess.TimeoutExpired:
                pass   # stuck in the kernel of the system: nothing more to do
        channels, self.channels = self.channels, None
        if channels is not None:
            channels.close()
        if ADOPTS_ORPHANS:
            # Whatever a killed supervisor left; a bridge starts nothing else.
            kernel_supervisor.kill_tree(os.getpid(), reap=True)
        caches, self.caches = self.caches, None
        if caches is not None:
            shutil.rmtree(caches, ignore_errors=True)
        taken_file, self.taken_file = self.taken_file, None
        if taken_file is not None:
            taken_file.close()


def failure(outputs, in_notes=None):
    """A BlockError for the first error in OUTPUTS, or None.  Its summary
    is the exception's one line, its message the whole traceback, each
    passed through IN_NOTES (see Kernel.in_notes) when given."""
    in_notes = in_notes or (lambda text: text)
    for kind, content in outputs:
        if kind == "error":
            ename, evalue = content["ename"], content["evalue"]
            # An exception's text is read as printed text is: IPython
            # colours a traceback, as for a terminal.
            # One line, which the echo area and the build's first line of a
            # failure show: a message of several lines is whole in the
            # traceback.
            said = terminal_lines(in_notes(f"{ename}: {evalue}" if evalue else ename)) or [ename]
            summary = said[0] + (" …" if len(said) > 1 else "")
            if ename == "SystemExit":
                # IPython's text asks for %tb, which a build cannot type.
                text = (f"{summary} (the block called sys.exit() or raised "
                        f"SystemExit; the kernel goes on)")
            else:
                frames = [frame for frame in content["traceback"]
                          if not "".join(terminal_lines(frame)).startswith(
                              f"File {COUNTING_FILE}:")]
                text = in_notes("\n".join(terminal_lines("\n".join(frames))))
                summary = with_the_limits_it_met(summary)
            kind = "interrupted" if ename == "KeyboardInterrupt" else "raised"
            return BlockError(readable_by_emacs(text), kind, readable_by_emacs(summary))
    return None


def decoded(mime, data):
    """A picture's bytes from its form in a Jupyter message: text, base64
    for a PNG, unless the block sent something else of its own."""
    try:
        return base64.b64decode(data) if mime == "image/png" else data.encode()
    except (ValueError, TypeError, AttributeError):
        raise BlockError(f"displayed {mime} data that is not "
                         + ("base64 text" if mime == "image/png" else "text"),
                         "output") from None


def is_picture(data):
    """Whether the data of a display or value DATA hold a picture."""
    return any(mime in data for mime in MIME_BY_EXTENSION.values())


def as_shown(outputs):
    """OUTPUTS as Jupyter shows them once the block is done: what a
    clear_output() cleared gone (with wait=True, once the next output
    comes), and each display a later update_display_data() changed shown
    as last changed.  A progress shown so kept its every step in the
    drawer, past the notes' limit on lines, or as pictures without
    number.  What the block printed stays whole for the script's own
    output (printed_text), which a script's clear_output() does not clear."""
    shown, clear_at_next = [], False
    for kind, content in outputs:
        if kind == "clear_output":
            clear_at_next = bool(content.get("wait"))
            if not clear_at_next:
                shown = []
            continue
        if kind == "update_display_data":
            display_id = content.get("transient", {}).get("display_id")
            shown = [(was, dict(earlier, data=content["data"],
                                metadata=content.get("metadata", {})))
                     if (was == "display_data" and display_id is not None
                         and earlier.get("transient", {}).get("display_id") == display_id)
                     else (was, earlier)
                     for was, earlier in shown]
            continue
        if clear_at_next:
            shown, clear_at_next = [], False
        shown.append((kind, content))
    return shown


def shown_pictures(outputs):
    """The data of each picture OUTPUTS show, in order: one per display
    (a figure shown as PNG and as SVG at once is one picture)."""
    return [content["data"] for kind, content in as_shown(outputs)
            if kind in ("display_data", "execute_result") and is_picture(content["data"])]


def picture(outputs, file):
    """The bytes of the one picture OUTPUTS show, for a block with :file
    FILE.  A :file holds one picture: of several, all but one would be
    lost without a word."""
    mime = mime_for(file)
    shown = shown_pictures(outputs)
    if len(shown) > 1:
        raise BlockError(f"has :file {file} but displayed {len(shown)} pictures, and a "
                         ":file holds one; give each picture a block of its own", "output")
    if not shown or mime not in shown[0]:
        raise BlockError(f"has :file {file} but displayed no {mime}", "output")
    return decoded(mime, shown[0][mime])


def pictures(outputs):
    """Every picture in OUTPUTS, as (extension, bytes), in order."""
    found = []
    for data in shown_pictures(outputs):
        for extension, mime in MIME_BY_EXTENSION.items():
            if mime in data:
                found.append((extension, decoded(mime, data[mime])))
                break
    return found


# ---- Output as a terminal shows it -------------------------------------
#
# Every text a block produces (what it prints, a value's text/plain or
# text/org, a traceback) becomes lines through terminal_lines alone, so
# that there is one notion of where a line ends and of which characters
# may reach the notes.  The line breaks are those of str.splitlines, less
# a lone CR: LF, CR LF, VT, FF, the separators FS, GS and RS, NEL, and
# Unicode's LINE and PARAGRAPH SEPARATOR.  Each ends a line here, and in
# the drawer only LF does, which is the one break Emacs and Org know.
# A lone CR moves back to the line's start, where what follows overwrites
# the line as it does in a terminal and in Jupyter (a progress bar keeps
# its last state); BS moves back one character the same way, without
# erasing.  ESC[K erases to the end of the line (ESC[1K to its start,
# ESC[2K all of it), as progress bars that shrink rely on; every other
# escape sequence (colours, cursor moves, titles and links of OSC, DCS
# strings) and every other C0 and C1 control, NUL, BEL and DEL included,
# is dropped, as a terminal shows nothing for them.  A TAB stays a TAB.

LINE_BREAK = r"\r\n|[\n\v\f\x1c\x1d\x1e\x85\u2028\u2029]"
CSI = r"(?:\x1b\[|\x9b)"
TERMINAL_CODE = re.compile(
    rf"(?P<break>{LINE_BREAK})"
    r"|(?P<return>\r)"
    r"|(?P<back>\x08)"
    rf"|{CSI}(?P<erase>[012]?)K"
    # Other control sequences: parameters, intermediates, a final byte.
    rf"|{CSI}[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]"
    # OSC, DCS, SOS, PM and APC strings, to BEL or ST; one left open ends
    # with its line, so that it cannot swallow the rest of the output.
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c\n]*(?:\x07|\x1b\\|\x9c)?"
    # Two- and three-character escapes: ESC 7, ESC ( B, ...
    r"|\x1b[\x20-\x2f]*[\x30-\x7e]"
    r"|[\x00-\x08\x0e-\x1f\x7f-\x9f]"
    # Invisible characters that change how the text around them reads:
    # direction overrides and isolates (which can make a line show other
    # than what it holds), marks, zero-width space, byte order mark.
    r"|[\u200b\u200e\u200f\u202a-\u202e\u2066-\u2069\u061c\ufeff]")


def terminal_lines(text):
    """TEXT's lines as a terminal shows them (see above), without their
    line breaks or trailing blanks; a last line that shows nothing is no
    line."""
    lines, line, column = [], [], 0
    position = 0

    def write(chunk):
        nonlocal column
        line[column:column + len(chunk)] = chunk
        column += len(chunk)

    for code in TERMINAL_CODE.finditer(text):
        write(text[position:code.start()])
        position = code.end()
        if code["break"]:
            lines.append("".join(line))
            line, column = [], 0
        elif code["return"]:
            column = 0
        elif code["back"]:
            column = max(column - 1, 0)
        elif code["erase"] is not None:
            if code["erase"] in ("", "0"):
                del line[column:]
            elif code["erase"] == "1":
                line[:column + 1] = " " * min(column + 1, len(line))
            else:
                line[:] = " " * len(line)
    write(text[position:])
    lines.append("".join(line))
    # Blanks at a line's end show as nothing, in a terminal as in Org.
    lines = [each.rstrip() for each in lines]
    if not lines[-1]:
        lines.pop()
    return lines


# The characters terminal_lines never lets through: a last guard, in
# check_fits_the_notes, that nothing reached the drawer another way.
NOT_FOR_THE_NOTES = re.compile(
    r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029"
    r"\u200b\u200e\u200f\u202a-\u202e\u2066-\u2069\u061c\ufeff]")


# ---- What goes into the drawer ------------------------------------------
#
# Printed text and text/plain become fixed-width lines (": "), which Org
# shows verbatim and never reads further: no line of them can close the
# drawer, start a section or a block, or be run.  A text/org value is Org
# of the block's own making, and goes in as it is: so a line of it that
# Org would read as more than the value's own text is refused, naming the
# line, rather than mangled into something the author did not write.

ORG_STRUCTURE = [
    # (what Org reads the line as, its pattern)
    ("would close its results drawer", re.compile(r"\s*:end:\s*$", re.IGNORECASE)),
    ("would open a drawer inside its results drawer", re.compile(r"\s*:[-\w]+:\s*$")),
    ("would start a new section of the notes", re.compile(r"\*+(?:\s|$)")),
    ("would open or close a block, which the build would run or tangle "
     "if it is a source block", re.compile(r"\s*#\+(?:begin|end)", re.IGNORECASE)),
    ("is a #+ line (a keyword, a #+CALL:, a #+RESULTS:), which Org would act on",
     re.compile(r"\s*#\+\S")),
    # Inline code starts a word for Org, for which _ is no part of one.
    ("holds an inline source block, which Org would run",
     re.compile(r".*?(?<![^\W_])src_[^\s\[{]+[\[{]")),
    ("holds an inline call of a block, which Org would run",
     re.compile(r".*?(?<![^\W_])call_[^\s\[(]+[\[(]")),
    # Not in the drawer alone: Org links its words wherever the notes use them.
    ("holds a radio target, which would turn its words into links all over the notes",
     re.compile(r".*?<<<[^<>\s](?:[^<>\n]*[^<>\s])?>>>")),
    # A footnote of the notes' own, defined where no text refers to it;
    # Org reads [FN:1] as [fn:1].
    ("would define a footnote of the notes", re.compile(r"\[fn:[^\]\s]+\]", re.IGNORECASE)),
    # Code Org runs, if not at once: the agenda evaluates a diary
    # expression, and following a link runs its Lisp or shell command.
    ("is a diary expression, which Org's agenda would evaluate", re.compile(r"\s*%%\(")),
    ("holds a diary timestamp, whose expression Org's agenda would evaluate",
     re.compile(r".*?<%%\(")),
    ("holds a link that runs code when followed (elisp:, shell:)",
     re.compile(r".*?(?<![^\W_])(?:elisp|shell):\S")),
]


def check_org_value(text):
    """The lines of a text/org value as the drawer gets them (stable_text),
    once no line of it would escape its results drawer or change the
    structure of the notes.  Checked as they will be written: a path the
    rewriting shortens could make a line that was harmless one that is
    not (a #+ at the start of a path under the notes' folder)."""
    # A line's indentation is columns to Org, and Org writes it as spaces
    # when it indents the results of a block in a list item: a tab there
    # would come back as spaces, and `make test` find another result.
    lines = [re.sub(r"^[ \t]+", lambda blank: blank.group().expandtabs(8), line)
             for line in stable_lines(text)]
    # Blank lines around the value are no part of it.
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    for number, line in enumerate(lines, 1):
        for reason, pattern in ORG_STRUCTURE:
            if pattern.match(line):
                raise BlockError(
                    f"returned Org text whose line {number}, {line.strip()!r}, {reason}; "
                    "return it as text/plain instead, which the drawer shows as it is",
                    "output")
    return lines


def fixed_width(text):
    """TEXT as fixed-width lines.  An empty one is ": ", as Org writes it:
GitHub's renderer reads a ":" alone as a paragraph of its own, cutting
the output in two."""
    return [": " + line for line in stable_lines(text)]


# ipykernel compiles each cell as a file of its own temporary folder,
# named by the kernel's process id: a warning raised by a block's own code
# (RuntimeWarning: overflow encountered in exp) names that file, so its
# text would change on every run, and `make test` fail after every `make
# run`.  The kernel inherits this process's temporary folder.
KERNEL_CELL_FILE = re.compile(re.escape(tempfile.gettempdir().rstrip("/"))
                              + r"/ipykernel_[0-9]+/[0-9]+\.py")


# Where the checkout, the venv and Python's own library lie differs from
# one clone and machine to the next: a library's warning names its file
# (<venv>/lib/python3.11/site-packages/numpy/_core/fromnumeric.py:3824:
# RuntimeWarning: Mean of empty slice), a block may print a path of the
# notes.  Recorded as they are, they would publish the author's folders
# and fail `make test` in any other clone.  Each is named as it stays:
# the libraries' folders by a placeholder, the notes' folder (the
# bridge's and the kernel's) by paths relative to it, and alone as
# <notes> ("." would read as the end of a sentence, ".." as its parent).
# Only a whole path: not one that merely begins like it (/tmp/notes2),
# nor one inside another word or address (https://example.org/tmp/notes).
PATH_CHARACTER = r"[\w.~+-]"


def _stable_places():
    places = {folder.rstrip("/"): "<site-packages>"
              for folder in site.getsitepackages() if folder.rstrip("/")}
    # The standard library's own folder, not the venv's lib/python3.X.
    places.setdefault(os.path.dirname(os.__file__).rstrip("/"), "<stdlib>")
    notes = os.getcwd().rstrip("/")
    if notes and notes != os.path.expanduser("~").rstrip("/"):
        places.setdefault(notes, "<notes>")
    alternatives = "|".join(re.escape(place) for place in sorted(places, key=len, reverse=True))
    # A place, then the rest of its path, or its end: punctuation, a
    # space, the end of a sentence.
    pattern = re.compile(rf"(?<![\w.:/-])({alternatives})"
                         rf"(?:(/)(?={PATH_CHARACTER})|(/)?(?!{PATH_CHARACTER}|/)|(?=\.(?:\s|$)))")
    return pattern, places


STABLE_PLACES = _stable_places()


def _stable_place(match):
    place = STABLE_PLACES[1][match.group(1)]
    if match.group(2):                   # a path under it goes on
        return "" if place == "<notes>" else place + "/"
    return place + (match.group(3) or "")


def stable_text(text):
    """TEXT with what changes from run to run, clone to clone or machine
    to machine of the same code put as it stays: a cell's file named
    <cell>, the folders above as they are named there."""
    return STABLE_PLACES[0].sub(_stable_place, KERNEL_CELL_FILE.sub("<cell>", text))


def stable_lines(text):
    """TEXT's lines as a terminal shows them, each made stable: the one way
    any text a block produced comes into its drawer."""
    return [stable_text(line) for line in terminal_lines(text)]


def org_result(outputs, file=None, links=(), max_lines=None, results=None, wrap=False):
    """The drawer text org-babel records for OUTPUTS, the one path from
    anything a block produced to the notes: printed text and the value's
    IPython repr as fixed-width lines, a value that can show itself as Org
    (text/org) as it is, a picture as a link.  A block with a :file
    records only what it prints and the picture: its value's repr (a
    Line2D, a Digraph) would carry a memory address.  LINKS are pictures
    saved for a block without a :file.  RESULTS (the block's :results
    words) and WRAP (whether it has a :wrap) say how Org inserts the
    text; the default is the notes' own, a drawer."""
    lines, printed = [], ""
    for kind, content in as_shown(outputs):
        if kind == "stream":
            # One print can arrive in several messages, and a progress bar
            # goes back over what earlier ones wrote: join before reading.
            printed += content["text"]
        elif kind in ("execute_result", "display_data"):
            data = content["data"]
            if is_picture(data):
                # A picture, drawn to its :file or linked, which is all
                # Jupyter shows of it: its text/plain would add a memory
                # address beside it.
                continue
            if kind == "execute_result" and file:
                continue
            # What Jupyter shows of a display() too, in its richest form
            # that is text.
            lines += fixed_width(printed)
            printed = ""
            if "text/org" in data:
                lines += check_org_value(data["text/org"])
            else:
                lines += fixed_width(data.get("text/markdown", data.get("text/plain", "")))
    lines += fixed_width(printed)
    if file:
        lines.append(f"[[file:{file}]]")
    lines += [f"[[file:{link}]]" for link in links]
    # Each text was made stable (stable_text) as it came in, printed,
    # shown or returned alike (a function's __code__.co_filename).
    org = "\n".join(lines)
    check_fits_the_notes(org, max_lines, results, wrap)
    return org


def printed_text(outputs):
    """What the block wrote to its standard output, as the tangled script
run on its own would write it."""
    return readable_by_emacs("".join(content["text"] for kind, content in outputs
                                     if kind == "stream" and content.get("name") == "stdout"))


def readable_by_emacs(text):
    """TEXT as a reply to Emacs can hold it: Emacs's JSON reader refuses a
    NUL (which a terminal shows as nothing) and a lone surrogate (written
    out here as its escape), and would lose the whole reply to either."""
    return text.replace("\x00", "").encode("utf-8", "backslashreplace").decode("utf-8")


def inserted_bare(results, wrap):
    """Whether Org puts the result text into the notes with nothing around
    it (`:results raw`), as ob-core's org-babel-insert-result decides."""
    results = set(results or ())
    return "raw" in results and not wrap and not results & {"html", "latex", "org", "code"}


def one_replaceable_element(lines):
    """Whether Org, finding LINES after #+RESULTS:, would take all of them
    for the result it replaces on the next run: one fixed-width area, one
    table, or one link.  Of anything else it removes the first element
    only, or nothing, and each run would add the text once more."""
    return (all(line == ":" or line.startswith(": ") for line in lines)
            or all(line.lstrip().startswith("|") for line in lines)
            or (len(lines) == 1 and re.fullmatch(r"\[\[[^]]*\]\]", lines[0]) is not None))


# What a long line of a result may hold, on average: the characters a
# result may have are this many times its lines.
CHARACTERS_A_LINE = 200


def check_fits_the_notes(org, max_lines=None, results=None, wrap=False):
    """Refuse a drawer text that cannot or should not go into an Org file."""
    unfit = NOT_FOR_THE_NOTES.search(org)
    if unfit:
        raise BlockError(f"produced the control character {unfit.group()!r}, which the "
                         "notes cannot show; print repr() of the text instead", "output")
    try:
        org.encode("utf-8")
    except UnicodeEncodeError as error:
        raise BlockError(f"printed {org[error.start]!r}, which is not valid "
                         "Unicode (a lone surrogate); print repr() of the text instead",
                         "output") from None
    lines = org.split("\n") if org else []
    # As many characters as a thousand long lines: one huge line is no
    # easier to read than many.
    if max_lines and len(org) > max_lines * CHARACTERS_A_LINE:
        raise BlockError(f"produced {len(org):,} characters, more than the "
                         f"{max_lines * CHARACTERS_A_LINE:,} a result may have in the notes; "
                         "print less (a summary, or a slice)", "output")
    if max_lines and len(lines) > max_lines:
        raise BlockError(f"produced {len(lines)} lines, more than the {max_lines} "
                         "a result may have in the notes; print less (a summary, "
                         "or a slice)", "output")
    if lines and inserted_bare(results, wrap) and not one_replaceable_element(lines):
        raise BlockError("has :results raw, which puts its result into the notes without "
                         "a drawer, and Org would replace only the first part of this one "
                         "on the next run, adding the rest again each time; "
                         "use :results drawer", "output")


def mime_for(file):
    mime = MIME_BY_EXTENSION.get(os.path.splitext(file)[1].lower())
    if mime is None:
        raise BlockError(
            f"has :file {file}, which has no picture extension (use one of: "
            + ", ".join(sorted(MIME_BY_EXTENSION)) + ")", "output")
    return mime


def write_atomically(path, data):
    """Write DATA to PATH through a temporary file in the same folder.  It
    gets the permissions the build's install gives an output (see
    gradients-build--installed-modes in build.el): those of the file it
    replaces, so that a picture a group may write stays so and one kept
    private stays private; for a new file, the umask's.  A symbolic link
    is followed, as the build follows it for an output: the file it
    leads to gets the bytes, and the link stays."""
    path = os.path.realpath(path)
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    try:
        replaced = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        replaced = None
    while True:
        temporary = os.path.join(folder, f".tmp-{uuid.uuid4().hex}")
        try:
            # Created as open() creates a new file: the umask applies.
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        if replaced is not None:
            os.chmod(temporary, replaced)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


# A memory address: in an object's default repr ("<Foo object at
# 0x7f...>", six digits or more), or printed bare (hex(id(x))), which on a
# 64-bit machine has more than eight digits.  A shorter hex number (a
# colour, a mask, "the byte at 0x10") is not one.  tests/test_notes.py
# refuses a recorded one with this pattern.
# In either case: a __repr__ of its own may shout (<Obj AT 0X7FF7...>).
MEMORY_ADDRESS = re.compile(r"(?<= at )0x[0-9a-f]{6,}\b|\b0x[0-9a-f]{9,}\b", re.IGNORECASE)


def check_repeatable(outputs, file, org, tangled=None, left=None):
    """Refuse what a build would record otherwise than the block made it,
    or differently on every run: pictures without a :file, which no
    drawer of the notes can link, a memory address, and for a block
    TANGLED into a script, a display of anything but a picture: the
    script, run on its own, has no display() (NameError), and IPython's
    objects print as their class (<IPython.core.display.Markdown
    object>), so what it printed would not be what the notes record.  A
    picture is the build's to draw, and plt.show() prints nothing."""
    left = left if tangled else {}
    if left.get("threads"):
        raise BlockError(f"is tangled into {tangled} and leaves a thread running when it ends "
                         f"({', '.join(left['threads'])}): {tangled}, imported by `make test', "
                         "would not end before it does; join it before the block ends, or make "
                         "it a daemon", "output")
    if left.get("processes"):
        pid, command = left["processes"][0]
        raise BlockError(f"is tangled into {tangled} and leaves a process running when it ends "
                         f"({pid}: {command[:80]}): {tangled}, imported by `make test', would "
                         "leave it behind; wait for it before the block ends", "output")
    for kind, content in outputs:
        if tangled and kind == "display_data" and not is_picture(content["data"]):
            raise BlockError(f"is tangled into {tangled} and displayed "
                             f"{' and '.join(sorted(content['data']))}, which {tangled}, run "
                             "on its own, would not show; print it instead, or display it "
                             "from a block of :tangle no", "output")
    shown = len(shown_pictures(outputs))
    if shown and not file:
        raise BlockError(f"displayed {'a picture' if shown == 1 else f'{shown} pictures'} "
                         "but has no :file, so the notes would show none; give it a "
                         ":file under images/, one picture a block", "output")
    address = MEMORY_ADDRESS.search(org)
    if address:
        # The way out depends on how it came: `;' silences a value, not a
        # print.
        printed = any(kind == "stream" and MEMORY_ADDRESS.search(content.get("text", ""))
                      for kind, content in outputs)
        raise BlockError(f"shows {address.group()}, which reads as a memory address, and "
                         "those change on every run; show something else ("
                         + ("print what the object holds, or give it a __repr__ of its own)"
                            if printed else
                            "give the object a __repr__ of its own, or end the block with "
                            "`;' to show no value)"), "output")
    for kind, content in as_shown(outputs):
        unshown = kind in ("execute_result", "display_data") and textless(content["data"])
        if unshown:
            raise BlockError(f"displayed {unshown}, which the notes cannot show, and its text "
                             f"is only {content['data']['text/plain']}; print the text it "
                             "holds instead", "output")


# The text/plain IPython gives a display of HTML, LaTeX, JSON and the like:
# the class's name, nothing of what it shows.
CLASS_ONLY = re.compile(r"<[\w.]+ object>")


def textless(data):
    """The kinds of output, as words, of a value or display DATA whose
    only text for the notes is CLASS_ONLY; or None."""
    plain = data.get("text/plain")
    if ({"text/org", "text/markdown"} & data.keys() or is_picture(data)
            or not (isinstance(plain, str) and CLASS_ONLY.fullmatch(plain))):
        return None
    others = sorted(data.keys() - {"text/plain"})
    return " and ".join(others) or None


def execute(kernel, code, file=None, write_to=None, timeout=None, max_lines=None,
            loose_pictures=None, results=None, wrap=False, for_the_notes=False,
            tangled=None, notes=None):
    """Run CODE; write its picture to WRITE_TO (default FILE); return the
    org text and the raw outputs.  Raise BlockError if the code raised or
    its result cannot go into the notes.  With LOOSE_PICTURES, {"folder":
    where, "link": the same folder as the drawer should name it}, the
    pictures of a block without a :file are saved there and linked.  With
    FOR_THE_NOTES, see check_repeatable."""
    # A hundred times what a result may hold: a progress bar that goes
    # back over its line prints far more than it leaves.
    outputs = kernel.run(code, timeout, {"left": LEFT_RUNNING} if for_the_notes else None,
                         max_printed=max_lines * CHARACTERS_A_LINE * 100 if max_lines else None,
                         notes=notes)
    left = left_running(kernel, kernel.evaluated.get("left")) if for_the_notes else {}
    try:
        org = result(outputs, file, write_to, max_lines, loose_pictures, results, wrap,
                     for_the_notes, tangled, left, kernel.in_notes)
    except BlockError:
        raise
    except Exception as error:
        # What a block shows is its own to choose (display(..., raw=True)
        # sends any data under any type): what the bridge cannot make of
        # it fails that block, named, where it would end the bridge, and
        # with it the kernel and every variable.
        raise BlockError(f"displayed what the bridge cannot read ({type(error).__name__}: "
                         f"{error})", "output") from None
    return org, outputs


# What is running in the kernel when a block ends that would keep a
# script from ending, or outlive it.  Imported by `make test', a tangled
# block that leaves either hung pytest, or left the process behind, where
# the build, whose kernel stops everything it started, passed.  Threads:
# not daemons, nor a concurrent.futures worker waiting for work (Python
# stops those at exit; one still running its work is waited for).
# Processes: the kernel's children (not zombies, which are gone, nor
# daemonic multiprocessing children, as a pool's workers are, which
# Python ends at exit, nor multiprocessing's own helpers), and the
# processes the supervisor above the kernel adopted, a block's
# double-forked daemons.  Each block is held to what it started: what was
# running before it ran is known (Kernel.known_running).
LEFT_RUNNING_SOURCE = """\
import json, os, sys, threading, time
def read(path):
    # A process or thread can end between being listed and being read.
    try:
        with open(path, "rb") as file:
            return file.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
def children(pid):
    found = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        found.update(map(int, (read(f"/proc/{pid}/task/{task}/children") or b"").split()))
    return found
def working(thread, frames):
    frame = frames.get(thread.ident)
    while frame is not None:
        code = frame.f_code
        if code.co_name == "run" and code.co_filename.endswith(
                os.path.join("concurrent", "futures", "thread.py")):
            return True
        frame = frame.f_back
    return False
def waits_at_exit(thread, frames):
    # A C function as a target has no module of its own (None).
    module = getattr(getattr(thread, "_target", None), "__module__", None) or ""
    if module.startswith("concurrent.futures"):
        return working(thread, frames)
    # A process pool's manager, which Python ends at exit once it has no
    # work left.
    if type(thread).__module__ == "concurrent.futures.process":
        return bool(getattr(thread, "pending_work_items", True))
    return True
def alive(pid):
    status = read(f"/proc/{pid}/stat")
    return status is not None and status.rpartition(b")")[2].split()[:1] != [b"Z"]
def left_running():
    frames = sys._current_frames()
    multiprocessing = sys.modules.get("multiprocessing")
    ended_at_exit = {child.pid for child in multiprocessing.active_children()
                     if child.daemon} if multiprocessing else set()
    threads = []
    for thread in threading.enumerate():
        if thread.daemon or thread is threading.main_thread():
            continue
        if waits_at_exit(thread, frames):
            # By the system's thread id: Python gives a thread that ended's
            # ident to the next one.
            threads.append([thread.native_id or thread.ident, thread.name])
        elif type(thread).__module__ == "concurrent.futures.process":
            # The workers of an idle process pool, which its manager ends
            # at exit.
            ended_at_exit.update(getattr(thread, "processes", None) or ())
    found = children("self") - ended_at_exit
    supervisor = os.getppid()
    if b"kernel_supervisor" in (read(f"/proc/{supervisor}/cmdline") or b""):
        found |= children(supervisor) - {os.getpid()}
    found = {pid for pid in found if alive(pid)}
    if found:
        # A process killed just now (p.kill() without p.wait()) still
        # shows as running for a moment.
        time.sleep(0.05)
        found = {pid for pid in found if alive(pid)}
    processes = []
    for pid in sorted(found):
        command = read(f"/proc/{pid}/cmdline")
        if (command is None or b"multiprocessing.resource_tracker" in command
                or b"multiprocessing.forkserver" in command):
            continue
        processes.append([pid, " ".join(command.decode(errors="replace").split("\\0")).strip()])
    return json.dumps({"threads": threads, "processes": processes})
"""
# An expression, as Jupyter's user_expressions take: it defines the
# above in a namespace of its own, not the blocks'.
LEFT_RUNNING = ("(lambda names: (exec(%r, names), names['left_running']())[1])({})"
                % LEFT_RUNNING_SOURCE)


def left_running(kernel, text):
    """What LEFT_RUNNING found in KERNEL that was not running before, as
    {"threads": [names], "processes": [(pid, command)]}; nothing when it
    could not tell."""
    try:
        found = json.loads(ast.literal_eval(text))
    except (ValueError, SyntaxError, TypeError):
        return {}
    known = kernel.known_running
    kernel.known_running = {("thread", ident) for ident, _ in found["threads"]} | {
        ("process", pid) for pid, _ in found["processes"]}
    return {"threads": [name for ident, name in found["threads"]
                        if ("thread", ident) not in known],
            "processes": [(pid, " ".join(command.split())) for pid, command in found["processes"]
                          if ("process", pid) not in known]}


def result(outputs, file, write_to, max_lines, loose_pictures, results, wrap, for_the_notes,
           tangled=None, left=None, in_notes=None):
    """The drawer text of a block's OUTPUTS, once its picture is written;
    see execute."""
    error = failure(outputs, in_notes)
    if error:
        raise error
    # Every check first: a block refused writes no picture.
    writes = []
    if file:
        writes.append((write_to or file, picture(outputs, file)))
    elif loose_pictures:
        for extension, data in pictures(outputs):
            name = uuid.uuid4().hex[:12] + extension
            writes.append((os.path.join(loose_pictures["folder"], name), data))
    links = [f"{loose_pictures['link']}/{os.path.basename(path)}" for path, _ in writes
             if not file]
    org = org_result(outputs, file, links, max_lines, results, wrap)
    if for_the_notes:
        check_repeatable(outputs, file, org, tangled, left or {})
    for path, data in writes:
        try:
            write_atomically(path, data)
        except OSError as error:
            # The block's fault, named as such: uncaught, it would end
            # the bridge, and with it the kernel and its variables.
            what = f"has :file {file}, which" if file else f"drew a picture that, saved as {path},"
            raise BlockError(f"{what} cannot be written: {why_unwritable(path, error)}",
                             "output") from None
    return org


def why_unwritable(path, error):
    """What stopped ERROR's write to PATH, in the words the build uses for
    its outputs: a file where the path needs a folder shows only as "File
    exists" or "Not a directory" otherwise."""
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.isdir(folder):
        if os.path.lexists(folder):
            return f"{os.path.relpath(folder)} is a file, not a folder"
        folder = os.path.dirname(folder)
    if os.path.isdir(path):
        return "it is a folder"
    return error.strerror or str(error)


STOPPING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class StopRequest:
    """How the bridge learns that it must stop, from a stopping signal or
    from the end of its input: calling it sets a flag, which the main loop
    and a block that runs look at, and wakes the main loop by putting None
    in its queue of requests.  Nothing is raised through the code a signal
    interrupts, where it could be caught and lost, and the flag cannot be
    unset: a second signal, or the end of input after a signal, changes
    nothing.  SimpleQueue.put is reentrant, so the handler may run
    wherever the main thread is, even inside the same queue's get.  The
    end of input wakes the main loop at once; a signal within WAKE_UP."""

    def __init__(self):
        self.requested = False
        self.requests = queue.SimpleQueue()

    def __call__(self, *_):
        self.requested = True
        self.requests.put(None)


class InterruptAsks:
    """The requests Emacs asked to interrupt, by id, and the one that
    runs: calling it says how many times that one was asked to be.  Asks
    come on the thread that reads the input, as lines {"interrupt": ID},
    before the request runs or while it does; one that comes after it
    ended changes nothing.  Each ask is one interrupt: a block that
    caught the first is interrupted again."""

    def __init__(self):
        self.asked = collections.Counter()
        self.running = None
        self.lock = threading.Lock()

    def ask(self, line):
        """Note the ask LINE makes, if it makes one; say whether it did."""
        if not line.startswith('{"interrupt"'):
            return False
        with self.lock:
            self.asked[json.loads(line)["interrupt"]] += 1
        return True

    def start(self, request_id):
        self.running = request_id

    def end(self):
        with self.lock:
            self.asked.pop(self.running, None)
            self.running = None

    def __call__(self):
        with self.lock:
            return self.asked[self.running] if self.running is not None else 0


def read_requests(stdin, requests, stop, interrupts):
    """Pass each line of STDIN to REQUESTS, but asks to interrupt, which
    go to INTERRUPTS at once; at its end (Emacs exited, however it
    exited), or if reading fails, request the stop."""
    try:
        for line in stdin:
            if not interrupts.ask(line):
                requests.put(line)
    finally:
        stop()


# How often a bridge busy with a kernel (starting it, running a block)
# says so, with a line {"alive": true}: a bridge that says nothing for
# much longer is stopped (SIGSTOP, a debugger) or stuck, and Emacs kills it
# (`gradients-bridge-patience'), whether or not the block has a time limit.
ALIVE_EVERY = 1
# The line comes from a thread of its own, which would go on if the main
# thread, the one that waits on the kernel, were stuck (a deadlock, a wait
# that never ends): it says so only while the main thread comes round to
# asking whether to stop, which it does at least every WAKE_UP seconds
# while it waits, and at most STUCK_AFTER seconds ago.  Past that the
# bridge falls silent, and Emacs kills it as it kills a stopped one.
STUCK_AFTER = 10


class Replies:
    """The bridge's lines to Emacs, one JSON object each, written whole by
    whichever thread sends them; and, while the bridge is busy, a line
    every ALIVE_EVERY seconds saying it is alive, from a thread of its own
    that a main thread waiting on the kernel does not hold up."""

    def __init__(self, stdout):
        self.stdout = stdout
        self.lock = threading.Lock()
        self.busy = threading.Event()
        self.came_round = time.monotonic()
        threading.Thread(target=self.say_alive, daemon=True).start()

    def start_work(self):
        """The bridge is busy from now on, until its answer is sent."""
        self.moving()
        self.busy.set()

    def moving(self):
        """The main thread came round: it is not stuck."""
        self.came_round = time.monotonic()

    def write(self, obj):
        self.stdout.write(json.dumps(obj) + "\n")
        self.stdout.flush()

    def send(self, obj):
        """Send OBJ, an answer: the bridge is idle from then on, and says
        nothing more until it is busy again."""
        with self.lock:
            self.busy.clear()
            self.write(obj)

    def say_alive(self):
        while True:
            time.sleep(ALIVE_EVERY)
            with self.lock:
                if (self.busy.is_set()
                        and time.monotonic() - self.came_round < STUCK_AFTER):
                    try:
                        self.write({"alive": True})
                    except (OSError, ValueError):
                        # Emacs is gone: the main loop sees the end of input.
                        return


def serve(stdin, stdout):
    global ADOPTS_ORPHANS
    # Ctrl-C in a terminal reaches every process of the build; Emacs decides
    # what stops, and interrupts a block by signalling the kernel itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Emacs sends SIGTERM to stop a session, and SIGHUP to its subprocesses
    # as it exits, often right after the SIGTERM of its exit hook.
    stop = StopRequest()
    for each in STOPPING_SIGNALS:
        signal.signal(each, stop)
    kernel_supervisor.adopt_orphans()
    ADOPTS_ORPHANS = True
    # Input is read while a block runs, so that its end, or an ask to
    # interrupt it, is noticed then too.
    interrupts = InterruptAsks()
    threading.Thread(target=read_requests, args=(stdin, stop.requests, stop, interrupts),
                     daemon=True).start()
    kernel = None
    replies = Replies(stdout)
    send = replies.send

    def stop_requested():
        replies.moving()
        return stop.requested

    try:
        replies.start_work()
        kernel = Kernel(stop_requested, interrupts)
        send({"ready": True, "kernel_pid": kernel.pid})
        while True:
            try:
                line = stop.requests.get(timeout=WAKE_UP)
            except queue.Empty:
                line = None
            if stop.requested:
                break
            if line is None:
                # Gone between blocks (kill -9, the system's memory
                # limit): said now, with the bridge's end, after which
                # the next block starts a fresh kernel.  Found by the
                # next block, it was said to have lost a kernel it never
                # ran on, and only the block after that ran.
                if not kernel.is_alive():
                    sys.exit(str(kernel.died("the kernel died", during="")))
                continue
            request = json.loads(line)
            reply = {"id": request.get("id")}
            replies.start_work()
            interrupts.start(request.get("id"))
            try:
                org, outputs = execute(kernel, request["code"], request.get("file"),
                                 request.get("write_to"), request.get("timeout"),
                                 request.get("max_lines"), request.get("loose_pictures"),
                                 request.get("results"), request.get("wrap", False),
                                 request.get("for_the_notes", False), request.get("tangled"),
                                 request.get("notes"))
                send({**reply, "ok": True, "org": org, "printed": printed_text(outputs)})
            except BlockError as error:
                send({**reply, "ok": False, "kind": error.kind, "summary": error.summary,
                      "error": str(error), "killed": error.killed})
                if isinstance(error, KernelDied):
                    break
            finally:
                interrupts.end()
    except Stopped:
        pass
    finally:
        # A kernel that did not start was killed as Kernel() failed.
        if kernel is not None:
            kernel.kill()


def main():
    # The requests are UTF-8 JSON whatever the locale says: under LC_ALL=C
    # or POSIX a block's non-ASCII text would otherwise reach the kernel as
    # surrogates, and under a Latin-1 locale as other characters.
    sys.stdin.reconfigure(encoding="utf-8", errors="strict")
    try:
        serve(sys.stdin, sys.stdout)
    except Exception as error:
        # Emacs says the last line of a bridge that ended so: with it, the
        # limits of the shell's it may have met (the bridge's own files
        # open at once, its threads).
        said = traceback.format_exception(error)
        last = said[-1].rstrip("\n")
        if "(limits in force: " not in last:
            last = with_the_limits_it_met(last)
        sys.stderr.write("".join(said[:-1]) + last + "\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
