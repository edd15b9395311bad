"""`make` keeps the venv to the lock by its files, not only by what its
packages' metadata say, and works in a checkout, and with a uv, whose path
holds a space."""

import fcntl
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import (ROOT, a_path_of_what_make_names, a_users_make_environment, copy_project,
                      make, small_project, the_build_uv)



def uv_in(folder):
    """The build's uv, reached through FOLDER/uv."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "uv").symlink_to(the_build_uv())
    return folder / "uv"


def imports_graphviz(project):
    return subprocess.run([project / ".venv" / "bin" / "python", "-c", "from graphviz import Digraph"],
                          capture_output=True).returncode == 0


def package_folder(project):
    return next(project.glob(".venv/lib/python3*/site-packages/graphviz"))


DAMAGE = {
    "its folder": lambda folder: shutil.rmtree(folder),
    "a file of its folder": lambda folder: (folder / "__init__.py").unlink(),
    "its folder's files": lambda folder: [p.unlink() for p in folder.glob("*.py")],
}


@pytest.mark.long
def test_make_installs_again_a_package_whose_files_are_gone(tmp_path):
    """Each way of losing a package's files, one after another in one venv."""
    project = small_project(tmp_path)
    uv = f"UV={the_build_uv()}"
    assert make("venv", uv, cwd=project).returncode == 0
    for damage, do_it in DAMAGE.items():
        assert imports_graphviz(project), damage
        do_it(package_folder(project))
        assert not imports_graphviz(project), damage
        assert make("-q", "venv", uv, cwd=project).returncode != 0, \
            f"{damage} gone went unnoticed"
        run = make("venv", uv, cwd=project)
        assert run.returncode == 0, (damage, run.stderr)
        assert "files of graphviz are missing from .venv: installing them again" in run.stdout, \
            (damage, run.stdout)
        assert imports_graphviz(project), damage
        # Repaired for good: the next make has nothing to do, even
        # once Python wrote bytecode beside the modules it imported.
        subprocess.run([project / ".venv" / "bin" / "python", "-c", "import graphviz.backend"],
                       check=True, env={name: value for name, value in os.environ.items()
                                        if name != "PYTHONDONTWRITEBYTECODE"})
        assert list(package_folder(project).glob("__pycache__/*.pyc")), damage
        assert make("-q", "venv", uv, cwd=project).returncode == 0, damage
        assert "Nothing to be done for 'venv'" in make("venv", uv, cwd=project).stdout, damage


def test_a_lock_put_back_with_an_older_time_syncs_the_venv_again(tmp_path):
    """cp -p, rsync -a and tar keep a file's time: the venv's stamp, newer,
    would pass for one made from that lock; its digests tell."""
    project = small_project(tmp_path)
    uv = f"UV={the_build_uv()}"
    assert make("venv", uv, cwd=project).returncode == 0
    assert make("-q", "venv", uv, cwd=project).returncode == 0
    lock = project / "requirements.lock"
    lock.write_text("# another lock, put back with its old time\n" + lock.read_text())
    os.utime(lock, (0, 0))
    assert make("-q", "venv", uv, cwd=project).returncode != 0, "the other lock went unnoticed"
    run = make("venv", uv, cwd=project)
    assert run.returncode == 0, run.stderr
    assert "pip sync" in run.stdout
    assert make("-q", "venv", uv, cwd=project).returncode == 0


def test_make_works_with_a_uv_whose_path_has_a_space(tmp_path):
    """And what the shell reads in double quotes: $, a backtick, a quote,
    a backslash."""
    spaced = tmp_path / "a b"
    project = small_project(spaced / "clone")
    uv = uv_in(tmp_path / "u v$HOME`x`'y\"z\\" / "tools dir")
    # On make's command line a $ is make's, written $$.
    run = make("venv", f"UV={str(uv).replace('$', '$$')}", cwd=project)
    assert run.returncode == 0, run.stderr
    assert imports_graphviz(project)
    # The same uv found on the PATH.
    shutil.rmtree(project / ".venv")
    on_path = dict(os.environ, PATH=f"{uv.parent}:{os.environ['PATH']}")
    run = make("venv", cwd=project, env=on_path)
    assert run.returncode == 0, run.stderr
    assert imports_graphviz(project)
    # Targets that need uv name it as a prerequisite only when make makes it.
    for target in ("lock", "bench"):
        run = make("-n", target, cwd=project, env=on_path)
        assert run.returncode == 0, run.stderr
        quoted = "'" + str(uv).replace("'", "'\\''") + "'"
        assert quoted in run.stdout or target == "bench", run.stdout


