"""How make is invoked: its options, the folder it is run from, variables
of the environment that share a name with the Makefile's.  Each is either
honoured as a user expects, or refused in one line before anything is
written.  The notes here hold a `python' block alone: no kernel starts."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import (a_users_make_environment, copy_project, make, the_build_uv,
                      with_the_checkouts_build)
from tiny_notes import HEADER, block, snapshot, write_readme

pytestmark = pytest.mark.xdist_group(__name__)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A copy of the project, built: each test leaves it as it found it."""
    folder = copy_project(tmp_path_factory.mktemp("options"))
    write_readme(folder, HEADER + block("print('tangled')", "plain", ":tangle gradients.py")
                 .replace("jupyter-python", "python"))
    run = make("tangle", cwd=folder)
    assert run.returncode == 0, run.stderr
    return folder


def everything(folder):
    """The copy's files, .build/ included, with their times."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()
            and ".venv" not in p.relative_to(folder).parts}


def make_with(folder, *args, **environment):
    return subprocess.run(["make", *args], cwd=folder, capture_output=True, text=True,
                          timeout=120,
                          env={**a_users_make_environment(), **environment})


@pytest.mark.parametrize("options, environment, named", [
    (["-i"], {}, "make -i (or an i in MAKEFLAGS) would go on past a failed step"),
    (["-ki"], {}, "make -i (or an i in MAKEFLAGS) would go on past a failed step"),
    ([], {"MAKEFLAGS": "i"}, "make -i (or an i in MAKEFLAGS) would go on past a failed step"),
    ([], {"GNUMAKEFLAGS": "-e"}, "make -e (or an e in MAKEFLAGS) would let the environment"),
    (["-t"], {}, "make -t (or a t in MAKEFLAGS) would record every step as done"),
    ([], {"MAKEFLAGS": "st"}, "make -t (or a t in MAKEFLAGS) would record every step as done"),
], ids=["-i", "-ki", "MAKEFLAGS=i", "GNUMAKEFLAGS=-e", "-t", "MAKEFLAGS=st"])
def test_options_that_would_record_work_not_done_are_refused(built, options, environment,
                                                             named):
    (built / "README.org").write_text((built / "README.org").read_text() + "\nMore prose.\n")
    try:
        before = everything(built)
        run = make_with(built, *options, "tangle", **environment)
        assert run.returncode != 0
        said = run.stderr.strip().splitlines()
        assert len(said) == 1 and named in said[0], run.stderr
        assert everything(built) == before
    finally:
        write_readme(built, (built / "README.org").read_text().replace("\nMore prose.\n", ""))
        assert make("tangle", cwd=built).returncode == 0


@pytest.mark.parametrize("goal, given, environment", [
    ("clean", ["VENV={folder}"], {}),
    ("clean", [], {"MAKEFLAGS": "VENV={folder}"}),
    ("tangle", [], {"MAKEFLAGS": "-k BUILD:={folder}"}),
    ("test", ["PYTHON+=-x"], {}),
], ids=["VENV", "VENV in MAKEFLAGS", "BUILD in MAKEFLAGS", "PYTHON"])
def test_the_makefiles_own_variables_are_refused_from_outside(built, tmp_path, goal, given,
                                                            environment):
    """Only settings come from the command line, or from a make that runs
    this one: VENV=/elsewhere made `make clean` remove that folder."""
    folder = tmp_path / "not the venv"
    folder.mkdir()
    (folder / "kept").write_text("mine")
    given = [word.format(folder=folder) for word in given]
    environment = {name: value.format(folder=folder) for name, value in environment.items()}
    before = everything(built)
    run = make_with(built, goal, *given, **environment)
    assert run.returncode != 0
    said = run.stderr.strip().splitlines()
    assert len(said) == 1 and "is one of the Makefile's own variables, not a setting: the " \
        "settings are EMACS GUI_EMACS UV CHECK_WORKERS SHELL" in said[0], run.stderr
    assert (folder / "kept").read_text() == "mine"
    assert everything(built) == before


def test_a_setting_whose_value_holds_an_equals_sign_is_a_setting(built):
    """Its words with = of their own were read as variables given."""
    run = make_with(built, "help", "EMACS=env TERM=dumb emacs --eval=t", "UV=uv --cache-dir=/x")
    assert run.returncode == 0 and run.stderr == "", run.stderr


@pytest.mark.parametrize("closed", [1, 2], ids=[">&-", "2>&-"])
def test_make_test_with_its_output_closed_passes_quietly(project_copy, closed):
    """`make test >&-`: Python started with no sys.stdout, and pytest
    failed on its own report and on the build it starts first; with
    2>&-, it failed saying nothing."""
    with_the_checkouts_build(project_copy)
    run = subprocess.run(["make", "test"], cwd=project_copy, capture_output=True, text=True,
                         timeout=300, env=a_users_make_environment(),
                         preexec_fn=lambda: os.close(closed))
    assert run.returncode == 0, run.stdout + run.stderr
    assert (run.stdout if closed == 1 else run.stderr) == "", run.stdout + run.stderr


@pytest.mark.parametrize("target", ["tangle", "run", "test"])
def test_make_n_shows_each_command_as_it_would_run(built, target):
    """Not the shell that guards the command against a closed output; for
    make test, the build pytest starts, which make -n did not show."""
    os.utime(built / "README.org")
    try:
        run = make_with(built, "-n", target)
        assert run.returncode == 0, run.stderr
        lines = run.stdout.splitlines()
        if target == "test":
            assert lines[-1].startswith(".venv/bin/python -m pytest"), run.stdout
            lines.pop()
        assert lines[-1].startswith("sh tools/one-build-at-a-time") and lines[-1].endswith(
            f"gradients-build-{'produce' if target == 'test' else target} README.org"), \
            run.stdout
    finally:
        assert make_with(built, "tangle").returncode == 0


def test_make_s_does_not_say_the_command_it_runs(project_copy):
    """Found by probing: the build's command line, which the Makefile says
    itself, was said under -s too."""
    write_readme(project_copy, HEADER + "Prose only: no kernel.\n")
    run = make("-s", "tangle", cwd=project_copy)
    assert run.returncode == 0, run.stderr
    assert "one-build-at-a-time" not in run.stdout + run.stderr, run.stdout


@pytest.mark.parametrize("target", ["tangle", "run"])
def test_a_build_with_its_error_output_closed_passes_quietly(project_copy, target):
    """`make tangle 2>&-`: Emacs, which could not write what it said,
    exited 1 having built everything, and make failed."""
    write_readme(project_copy, HEADER + block("print('tangled')", "plain", ":tangle gradients.py")
                 .replace("jupyter-python", "python"))
    run = subprocess.run(["make", target], cwd=project_copy, capture_output=True, text=True,
                         timeout=300, env=a_users_make_environment(),
                         preexec_fn=lambda: os.close(2))
    assert run.returncode == 0, run.stdout
    assert make("-q", "tangle", cwd=project_copy).returncode == 0, "the build was not recorded"


@pytest.mark.parametrize("pipeline", ["make test 2>error | head -1 >/dev/null",
                                      "make test 2>&1 | head -1 >/dev/null"],
                         ids=["output", "both"])
def test_make_test_whose_reader_stops_reading_still_builds(project_copy, pipeline):
    """`make test | head -1`: the make that pytest starts to bring the
    build up to date died of SIGPIPE at its first line, before any build,
    and pytest stopped saying the build had failed."""
    with_the_checkouts_build(project_copy)
    (project_copy / "README.org").touch()
    subprocess.run(["sh", "-c", pipeline], cwd=project_copy, timeout=300,
                   env=a_users_make_environment())
    if (project_copy / "error").exists():
        assert "the build of README.org failed" not in (project_copy / "error").read_text()
    assert make("-q", ".build/produced/blocks.json", cwd=project_copy).returncode == 0, \
        "the build did not run to its end"
    assert not list((project_copy / ".build").glob("run-*"))


@pytest.mark.parametrize("files, goal", [
    (["pyproject.toml"], "tangle"), (["tools/one-build-at-a-time"], "tangle"),
    (["Makefile", "requirements.lock", "tools/build.el"], "tangle"),
    # make clean runs a script of tools/ too.
    (["tools/one-build-at-a-time"], "clean"),
    # Read by make's first shell, before the check.
    (["tools/programs-answer"], "test")],
    ids=["pyproject", "a script", "three", "clean", "read by make"])
def test_a_checkout_written_with_cr_lf_is_named_so(built, files, goal):
    """As git writes it under core.autocrlf=true: the lock read as older than
    pyproject.toml, and a script failed to start, each saying something
    else."""
    kept = {name: ((built / name).read_bytes(), (built / name).stat()) for name in files}
    try:
        for name, (text, _) in kept.items():
            (built / name).write_bytes(text.replace(b"\n", b"\r\n"))
        before = everything(built)
        run = make_with(built, goal)
        assert run.returncode != 0
        said = run.stderr.strip().splitlines()
        assert len(said) == 1, run.stderr
        assert "their lines in CR LF, as git writes them under core.autocrlf=true" in said[0]
        assert said[0].startswith(f"Makefile:") and sorted(files)[0] in said[0], said[0]
        assert everything(built) == before
    finally:
        for name, (text, times) in kept.items():
            (built / name).write_bytes(text)
            os.utime(built / name, ns=(times.st_atime_ns, times.st_mtime_ns))
    assert make("-q", "tangle", cwd=built).returncode == 0


@pytest.mark.parametrize("goal, makefiles", [("tangle", False), ("clean", False), (None, False),
                                             ("tangle", True)],
                         ids=["tangle", "clean", "no goal", "MAKEFILES"])
def test_make_f_from_another_folder_is_sent_to_the_notes(built, tmp_path, goal, makefiles):
    """Every path of the Makefile is relative to the notes' folder: from
    another one, `make -f` made a .build/ there, and `clean` would remove
    the .venv and .build/ it found there.  The makefiles MAKEFILES names,
    read first, are not taken for the folder."""
    (tmp_path / ".build").mkdir()
    environment = {}
    if makefiles:
        (tmp_path / ".build" / "extra.mk").write_text("")
        environment["MAKEFILES"] = str(tmp_path / ".build" / "extra.mk")
    before = everything(built)
    run = make_with(tmp_path, "-f", str(built / "Makefile"), *([goal] if goal else []),
                    **environment)
    assert run.returncode != 0
    assert run.stderr.strip().endswith(
        f"this Makefile builds the notes of its own folder, and {tmp_path} is not one: "
        f"run `make -C '{built}' {goal or 'help'}`, or make there.  Stop."), run.stderr
    assert [p.name for p in tmp_path.iterdir()] == [".build"]
    assert [p.name for p in (tmp_path / ".build").iterdir()] == (["extra.mk"] if makefiles else [])
    assert everything(built) == before


def test_make_f_with_a_goal_of_its_own_writes_nothing_in_another_folder(built, tmp_path):
    """A goal the Makefile does not know (a typo) wrote Emacs's note into
    a .build/ of the folder make ran in, which make test then took for an
    output of the notes."""
    before = everything(built)
    run = make_with(tmp_path, "-f", str(built / "Makefile"), "tangel")
    assert run.returncode != 0 and "No rule to make target 'tangel'" in run.stderr, run.stderr
    assert list(tmp_path.iterdir()) == []
    assert everything(built) == before


def test_make_n_writes_no_cache_folder_of_uv(built, tmp_path):
    """With the venv to make again, make -n prints uv's commands: the look
    at whether uv's cache folder can be made must not make it."""
    home = tmp_path / "home"
    lock = built / "requirements.lock"
    times = lock.stat()
    lock.touch()
    try:
        run = make_with(built, "-n", "venv", HOME=str(home))
        assert run.returncode == 0, run.stderr
        assert "pip sync" in run.stdout
        assert not home.exists()
    finally:
        os.utime(lock, ns=(times.st_atime_ns, times.st_mtime_ns))
    assert make("-q", "tangle", cwd=built).returncode == 0


