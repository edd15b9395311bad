"""How fast are the build and its checks?  `make bench` times, in a copy
of the project's last commit in a temporary folder (the checkout is not
touched), several
interleaved rounds each, against `jupyter nbconvert --to notebook
--execute` of a notebook of the same blocks, made here from what the
build read of README.org:

- a cold `make tangle`: no kept kernel run and no stamp, the kernel's
  caches kept (.build/kernel/: Matplotlib's list of the machine's fonts,
  IPython's profile), as nbconvert's kernel keeps its own in the home
  folder; and once more from an empty .build/, those caches made anew;
- `make test` after a prose-only edit (no kernel may start), and after an
  edit that makes every block run again (a header argument of one block);
- a no-op `make tangle`;
- `make tangle` of notes of 30 and of 300 small blocks under one heading;
- once: `make check`, and the venv as `make venv` makes it from
  requirements.lock with uv (also installing uv first) against
  `python3 -m venv` and pip, every package downloaded afresh
  (BENCH_VENVS=0 leaves these out).

It prints a table with medians and ratios and writes .build/bench/bench.csv.
"""

import csv
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbformat import v4

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import produced  # noqa: E402

OUT = ROOT / ".build" / "bench"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
VENV_BIN = ROOT / ".venv" / "bin"


def copy_project(folder, keep_produced=True):
    """A clone of the checkout's last commit in FOLDER (the tooling's tests
    copy the project by asking git), with its venv and the kernel run the
    checkout keeps, so that a copy starts where the checkout is."""
    if folder.exists():
        shutil.rmtree(folder)
    subprocess.run(["git", "clone", "--quiet", ROOT, folder], check=True)
    (folder / ".venv").symlink_to(ROOT / ".venv")
    # The venv is the checkout's, made from these very files: with their
    # times, make takes it for what it is, up to date.
    for name in ("pyproject.toml", "requirements.lock"):
        shutil.copystat(ROOT / name, folder / name)
    if keep_produced:
        shutil.copytree(ROOT / ".build" / "produced", folder / ".build" / "produced")
    return folder


def blocks_notebook(path):
    """The blocks the build runs, as a notebook."""
    cells = [v4.new_code_cell(b.code) for b in produced.load().evaluated_blocks()]
    nb = v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)
    return len(cells)


def kernels_running(folder):
    """The bridges and kernel supervisors of the project in FOLDER that
    run, by process id."""
    tools = [os.fsencode(Path(place) / "tools" / name)
             for place in {str(folder), str(Path(folder).resolve())}
             for name in ("kernel_bridge.py", "kernel_supervisor.py")]
    found = set()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            words = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if any(tool in words for tool in tools):
            found.add(cmdline.parent.name)
    return found


def settled(folder, seconds=20):
    """Wait until no kernel of the project in FOLDER runs any more: one
    that an untimed step started may still be ending, and would slow the
    timed one."""
    deadline = time.monotonic() + seconds
    while kernels_running(folder) and time.monotonic() < deadline:
        time.sleep(0.05)


