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
_FENCE_OPEN = re.compile(r"^ {0,3}(?:(`{3,})[^`]*$|(~{3,}))")
_FENCE_CLOSE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*$")
_LIST_MARKER = re.compile(r"^ {0,3}(?:[-*+]|\d{1,9}[.)])(?: {1,4}|\t|$)")
_QUOTE = re.compile(r"^ {0,3}>")
_HTML_BLOCK_NAMES = (
    "address|article|aside|base|basefont|blockquote|body|caption|center|col|colgroup|dd|details|dialog|dir|div|dl|"
    "dt|fieldset|figcaption|figure|footer|form|frame|frameset|h[1-6]|head|header|hr|html|iframe|legend|li|link|"
    "main|menu|menuitem|nav|noframes|ol|optgroup|option|p|param|search|section|summary|table|tbody|td|tfoot|th|"
    "thead|title|tr|track|ul")
_HTML_BLOCK_RAW = re.compile(r"^ {0,3}<(pre|textarea|script|style)(?:\s|>|$)", re.I)
_HTML_BLOCK = re.compile(rf"^ {{0,3}}</?(?:{_HTML_BLOCK_NAMES})(?:\s|/?>|$)", re.I)
_HTML_BLOCK_ANY = re.compile(r"^ {0,3}</?[A-Za-z][A-Za-z0-9-]*(?:\s|/?>|$)")
"""HTML blocks (CommonMark types 1, 6 and 7): their lines are raw HTML, never code, up to a blank
line (type 1: up to its closing tag)."""
_REF_DEF_START = re.compile(r"^ {0,3}\[(?:[^\[\]\\]|\\.)+\]:")
_REF_DEF = re.compile(
    r"""^\ {0,3}\[(?:[^\[\]\\]|\\.)+\]:[ \t]*+\n?[ \t]*+(?:<[^<>\n]*>|\S++)"""
    r"""(?:(?>[ \t]*+\n[ \t]*+|[ \t]++)(?:"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|\((?:[^()\\]|\\.)*\)))?[ \t]*(?:\n|\Z)""")
"""A link-reference definition (invisible), which may spread over three lines:
`[x]:` / `  http://a` / `  "title"`."""
_CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.DOTALL)
_HIDDEN_ELEMENTS = re.compile(r"<(script|style|template|noscript)\b[^>]*>.*?(</\1\s*>|\Z)", re.DOTALL | re.I)
_ATTRS = r"""
    (?>
        [\s/]++                                  # whitespace (line ends too) or a stray slash
        (?>[^\s/>=]++|=[^\s/>=]*+)              # an attribute name (a browser takes almost anything)
        (?>\s*+=\s*+(?>"[^"]*+"|'[^']*+'|[^\s>]++))?   # its value: a quoted `>` is no end
    )*+
    [\s/]*+>
"""
_IMG_TAG = re.compile(r"<img(?![^\s/>])" + _ATTRS, re.I | re.X)
_TAG = re.compile(r"</?[A-Za-z][^\s/>:@]*+(?![^\s/>])" + _ATTRS, re.X)
_OPEN_TAG_AT_END = re.compile(r"<[A-Za-z][A-Za-z0-9-]*\s[^<>]*=\s*[\"'][^\"']*\Z")
"""A tag cut off inside a quoted attribute value: a browser hides the rest."""
_MD_IMAGE = re.compile(r"!\[[^\[\]]*+\]\(\s*+(<[^<>\n]*>|[^\s()]*+)[^()]*+\)")
_MD_IMAGE_REF = re.compile(r"!\[[^\[\]]*+\](?:\[[^\[\]]*+\])?")
_LINK_TITLE = re.compile(r"(\]\(\s*(?:<[^<>\n]*>|[^\s()]*))\s+(\"[^\"]*\"|'[^']*'|\([^)]*\))\s*\)")
_BLANKS = re.compile(r"\n{3,}")


def _invisible(ch: str) -> bool:
    cp = ord(ch)
    if ch in "\n\t":
        return False
    if 0xFE00 <= cp <= 0xFE0F or 0xE0100 <= cp <= 0xE01EF or cp in _INVISIBLE_EXTRA:
        return True
    return unicodedata.category(ch) in ("Cf", "Cc", "Co", "Cs")