PYTHONS = {
    "too old": ("#!/bin/sh\ncase \"$*\" in *platform*) echo 3.10.13;; *) exit 1;; esac\n",
                "python3 is Python 3.10.13: the lock needs 3.11 or newer, as Debian 12 has; "
                "put one first on the PATH"),
    # A python3 that does not run was "Python : the lock needs 3.11".
    "broken": ("#!/bin/sh\necho 'cannot execute: required file not found' >&2\nexit 127\n",
               "python3 ({}) does not run: put a working Python 3.11 or newer first on the "
               "PATH"),
}


@pytest.mark.parametrize("python", PYTHONS)
@pytest.mark.parametrize("uv_given", [True, False], ids=["uv", "uv to install"])
def test_a_python_too_old_for_the_lock_is_named(built, tmp_path, uv_given, python):
    """uv would say so in a page of its resolver's reasoning, and pip, as
    it installed uv, as a version of uv it cannot find."""
    bin_folder = tmp_path / "bin"
    bin_folder.mkdir()
    script, said = PYTHONS[python]
    said = said.format(bin_folder / "python3")
    (bin_folder / "python3").write_text(script)
    (bin_folder / "python3").chmod(0o755)
    lock = built / "requirements.lock"
    times = lock.stat()
    lock.touch()
    try:
        before = everything(built)
        run = make_with(built, "venv", *([f"UV={the_build_uv()}"] if uv_given else []),
                        PATH=f"{bin_folder}:{os.environ['PATH']}")
        assert run.returncode != 0
        assert said in run.stderr, run.stderr
        assert "Error" not in run.stderr.split(said)[0], run.stderr
        assert everything(built) == before
    finally:
        os.utime(lock, ns=(times.st_atime_ns, times.st_mtime_ns))
    assert make("-q", "tangle", cwd=built).returncode == 0


