"""Text as its reader will see it, mapped back to the text as written (for redaction).

A secret can be written so that a search of the raw text misses it while every reader still sees
it: XML character references (`&#x73;&#x6b;...`, decoded by any JUnit viewer), an ANSI escape
or a zero-width/bidi character in the middle (invisible on a terminal or a web page), URL
encoding, `\\u`/`\\x` escapes in source or JSON. `decoded` undoes all of these at once and keeps,
for every character of the result, where it came from, so a match found in what the reader sees
masks exactly the written characters that show it. `View` stacks such decodings (an escape
inside an entity: `&#x1b;[0m`) and a whitespace-free layer for encodings a tool wraps over lines
(base64 at 76 columns).
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

CONTROL_AND_BIDI = (
    "\x00-\x08\x0b-\x1f\x7f-\x9f"  # C0 but tab and newline, DEL, C1
    "\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff"  # zero-width, bidi embeddings/isolates, BOM
)
"""What a reader does not see as text: control characters and invisible formatting characters."""

ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]|\x9b[0-?]*[ -/]*[@-~]")
"""Terminal escape sequences: CSI (colours, cursor moves), OSC (titles, hyperlinks), two-byte ESC."""

_ESCAPES = re.compile(
    rf"""(?P<hidden>{ANSI.pattern}|[{CONTROL_AND_BIDI}])
      | &\#(?P<dec>[0-9]{{1,7}});
      | &\#[xX](?P<hex>[0-9a-fA-F]{{1,6}});
      | &(?P<named>amp|lt|gt|quot|apos);
      | %(?P<pct>[0-9a-fA-F]{{2}})
      | \\u(?P<u4>[0-9a-fA-F]{{4}})
      | \\x(?P<x2>[0-9a-fA-F]{{2}})""",
    re.VERBOSE,
)
_TRIGGERS = re.compile(rf"[&%\\\x1b\x9b{CONTROL_AND_BIDI}]")
_NAMED = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}
_WHITESPACE = re.compile(r"\s+")


def _replacement(m: re.Match[str]) -> str:
    if m.group("hidden") is not None:
        return ""
    if m.group("named") is not None:
        return _NAMED[m.group("named")]
    digits = m.group("dec") or m.group("hex") or m.group("pct") or m.group("u4") or m.group("x2")
    code = int(digits, 10 if m.group("dec") else 16)
    return chr(code) if code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else m.group(0)


@dataclass
class Layer:
    """One decoding: `text` (the result) and, per region, where it came from in the layer below."""

    text: str
    starts: list[int]
    """Start in `text` of every non-empty region, ascending."""
    regions: list[tuple[int, int, int, int]]
    """(start in text, length in text, start below, length below) of each non-empty region."""

    def below(self, start: int, end: int) -> tuple[int, int]:
        """The span of the layer below that shows text[start:end] (end > start)."""
        i = bisect.bisect_right(self.starts, start) - 1
        vs, vl, os_, ol = self.regions[i]
        lo = os_ + (start - vs) if vl == ol else os_
        j = bisect.bisect_right(self.starts, end - 1) - 1
        vs, vl, os_, ol = self.regions[j]
        hi = os_ + (end - vs) if vl == ol else os_ + ol
        return lo, hi


def _layer(text: str, pattern: re.Pattern[str], repl: object) -> Layer | None:
    """Apply `pattern` -> `repl(match)` once over `text`, keeping the map; None when nothing matched."""
    out: list[str] = []
    starts: list[int] = []
    regions: list[tuple[int, int, int, int]] = []
    pos = vpos = 0
    changed = False
    for m in pattern.finditer(text):
        new = repl(m) if callable(repl) else str(repl)
        if new == m.group(0):
            continue
        changed = True
        if m.start() > pos:
            starts.append(vpos)
            regions.append((vpos, m.start() - pos, pos, m.start() - pos))
            out.append(text[pos:m.start()])
            vpos += m.start() - pos
        if new:
            starts.append(vpos)
            regions.append((vpos, len(new), m.start(), m.end() - m.start()))
            out.append(new)
            vpos += len(new)
        pos = m.end()
    if not changed:
        return None
    if pos < len(text):
        starts.append(vpos)
        regions.append((vpos, len(text) - pos, pos, len(text) - pos))
        out.append(text[pos:])
    if not starts:  # everything was hidden
        return Layer("", [0], [(0, 0, 0, len(text))])
    return Layer("".join(out), starts, regions)


class View:
    """`text` decoded up to `depth` times; spans found in any level map back to `text`."""

    def __init__(self, text: str, depth: int = 2) -> None:
        self.levels: list[tuple[str, list[Layer]]] = [(text, [])]
        layers: list[Layer] = []
        current = text
        for _ in range(depth):
            if not _TRIGGERS.search(current):
                break
            layer = _layer(current, _ESCAPES, _replacement)
            if layer is None:
                break
            layers = [*layers, layer]
            current = layer.text
            self.levels.append((current, layers))

    def compact(self) -> tuple[str, list[Layer]]:
        """The most decoded level with all whitespace removed (for encodings wrapped over lines)."""
        text, layers = self.levels[-1]
        layer = _layer(text, _WHITESPACE, "")
        return (text, layers) if layer is None or not layer.text else (layer.text, [*layers, layer])

    @staticmethod
    def to_original(layers: list[Layer], start: int, end: int) -> tuple[int, int]:
        for layer in reversed(layers):
            start, end = layer.below(start, end)
        return start, end


def decoded_levels(text: str, depth: int = 2) -> list[str]:
    """The levels of `View(text)` without the maps back (fast: for a yes/no question)."""
    levels = [text]
    for _ in range(depth):
        if not _TRIGGERS.search(levels[-1]):
            break
        decoded = _ESCAPES.sub(_replacement, levels[-1])
        if decoded == levels[-1]:
            break
        levels.append(decoded)
    return levels


def without_whitespace(text: str) -> str:
    return _WHITESPACE.sub("", text)


def strip_hidden(text: str) -> str:
    """`text` without terminal escapes, control characters (but tab and newline) and bidi or
    zero-width characters: what a person reading summary.md or a CI log should be shown."""
    return re.sub(rf"[{CONTROL_AND_BIDI}]", "", ANSI.sub("", text))
