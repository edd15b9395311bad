"""Run code on a Jupyter kernel and report what it produced, for org-babel.

Emacs starts this program once per session and talks to it over a pipe,
one JSON object per line each way:

    request:  {"id": 7, "code": "...",
               "file": "images/x.png" or null,
               "write_to": "/where/the/picture/goes.png" or null,
               "timeout": seconds or null, "max_lines": 1000 or null}
    reply:    {"id": 7, "ok": true,  "org": "<text for the results drawer>"}
              {"id": 7, "ok": false, "kind": KIND, "error": "<message>"}

KIND says what went wrong: "raised" (the code raised; "error" is the
traceback, "summary" its last line), "interrupted" (KeyboardInterrupt, from
an interrupt), "timeout" (the block ran past its time limit and was
interrupted), "died" (the kernel is gone, and this bridge exits right after
the reply) or "output" (the block ran, but what it produced cannot go into
the notes).  Messages other than tracebacks read on from the block's name:
"block `plot' has :file ... but displayed no image/png".  Every reply names the
request it answers, so Emacs never writes one block's result into another.

The first line the bridge prints is {"ready": true, "kernel_pid": PID}
once the kernel answers; Emacs interrupts a running block by sending SIGINT
to that process, as Jupyter does.  At the end of its input, or on SIGTERM
or SIGHUP, the bridge stops the kernel and every process the kernel
started, even in the middle of a block.

The kernel listens on abstract Unix sockets (Linux), which live in no
folder; the connection file's folder is removed as soon as the kernel has
read it, so a bridge that is killed leaves nothing behind in /tmp.

The same functions serve the tests (`Kernel`, `execute`, `org_result`),
so what the tests compare is produced exactly as the build produces it.
"""

import base64
import glob
import json
import os
import queue
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid

from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import KernelManager

# Terminal colour codes in IPython tracebacks.
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

# A picture's mime type follows from the extension of its :file.
MIME_BY_EXTENSION = {".png": "image/png", ".svg": "image/svg+xml"}

# How long an interrupted kernel gets to finish its block before it is killed.
INTERRUPT_GRACE = 5


class BlockError(Exception):
    """The block did not produce a result; KIND says why (see the module
    docstring), the message is for the author."""

    def __init__(self, message, kind="raised", summary=None):
        super().__init__(message)
        self.kind = kind
        self.summary = summary or message.splitlines()[0]


class KernelDied(BlockError):
    def __init__(self, message):
        super().__init__(message, "died")


class ThisInterpreter(KernelSpecManager):
    """Always this interpreter's ipykernel: a "python3" kernelspec installed
    elsewhere on the machine must not decide which Python runs the notes.
    Its history stays in memory: the blocks of every build would otherwise
    go into the user's ~/.ipython history database, outside the project."""

    def get_kernel_spec(self, kernel_name):
        return KernelSpec(
            argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                  "--HistoryManager.enabled=False"],
            display_name="gradients",
            language="python",
        )


def kernel_manager(folder):
    """A manager for a kernel from this interpreter's environment whose
    connection file goes in FOLDER and which listens on abstract Unix
    sockets: no TCP port, nothing on the network, and no socket files."""
    return KernelManager(
        kernel_name="python3",
        kernel_spec_manager=ThisInterpreter(),
        transport="ipc",
        ip="@gradients-kernel-" + uuid.uuid4().hex[:16],
        connection_file=os.path.join(folder, "connection.json"),
    )


def kernel_environment():
    """Pictures come from the inline backend's display output, whatever
    backend the caller's environment asks for.  The kernel keeps the
    bytecode of the packages it imports even where PYTHONDONTWRITEBYTECODE
    is set: uv installs them uncompiled, and compiling NumPy, Matplotlib and
    IPython again would add seconds to every start.  The blocks themselves
    run from strings, so this leaves no bytecode beside the notes."""
    env = dict(os.environ, MPLBACKEND="module://matplotlib_inline.backend_inline")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


