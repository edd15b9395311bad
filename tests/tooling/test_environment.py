"""The caller's environment changes nothing the notes record.  The kernel
keeps its settings and caches under the project's .build/, whatever HOME
is: an unwritable home puts no warning into a drawer and leaves nothing in
the temporary folder.  None of the caller's settings of Python, Jupyter,
IPython, Matplotlib or the locale reaches a kernel or the bridge, nor an
environment activated in the caller's shell; make starts its own Pythons
by the same rule; an Org on EMACSLOADPATH that cannot serve is refused in
one line naming the variable."""

import os
import shutil
import subprocess
import sys

import pytest

from conftest import (EMACS, ROOT, a_path_of_what_make_names, a_users_make_environment,
                      copy_project,
                      ctrl_c_as_in_a_terminal, make, with_the_checkouts_build)
from tiny_notes import HEADER, assert_failed_cleanly, block, snapshot, write_readme

sys.path.insert(0, str(ROOT / "tools"))
import kernel_bridge  # noqa: E402

# Even root cannot make a folder inside a file or under /proc: both stand
# for a home nobody may write, such as a service user's HOME=/nonexistent.
UNWRITABLE_HOMES = {
    "a file": lambda tmp_path: (tmp_path / "home-file").write_text("") or tmp_path / "home-file",
    "under /proc": lambda tmp_path: "/proc/self/no-such-home",
}

BLOCKS = [
    ("import numpy as np\nimport matplotlib.pyplot as plt\nfrom graphviz import Digraph\n"
     "import IPython\nIPython.paths.get_ipython_dir() and None", "imports", ""),
    ("plt.plot([1, 2, 3])\nplt.show()", "plot", ":file images/plot.png"),
    ("g = Digraph()\ng.edge('x', 'y')\ng", "graph", ":file images/graph.svg"),
    ("print('∂f/∂x = 6')", "done", ""),
]


def elsewhere(folder):
    """FOLDER filled with what a user's environment may point at: modules
    named like those the notes and the bridge import, each of which stops
    whoever imports it; a Python start-up file and a Jupyter config that
    leave a variable behind; and another environment's bin/ whose python3
    and dot stop whoever runs them."""
    modules = folder / "modules"
    modules.mkdir()
    for name in ("numpy", "graphviz", "zmq", "json", "kernel_supervisor"):
        (modules / f"{name}.py").write_text(f"raise SystemExit('{name} from PYTHONPATH')\n")
    (folder / "startup.py").write_text("from_pythonstartup = True\n")
    (folder / "matplotlibrc").write_text("lines.linewidth: 7\naxes.facecolor: black\n")
    for config in ("jupyter", "jupyter/profile_default"):
        (folder / config).mkdir()
        (folder / config / "ipython_kernel_config.py").write_text(
            "c.InteractiveShellApp.exec_lines = ['from_jupyter_config = True']\n")
    (folder / "other-env" / "bin").mkdir(parents=True)
    for name in ("python3", "dot"):
        (folder / "other-env" / "bin" / name).write_text("#!/bin/sh\necho other-env >&2; exit 3\n")
        (folder / "other-env" / "bin" / name).chmod(0o755)
    return folder


def settings_of_python_and_locale(folder):
    """What breaks a Python that honours it: another interpreter's home,
    modules in the way, and a locale that is ASCII for Python."""
    return {"PYTHONPATH": str(folder / "modules"), "PYTHONHOME": "/nonexistent",
            "LANG": "C", "LC_ALL": "POSIX", "PYTHONUTF8": "0"}


def settings_of_libraries_and_an_activated_environment(folder):
    """What changes what a kernel prints or draws, and an environment
    activated as bin/activate and conda activate leave one."""
    other = folder / "other-env"
    return {"PYTHONWARNINGS": "error", "PYTHONSTARTUP": str(folder / "startup.py"),
            "MPLBACKEND": "TkAgg", "IPYTHONDIR": str(folder / "jupyter"),
            "JUPYTER_CONFIG_DIR": str(folder / "jupyter"),
            "JUPYTER_CONFIG_PATH": str(folder / "jupyter"), "JUPYTER_PATH": str(folder / "jupyter"),
            "IPYKERNEL_CELL_NAME": "cell.py", "MATPLOTLIBRC": str(folder / "matplotlibrc"),
            "GVBINDIR": "/nonexistent", "OMP_NUM_THREADS": "3", "VIRTUAL_ENV": str(other),
            # Fontconfig's report, which dot wrote into the SVG it drew.
            "FC_DEBUG": "1",
            "CONDA_PREFIX": str(other), "PATH": f"{other}/bin:{os.environ['PATH']}"}


