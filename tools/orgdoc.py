"""Read the parts of README.org the tools and tests need: its headings, its
source blocks with their header arguments, and the recorded results.

Only what this document uses is understood; anything malformed raises
OrgError naming the file and line.
"""

import re
import textwrap
from dataclasses import dataclass, field

BEGIN = re.compile(r"^\s*#\+begin_src\s+(\S+)(.*)$", re.IGNORECASE)
END = re.compile(r"^\s*#\+end_src\s*$", re.IGNORECASE)
NAME = re.compile(r"^\s*#\+name:\s*(\S+)\s*$", re.IGNORECASE)
RESULTS = re.compile(r"^\s*#\+results(?:\[[^]]*\])?:\s*(\S*)\s*$", re.IGNORECASE)
PROPERTY = re.compile(r"^\s*#\+property:\s*header-args:(\S+?)(\+?)\s+(.*)$", re.IGNORECASE)
HEADING = re.compile(r"^(\*+)\s+(.*?)\s*$")
HEADER_ARG = re.compile(r':([\w-]+)((?:\s+(?!:[\w-])(?:"[^"]*"|\S+))*)')


class OrgError(Exception):
    pass


@dataclass
class Block:
    lang: str
    args: dict
    code: str
    line: int           # of its #+begin_src, counting from 1
    end_line: int       # of its #+end_src
    name: str | None
    heading: str        # the heading it sits under, "" before the first
    number: int         # its position among the blocks under that heading, from 1
    result: str | None = None        # the recorded drawer's content
    result_line: int | None = None   # of its #+RESULTS
    result_end: int | None = None    # of the result's last line

    @property
    def label(self):
        """What tests and messages call it: its name, or heading and position."""
        return self.name or f"{self.heading or 'top'} #{self.number}"

    @property
    def evaluated(self):
        return self.args.get("eval", "yes") not in ("no", "never")

    @property
    def exported(self):
        return self.args.get("exports") != "none"

    @property
    def file(self):
        return self.args.get("file")

    def where(self, path):
        return f"{path}:{self.line}: block {self.label}"


@dataclass
class Document:
    path: str
    lines: list
    headings: list = field(default_factory=list)   # (level, title, line)
    blocks: list = field(default_factory=list)

    def jupyter_blocks(self):
        return [b for b in self.blocks if b.lang == "jupyter-python"]

    def evaluated_blocks(self):
        """The jupyter-python blocks a build runs, in order."""
        return [b for b in self.jupyter_blocks() if b.evaluated]

    def block(self, name):
        for b in self.blocks:
            if b.name == name:
                return b
        raise KeyError(name)


def parse_header_args(text):
    return {key: value.strip().strip('"') if value.strip().startswith('"') else value.strip()
            for key, value in HEADER_ARG.findall(text)}


def _read_result(lines, start, path):
    """The content of the result whose #+RESULTS line is at START (0-based),
    and the index of its last line."""
    i = start + 1
    if i < len(lines) and lines[i].strip().lower() == ":results:":
        body = []
        i += 1
        while i < len(lines) and lines[i].strip().lower() != ":end:":
            if RESULTS.match(lines[i]) or BEGIN.match(lines[i]):
                break
            body.append(lines[i])
            i += 1
        if i >= len(lines) or lines[i].strip().lower() != ":end:":
            raise OrgError(f"{path}:{start + 2}: :results: drawer without :end:")
        return "\n".join(body), i
    body = []
    while i < len(lines) and lines[i].strip():
        body.append(lines[i])
        i += 1
    return "\n".join(body), i - 1


def parse(path):
    with open(path, "rb") as source:
        data = source.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise OrgError(f"{path}:{line}: byte #x{data[error.start]:X} is not UTF-8; "
                       "the notes must be saved as UTF-8") from None
    lines = text.split("\n")
    doc = Document(path, lines)
    defaults = {}
    heading, per_heading, name = "", 0, None
    results = []   # (line index, name or "")
    i = 0
    while i < len(lines):
        line = lines[i]
        if m := HEADING.match(line):
            heading, per_heading = m.group(2), 0
            doc.headings.append((len(m.group(1)), heading, i + 1))
        elif m := PROPERTY.match(line):
            lang, add, text = m.groups()
            args = parse_header_args(text)
            defaults[lang] = {**defaults.get(lang, {}), **args} if add else args
        elif m := NAME.match(line):
            name = m.group(1)
            i += 1
            continue
        elif m := RESULTS.match(line):
            results.append((i, m.group(1)))
        elif m := BEGIN.match(line):
            lang, text = m.group(1), m.group(2)
            start = i
            i += 1
            while i < len(lines) and not END.match(lines[i]):
                if BEGIN.match(lines[i]):
                    break
                i += 1
            if i >= len(lines) or not END.match(lines[i]):
                raise OrgError(f"{path}:{start + 1}: #+begin_src {lang} without #+end_src")
            per_heading += 1
            code = textwrap.dedent("\n".join(lines[start + 1:i]))
            doc.blocks.append(Block(
                lang=lang, args={**defaults.get(lang, {}), **parse_header_args(text)},
                code=code, line=start + 1, end_line=i + 1, name=name,
                heading=heading, number=per_heading))
        name = None   # a #+name: belongs only to the line right below it
        i += 1
    _attach_results(doc, results)
    return doc


def _attach_results(doc, results):
    by_name = {b.name: b for b in doc.blocks if b.name}
    for index, name in results:
        if name:
            block = by_name.get(name)
            if block is None:
                raise OrgError(f"{doc.path}:{index + 1}: #+RESULTS: {name} names no block")
        else:
            before = [b for b in doc.blocks if b.end_line <= index + 1]
            if not before:
                raise OrgError(f"{doc.path}:{index + 1}: #+RESULTS: before any block")
            block = before[-1]
        if block.result is not None:
            raise OrgError(f"{doc.path}:{index + 1}: a second result for {block.where(doc.path)}")
        block.result, end = _read_result(doc.lines, index, doc.path)
        block.result_line, block.result_end = index + 1, end + 1