def strip_invisible_chars(text: str) -> str:
    """Only the invisible characters out (and line ends normalised): for code, which is shown verbatim."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return "".join(ch for ch in text if not _invisible(ch))


def strip_invisible(text: str) -> str:
    """Remove HTML comments and invisible characters (applied everywhere, code blocks included)."""
    return _HTML_COMMENT.sub("", strip_invisible_chars(text))


def code_block(text: str, info: str = "", limit: int = 4000) -> str:
    """`text` (code, e.g. a diff hunk) as a fenced block: invisible characters out, capped, and a
    fence longer than any backtick run inside, so nothing in it can close the block."""
    code = strip_invisible_chars(text)
    if len(code) > limit:
        code = code[:limit] + f"\n[... cut at {limit} characters]"
    longest = max((len(m) for m in re.findall(r"`+", code)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{code.rstrip(chr(10))}\n{fence}"


def _segments(chunk: str) -> Iterator[tuple[bool, str]]:
    """A paragraph as (is_code, text) pieces: inline code spans vs the rest."""
    pos = 0
    for m in _CODE_SPAN.finditer(chunk):
        if m.start() > pos:
            yield False, chunk[pos:m.start()]
        yield True, m.group(0)
        pos = m.end()
    if pos < len(chunk):
        yield False, chunk[pos:]


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _line_kinds(lines: list[str]) -> list[str]:
    """Each line's kind: 'fence' (a fence line or inside one), 'indented', 'quote', 'ref', 'html' (raw HTML
    of an HTML block: no code spans or fences inside), 'prose'.

    A small model of CommonMark's block structure, enough to know what a reader sees as prose:
    list items (a fence or indented code inside one is indented by the item's content indent), block
    quotes with their lazy continuation lines (`> quote` then `/astra` on the next line is still
    the quote), and link-reference definitions over up to three lines.
    """
    kinds: list[str] = []
    lists: list[int] = []  # content indents of the open list items, innermost last
    fence: tuple[str, int, int] | None = None  # (char, length, content indent)
    html: str | None = None  # inside an HTML block: "" (ends at a blank line) or the closing tag
    prev_blank, in_quote, in_indented = True, False, False
    i = 0
    while i < len(lines):
        line = lines[i].expandtabs(4)
        blank = not line.strip()
        ind = _indent(line)
        if fence is not None:
            if blank or ind >= fence[2]:
                m = _FENCE_CLOSE.match(line[fence[2]:])
                if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= fence[1]:
                    fence = None
                kinds.append("fence")
                i += 1
                continue
            fence = None  # the list item ends, and the code block with it
        if html is not None:
            if (html and html in line.lower()) or (not html and blank):
                html = None
            else:
                kinds.append("html")
                i += 1
                continue
            if not blank:
                kinds.append("html")
                i += 1
                continue
        if blank:
            kinds.append("prose")
            prev_blank, in_quote = True, False
            i += 1
            continue
        if prev_blank or _LIST_MARKER.match(line):  # a lazy continuation line keeps its list item
            while lists and ind < lists[-1]:
                lists.pop()
        base = max((c for c in lists if c <= ind), default=0)
        rest = line[base:]
        if in_indented and _indent(rest) >= 4:
            kinds.append("indented")
            i += 1
            continue
        in_indented = False
        while (m := _LIST_MARKER.match(rest)) and not in_quote:
            marker_end = len(line) - len(rest) + m.end()
            if not rest[m.end():].strip():  # an empty item: its content starts on the next line
                marker_end = len(line) - len(rest) + len(rest[:m.end()].rstrip()) + 1
            lists.append(marker_end)
            rest = line[marker_end:]
        col = len(line) - len(rest)
        if in_quote or _QUOTE.match(rest):
            kind, in_quote = "quote", True
        elif m := _HTML_BLOCK_RAW.match(rest):
            html = f"</{m.group(1).lower()}>"
            if html in rest.lower()[m.end():]:
                html = None
            kind = "html"
        elif _HTML_BLOCK.match(rest) or (prev_blank and _HTML_BLOCK_ANY.match(rest)):
            html, kind = "", "html"
        elif m := _FENCE_OPEN.match(rest):
            mark = m.group(1) or m.group(2)
            fence = (mark[0], len(mark), col)
            kind = "fence"
        elif prev_blank and _indent(rest) >= 4:
            kind, in_indented = "indented", True
        elif _REF_DEF_START.match(rest) and (ref := _REF_DEF.match("\n".join(lines[i:i + 3])[col:])):
            n = ref.group(0).rstrip("\n").count("\n") + 1
            kinds += ["ref"] * n
            i += n
            prev_blank = False
            continue
        else:
            kind = "prose"
        kinds.append(kind)
        prev_blank = False
        i += 1
    return kinds


def _chunks(text: str) -> Iterator[tuple[str, str]]:
    """The text as (kind, chunk): runs of prose (or quote) lines are joined into one chunk so that
    a tag or code span over several lines is seen whole; every other line is a chunk of its own.
    Joining the chunks with newlines gives the text back."""
    lines = text.split("\n")
    kinds = _line_kinds(lines)
    run: list[str] = []
    run_kind = ""
    for kind, line in zip(kinds, lines, strict=True):
        if kind in ("prose", "quote", "html") and line.strip():
            if run and kind != run_kind:
                yield run_kind, "\n".join(run)
                run = []
            run.append(line)
            run_kind = kind
            continue
        if run:
            yield run_kind, "\n".join(run)
            run = []
        yield kind, line
    if run:
        yield run_kind, "\n".join(run)


def _clean_prose(segment: str) -> str:
    segment = _MD_IMAGE.sub(lambda m: f"[image: {m.group(1).strip('<>')}]" if m.group(1) else "[image]", segment)
    segment = _MD_IMAGE_REF.sub("[image]", segment)
    segment = _LINK_TITLE.sub(r"\1)", segment)
    segment = _IMG_TAG.sub("[image]", segment)
    segment = _TAG.sub("", segment)
    return _OPEN_TAG_AT_END.sub("", segment)


def sanitize(text: str | None, limit: int = MAX_BODY) -> str:
    """Markdown from GitHub -> what a reader sees of it, safe to put in front of the model."""
    if not text:
        return ""
    text = strip_invisible(text)
    text = _HIDDEN_ELEMENTS.sub("", text)
    out: list[str] = []
    for kind, chunk in _chunks(text):
        if kind == "ref":
            continue
        if kind in ("fence", "indented"):
            out.append(chunk)
            continue
        if kind == "html":
            out.append(_clean_prose(chunk))
            continue
        out.append("".join(seg if code else _clean_prose(seg) for code, seg in _segments(chunk)))
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
    for kind, chunk in _chunks(visible):
        if kind in ("prose", "html"):
            masked = "".join(seg if not code else " " * len(seg) for code, seg in _segments(chunk))
            masked = _TAG.sub(lambda m: " " * len(m.group(0)), masked)  # a phrase inside an attribute
            masked = _OPEN_TAG_AT_END.sub(lambda m: " " * len(m.group(0)), masked)
            m = pattern.search(masked)
            if m:
                return sanitize(visible[offset + m.end():], MAX_INSTRUCTION)
        offset += len(chunk) + 1
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
