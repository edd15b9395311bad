"""Small README.org files of a test's own, built in a copy of the project
(the `project_copy` fixture), so that a build reaches the case at hand at
once; and what to check afterwards."""

from conftest import command_line, emacs, wait_for

import kernel_supervisor  # noqa: E402 (tools/, on the path once conftest is)

HEADER = """#+PROPERTY: header-args:jupyter-python :session gradients
#+PROPERTY: header-args:jupyter-python+ :results raw drawer
#+PROPERTY: header-args:jupyter-python+ :tangle gradients.py

* Notes
"""


def block(code, name, args=""):
    return f"\n#+name: {name}\n#+begin_src jupyter-python {args}\n{code}\n#+end_src\n"


def snapshot(folder):
    """Every file of the project copy but the venv, scratch files and
Python's bytecode (all ignored by git)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()
            and not {".venv", ".build", "__pycache__"} & set(p.relative_to(folder).parts)}


def build(folder, target="tangle", timeout=60):
    return emacs("-l", "tools/build.el", "-f", f"gradients-build-{target}", "README.org",
                 cwd=folder, check=False, timeout=timeout)


def line_of(text, name):
    """The line of block NAME's #+begin_src in TEXT."""
    lines = text.split("\n")
    return lines.index(f"#+name: {name}") + 2


def assert_failed_cleanly(run, folder, before, where):
    assert run.returncode != 0
    assert where in run.stderr, run.stderr
    assert "Nothing was changed." in run.stderr
    assert snapshot(folder) == before
    assert not list((folder / ".build").glob("run-*"))
    # Nor the note of the build's end make wrote before it.
    assert not list((folder / ".build").glob("finished.*"))


def assert_no_kernel_left(folder, patience=15):
    """No process started for the notes in FOLDER (a kernel bridge, its
    supervisor, its kernel, all named by paths under FOLDER) outlives the
    build, given PATIENCE seconds to stop (none: already gone)."""
    def left():
        return [pid for pid in kernel_supervisor.process_table()
                if str(folder) in command_line(pid)]
    if patience:
        assert wait_for(lambda: not left(), patience), f"still running for the notes: {left()}"
    else:
        assert not left(), f"still running for the notes as the build returned: {left()}"


def write_readme(folder, text):
    """Give FOLDER a README.org of TEXT (str or bytes); return the snapshot
    to compare with after the build."""
    (folder / "README.org").write_bytes(text.encode() if isinstance(text, str) else text)
    return snapshot(folder)


# A block that starts a process, to check that none outlives the build.
# Its value, the length of a pid, would change from run to run.
CHILD = """import subprocess
child = subprocess.Popen(['sleep', '300'])
open('child.pid', 'w').write(str(child.pid));"""


def bridge_and_supervisor(folder):
    """The process ids of the one kernel bridge of the notes in FOLDER and
    of its kernel's supervisor."""
    table = kernel_supervisor.process_table()
    (bridge,) = [pid for pid in table
                 if command_line(pid).rstrip().endswith(f"{folder}/tools/kernel_bridge.py")]
    (supervisor,) = [pid for pid, parent in table.items() if parent == bridge]
    return bridge, supervisor
