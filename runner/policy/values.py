"""Word values and arithmetic over tree-sitter-bash nodes (used by runner.policy.walker).

A word is evaluated into segments: literal text (quoted or not) and run-time parts (expansions,
command and process substitutions, arithmetic). Quote removal, backslash escapes, `$'...'`
decoding, globs, brace expansion and a leading `~` are applied as bash does; whatever node type
is not modelled here makes the word's command unknown (fail closed).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from tree_sitter import Node

from runner.policy.script import ANY, WILD, Word

IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
INTEGER = re.compile(r"\s*[-+]?\s*(0[xX][0-9a-fA-F]+|[0-9]+(#[0-9A-Za-z@_]+)?)\s*")
BRACE = re.compile(r"\{[^{}\s]*(,|\.\.)[^{}\s]*\}")
ANSI = {"a": "\a", "b": "\b", "e": "\x1b", "E": "\x1b", "f": "\f", "n": "\n", "r": "\r", "t": "\t",
        "v": "\v", "\\": "\\", "'": "'", '"': '"', "?": "?"}
EXPANSION_TYPES = frozenset({"simple_expansion", "expansion", "command_substitution", "arithmetic_expansion",
                             "process_substitution"})
# `@P` runs the command substitutions in a value; the others only quote or transform it.
SAFE_TRANSFORMS = frozenset("QEAaKkUuL")


class Unknown(Exception):
    """Something in the word can run code the walker cannot see, or is not modelled."""


@dataclass
class Arith:
    """What an arithmetic context reads and assigns."""

    names: set[str] = field(default_factory=set)
    assigns: set[str] = field(default_factory=set)
    dynamic: str | None = None


@dataclass
class _Seg:
    text: str
    quoted: bool
    wild: bool = False
    vanish_ok: bool = True  # a run-time part that may produce no word (not a /dev/fd path)
    brace: bool = False  # brace expansion: the word becomes several words


class Values:
    """Word evaluation; the walker supplies `statement` (for substitutions) and `arith_use`."""

    src: bytes

    def statement(self, node: Node, *, subshell: bool) -> None:
        raise NotImplementedError

    def arith_use(self, arith: Arith) -> None:
        raise NotImplementedError

    def text(self, node: Node) -> str:
        return self.src[node.start_byte:node.end_byte].decode("utf-8", "surrogateescape")

    def between(self, start: int, end: int) -> str:
        return self.src[start:end].decode("utf-8", "surrogateescape")

    # ------------------------------------------------------------------ words

    def word(self, nodes: list[Node]) -> Word:
        """One shell word, possibly split by tree-sitter into adjacent sibling nodes."""
        segs: list[_Seg] = []
        for k, node in enumerate(nodes):
            if k and node.type == "string" and nodes[k - 1].type == "$" and segs and segs[-1].text == "$":
                segs.pop()  # $"..." (a translated string): a message catalog may replace it
                self._segs_of_string(node)
                segs.append(_Seg(WILD, True, wild=True, vanish_ok=False))
                continue
            self._segs(node, segs, quoted=False)
        raw = self.between(nodes[0].start_byte, nodes[-1].end_byte)
        return _build(segs, raw)

    def _segs(self, node: Node, out: list[_Seg], *, quoted: bool) -> None:
        kind = node.type
        if kind in ("word", "number", "$", "extglob_pattern") and not quoted:
            _unquoted_literal(self.text(node), out)
        elif kind == "concatenation":
            self._children_with_gaps(node, out, quoted=quoted, gap=_unquoted_literal)
        elif kind == "raw_string":
            out.append(_Seg(self.text(node)[1:-1], True))
        elif kind == "ansi_c_string":
            out.append(_Seg(decode_ansi_c(self.text(node)[2:-1]), True))
        elif kind == "translated_string" or (kind == "string" and self.text(node).startswith('$"')):
            self._segs_of_string(node)
            out.append(_Seg(WILD, True, wild=True, vanish_ok=False))  # a message catalog may replace it
        elif kind == "string":
            inner = [c for c in node.children if c.type != '"' and c.type != "$"]
            start = node.start_byte + (2 if self.text(node).startswith('$"') else 1)
            self._children_with_gaps(node, out, quoted=True, gap=_dquoted_literal, children=inner,
                                     start=start, end=node.end_byte - 1)
        elif kind == "string_content":
            _dquoted_literal(self.text(node), out)
        elif kind in EXPANSION_TYPES:
            self.expansion(node)
            vanish = kind != "process_substitution"
            if quoted and not _is_list_expansion(self.text(node)):
                vanish = False
            out.append(_Seg(WILD, quoted, wild=True, vanish_ok=vanish))
        elif kind == "brace_expression":
            out.append(_Seg(WILD, False, wild=True, vanish_ok=False, brace=True))
        else:
            raise Unknown(f"unsupported syntax ({kind} in a word)")

    def _segs_of_string(self, node: Node) -> None:
        for child in node.named_children:
            if child.type != "string_content":
                self._segs(child, [], quoted=True)

    def _children_with_gaps(self, node: Node, out: list[_Seg], *, quoted: bool,
                            gap: Callable[[str, list[_Seg]], None], children: list[Node] | None = None,
                            start: int | None = None, end: int | None = None) -> None:
        pos = node.start_byte if start is None else start
        for child in node.children if children is None else children:
            if child.start_byte > pos:
                gap(self.between(pos, child.start_byte), out)
            if child.type in ("string_content",) or (quoted and child.type in ("word", "number")):
                gap(self.text(child), out)
            else:
                self._segs(child, out, quoted=quoted)
            pos = child.end_byte
        stop = node.end_byte if end is None else end
        if stop > pos:
            gap(self.between(pos, stop), out)

    # ------------------------------------------------------------------ expansions

    def expansion(self, node: Node) -> None:
        """Walk what an expansion runs; raise Unknown for what can run hidden code."""
        kind = node.type
        if kind == "command_substitution" and self.text(node).startswith("`"):
            inner = self.text(node)[1:-1]
            unescaped = re.sub(r"\\([$`\\])", r"\1", inner)
            if unescaped != inner:  # bash removes these backslashes before it parses the inside
                self.sub_script(unescaped)
                return
        if kind in ("command_substitution", "process_substitution"):
            self.statement(node, subshell=False)  # the walker gives it its own directory scope
        elif kind == "arithmetic_expansion":
            self.arith_use(self.arith_nodes(node.named_children))
        elif kind == "expansion":
            self._parameter(node)
        elif kind != "simple_expansion":
            raise Unknown(f"unsupported syntax ({kind})")

    def _parameter(self, node: Node) -> None:
        body = self.text(node)[2:-1]
        if body.startswith("!"):
            raise Unknown("indirect expansion ${!...} can evaluate an array subscript held in a value")
        children = node.children
        ops = [self.text(c) for c in children if not c.is_named and c.type not in ("${", "}")]
        if "@" in ops:
            transform = next((self.text(c) for c in children if c.start_byte > 0 and not c.is_named
                              and self.text(c) not in ("${", "}", "@")), "")
            if transform not in SAFE_TRANSFORMS:
                raise Unknown("prompt expansion ${x@P} runs the command substitutions held in a value")
        substring = False
        for child in children:
            if not child.is_named:
                if self.text(child) == ":":
                    substring = True  # ${x:offset:length}: both are arithmetic
                continue
            if child.type == "subscript":
                self._subscript(child)
            elif substring:
                self.arith_use(self.arith_nodes([child]))
            elif child.type in ("variable_name", "special_variable_name"):
                continue
            elif child.type == "regex":
                self.as_dquoted(self.text(child))  # tree-sitter leaves `$(...)` in a pattern unparsed
            elif child.type in EXPANSION_TYPES:
                self.expansion(child)
            else:
                self._segs(child, [], quoted=False)
        if any(op in ("=", ":=") for op in ops):
            name = next((self.text(c) for c in children if c.type == "variable_name"), None)
            if name:
                self.assign(name, safe=False)

    def assign(self, name: str, *, safe: bool, deps: set[str] | None = None, value: Word | None = None) -> None:
        raise NotImplementedError

    def sub_script(self, text: str) -> None:
        """Walk `text` as commands run in a subshell of this script (same variables)."""
        raise NotImplementedError

    def as_dquoted(self, text: str) -> Word:
        """`text` read as the inside of double quotes (a here-document body, a pattern), walked."""
        raise NotImplementedError

    def _subscript(self, node: Node) -> None:
        index = node.child_by_field_name("index")
        if index is not None and self.text(index) not in ("@", "*"):
            self.arith_use(self.arith_nodes([index]))

    # ------------------------------------------------------------------ arithmetic

    def arith_nodes(self, nodes: list[Node]) -> Arith:
        result = Arith()
        for node in nodes:
            self._arith(node, result)
        return result

    def _arith(self, node: Node, out: Arith) -> None:
        kind = node.type
        if kind == "number":
            if not INTEGER.fullmatch(self.text(node)):
                out.dynamic = out.dynamic or "an arithmetic number is not a plain integer"
        elif kind in ("variable_name", "word"):
            text = self.text(node)
            if IDENT.fullmatch(text):
                out.names.add(text)
            elif not INTEGER.fullmatch(text):
                out.dynamic = out.dynamic or f"arithmetic on {text!r}"
        elif kind == "simple_expansion":
            name = self.text(node)[1:]
            out.names.add(name)
        elif kind == "expansion":
            body = self.text(node)[2:-1]
            if IDENT.fullmatch(body) or body in ("#", "?", "$", "!"):
                out.names.add(body)
            elif body.startswith("#") and IDENT.fullmatch(body[1:]):
                return  # a length is a number
            else:
                self.expansion(node)
                out.dynamic = out.dynamic or "arithmetic on an expansion"
        elif kind == "subscript":
            base = node.child_by_field_name("name")
            if base is not None:
                out.names.add(self.text(base))
            index = node.child_by_field_name("index")
            if index is not None:
                self._arith(index, out)
        elif kind in ("command_substitution", "arithmetic_expansion", "string", "raw_string", "concatenation"):
            if kind == "arithmetic_expansion":
                for child in node.named_children:
                    self._arith(child, out)
                return
            self._segs(node, [], quoted=True)
            out.dynamic = out.dynamic or "arithmetic on text computed at run time"
        elif kind in ("binary_expression", "unary_expression", "postfix_expression", "ternary_expression",
                      "parenthesized_expression", "variable_assignment"):
            for k, child in enumerate(node.children):
                if child.is_named:
                    self._arith(child, out)
                elif self.text(child) in _ASSIGN_OPS:
                    target = node.children[0] if kind != "unary_expression" else node.children[k + 1]
                    out.assigns.add(self.text(target).split("[", 1)[0])
            if kind == "variable_assignment":
                target_node = node.child_by_field_name("name")
                if target_node is not None:
                    out.assigns.add(self.text(target_node).split("[", 1)[0])
        elif kind == "comment":
            return
        else:
            out.dynamic = out.dynamic or f"unsupported arithmetic ({kind})"


_ASSIGN_OPS = frozenset({"=", "+=", "-=", "*=", "/=", "%=", "**=", "<<=", ">>=", "&=", "^=", "|=", "++", "--"})


def _is_list_expansion(text: str) -> bool:
    return text in ("$@", "$*", "${@}", "${*}") or text.endswith(("[@]}", "[*]}"))


def _unquoted_literal(text: str, out: list[_Seg]) -> None:
    i, n = 0, len(text)
    buf: list[str] = []
    while i < n:
        c = text[i]
        if c in " \t\n":  # a blank ends a word in bash: tree-sitter-bash glued two words (`a\n\\b`)
            raise Unknown("tree-sitter-bash read a blank as part of a word, so the line is not read as bash "
                          "reads it")
        if c == "\\":
            if text.startswith("\n", i + 1):
                i += 2
                continue
            if buf:
                out.append(_Seg("".join(buf), False))
                buf = []
            out.append(_Seg(text[i + 1] if i + 1 < n else "\\", True))
            i += 2
            continue
        buf.append(c)
        i += 1
    if buf:
        out.append(_Seg("".join(buf), False))


def _dquoted_literal(text: str, out: list[_Seg]) -> None:
    out.append(_Seg(re.sub(r'\\([$`"\\\n])', lambda m: "" if m.group(1) == "\n" else m.group(1), text), True))


def decode_ansi_c(body: str) -> str:
    """The value of `$'body'`; Unknown for a NUL (bash would cut the word there)."""
    out: list[str] = []
    i, n = 0, len(body)
    while i < n:
        c = body[i]
        if c != "\\" or i + 1 >= n:
            out.append(c)
            i += 1
            continue
        e = body[i + 1]
        i += 2
        if e in ANSI:
            out.append(ANSI[e])
            continue
        if e in "01234567":
            m = re.compile(r"[0-7]{1,3}").match(body, i - 1)
            assert m is not None
            code = int(m.group(0), 8) & 0xFF
            i = m.end()
        elif e in "xuU":
            m = re.compile("[0-9a-fA-F]{1,%d}" % {"x": 2, "u": 4, "U": 8}[e]).match(body, i)  # noqa: UP031
            if not m:
                out.append("\\" + e)
                continue
            code = int(m.group(0), 16)
            i = m.end()
        elif e == "c" and i < n:
            code = ord(body[i]) & 0x1F
            i += 1
        else:
            out.append("\\" + e)
            continue
        if code == 0 or code > 0x10FFFF:
            raise Unknown("$'...' holds a NUL or an invalid character")
        out.append(chr(code))
    return "".join(out)


def _build(segs: list[_Seg], raw: str) -> Word:
    """Text, glob and flags of a word from its segments (globs and braces in unquoted text)."""
    unquoted = "".join(s.text if not s.quoted and not s.wild else " " for s in segs)
    if BRACE.search(unquoted) or any(s.brace for s in segs):
        return Word(WILD, raw, any(s.quoted for s in segs), may_vanish=False, glob=ANY)
    merged: list[_Seg] = []
    for seg in segs:  # one chunk of unquoted text, so `a[s]` split by tree-sitter is still a glob
        if merged and not seg.quoted and not seg.wild and not merged[-1].quoted and not merged[-1].wild:
            merged[-1] = _Seg(merged[-1].text + seg.text, False)
        else:
            merged.append(seg)
    segs = merged
    text: list[str] = []
    glob: list[str] = []
    quoted = globbed = literal = expanded = False
    vanish_ok = True
    for k, seg in enumerate(segs):
        if seg.wild:
            text.append(WILD)
            glob.append(ANY)
            expanded = True
            vanish_ok = vanish_ok and seg.vanish_ok
            quoted = quoted or seg.quoted
            continue
        if seg.quoted:
            quoted = literal = True  # even "" is a word
            text.append(seg.text)
            glob.append(_escape(seg.text))
            continue
        literal = literal or bool(seg.text)
        chunk = seg.text
        if k == 0 and chunk.startswith("~"):
            user = re.match(r"~[A-Za-z0-9._-]*", chunk)
            assert user is not None
            text.append(WILD)
            glob.append(ANY)
            chunk = chunk[user.end():]
        t, g, hit = _globs(chunk)
        text.append(t)
        glob.append(g)
        globbed = globbed or hit
    joined = "".join(text)
    vanish = (expanded and not literal and vanish_ok) or globbed
    return Word(joined, raw, quoted, may_vanish=vanish, glob="".join(glob) if WILD in joined else "")


def _escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[\\" + ANY else c for c in text)


def _globs(chunk: str) -> tuple[str, str, bool]:
    """Unquoted literal text -> (text with WILD for glob parts, glob pattern, any glob found)."""
    text: list[str] = []
    glob: list[str] = []
    hit = False
    i = 0
    while i < len(chunk):
        c = chunk[i]
        if c in "*?":
            text.append(WILD)
            glob.append(c)
            hit = True
        elif c == "[" and "]" in chunk[i + 2:]:
            end = chunk.index("]", i + 2)
            text.append(WILD)
            glob.append(chunk[i:end + 1])
            hit = True
            i = end
        else:
            text.append(c)
            glob.append("\\" + c if c in "\\" else c)
        i += 1
    return "".join(text), "".join(glob), hit
