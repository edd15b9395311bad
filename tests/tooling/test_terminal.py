"""The notes in a real terminal Emacs, under tmux, as the author works:
keys typed while an asynchronous block waits for its kernel, or runs, are
acted on at once.

The kernel's Python waits for a gate the test opens only after Emacs has
answered the keys: an Emacs that waited for its kernel would never answer
them, however busy or quiet the machine.  The block then naps far longer
than the test lasts, and is still running when the terminal closes."""

import json
import os
import subprocess

import pytest

from conftest import EMACS, EMACSCLIENT, NO_NATIVE_COMPILATION, copy_project, gone, wait_for

NAP = """
#+name: nap
#+begin_src jupyter-python :tangle no
import time
open('napping', 'w').close()
time.sleep(300)
'rested'
#+end_src
"""

# The venv's Python, once the test creates the file `gate'.
GATED_PYTHON = """#!/bin/sh
while [ ! -e gate ]; do sleep 0.05; done
exec {python} "$@"
"""

SETUP = """;;; -*- lexical-binding: t -*-
{no_native_compilation}
(setq org-modules nil server-name {socket})
(server-start)
(load-file "tools/ob-gradients.el")
(setq gradients-python {gated_python})
(setq org-confirm-babel-evaluate nil)
(find-file "README.org")
(org-babel-goto-named-src-block "nap")
"""


@pytest.fixture
def terminal(tmp_path):
    project = copy_project(tmp_path)
    with open(project / "README.org", "a") as readme:
        readme.write(NAP)
    socket = project / "server"
    gated_python = project / "gated-python"
    gated_python.write_text(GATED_PYTHON.format(python=project / ".venv" / "bin" / "python"))
    gated_python.chmod(0o755)
    (project / "setup.el").write_text(SETUP.format(
        socket=json.dumps(str(socket)), gated_python=json.dumps(str(gated_python)),
        no_native_compilation=NO_NATIVE_COMPILATION))
    tmux = ["tmux", "-L", f"gradients-{os.getpid()}"]
    subprocess.run([*tmux, "new-session", "-d", "-x", "160", "-y", "45", "-c", str(project),
                    f"{EMACS} -nw -Q -l setup.el"], check=True,
                   env=dict(os.environ, TERM="xterm-256color"))

    def keys(*names):
        subprocess.run([*tmux, "send-keys", *names], check=True)

    def screen():
        return subprocess.run([*tmux, "capture-pane", "-p"], capture_output=True, text=True,
                              check=True).stdout

    def lisp(expression):
        run = subprocess.run([EMACSCLIENT, "-s", str(socket), "-e", expression],
                             capture_output=True, text=True, timeout=30)
        assert run.returncode == 0, run.stderr
        return run.stdout.strip()

    assert wait_for(socket.exists, 60), screen()

    def close():
        subprocess.run([*tmux, "kill-server"], capture_output=True)

    try:
        yield keys, screen, lisp, close, project / "gate"
    finally:
        close()


def test_keys_typed_while_a_block_runs_are_acted_on_at_once(terminal):
    keys, screen, lisp, close, gate = terminal
    keys("C-c", "C-c")
    assert wait_for(lambda: "waiting for the kernel" in screen(), 60), screen()
    keys("M-<")
    # Bounded by how long a busy machine may take to draw a screen, not by
    # how long a kernel takes to start: this one cannot start yet.
    assert wait_for(lambda: "#+TITLE: Gradient Descent" in screen(), 5), \
        "Emacs did not move while the block waited for its kernel"
    assert lisp('(with-current-buffer "README.org" (point))') == "1"
    assert lisp('(with-current-buffer "README.org" (save-excursion (goto-char (point-min))'
                ' (and (search-forward "waiting for the kernel" nil t) t)))') == "t", \
        "the block's placeholder is gone"
    gate.touch()

    def kernel():
        pid = lisp("(process-get (cdr (assoc \"gradients\" gradients--sessions)) 'kernel-pid)")
        return None if pid == "nil" else int(pid)
    pid = wait_for(kernel, 60)
    assert pid, "the kernel did not start once its gate was open"
    # The nap is running now; the keys are still acted on at once.
    assert wait_for(gate.with_name("napping").exists, 60), "the block did not start"
    keys("M->")
    assert wait_for(lambda: lisp('(with-current-buffer "README.org" (= (point) (point-max)))')
                    == "t", 5), "Emacs did not move while the block ran"
    # Closing the terminal with a block still running leaves nothing behind.
    close()
    assert gone(pid, 30), "the kernel outlived Emacs"
