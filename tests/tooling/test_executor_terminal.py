"""What only a terminal Emacs shows of the executor: the echo area and
*Messages* as the command loop writes them when a block fails, and the
order of the questions C-x C-c asks while a block runs."""

import re

import pytest

from conftest import TerminalEmacs, copy_project

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

@pytest.fixture
def emacs(tmp_path):
    project = copy_project(tmp_path)
    with open(project / "README.org", "a") as readme:
        readme.write(BLOCKS)
    emacs = TerminalEmacs(project, '(find-file "README.org")')
    try:
        yield emacs
    finally:
        emacs.close()


def go_to(emacs, name):
    emacs.keys("M-x", "org-babel-goto-named-src-block", "Enter")
    emacs.keys(name, "Enter")


def messages(emacs):
    return emacs('(with-current-buffer "*Messages*" (buffer-string))')


def test_a_failing_block_is_named_without_a_lisp_function_before_it(emacs):
    go_to(emacs, "fails-here")
    emacs.keys("C-c", "C-c")
    emacs.until(lambda: "raised ValueError" in messages(emacs), "the failure was not reported")
    go_to(emacs, "misspelt-here")
    emacs.keys("C-c", "C-c")
    emacs.until(lambda: "unknown header argument" in messages(emacs), "the typo was not reported")
    said = messages(emacs)
    line = emacs('(with-current-buffer "README.org" (save-excursion '
                '(org-babel-goto-named-src-block "fails-here") (line-number-at-pos)))')
    assert re.search(rf"^README\.org:{line}: block `fails-here' raised ValueError: "
                     r"nudged too far$", said, re.M), said
    assert re.search(r"^README\.org:\d+: block `misspelt-here': unknown header argument :fiel",
                     said, re.M), said
    # The command loop logs an error behind the Lisp function that
    # signalled it ("progn: README.org:..."): none may be left.
    assert not re.search(r"^\S+: README\.org:", said, re.M), said


def test_quitting_asks_about_running_blocks_before_offering_to_save(emacs):
    # An edit of the author's, which the quit offers to save.
    emacs.keys("M-<", "A line typed before the run.", "Enter")
    go_to(emacs, "long-nap")
    emacs.keys("C-c", "C-c")
    emacs.until(lambda: "waiting for the kernel" in emacs.screen(), "no placeholder")
    emacs.keys("C-x", "C-c")
    first = emacs.until(lambda: re.search(r"still running or waiting for the kernel|Save file",
                                          emacs.screen()), "no question").group(0)
    assert first != "Save file", "Emacs offered to save before asking about the block"
    emacs.keys("yes", "Enter")
    emacs.until(lambda: "Save file" in emacs.screen(), "no offer to save")
    emacs.keys("y")
    emacs.until(lambda: not re.search(r"Save file|still running", emacs.screen()) and
                "README.org" not in emacs.screen(), "Emacs did not quit", seconds=20)
    saved = (emacs.folder / "README.org").read_text()
    assert "waiting for the kernel" not in saved
    assert saved.startswith("A line typed before the run.\n") and saved.endswith(BLOCKS)


def test_notes_whose_only_change_was_a_stopped_block_are_not_offered_to_save(emacs):
    """Found by probing: the block's placeholder, put back, left the notes
    marked modified, and the quit asked to save them as they were."""
    before = (emacs.folder / "README.org").read_text()
    go_to(emacs, "long-nap")
    emacs.keys("C-c", "C-c")
    emacs.until(lambda: "waiting for the kernel" in emacs.screen(), "no placeholder")
    emacs.keys("C-x", "C-c")
    emacs.until(lambda: "still running or waiting for the kernel" in emacs.screen(),
                "no question")
    emacs.keys("yes", "Enter")
    emacs.until(lambda: "Save file" in emacs.screen() or "README.org" not in emacs.screen(),
                "Emacs did not quit", seconds=20)
    assert "Save file" not in emacs.screen()
    assert (emacs.folder / "README.org").read_text() == before