# The connection file's folder, named after the bridge that made it.
FOLDER_PREFIX = "gradients-kernel-"


def remove_stale_folders():
    """Remove the connection folders of bridges that no longer run.  A
    bridge removes its own once the kernel has started; one killed before
    that (SIGKILL, a crash) cannot, and the next bridge cleans up after it."""
    for path in glob.glob(os.path.join(tempfile.gettempdir(), FOLDER_PREFIX + "*-*")):
        pid = os.path.basename(path)[len(FOLDER_PREFIX):].split("-")[0]
        if not pid.isdigit() or os.stat(path).st_uid != os.getuid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:
            pass   # a process of another user has that number now


class Kernel:
    """One running kernel, as kernel_manager makes it."""

    def __init__(self):
        remove_stale_folders()
        folder = tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{os.getpid()}-")
        try:
            self.manager = kernel_manager(folder)
            self.manager.start_kernel(env=kernel_environment())
            self.client = self.manager.client()
            self.client.start_channels()
            self.client.wait_for_ready(timeout=60)
        except BaseException:
            self.shutdown()
            raise
        finally:
            # The kernel read its connection file when it started.
            shutil.rmtree(folder, ignore_errors=True)

    @property
    def pid(self):
        return self.manager.provisioner.pid

    def run(self, code, timeout=None):
        """Execute CODE; return its outputs as a list of (kind, content).
        Past TIMEOUT seconds the kernel is interrupted and BlockError raised."""
        msg_id = self.client.execute(code, store_history=True, allow_stdin=False)
        deadline = time.monotonic() + timeout if timeout else None
        interrupted_at = None
        outputs = []
        while True:
            try:
                msg = self.client.get_iopub_msg(timeout=0.2)
            except queue.Empty:
                if not self.manager.is_alive():
                    raise KernelDied("the kernel died while running it "
                                     "(os._exit, a crash, or a signal)") from None
                now = time.monotonic()
                if interrupted_at is None and deadline and now > deadline:
                    self.manager.interrupt_kernel()
                    interrupted_at = now
                elif interrupted_at is not None and now - interrupted_at > INTERRUPT_GRACE:
                    self.kill()
                    raise KernelDied(
                        f"it ran past its time limit of {timeout:g} s and did not "
                        f"stop when interrupted, so the kernel was killed") from None
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "status" and content["execution_state"] == "idle":
                break
            if kind in ("stream", "execute_result", "display_data", "error"):
                outputs.append((kind, content))
        reply = self.client.get_shell_msg(timeout=60)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = self.client.get_shell_msg(timeout=60)
        if any(p.get("source") == "ask_exit" for p in reply["content"].get("payload", [])):
            # exit() ends the kernel only after this reply: blame this block.
            self.kill()
            raise KernelDied("it called exit() or quit()")
        if interrupted_at is not None:
            raise BlockError(f"ran past its time limit of {timeout:g} s and was "
                             f"interrupted (give it more with :timeout SECONDS)", "timeout")
        return outputs

    def kill(self):
        """Stop the kernel at once, with every process it started (they
        share its process group, which outlives a kernel that died)."""
        manager = getattr(self, "manager", None)
        if manager is None:
            return
        pgid = getattr(manager.provisioner, "pgid", None)
        if pgid:
            # First, so that nothing the block started outlives a bridge
            # that is being stopped and may not get to finish.
            try:
                os.killpg(pgid, signal.SIGKILL)
            except OSError:
                pass
        if getattr(self, "client", None) is not None:
            self.client.stop_channels()
            self.client = None
        try:
            manager.shutdown_kernel(now=True)
        except Exception:
            pass   # a kernel that died already cannot be shut down

    shutdown = kill


