"""`make tangle` and `make run` off the happy path: bad input, stray paths,
runaway and misbehaving blocks, an edit made meanwhile, Ctrl-C.  Each case
ends in one clear line naming README.org and the line, with nothing
changed, nothing written elsewhere and nothing left running.

Most cases use a small README.org of their own in a copy of the project,
so that the build reaches the bad block at once."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import EMACS, ROOT, emacs, gone, wait_for
import orgdoc

HEADER = """#+PROPERTY: header-args:jupyter-python :session gradients
#+PROPERTY: header-args:jupyter-python+ :results raw drawer
#+PROPERTY: header-args:jupyter-python+ :tangle gradients.py

* Notes
"""


def block(code, name, args=""):
    return f"\n#+name: {name}\n#+begin_src jupyter-python {args}\n{code}\n#+end_src\n"


def snapshot(folder):
    """Every file of the project copy but the venv and scratch files."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not {".venv", ".build"} & set(p.relative_to(folder).parts)}


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


@pytest.fixture
def tiny(project_copy):
    """A copy of the project, for a README.org of the test's own."""
    return project_copy


def write_readme(folder, text):
    """Give FOLDER a README.org of TEXT (str or bytes); return the snapshot
    to compare with after the build."""
    (folder / "README.org").write_bytes(text.encode() if isinstance(text, str) else text)
    return snapshot(folder)


# Headers that would go wrong; Org itself ignores a name it does not know,
# without a word.  Each: the text added, the line named (as it reads),
# what is said there.
BAD_HEADERS = [
    ("\n#+PROPERTY: header-args:jupyter-python+ :resluts drawer\n",
     "#+PROPERTY: header-args:jupyter-python+ :resluts drawer",
     "unknown header argument :resluts; Org would ignore it"),
    (block("x = 1", "misspelt", ":fiel images/x.png :exprts both"),
     "#+begin_src jupyter-python :fiel images/x.png :exprts both",
     "block `misspelt': unknown header arguments :fiel, :exprts"),
    ("\n#+name: in-header-line\n#+header: :tangel no\n#+begin_src jupyter-python\nx = 1\n"
     "#+end_src\n", "#+begin_src jupyter-python",
     "block `in-header-line': unknown header argument :tangel"),
    (block("x = 1", "soon", ":timeout soon"), "#+begin_src jupyter-python :timeout soon",
     "block `soon': :timeout soon is not a number of seconds"),
    (block("plt.plot([1, 2])", "absolute", ":file /tmp/evil.png"),
     "#+begin_src jupyter-python :file /tmp/evil.png",
     "block `absolute': :file /tmp/evil.png is outside the project"),
    (block("plt.plot([1, 2])", "climbing", ":file ../../evil.png"),
     "#+begin_src jupyter-python :file ../../evil.png",
     "block `climbing': :file ../../evil.png is outside the project"),
    # Org would write the drawer's link over the picture.
    (block("plt.plot([1, 2])", "as-file", ":file images/as-file.png :results file"),
     "#+begin_src jupyter-python :file images/as-file.png :results file",
     "block `as-file': :results file would make Org write the link over the picture"),
    # The Makefile reads the outputs split at spaces.
    (block("plt.plot([1, 2])", "spaced", ':file "images/my plot.png"'),
     '#+begin_src jupyter-python :file "images/my plot.png"',
     "block `spaced': :file images/my plot.png has a space"),
    (block("plt.plot([1, 2])", "photo", ":file images/photo.jpg"),
     "#+begin_src jupyter-python :file images/photo.jpg",
     "block `photo': :file images/photo.jpg is not a picture the build can draw"),
    # The second would silently replace the first.
    (block("d", "drawn-once", ":file images/twice.svg")
     + block("d", "drawn-twice", ":file images/twice.svg :exports both"),
     "#+begin_src jupyter-python :file images/twice.svg :exports both",
     "block `drawn-twice': :file images/twice.svg is drawn already by README.org:"),
]


