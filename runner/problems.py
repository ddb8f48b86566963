"""Configuration problems as `FILE:LINE: field: problem`, each reported once, where it was written.

A task's values can come from several files: the task file itself, a batch manifest's
`defaults`, a matrix cell of the manifest (its repo and ref), GitHub's `.astra/task.yaml`. A
problem is about one field (a location like ("limits", "timeout")); `Layers` says which file
wrote that field and on which line, so a bad default is blamed once on the manifest's line and
not on every task file's line 1.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from runner.errors import ConfigError
from runner.yamlio import Loc, Positions, Problem, format_loc

__all__ = ["ConfigProblems", "Layer", "Layers", "Problem", "from_validation", "in_order", "messages_of"]


class ConfigProblems(ConfigError):
    """Every problem found, in the order of the files and then of their lines, each once."""

    def __init__(self, problems: Iterable[Problem | str], *, partial: Any = None,
                 unchecked: frozenset[str] = frozenset()) -> None:
        self.problems = in_order(problems)
        self.partial = partial
        """The task as far as it could be built (a LoadedTask with the bad fields at their defaults),
        so the machine checks can still run on the rest: every problem in one pass."""
        self.unchecked = unchecked
        """The top-level fields of `partial` that are stand-ins, not the user's values."""
        super().__init__("\n".join(str(p) for p in self.problems))


def in_order(problems: Iterable[Problem | str]) -> list[Problem | str]:
    """Deduplicated; problems of one file by line, files in the order they first appear."""
    unique = list(dict.fromkeys(problems))
    rank: dict[str, int] = {}
    for p in unique:
        if isinstance(p, Problem):
            rank.setdefault(p.source, len(rank))

    def key(p: Problem | str) -> tuple[int, int]:
        if isinstance(p, Problem):
            return rank[p.source], p.line
        return len(rank), 0  # problems that name no file come last, in the order found

    return sorted(unique, key=key)


def messages_of(exc: ConfigError) -> list[Problem | str]:
    """The problems a ConfigError holds (one per line when it is not a ConfigProblems)."""
    if isinstance(exc, ConfigProblems):
        return list(exc.problems)
    return [line for line in str(exc).splitlines() if line.strip()]


@dataclass(frozen=True)
class Layer:
    """One file that wrote some of a task's fields.

    `prefix`: where the task's fields sit in that file (("defaults",) in a manifest).
    `only`: explicit sources for some task fields (a matrix cell's ("repo",) comes from
    ("matrix", "repos", 1)); such a layer answers for those fields alone, and wins.
    """

    source: str
    positions: Positions
    prefix: Loc = ()
    only: Mapping[Loc, Loc] | None = None


@dataclass(frozen=True)
class Layers:
    """The files of one task, the task's own first (it wins a tie: its values win the merge)."""

    layers: tuple[Layer, ...] = field(default_factory=tuple)

    @classmethod
    def of(cls, source: str, positions: Positions | None, *more: Layer) -> Layers:
        return cls((Layer(source, positions or Positions()), *more))

    @property
    def main(self) -> Layer:
        """The task's own file (the first layer that is not a flag, a variable or a matrix cell)."""
        return next((la for la in self.layers if la.only is None), Layer("<command line>", Positions()))

    @property
    def source(self) -> str:
        return self.main.source

    def locate(self, loc: Sequence[int | str]) -> tuple[str, int, str]:
        """(file, line, field as shown) of the field at `loc`."""
        loc = tuple(loc)
        best: tuple[int, str, int, str] | None = None
        for layer in self.layers:
            if layer.only is not None:
                for task_loc, file_loc in layer.only.items():
                    if loc[: len(task_loc)] == task_loc:
                        full = (*file_loc, *loc[len(task_loc):])
                        return layer.source, layer.positions.line(full), format_loc(full)
                continue
            full = (*layer.prefix, *loc)
            depth = layer.positions.written_depth(full) - len(layer.prefix)
            if depth > 0 and (best is None or depth > best[0]):
                best = (depth, layer.source, layer.positions.line(full), format_loc(full))
        if best is not None:
            return best[1], best[2], best[3]
        first = self.main
        return first.source, first.positions.line(loc), format_loc(loc)

    def problem(self, loc: Sequence[int | str], message: str) -> Problem:
        source, line, shown = self.locate(loc)
        return Problem(source, line, shown, message, tuple(loc))

    def raw(self, loc: Sequence[int | str]) -> str | None:
        """The source text of a scalar that YAML read as something other than text."""
        loc = tuple(loc)
        for layer in self.layers:
            if layer.only is None and (text := layer.positions.raw.get((*layer.prefix, *loc))) is not None:
                return text
        return None


# ------------------------------------------------------------------------ pydantic errors


def from_validation(exc: ValidationError, layers: Layers) -> list[Problem]:
    """pydantic's errors as problems, one per error, with YAML's surprise types said plainly."""
    out = []
    for err in exc.errors():
        # pydantic appends the validator/type name for union members; drop the non-field parts.
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
        out.append(layers.problem(loc, describe(err, layers.raw(loc))))
    return out


def describe(err: Mapping[str, Any], raw: str | None = None) -> str:
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required field is missing"
    if kind == "string_type" and "input" in err and (surprise := surprise_type(err["input"], raw)):
        return surprise
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    if kind == "literal_error" and "input" in err and not isinstance(err["input"], str) and raw is not None:
        # One of the words, read as something else (`thinking: off` under YAML 1.1 is false).
        words = re.findall(r"'([^']*)'", str((err.get("ctx") or {}).get("expected", "")))
        if raw in words and (surprise := surprise_type(err["input"], raw)):
            return surprise
        if (read := read_as(err["input"])) is not None and read != raw.lower():
            return f"{msg} (`{raw}` is read as {read})"
    return msg


def read_as(value: Any) -> str | None:
    """How YAML read a scalar that is not text, in words: `false`, `the number 1.1`, `a date`."""
    if value is None:
        return "null (no value)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"the number {repr(value) if math.isfinite(value) else str(value)}"
    if isinstance(value, dt.datetime):
        return "a date and time"
    if isinstance(value, dt.date):
        return "a date"
    return None


def surprise_type(value: Any, raw: str | None) -> str | None:
    """`no` is read as false: quote it - for a text field YAML read as something else, with
    the text as written (`name: 1.10` is the number 1.1, `ref: 2024-01-01` a date)."""
    read = read_as(value)
    if read is None:
        return None
    if not raw:
        return "a value is required here" if value is None else f"the value is read as {read}: quote it"
    also = ", or write \"\" for empty text" if value is None else ""
    return f"`{raw}` is read as {read}: quote it (\"{raw}\") to mean the text{also}"
