"""The executor as the author uses it: blocks run with C-c C-c in an
interactive Emacs.  One Emacs daemon (interactive, with no terminal) serves
every test of this file, on a copy of the project whose README.org has a
few extra blocks that misbehave on purpose."""

import pytest

from conftest import ROOT, TEST_BUSY, Daemon, copy_project, gone, wait_for

# Its tests share fixtures made once for the module: one worker runs them all.
pytestmark = pytest.mark.xdist_group(__name__)

EXTRA_BLOCKS = """
* Off the happy path

#+name: sleeper
#+begin_src jupyter-python :async no :tangle no
import time
open('sleeper-started', 'w').close()
try:
    time.sleep(300)
except KeyboardInterrupt:
    open('sleeper-interrupted', 'w').close()
    raise
print("slept")
#+end_src

#+name: show-d
#+begin_src jupyter-python :tangle no
print(d)
#+end_src

#+name: spin
#+begin_src jupyter-python :tangle no
open('spin-started', 'w').close()
while True:
    pass
#+end_src

#+name: nap
#+begin_src jupyter-python :tangle no
import time
time.sleep(1.5)
'rested'
#+end_src

#+name: long-nap
#+begin_src jupyter-python :tangle no
import time
time.sleep(300)
#+end_src

#+name: trail-a
#+begin_src jupyter-python :tangle no
trail = ['a']
trail
#+end_src

#+name: trail-b
#+begin_src jupyter-python :tangle no
trail.append('b')
trail
#+end_src

#+name: fails
#+begin_src jupyter-python :tangle no
raise ValueError('nudged too far')
#+end_src

#+RESULTS: fails
:results:
: an earlier result
:end:

#+name: fails-waiting
#+begin_src jupyter-python :async no :tangle no
raise ValueError('nudged too far')
#+end_src

#+name: crash
#+begin_src jupyter-python :tangle no
import os
os._exit(1)
#+end_src

#+name: exits
#+begin_src jupyter-python :tangle no
exit()
#+end_src

#+name: one-plus-one
#+begin_src jupyter-python :tangle no
1 + 1
#+end_src

#+name: misspelt
#+begin_src jupyter-python :fiel images/misspelt.png :tangle no
open('misspelt-ran', 'w').close()
#+end_src

#+name: soon
#+begin_src jupyter-python :timeout soon :tangle no
open('soon-ran', 'w').close()
#+end_src

#+name: where
#+begin_src jupyter-python :tangle no
import os
os.path.basename(os.getcwd())
#+end_src

#+name: with-vars
#+begin_src jupyter-python :var n=3 word="hi" :tangle no
n * word
#+end_src

#+name: loose-plot
#+begin_src jupyter-python :tangle no
import matplotlib.pyplot as plt
plt.plot([1, 2, 3])
plt.show()
#+end_src

#+name: fails-again
#+begin_src jupyter-python :tangle no
raise ValueError('still too far')
#+end_src

#+RESULTS: fails-again
:results:
: [waiting for the kernel: request 99999]
:end:

#+name: silent-value
#+begin_src jupyter-python :results silent :tangle no
6 * 7
#+end_src

#+name: none-raises
#+begin_src jupyter-python :results none :tangle no
raise ValueError('said anyway')
#+end_src

#+name: uses-one-plus-one
#+begin_src emacs-lisp :var x=one-plus-one :tangle no
x
#+end_src

#+name: on-broken-venv
#+begin_src jupyter-python :session broken :async no :tangle no
1
#+end_src
"""

# Evaluated with lexical binding: its timers' lambdas keep their arguments.
SETUP = (r"""
(eval '(progn
  (setq org-modules nil)
  (load-file "tools/ob-gradients.el")
  (setq org-confirm-babel-evaluate nil)
  (find-file "README.org")
  (defun test-run (name)
    "C-c C-c on block NAME."
    (with-current-buffer "README.org"
      (org-babel-goto-named-src-block name)
      (condition-case err
          (progn (org-babel-execute-src-block) "done")
        (error (error-message-string err)))))
  (defvar test-outcome nil)
  (defun test-run-and-quit (name file)
    "C-g on block NAME, once the kernel runs it, which the block shows by
creating FILE.  Run from a timer, as from the command loop: quitting is
inhibited while Emacs serves a client."
    (setq test-outcome nil)
    (run-at-time 0 nil
      (lambda ()
        (setq test-outcome
              (let ((inhibit-quit nil) (watch nil))
                (setq watch (run-at-time 0.05 0.05 (lambda ()
                                                     (when (file-exists-p file)
                                                       (cancel-timer watch)
                                                       (setq quit-flag t)))))
                (unwind-protect
                    (condition-case nil (test-run name) (quit "quit"))
                  (cancel-timer watch))))))
    t)
  (defun test-drawer (name)
    (with-current-buffer "README.org"
      (save-excursion
        (org-babel-goto-named-src-block name)
        (gradients--drawer-text))))
"""
    + TEST_BUSY + r"""
  (defun test-wait (seconds)
    "Let replies in until no block runs, for at most SECONDS."
    (let ((end (+ (float-time) seconds)))
      (while (and (test-busy) (< (float-time) end))
        (accept-process-output nil 0.05)))
    (not (test-busy)))
  (defun test-messages ()
    (with-current-buffer "*Messages*" (buffer-string)))
  (defun test-kernel-pid ()
    (process-get (cdr (assoc "gradients" gradients--sessions)) 'kernel-pid))
  t) t)
""")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    folder = copy_project(tmp_path_factory.mktemp("interactive"))
    with open(folder / "README.org", "a") as readme:
        readme.write(EXTRA_BLOCKS)
    return folder