def build(folder, home, temporary, settings):
    return subprocess.run(
        [EMACS, "-Q", "--batch", "-l", "tools/build.el", "-f", "gradients-build-run",
         "README.org"], cwd=folder, capture_output=True, text=True, timeout=180,
        env=dict(os.environ, HOME=str(home), TMPDIR=str(temporary), **settings),
        preexec_fn=ctrl_c_as_in_a_terminal)


def test_the_callers_environment_changes_nothing_and_leaves_nothing(tiny, tmp_path_factory):
    """Built under one unwritable home and one set of hostile settings,
    then again under the other home and the other set: the second build,
    which must rewrite the notes and the picture byte for byte, checks the
    second environment as the first build's checks check the first, and a
    difference between two builds, whatever its cause, shows."""
    first_home, second_home = (unwritable(tmp_path_factory.mktemp("home"))
                               for unwritable in UNWRITABLE_HOMES.values())
    temporary = tmp_path_factory.mktemp("tmp")
    folder = elsewhere(tmp_path_factory.mktemp("elsewhere"))
    write_readme(tiny, HEADER + "".join(block(*each) for each in BLOCKS))
    first = build(tiny, first_home, temporary, settings_of_python_and_locale(folder))
    assert first.returncode == 0, first.stderr
    once = (tiny / "README.org").read_text(encoding="utf-8")
    graph = (tiny / "images" / "graph.svg").read_bytes()
    plot = (tiny / "images" / "plot.png").read_bytes()
    assert "#+RESULTS: imports" not in once, once
    assert ":results:\n: ∂f/∂x = 6\n:end:" in once
    # Else the second build would reuse the first's run for its pictures.
    shutil.rmtree(tiny / ".build" / "produced")
    second = build(tiny, second_home, temporary,
                   settings_of_libraries_and_an_activated_environment(folder))
    assert second.returncode == 0, second.stderr
    assert "unchanged README.org" in second.stderr
    assert "unchanged images/graph.svg" in second.stderr
    assert (tiny / "README.org").read_text(encoding="utf-8") == once
    assert (tiny / "images" / "graph.svg").read_bytes() == graph
    assert (tiny / "images" / "plot.png").read_bytes() == plot
    assert sorted(p.name for p in temporary.iterdir()) == []


def test_make_test_imports_gradients_py_as_a_kernel_runs_its_blocks(project_copy, tmp_path):
    """make test imports gradients.py in its own process, under the
    settings a kernel would have, not the caller's: a MATPLOTLIBRC that
    warns of a second figure made it fail, where the build had passed."""
    with_the_checkouts_build(project_copy)
    settings = tmp_path / "settings"
    settings.mkdir()
    (settings / "matplotlibrc").write_text("figure.max_open_warning: 1\n")
    run = make("test", cwd=project_copy,
               env=dict(os.environ, MATPLOTLIBRC=str(settings), FC_DEBUG="1"))
    assert run.returncode == 0, run.stdout[-3000:]


# What a caller's environment may hold that must not reach the notes: the
# user's own Matplotlib and IPython settings in HOME, and the Python, time
# and locale settings that would change what a block prints.  One kernel,
# started with all of them at once, serves the tests of both kinds.
CALLERS_SETTINGS = {"PYTHONOPTIMIZE": "2", "PYTHONHASHSEED": "random", "TZ": "Asia/Tokyo",
                    "LANG": "C", "LC_ALL": "C", "COLUMNS": "20"}


# A user's own font settings: every font asked for is DejaVu Sans Mono.
MONOSPACE_FIRST = """<?xml version="1.0"?>
<!DOCTYPE fontconfig SYSTEM "fonts.dtd">
<fontconfig><match target="pattern"><edit name="family" mode="prepend" binding="strong">
<string>DejaVu Sans Mono</string></edit></match></fontconfig>
"""


def dot_width(environment=None):
    """Python that prints the width of a graph dot draws, which follows
    the font fontconfig finds for its label."""
    return ("import re, subprocess\n"
            "svg = subprocess.run(['dot', '-Tsvg'], input='digraph { a [label=\"Wide label\"] }',\n"
            f"                     capture_output=True, text=True, env={environment!r}).stdout\n"
            "print(re.search('<svg width=\"([^\"]+)\"', svg).group(1))")


