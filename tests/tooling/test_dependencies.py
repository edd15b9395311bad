"""pyproject.toml names what the notes import, the lock pins all of it
without saying where packages come from, and `make venv` keeps the venv
to the lock: stale locks stop it, broken venvs are repaired, and a venv
that matches is left alone."""

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import conftest
from conftest import ROOT, small_project, the_build_uv
import produced

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LOCK = ROOT / "requirements.lock"

# A package index named by host, by option or by uv's table of indexes in
# pyproject.toml; not a setting's name, such as UV_INDEX_URL, which the
# Makefile lets through to uv.  Written so that this file does not match
# itself.
INDEX = re.compile(
    rb"pypi\.(?:org|python\.org)|pythonhost(?:ed)?\.org|(?<!\w)(?:index[-_]url|find[-_]links)"
    rb"|tool\.uv\.index",
    re.I)


def locked():
    """Each package of the lock: its version and its hashes."""
    pins = {}
    for entry in re.split(r"\n(?=\S)", LOCK.read_text()):
        if entry.startswith("#"):
            continue
        name, version = entry.split(" ", 1)[0].split("==")
        pins[canonicalize_name(name)] = (version, re.findall(r"--hash=sha256:\w+", entry))
    return pins


def requirements():
    """Every requirement of pyproject.toml: the project's and its groups'."""
    found = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    for group in PYPROJECT["dependency-groups"].values():
        found += [Requirement(r) for r in group if isinstance(r, str)]
    return found


def test_the_projects_dependencies_are_what_the_notes_import():
    imported = set()
    for block in produced.load().evaluated_blocks():
        for node in ast.walk(ast.parse(block.code)):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
    third_party = {name for name in imported if name not in sys.stdlib_module_names}
    declared = {Requirement(r).name for r in PYPROJECT["project"]["dependencies"]}
    assert declared == third_party


def test_every_requirement_has_a_lower_bound_and_no_pin():
    for requirement in requirements():
        operators = {spec.operator for spec in requirement.specifier}
        assert operators == {">="}, f"{requirement}: give the lowest version known to work"


def test_the_lock_pins_every_requirement_at_or_above_its_bound_with_hashes():
    pins = locked()
    for requirement in requirements():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not in the lock: run `make lock`"
        version, hashes = pins[name]
        assert requirement.specifier.contains(version), (
            f"the lock has {requirement.name} {version}, pyproject.toml asks "
            f"{requirement.specifier}: run `make lock`")
    assert all(hashes for _, hashes in pins.values())


def test_no_tracked_file_names_a_package_index():
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                             check=True).stdout.decode().split("\0")
    naming = [name for name in tracked
              if (ROOT / name).is_file() and INDEX.search((ROOT / name).read_bytes())]
    assert naming == []


def make(*args, cwd=ROOT, **options):
    return conftest.make(*args, cwd=cwd, **options)


def test_a_second_make_venv_does_nothing():
    # `make test` has just brought the venv to the lock.
    # Said by make itself, so nothing ran: no clock, which a busy machine slows.
    run = make("venv")
    assert run.returncode == 0, run.stderr
    assert "Nothing to be done for 'venv'" in run.stdout, run.stdout
    assert make("-q", "venv").returncode == 0


@pytest.fixture
def a_small_project(tmp_path):
    """The build's files with a lock of one package, and the build's uv."""
    return small_project(tmp_path), f"UV={the_build_uv()}"


def test_a_lock_older_than_pyproject_stops_make_venv(a_small_project):
    project, uv = a_small_project
    lock = (project / "requirements.lock").stat().st_mtime
    pyproject = project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"graphviz>=', '"scipy>=1.16",\n    "graphviz>='))
    # Newer by its contents, not by its time, which git does not keep.
    os.utime(pyproject, (lock - 10, lock - 10))
    run = make("venv", uv, cwd=project)
    assert run.returncode != 0
    assert "requirements.lock is older than pyproject.toml: run `make lock`" in run.stderr
    assert not (project / ".venv").exists()


@pytest.mark.long
def test_make_venv_repairs_a_venv_that_does_not_match_the_lock(a_small_project):
    project, uv = a_small_project
    venv = project / ".venv"
    python = venv / "bin" / "python"

    def imports_graphviz():
        return subprocess.run([python, "-c", "import graphviz"], capture_output=True).returncode == 0

    assert make("venv", uv, cwd=project).returncode == 0
    assert imports_graphviz()
    assert make("-q", "venv", uv, cwd=project).returncode == 0

    for removed in venv.glob("lib/python3*/site-packages/graphviz*"):
        shutil.rmtree(removed)
    assert make("-q", "venv", uv, cwd=project).returncode != 0
    assert make("venv", uv, cwd=project).returncode == 0
    assert imports_graphviz()

    python.unlink()
    python.symlink_to(project / "no-such-python")
    assert make("-q", "venv", uv, cwd=project).returncode != 0
    assert make("venv", uv, cwd=project).returncode == 0
    assert imports_graphviz()
    assert make("-q", "venv", uv, cwd=project).returncode == 0

    # As after an upgrade of the python3 the venv was made with: its
    # packages are where another version looks for them.
    (lib,) = venv.glob("lib/python3.*")
    lib.rename(lib.with_name("python3.99"))
    assert make("-q", "venv", uv, cwd=project).returncode != 0
    assert make("venv", uv, cwd=project).returncode == 0
    assert imports_graphviz()
    assert make("-q", "venv", uv, cwd=project).returncode == 0