@pytest.fixture(scope="module")
def el(project):
    daemon = Daemon(project)
    try:
        assert daemon(SETUP) is True
        for name in ("define-f", "f-of-3", "d-of-abc"):
            daemon(f'(test-run "{name}")')
        assert settled(daemon), daemon("(test-messages)")
        yield daemon
    finally:
        daemon.close()


# Long enough for a loaded machine to start a kernel and run a few blocks;
# a block that never ends (spin, sleeper) fails a test only after it.
WAIT = 60


def settled(el):
    """Whether every block has run, or failed, within WAIT seconds."""
    return el(f"(test-wait {WAIT})", timeout=WAIT + 30) is True


def readme(el):
    return el('(with-current-buffer "README.org" (buffer-string))')


def test_c_g_stops_the_kernel_and_no_other_block_gets_the_reply(el, project):
    before = readme(el)
    el(f'(test-run-and-quit "sleeper" "{project / "sleeper-started"}")')
    # Not a word to Emacs until the kernel has had its interrupt: a request
    # served while the C-g is pending would take the quit for itself.
    assert wait_for((project / "sleeper-started").exists, WAIT), "the sleeper did not start"
    assert wait_for((project / "sleeper-interrupted").exists, WAIT), \
        "the kernel went on sleeping after C-g"
    assert wait_for(lambda: el("test-outcome"), WAIT) == "quit", el("(test-messages)")
    assert el('(test-run "f-of-3")') == "done"
    assert settled(el)
    assert el('(test-drawer "f-of-3")') == ": 20.0"
    assert el('(test-drawer "sleeper")') is None
    assert readme(el) == before
    # Said in *Messages*, not over whatever the echo area holds by then.
    assert "block `sleeper' stopped after its wait was given up" in el("(test-messages)")


def test_blocks_started_together_run_in_order_each_into_its_own_drawer(el):
    assert el('(test-run "trail-a")') == "done"
    assert el('(test-run "trail-b")') == "done"
    assert settled(el)
    assert el('(test-drawer "trail-a")') == ": ['a']"
    assert el('(test-drawer "trail-b")') == ": ['a', 'b']"


def test_an_async_block_returns_at_once_and_its_result_survives_edits_above(el):
    # In one request, so that no reply can come in between, however long
    # a busy machine takes: an executor that waited for the kernel would
    # have filled the drawer, and the edit comes while the block runs.
    done, drawer, _ = el('(list (test-run "nap") (test-drawer "nap")'
                         ' (with-current-buffer "README.org" (goto-char (point-min))'
                         ' (insert "# edited\\n")))')
    assert done == "done"
    assert drawer.startswith(": [waiting for the kernel"), drawer
    assert settled(el)
    assert el('(test-drawer "nap")') == ": 'rested'"
    el('(with-current-buffer "README.org" (goto-char (point-min)) (delete-region 1 10))')


def test_interrupt_stops_a_runaway_block_keeps_variables_and_drops_the_queue(el, project):
    (project / "spin-started").unlink(missing_ok=True)
    assert el('(test-run "spin")') == "done"
    assert el('(test-run "f-of-3")') == "done"
    assert wait_for((project / "spin-started").exists, WAIT), "the spin did not start"
    el("(gradients-interrupt)")
    assert settled(el), "the spin went on after the interrupt"
    assert el('(test-drawer "spin")') is None
    assert el('(test-drawer "f-of-3")') == ": 20.0", "a dropped block keeps its result"
    assert "KeyboardInterrupt" in el(
        '(with-current-buffer "*gradients-traceback*" (buffer-string))')
    assert el('(test-run "show-d")') == "done"
    assert settled(el)
    assert el('(test-drawer "show-d")') == ": 4.0"


