"""The notes in a real terminal Emacs, under tmux, as the author works:
keys typed while an asynchronous block runs are acted on at once.

The block naps far longer than the test lasts: the placeholder appears
before the kernel has even started, and on a loaded machine a short nap
could be over before the keys arrive."""

import json
import os
import subprocess
import time

import pytest

from conftest import EMACS, EMACSCLIENT, NO_NATIVE_COMPILATION, copy_project, gone

NAP = """
#+name: nap
#+begin_src jupyter-python :tangle no
import time
time.sleep(300)
'rested'
#+end_src
"""

SETUP = """;;; -*- lexical-binding: t -*-
{no_native_compilation}
(setq org-modules nil server-name {socket})
(server-start)
(load-file "tools/ob-gradients.el")
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
    (project / "setup.el").write_text(SETUP.format(
        socket=json.dumps(str(socket)), no_native_compilation=NO_NATIVE_COMPILATION))
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
                             capture_output=True, text=True, timeout=10)
        assert run.returncode == 0, run.stderr
        return run.stdout.strip()

    deadline = time.monotonic() + 20
    while not socket.exists():
        assert time.monotonic() < deadline, screen()
        time.sleep(0.05)
    def close():
        subprocess.run([*tmux, "kill-server"], capture_output=True)

    try:
        yield keys, screen, lisp, close
    finally:
        close()


def test_keys_typed_while_a_block_runs_are_acted_on_at_once(terminal):
    keys, screen, lisp, close = terminal
    keys("C-c", "C-c")
    deadline = time.monotonic() + 20
    while "waiting for the kernel" not in screen():
        assert time.monotonic() < deadline, screen()
        time.sleep(0.05)
    typed = time.monotonic()
    keys("M-<")
    while "#+TITLE: Gradient Descent" not in screen():
        assert time.monotonic() - typed < 1, "Emacs did not move while the block ran"
        time.sleep(0.02)
    assert lisp('(with-current-buffer "README.org" (point))') == "1"
    assert "waiting for the kernel" in lisp(
        '(with-current-buffer "README.org" (buffer-string))'), "the block was already done"
    deadline = time.monotonic() + 20
    while (kernel := lisp("(process-get (cdr (assoc \"gradients\" gradients--sessions)) "
                          "'kernel-pid)")) == "nil":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    kernel = int(kernel)
    # Closing the terminal with a block still running leaves nothing behind.
    close()
    assert gone(kernel, 5), "the kernel outlived Emacs"
