"""Input the build refuses before any block runs, each named on its line:
headers Org would ignore or that would write in the wrong place, blocks
or drawers never closed, bytes and line ends Org would misread, what the
build would never run.  Nothing is changed and nothing runs."""

import os

import pytest

from tiny_notes import HEADER, assert_failed_cleanly, block, build, write_readme

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