def test_every_bad_header_is_named_on_its_line_before_any_block_runs(tiny):
    text = HEADER + block("open('ran', 'w').close()", "first") + \
        "".join(added for added, _, _ in BAD_HEADERS)
    before = write_readme(tiny, text)
    run = build(tiny)
    lines = text.split("\n")
    said = [f"README.org:{lines.index(named) + 1}: {what}" for _, named, what in BAD_HEADERS]
    assert_failed_cleanly(run, tiny, before, said[0])
    reported = [line for line in run.stderr.splitlines() if line.startswith("README.org:")]
    assert len(reported) == len(said), run.stderr
    for line, expected in zip(reported, said):
        assert line.startswith(expected), run.stderr
    assert not (tiny / "ran").exists()
    assert not os.path.exists(os.path.normpath(tiny / "../../evil.png"))
    assert not os.path.exists("/tmp/evil.png")


MALFORMED = {
    "unterminated block": (HEADER + block("x = 1", "fine") + "\n#+begin_src jupyter-python\nx = 2\n",
                           "#+begin_src has no #+end_src"),
    "unterminated drawer": (HEADER + block("x = 1", "fine") + "\n#+RESULTS: fine\n:results:\n: 1\n\n"
                            + block("y = 2", "next"), "drawer :results: has no :end:"),
    "not UTF-8": ((HEADER + block("x = 1", "fine") + "\nCaf\xe9 au lait.\n").encode("latin-1"),
                  "byte #xE9 is not UTF-8"),
}


def malformed_line(text):
    lines = (text.decode("latin-1") if isinstance(text, bytes) else text).split("\n")
    for number, line in enumerate(lines, 1):
        if line in ("#+begin_src jupyter-python", ":results:", "Café au lait.", "Caf\xe9 au lait."):
            return number


# Both targets check the same way; `make run` used to crash on a drawer.
@pytest.mark.parametrize("case, target", [(case, "tangle") for case in MALFORMED]
                         + [("unterminated drawer", "run")])
def test_malformed_input_fails_fast_naming_the_line(tiny, case, target):
    text, what = MALFORMED[case]
    before = write_readme(tiny, text)
    run = build(tiny, target)
    assert_failed_cleanly(run, tiny, before, f"README.org:{malformed_line(text)}: {what}")


@pytest.mark.parametrize("target", ["tangle", "run"])
def test_a_picture_saved_by_an_interactive_run_is_refused(tiny, target):
    text = HEADER + block("plt.plot([1, 2])", "loose") + \
        "\n#+RESULTS: loose\n:results:\n[[file:.build/pictures/0a1b2c.png]]\n:end:\n"
    before = write_readme(tiny, text)
    run = build(tiny, target)
    line = text.split("\n").index("[[file:.build/pictures/0a1b2c.png]]") + 1
    assert_failed_cleanly(run, tiny, before, f"README.org:{line}: .build/pictures/0a1b2c.png "
                          "is a picture saved by an interactive run")
    assert "give its block a :file under images/" in run.stderr


# Org would not see the first line's keyword behind a byte order mark,
# and with CR LF not even #+end_src ends a block.
LINE_ENDS = {
    "byte order mark": ("\ufeff" + HEADER + block("x = 1", "fine"), 1,
                        "the file starts with a byte order mark"),
    "CR LF": ((HEADER + block("x = 1", "fine")).replace("\n", "\r\n"), 1,
              "the line ends in CR LF (Windows line ends)"),
    "one CR LF": (HEADER + block("x = 1", "fine").replace("x = 1\n", "x = 1\r\n"), 9,
                  "the line ends in CR LF"),
}


@pytest.mark.parametrize("case", LINE_ENDS, ids=list(LINE_ENDS))
def test_a_byte_order_mark_or_cr_lf_is_named_not_taken_for_an_open_block(tiny, case):
    text, line, what = LINE_ENDS[case]
    before = write_readme(tiny, text)
    assert_failed_cleanly(build(tiny), tiny, before, f"README.org:{line}: {what}")


# The build runs source blocks only: the result of a #+CALL line or an
# inline block would never be refreshed, nor checked.  The line named.
NOT_RUN = {
    "#+CALL line": ("#+CALL: fine()", "a #+CALL line is not run by the build"),
    "inline block": ("Two is src_jupyter-python{1 + 1}.",
                     "an inline source block is not run by the build"),
}