def test_a_checkout_whose_path_is_not_utf_8_is_said_so(tmp_path):
    """uv said "Virtual environment path is not valid UTF-8: .venv"."""
    folder = Path(os.fsdecode(bytes(tmp_path) + b"/x\xff"))
    folder.mkdir()
    project = small_project(folder)
    run = make("venv", f"UV={the_build_uv()}", cwd=project)
    assert run.returncode != 0
    assert run.stderr.splitlines()[0] == (
        "the checkout's path is not valid UTF-8, and uv makes no venv there: rename its folders")
    assert not (project / ".venv").exists()


@pytest.mark.long
def test_make_tangle_works_in_a_checkout_whose_path_has_a_space(tmp_path):
    """From a checkout without a venv, as after `git clone`: make makes
    the venv, then builds, and has nothing left to do.  The checkout's own
    kernel run is kept, so that the blocks need not run again: in a new
    venv, Python would first compile NumPy, Matplotlib and Jupyter to
    bytecode, seconds of work that test nothing here.  A kernel in a
    checkout whose path holds a space and worse runs in
    test_checkout_paths.py."""
    project = tmp_path / "a b" / "clone"
    project.mkdir(parents=True)
    copy_project(project)
    (project / ".venv").unlink()
    shutil.copytree(ROOT / ".build" / "produced", project / ".build" / "produced")
    uv = uv_in(tmp_path / "a b" / "tools dir")
    outputs = {name: (project / name).read_bytes() for name in ("gradients.py", "README.org")}
    run = make("tangle", f"UV={uv}", cwd=project, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "results are reused" in run.stderr, run.stderr
    assert {name: (project / name).read_bytes() for name in outputs} == outputs
    assert make("-q", "tangle", f"UV={uv}", cwd=project).returncode == 0


@pytest.mark.parametrize("goal", ["tangle", "test", "clean"])
def test_a_checkout_whose_path_holds_a_line_break_is_said_in_one_line(tmp_path, goal):
    """Found by probing: the first recipe to name a file there failed with
    the shell's "Unterminated quoted string"."""
    project = tmp_path / "two\nlines"
    project.mkdir()
    copy_project(project)
    before = sorted(path.name for path in project.iterdir())
    run = make(goal, cwd=project)
    assert run.returncode != 0
    assert run.stderr.splitlines() == [
        f"Makefile:{run.stderr.split(':')[1]}: *** the checkout's path holds a line break, "
        "which no command make runs can take: rename its folders.  Stop."], run.stderr
    assert sorted(path.name for path in project.iterdir()) == before


@pytest.mark.long
def test_the_first_make_of_a_fresh_clone_installs_its_uv_and_keeps_its_downloads(tmp_path):
    """On a machine without uv, make installs the uv that
    tools/uv-requirements.txt pins, and makes the venv with it.  Both
    found by probing: under PIP_REQUIRE_HASHES, uv==VERSION alone failed
    (every other package is pinned by its digest in the lock, and so is
    uv); and make installs its uv in the recipe that makes the venv, which
    make expands whole first, so that uv, asked for its cache before it
    was there, ran without one, and every fresh clone downloaded every
    package again."""
    project = small_project(tmp_path / "clone")
    path = os.pathsep.join(folder for folder in os.environ["PATH"].split(os.pathsep)
                           if not (Path(folder) / "uv").exists())
    env = {name: value for name, value in os.environ.items()
           if name not in ("UV_CACHE_DIR", "UV_NO_CACHE")}
    env.update(PATH=path, XDG_CACHE_HOME=str(tmp_path / "cache"), PIP_REQUIRE_HASHES="1")
    run = make("venv", cwd=project, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    version = re.search(r"^uv==(\S+)", (ROOT / "tools/uv-requirements.txt").read_text(), re.M)
    said = subprocess.run([project / ".build/uv/bin/uv", "--version"], capture_output=True,
                          text=True).stdout
    assert said.split()[:2] == ["uv", version.group(1)], said
    assert "UV_NO_CACHE" not in run.stdout, run.stdout
    assert list((tmp_path / "cache" / "uv").iterdir()), "uv kept nothing in its cache"
    assert imports_graphviz(project)


@pytest.mark.parametrize("home", ["/proc/self/no-such-home", "a file", "relative cache"])
def test_a_home_uv_cannot_keep_its_cache_in_still_gets_a_venv(tmp_path, home):
    """A service user's HOME=/nonexistent, or a home that is a file: uv,
    which keeps its downloads under it, stopped before installing
    anything.  It runs without a cache there, as pip does.  The folder
    looked at is the one uv uses: a relative XDG_CACHE_HOME, which uv
    ignores, left an empty folder in the checkout."""
    project = small_project(tmp_path / "project")
    uv = f"UV={the_build_uv()}"
    assert make("venv", uv, cwd=project).returncode == 0
    (project / ".venv" / ".installed").unlink()
    env = {name: value for name, value in os.environ.items()
           if name not in ("UV_CACHE_DIR", "XDG_CACHE_HOME")}
    if home == "relative cache":
        env["XDG_CACHE_HOME"] = "relcache"
    else:
        if home == "a file":
            home = tmp_path / "home"
            home.write_text("")
        env["HOME"] = str(home)
    run = make("venv", uv, cwd=project, env=env)
    assert run.returncode == 0, run.stderr
    assert imports_graphviz(project)
    assert not (project / "relcache").exists()
    assert make("-q", "venv", uv, cwd=project).returncode == 0


def test_the_callers_uv_settings_reach_uv_only_where_they_say_how_to_fetch(tmp_path):
    """Settings that change what uv installs gave uv's own error: "No
    solution found" for a constraint file, "filtered by exclude-newer" for
    a date.  Those that say how to fetch (the cache, here) still reach uv."""
    project = small_project(tmp_path / "project")
    constraint = tmp_path / "constraint.txt"
    constraint.write_text("graphviz==0.1\n")
    cache = tmp_path / "cache"
    env = dict(os.environ, UV_CONSTRAINT=str(constraint), UV_OVERRIDE=str(constraint),
               UV_EXCLUDE_NEWER="2000-01-01", UV_PYTHON="3.10", UV_CACHE_DIR=str(cache))
    run = make("venv", f"UV={the_build_uv()}", cwd=project, env=env)
    assert run.returncode == 0, run.stderr
    assert imports_graphviz(project)
    assert (cache / "CACHEDIR.TAG").exists(), "UV_CACHE_DIR did not reach uv"


def test_the_venv_is_made_on_a_path_of_what_make_names(tmp_path):
    """The venv's own checks (the lock's digest, cut from sha256sum's line)
    run no program the Makefile does not name."""
    project = small_project(tmp_path / "project")
    (tmp_path / "bin").mkdir()
    path = a_path_of_what_make_names(tmp_path / "bin", "python3")
    run = make("venv", f"UV={the_build_uv()}", cwd=project, env={**os.environ, "PATH": path})
    assert run.returncode == 0, run.stderr
    assert imports_graphviz(project)


@pytest.mark.parametrize("jobs", [[], ["-j2"]], ids=["serial", "-j2"])
def test_make_clean_with_other_goals_cleans_then_makes_them(tmp_path, jobs):
    """What make read of .venv (its folders, its stamp) is gone once clean
    has run: the other goals are made after it, by a make of their own."""
    project = small_project(tmp_path)
    uv = f"UV={the_build_uv()}"
    assert make("venv", uv, cwd=project).returncode == 0
    (project / ".venv" / "marker").write_text("")
    run = make(*jobs, "clean", "venv", uv, cwd=project)
    assert run.returncode == 0, run.stderr
    assert not (project / ".venv" / "marker").exists(), "clean did not run first"
    assert imports_graphviz(project)
    assert make("-q", "venv", uv, cwd=project).returncode == 0


def said_waiting(process):
    """Whether PROCESS, a make started with its errors in a pipe, says it
    waits for another build before it ends; one that neither says so nor
    ends in two minutes is killed, and has not."""
    guard = threading.Timer(120, process.kill)
    guard.start()
    try:
        for line in process.stderr:
            if line.startswith("waiting for the other build of "):
                return True
        return False
    finally:
        guard.cancel()


def test_make_clean_waits_for_the_venv_being_made(tmp_path):
    """make clean removed the folders uv was filling as it filled them."""
    project = small_project(tmp_path)
    syncing, go = tmp_path / "syncing", tmp_path / "go"
    uv = tmp_path / "uv"
    uv.write_text(f"""#!/bin/sh
case "$*" in *"pip sync"*)
    touch '{syncing}'
    for i in $(seq 600); do [ -e '{go}' ] && break; sleep 0.1; done ;;
esac
exec '{the_build_uv()}' "$@"
""")
    uv.chmod(0o755)
    venv = subprocess.Popen(["make", "venv", f"UV={uv}"], cwd=project,
                            env=a_users_make_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):
            if syncing.exists() or venv.poll() is not None:
                break
            time.sleep(0.1)
        assert syncing.exists(), venv.communicate()
        clean = subprocess.Popen(["make", "clean"], cwd=project, env=a_users_make_environment(),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            assert said_waiting(clean), "make clean did not wait for the venv being made"
        finally:
            go.touch()
            clean.wait(timeout=120)
        assert venv.wait(timeout=120) == 0, venv.stderr.read()
        assert clean.returncode == 0
    finally:
        go.touch()
        venv.kill() if venv.poll() is None else None
        venv.wait()
    assert not (project / ".venv").exists() and not (project / ".build").exists()


def test_a_venv_made_after_waiting_for_another_build_reads_the_venv_anew(tmp_path):
    """What make read of .venv before the lock was free may be gone once it
    is (a make clean it waited for): the venv is made as it is then."""
    project = small_project(tmp_path)
    uv = f"UV={the_build_uv()}"
    assert make("venv", uv, cwd=project).returncode == 0
    # The venv to make again, whatever the clock's grain.
    (project / ".venv" / ".installed").unlink()
    folder = os.open(project, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        venv = subprocess.Popen(["make", "venv", uv], cwd=project,
                                env=a_users_make_environment(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            assert said_waiting(venv), "make venv did not wait for the other build"
            shutil.rmtree(project / ".venv")
        finally:
            fcntl.flock(folder, fcntl.LOCK_UN)
            out, err = venv.communicate(timeout=120)
    finally:
        os.close(folder)
    assert venv.returncode == 0, err
    assert imports_graphviz(project)
    assert make("-q", "venv", uv, cwd=project).returncode == 0


@pytest.mark.parametrize("sudo, advice", [
    (True, "install them with: sudo apt-get install nosuchpackage"),
    (False, "install them as root with: apt-get install nosuchpackage"),
], ids=["with sudo", "without sudo"])
def test_a_user_who_cannot_install_a_package_is_told_how(sudo, advice):
    """Not as root, and sudo asks for a password or is not there: one line
    names the packages, and the command that installs them there."""
    # Where another user may look (pytest's own folders are root's alone).
    with tempfile.TemporaryDirectory() as shared:
        os.chmod(shared, 0o755)
        told_how(Path(shared) / "bin", sudo, advice)


def a_folder_of(tmp_path, *programs):
    """A PATH of the given programs, and an apt-get that only notes it ran."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for program in programs:
        (folder / program).symlink_to(shutil.which(program))
    (folder / "apt-get").write_text(f"#!/bin/sh\n: > {tmp_path}/apt-get-ran\n")
    (folder / "apt-get").chmod(0o755)
    (folder / "sudo").write_text('#!/bin/sh\nshift\nexec "$@"\n')
    (folder / "sudo").chmod(0o755)
    return folder, shutil.copy(ROOT / "tools" / "require-debian-packages", folder)


# Each is a package whose check fails while what it looks for is on the
# machine: installing would change nothing the build sees, or worse (with
# `emacs` off the PATH and emacs-gtk installed, installing emacs-nox
# removed emacs-gtk).  The PATH is told, or said to be empty.
@pytest.mark.parametrize("pair, path, said", [
    ("dpkg=command -v no-such-program", "{folder}",
     "dpkg is installed, but its program is not on the PATH ({folder}): "
     "the check `command -v no-such-program` fails"),
    ("nosuchpackage=command -v env", "{folder}",
     "env is on this machine, at /usr/bin/env, but /usr/bin is not on the PATH ({folder}): put it there"),
    ("nosuchpackage=command -v env", "",
     "env is on this machine, at /usr/bin/env, but /usr/bin is not on the PATH (it is empty): put it there"),
], ids=["package installed, dpkg-query off the PATH", "another package's program",
        "an empty PATH"])
def test_what_is_on_the_machine_off_the_path_is_named_not_installed(tmp_path, pair, path, said):
    folder, script = a_folder_of(tmp_path, "id")
    run = subprocess.run(["/bin/sh", script, pair], env={"PATH": path.format(folder=folder)},
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 1
    assert run.stderr == said.format(folder=folder) + "\n"
    assert not (tmp_path / "apt-get-ran").exists()


def test_a_package_installed_whose_check_still_fails_is_said_so(tmp_path):
    """apt-get said yes, and the build would have failed in the middle of a
    block: the check is run again after it."""
    folder, script = a_folder_of(tmp_path, "id")
    run = subprocess.run(["/bin/sh", script, "nosuchpackage=command -v no-such-program"],
                         env={"PATH": str(folder)}, capture_output=True, text=True, timeout=30)
    assert (tmp_path / "apt-get-ran").exists()
    assert run.returncode == 1
    assert run.stderr == ("apt-get installed nosuchpackage, but the check "
                          f"`command -v no-such-program` still fails on the PATH ({folder})\n")


def told_how(folder, sudo, advice):
    folder.mkdir()
    for program in ("sh", "id"):
        (folder / program).symlink_to(shutil.which(program))
    if sudo:
        (folder / "sudo").write_text("#!/bin/sh\nexit 1\n")
        (folder / "sudo").chmod(0o755)
    as_a_user = ([shutil.which("setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups"]
                 if os.getuid() == 0 else [])
    script = shutil.copy(ROOT / "tools" / "require-debian-packages", folder)
    run = subprocess.run([*as_a_user, "/bin/sh", script,
                          "nosuchpackage=false"], env={"PATH": str(folder)},
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 1
    assert run.stderr == f"missing Debian packages: nosuchpackage; {advice}\n"
