"""Comment text from GitHub: finding the trigger phrase and sanitising what reaches the model.

Everything here treats its input as hostile. The rules (documented in docs/github.md):

Trigger phrase (default `/astra`): matches as a whole word only - not inside another word or
path (`foo/astra`, `/astral`), not escaped (`\\/astra`) - and only in text a reader sees as
prose: never inside a fenced or indented code block, inline code, a block quote (`> /astra ...`
quotes someone else's request), an HTML comment or link-reference definition (both invisible).

Sanitising (comment, issue/PR title and body) removes what a maintainer reading the page does
not see, so nothing hidden can steer the model:
- HTML comments (`<!-- ... -->`, also unterminated ones) and markdown "comments"
  (link-reference definitions such as `[//]: # (hidden)`);
- invisible characters: Unicode format characters (zero-width, bidi controls, tag characters),
  control characters, variation selectors, Hangul fillers;
- hidden markup: `<script>/<style>/<template>/<noscript>` with their content, every HTML tag's
  attributes (`<img alt=... title=...>`, `<span title>`), image alt text and link titles.
- The *text content* of elements is kept, including `<details>` (one click shows it, and it
  usually holds logs the fix needs). Code blocks are kept verbatim apart from invisible
  characters and HTML comments.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator

MAX_INSTRUCTION = 8_000
MAX_BODY = 20_000
TRACKING_MARKER = "<!-- astra-run:tracking"

_HTML_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)
_INVISIBLE_EXTRA = {0x115F, 0x1160, 0x3164, 0xFFA0, 0x034F}
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_QUOTE = re.compile(r"^ {0,3}>")
_LINK_REF_DEF = re.compile(r"""^ {0,3}\[[^\]\n]+\]:\s*\S*(\s+("[^"\n]*"|'[^'\n]*'|\([^)\n]*\)))?\s*$""")
_CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)")
_HIDDEN_ELEMENTS = re.compile(r"<(script|style|template|noscript)\b[^>]*>.*?(</\1\s*>|\Z)", re.DOTALL | re.I)
_IMG_TAG = re.compile(r"<img\b[^>]*>", re.I)
_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>")
_MD_IMAGE = re.compile(r"!\[[^\]\n]*\]\(\s*([^\s()]*)[^)\n]*\)")
_LINK_TITLE = re.compile(r"(\]\(\s*[^\s()]*)\s+(\"[^\"\n]*\"|'[^'\n]*'|\([^)\n]*\))\s*\)")
_BLANKS = re.compile(r"\n{3,}")


def _invisible(ch: str) -> bool:
    cp = ord(ch)
    if ch in "\n\t":
        return False
    if 0xFE00 <= cp <= 0xFE0F or 0xE0100 <= cp <= 0xE01EF or cp in _INVISIBLE_EXTRA:
        return True
    return unicodedata.category(ch) in ("Cf", "Cc", "Co", "Cs")


def strip_invisible(text: str) -> str:
    """Remove HTML comments and invisible characters (applied everywhere, code blocks included)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = "".join(ch for ch in text if not _invisible(ch))
    return _HTML_COMMENT.sub("", text)


def _segments(line: str) -> Iterator[tuple[bool, str]]:
    """A line as (is_code, text) pieces: inline code spans vs the rest."""
    pos = 0
    for m in _CODE_SPAN.finditer(line):
        if m.start() > pos:
            yield False, line[pos:m.start()]
        yield True, m.group(0)
        pos = m.end()
    if pos < len(line):
        yield False, line[pos:]


def _lines(text: str) -> Iterator[tuple[str, str]]:
    """Each line with its kind: 'fence' (a fence line or inside one), 'indented', 'quote', 'ref', 'prose'."""
    fence: str | None = None
    prev_blank = True
    for line in text.split("\n"):
        m = _FENCE.match(line)
        if fence is not None:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) and not line.strip()[
                len(m.group(1)):].strip():
                fence = None
            yield "fence", line
        elif m:
            fence = m.group(1)
            yield "fence", line
        elif (line.startswith("    ") or line.startswith("\t")) and prev_blank and line.strip():
            yield "indented", line
            continue  # an indented block continues while lines stay indented
        elif _QUOTE.match(line):
            yield "quote", line
        elif _LINK_REF_DEF.match(line):
            yield "ref", line
        else:
            yield "prose", line
        prev_blank = not line.strip()


def _clean_prose(segment: str) -> str:
    segment = _MD_IMAGE.sub(lambda m: f"[image: {m.group(1)}]" if m.group(1) else "[image]", segment)
    segment = _LINK_TITLE.sub(r"\1)", segment)
    segment = _IMG_TAG.sub("[image]", segment)
    return _TAG.sub("", segment)


def sanitize(text: str | None, limit: int = MAX_BODY) -> str:
    """Markdown from GitHub -> what a reader sees of it, safe to put in front of the model."""
    if not text:
        return ""
    text = strip_invisible(text)
    text = _HIDDEN_ELEMENTS.sub("", text)
    out: list[str] = []
    for kind, line in _lines(text):
        if kind == "ref":
            continue
        if kind in ("fence", "indented"):
            out.append(line)
            continue
        out.append("".join(seg if code else _clean_prose(seg) for code, seg in _segments(line)))
    cleaned = _BLANKS.sub("\n\n", "\n".join(out)).strip()
    if len(cleaned) > limit:
        cleaned = cleaned[:limit] + f"\n[... cut at {limit} characters]"
    return cleaned


def _trigger_re(phrase: str) -> re.Pattern[str]:
    return re.compile(r"(?<![\w/\\@.:-])" + re.escape(phrase) + r"(?![\w/-])", re.IGNORECASE)


def find_trigger(text: str | None, phrase: str) -> str | None:
    """The instruction after the first visible trigger phrase (sanitised), or None if there is none.

    The instruction is everything after the phrase up to the end of the text (code blocks after
    the trigger are part of it: "/astra fix this: ```traceback```").
    """
    if not text or not phrase.strip():
        return None
    pattern = _trigger_re(phrase.strip())
    visible = _HIDDEN_ELEMENTS.sub("", strip_invisible(text))
    offset = 0
    for kind, line in _lines(visible):
        if kind == "prose":
            masked = "".join(seg if not code else " " * len(seg) for code, seg in _segments(line))
            masked = _TAG.sub(lambda m: " " * len(m.group(0)), masked)  # a phrase inside an attribute
            m = pattern.search(masked)
            if m:
                return sanitize(visible[offset + m.end():], MAX_INSTRUCTION)
        offset += len(line) + 1
    return None


def is_bot(user: object) -> bool:
    """A GitHub App / bot account (`type: Bot`, or a login ending in `[bot]`)."""
    if not isinstance(user, dict):
        return True  # no user at all: never treat it as a human
    login = str(user.get("login") or "")
    return str(user.get("type") or "") == "Bot" or login.lower().endswith("[bot]")


def bot_allowed(login: str, allowed: list[str]) -> bool:
    """`login` is one of the allowed bots (`name` or `name[bot]`, case-insensitive)."""
    name = login.lower().removesuffix("[bot]")
    return any(a.strip().lower().removesuffix("[bot]") == name for a in allowed if a.strip())


def is_tracking_comment(body: str | None) -> bool:
    return bool(body) and TRACKING_MARKER in (body or "")
