"""Reading the YAML files a user writes (task files, manifests, scripted models), with limits.

Every input is read with bounds, so a hostile or broken file is a configuration error with its
line, never a traceback or a hang:
- file type: only a regular file is opened for reading (a FIFO would block `open()` forever,
  `/dev/zero` would never end), and it is opened non-blocking so even the check cannot hang;
- size: at most `MAX_FILE_BYTES`;
- encoding: UTF-8 (a BOM is allowed); a bad byte is reported with its line;
- depth: at most `MAX_DEPTH` levels of nesting (1,500 levels overflowed the parser's stack);
- count: at most `MAX_VALUES` values after aliases are expanded (a "billion laughs" document).

YAML is read by ruamel.yaml's round-trip loader (YAML 1.2: `no`, `on`, `yes` are text unless the
file says `%YAML 1.1`), which keeps every key's line and column. Duplicate keys are errors (the
second would silently win); all of them are found in one pass. The result is plain Python data
(dict, list, str, int, float, bool, None, dates) and a `Positions` map of where each field is
written, so checks made later can name its line.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import errno
import os
import re
import stat
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import ConfigError

MAX_FILE_BYTES = 1024 * 1024
MAX_DEPTH = 40
MAX_VALUES = 20_000

Loc = tuple[int | str, ...]


@dataclass(frozen=True)
class Problem:
    """One configuration problem; shown as `FILE:LINE: field: problem` (SPEC §1, exit 2)."""

    source: str
    line: int
    field: str
    message: str
    loc: Loc = dataclasses.field(default=(), compare=False)
    """The task field it is about (the `field` shown may be under `defaults.` of a manifest)."""

    def __str__(self) -> str:
        if self.line <= 0:  # not from a file: an environment variable or a flag
            return f"{self.source}: {self.field}: {self.message}"
        return f"{self.source}:{self.line}: {self.field}: {self.message}"


@dataclass(frozen=True)
class Positions:
    """Where each field of one YAML document is written (1-based lines).

    `lines[loc]` is the line of a mapping key or a sequence item; `raw[loc]` the source text of
    a scalar YAML resolved to something other than text (`no`, `1.10`, `2024-05-01`, `~`), so a
    message can say how it was read.
    """

    lines: dict[Loc, int] = field(default_factory=dict)
    raw: dict[Loc, str] = field(default_factory=dict)
    root_line: int = 1

    def written_depth(self, loc: Sequence[int | str]) -> int:
        """How many leading parts of `loc` are written in the file (0: none)."""
        depth = 0
        for n in range(1, len(loc) + 1):
            if tuple(loc[:n]) not in self.lines:
                break
            depth = n
        return depth

    def line(self, loc: Sequence[int | str]) -> int:
        """The line of the field at `loc`, or of its deepest written part (a missing key)."""
        depth = self.written_depth(loc)
        return self.lines[tuple(loc[:depth])] if depth else self.root_line

    def has(self, loc: Sequence[int | str]) -> bool:
        return tuple(loc) in self.lines

    def under(self, prefix: Sequence[int | str]) -> Positions:
        """The positions of the value at `prefix`, as if it were the document."""
        n = len(prefix)
        pre = tuple(prefix)
        return Positions(
            lines={k[n:]: v for k, v in self.lines.items() if k[:n] == pre and len(k) > n},
            raw={k[n:]: v for k, v in self.raw.items() if k[:n] == pre and len(k) > n},
            root_line=self.lines.get(pre, self.root_line),
        )


YamlDoc = tuple[Any, "Positions", list["Problem"]]
"""What `load_yaml` gives: the data, where each field is, the problems that still let it be checked."""


def format_loc(loc: Sequence[int | str]) -> str:
    """["policy", "allow", 2] -> `policy.allow[2]`; () -> `(top level)`."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


# ------------------------------------------------------------------------------ the file


