"""How fast is the build?  `make bench` times, several rounds each:

- a cold `make tangle` (the stamp removed, so it tangles and runs every
  block), against `jupyter nbconvert --to notebook --execute` on a notebook
  of the same `jupyter-python` blocks, made here from README.org;
- a no-op `make tangle`;
- `make test`;
- once, with nothing cached: the venv as `make venv` makes it from
  requirements.lock with uv, the same when uv has to be installed from
  PyPI first, against `python3 -m venv` and pip installing the same lock.

It prints a table with medians and the ratios (to nbconvert for the build,
to pip for the venv), and writes it to .build/bench/bench.csv.
"""

import csv
import os
import platform
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
import orgdoc  # noqa: E402

OUT = ROOT / ".build" / "bench"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
VENV_BIN = ROOT / ".venv" / "bin"


def blocks_notebook(path):
    """The evaluated jupyter-python blocks of README.org as a notebook."""
    doc = orgdoc.parse(ROOT / "README.org")
    cells = [v4.new_code_cell(b.code) for b in doc.evaluated_blocks()]
    nb = v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)
    return len(cells)


def timed(command, before=None, env=None):
    """Seconds COMMAND takes, after running BEFORE (untimed)."""
    command = [str(part) for part in command]
    if before:
        before()
    start = time.perf_counter()
    run = subprocess.run(command, cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    elapsed = time.perf_counter() - start
    if run.returncode != 0:
        tail = "\n".join(run.stdout.splitlines()[-60:])
        sys.exit(f"{' '.join(command)} failed:\n{tail}")
    return elapsed


def forget_tangle():
    (ROOT / ".build" / "outputs").unlink(missing_ok=True)


def phases():
    """Where a cold `make tangle` spends its time, part by part."""
    import kernel_bridge
    parts = {}
    parts["Emacs start, Org and the build loaded"] = timed(
        ["emacs", "-Q", "--batch", "-l", "tools/build.el"])
    tangle = timed(["emacs", "-Q", "--batch", "-l", "tools/build.el", "-f",
                    "gradients-build-tangle-into", "README.org", str(OUT / "tangled")])
    parts["README.org opened and tangled"] = tangle - parts["Emacs start, Org and the build loaded"]
    start = time.perf_counter()
    kernel = kernel_bridge.Kernel()
    parts["kernel start (overlaps the two above)"] = time.perf_counter() - start
    doc = orgdoc.parse(ROOT / "README.org")
    groups = {"imports block": 0.0, "Matplotlib pictures": 0.0, "Graphviz pictures": 0.0,
              "other blocks": 0.0}
    try:
        for block in doc.evaluated_blocks():
            start = time.perf_counter()
            kernel_bridge.execute(kernel, block.code, block.file,
                                  str(OUT / "pictures" / block.file) if block.file else None)
            elapsed = time.perf_counter() - start
            if block.name == "imports":
                groups["imports block"] += elapsed
            elif block.file and block.file.endswith(".png"):
                groups["Matplotlib pictures"] += elapsed
            elif block.file:
                groups["Graphviz pictures"] += elapsed
            else:
                groups["other blocks"] += elapsed
    finally:
        kernel.shutdown()
    parts.update(groups)
    return parts


def cold_venvs(scratch):
    """Seconds to make the venv from the lock with empty caches, one round
    (each downloads every package again): with uv as `make venv` does it,
    installing uv from PyPI the way make does when the PATH has none, and
    with `python3 -m venv` and pip."""
    cold = dict(os.environ, UV_CACHE_DIR=str(scratch / "uv-cache"), PIP_NO_CACHE_DIR="1")
    uv_home = scratch / "uv"
    uv = uv_home / "bin" / "uv"
    install_uv = timed(["make", "--no-print-directory", f"UV_HOME={uv_home}", uv], env=cold)
    with_uv = timed(["make", "--no-print-directory", "venv", f"UV={uv}",
                     f"VENV={scratch / 'uv-venv'}"], env=cold)
    # Isolated from pip's configuration, so that pip too fetches every
    # package from PyPI rather than from a mirror or folder on this machine.
    pip_venv = scratch / "pip-venv"
    with_pip = timed(["python3", "-m", "venv", pip_venv], env=cold) + timed(
        [pip_venv / "bin" / "python", "-m", "pip", "install", "--isolated", "--no-cache-dir",
         "--disable-pip-version-check", "--quiet", "-r", "requirements.lock"], env=cold)
    return {"make venv, uv, empty cache": with_uv,
            "the same, installing uv first": install_uv + with_uv,
            "python3 -m venv + pip, no cache": with_pip}


def trace_chain():
    """Seconds gradients.trace takes on a chain of 100,000 additions."""
    code = ("import time, contextlib, io\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    import gradients\n"
            "chain = gradients.Value(0.0)\n"
            "for _ in range(100_000):\n"
            "    chain = chain + 1\n"
            "start = time.perf_counter()\n"
            "gradients.trace(chain)\n"
            "print(time.perf_counter() - start)\n")
    run = subprocess.run([str(VENV_BIN / "python"), "-c", code], cwd=ROOT, check=True,
                         capture_output=True, text=True, env=dict(os.environ, MPLBACKEND="Agg"))
    return float(run.stdout)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    # Before the PATH below puts the venv's python3 first.
    with tempfile.TemporaryDirectory(prefix="venvs-", dir=OUT) as scratch:
        venvs = cold_venvs(Path(scratch))
    notebook = OUT / "blocks.ipynb"
    cells = blocks_notebook(notebook)
    env_path = f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"
    os.environ["PATH"] = env_path
    nbconvert = [str(VENV_BIN / "jupyter"), "nbconvert", "--to", "notebook", "--execute",
                 str(notebook), "--output", str(OUT / "blocks.executed.ipynb")]

    subprocess.run(["make", "tangle"], cwd=ROOT, check=True, capture_output=True)
    rounds = {"cold make tangle": [], f"nbconvert --execute ({cells} cells)": [],
              "no-op make tangle": [], "make test": []}
    # Interleaved rounds, so a slow moment of the machine hits both sides.
    for _ in range(ROUNDS):
        rounds["cold make tangle"].append(timed(["make", "tangle"], before=forget_tangle))
        rounds[f"nbconvert --execute ({cells} cells)"].append(timed(nbconvert))
        rounds["no-op make tangle"].append(timed(["make", "tangle"]))
    for _ in range(max(1, ROUNDS // 2)):
        rounds["make test"].append(timed(["make", "test"]))
    rounds["trace, 100,000 additions"] = [trace_chain() for _ in range(ROUNDS)]

    baseline = statistics.median(rounds[f"nbconvert --execute ({cells} cells)"])
    rows = []
    for name, times in rounds.items():
        median = statistics.median(times)
        ratio = f"{median / baseline:.2f}" if "tangle" in name and "no-op" not in name else ""
        rows.append([name, len(times), f"{median:.3f}", f"{min(times):.3f}",
                     f"{max(times):.3f}", ratio])
    pip = venvs["python3 -m venv + pip, no cache"]
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
    print("ratio: to nbconvert for the build, to pip for the venv")
    print(f"written to {OUT / 'bench.csv'}")

    print("\nwhere a cold make tangle spends its time (one round):")
    for part, seconds in phases().items():
        print(f"  {part:40} {seconds:6.3f}")


if __name__ == "__main__":
    main()