def test_a_shell_that_cannot_run_never_passes_for_no_change(built):
    """The digests catch README.org put back with its old time, through a
    shell: one that cannot run says nothing, which is no "the same"."""
    readme = built / "README.org"
    text, times = readme.read_text(), readme.stat()
    readme.write_text(text.replace("print('tangled')", "print('changed')"))
    os.utime(readme, ns=(times.st_atime_ns, times.st_mtime_ns))
    try:
        assert make_with(built, "-q", "tangle", "SHELL=/bin/false").returncode != 0
        assert make("-q", "tangle", cwd=built).returncode != 0
    finally:
        write_readme(built, text)
        assert make("tangle", cwd=built).returncode == 0


def test_an_emacs_that_is_not_there_leaves_the_last_build_good(built):
    run = make_with(built, "tangle", "EMACS=/nonexistent/emacs")
    assert run.returncode != 0
    assert "EMACS=/nonexistent/emacs names no program" in run.stderr, run.stderr
    assert make("-q", "tangle", cwd=built).returncode == 0


def test_variables_of_the_environment_named_as_the_makefiles_change_nothing(built):
    """make reads the environment as variables: one the Makefile sets only
    where it applies was otherwise the caller's ("No rule to make target
    '1'")."""
    names = ["VENV_CHANGED", "EMACS_CHANGED", "EMACS_REPLACED", "OUTPUTS_CHANGED", "STALE"]
    run = make_with(built, "tangle", **{name: "1" for name in names})
    assert run.returncode == 0, run.stderr
    assert "Nothing to be done for 'tangle'" in run.stdout, run.stdout + run.stderr


