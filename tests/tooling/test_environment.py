"""The kernel keeps its settings and caches under the project's .build/,
whatever HOME is: an unwritable home puts no warning into a drawer and
leaves nothing in the temporary folder, and the user's own settings do
not change what the notes record."""

import os
import subprocess
import sys

import pytest

from conftest import EMACS, ROOT, ctrl_c_as_in_a_terminal
from tiny_notes import HEADER, block, write_readme

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
    ("print('done')", "done", ""),
]


def build(folder, home, temporary):
    return subprocess.run(
        [EMACS, "-Q", "--batch", "-l", "tools/build.el", "-f", "gradients-build-run",
         "README.org"], cwd=folder, capture_output=True, text=True, timeout=180,
        env=dict(os.environ, HOME=str(home), TMPDIR=str(temporary)),
        preexec_fn=ctrl_c_as_in_a_terminal)


def test_an_unwritable_home_changes_nothing_and_leaves_nothing(tiny, tmp_path_factory):
    """Built under one unwritable home, then again under the other: the
    second build, which must rewrite the notes byte for byte, checks the
    second home as the first build's checks check the first, and a
    difference between two builds, whatever its cause, shows."""
    first_home, second_home = (unwritable(tmp_path_factory.mktemp("home"))
                               for unwritable in UNWRITABLE_HOMES.values())
    temporary = tmp_path_factory.mktemp("tmp")
    write_readme(tiny, HEADER + "".join(block(*each) for each in BLOCKS))
    first = build(tiny, first_home, temporary)
    assert first.returncode == 0, first.stderr
    once = (tiny / "README.org").read_text()
    assert "#+RESULTS: imports" not in once, once
    assert ":results:\n: done\n:end:" in once
    second = build(tiny, second_home, temporary)
    assert second.returncode == 0, second.stderr
    assert "unchanged README.org" in second.stderr
    assert (tiny / "README.org").read_text() == once
    assert sorted(p.name for p in temporary.iterdir()) == []


# What a caller's environment may hold that must not reach the notes: the
# user's own Matplotlib and IPython settings in HOME, and the Python, time
# and locale settings that would change what a block prints.  One kernel,
# started with all of them at once, serves the tests of both kinds.
CALLERS_SETTINGS = {"PYTHONOPTIMIZE": "2", "PYTHONHASHSEED": "random", "TZ": "Asia/Tokyo",
                    "LANG": "C", "LC_ALL": "C", "COLUMNS": "20"}


@pytest.fixture(scope="module")
def users_home_and_kernel(tmp_path_factory):
    """A HOME holding the user's own settings, and a kernel started by a
    caller with that HOME and CALLERS_SETTINGS."""
    home = tmp_path_factory.mktemp("settings") / "home"
    (home / ".config" / "matplotlib").mkdir(parents=True)
    (home / ".config" / "matplotlib" / "matplotlibrc").write_text("lines.linewidth: 7\n")
    startup = home / ".ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-mine.py").write_text("from_my_startup = True\n")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("HOME", str(home))
        monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
        monkeypatch.delenv("MPLCONFIGDIR", raising=False)
        monkeypatch.delenv("IPYTHONDIR", raising=False)
        for name, setting in CALLERS_SETTINGS.items():
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
    assert sorted(os.listdir(home)) == [".config", ".ipython"]
    build = os.path.relpath(ROOT / ".build", os.getcwd())
    assert folders.split("\n") == [f": {build}/kernel/{name}"
                                   for name in ("matplotlib", "ipython", "cache")]


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
