"""A checkout whose own path holds what Emacs, make or the shell would
read as something else: `$HOME`, `${HOME}`, `$$`, a folder `~user`, a `~`
inside a name, quotes, a backslash, a space, `%`, `;`, `:`, `#`, `&`, a
folder starting with `-`, non-ASCII, over 200 characters; built through a
symbolic link, as a shell that entered the link runs it, then asked about
with `make -C` from elsewhere.  One real `make tangle`, whose block runs on
a kernel in that folder and reads a file there; each family's Lisp is
checked member by member in one Emacs by tests/ert/checkout-paths-tests.el."""

import getpass
import json
import os
import re
import subprocess

from conftest import EMACS, copy_project, make
from tiny_notes import HEADER, block

CODE = "print(open('data.txt').read())\nprint('tangled')"
NOTES = HEADER + block(CODE, "reads")


def test_make_tangle_in_a_checkout_whose_path_emacs_make_and_the_shell_would_read(tmp_path):
    real = (tmp_path / f"~{getpass.getuser()}" / "a$HOME b${HOME} c$$d x~y"
            / "q'r d\"q b\\s é %;:#&" / ("long-" + "l" * 150) / "-checkout")
    real.mkdir(parents=True)
    copy_project(real)
    (real / "README.org").write_text(NOTES)
    (real / "data.txt").write_text("read in its folder")
    assert len(str(real)) > 200
    link = tmp_path / "link $HOME 'q"
    link.symlink_to(real)
    # An Org elsewhere, as the Emacs/Org matrix names one; EMACSLOADPATH
    # cannot hold a folder with a `:`, its separator.
    lisp = tmp_path / "lisp $HOME ${HOME} 'q\" é"
    lisp.mkdir()
    env = dict(os.environ, PWD=str(link), EMACSLOADPATH=f"{lisp}:")
    run = make("tangle", cwd=link, env=env, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "wrote gradients.py" in run.stderr, run.stderr
    assert (real / "gradients.py").read_text() == CODE + "\n"
    produced = json.loads((real / ".build" / "produced" / "blocks.json").read_text())
    assert produced["blocks"][0]["produced"] == ": read in its folder\n: tangled"
    assert [read["file"] for read in produced["reads"]] == ["data.txt"]
    assert (real / ".build" / "outputs").read_text() == "gradients.py\n"
    # Make keeps which Emacs and Org read the notes, as they are spelled:
    # with anything else, every make would build again.
    emacs = "emacs" if EMACS == "t" else EMACS
    assert (real / ".build" / "emacs-id").read_text() == f"{emacs} {lisp}:\n"
    assert not list((real / ".build").glob("run-*"))
    again = make("-q", "-C", str(real), "tangle", cwd=tmp_path, env=env, timeout=60)
    assert again.returncode == 0, again.stdout + again.stderr
    listed = make("-f", str(real / "Makefile"), "help", cwd=real, env=env)
    assert "make tangle" in listed.stdout, listed.stdout + listed.stderr
    # From elsewhere, make -f says where to make, as the shell reads it.
    sent = make("-f", str(real / "Makefile"), "tangle", cwd=tmp_path, env=env)
    command = re.search(r"run `make -C (.*) tangle`, or make there", sent.stderr)
    assert command, sent.stderr
    shell = subprocess.run(["sh", "-c", f"printf %s {command.group(1)}"],
                           capture_output=True, text=True)
    assert shell.stdout == str(real), (command.group(1), shell.stderr)
