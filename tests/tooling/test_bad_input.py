"""Input the build refuses before any block runs, each named on its line:
headers Org would ignore or that would write in the wrong place, blocks
or drawers never closed, bytes and line ends Org would misread, what the
build would never run.  Nothing is changed and nothing runs."""

import os

from tiny_notes import (HEADER, assert_failed_cleanly, assert_no_kernel_left, block, build,
                        line_of, write_readme)

# Headers that would go wrong; Org itself ignores a name it does not know,
# without a word.  Each: the text added, the line named (as it reads),
# what is said there.
def bad_block(name, header, why, code="plt.plot([1, 2])"):
    """(text added, the line named, what is said) for block NAME with HEADER."""
    return (block(code, name, header), f"#+begin_src jupyter-python {header}",
            f"block `{name}': {why}")


BAD_HEADERS = [
    ("\n#+PROPERTY: header-args:jupyter-python+ :resluts drawer\n",
     "#+PROPERTY: header-args:jupyter-python+ :resluts drawer",
     "unknown header argument :resluts; Org would ignore it"),
    bad_block("misspelt", ":fiel images/x.png :exprts both",
              "unknown header arguments :fiel, :exprts", code="x = 1"),
    ("\n#+name: in-header-line\n#+header: :tangel no\n#+begin_src jupyter-python\nx = 1\n"
     "#+end_src\n", "#+begin_src jupyter-python",
     "block `in-header-line': unknown header argument :tangel"),
    bad_block("soon", ":timeout soon", ":timeout soon is not a number of seconds", code="x = 1"),
    bad_block("absolute", ":file /tmp/evil.png", ":file /tmp/evil.png is outside the project"),
    bad_block("climbing", ":file ../../evil.png", ":file ../../evil.png is outside the project"),
    # Org would write the drawer's link over the picture.
    bad_block("as-file", ":file images/as-file.png :results file",
              ":results file would make Org write the link over the picture"),
    # The Makefile reads the outputs split at spaces.
    bad_block("spaced", ':file "images/my plot.png"', ":file images/my plot.png has a space"),
    bad_block("photo", ":file images/photo.jpg",
              ":file images/photo.jpg is not a picture the build can draw"),
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
    # The kernel started while Org loaded is stopped with the build.
    assert_no_kernel_left(tiny)


# The refusals themselves, each on its line, are checked in one Emacs by
# tests/ert/refusal-tests.el, through the same build in process; here,
# what only the batch build shows, once per way it refuses.


def test_text_org_would_misread_is_refused_before_org_loads(tiny):
    """Checked on the bytes, before Org loads and before any kernel starts:
    a CR LF anywhere, here on one line of a block."""
    text = HEADER + block("x = 1", "fine").replace("x = 1\n", "x = 1\r\n")
    before = write_readme(tiny, text)
    assert_failed_cleanly(build(tiny), tiny, before,
                          "README.org:9: the line ends in CR LF (Windows line ends)")


def test_a_block_failing_in_make_run_is_named_by_its_line_in_the_file(tiny):
    """Found by probing: `make run' named the line the block had in the
    buffer, below the results Org had just written for the blocks above
    it, which the file, left unchanged, does not hold."""
    text = HEADER + block("print('one')\nprint('two')", "above") + block("1 / 0", "fails")
    before = write_readme(tiny, text)
    run = build(tiny, "run")
    assert_failed_cleanly(run, tiny, before,
                          f"README.org:{line_of(text, 'fails')}: block `fails' raised "
                          "ZeroDivisionError")


def test_a_syntax_error_is_named_by_its_line_in_the_file(tiny):
    """Found by probing: the build said "invalid syntax (1886342180.py,
    line 2)", counting from the block's first line, in a file of IPython's
    the author never sees."""
    text = HEADER + block("print('one')\nprint('two')", "above") + block("x = 1\ny = = 2", "broken")
    before = write_readme(tiny, text)
    line = line_of(text, "broken")
    for target in ("tangle", "run"):
        assert_failed_cleanly(build(tiny, target), tiny, before,
                              f"README.org:{line}: block `broken' raised SyntaxError: invalid "
                              f"syntax (README.org:{line + 2})")


def test_a_picture_without_a_file_fails_the_build(tiny):
    """Found by probing: the build dropped it without a word."""
    # Graphviz's picture rather than Matplotlib's: a kernel that imports
    # Matplotlib costs each build half a second more.
    text = HEADER + block("from graphviz import Digraph\nd = Digraph()\nd.node('x')\nd", "loose")
    before = write_readme(tiny, text)
    for target in ("tangle", "run"):
        assert_failed_cleanly(build(tiny, target), tiny, before,
                              f"README.org:{line_of(text, 'loose')}: block `loose' displayed "
                              "a picture but has no :file")