def read_text(path: Path, what: str, *, limit: int = MAX_FILE_BYTES, source: str | None = None) -> str:
    """A text file's contents, read with limits (see the module docstring); ConfigError otherwise."""
    shown = source or str(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise ConfigError(f"{shown}: no such {what}") from None
    except IsADirectoryError:
        raise ConfigError(f"{shown}: the {what} is a directory, not a file") from None
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot read the {what}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ConfigError(f"{shown}: the {what} is a directory, not a file")
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{shown}: the {what} is not a regular file ({_file_kind(info.st_mode)})")
        os.set_blocking(fd, True)
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 16, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        if exc.errno == errno.EISDIR:
            raise ConfigError(f"{shown}: the {what} is a directory, not a file") from None
        raise ConfigError(f"{shown}: cannot read the {what}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:
        raise ConfigError(f"{shown}: the {what} is larger than {limit // 1024} KiB")
    return decode_utf8(data, shown, what)


def is_dir(path: Path) -> bool:
    """Path.is_dir() that says False for any path the system refuses (a name too long, ...)."""
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def is_file(path: Path) -> bool:
    """Path.is_file() that says False for any path the system refuses."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def decode_utf8(data: bytes, source: str, what: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{source}:{line}: (top level): the {what} is not UTF-8 text "
                          f"(byte 0x{data[exc.start]:02x}); save it as UTF-8") from None


def _file_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a plain file"


# ---------------------------------------------------------------------------- the YAML


def _yaml() -> Any:
    from ruamel.yaml import YAML
    from ruamel.yaml.constructor import RoundTripConstructor

    class RecordingConstructor(RoundTripConstructor):
        """Records every duplicate key instead of stopping at the first (all problems, one pass)."""

        duplicates: list[tuple[int, int, str, int]]

        def check_mapping_key(self, node: Any, key_node: Any, mapping: Any, key: Any, value: Any) -> bool:
            if key in mapping:
                self.duplicates.append(
                    (node.start_mark.line, node.start_mark.column, str(key), key_node.start_mark.line + 1))
                return False
            return True

    y = YAML(typ="rt", pure=True)
    y.Constructor = RecordingConstructor
    y.max_depth = MAX_DEPTH + 1  # the document itself counts as one level
    y.allow_duplicate_keys = False
    return y


def parse_yaml(text: str, source: str) -> tuple[Any, Positions]:
    """YAML text -> (plain data, positions). Any problem is a ConfigError naming its line(s)."""
    data, positions, problems = load_yaml(text, source)
    if problems:
        raise ConfigError("\n".join(str(p) for p in problems))
    return data, positions


def load_yaml(text: str, source: str) -> tuple[Any, Positions, list[Problem]]:
    """YAML text -> (plain data, positions, problems that still let the data be checked).

    Syntax errors raise ConfigError (there is no data to check). Duplicate keys, unsupported
    tags and non-text keys are returned as `FILE:LINE: field: problem`, in line order; the value
    in question is left out of the data, so the rest of the document can still be checked.
    """
    from ruamel.yaml.composer import MaxDepthExceededError
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    y = _yaml()
    y.constructor.duplicates = []
    try:
        with warnings.catch_warnings():  # ruamel's warnings (a reused anchor, 1.1 floats) are not ours to print
            warnings.simplefilter("ignore")
            doc = y.load(text)
    except MaxDepthExceededError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        raise ConfigError(f"{source}:{line}: (top level): nested more than {MAX_DEPTH} levels deep") from None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        problem = " ".join(str(exc.problem or exc.context or "invalid YAML").split())
        raise ConfigError(f"{source}:{line}: YAML syntax error: {problem}") from None
    except YAMLError as exc:
        raise ConfigError(f"{source}:1: YAML error: {' '.join(str(exc).split())[:500]}") from None
    except RecursionError:
        raise ConfigError(f"{source}:1: (top level): nested too deeply (at most {MAX_DEPTH} levels)") from None
    except Exception as exc:  # ruamel raises plain errors for a few broken inputs: still the user's input
        raise ConfigError(f"{source}:1: YAML error: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}") \
            from None
    converter = _Converter(text)
    try:
        data = converter.value(doc, ())
    except _TooMany:
        raise ConfigError(f"{source}:1: (top level): more than {MAX_VALUES} values "
                          "(aliases that expand too far?)") from None
    except RecursionError:
        raise ConfigError(f"{source}:1: (top level): nested too deeply (at most {MAX_DEPTH} levels)") from None
    problems = [Problem(source, line, format_loc(loc), msg) for line, loc, msg in converter.problems]
    for map_line, map_col, key, dup_line in y.constructor.duplicates:
        loc = converter.maps.get((map_line, map_col), ())
        first = converter.positions.lines.get((*loc, key))
        also = f" (first at line {first})" if first else ""
        problems.append(Problem(source, dup_line, format_loc((*loc, key)),
                                f"duplicate key{also}: YAML would keep only one of them; merge them into one"))
    problems.sort(key=lambda p: p.line)
    return (None if data is _DROPPED else data), converter.positions, list(dict.fromkeys(problems))


class _TooMany(Exception):
    """More than MAX_VALUES values: the document is refused as a whole."""


_DROPPED: Any = object()
"""A value left out of the data because of a problem already reported."""


class _Converter:
    """ruamel's round-trip objects -> plain data, recording positions and what cannot be used."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.positions = Positions()
        self.problems: list[tuple[int, Loc, str]] = []
        self.maps: dict[tuple[int, int], Loc] = {}
        """(line, column) where a mapping starts (0-based, as ruamel marks it) -> its location."""
        self.count = 0

    def value(self, node: Any, loc: Loc, line: int = 1, col: int = 0) -> Any:
        from ruamel.yaml.comments import CommentedMap, CommentedSeq, CommentedSet, TaggedScalar

        self.count += 1
        if self.count > MAX_VALUES:
            raise _TooMany
        if len(loc) > MAX_DEPTH:
            self.problems.append((line, loc, f"nested more than {MAX_DEPTH} levels deep"))
            return _DROPPED
        if isinstance(node, TaggedScalar | CommentedSet) or (
            isinstance(node, CommentedMap | CommentedSeq) and _custom_tag(node)
        ):
            tag = getattr(getattr(node, "tag", None), "value", None) or "!!set"
            self.problems.append((line, loc, f"the YAML tag {tag} is not supported here"))
            return _DROPPED
        if isinstance(node, CommentedMap):
            if loc == ():
                self.positions = Positions(root_line=node.lc.line + 1)
            self.maps[(node.lc.line, node.lc.col)] = loc
            out: dict[str, Any] = {}
            for key, child in node.items():
                kline, kcol = node.lc.key(key)
                if not isinstance(key, str):
                    self.problems.append((kline + 1, loc, self._bad_key(key, kline + 1, kcol)))
                    continue
                here = (*loc, key)
                self.positions.lines[here] = kline + 1
                vline, vcol = node.lc.value(key)
                value = self.value(child, here, vline + 1, vcol)
                if value is not _DROPPED:
                    out[key] = value
            return out
        if isinstance(node, CommentedSeq):
            items = []
            for i, child in enumerate(node):
                iline, icol = node.lc.item(i)
                here = (*loc, i)
                self.positions.lines[here] = iline + 1
                value = self.value(child, here, iline + 1, icol)
                items.append(None if value is _DROPPED else value)
            return items
        return self.scalar(node, loc, line, col)

    def _bad_key(self, key: Any, line: int, col: int) -> str:
        from runner.problems import read_as  # late import: runner.problems imports this module

        if (read := read_as(key)) is not None:
            raw = re.split(r":(?:\s|$)", self._source_text(line, col), maxsplit=1)[0].strip()
            return f"the key `{raw}` is read as {read}: quote it (\"{raw}\")"
        return f"a key must be text, not {key!r:.60}"

    def scalar(self, node: Any, loc: Loc, line: int, col: int) -> Any:
        if isinstance(node, str):
            return str(node)
        if isinstance(node, bool):
            value: Any = bool(node)
        elif isinstance(node, int):
            value = int(node)
        elif isinstance(node, float):
            value = float(node)
        elif node is None or isinstance(node, dt.date | dt.datetime):
            value = node
        else:
            self.problems.append((line, loc, f"a {type(node).__name__} value is not supported here"))
            return _DROPPED
        if loc:
            self.positions.raw[loc] = self._source_text(line, col)
        return value

    def _source_text(self, line: int, col: int) -> str:
        """The plain scalar as written at (line, col): up to a comment, or a flow separator."""
        if not 0 < line <= len(self.lines):
            return ""
        rest = self.lines[line - 1][col:]
        m = re.match(r"[^,\]}#]*", rest)
        text = (m.group(0) if m else rest).strip()
        return text[:80]


def _custom_tag(node: Any) -> bool:
    tag = getattr(node, "tag", None)
    value = getattr(tag, "value", None)
    return bool(value) and not str(value).startswith("tag:yaml.org,2002:")


def read_yaml_file(path: Path, what: str, *, source: str | None = None) -> tuple[Any, Positions]:
    """A YAML file's data and positions, read with every limit; ConfigError otherwise."""
    shown = source or str(path)
    return parse_yaml(read_text(path, what, source=shown), shown)


def load_yaml_file(path: Path, what: str, *, source: str | None = None) -> tuple[Any, Positions, list[Problem]]:
    """`load_yaml` of a file read with every limit."""
    shown = source or str(path)
    return load_yaml(read_text(path, what, source=shown), shown)


def iter_locs(data: Any, loc: Loc = ()) -> Iterator[Loc]:
    """Every location in plain data (for tests and checks)."""
    yield loc
    if isinstance(data, dict):
        for k, v in data.items():
            yield from iter_locs(v, (*loc, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from iter_locs(v, (*loc, i))


# ---------------------------------------------------------------------------- the JSON

_JSON_TOKEN = re.compile(r'\s+|"(?:[^"\\]|\\.)*"|[{}\[\]:,]|[^\s{}\[\]:,"]+')
_JSON_NOT_NUMBERS = ("NaN", "Infinity", "-Infinity")


def load_json(text: str, source: str) -> YamlDoc:
    """JSON text -> (data, positions, problems that still let it be checked), with the limits
    of YAML files: nesting, values, duplicate keys (JSON would keep the last one silently), and
    NaN/Infinity (not JSON). A syntax error is a ConfigError at its line."""
    import json

    try:
        data = json.loads(text, parse_constant=lambda _name: None)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}:{exc.lineno}: JSON syntax error: {exc.msg} (column {exc.colno})") from None
    except RecursionError:
        data = None  # far too deep: the scan below says where
    positions, problems = _json_positions(text, source)
    return data, positions, problems


def parse_json(text: str, source: str) -> tuple[Any, Positions]:
    """`load_json`, any problem a ConfigError naming its line(s)."""
    data, positions, problems = load_json(text, source)
    if problems:
        raise ConfigError("\n".join(str(p) for p in problems))
    return data, positions


def read_json_file(path: Path, what: str, *, source: str | None = None) -> YamlDoc:
    """`load_json` of a file read with every limit (regular file, size, UTF-8)."""
    shown = source or str(path)
    return load_json(read_text(path, what, source=shown), shown)


@dataclass
class _JsonFrame:
    kind: str
    loc: Loc
    index: int = 0
    key: str | None = None
    expect_key: bool = True
    seen: dict[str, int] = field(default_factory=dict)


def _json_positions(text: str, source: str) -> tuple[Positions, list[Problem]]:
    """Where each key and item of a (syntactically valid) JSON text is, and what breaks a limit."""
    import json

    positions = Positions()
    problems: list[Problem] = []
    stack: list[_JsonFrame] = []
    line, count = 1, 0
    for m in _JSON_TOKEN.finditer(text):
        tok = m.group(0)
        if tok[0].isspace():
            line += tok.count("\n")
            continue
        frame = stack[-1] if stack else None
        if frame is not None and frame.kind == "{" and frame.expect_key and tok[0] == '"':
            key = str(json.loads(tok))
            here = (*frame.loc, key)
            frame.key, frame.expect_key = key, False
            if key in frame.seen:
                problems.append(Problem(source, line, format_loc(here), f"duplicate key (first at line "
                                        f"{frame.seen[key]}): JSON would keep only the last; merge them into one"))
            else:
                frame.seen[key] = line
                positions.lines[here] = line
            continue
        if tok == ":":
            continue
        if tok == ",":
            if frame is not None:
                if frame.kind == "{":
                    frame.expect_key = True
                else:
                    frame.index += 1
            continue
        if tok in "}]":
            if stack:
                stack.pop()
            continue
        count += 1
        if count > MAX_VALUES:
            raise ConfigError(f"{source}:{line}: (top level): more than {MAX_VALUES} values")
        if frame is None:
            loc: Loc = ()
        elif frame.kind == "{":
            loc = (*frame.loc, frame.key or "")
        else:
            loc = (*frame.loc, frame.index)
            positions.lines[loc] = line
        if tok in _JSON_NOT_NUMBERS:
            problems.append(Problem(source, line, format_loc(loc), f"{tok} is not a JSON number"))
        if tok in "{[":
            if len(stack) >= MAX_DEPTH:
                raise ConfigError(f"{source}:{line}: (top level): nested more than {MAX_DEPTH} levels deep")
            stack.append(_JsonFrame(tok, loc))
    return positions, problems