def failure(outputs):
    """A BlockError for the first error in OUTPUTS, or None.  Its summary
    is the exception's one line, its message the whole traceback."""
    for kind, content in outputs:
        if kind == "error":
            ename, evalue = content["ename"], content["evalue"]
            summary = f"{ename}: {evalue}" if evalue else ename
            if ename == "SystemExit":
                # IPython's text asks for %tb, which a build cannot type.
                text = (f"{summary} (the block called sys.exit() or raised "
                        f"SystemExit; the kernel goes on)")
            else:
                text = ANSI_ESCAPE.sub("", "\n".join(content["traceback"]))
            kind = "interrupted" if ename == "KeyboardInterrupt" else "raised"
            return BlockError(text, kind, summary)
    return None


def decoded(mime, data):
    """A picture's bytes from its form in a Jupyter message."""
    return base64.b64decode(data) if mime == "image/png" else data.encode()


def picture(outputs, mime):
    """The last picture of type MIME in OUTPUTS, as bytes, or None."""
    found = None
    for kind, content in outputs:
        if kind in ("display_data", "execute_result") and mime in content["data"]:
            found = content["data"][mime]
    return None if found is None else decoded(mime, found)


def pictures(outputs):
    """Every picture in OUTPUTS, as (extension, bytes), in order."""
    found = []
    for kind, content in outputs:
        if kind in ("display_data", "execute_result"):
            for extension, mime in MIME_BY_EXTENSION.items():
                if mime in content["data"]:
                    found.append((extension, decoded(mime, content["data"][mime])))
                    break
    return found


# Lines of a text/org value that would not stay inside the results drawer:
# an :end: closes it early, a headline ends it, and a source block in it
# is one Org would run and tangle.  What followed would become part of the
# notes' text, and each `make run` would add it once more.
ORG_ESCAPES = re.compile(r"^[ \t]*:end:[ \t]*$|^\*+[ \t]|^[ \t]*#\+begin_src\b",
                         re.IGNORECASE | re.MULTILINE)


def check_org_value(text):
    """Refuse a text/org value with a line that would break out of the drawer."""
    found = ORG_ESCAPES.search(text)
    if found:
        raise BlockError(f"returned Org text with the line {found.group(0).strip()!r}, "
                         "which would break out of its results drawer; show it as "
                         "text/plain instead", "output")
    return text


def org_result(outputs, file=None, links=()):
    """The drawer text org-babel records for OUTPUTS: printed text and the
    value's IPython repr as fixed-width lines, a value that can show itself
    as Org (text/org) as it is, a picture as a link.  A block with a :file
    records only what it prints and the picture: its value's repr (a
    Line2D, a Digraph) would carry a memory address.  LINKS are pictures
    saved for a block without a :file."""
    def fixed_width(text):
        return [(": " + line).rstrip() for line in text.splitlines()]

    lines, printed = [], ""
    for kind, content in outputs:
        if kind == "stream":
            # One print can arrive in several messages: join before splitting.
            printed += content["text"]
        elif kind == "execute_result" and not file:
            lines += fixed_width(printed)
            printed = ""
            data = content["data"]
            lines += check_org_value(data["text/org"]).splitlines() if "text/org" in data \
                else fixed_width(data["text/plain"])
    lines += fixed_width(printed)
    if file:
        lines.append(f"[[file:{file}]]")
    lines += [f"[[file:{link}]]" for link in links]
    return "\n".join(lines)


def printed_text(outputs):
    """What the block wrote to its standard output, as the tangled script
run on its own would write it."""
    return "".join(content["text"] for kind, content in outputs
                   if kind == "stream" and content.get("name") == "stdout")


def check_fits_the_notes(org, max_lines):
    """Refuse a result that cannot or should not go into an Org file."""
    if "\x00" in org:
        raise BlockError("printed a NUL character, which an Org file cannot "
                         "hold; print repr() of the text instead", "output")
    try:
        org.encode("utf-8")
    except UnicodeEncodeError as error:
        raise BlockError(f"printed {org[error.start]!r}, which is not valid "
                         "Unicode (a lone surrogate); print repr() of the text instead",
                         "output") from None
    count = org.count("\n") + 1 if org else 0
    if max_lines and count > max_lines:
        raise BlockError(f"produced {count} lines, more than the {max_lines} "
                         "a result may have in the notes; print less (a summary, "
                         "or a slice)", "output")


