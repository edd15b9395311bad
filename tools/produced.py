"""What the build read of README.org and what its blocks produced, as
tools/build.el wrote it to .build/produced/blocks.json: Org's own reading
of the notes, so that no Python code parses them a second time.

    notes = produced.load()            # of the checkout this file is in
    notes.block("xs").recorded         # the drawer's text in README.org
    notes.block("xs").produced         # what the block produced this time
"""

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDER = Path(".build") / "produced"


class Stale(Exception):
    """blocks.json is missing, or was made from another README.org."""


@dataclass
class Block:
    name: str | None
    language: str
    line: int                 # of its #+begin_src
    first_line: int           # of its first line, #+name included
    last_line: int            # of its #+end_src
    results_line: int | None  # of its #+RESULTS
    results_last_line: int | None
    header: dict              # header arguments as Org merged them, ":file" etc.
    code: str
    runs: bool                # whether the build runs it
    records: bool             # runs, and Org records its result (not :results none, silent)
    left_out: bool            # under a COMMENT or archived heading, as Org tangles
    not_run: str | None       # why a jupyter-python block does not run
    recorded: str | None      # its results drawer's text in README.org
    produced: str | None      # what the kernel made of it, for the drawer
    printed: str | None       # what it wrote to its standard output

    @property
    def label(self):
        """What tests and messages call it: its name, or its line."""
        return self.name or f"line {self.line}"

    @property
    def file(self):
        return self.header.get(":file")

    @property
    def exported(self):
        return self.header.get(":exports") != "none"

    @property
    def results(self):
        """The words of its :results header argument."""
        return (self.header.get(":results") or "").split()

    def where(self, path="README.org"):
        return f"{path}:{self.line}: block {self.label}"


@dataclass
class Notes:
    path: Path
    lines: list
    headings: list            # (level, title, line)
    outputs: list             # relative paths of what the build makes
    blocks: list = field(default_factory=list)
    folder: Path = None       # where the outputs were produced
    emacs: str = ""           # the versions that read the notes
    org: str = ""

    def jupyter_blocks(self):
        return [b for b in self.blocks if b.language == "jupyter-python"]

    def evaluated_blocks(self):
        """The blocks the build runs, in order."""
        return [b for b in self.blocks if b.runs]

    def block(self, name):
        for b in self.blocks:
            if b.name == name:
                return b
        raise KeyError(name)


def damaged(error):
    """Stale, for a blocks.json cut short or edited by hand: make, which
    goes by its time, would take it as up to date, so it must go."""
    return Stale(f"{FOLDER}/blocks.json is damaged ({type(error).__name__}: {error}): "
                 f"remove {FOLDER} and run `make test`")


def load(root=ROOT):
    """The notes of the checkout ROOT as the last build read them; Stale
    unless that build read README.org as it is now."""
    folder = Path(root) / FOLDER
    try:
        data = json.loads((folder / "blocks.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise Stale(f"{FOLDER}/blocks.json is missing: run `make test`") from None
    except ValueError as error:
        raise damaged(error) from None
    try:
        path = Path(root) / data["org_file"]
        raw = path.read_bytes()
        if hashlib.sha256(raw).hexdigest() != data["sha256"]:
            raise Stale(f"{data['org_file']} changed since {FOLDER} was made: run `make test`")
        return Notes(
            path=path,
            lines=raw.decode("utf-8").split("\n"),
            headings=[(h["level"], h["title"], h["line"]) for h in data["headings"]],
            outputs=data["outputs"],
            blocks=[Block(**b) for b in data["blocks"]],
            folder=folder,
            emacs=data["emacs"],
            org=data["org"],
        )
    except (KeyError, TypeError) as error:
        raise damaged(error) from None