@pytest.mark.parametrize("case", NOT_RUN, ids=list(NOT_RUN))
def test_what_the_build_would_not_run_is_refused(tiny, case):
    line, what = NOT_RUN[case]
    text = HEADER + block("x = 1", "fine") + "\n" + line + "\n"
    before = write_readme(tiny, text)
    number = text.split("\n").index(line) + 1
    assert_failed_cleanly(build(tiny), tiny, before, f"README.org:{number}: {what}")


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_malformed_input_is_named_by_the_tests_reader_too(tmp_path, case):
    text, _ = MALFORMED[case]
    path = tmp_path / "README.org"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(orgdoc.OrgError, match=f"README.org:{malformed_line(text)}: "):
        orgdoc.parse(path)


def build_with_tmpdir(folder, target="tangle"):
    """A build whose temporary files go to a folder of the test's own,
    to look in afterwards; started as a terminal starts it, in a process
    group of its own.  Returns the process and that folder."""
    temporary = folder / "tmp"
    temporary.mkdir(exist_ok=True)
    process = subprocess.Popen(
        [EMACS, "-Q", "--batch", "-l", "tools/build.el", "-f", f"gradients-build-{target}",
         "README.org"], cwd=folder, env=dict(os.environ, TMPDIR=str(temporary)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    return process, temporary


CHILD = """import subprocess
child = subprocess.Popen(['sleep', '300'])
open('child.pid', 'w').write(str(child.pid))"""


def assert_no_leftovers(folder, temporary):
    """No folder in /tmp, no scratch folder, no kernel, no process a block
    started."""
    child = int((folder / "child.pid").read_text())
    assert gone(child), "a process started by a block outlived the build"
    assert list(temporary.iterdir()) == []
    assert not list((folder / ".build").glob("run-*"))
    # The bridge stops its kernel just after Emacs exits, in a moment.
    assert wait_for(lambda: subprocess.run(["pgrep", "-f", str(folder)],
                                           capture_output=True).returncode == 1, 5), \
        "a bridge or kernel outlived the build"


def test_a_runaway_block_times_out_naming_itself_and_leaves_nothing(tiny):
    text = HEADER + block(CHILD, "child") + \
        block("while True:\n    pass", "runaway", ":timeout 0.5") + block("x = 1", "after")
    before = write_readme(tiny, text)
    process, temporary = build_with_tmpdir(tiny)
    _, stderr = process.communicate(timeout=30)
    run = subprocess.CompletedProcess(process.args, process.returncode, "", stderr)
    assert_failed_cleanly(run, tiny, {**before, "child.pid": (tiny / "child.pid").read_bytes()},
                          f"README.org:{line_of(text, 'runaway')}: block `runaway' "
                          "ran past its time limit of 0.5 s")
    assert "running README.org" in stderr and "`after'" not in stderr
    assert_no_leftovers(tiny, temporary)


def test_a_block_that_calls_exit_is_blamed_not_a_later_one(tiny):
    text = HEADER + block("exit()", "exits") + block("x = 1", "after") + block("x", "later")
    before = write_readme(tiny, text)
    run = build(tiny)
    assert_failed_cleanly(run, tiny, before, f"README.org:{line_of(text, 'exits')}: block "
                          "`exits' stopped the kernel: it called exit() or quit()")


@pytest.fixture(scope="module")
def kernel():
    import kernel_bridge
    kernel = kernel_bridge.Kernel()
    yield kernel
    kernel.kill()


BAD_OUTPUT = {
    "NUL": ("print('a\\x00b')", "output", "printed a NUL character"),
    "too long": ("print('\\n'.join(map(str, range(2000))))", "output",
                 "produced 2000 lines, more than the 1000"),
    "SystemExit": ("raise SystemExit(2)", "raised", "SystemExit: 2 (the block called"),
    # Org text that would close the results drawer and become notes text.
    "Org out of its drawer": (
        "class O:\n    def _repr_mimebundle_(self, include=None, exclude=None):\n"
        "        return {'text/plain': 'O', 'text/org': '| 1 |\\n:end:\\n* Heading'}\nO()",
        "output", "returned Org text with the line ':end:'"),
}


@pytest.mark.parametrize("case", BAD_OUTPUT, ids=list(BAD_OUTPUT))
def test_what_cannot_go_into_the_notes_fails_the_block(kernel, case):
    """The bridge's side; the build names the block as for any failure."""
    import kernel_bridge
    code, kind, what = BAD_OUTPUT[case]
    with pytest.raises(kernel_bridge.BlockError) as failure:
        kernel_bridge.execute(kernel, code, max_lines=1000)
    assert failure.value.kind == kind and what in str(failure.value)
    assert "%tb" not in str(failure.value)


def test_the_kernel_keeps_no_history_in_the_users_home(kernel):
    """Every block of every build would go into ~/.ipython's database."""
    import kernel_bridge
    org, _ = kernel_bridge.execute(kernel, "get_ipython().history_manager.enabled")
    assert org == ": False"


def test_a_kernel_killed_by_its_block_is_reported_as_died(kernel):
    """The last test of the module's kernel, which is gone afterwards."""
    import kernel_bridge
    with pytest.raises(kernel_bridge.KernelDied, match="the kernel died while running it"):
        kernel_bridge.execute(kernel, "import os\nos._exit(3)")


@pytest.mark.parametrize("ending", ["end of input", "SIGHUP"])
def test_a_bridge_whose_emacs_is_gone_stops_its_kernel_in_the_middle_of_a_block(tmp_path, ending):
    """Emacs may end without telling the bridge (killed, or its terminal
    closed before its exit hook ran), or with the SIGHUP it sends every
    subprocess as it exits: either is enough to stop the kernel and what
    the block started."""
    bridge = subprocess.Popen([sys.executable, str(ROOT / "tools" / "kernel_bridge.py")],
                              cwd=tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        kernel = json.loads(bridge.stdout.readline())["kernel_pid"]
        bridge.stdin.write(json.dumps({"id": 1, "code": CHILD + "\nimport time\ntime.sleep(300)"})
                           + "\n")
        bridge.stdin.flush()
        child = tmp_path / "child.pid"
        assert wait_for(child.exists)
        time.sleep(0.2)
        if ending == "SIGHUP":
            bridge.send_signal(signal.SIGHUP)
        else:
            bridge.stdin.close()
        assert bridge.wait(timeout=10) == 0
        assert gone(kernel), "the kernel outlived its bridge"
        assert gone(int(wait_for(child.read_text))), "what the block started outlived the bridge"
    finally:
        bridge.kill()


def test_text_that_no_utf_8_file_can_hold_is_refused():
    """ipykernel already replaces a lone surrogate in printed text; one in a
    value's repr, or any other route, is still caught before Emacs."""
    import kernel_bridge
    for text in ("a\x00b", "\udc80"):
        with pytest.raises(kernel_bridge.BlockError):
            kernel_bridge.check_fits_the_notes(f": {text}", 1000)


def test_readme_edited_during_make_run_is_kept(tiny):
    text = HEADER + block("open('README.org', 'a').write('\\nAn edit made meanwhile.\\n')\n1 + 1",
                          "edits")
    before = write_readme(tiny, text)
    run = build(tiny, "run")
    assert run.returncode != 0
    assert "README.org changed on disk while the blocks ran" in run.stderr
    assert (tiny / "README.org").read_text() == text + "\nAn edit made meanwhile.\n"
    before["README.org"] = (tiny / "README.org").read_bytes()
    assert snapshot(tiny) == before


def test_readme_edited_during_make_tangle_is_built_by_the_next_one(tiny):
    """The list of outputs is make's stamp: written after the edit, it
    would tell make that the edit was built."""
    text = HEADER + block("open('README.org', 'a').write('\\nAn edit made meanwhile.\\n')",
                          "edits")
    before = write_readme(tiny, text)
    run = build(tiny)
    assert run.returncode != 0
    assert "README.org changed on disk while the blocks ran" in run.stderr
    assert "run `make tangle' again" in run.stderr.replace("\u2018", "`").replace("\u2019", "'")
    assert not (tiny / ".build" / "outputs").exists()
    before["README.org"] = (tiny / "README.org").read_bytes()
    assert snapshot(tiny) == before


@pytest.mark.parametrize("case", ["symbolic link", "read-only"])
def test_make_run_refuses_a_readme_it_would_replace_against_its_owners_wish(tiny, case):
    """The install renames a new file over README.org."""
    text = HEADER + block("print(1)", "one")
    write_readme(tiny, text)
    readme = tiny / "README.org"
    if case == "symbolic link":
        readme.rename(tiny / "notes.org")
        readme.symlink_to("notes.org")
    else:
        readme.chmod(0o444)
    before = snapshot(tiny)
    run = build(tiny, "run")
    assert_failed_cleanly(run, tiny, before, f"README.org is a {case}" if case != "read-only"
                          else "README.org is read-only")
    assert readme.is_symlink() == (case == "symbolic link")


def test_make_run_keeps_the_permissions_of_readme(tiny):
    write_readme(tiny, HEADER + block("print(1)", "one"))
    (tiny / "README.org").chmod(0o664)
    assert build(tiny, "run").returncode == 0
    assert "1" in (tiny / "README.org").read_text().split("#+RESULTS: one")[1]
    assert (tiny / "README.org").stat().st_mode & 0o777 == 0o664


def test_every_kernel_runs_in_the_folder_of_the_notes(tiny, tmp_path_factory):
    """Whatever folder Emacs starts in, and for a session started after the
    build moved into its scratch folder, whose files would be taken for
    outputs."""
    code = "import os\nprint(os.getcwd())\nopen('{}.txt', 'w').close()"
    write_readme(tiny, HEADER + block(code.format("first"), "first")
                 + block(code.format("other"), "other", ":session other"))
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    run = emacs("-l", str(tiny / "tools" / "build.el"), "-f", "gradients-build-run",
                str(tiny / "README.org"), cwd=elsewhere, check=False)
    assert run.returncode == 0, run.stderr
    text = (tiny / "README.org").read_text()
    assert text.count(f": {tiny}\n") == 2, text
    assert ".build" not in text
    assert (tiny / "first.txt").exists() and (tiny / "other.txt").exists()
    assert list(elsewhere.iterdir()) == []
    assert "wrote other.txt" not in run.stderr


def test_a_folder_the_build_cannot_write_to_stops_it_before_any_move(tiny):
    picture = "from graphviz import Digraph\nd = Digraph()\nd.node('x')\nd"
    before = write_readme(tiny, HEADER + block(picture, "a", ":file a/x.svg")
                          + block(picture, "b", ":file b/x.svg"))
    (tiny / "b").write_text("a file where the build wants a folder")
    before = snapshot(tiny)
    run = build(tiny)
    assert_failed_cleanly(run, tiny, before, "Cannot write b/x.svg: b is not a folder")
    assert not (tiny / "a").exists()


FAIL_THE_SECOND_MOVE = """;;; -*- lexical-binding: t -*-
(advice-add 'rename-file :before
            (let ((moves 0))
              (lambda (&rest _)
                (when (= (setq moves (1+ moves)) 2)
                  (signal 'file-error '("Renaming" "No space left on device"))))))
"""


def test_a_move_that_fails_anyway_is_reported_as_it_is(tiny):
    """Not "Nothing was changed." after a first move, nor a backtrace, nor
    a scratch folder left behind."""
    write_readme(tiny, HEADER + block("print('new')", "one", ":tangle gradients.py")
                 .replace("jupyter-python", "python")
                 + block("print('new')", "two", ":tangle images/two.py")
                 .replace("jupyter-python", "python"))
    (tiny / "fail.el").write_text(FAIL_THE_SECOND_MOVE)
    run = emacs("-l", "fail.el", "-l", "tools/build.el", "-f", "gradients-build-tangle",
                "README.org", cwd=tiny, check=False)
    assert run.returncode == 1, run.stderr
    assert "No space left on device" in run.stderr
    assert "Only some outputs were written: " in run.stderr
    assert "Nothing was changed." not in run.stderr
    assert "Debugger entered" not in run.stderr and "kill-emacs-hook" not in run.stderr
    assert not list((tiny / ".build").glob("run-*"))


def test_no_venv_is_said_in_one_line(tiny):
    before = write_readme(tiny, HEADER + block("x = 1", "one"))
    run = emacs("--eval", '(setq gradients-python "/nonexistent/python")',
                "-l", "tools/build.el", "-f", "gradients-build-tangle", "README.org",
                cwd=tiny, check=False)
    assert run.returncode == 1
    lines = run.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("No /nonexistent/python: run "), run.stderr
    assert lines[1] == "Nothing was changed."
    assert snapshot(tiny) == before


def test_ctrl_c_while_a_block_runs_changes_nothing_and_leaves_nothing(tiny):
    """A failed build is the runaway block's test, a successful one the
    indented block's."""
    before = write_readme(tiny, HEADER + block(CHILD, "child")
                          + block("import time\ntime.sleep(30)", "sleeps"))
    process, temporary = build_with_tmpdir(tiny)
    deadline = time.monotonic() + 20
    while not (tiny / "child.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    os.killpg(process.pid, signal.SIGINT)   # as Ctrl-C in a terminal does
    pressed = time.monotonic()
    _, stderr = process.communicate(timeout=30)
    assert process.returncode != 0, stderr
    # Emacs waits for nothing as it exits: each bridge stops on its own.
    assert time.monotonic() - pressed < 1.5, "the build was slow to stop"
    assert_no_leftovers(tiny, temporary)
    assert snapshot(tiny) == {**before, "child.pid": (tiny / "child.pid").read_bytes()}


INTERRUPT_AFTER_FIRST_MOVE = """;;; -*- lexical-binding: t -*-
(advice-add 'rename-file :after
            (let ((done nil))
              (lambda (&rest _)
                (unless done
                  (setq done t)
                  (signal-process (emacs-pid) 'SIGINT)
                  (sleep-for 1)))))
"""


def test_ctrl_c_during_the_install_completes_it(tiny):
    """Either every output is new or every one is old, never a mix."""
    # Python blocks are tangled but not run: no kernel is needed here.
    write_readme(tiny, HEADER + block("print('new')", "one", ":tangle gradients.py")
                 .replace("jupyter-python", "python")
                 + block("print('new')", "two", ":tangle images/two.py")
                 .replace("jupyter-python", "python"))
    (tiny / "images" / "two.py").write_text("old")
    (tiny / "gradients.py").write_text("old")
    (tiny / "interrupt.el").write_text(INTERRUPT_AFTER_FIRST_MOVE)
    run = emacs("-l", "interrupt.el", "-l", "tools/build.el", "-f", "gradients-build-tangle",
                "README.org", cwd=tiny, check=False)
    # The first move's own "wrote" line is lost to Ctrl-C; its file is not.
    assert run.returncode != 0 and "wrote" in run.stderr, run.stderr
    for output in ("gradients.py", "images/two.py"):
        assert "new" in (tiny / output).read_text(), f"{output} is still old"
    assert not list((tiny / ".build").glob("run-*"))


def outputs_state(folder):
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in [folder / "gradients.py", *sorted((folder / "images").iterdir())]}


def test_make_tangle_rewrites_exactly_what_changed_and_knows_every_output(tiny):
    """Even the picture of an indented block, which no reader but Org's
    would see; and a successful build leaves nothing running or lying about."""
    def notes(label):
        return HEADER + block(CHILD, "child") + block("from graphviz import Digraph", "imports") \
            + "\n  #+name: indented\n  #+begin_src jupyter-python :file images/indented.svg\n" \
            "  d = Digraph()\n  d.node('x')\n  d\n  #+end_src\n" \
            + block(f"d = Digraph()\nd.node('{label}')\nd", "other", ":file images/other.svg")

    write_readme(tiny, notes("first"))
    temporary = tiny / "tmp"
    temporary.mkdir()

    def make_tangle(*options):
        return subprocess.run(["make", "--no-print-directory", *options, "tangle"], cwd=tiny,
                              env=dict(os.environ, TMPDIR=str(temporary)),
                              capture_output=True, text=True, timeout=60)

    first = make_tangle()
    assert first.returncode == 0, first.stderr
    assert (tiny / "images" / "indented.svg").exists()
    assert_no_leftovers(tiny, temporary)
    assert make_tangle("-q").returncode == 0, "a second make tangle would build again"

    before = outputs_state(tiny)
    write_readme(tiny, notes("second"))
    assert make_tangle().returncode == 0
    after = outputs_state(tiny)
    changed = sorted(p for p in after if after[p] != before[p])
    assert changed == ["gradients.py", "images/other.svg"]

    (tiny / "images" / "indented.svg").unlink()
    assert make_tangle("-q").returncode == 1, "make does not know the picture is missing"