def test_a_failing_block_says_where_in_one_line_and_keeps_its_result(el):
    assert el('(test-run "fails")') == "done"
    assert settled(el)
    messages = el("(test-messages)")
    line = doc_line(el, "fails")
    assert f"README.org:{line}: block `fails' raised ValueError: nudged too far\n" in messages
    assert "if: " not in messages
    assert el('(test-drawer "fails")') == ": an earlier result"
    assert "Traceback" in el('(with-current-buffer "*gradients-traceback*" (buffer-string))')
    shown = el('(mapcar (lambda (w) (buffer-name (window-buffer w))) (window-list))')
    assert "*gradients-traceback*" in shown
    waited = el('(test-run "fails-waiting")')
    line = doc_line(el, "fails-waiting")
    assert waited == f"README.org:{line}: block `fails-waiting' raised ValueError: nudged too far"


@pytest.mark.parametrize("name, what", [("misspelt", "unknown header argument :fiel"),
                                        ("soon", ":timeout soon is not a number of seconds")])
def test_a_header_typo_is_named_and_the_block_does_not_run(el, project, name, what):
    before = readme(el)
    said = el(f'(test-run "{name}")')
    assert said.startswith(f"README.org:{doc_line(el, name)}: block `{name}': {what}"), said
    assert settled(el)
    assert not (project / f"{name}-ran").exists()
    assert readme(el) == before


def test_var_header_arguments_reach_the_kernel(el):
    assert el('(test-run "with-vars")') == "done"
    assert settled(el)
    assert el('(test-drawer "with-vars")') == ": 'hihihi'"


def doc_line(el, name):
    return el(f'(with-current-buffer "README.org" (save-excursion '
              f'(org-babel-goto-named-src-block "{name}") (line-number-at-pos)))')


def test_a_picture_block_writes_its_file_beside_the_notes_as_the_build_does(el, project, doc):
    (project / "images" / "plot.png").unlink()
    for name in ("imports", "xs", "ys", "plot"):
        assert el(f'(test-run "{name}")') == "done"
    assert settled(el)
    assert el('(test-drawer "plot")') == doc.block("plot").recorded
    assert (project / "images" / "plot.png").read_bytes() == \
        (ROOT / "images" / "plot.png").read_bytes()


def test_a_picture_without_a_file_is_saved_in_an_ignored_folder_and_linked(el, project):
    assert el('(test-run "loose-plot")') == "done"
    assert settled(el)
    link = el('(test-drawer "loose-plot")')
    assert link.startswith("[[file:.build/pictures/") and link.endswith(".png]]")
    picture = project / link[len("[[file:"):-2]
    assert picture.read_bytes().startswith(b"\x89PNG")
    # Run again, the block links a new picture; the first one is gone.
    assert el('(test-run "loose-plot")') == "done"
    assert settled(el)
    again = project / el('(test-drawer "loose-plot")')[len("[[file:"):-2]
    assert again != picture and again.read_bytes().startswith(b"\x89PNG")
    assert sorted(picture.parent.iterdir()) == [again]


@pytest.mark.parametrize("name, why", [("crash", "died"), ("exits", "exit()")])
def test_a_block_that_ends_the_kernel_is_named_and_the_next_starts_afresh(el, name, why):
    old_pid = el("(test-kernel-pid)")
    assert el(f'(test-run "{name}")') == "done"
    assert settled(el)
    messages = el("(test-messages)")
    assert f"README.org:{doc_line(el, name)}: block `{name}' stopped the kernel" in messages
    assert why in messages and "variables are gone" in messages
    assert el('(test-run "one-plus-one")') == "done"
    assert settled(el)
    assert el('(test-drawer "one-plus-one")') == ": 2"
    assert el("(test-kernel-pid)") != old_pid
    assert gone(old_pid, 30)


def test_restart_gives_a_fresh_kernel_in_the_same_folder(el, project):
    old_pid = el("(test-kernel-pid)")
    # From a buffer elsewhere, as M-x from any buffer.
    el('(with-temp-buffer (setq default-directory "/") (gradients-restart))')
    assert "restarted" in el("(test-messages)")
    assert el('(test-run "show-d")') == "done"
    assert settled(el)
    assert el("(test-kernel-pid)") != old_pid
    assert "NameError" in el('(with-current-buffer "*gradients-traceback*" (buffer-string))')
    assert el('(test-run "where")') == "done"
    assert settled(el)
    # By its name: a drawer names the notes' folder itself <notes>.
    assert el('(test-drawer "where")') == f": {project.name!r}"