def timed(command, cwd, before=None, env=None, failure_ends_the_bench=True):
    """Seconds COMMAND takes in CWD, after running BEFORE (untimed) and
    once no kernel runs.  A failure ends the bench, or, unless it must,
    is said and timed anyway."""
    command = [str(part) for part in command]
    if before:
        before()
    settled(cwd)
    start = time.perf_counter()
    run = subprocess.run(command, cwd=cwd, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    elapsed = time.perf_counter() - start
    if run.returncode != 0:
        tail = "\n".join(run.stdout.splitlines()[-60:])
        if failure_ends_the_bench:
            sys.exit(f"{' '.join(command)} failed in {cwd}:\n{tail}")
        print(f"{' '.join(command)} FAILED (timed all the same):\n{tail}", file=sys.stderr)
    return elapsed


def edit(path, old, new):
    text = path.read_text()
    assert old in text, f"{old!r} is not in {path}"
    path.write_text(text.replace(old, new, 1))


def small_notes(folder, blocks):
    """A project whose README.org is BLOCKS small blocks under one heading."""
    copy_project(folder, keep_produced=False)
    header = "#+PROPERTY: header-args:jupyter-python :session gradients\n" \
             "#+PROPERTY: header-args:jupyter-python+ :results raw drawer\n" \
             "#+PROPERTY: header-args:jupyter-python+ :tangle gradients.py\n\n* Notes\n"
    body = "".join(f"\n#+name: b{n}\n#+begin_src jupyter-python\nx{n} = {n}\n#+end_src\n"
                   for n in range(blocks))
    (folder / "README.org").write_text(header + body)
    shutil.rmtree(folder / "images")
    return folder


def cold_venvs(scratch):
    """Seconds to make the venv from the lock with empty caches, one round
    (each downloads every package again): with uv as `make venv` does it,
    installing uv from PyPI the way make does when the PATH has none, and
    with `python3 -m venv` and pip."""
    cold = dict(os.environ, UV_CACHE_DIR=str(scratch / "uv-cache"), PIP_NO_CACHE_DIR="1")
    # In a clone of its own, whose .build/ and .venv/ are made here: make
    # takes none of its own variables from its command line.
    project = scratch / "project"
    subprocess.run(["git", "clone", "--quiet", ROOT, project], check=True)
    uv = project / ".build" / "uv" / "bin" / "uv"
    install_uv = timed(["make", "--no-print-directory", ".build/uv/bin/uv"], project, env=cold)
    with_uv = timed(["make", "--no-print-directory", "venv", f"UV={uv}"], project, env=cold)
    # Isolated from pip's configuration, so that pip too fetches every
    # package from PyPI rather than from a mirror or folder on this machine.
    pip_venv = scratch / "pip-venv"
    with_pip = timed(["python3", "-m", "venv", pip_venv], ROOT, env=cold) + timed(
        [pip_venv / "bin" / "python", "-m", "pip", "install", "--isolated", "--no-cache-dir",
         "--disable-pip-version-check", "--quiet", "-r", "requirements.lock"], ROOT, env=cold)
    return {"make venv, uv, empty cache": with_uv,
            "the same, installing uv first": install_uv + with_uv,
            "python3 -m venv + pip, no cache": with_pip}


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    venvs = {}
    if os.environ.get("BENCH_VENVS", "1") != "0":
        with tempfile.TemporaryDirectory(prefix="venvs-", dir=OUT) as scratch:
            venvs = cold_venvs(Path(scratch))
    subprocess.run(["make", "test"], cwd=ROOT, check=True, capture_output=True)
    notebook = OUT / "blocks.ipynb"
    cells = blocks_notebook(notebook)
    # nbconvert's kernel is the venv's python3; make keeps the machine's.
    in_venv = dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}")
    nbconvert = [VENV_BIN / "jupyter", "nbconvert", "--to", "notebook", "--execute",
                 notebook, "--output", OUT / "blocks.executed.ipynb"]

    scratch = Path(tempfile.mkdtemp(prefix="gradients-bench-"))
    project = copy_project(scratch / "project")
    readme = project / "README.org"
    original = readme.read_text()
    prose = ("These are my notes", "These are my own notes")
    code = ("#+begin_src jupyter-python :exports both\nimport math",
            "#+begin_src jupyter-python :exports both :timeout 600\nimport math")

    def forget_the_build():
        for made in ("produced", "outputs", "emacs-id"):
            path = project / ".build" / made
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)

    def forget_everything():
        shutil.rmtree(project / ".build", ignore_errors=True)

    def prose_edited():
        readme.write_text(original)
        subprocess.run(["make", "test"], cwd=project, check=True, capture_output=True)
        edit(readme, *prose)

    def code_edited():
        readme.write_text(original)
        subprocess.run(["make", "test"], cwd=project, check=True, capture_output=True)
        edit(readme, *code)

    baseline_name = f"jupyter nbconvert --execute, {cells} cells"
    rounds = {"make tangle, from cold": [], "make tangle, from an empty .build": [],
              baseline_name: [],
              "make test after a prose-only edit": [], "make test after a code edit": [],
              "make tangle, nothing changed": []}
    # Interleaved rounds, so a slow moment of the machine hits every side.
    for _ in range(ROUNDS):
        rounds["make tangle, from cold"].append(
            timed(["make", "tangle"], project, before=forget_the_build))
        rounds["make tangle, from an empty .build"].append(
            timed(["make", "tangle"], project, before=forget_everything))
        rounds[baseline_name].append(timed(nbconvert, ROOT, env=in_venv))
        rounds["make tangle, nothing changed"].append(timed(["make", "tangle"], project))
        rounds["make test after a prose-only edit"].append(
            timed(["make", "test"], project, before=prose_edited))
        rounds["make test after a code edit"].append(
            timed(["make", "test"], project, before=code_edited))
    readme.write_text(original)

    for blocks in (30, 300):
        folder = small_notes(scratch / f"notes-{blocks}", blocks)
        rounds[f"make tangle, {blocks} blocks under one heading"] = [
            timed(["make", "tangle"], folder, before=lambda: shutil.rmtree(
                folder / ".build", ignore_errors=True)) for _ in range(max(1, ROUNDS // 2))]
    def as_the_author_has_it():
        """The copy built from its notes as they are, with the uv the
        checkout's make installed, if any: the rounds above left the notes'
        build of a code edit, and no uv (which a test would otherwise
        install from PyPI, timed)."""
        uv = ROOT / ".build" / "uv"
        if uv.is_dir() and not (project / ".build" / "uv").exists():
            shutil.copytree(uv, project / ".build" / "uv", symlinks=True)
        subprocess.run(["make", "tangle"], cwd=project, check=True, capture_output=True)

    # Last, and the table is printed even if it fails: it says so above.
    rounds[f"make check, {os.cpu_count()} cores"] = [
        timed(["make", "check"], project, before=as_the_author_has_it,
              failure_ends_the_bench=False)]
    shutil.rmtree(scratch)

    baseline = statistics.median(rounds[baseline_name])
    thirty = statistics.median(rounds["make tangle, 30 blocks under one heading"])
    rows = []
    for name, times in rounds.items():
        median = statistics.median(times)
        if "300 blocks" in name:
            ratio = f"{median / thirty:.2f} × 30"
        elif "nothing changed" in name or "blocks under" in name:
            ratio = ""
        else:
            ratio = f"{median / baseline:.2f}"
        rows.append([name, len(times), f"{median:.3f}", f"{min(times):.3f}",
                     f"{max(times):.3f}", ratio])
    pip = venvs.get("python3 -m venv + pip, no cache")
    for name, seconds in venvs.items():
        rows.append([name, 1, f"{seconds:.3f}", f"{seconds:.3f}", f"{seconds:.3f}",
                     f"{seconds / pip:.2f}"])
    header = ["what", "rounds", "median s", "min s", "max s", "ratio"]
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"

    with open(OUT / "bench.csv", "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(rows)
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(f"machine: {machine}")
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                        for i, (c, w) in enumerate(zip(row, widths))))
    print("ratio: to nbconvert, for the venvs to pip, for 300 blocks to 30")
    print(f"written to {OUT / 'bench.csv'}")


if __name__ == "__main__":
    main()