def mime_for(file):
    mime = MIME_BY_EXTENSION.get(os.path.splitext(file)[1].lower())
    if mime is None:
        raise BlockError(
            f"has :file {file}, which has no picture extension (use one of: "
            + ", ".join(sorted(MIME_BY_EXTENSION)) + ")", "output")
    return mime


def write_atomically(path, data):
    """Write DATA to PATH through a temporary file in the same folder."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def execute(kernel, code, file=None, write_to=None, timeout=None, max_lines=None,
            loose_pictures=None):
    """Run CODE; write its picture to WRITE_TO (default FILE); return the
    org text and the raw outputs.  Raise BlockError if the code raised or
    its result cannot go into the notes.  With LOOSE_PICTURES, {"folder":
    where, "link": the same folder as the drawer should name it}, the
    pictures of a block without a :file are saved there and linked."""
    outputs = kernel.run(code, timeout)
    error = failure(outputs)
    if error:
        raise error
    links = []
    if file:
        mime = mime_for(file)
        data = picture(outputs, mime)
        if data is None:
            raise BlockError(f"has :file {file} but displayed no {mime}", "output")
        write_atomically(write_to or file, data)
    elif loose_pictures:
        for extension, data in pictures(outputs):
            name = uuid.uuid4().hex[:12] + extension
            write_atomically(os.path.join(loose_pictures["folder"], name), data)
            links.append(f"{loose_pictures['link']}/{name}")
    org = org_result(outputs, file, links)
    check_fits_the_notes(org, max_lines)
    return org, outputs


STOPPING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def read_requests(stdin, requests):
    """Pass each line of STDIN to REQUESTS; at its end, stop this process
    as SIGTERM does.  The end comes when Emacs exits, however it exits:
    one killed, or one whose terminal vanished before its exit hook ran,
    must not leave a kernel running a block for nobody."""
    for line in stdin:
        requests.put(line)
    os.kill(os.getpid(), signal.SIGTERM)


def serve(stdin, stdout):
    # Ctrl-C in a terminal reaches every process of the build; Emacs decides
    # what stops, and interrupts a block by signalling the kernel itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Emacs sends SIGHUP to its subprocesses as it exits, and does not wait;
    # often right after the SIGTERM of its exit hook, which must not cut
    # short the stopping that the first signal began.
    def stop(*_):
        for each in STOPPING_SIGNALS:
            signal.signal(each, signal.SIG_IGN)
        sys.exit(0)

    for each in STOPPING_SIGNALS:
        signal.signal(each, stop)
    requests = queue.Queue()
    # Input is read while a block runs, so that its end is noticed then too.
    threading.Thread(target=read_requests, args=(stdin, requests), daemon=True).start()
    kernel = None
    try:
        kernel = Kernel()

        def send(obj):
            stdout.write(json.dumps(obj) + "\n")
            stdout.flush()

        send({"ready": True, "kernel_pid": kernel.pid})
        while True:
            request = json.loads(requests.get())
            reply = {"id": request.get("id")}
            try:
                org, outputs = execute(kernel, request["code"], request.get("file"),
                                 request.get("write_to"), request.get("timeout"),
                                 request.get("max_lines"), request.get("loose_pictures"))
                send({**reply, "ok": True, "org": org, "printed": printed_text(outputs)})
            except BlockError as error:
                send({**reply, "ok": False, "kind": error.kind, "summary": error.summary,
                      "error": str(error)})
                if isinstance(error, KernelDied):
                    break
    finally:
        if kernel is not None:
            kernel.kill()


if __name__ == "__main__":
    serve(sys.stdin, sys.stdout)
