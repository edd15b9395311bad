"""The notes in a real terminal Emacs, under tmux, as the author works:
keys typed while an asynchronous block waits for its kernel, or runs, are
acted on at once.

The kernel's Python waits for a gate the test opens only after Emacs has
answered the keys: an Emacs that waited for its kernel would never answer
them, however busy or quiet the machine.  The block then naps far longer
than the test lasts, and is still running when the terminal closes."""

import json

import pytest

from conftest import TerminalEmacs, copy_project, gone, wait_for

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


@pytest.fixture
def emacs(tmp_path):
    project = copy_project(tmp_path)
    with open(project / "README.org", "a") as readme:
        readme.write(NAP)
    gated_python = project / "gated-python"
    gated_python.write_text(GATED_PYTHON.format(python=project / ".venv" / "bin" / "python"))
    gated_python.chmod(0o755)
    emacs = TerminalEmacs(project, f"""
(setq gradients-python {json.dumps(str(gated_python))})
(find-file "README.org")
(org-babel-goto-named-src-block "nap")""")
    try:
        yield emacs
    finally:
        emacs.close()


def test_keys_typed_while_a_block_runs_are_acted_on_at_once(emacs):
    gate = emacs.folder / "gate"
    emacs.keys("C-c", "C-c")
    assert wait_for(lambda: "waiting for the kernel" in emacs.screen(), 60), emacs.screen()
    emacs.keys("M-<")
    # Bounded by how long a busy machine may take to draw a screen, not by
    # how long a kernel takes to start: this one cannot start yet.
    assert wait_for(lambda: "#+TITLE: Gradient Descent" in emacs.screen(), 5), \
        "Emacs did not move while the block waited for its kernel"
    assert emacs('(with-current-buffer "README.org" (point))') == 1
    assert emacs('(with-current-buffer "README.org" (save-excursion (goto-char (point-min))'
                 ' (and (search-forward "waiting for the kernel" nil t) t)))') is True, \
        "the block's placeholder is gone"
    gate.touch()

    def kernel():
        return emacs("(process-get (cdr (assoc \"gradients\" gradients--sessions)) 'kernel-pid)")
    pid = wait_for(kernel, 60)
    assert pid, "the kernel did not start once its gate was open"
    # The nap is running now; the keys are still acted on at once.
    assert wait_for(gate.with_name("napping").exists, 60), "the block did not start"
    emacs.keys("M->")
    assert wait_for(lambda: emacs('(with-current-buffer "README.org" (= (point) (point-max)))'),
                    5), "Emacs did not move while the block ran"
    # Closing the terminal with a block still running leaves nothing behind.
    emacs.close()
    assert gone(pid, 30), "the kernel outlived Emacs"