def test_quitting_asks_while_a_block_runs_and_a_restart_names_the_block_it_stops(el):
    asked = ('(let (asked) (cl-letf (((symbol-function (quote yes-or-no-p)) '
             '(lambda (prompt) (setq asked prompt) nil))) '
             '(list (run-hook-with-args-until-failure (quote kill-emacs-query-functions)) '
             'asked)))')
    # In one request, and a nap longer than any test: it cannot end before
    # the question and the restart, however slowly a busy machine stops it.
    assert el(f'(list (test-run "long-nap") {asked} (progn (gradients-restart) t))') == \
        ["done", [None, "1 block is still running or waiting for the kernel; stop it and quit? "],
         True]
    # Said once the old bridge's end is seen, which may be after the fresh
    # session, with nothing to run, has taken its place.
    said = (f"README.org:{doc_line(el, 'long-nap')}: block `long-nap' "
            "was stopped before it finished")
    assert wait_for(lambda: said in el("(test-messages)"), WAIT), el("(test-messages)")
    assert el(asked) == [True, None]


def test_moving_through_blocks_guesses_no_indentation(el):
    el('(with-current-buffer "README.org" (font-lock-ensure) '
       '(org-babel-goto-named-src-block "value") (org-edit-special) (org-edit-src-exit))')
    assert "Can't guess" not in el("(test-messages)")


def test_a_block_run_again_while_it_waits_and_failing_keeps_its_earlier_result(el):
    # Both runs start before either reply can come: the second finds the
    # first one's placeholder in the drawer, which is no earlier result.
    assert el('(progn (test-run "fails") (test-run "fails"))') == "done"
    assert settled(el)
    assert el('(test-drawer "fails")') == ": an earlier result"
    # A placeholder saved by an Emacs that quit before its reply came is
    # no result either: the block that fails is left with none.
    assert el('(test-run "fails-again")') == "done"
    assert settled(el)
    assert el('(test-drawer "fails-again")') is None


def test_a_silent_block_shows_its_value_and_a_none_block_its_failure(el):
    before = readme(el)
    seen = len(el("(test-messages)"))
    for name in ("silent-value", "none-raises"):
        assert el(f'(test-run "{name}")') == "done"
    assert settled(el)
    messages = el("(test-messages)")[seen:]
    assert "\n: 42\n" in messages
    line = doc_line(el, "none-raises")
    assert f"README.org:{line}: block `none-raises' raised ValueError: said anyway" in messages
    assert "drawer changed" not in messages
    assert readme(el) == before


def test_a_block_used_as_a_value_or_called_is_waited_for(el):
    # The notes hold a placeholder saved earlier, until a test runs its block.
    placeholders = readme(el).count("waiting for the kernel")
    # C-c C-c, which resolves the :var before Org says which block runs.
    assert el('(with-current-buffer "README.org" (org-babel-goto-named-src-block '
              '"uses-one-plus-one") (org-ctrl-c-ctrl-c) t)') is True
    assert el('(with-current-buffer "README.org" (save-excursion (org-babel-goto-named-src-block '
              '"uses-one-plus-one") (goto-char (org-babel-where-is-src-block-result)) '
              '(org-babel-read-result)))') == 2, "the :var got the drawer text, not the value"
    assert el('(with-current-buffer "README.org" (goto-char (point-max)) '
              '(insert "\n#+CALL: one-plus-one()\n") (forward-line -1) (org-ctrl-c-ctrl-c) '
              '(forward-line 1) (buffer-substring-no-properties (point) (point-max)))') == \
        "\n#+RESULTS:\n:results:\n: 2\n:end:\n"
    assert settled(el)
    assert readme(el).count("waiting for the kernel") == placeholders


def test_a_kernel_that_does_not_start_says_why(el, project):
    broken = project / "broken-python"
    broken.write_text("#!/bin/sh\necho \"ModuleNotFoundError: No module named 'zmq'\" >&2\n"
                      "exit 1\n")
    broken.chmod(0o755)
    said = el(f'(let ((gradients-python "{broken}")) (test-run "on-broken-venv"))')
    assert said.startswith(f"README.org:{doc_line(el, 'on-broken-venv')}: block `on-broken-venv' "
                           "did not run: its kernel did not start: ModuleNotFoundError: "
                           "No module named 'zmq'"), said


# Last: every test after it would wait for a fresh kernel.
def test_stopping_leaves_no_kernel_and_no_folder(el, project):
    (project / "spin-started").unlink(missing_ok=True)
    assert el('(test-run "spin")') == "done"
    assert wait_for((project / "spin-started").exists, WAIT), "the spin did not start"
    pid = el("(test-kernel-pid)")
    # Synchronous: once it returns, every bridge has ended, on its own or
    # killed past `gradients-stop-patience'.
    assert el("(progn (gradients-stop-sessions) (cl-some #'process-live-p (gradients--bridges)))") \
        is None
    assert gone(pid, 30)
    assert el("gradients--sessions") is None