@pytest.fixture(scope="module")
def users_home_and_kernel(tmp_path_factory):
    """A HOME holding the user's own settings, and a kernel started by a
    caller with that HOME, CALLERS_SETTINGS and the settings of both kinds
    of `elsewhere` at once."""
    folder = elsewhere(tmp_path_factory.mktemp("elsewhere"))
    home = tmp_path_factory.mktemp("settings") / "home"
    (home / ".config" / "matplotlib").mkdir(parents=True)
    (home / ".config" / "matplotlib" / "matplotlibrc").write_text("lines.linewidth: 7\n")
    startup = home / ".ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-mine.py").write_text("from_my_startup = True\n")
    # Read by fontconfig from HOME, whatever XDG_CONFIG_HOME says.
    (home / ".fonts.conf").write_text(MONOSPACE_FIRST)
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("HOME", str(home))
        monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
        monkeypatch.delenv("MPLCONFIGDIR", raising=False)
        monkeypatch.delenv("IPYTHONDIR", raising=False)
        for name, setting in {**settings_of_python_and_locale(folder),
                              **settings_of_libraries_and_an_activated_environment(folder),
                              **CALLERS_SETTINGS}.items():
            monkeypatch.setenv(name, setting)
        kernel = kernel_bridge.Kernel()
    try:
        yield home, kernel
    finally:
        kernel.kill()


@pytest.mark.xdist_group(__name__)
def test_the_users_own_settings_do_not_reach_the_kernel(users_home_and_kernel):
    home, kernel = users_home_and_kernel
    org, _ = kernel_bridge.execute(
        kernel, "import matplotlib\n"
        "print(matplotlib.rcParams['lines.linewidth'], 'from_my_startup' in globals())")
    folders, _ = kernel_bridge.execute(
        kernel, "import os\nfor v in ('MPLCONFIGDIR', 'IPYTHONDIR', 'XDG_CACHE_HOME'):\n"
        "    print(os.path.relpath(os.environ[v], os.getcwd()))")
    assert org == ": 1.5 False"
    assert sorted(os.listdir(home)) == [".config", ".fonts.conf", ".ipython"]
    build = os.path.relpath(ROOT / ".build", os.getcwd())
    assert folders.split("\n") == [f": {build}/kernel/{name}"
                                   for name in ("matplotlib", "ipython", "cache")]


@pytest.mark.xdist_group(__name__)
def test_the_users_own_fonts_do_not_reach_what_dot_draws(users_home_and_kernel, tmp_path):
    """Fontconfig reads ~/.fonts.conf, ~/.fonts.conf.d and ~/.fonts from
    HOME, whatever XDG_CONFIG_HOME says: a user's font settings changed
    every graph dot drew, and the committed SVGs with them."""
    _, kernel = users_home_and_kernel
    drawn, _ = kernel_bridge.execute(kernel, dot_width())
    # Drawn with a home of no settings, by the same fontconfig.
    empty = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LC_ALL": "C.UTF-8",
             "XDG_CONFIG_HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    clean, _ = kernel_bridge.execute(kernel, dot_width(empty))
    assert drawn == clean


@pytest.mark.xdist_group(__name__)
def test_the_callers_python_time_and_locale_settings_do_not_reach_the_kernel(
        users_home_and_kernel):
    """Each would change what a block prints: the same code must record the
    same result whoever builds it."""
    _, kernel = users_home_and_kernel
    code = ("import sys, os, time, locale\n"
            "print(sys.flags.optimize, os.environ['PYTHONHASHSEED'], time.tzname[0],\n"
            "      locale.getpreferredencoding(), 'COLUMNS' in os.environ)")
    org, _ = kernel_bridge.execute(kernel, code)
    assert org == ": 0 0 UTC UTF-8 False"


@pytest.mark.xdist_group(__name__)
def test_the_callers_python_jupyter_and_activated_environment_do_not_reach_the_kernel(
        users_home_and_kernel):
    """Its modules are the venv's, no start-up code of the caller ran, a
    warning stays a warning, pictures are inline, and the python3 and dot
    on its PATH are the machine's, not those of the activated one."""
    _, kernel = users_home_and_kernel
    code = ("import numpy, os, shutil, sys, warnings, matplotlib\n"
            "print(numpy.__file__.startswith(sys.prefix), 'from_pythonstartup' in globals(),\n"
            "      'from_jupyter_config' in globals(), sys.warnoptions, matplotlib.get_backend(),\n"
            "      sorted(name for name in os.environ\n"
            "             if name.startswith(('VIRTUAL_ENV', 'CONDA', 'IPYKERNEL', 'JUPYTER_CONFIG_P'))),\n"
            "      [os.path.basename(os.path.dirname(os.path.dirname(shutil.which(name))))\n"
            "       for name in ('python3', 'dot')].count('other-env'))")
    org, _ = kernel_bridge.execute(kernel, code)
    assert org == ": True False False [] module://matplotlib_inline.backend_inline [] 0"