def test_make_t_touches_nothing_through_the_venvs_python(built, tmp_path):
    """make -t would touch the targets it would remake, the venv's python
    among them, a link that may lead out of the project: it is refused
    before it touches anything."""
    target = tmp_path / "python-it-leads-to"
    venv = built / ".venv"
    real = venv.readlink()
    venv.unlink()
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(target)
    try:
        assert make_with(built, "-t", "tangle").returncode != 0
        assert not target.exists()
    finally:
        shutil.rmtree(venv)
        venv.symlink_to(real)
        assert make("tangle", cwd=built).returncode == 0


def test_make_kernelspec_writes_the_users_kernel_or_says_why_not(built, tmp_path):
    """Where HOME cannot be written, Jupyter suggested --user, already
    given, and left its scratch copy in the temporary folder."""
    home, temporary = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    temporary.mkdir()
    run = make_with(built, "kernelspec", HOME=str(home), TMPDIR=str(temporary))
    assert run.returncode == 0, run.stderr
    spec = json.loads((home / ".local/share/jupyter/kernels/gradients/kernel.json").read_text())
    assert Path(spec["argv"][0]).resolve() == (built / ".venv/bin/python").resolve()
    run = make_with(built, "kernelspec", HOME="/proc/self/no-such-home", TMPDIR=str(temporary))
    assert run.returncode != 0
    said = [line for line in run.stderr.splitlines() if not line.startswith("make: ***")]
    assert len(said) == 1 and said[0].startswith("cannot write ") and said[0].endswith(
        "where Jupyter keeps your kernels (HOME=/proc/self/no-such-home): make kernelspec "
        "with a HOME you can write"), run.stderr
    assert list(temporary.iterdir()) == []
