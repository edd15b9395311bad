"""Run code on a Jupyter kernel and report what it produced, for org-babel.

Emacs starts this program once per session and talks to it over a pipe,
one JSON object per line each way:

    request:  {"code": "...", "file": "images/x.png" or null,
               "write_to": "/where/the/picture/goes.png" or null}
    reply:    {"ok": true,  "org": "<text for the results drawer>"}
              {"ok": false, "error": "<traceback as plain text>"}

The first line the bridge prints is {"ready": true} once the kernel
answers, so Emacs can tangle while the kernel boots.  At the end of its
input it shuts the kernel down.

The same functions serve the tests (`Kernel`, `execute`, `org_result`),
so what the tests compare is produced exactly as the build produces it.
"""

import base64
import json
import os
import queue
import re
import sys
import tempfile

from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import KernelManager

# Terminal colour codes in IPython tracebacks.
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

# A picture's mime type follows from the extension of its :file.
MIME_BY_EXTENSION = {".png": "image/png", ".svg": "image/svg+xml"}


class BlockError(Exception):
    """The kernel raised while running a block; the message is its traceback."""


class ThisInterpreter(KernelSpecManager):
    """Always this interpreter's ipykernel: a "python3" kernelspec installed
    elsewhere on the machine must not decide which Python runs the notes."""

    def get_kernel_spec(self, kernel_name):
        return KernelSpec(
            argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            display_name="gradients",
            language="python",
        )


def kernel_manager(sockets):
    """A manager for a kernel from this interpreter's environment that
    listens on Unix sockets in the folder SOCKETS: no TCP port, nothing on
    the network, and no plain-text-over-TCP warning in the output."""
    return KernelManager(
        kernel_name="python3",
        kernel_spec_manager=ThisInterpreter(),
        transport="ipc",
        ip=os.path.join(sockets, "socket"),
        connection_file=os.path.join(sockets, "connection.json"),
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


class Kernel:
    """One running kernel, as kernel_manager makes it."""

    def __init__(self):
        self.sockets = tempfile.TemporaryDirectory(prefix="gradients-kernel-")
        self.manager = kernel_manager(self.sockets.name)
        self.manager.start_kernel(env=kernel_environment())
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    def run(self, code):
        """Execute CODE; return its outputs as a list of (kind, content)."""
        msg_id = self.client.execute(code, store_history=True, allow_stdin=False)
        outputs = []
        while True:
            try:
                msg = self.client.get_iopub_msg(timeout=1)
            except queue.Empty:
                if not self.manager.is_alive():
                    raise BlockError("the kernel died while running this block") from None
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
        return outputs

    def shutdown(self):
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)
        self.sockets.cleanup()


def traceback_text(outputs):
    """The traceback of the first error in OUTPUTS, or None."""
    for kind, content in outputs:
        if kind == "error":
            return ANSI_ESCAPE.sub("", "\n".join(content["traceback"]))
    return None


def picture(outputs, mime):
    """The last picture of type MIME in OUTPUTS, as bytes, or None."""
    found = None
    for kind, content in outputs:
        if kind in ("display_data", "execute_result") and mime in content["data"]:
            found = content["data"][mime]
    if found is None:
        return None
    if mime == "image/png":
        return base64.b64decode(found)
    return found.encode()


def org_result(outputs, file=None):
    """The drawer text org-babel records for OUTPUTS: printed text and the
    value's IPython repr as fixed-width lines, a value that can show itself
    as Org (text/org) as it is, a picture as a link.  A block with a :file
    records only what it prints and the picture: its value's repr (a
    Line2D, a Digraph) would carry a memory address."""
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
            lines += data["text/org"].splitlines() if "text/org" in data \
                else fixed_width(data["text/plain"])
    lines += fixed_width(printed)
    if file:
        lines.append(f"[[file:{file}]]")
    return "\n".join(lines)


def mime_for(file):
    mime = MIME_BY_EXTENSION.get(os.path.splitext(file)[1].lower())
    if mime is None:
        raise BlockError(
            f":file {file} has no picture extension (use one of: "
            + ", ".join(sorted(MIME_BY_EXTENSION)) + ")"
        )
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


def execute(kernel, code, file=None, write_to=None):
    """Run CODE; write its picture to WRITE_TO (default FILE); return the
    org text and the raw outputs.  Raise BlockError with the traceback if
    the code raised."""
    outputs = kernel.run(code)
    error = traceback_text(outputs)
    if error:
        raise BlockError(error)
    if file:
        mime = mime_for(file)
        data = picture(outputs, mime)
        if data is None:
            raise BlockError(f"the block has :file {file} but displayed no {mime}")
        write_atomically(write_to or file, data)
    return org_result(outputs, file), outputs


def serve(stdin, stdout):
    kernel = Kernel()

    def send(obj):
        stdout.write(json.dumps(obj) + "\n")
        stdout.flush()

    send({"ready": True})
    try:
        for line in stdin:
            request = json.loads(line)
            try:
                org, _ = execute(
                    kernel, request["code"], request.get("file"), request.get("write_to")
                )
                send({"ok": True, "org": org})
            except BlockError as error:
                send({"ok": False, "error": str(error)})
    finally:
        kernel.shutdown()


if __name__ == "__main__":
    serve(sys.stdin, sys.stdout)