def test_make_starts_its_pythons_without_the_callers_settings(tmp_path):
    """Every recipe, pytest's, pip's and the build's alike, runs without
    the caller's PYTHON* and PYTEST* settings but UTF-8 and the kernel's
    hash seed, and as after `deactivate`."""
    (tmp_path / "elsewhere").mkdir()
    folder = elsewhere(tmp_path / "elsewhere")
    env = a_users_make_environment(
        {**os.environ, **settings_of_python_and_locale(folder),
         **settings_of_libraries_and_an_activated_environment(folder),
         "PYTHONDONTWRITEBYTECODE": "1", "CONDA_SHLVL": "1",
         "PYTEST_ADDOPTS": "--collect-only", "PYTEST_PLUGINS": "no_such_plugin",
         "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})
    shown = subprocess.run(
        ["make", "-s", "-f", str(ROOT / "Makefile"), "--eval",
         "environment: ; @env; echo python3=$$(command -v python3) dot=$$(command -v dot)",
         "environment"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert [line for line in lines
            if line.startswith(("PYTHON", "VIRTUAL_ENV", "CONDA", "PYTEST_ADDOPTS",
                                "PYTEST_PLUGINS", "PYTEST_DISABLE"))] == ["PYTHONHASHSEED=0",
                                                                          "PYTHONUTF8=1"]
    assert "other-env" not in next(line for line in lines if line.startswith("PATH="))
    assert "other-env" not in lines[-1], lines[-1]


def test_a_reference_the_notes_cannot_resolve_is_not_looked_up_in_the_users_files(
        tiny, tmp_path_factory):
    """Org looks a reference it cannot resolve up among the IDs of the
    user's other Org files (~/.emacs.d/.org-id-locations), which are no
    input of the build: it is refused, naming its block."""
    home = tmp_path_factory.mktemp("home")
    (home / ".emacs.d").mkdir()
    (home / "other.org").write_text(
        "* Elsewhere\n:PROPERTIES:\n:ID: no-such-block\n:END:\n"
        "#+begin_src emacs-lisp\n\"from the user's other file\"\n#+end_src\n")
    (home / ".emacs.d" / ".org-id-locations").write_text(
        f'(("{home / "other.org"}" "no-such-block"))\n')
    text = HEADER + block("print(x)", "uses-id", ":var x=no-such-block")
    before = write_readme(tiny, text)
    run = make("tangle", cwd=tiny, env={**os.environ, "HOME": str(home)}, timeout=120)
    assert_failed_cleanly(run, tiny, before,
                          f"README.org:{text.split(chr(10)).index('#+name: uses-id') + 2}: "
                          "block `uses-id': Reference `no-such-block' not found")
    assert "other file" not in run.stderr + run.stdout


@pytest.mark.parametrize("locale", ["tr_TR.UTF-8", "tr_TR.ISO-8859-9", "tr_TR"])
def test_a_locale_whose_capital_i_is_dotted_builds_as_any_other(tiny, locale):
    """Emacs takes its case table from the locale's name, installed or not:
    a Turkish one upcases "i" to a dotted capital, and Org, comparing
    #+begin_src in capitals, found no block that ends.  A `python' block
    (no kernel) is enough to show it."""
    write_readme(tiny, HEADER + block("print('tangled')", "plain", ":tangle gradients.py")
                 .replace("jupyter-python", "python"))
    run = make("tangle", cwd=tiny, env={**os.environ, "LC_ALL": locale, "LANG": locale},
               timeout=120)
    assert run.returncode == 0, run.stderr
    assert "print('tangled')" in (tiny / "gradients.py").read_text()


def test_a_checkout_named_in_utf_8_builds_under_a_latin_1_locale(tmp_path_factory):
    """Emacs decoded the checkout's path by the locale's coding before any
    Lisp ran: under ISO-8859-1, /…/café was another folder by the time the
    build read its own files as UTF-8, and Emacs gave a backtrace."""
    locales = tmp_path_factory.mktemp("locales")
    made = subprocess.run(["localedef", "-i", "de_DE", "-f", "ISO-8859-1",
                           locales / "de_DE.ISO-8859-1"], capture_output=True, text=True)
    assert made.returncode in (0, 1) and (locales / "de_DE.ISO-8859-1").exists(), made.stderr
    folder = tmp_path_factory.mktemp("notes") / "café"
    folder.mkdir()
    copy_project(folder)
    write_readme(folder, HEADER + block("print('tangled')", "plain", ":tangle gradients.py")
                 .replace("jupyter-python", "python"))
    german = {**os.environ, "LOCPATH": str(locales), "LC_ALL": "de_DE.ISO-8859-1"}
    run = make("tangle", cwd=folder, timeout=120, env=german)
    assert run.returncode == 0, run.stderr
    assert "print('tangled')" in (folder / "gradients.py").read_text()
    # Found by probing: make's own `stat` wrote a second's fraction after a
    # comma there, and found Emacs replaced at every run.
    assert make("-q", "tangle", cwd=folder, env=german).returncode == 0


@pytest.mark.parametrize("asked", ["make -e", "MAKEFLAGS=e", "make -ke"])
def test_make_e_is_refused_before_the_environment_moves_anything(tiny, tmp_path_factory, asked):
    """With -e the environment's BUILD, VENV or PYTHON would replace the
    Makefile's: a CI system's BUILD=... would put the build's files there.
    make says so in one line, and neither folder is touched."""
    elsewhere_folder = tmp_path_factory.mktemp("elsewhere")
    before = write_readme(tiny, HEADER + block("x = 1", "one"))
    env = {**os.environ, "BUILD": str(elsewhere_folder / "build"),
           "VENV": str(elsewhere_folder / "venv")}
    options = {"make -e": ["-e"], "make -ke": ["-ke"], "MAKEFLAGS=e": []}[asked]
    if asked == "MAKEFLAGS=e":
        env["MAKEFLAGS"] = "e"
    run = subprocess.run(["make", *options, "tangle"], cwd=tiny, env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    said = run.stderr.strip().splitlines()
    assert len(said) == 1 and "make -e (or an e in MAKEFLAGS) would let the environment replace" in said[0], run.stderr
    assert list(elsewhere_folder.iterdir()) == []
    assert snapshot(tiny) == before
    assert not (tiny / ".build" / "outputs").exists()


def test_a_picture_the_bridge_writes_gets_the_modes_the_build_would_give_it(tmp_path):
    """C-c C-c draws a :file picture (and `make notebook` writes its
    notebook) in place, by the rule of the build's install: a replaced
    file keeps its permissions, a new one gets the umask's, whatever the
    umask of the Emacs that started the bridge."""
    before = {"shared.png": 0o664, "private.png": 0o600, "public.svg": 0o644}
    for name, modes in before.items():
        (tmp_path / name).write_bytes(b"old")
        (tmp_path / name).chmod(modes)
    umask = os.umask(0o077)
    try:
        for name in [*before, "new-under-077.png"]:
            kernel_bridge.write_atomically(str(tmp_path / name), b"new")
        os.umask(0o002)
        kernel_bridge.write_atomically(str(tmp_path / "new-under-002.png"), b"new")
    finally:
        os.umask(umask)
    assert {path.name: f"{path.stat().st_mode & 0o777:o}" for path in tmp_path.iterdir()} == {
        **{name: f"{modes:o}" for name, modes in before.items()},
        "new-under-077.png": "600", "new-under-002.png": "664"}
    assert {path.read_bytes() for path in tmp_path.iterdir()} == {b"new"}


def test_a_checkout_the_bridge_cannot_write_still_runs_its_blocks(tmp_path, monkeypatch):
    """A read-only checkout, or another user's: C-c C-c there ended the
    bridge on its first block with an OSError, as it made the kernel's
    caches under .build/.  They go to a folder of the bridge's own in the
    temporary folder instead, gone with the kernel."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    # Even root cannot make a folder under /proc.
    monkeypatch.setattr(kernel_bridge, "BUILD_FOLDER", "/proc/no-such-checkout/.build")
    monkeypatch.setattr(kernel_bridge.tempfile, "tempdir", str(temporary))
    kernel = kernel_bridge.Kernel()
    try:
        org, _ = kernel_bridge.execute(
            kernel, "import os, matplotlib\n"
            "print(os.path.dirname(os.environ['MPLCONFIGDIR']) == os.path.dirname(\n"
            "      os.environ['IPYTHONDIR']) and os.environ['MPLCONFIGDIR'].startswith(\n"
            f"      {str(temporary)!r}))")
        assert org == ": True"
    finally:
        kernel.kill()
    assert list(temporary.iterdir()) == []

# Orgs on EMACSLOADPATH that cannot serve, each as a folder's files: one
# that does not load, part of an Org in front of Emacs's own, and an Org
# older than any the build is tested with.
UNUSABLE_ORGS = {
    "does not load": {"org.el": "(error \"Symbol's function definition is void: org-x\")"},
    "part of one": {"ob-tangle.el": "(require 'ob-core)\n(provide 'ob-tangle)"},
    "too old": {"org.el": "(defun org-release () \"9.3\")\n(provide 'org)",
                "ob-tangle.el": "(provide 'ob-tangle)"},
}


def test_an_org_on_emacsloadpath_that_cannot_serve_is_refused_in_one_line(
        tiny, tmp_path_factory):
    before = write_readme(tiny, HEADER + "Some prose.\n")
    for case, files in UNUSABLE_ORGS.items():
        folder = tmp_path_factory.mktemp(case.replace(" ", "-"))
        for name, text in files.items():
            (folder / name).write_text(text)
        run = subprocess.run(
            [EMACS, "-Q", "--batch", "-l", "tools/build.el", "-f", "gradients-build-tangle",
             "README.org"], cwd=tiny, capture_output=True, text=True, timeout=60,
            env=dict(os.environ, EMACSLOADPATH=f"{folder}:"))
        said = [line for line in run.stderr.splitlines() if f"EMACSLOADPATH={folder}:" in line]
        assert len(said) == 1, (case, run.stderr)
        assert_failed_cleanly(run, tiny, before, said[0])


# Found by probing: other libraries of Emacs's own, shadowed on
# EMACSLOADPATH by files that fail, gave a page of backtrace; so did a
# signal that is no error.  Each as (file, its text, EMACSLOADPATH's end).
UNUSABLE_LIBRARIES = {
    "json that fails": ("json.el", '(error "not the json of Emacs")', ":"),
    "subr-x without": ("subr-x.el", "(defun string-remove-suffix ())", ":"),
    "cl-lib that fails": ("cl-lib.el", '(error "not the cl-lib of Emacs")', ":"),
    "json that quits": ("json.el", "(signal 'quit nil)", ":"),
    "no folder of Emacs's": ("unused.el", "", ""),
}


@pytest.mark.parametrize("case", UNUSABLE_LIBRARIES)
def test_a_library_on_emacsloadpath_that_fails_is_said_in_one_line(tiny, tmp_path_factory, case):
    before = write_readme(tiny, HEADER + "Some prose.\n")
    folder = tmp_path_factory.mktemp("libraries")
    name, text, end = UNUSABLE_LIBRARIES[case]
    (folder / name).write_text(text)
    run = make("tangle", cwd=tiny, env=dict(os.environ, EMACSLOADPATH=f"{folder}{end}"))
    said = [line for line in run.stderr.splitlines()
            if line.startswith("the Lisp of the build did not load: ")]
    assert len(said) == 1 and said[0].endswith(
        f" (EMACSLOADPATH={folder}: puts its folders before those of Emacs)" if end else
        f" (EMACSLOADPATH={folder} leaves the folders of Emacs out: end it with : to keep "
        "them after its own)"), run.stderr
    assert "Debugger entered" not in run.stderr
    assert_failed_cleanly(run, tiny, before, said[0])


# Found by probing: each ends the build's Emacs with 0 having built
# nothing, and make took it for done.
ENDS_THE_BUILD_EARLY = {
    "a library that exits": lambda folder: (
        {"EMACSLOADPATH": f"{folder}:"}, (), ("org.el", "(kill-emacs 0)")),
    "an Emacs that answers only make's question": lambda folder: (
        {}, (f"EMACS={folder}/emacs",),
        ("emacs", f"#!/bin/sh\ncase \"$*\" in *gnu-emacs*) exec {EMACS} \"$@\";; esac\nexit 0\n")),
}


@pytest.mark.parametrize("case", ENDS_THE_BUILD_EARLY)
@pytest.mark.parametrize("goal", ["tangle", "run"])
def test_a_build_that_ends_with_0_having_done_nothing_fails(tiny, tmp_path_factory, case, goal):
    before = write_readme(tiny, HEADER + block("x = 1\nx", "one"))
    folder = tmp_path_factory.mktemp("early")
    env, settings, (name, text) = ENDS_THE_BUILD_EARLY[case](folder)
    (folder / name).write_text(text)
    (folder / name).chmod(0o755)
    run = make(goal, *settings, cwd=tiny, env={**os.environ, **env})
    assert run.returncode != 0
    assert run.stderr.splitlines()[-2].startswith(
        "the build of README.org ended as if it had succeeded without doing its work: "), \
        run.stderr
    # Found by probing: the build blamed Ctrl-C or a signal first.
    assert "Ctrl-C" not in run.stderr, run.stderr
    assert snapshot(tiny) == before
    assert not list((tiny / ".build").glob("finished.*"))


def an_emacs_around_the_build(folder, before=":", after=":"):
    """An `emacs` in FOLDER that runs the real one, and for the build's
    Emacs (not make's questions to it) runs the shell command BEFORE ahead
    of it and AFTER once it ends, ending with its status."""
    emacs = folder / "emacs"
    emacs.write_text(
        "#!/bin/sh\ncase \"$*\" in *gradients-build-*) build=yes;; esac\n"
        f"[ -z \"$build\" ] || {before}\n{EMACS} \"$@\"\nstatus=$?\n"
        f"[ -z \"$build\" ] || {after}\nexit $status\n")
    emacs.chmod(0o755)
    return emacs


@pytest.mark.parametrize("goal", ["tangle", "run"])
def test_a_build_whose_scratch_folder_is_cleared_and_made_again_as_it_ends_passes(
        tiny, tmp_path_factory, goal):
    """Found by the suite, once in a few runs: a make clean that waited for
    the build removed .build/ as the build ended, and a make started next
    made it again before the first make read the note of its build's end,
    and took the build for one that ended early.  Here an Emacs that does
    all the build's work, then clears and remakes the scratch folder."""
    write_readme(tiny, HEADER + block("x = 1\nx", "one"))
    emacs = an_emacs_around_the_build(tmp_path_factory.mktemp("clearing"),
                                      after="rm -rf .build && mkdir .build")
    run = make(goal, f"EMACS={emacs}", cwd=tiny)
    assert run.returncode == 0, run.stderr
    assert (tiny / "gradients.py").read_text().endswith("x = 1\nx\n"), (tiny / "gradients.py").read_text()


def test_a_venv_removed_while_the_build_waited_is_said_so(tiny, tmp_path_factory):
    """Found by probing: a make clean that took the lock first removed the
    venv a waiting build's make had found, and the build said to run `make
    venv` first, where running make again is all it takes.  Here an Emacs
    that removes the venv as the build starts."""
    before = write_readme(tiny, HEADER + block("x = 1\nx", "one"))
    emacs = an_emacs_around_the_build(tmp_path_factory.mktemp("removing"), before="rm -f .venv")
    run = make("tangle", f"EMACS={emacs}", cwd=tiny)
    (tiny / ".venv").symlink_to(ROOT / ".venv")
    assert_failed_cleanly(run, tiny, before,
                          "README.org: .venv/bin/python is gone, removed since make looked "
                          "(a make clean or git clean while this build waited for another?); "
                          "run make again, which makes it")


def test_a_venv_removed_while_a_block_runs_is_said_so(tiny):
    """Found by probing: git clean -fdX while a block ran blamed the block,
    which could no longer import what it needed, and nothing said the venv
    had gone.  Here the block removes it (the copy's link to the venv)."""
    text = HEADER + block("import os\nos.remove('.venv')\nimport graphviz", "removes")
    before = write_readme(tiny, text)
    try:
        run = make("tangle", cwd=tiny)
    finally:
        (tiny / ".venv").symlink_to(ROOT / ".venv")
    said = [line for line in run.stderr.splitlines() if "was removed while the block ran" in line]
    assert len(said) == 1 and said[0].endswith(
        "; .venv/bin/python was removed while the block ran (a git clean -fdX?): run make again"), \
        run.stderr
    assert "ModuleNotFoundError" in said[0], run.stderr
    assert_failed_cleanly(run, tiny, before, said[0])


def test_the_note_of_a_finished_build_left_by_a_stopped_make_goes(tiny):
    """Found by probing: a make stopped between its build and its reading
    of the note left it, and such notes piled up; one of a process id a
    later make gets again would pass that make's build unfinished."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    (tiny / ".build").mkdir(exist_ok=True)
    stale = tiny / ".build" / f"finished.{gone.pid}"
    stale.write_text("finished\n")
    write_readme(tiny, HEADER + "Some prose.\n")
    run = make("tangle", cwd=tiny)
    assert run.returncode == 0, run.stderr
    assert not list((tiny / ".build").glob("finished.*"))


def a_path_without(name, folder):
    """FOLDER made a PATH of links to every program of this PATH but NAME."""
    for place in os.environ["PATH"].split(os.pathsep):
        for program in (os.listdir(place) if os.path.isdir(place) else []):
            if program != name and not (folder / program).exists():
                (folder / program).symlink_to(os.path.join(place, program))
    return str(folder)


@pytest.mark.parametrize("goal, missing", [("tangle", "grep"), ("test", "flock"),
                                           ("run", "sha256sum"), ("venv", "cmp")])
def test_a_program_make_runs_missing_from_the_path_is_named_before_anything_runs(
        project_copy, tmp_path_factory, goal, missing):
    """A check that runs a program the PATH lacks fails as one that said
    no: a PATH without grep was said to hold a lock older than
    pyproject.toml."""
    path = a_path_without(missing, tmp_path_factory.mktemp("path"))
    before = snapshot(project_copy)
    run = subprocess.run([shutil.which("make"), goal], cwd=project_copy, capture_output=True,
                         text=True, env=a_users_make_environment({**os.environ, "PATH": path}))
    assert run.returncode == 2
    assert run.stderr.endswith(f"*** {missing} is not on the PATH ({path}), and make runs it: "
                               "put /usr/bin on the PATH, where Debian has it.  Stop.\n"), \
        run.stderr
    assert not run.stdout
    assert snapshot(project_copy) == before


def test_a_path_of_nothing_names_every_program_make_runs(project_copy):
    run = subprocess.run([shutil.which("make"), "tangle"], cwd=project_copy, capture_output=True,
                         text=True, env=a_users_make_environment({**os.environ,
                                                                  "PATH": "/nonexistent"}))
    assert run.returncode == 2
    said = run.stderr.split("*** ")[-1]
    named = said.split(" are not on the PATH (/nonexistent), and make runs them")[0].split()
    assert {"grep", "sha256sum", "flock", "cmp", "make"} <= set(named), said


def test_the_notes_build_and_are_checked_on_a_path_of_what_make_names(tiny, tmp_path_factory):
    """Every program the recipes and the build's scripts run is in the
    Makefile's list: one left off (cut) failed as a check that said no."""
    path = a_path_of_what_make_names(tmp_path_factory.mktemp("path"), "emacs", "dot", "python3")
    environment = {**os.environ, "PATH": path}
    checked = make("test", cwd=with_the_checkouts_build(copy_project(
        tmp_path_factory.mktemp("checkout"))), env=environment)
    assert checked.returncode == 0, checked.stdout[-2000:] + checked.stderr
    assert " passed" in checked.stdout
    write_readme(tiny, HEADER + "".join(block(*each) for each in BLOCKS))
    built = make("run", cwd=tiny, env=environment)
    assert built.returncode == 0, built.stderr
    assert ":results:\n: ∂f/∂x = 6\n:end:" in (tiny / "README.org").read_text(encoding="utf-8")
    assert (tiny / "images" / "plot.png").exists()


@pytest.mark.parametrize("goal, shell, said", [
    ("test", "ulimit -f 40", "the shell limits the size of the files make's programs write"),
    ("tangle", "ulimit -f 0", "the shell limits the size of the files make's programs write"),
    ("run", "umask 0777", "the umask, 0777, takes from a file's owner the reading or writing"),
    ("test", "umask 0277", "the umask, 0277, takes from a file's owner the reading or writing"),
])
def test_what_the_shell_would_have_the_build_write_wrongly_is_refused_before_it_runs(
        project_copy, goal, shell, said):
    """Under `ulimit -f`, `make test` left Python's bytecode of the bridge
    cut off in tools/__pycache__, and every later `make test` failed on it;
    under umask 0777 the pictures were written for no one to read."""
    before = snapshot(project_copy)
    run = subprocess.run(["sh", "-c", f'{shell} && exec make "$0"', goal], cwd=project_copy,
                         capture_output=True, text=True, env=a_users_make_environment())
    assert run.returncode == 2
    assert said in run.stderr, run.stderr
    assert not run.stdout
    assert snapshot(project_copy) == before
    assert not list(project_copy.rglob("__pycache__")) and not (project_copy / ".build"
                                                                / "produced").exists()


@pytest.mark.parametrize("shell", ["umask 0077", "umask 0007", "ulimit -f unlimited"])
def test_a_shell_that_keeps_the_owners_rights_and_any_file_size_may_build(project_copy, shell):
    run = subprocess.run(["sh", "-c", f"{shell} && exec make -n tangle"], cwd=project_copy,
                         capture_output=True, text=True, env=a_users_make_environment())
    assert run.returncode == 0, run.stderr
