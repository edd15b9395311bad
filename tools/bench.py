"""How fast is the build?  `make bench` times, several rounds each:

- a cold `make tangle` (the stamp removed, so it tangles and runs every
  block), against `jupyter nbconvert --to notebook --execute` on a notebook
  of the same `jupyter-python` blocks, made here from README.org;
- a no-op `make tangle`;
- `make test`.

It prints a table with medians and the ratio to nbconvert, and writes it
to .build/bench/bench.csv.
"""

import csv
import os
import platform
import statistics
import subprocess
import sys
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
    cells = [v4.new_code_cell(b.code) for b in doc.jupyter_blocks() if b.evaluated]
    nb = v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)
    return len(cells)


def timed(command, before=None):
    """Seconds COMMAND takes, after running BEFORE (untimed)."""
    if before:
        before()
    start = time.perf_counter()
    run = subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if run.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{run.stderr}")
    return elapsed


def forget_tangle():
    (ROOT / ".build" / "tangle.stamp").unlink(missing_ok=True)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
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

    baseline = statistics.median(rounds[f"nbconvert --execute ({cells} cells)"])
    rows = []
    for name, times in rounds.items():
        median = statistics.median(times)
        ratio = f"{median / baseline:.2f}" if "tangle" in name and "no-op" not in name else ""
        rows.append([name, len(times), f"{median:.3f}", f"{min(times):.3f}",
                     f"{max(times):.3f}", ratio])
    header = ["what", "rounds", "median s", "min s", "max s", "ratio to nbconvert"]
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
    print(f"written to {OUT / 'bench.csv'}")


if __name__ == "__main__":
    main()
