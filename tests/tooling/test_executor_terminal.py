"""What only a terminal Emacs shows of the executor: the echo area and
*Messages* as the command loop writes them when a block fails, and the
order of the questions C-x C-c asks while a block runs."""

import json
import os
import re
import subprocess
import time

import pytest

from conftest import EMACS, EMACSCLIENT, NO_NATIVE_COMPILATION, copy_project

BLOCKS = """
#+name: fails-here
#+begin_src jupyter-python :async no :tangle no
raise ValueError('nudged too far')
#+end_src

#+name: misspelt-here
#+begin_src jupyter-python :fiel images/misspelt.png :tangle no
1
#+end_src

#+name: long-nap
#+begin_src jupyter-python :tangle no
import time
time.sleep(300)
#+end_src
"""

SETUP = """;;; -*- lexical-binding: t -*-
{no_native_compilation}
(setq org-modules nil server-name {socket})
(server-start)
(load-file "tools/ob-gradients.el")
(setq org-confirm-babel-evaluate nil)
(find-file "README.org")
"""


@pytest.fixture
def terminal(tmp_path):
    project = copy_project(tmp_path)
    with open(project / "README.org", "a") as readme:
        readme.write(BLOCKS)
    socket = project / "server"
    (project / "setup.el").write_text(SETUP.format(
        socket=json.dumps(str(socket)), no_native_compilation=NO_NATIVE_COMPILATION))
    tmux = ["tmux", "-L", f"gradients-executor-{os.getpid()}"]
    subprocess.run([*tmux, "new-session", "-d", "-x", "160", "-y", "45", "-c", str(project),
                    f"{EMACS} -nw -Q -l setup.el"], check=True,
                   env=dict(os.environ, TERM="xterm-256color"))

    def keys(*names):
        subprocess.run([*tmux, "send-keys", *names], check=True)

    def screen():
        # Nothing once Emacs has quit, and its tmux with it.
        return subprocess.run([*tmux, "capture-pane", "-p"], capture_output=True,
                              text=True).stdout

    def lisp(expression):
        answer = project / "answer.json"
        run = subprocess.run(
            [EMACSCLIENT, "-s", str(socket), "-e",
             f"(let ((value {expression})) (require 'json)"
             f" (with-temp-file {json.dumps(str(answer))} (insert (json-encode value))) t)"],
            capture_output=True, text=True, timeout=10)
        assert run.returncode == 0, run.stderr
        return json.loads(answer.read_text())

    def until(probe, what, seconds=30):
        deadline = time.monotonic() + seconds
        while not (value := probe()):
            assert time.monotonic() < deadline, f"{what}; the screen:\n{screen()}"
            time.sleep(0.1)
        return value

    deadline = time.monotonic() + 20
    while not socket.exists():
        assert time.monotonic() < deadline, screen()
        time.sleep(0.05)
    try:
        yield project, keys, screen, lisp, until
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)


def go_to(keys, name):
    keys("M-x", "org-babel-goto-named-src-block", "Enter")
    keys(name, "Enter")


def messages(lisp):
    return lisp('(with-current-buffer "*Messages*" (buffer-string))')


def test_a_failing_block_is_named_without_a_lisp_function_before_it(terminal):
    project, keys, screen, lisp, until = terminal
    go_to(keys, "fails-here")
    keys("C-c", "C-c")
    until(lambda: "raised ValueError" in messages(lisp), "the failure was not reported")
    go_to(keys, "misspelt-here")
    keys("C-c", "C-c")
    until(lambda: "unknown header argument" in messages(lisp), "the typo was not reported")
    said = messages(lisp)
    line = lisp('(with-current-buffer "README.org" (save-excursion '
                '(org-babel-goto-named-src-block "fails-here") (line-number-at-pos)))')
    assert re.search(rf"^README\.org:{line}: block `fails-here' raised ValueError: "
                     r"nudged too far$", said, re.M), said
    assert re.search(r"^README\.org:\d+: block `misspelt-here': unknown header argument :fiel",
                     said, re.M), said
    # The command loop logs an error behind the Lisp function that
    # signalled it ("progn: README.org:..."): none may be left.
    assert not re.search(r"^\S+: README\.org:", said, re.M), said


def test_quitting_asks_about_running_blocks_before_offering_to_save(terminal):
    project, keys, screen, lisp, until = terminal
    go_to(keys, "long-nap")
    keys("C-c", "C-c")
    until(lambda: "waiting for the kernel" in screen(), "no placeholder")
    keys("C-x", "C-c")
    first = until(lambda: re.search(r"still running or waiting for the kernel|Save file",
                                    screen()), "no question").group(0)
    assert first != "Save file", "Emacs offered to save before asking about the block"
    keys("yes", "Enter")
    until(lambda: "Save file" in screen(), "no offer to save")
    keys("y")
    until(lambda: not re.search(r"Save file|still running", screen()) and
          "README.org" not in screen(), "Emacs did not quit", seconds=20)
    saved = (project / "README.org").read_text()
    assert "waiting for the kernel" not in saved
    assert saved.endswith(BLOCKS)
