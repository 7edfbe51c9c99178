"""Where a configuration problem is, in words a technician finds in the file.

The validator (:mod:`appliance.config`) names a value by its path in the parsed data,
``modems[2].baudrate``: 0-based, and the third ``[[modems]]`` table is not what anyone
counts in an editor. This turns it into ``line 57: modem "sim2".baudrate``: the modem by
its ``name``, and the line of the key (or of its table, for a key that is missing).

``tomllib`` keeps no positions, so the lines come from a light scan of the text: table
headers (``[unit]``, ``[[modems]]``, counted) and ``key =`` lines at the start of a line.
A key the scan cannot place (a dotted key, an inline table) gets its table's line, or
no line at all; the path is always there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\[(\d+)\]|[A-Za-z0-9_-]+')
_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\"' -]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(r"""^\s*([A-Za-z0-9_-]+|"[^"]*"|'[^']*')\s*=""")

Path = tuple[str | int, ...]


def split_path(path: str) -> Path:
    """``modems[2].baudrate`` → ``("modems", 2, "baudrate")``."""
    out: list[str | int] = []
    for m in _TOKEN.finditer(path):
        if m.group(1) is not None:
            out.append(int(m.group(1)))
        else:
            tok = m.group(0)
            out.append(tok[1:-1] if tok.startswith('"') else tok)
    return tuple(out)


def scan_lines(text: str) -> dict[Path, int]:
    """The 1-based line of every table header and every simple ``key =`` in ``text``."""
    lines: dict[Path, int] = {}
    counts: dict[str, int] = {}
    table: Path = ()
    depth = 0        # open brackets of a multi-line array
    in_string = ""   # an open multi-line string's quotes
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw
        if in_string:
            if line.count(in_string) % 2 == 1:
                in_string = ""
            continue
        if depth:
            depth = max(0, depth + _brackets(line))
            continue
        header = _HEADER.match(line)
        if header:
            name = header.group(2).strip().strip("\"'")
            if header.group(1) == "[[":
                index = counts.get(name, 0)
                counts[name] = index + 1
                table = (*name.split("."), index)
            else:
                table = tuple(name.split("."))
            lines.setdefault(table, no)
            continue
        key = _KEY.match(line)
        if key:
            lines.setdefault((*table, key.group(1).strip("\"'")), no)
            value = line[key.end():]
            for quotes in ('"""', "'''"):
                if value.count(quotes) == 1:
                    in_string = quotes
            depth = max(0, _brackets(value))
    return lines


def _brackets(text: str) -> int:
    """Net open ``[`` in ``text``, outside strings and comments."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'', "", text).split("#", 1)[0]
    return text.count("[") - text.count("]")


class Locator:
    """Turns validator paths into ``line N: modem "sim2".key`` for one configuration."""

    def __init__(self, data: Mapping[str, Any], text: str | None = None) -> None:
        self.data = data
        self.lines = scan_lines(text) if text is not None else {}

    def label(self, path: str) -> str:
        """The path with each entry of an array of tables named by its ``name``."""
        parts = split_path(path)
        out: list[str] = []
        node: Any = self.data
        for i, part in enumerate(parts):
            if isinstance(part, int):
                entry = node[part] if isinstance(node, list | tuple) and part < len(node) \
                    else None
                name = entry.get("name") if isinstance(entry, Mapping) else None
                if out and isinstance(entry, Mapping):
                    what = out.pop()
                    single = what[:-1] if what.endswith("s") else what
                    out.append(f'{single} "{name}"' if isinstance(name, str) and name
                               else f"{single} #{part + 1} (no name)")
                else:
                    out[-1] = f"{out[-1] if out else ''}[{part}]"
                node = entry
                continue
            out.append(part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else f'"{part}"')
            node = node.get(part) if isinstance(node, Mapping) else None
        return ".".join(out)

    def line(self, path: str) -> int | None:
        """The line of the key, else of the nearest enclosing table, else None."""
        parts = split_path(path)
        while parts:
            if parts in self.lines:
                return self.lines[parts]
            parts = parts[:-1]
        return None

    def where(self, path: str) -> str:
        line = self.line(path)
        return f"line {line}: {self.label(path)}" if line else self.label(path)

    def describe(self, path: str, key: str = "") -> str:
        """For a reference inside a message: ``modem "sim1" (line 5)``, at the line of
        ``key`` in it when given."""
        line = self.line(f"{path}.{key}" if key else path)
        return f"{self.label(path)} (line {line})" if line else self.label(path)
