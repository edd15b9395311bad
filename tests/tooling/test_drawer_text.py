"""What a block produces becomes drawer lines one way only: read as a
terminal reads it (every line break Python or Unicode knows ends a line,
CR and BS move back, escape sequences and control characters show
nothing), printed text made fixed-width, Org text refused where Org would
read more into it than the value's text.  Then: a build of such blocks
writes the same README.org each time."""

import json
import re
import subprocess
import sys
import tempfile

import pytest

from conftest import EMACS, FORGET_THE_NOTES_BUFFER, ROOT, Daemon, copy_project, make
from tiny_notes import HEADER, assert_failed_cleanly, block, build, line_of, snapshot, write_readme

sys.path.insert(0, str(ROOT / "tools"))
import kernel_bridge  # noqa: E402
from kernel_bridge import BlockError, org_result, terminal_lines  # noqa: E402

# Every line break of str.splitlines, CR LF as one, and the lone CR apart.
SEPARATORS = ["\n", "\r\n", "\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]

# What no line of README.org may hold, whatever a block printed.
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def printed(*texts, name="stdout"):
    return [("stream", {"name": name, "text": text}) for text in texts]


def value(**data):
    return [("execute_result", {"data": data, "metadata": {}, "execution_count": 1})]


def org_value(text):
    return value(**{"text/org": text, "text/plain": "<object>"})


@pytest.mark.parametrize("separator", SEPARATORS, ids=repr)
def test_every_line_break_ends_a_line_and_only_lf_reaches_the_drawer(separator):
    assert terminal_lines(f"a{separator}b{separator}") == ["a", "b"]
    assert org_result(printed(f"one{separator}:end:{separator}* two")) == \
        ": one\n: :end:\n: * two"
    assert org_result(value(**{"text/plain": f"x{separator}y"})) == ": x\n: y"


@pytest.mark.parametrize("separator", SEPARATORS, ids=repr)
def test_org_text_cannot_leave_its_drawer_by_any_line_break(separator):
    with pytest.raises(BlockError) as refused:
        org_result(org_value(f"| a | b |{separator}:end:{separator}Leaked paragraph"))
    assert refused.value.kind == "output"
    assert "line 2, ':end:', would close its results drawer" in str(refused.value)


def test_a_progress_bar_records_its_last_state_as_one_line():
    bar = printed(*(f"\r{i}/1500" for i in range(1501)), name="stderr")
    assert org_result(bar, max_lines=1000) == ": 1500/1500"
    # The limit counts the lines that remain.
    lines = printed("".join(f"{i}\r{i}\n" for i in range(1000)))
    assert len(org_result(lines, max_lines=1000).split("\n")) == 1000
    with pytest.raises(BlockError, match="produced 1001 lines, more than the 1000"):
        org_result(lines + printed("last\n"), max_lines=1000)


@pytest.mark.parametrize("text, shown", [
    ("abc\rX", ["Xbc"]),                       # CR overwrites, as a terminal does
    ("50%\r100%\n", ["100%"]),
    ("Loading 9 files\r\x1b[KDone", ["Done"]),  # ESC[K erases the rest
    ("Loading\r\x1b[2KDone", ["Done"]),
    ("abc\r\n", ["abc"]),                      # CR LF is a line end
    ("abc\r", ["abc"]),
    ("a\x08b", ["b"]),                         # BS goes back one, not erasing
    ("ab\x08", ["ab"]),
    ("\x08\x08x", ["x"]),
    ("tab\tstays", ["tab\tstays"]),
    ("\x1b[0m", []),                           # a last line showing nothing
    ("", []),
    ("\n\n", ["", ""]),
], ids=repr)
def test_cr_bs_and_erasing_work_as_in_a_terminal(text, shown):
    assert terminal_lines(text) == shown


@pytest.mark.parametrize("code", [
    "\x1b[31m", "\x1b[1;38;5;208m", "\x1b[0m", "\x1b[2A", "\x1b[10G", "\x1b[?25l",
    "\x9b31m",                                  # CSI as one C1 character
    "\x1b]0;a window title\x07", "\x1b]8;;https://example.com\x1b\\",
    "\x1b]2;title\x9c", "\x1bP1$r0m\x1b\\", "\x1b_an APC\x1b\\", "\x9d0;title\x07",
    "\x1b(B", "\x1b7", "\x1b8", "\x1bc", "\x1b=",
    "\x00", "\x01", "\x07", "\x0e", "\x1a", "\x1f", "\x7f", "\x80", "\x81", "\x9c",
], ids=repr)
def test_escape_sequences_and_controls_show_nothing(code):
    assert terminal_lines(f"be{code}fore{code}\nafter") == ["before", "after"]
    assert org_result(printed(f"be{code}fore")) == ": before"
    assert org_result(value(**{"text/plain": f"be{code}fore"})) == ": before"
    assert org_result(org_value(f"be{code}fore")) == "before"


def test_unfinished_escapes_end_with_their_line():
    assert terminal_lines("a\x1b]0;never closed\nb") == ["a", "b"]
    assert terminal_lines("a\x9fan APC never closed\nb") == ["a", "b"]
    assert terminal_lines("a\x1b[12\nb\x1b") == ["a12", "b"]


def test_no_control_character_reaches_the_drawer_whatever_is_printed():
    everything = "".join(map(chr, range(0xA0))) + "\u2028\u2029"
    for outputs in (printed(everything), value(**{"text/plain": everything}),
                    printed(*everything), org_value(everything.replace("*", ""))):
        org = org_result(outputs)
        assert not CONTROL.search(org), repr(org)


def test_a_traceback_is_read_the_same_way():
    error = ("error", {"ename": "ValueError", "evalue": "bad",
                       "traceback": ["\x1b[0;31mValueError\x1b[0m\u2028Traceback",
                                     "line\x07 two\r\x1b[Kline 2"]})
    failure = kernel_bridge.failure([error])
    assert str(failure) == "ValueError\nTraceback\nline 2"
    assert failure.summary == "ValueError: bad"


@pytest.mark.parametrize("evalue", ["bad\n* Heading\n#+end_src\n:END:", "bad\r\n\nmore",
                                    "bad\u2028more", "bad\x1b[0m\nmore"], ids=repr)
def test_an_exception_of_several_lines_is_summed_up_in_its_first(evalue):
    error = ("error", {"ename": "ValueError", "evalue": evalue,
                       "traceback": ["Traceback", f"ValueError: {evalue}"]})
    failure = kernel_bridge.failure([error])
    assert failure.summary == "ValueError: bad …"
    assert str(failure).endswith(terminal_lines(evalue)[-1])


def test_every_text_of_a_reply_is_one_emacs_can_read(tmp_path):
    """Emacs's JSON reader refuses a NUL and a lone surrogate, and would
    lose the whole reply to either."""
    error = ("error", {"ename": "ValueError", "evalue": "a\x00b\udc80",
                       "traceback": ["ValueError: a\x00b\udc80"]})
    failure = kernel_bridge.failure([error])
    stream = printed("x\x00y\udc80\n")
    reply = {"error": str(failure), "summary": failure.summary,
             "printed": kernel_bridge.printed_text(stream)}
    assert reply == {"error": "ValueError: ab\\udc80", "summary": "ValueError: ab\\udc80",
                     "printed": "xy\\udc80\n"}
    # The drawer's text refuses it, naming it.
    with pytest.raises(BlockError, match="a lone surrogate"):
        org_result(stream)
    answer = tmp_path / "reply.json"
    answer.write_text(json.dumps(reply))
    read = subprocess.run(
        [EMACS, "-Q", "--batch", "--eval",
         f'(with-temp-buffer (insert-file-contents "{answer}")'
         f' (princ (alist-get (quote printed) (json-parse-buffer :object-type (quote alist)))))'],
        capture_output=True, text=True)
    assert read.returncode == 0, read.stderr
    assert read.stdout == "xy\\udc80\n"


# Lines of Org that would be more than text inside a results drawer: the
# drawer's end, another drawer, a headline, a block, a keyword, a call,
# inline code Org runs.
ESCAPING = [
    ":end:", ":END:", "  :end:  ", ":note:", ":PROPERTIES:", ":results:",
    "* Heading", "** Sub", "*", "*\tTab",
    "#+begin_src jupyter-python", "#+BEGIN_EXAMPLE", "  #+end_quote", "#+begin: clocktable",
    "#+CALL: other()", "#+RESULTS: name", "#+TITLE: x", "#+PROPERTY: header-args :eval yes",
    "#+name: dupe", "#+SETUPFILE: elsewhere.org", "#+INCLUDE: \"x.org\"",
    "see src_python{1} here", "src_sh[:results raw]{ls}", "x_src_elisp{(kill-emacs)}",
    "(src_python{1})", "é-src_python{1}", "call_other()", "then call_other[:eval yes](n=1)",
    "my_call_f()", "<<<gradient>>>", "a <<<radio target>>> here",
    "[fn:1] A footnote.", "[fn:label] Another.",
    # Found by probing: Org reads a footnote's definition in any case.
    "[FN:1] Shouting.",
    "%%(shell-command \"true\")", "  %%(diary-float t 4 2)", "[[elisp:(kill-emacs)][click]]",
    "[[shell:rm -rf ~][x]]", "see elisp:(kill-emacs) here", "x_shell:ls",
    "due <%%(diary-float t 4 2)>",
]


@pytest.mark.parametrize("line", ESCAPING, ids=repr)
@pytest.mark.parametrize("separator", ["\n", "\u2028", "\r\n", "\f"], ids=repr)
def test_org_text_that_would_change_the_notes_is_refused_naming_its_line(line, separator):
    with pytest.raises(BlockError) as refused:
        org_result(org_value(f"| a |{separator}{line}{separator}after"))
    assert refused.value.kind == "output"
    assert f"line 2, {line.strip()!r}" in str(refused.value)


def with_a_path_of_the_notes(line):
    """LINE with a path of the notes' folder put in it where making the
    path relative to that folder (as every text of a drawer is made)
    gives LINE back: the folder, a slash, then what follows."""
    notes = {name: place for place, name in kernel_bridge.STABLE_PLACES[1].items()}["<notes>"]
    for at in range(len(line)):
        if re.match(kernel_bridge.PATH_CHARACTER, line[at]) and \
           (at == 0 or not re.match(r"[\w.:/-]", line[at - 1])):
            return line[:at] + notes + "/" + line[at:]
    return None


@pytest.mark.parametrize("line", [line for line in ESCAPING if with_a_path_of_the_notes(line)]
                         + ["<<<notes>>>", "a <<<notes>>> here"], ids=repr)
def test_org_text_is_checked_as_the_drawer_would_hold_it(line):
    """As written, with the notes' folder made relative: a line harmless
    before that (#/the/notes/+TITLE:) may not be after."""
    notes = {name: place for place, name in kernel_bridge.STABLE_PLACES[1].items()}["<notes>"]
    smuggled = (line.replace("<notes>", notes) if "<notes>" in line
                else with_a_path_of_the_notes(line))
    assert smuggled != line
    with pytest.raises(BlockError) as refused:
        org_result(org_value(f"| a |\n{smuggled}\nafter"))
    assert f"line 2, {line.strip()!r}" in str(refused.value)


@pytest.mark.parametrize("line", ESCAPING, ids=repr)
def test_printed_text_is_inert_whatever_it_holds(line):
    """Fixed-width lines, which Org shows verbatim and never reads."""
    org = org_result(printed(f"{line}\n") + value(**{"text/plain": line}))
    assert org.split("\n") == [f": {line.rstrip()}"] * 2


def test_org_text_that_stays_text_goes_in_as_it_is():
    text = "\n\n| a | b |\n|---+---|\n| 1 | 2 |\n\nA paragraph, [[https://x.org][a link]].\n\n" \
           "- an item\n# a comment\n: fixed\nmy_src is call_me maybe\n" \
           "recall_this(1), resrc_x{1}, 2src_y{2}\n<<a target>> <<< spaced >>> <<<no>>\n" \
           "a 50%%(ish) share; the shell: bash; myshell:x, an elisp: note\n\n"
    assert org_result(org_value(text)) == text.strip("\n")


def test_org_text_is_indented_by_spaces_as_org_indents_it():
    """As the drawer of a block in a list item holds it, whatever the
    value's indentation was made of; tabs after the indentation stay."""
    assert org_result(org_value("\tx\n  \t y\n- a\tb\n\t\t- c")) == \
        "        x\n         y\n- a\tb\n                - c"


@pytest.mark.parametrize("results, wrap", [
    (["raw", "value", "replace"], False), (["raw", "output", "replace"], False)])
def test_raw_results_org_could_not_replace_are_refused(results, wrap):
    for outputs in (org_value("first\n\nsecond paragraph"), org_value("one paragraph"),
                    printed("printed\n") + org_value("| a |"),
                    printed("printed\n") + value(**{"text/plain": "1"}) + printed("x")):
        if all(kind == "stream" or "text/plain" in c["data"] and "text/org" not in c["data"]
               for kind, c in outputs):
            continue
        with pytest.raises(BlockError, match="has :results raw") as refused:
            org_result(outputs, results=results, wrap=wrap)
        assert refused.value.kind == "output"


@pytest.mark.parametrize("results, wrap", [
    (None, False), (["drawer", "replace"], False), (["raw", "replace"], True),
    (["org", "raw"], False), (["value", "replace"], False)])
def test_results_org_can_replace_whole_are_kept(results, wrap):
    for outputs in (org_value("first\n\nsecond paragraph"),
                    printed("a\n\nb\n") + org_value("| a |")):
        assert org_result(outputs, results=results, wrap=wrap)


def test_raw_results_of_one_element_are_kept():
    raw = ["raw", "value", "replace"]
    # Found by probing: ":" alone, GitHub's renderer made a paragraph of
    # it, cutting the output in two; Org writes ": ".
    assert org_result(printed("a\n\nb"), results=raw) == ": a\n: \n: b"
    assert org_result(org_value("| a |\n| b |"), results=raw) == "| a |\n| b |"
    assert org_result(printed(""), file="images/x.png", results=raw) == "[[file:images/x.png]]"


def figure(png=True, svg=False):
    data = {"text/plain": "<Figure>"}
    if png:
        data["image/png"] = "iVBORw0KGgo="
    if svg:
        data["image/svg+xml"] = "<svg/>"
    return ("display_data", {"data": data, "metadata": {}})


def test_a_file_block_showing_several_pictures_is_refused():
    assert kernel_bridge.picture([figure(svg=True)], "images/x.svg") == b"<svg/>"
    for shown in ([figure(), figure()], [figure(png=False, svg=True), figure()]):
        with pytest.raises(BlockError, match="displayed 2 pictures") as refused:
            kernel_bridge.picture(shown, "images/x.png")
        assert refused.value.kind == "output"
    with pytest.raises(BlockError, match="displayed no image/png"):
        kernel_bridge.picture([figure(png=False, svg=True)], "images/x.png")


# Built as `make run` builds: the same notes twice, the same bytes twice.

# A value that shows itself as the Org text {}.
ORG = ("class Org:\n    def _repr_mimebundle_(self, **kwargs):\n"
       "        return {{'text/org': {}, 'text/plain': 'Org'}}\nOrg()")


NOISY = [
    ("import sys\nfor i in range(1501):\n    sys.stderr.write(f'\\r{i}/1500')", "bar", ""),
    ("print('\\x1b[31mred\\x1b[0m, bell\\x07, a\\x08b, del\\x7f, form\\x0cfeed, "
     "nul\\x00, sep\\u2028arated, nel\\x85line')", "noise", ""),
    ("print(':end:\\n* Heading\\n#+begin_src jupyter-python\\n#+CALL: x()\\n:note:')",
     "inert", ""),
    (ORG.format("'| a | b |\\n\\nA paragraph.\\n\\nAnother.'"), "org", ""),
    # Named by the file of its cell, in a folder named by the kernel's pid.
    ("import numpy as np\nprint(np.exp(np.float64(1000)))", "overflows", ""),
    ("import warnings\nwarnings.warn('nudged too far')", "warns", ""),
    # Standard output and error, each sent when its own timer says.
    ("import sys\nfor i in range(4):\n    sys.stderr.write(f'e{i}\\n')\n    print(f'o{i}')",
     "interleaved", ""),
    # Each read apart by the drawer and by gradients.py's own test.
    ("for i in range(3):\n    print(f'\\r{i * 50}%', end='')", "stdout-bar", ""),
    ("print('trailing   ')\nprint('no newline', end='')", "ragged", ""),
    ("import os, subprocess\nos.write(1, b'via fd\\n')\nsubprocess.run(['echo', 'from echo'])\n"
     "print('after')", "descriptors", ""),
    ("import sys\nprint('to stderr', file=sys.stderr)", "stderr", ""),
    ("print(hex(0xffffff), hex(0xdeadbeef))\nprint('data is in [[file:data.csv]]')",
     "not-an-address", ""),
    ("def f():\n    pass\nf.__code__.co_filename", "cell-file", ""),
    # Found by probing: gradients.py's import read pytest's input.
    ("import sys\nprint(len(sys.stdin.readlines()), repr(sys.stdin.read()))", "reads-input", ""),
    ("print('first\\n\\nsecond')", "blank-line", ""),
]

# Org indents the results of an indented block as far as the block.
INDENTED = ("\n- an item with a block:\n  #+name: in-list\n  #+begin_src jupyter-python\n"
            "  print('in a list')\n  #+end_src\n\nOutside the list.\n\n"
            "  #+name: indented\n  #+begin_src jupyter-python\n  print('indented')\n"
            "  #+end_src\n")


# Put together, so that the block's own code holds no such text.
PRINTS_ORG_SYNTAX = ("s, c = 'src_', 'call_'\n"
                     "print(s + 'python{1} and ' + c + 'f() and ' + s + 'sh[:results raw]{ls}')\n"
                     "print('#+' + 'CALL: f()')")


# Found by probing: the build's own last request printed the files the
# blocks read into the StringIO, and read them with the json module, a
# block left behind: the build failed with a JSON error naming nothing.
LEAVES_STATE = "import io, sys\nsys.stdout = io.StringIO()\nsys.modules['json'] = None"


@pytest.fixture(scope="module")
def built_twice(tmp_path_factory):
    """Notes of NOISY blocks, one printing Org syntax and INDENTED ones,
    built as `make run` builds them, twice: the two builds, README.org
    after each, and the folder."""
    folder = copy_project(tmp_path_factory.mktemp("built-twice"))
    write_readme(folder, HEADER + "".join(block(*each) for each in NOISY)
                 + block(PRINTS_ORG_SYNTAX, "prints") + INDENTED + block(LEAVES_STATE, "leaves-state",
                                                                         ":tangle no"))
    first = build(folder, "run", timeout=120)
    once = (folder / "README.org").read_text()
    second = build(folder, "run", timeout=120)
    return first, once, second, (folder / "README.org").read_text(), folder


@pytest.mark.xdist_group(f"{__name__}.built_twice")
def test_make_run_twice_writes_the_same_readme(built_twice):
    first, once, second, again, _ = built_twice
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    # Found by probing: the second said the results were reused, then ran
    # every block again, as make run does.
    # And said so twice, the second time as it read the notes it wrote.
    assert (second.stderr.count("the code of the blocks is as when they last ran: that run is "
                                "kept for make tangle, and each block now runs again for the "
                                "notes") == 1
            and "results are reused" not in second.stderr), second.stderr
    assert again == once
    assert not CONTROL.search(once)
    assert ":results:\n: 1500/1500\n:end:" in once
    assert ": red, bell, b, del, form\n: feed, nul, sep\n: arated, nel\n: line\n" in once
    assert ":results:\n| a | b |\n\nA paragraph.\n\nAnother.\n:end:" in once
    assert ": <cell>:2: RuntimeWarning: overflow encountered in exp\n" in once
    assert ":results:\n: e0\n: o0\n: e1\n: o1\n: e2\n: o2\n: e3\n: o3\n:end:" in once
    assert "encountered in exp\n:   print(np.exp(np.float64(1000)))\n: inf\n" in once
    assert ": <cell>:2: UserWarning: nudged too far\n" in once


@pytest.mark.xdist_group(f"{__name__}.built_twice")
def test_what_make_run_records_make_test_finds_as_the_notes_make_it(built_twice):
    """The drawers, read back, are what the blocks produce, and
    gradients.py prints what they printed, whatever the text: make test
    passes right after make run."""
    first, once, second, again, folder = built_twice
    assert first.returncode == 0, first.stderr
    assert "  :results:\n  : in a list\n  :end:" in once
    assert ": 0xffffff 0xdeadbeef\n: data is in [[file:data.csv]]\n" in once
    assert ":results:\n: '<cell>'\n:end:" in once
    assert ":results:\n: 0 ''\n:end:" in once
    assert ":results:\n: first\n: \n: second\n:end:" in once
    checked = subprocess.run([str(folder / ".venv" / "bin" / "python"), "-m", "pytest",
                              "-p", "no:xdist", "tests/test_notes.py", "-k",
                              "recorded or prints_what or picture_in_a_result"],
                             cwd=folder, capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stdout[-4000:]
    assert "warnings summary" not in checked.stdout, checked.stdout[-4000:]
    # An editor that takes the blanks from lines' ends (an empty printed
    # line's ": ", as Org writes it) leaves nothing for make test to find.
    notes = folder / "README.org"
    trimmed = re.sub(r"[ \t]+$", "", once, flags=re.M)
    assert trimmed != once
    notes.write_text(trimmed)
    try:
        again = subprocess.run(checked.args, cwd=folder, capture_output=True, text=True,
                               timeout=120)
        assert again.returncode == 0, again.stdout[-4000:]
    finally:
        notes.write_text(once)


def test_make_run_refuses_a_result_that_changes_from_run_to_run(tiny):
    """Else make test would fail on it after every make run, saying to run
    make run: whatever make test compares, the drawer, what a block printed
    (a silent one too, and a progress bar whose last state is the same)
    and the picture it drew."""
    text = (HEADER + block("print(1 + 1)", "steady")
            + block("import os\nprint(os.getpid())", "pid")
            + block("import time\nprint(time.time())", "quiet", ":results silent")
            + block("import time\nprint(f'\\r{time.perf_counter_ns()}', end='')\n"
                    "print('\\r\\x1b[Kdone')", "bar")
            + block("import numpy as np, matplotlib.pyplot as plt\n"
                    "plt.imshow(np.random.rand(4, 4)); plt.axis('off'); plt.show()",
                    "noise", ":file images/noise.png")
            # Found by probing: refused, though its drawer is the same, and
            # what it printed is in no script make test runs.
            + block("import time\nprint(f'\\r{time.perf_counter_ns()}', end='')\n"
                    "print('\\r\\x1b[Kdone')", "bar-apart", ":tangle no")
            + block("print(3)", "after"))
    before = write_readme(tiny, text)
    run = make("run", cwd=tiny)
    assert run.returncode != 0
    said = [line for line in run.stderr.splitlines()
            if not line.startswith(("running ", "make: ***"))]
    named = [line for line in said if "gave another result" in line]
    assert named == [
        f"README.org:{line_of(text, 'pid')}: block `pid' gave another result when run again "
        "on a fresh kernel: its result, line 1:",
        f"README.org:{line_of(text, 'quiet')}: block `quiet' gave another result when run "
        "again on a fresh kernel: its result, line 1:",
        f"README.org:{line_of(text, 'bar')}: block `bar' gave another result when run again "
        "on a fresh kernel: what it printed, line 1:",
        f"README.org:{line_of(text, 'noise')}: block `noise' gave another result when run "
        "again on a fresh kernel: its picture images/noise.png, drawn again, holds other bytes",
    ], run.stderr
    first = said.index(named[0])
    assert said[first + 1].startswith("  the build's run:  \": ")
    assert said[first + 2].startswith("  make run's run:   \": ")
    # Found by probing: said as they are, the carriage returns of the bar
    # moved the terminal's cursor over the text that differs.
    bar = said.index(named[2])
    assert said[bar + 1].startswith(("  the build's run:  \"\\15", "  the build's run:  \"\\015")) \
        and "\r" not in run.stderr, said[bar + 1]
    assert any(line.startswith("What these blocks show changes from run to run") for line in said)
    assert said[-1] == "Nothing was changed.", run.stderr
    assert snapshot(tiny) == before


@pytest.mark.xdist_group(f"{__name__}.built_twice")
def test_printed_org_syntax_leaves_a_readme_the_next_build_accepts(built_twice):
    """Printed text is fixed-width, which Org never runs: a later build
    must not take it for an inline block or a call."""
    first, once, second, again, _ = built_twice
    assert first.returncode == 0, first.stderr
    assert ": src_python{1} and call_f() and src_sh[:results raw]{ls}\n: #+CALL: f()" in once
    assert second.returncode == 0, second.stderr
    assert again == once


@pytest.mark.parametrize("code, args, message", [
    (ORG.format("'ok\\u2028:end:\\u2028Leaked'"),
     "", "returned Org text whose line 2, ':end:', would close its results drawer"),
    (ORG.format("'ok\\n:note:\\nx'"),
     "", "returned Org text whose line 2, ':note:', would open a drawer"),
    ("import matplotlib.pyplot as plt\nplt.figure(); plt.plot([1, 2]); plt.show()\n"
     "plt.figure(); plt.plot([2, 1]); plt.show()", ":file images/two.png",
     "has :file images/two.png but displayed 2 pictures"),
    # What the drawer shows of a block still waiting: the build refuses it
    # in saved notes, as a result that never came.
    ("print('[waiting for the kernel: request 1]')", "",
     "made a result that reads as the placeholder of a block waiting for the kernel"),
    # gradients.py, imported by make test, printed the class of each.
    ("from IPython.display import display, Markdown\ndisplay(Markdown('# Title'))", "",
     "is tangled into gradients.py and displayed text/markdown and text/plain, which "
     "gradients.py, run on its own, would not show"),
], ids=["org-u2028-end", "org-drawer", "two-figures", "placeholder", "tangled-display"])
def test_output_that_cannot_go_into_the_notes_fails_the_build_cleanly(tiny, code, args,
                                                                      message):
    text = HEADER + block("x = 1", "before") + block(code, "bad", args)
    before = write_readme(tiny, text)
    run = build(tiny, "run", timeout=120)
    assert_failed_cleanly(run, tiny, before,
                          f"README.org:{line_of(text, 'bad')}: block `bad' {message}")
    assert not (tiny / "images" / "two.png").exists()


@pytest.mark.parametrize("link, said", [
    (".build/pictures/x.png", ".build/pictures/x.png is a picture saved by an interactive run"),
    ("images/nope.png", "block `linked': its result links images/nope.png, which no :file of "
                        "the block draws"),
], ids=["saved by a run", "drawn by no block"])
def test_make_run_writes_no_result_the_next_build_would_refuse(tiny, link, said):
    """The bridge lets through Org text that links a file, a picture an
    interactive run saved under .build/pictures/ or one no block draws:
    only the build knows which the notes may link, and refuses others.
    make run checks the notes as it would leave them, and writes nothing."""
    text = (HEADER + block("x = 1", "before")
            + block(ORG.format(f"'See [[file:{link}]]'"), "linked"))
    before = write_readme(tiny, text)
    run = build(tiny, "run", timeout=120)
    assert_failed_cleanly(run, tiny, before,
                          "README.org would be refused by the next build as this run leaves it")
    assert said in run.stderr, run.stderr


# The build refuses `:results raw' outside a drawer before anything runs;
# C-c C-c asks the bridge, which refuses what Org could not replace.  Each
# case visits README.org afresh in one Emacs, whose kernel serves them all.
RUN_FIRST_BLOCK = f"""(progn
  {FORGET_THE_NOTES_BUFFER}
  (with-current-buffer (find-file-noselect "README.org")
    (goto-char (point-min))
    (re-search-forward "^#\\\\+begin_src")
    (concat (condition-case failure
                (progn (org-babel-execute-src-block) "ran")
              (error (error-message-string failure)))
            (if (buffer-modified-p) "; changed" "; unchanged"))))"""


@pytest.fixture(scope="module")
def interactive(tmp_path_factory):
    """An interactive Emacs with the executor, in a copy of the project."""
    daemon = Daemon(copy_project(tmp_path_factory.mktemp("interactive")))
    try:
        assert daemon('(progn (setq org-modules nil) (load-file "tools/ob-gradients.el")'
                      ' (setq org-confirm-babel-evaluate nil) t)') is True
        yield daemon
    finally:
        daemon.close()


@pytest.mark.xdist_group(f"{__name__}.interactive")
@pytest.mark.parametrize("code, refused", [
    (ORG.format("'first\\n\\nsecond'"), True),
    ("print('one')\n" + ORG.format("'| a |'"), True),
    ("print('a\\n\\nb')", False),
])
def test_c_c_c_refuses_a_raw_result_org_could_not_replace(interactive, code, refused):
    write_readme(interactive.folder, HEADER + block(code, "raw", ":results value raw"))
    said = interactive(RUN_FIRST_BLOCK)
    if refused:
        assert said.startswith("README.org:8: block `raw' has :results raw, which puts"), \
            said + "\n" + interactive.state()
        assert said.endswith("; unchanged")
    else:
        assert said == "ran; changed", said + "\n" + interactive.state()


# Found by probing: invisible characters that change how a line reads.
@pytest.mark.parametrize("character", ["\u202e", "\u2066", "\u2069", "\u200e", "\u200b",
                                       "\ufeff", "\u061c"])
def test_invisible_characters_that_change_reading_are_dropped(character):
    assert org_result(printed(f"total{character} = 3\n")) == ": total = 3"


def test_one_huge_line_is_refused_like_too_many_lines():
    with pytest.raises(BlockError, match="characters, more than the"):
        org_result(printed("x" * 300_000 + "\n"), max_lines=1000)


def test_what_display_shows_is_recorded_in_its_place_and_a_picture_never_as_text():
    outputs = [*printed("before\n"), ("display_data", {"data": {"text/plain": "'hello'"}}),
               ("display_data", {"data": {"text/markdown": "**hi**",
                                          "text/plain": "<IPython.core.display.Markdown object>"}}),
               ("display_data", {"data": {"image/png": "iVBO", "text/plain": "<Figure at 0x7f00>"}}),
               *printed("after\n")]
    assert org_result(outputs) == ": before\n: 'hello'\n: **hi**\n: after"


def test_a_display_whose_only_text_is_its_class_is_refused_for_the_notes():
    """display(HTML(...)) recorded ": <IPython.core.display.HTML object>"."""
    for data in ({"text/html": "<b>x</b>", "text/plain": "<IPython.core.display.HTML object>"},
                 {"text/latex": "$x$", "application/json": {},
                  "text/plain": "<IPython.core.display.Latex object>"}):
        with pytest.raises(BlockError) as refused:
            kernel_bridge.execute(Shows(data), "display(...)", for_the_notes=True)
        assert refused.value.kind == "output"
        shown = " and ".join(sorted(set(data) - {"text/plain"}))
        assert str(refused.value) == (
            f"displayed {shown}, which the notes cannot show, and its text is only "
            f"{data['text/plain']}; print the text it holds instead")
        # C-c C-c shows it as it is.
        assert kernel_bridge.execute(Shows(data), "display(...)")[0] == f": {data['text/plain']}"
    for data in ({"text/markdown": "**hi**", "text/plain": "<IPython.core.display.Markdown object>"},
                 {"text/html": "<table/>", "text/plain": "   a\n0  1"}):
        kernel_bridge.execute(Shows(data), "display(...)", for_the_notes=True)


def test_a_cells_file_is_named_alike_in_every_text_a_block_shows():
    cell = f"{tempfile.gettempdir()}/ipykernel_4242/2659693008.py"
    outputs = [*printed(f"{cell}:2: UserWarning: x\n"),
               *value(**{"text/plain": repr(cell)}),
               ("display_data", {"data": {"text/markdown": f"from {cell}", "text/plain": ""}})]
    assert org_result(outputs) == (": <cell>:2: UserWarning: x\n: '<cell>'\n: from <cell>")


@pytest.mark.parametrize("text, address", [
    ("<__main__.Foo object at 0x7f3a2b1c4d50>", "0x7f3a2b1c4d50"),
    ("<function f at 0x55d0c0ffee00>", "0x55d0c0ffee00"),
    ("0x7f3a2b1c4d50", "0x7f3a2b1c4d50"),
    ("0xffffff", None), ("0xdeadbeef", None), ("mask 0x10", None),
    ("the byte at 0x10 is 255", None), ("<Foo object at 0x55d0c0ffee>", "0x55d0c0ffee"),
])
def test_a_memory_address_is_told_from_other_hex_numbers(text, address):
    found = kernel_bridge.MEMORY_ADDRESS.search(text)
    assert (found and found.group()) == address


class Shows:
    """A kernel, as `execute' sees one, whose every block shows DATA, as
    display(DATA, raw=True) sends it, whatever its types, and evaluates no
    expression after it."""

    evaluated, known_running = {}, set()

    def in_notes(self, text):
        return text

    def __init__(self, data):
        self.data = data

    def run(self, code, timeout, expressions=None, max_printed=None, notes=None):
        return [("display_data", {"data": self.data, "metadata": {}})]


@pytest.mark.parametrize("data, file, said", [
    ({"image/png": "abc"}, "x.png", "displayed image/png data that is not base64 text"),
    ({"image/png": 5}, "x.png", "displayed image/png data that is not base64 text"),
    ({"image/svg+xml": 5}, "x.svg", "displayed image/svg+xml data that is not text"),
    ({"image/svg+xml": ["<svg/>"]}, None, "displayed image/svg+xml data that is not text"),
    ({"text/plain": 5}, None, "displayed what the bridge cannot read (TypeError"),
    ({"text/org": ["* a"], "text/plain": "a"}, None,
     "displayed what the bridge cannot read (TypeError"),
], ids=repr)
def test_data_of_any_type_a_block_displays_fails_that_block_not_the_bridge(
        tmp_path, data, file, said):
    """Each of these ended the bridge, its kernel and every variable with
    it, and C-c C-c blamed the block for stopping the kernel."""
    loose = {"folder": str(tmp_path), "link": ".build/pictures"}
    with pytest.raises(BlockError) as refused:
        kernel_bridge.execute(Shows(data), "display(...)", file=file,
                              write_to=file and str(tmp_path / file), loose_pictures=loose)
    assert refused.value.kind == "output"
    assert str(refused.value).startswith(said), str(refused.value)
    assert list(tmp_path.iterdir()) == []
