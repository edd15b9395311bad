"""Working on README.org in Emacs: the directory settings are safe, and the
project's executor runs a single block through org-babel."""

import json

import pytest

from conftest import ROOT, emacs

# Its tests share fixtures made once for the module: one worker runs them all.
pytestmark = pytest.mark.xdist_group(__name__)

# One Emacs answers the questions that need no kernel, each on a line of
# its own: `name: value'.  Opening the notes comes first, before anything
# but Org is loaded, as a newcomer opens them.
CHECKS = r"""
(progn
  (setq enable-local-variables t   ; a question would end a batch run
        org-modules nil)           ; Org's link modules play no part in this
  (defun report (name value) (princ (format "%s: %S\n" name value)))
  (find-file "README.org")
  (report "opened" (list major-mode indent-tabs-mode))
  (let ((tables 0))
    (org-table-map-tables (lambda () (setq tables (1+ tables)) (org-table-align)) t)
    (report "tables" (list tables (buffer-modified-p))))
  (require 'python)
  (let ((unsafe nil) (seen 0))
    (dolist (mode (with-temp-buffer
                    (insert-file-contents ".dir-locals.el")
                    (read (current-buffer))))
      (dolist (setting (cdr mode))
        (setq seen (1+ seen))
        (unless (and (symbolp (car setting))
                     (not (memq (car setting) '(eval org-confirm-babel-evaluate)))
                     (safe-local-variable-p (car setting) (cdr setting)))
          (push (car setting) unsafe))))
    (report "dir-locals" (list seen unsafe)))
  (load-file "tools/ob-gradients.el")
  (let ((picture-width org-image-actual-width))
    (with-temp-buffer
      (funcall (org-src-get-lang-mode "jupyter-python"))
      (report "editing" (list major-mode picture-width)))))
"""


@pytest.fixture(scope="module")
def answers():
    run = emacs("--eval", CHECKS, check=False)
    assert run.returncode == 0, run.stderr
    return dict(line.split(": ", 1) for line in run.stdout.splitlines())


def test_dir_locals_hold_only_safe_variables(answers):
    seen, unsafe = answers["dir-locals"].strip("()").split(" ", 1)
    assert unsafe == "nil" and int(seen) > 0, answers["dir-locals"]


def test_opening_readme_asks_nothing(answers):
    """Emacs refuses to read a prompt's answer in batch, so a question about
    local variables would end the run with an error."""
    assert answers["opened"] == "(org-mode nil)"


def test_the_executor_steps_aside_for_emacs_jupyter():
    run = emacs("--eval", """
(progn
  (provide 'jupyter)
  (load-file "tools/ob-gradients.el")
  (princ (format "%S\\n" (fboundp 'org-babel-execute:jupyter-python))))""")
    assert run.stdout.strip() == "nil"


def test_the_executor_sets_up_editing_of_the_notes(answers):
    """Settings Org 9.5 does not mark safe, so they come with the executor:
    blocks edit as Python, and the notes' pictures fit the window."""
    assert answers["editing"] == "(python-mode (640))"


def test_recorded_tables_are_as_org_aligns_them(answers):
    """`make run` inserts results through Org, which realigns tables: a
    table the kernel lays out differently would change on every run."""
    tables, modified = answers["tables"].strip("()").split()
    assert int(tables) > 0 and modified == "nil"


def test_export_asks_about_no_block(project_copy, doc):
    """Emacs in batch cannot answer a question: one would end the run.
    The export shows the recorded results instead of running the blocks."""
    run = emacs("--eval", """
(progn
  (setq org-modules nil org-confirm-babel-evaluate t
        org-html-htmlize-output-type nil)   ; colours are not the point here
  (load-file "tools/ob-gradients.el")
  (find-file "README.org")
  (org-html-export-to-html))""", cwd=project_copy, check=False)
    assert run.returncode == 0, run.stderr
    html = (project_copy / "README.html").read_text()
    assert doc.block("f-of-3").recorded.lstrip(": ") in html
    assert "gradients: starting a kernel" not in run.stderr


def test_each_emacs_numbers_its_requests_apart():
    """A placeholder another Emacs saved in the file keeps its request's
    id: were every Emacs to count from 1, the next one's request of that
    id would take that block's drawer for its own."""
    first_ids = [int(emacs("-l", "tools/ob-gradients.el", "--eval",
                           "(princ (1+ gradients--last-id))").stdout)
                 for _ in range(2)]
    assert first_ids[0] != first_ids[1]
    assert min(first_ids) > 99999, first_ids



def test_the_build_loads_from_its_file_alone(tmp_path):
    """Found by probing: `emacs -l tools/load-build.el` without tools/ on
    the load path ended at once with 255; in a terminal, it said nothing."""
    run = emacs("-l", str(ROOT / "tools" / "load-build.el"),
                "--eval", "(princ (fboundp 'gradients-build-tangle))", cwd=tmp_path, check=False)
    assert (run.returncode, run.stdout) == (0, "t"), run.stderr


LISP = sorted(path.name for path in (ROOT / "tools").glob("*.el"))


@pytest.mark.parametrize("file", LISP)
def test_the_tools_lisp_compiles_without_a_warning(file, tmp_path):
    """Each file is loaded as source: a variable bound before the file
    that makes it special is loaded is bound lexically, a function of
    another file called under a misspelled name, a macro used before it
    is known, and nothing says so until the code runs, if then.  The
    compiler says so of each.  (Compiled, build.el bound half a dozen of
    the executor's settings and Org's lexically, and failed on a cl-loop
    of cl-lib, which it never required.)  Compiled into a folder of the
    test's own: a .elc beside the source would be loaded in its place."""
    compiled = tmp_path / (file + "c")
    run = emacs("--eval", f"(setq byte-compile-dest-file-function (lambda (_) {json.dumps(str(compiled))}))",
                "-f", "batch-byte-compile", str(ROOT / "tools" / file), check=False)
    said = run.stdout + run.stderr
    assert run.returncode == 0 and compiled.exists(), said
    assert "Warning" not in said and "Error" not in said, said
