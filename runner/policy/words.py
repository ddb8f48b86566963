"""Word-level reading for the shell parser (runner.policy.shell): quoting, expansions, nested
command substitutions, here-document bodies. See shell.py for the whole picture.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

WILD = "\x00"
"""Stands for text only known at run time. A real command line cannot hold NUL (it is refused)."""

MAX_NESTING = 40
BLANK = " \t"
META = " \t\n;&|()<>"
OPS = (";;&", "&&", "||", ";;", ";&", "|&", ";", "|", "&", "(", ")", "\n")
REDIR_OPS = ("&>>", "<<<", "<<-", "&>", "<<", "<>", "<&", ">&", ">>", ">|", "<", ">")
RESERVED = frozenset({
    "if", "then", "elif", "else", "fi", "do", "done", "case", "esac", "while", "until", "for", "in",
    "select", "function", "time", "{", "}", "!", "[[", "]]",
})
FD_RE = re.compile(r"(\d+|\{[A-Za-z_][A-Za-z0-9_]*\})(?=[<>])")
ASSIGN_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\[[^\]]*\])?\+?=")
BRACE_RE = re.compile(r"\{[^{}\s]*(,|\.\.)[^{}\s]*\}")
ANSI = {"a": "\a", "b": "\b", "e": "\x1b", "E": "\x1b", "f": "\f", "n": "\n", "r": "\r", "t": "\t",
         "v": "\v", "\\": "\\", "'": "'", '"': '"', "?": "?"}


class ShellSyntaxError(ValueError):
    """The line is not valid shell as far as this parser can tell (it is then denied)."""


@dataclass
class Word:
    text: str
    """After quote removal; WILD marks text only known at run time."""
    raw: str
    """As written."""
    quoted: bool = False
    may_vanish: bool = False
    """Made only of unquoted expansions or globs: may expand to no word at all (or to several)."""

    @property
    def known(self) -> bool:
        return WILD not in self.text


@dataclass
class Redirect:
    op: str
    target: Word | None = None
    body: str | None = None
    """Here-document or here-string text (None: not known)."""


@dataclass
class SimpleCommand:
    words: list[Word]
    assignments: list[Word] = field(default_factory=list)
    redirects: list[Redirect] = field(default_factory=list)
    speculative: bool = False
    """Found by reading `$((...))`/`((...))` as commands: bash most likely evaluates it as arithmetic."""


@dataclass
class Heredoc:
    redirect: Redirect
    delimiter: str
    strip_tabs: bool
    quoted: bool


class WordReader:
    """Reads words; the grammar (runner.policy.shell.Parser) supplies the nested-list parsing."""

    def __init__(self, src: str, depth: int) -> None:
        if depth > MAX_NESTING:
            raise ShellSyntaxError("the command is nested too deeply")
        self.s = src
        self.n = len(src)
        self.i = 0
        self.depth = depth
        self.nesting = 0
        self.out: list[SimpleCommand] = []
        self.pending: list[Heredoc] = []


    def err(self, what: str) -> ShellSyntaxError:
        return ShellSyntaxError(f"{what} (at offset {self.i})")

    def finish(self) -> None:
        # A here-document still open at the end: bash reads it up to the end of input.
        if self.pending:
            self.read_heredocs()

    def parse_list(self, stop_words: frozenset[str], stop_ops: frozenset[str]) -> str:
        raise NotImplementedError

    def subshell_body(self) -> None:
        raise NotImplementedError

    def read_heredocs(self) -> None:
        pending, self.pending = self.pending, []
        for doc in pending:
            lines = []
            while self.i < self.n:
                end = self.s.find("\n", self.i)
                end = self.n if end < 0 else end
                line = self.s[self.i:end]
                self.i = min(end + 1, self.n)
                if (line.lstrip("\t") if doc.strip_tabs else line) == doc.delimiter:
                    break
                lines.append(line.lstrip("\t") if doc.strip_tabs else line)
            body = "".join(line + "\n" for line in lines)
            if doc.quoted:
                doc.redirect.body = body
            else:
                sub = type(self)(body, self.depth + 1)
                text = sub.expand_heredoc()
                self.out.extend(sub.out)
                doc.redirect.body = text if WILD not in text else None

    def expand_heredoc(self) -> str:
        text: list[str] = []
        while self.i < self.n:
            c = self.s[self.i]
            if c == "\\" and self.i + 1 < self.n and self.s[self.i + 1] in "$`\\\n":
                if self.s[self.i + 1] != "\n":
                    text.append(self.s[self.i + 1])
                self.i += 2
            elif c == "$":
                self.dollar(text, in_dquote=True)
            elif c == "`":
                self.backtick()
                text.append(WILD)
            else:
                text.append(c)
                self.i += 1
        return "".join(text)

    # ------------------------------------------------------------------ words

    def read_word(self) -> Word:
        start = self.i
        s = self.s
        text: list[str] = []
        unquoted: list[str] = []  # unquoted literal characters (for brace expansion)
        quoted = False
        literal = False
        expanded = False
        globbed = False
        while self.i < self.n:
            c = s[self.i]
            if c in "<>" and s.startswith("(", self.i + 1):
                self.i += 2
                self.subshell_body()
                text.append(WILD)
                literal = True  # a /dev/fd path: always one word
                unquoted.append(" ")
                continue
            if c in META:
                break
            if c == "\\":
                if s.startswith("\n", self.i + 1):
                    self.i += 2
                    continue
                quoted = literal = True
                text.append(s[self.i + 1] if self.i + 1 < self.n else "\\")
                unquoted.append(" ")
                self.i += 2
            elif c == "'":
                end = s.find("'", self.i + 1)
                if end < 0:
                    raise self.err("unterminated single quote")
                text.append(s[self.i + 1:end])
                unquoted.append(" ")
                quoted = literal = True
                self.i = end + 1
            elif c == '"':
                self.dquote(text)
                unquoted.append(" ")
                quoted = literal = True
            elif c == "$":
                if s.startswith(("$'", '$"'), self.i):
                    quoted = literal = True
                else:
                    expanded = True
                before = len(text)
                self.dollar(text, in_dquote=False)
                if "".join(text[before:]) == "$":
                    literal = True
                unquoted.append(" ")
            elif c == "`":
                self.backtick()
                text.append(WILD)
                unquoted.append(" ")
                expanded = True
            elif c in "*?" or (c == "[" and re.compile(r"[^\s;&|()<>'\"]*\]").match(s, self.i + 1)):
                text.append(WILD)
                unquoted.append(" ")
                expanded = globbed = True
                self.i += 1
            else:
                text.append(c)
                unquoted.append(c)
                literal = True
                self.i += 1
        raw = s[start:self.i]
        out = "".join(text)
        if BRACE_RE.search("".join(unquoted)):
            return Word(WILD, raw, quoted, may_vanish=False)
        return Word(out, raw, quoted, may_vanish=(expanded and not literal) or globbed)

    def dquote(self, text: list[str]) -> None:
        s = self.s
        self.i += 1
        while True:
            if self.i >= self.n:
                raise self.err("unterminated double quote")
            c = s[self.i]
            if c == '"':
                self.i += 1
                return
            if c == "\\" and self.i + 1 < self.n and s[self.i + 1] in '$`"\\\n':
                if s[self.i + 1] != "\n":
                    text.append(s[self.i + 1])
                self.i += 2
            elif c == "$":
                self.dollar(text, in_dquote=True)
            elif c == "`":
                self.backtick()
                text.append(WILD)
            else:
                text.append(c)
                self.i += 1

    def dollar(self, text: list[str], *, in_dquote: bool) -> None:
        s = self.s
        i = self.i
        nxt = s[i + 1] if i + 1 < self.n else ""
        if nxt == "'" and not in_dquote:
            self.i = i + 2
            text.append(self.ansi_c())
        elif nxt == '"' and not in_dquote:
            self.i = i + 1
            self.dquote(text)
        elif s.startswith("$((", i) and self.arith(i + 3):
            text.append(WILD)
        elif nxt == "(":
            self.i = i + 2
            self.subshell_body()
            text.append(WILD)
        elif nxt == "{":
            if i + 2 < self.n and s[i + 2] in " \t\n|":  # bash 5.3 ${ cmd; } and ${| cmd; }
                self.i = i + 3
                if self.parse_list(frozenset({"}"}), frozenset()) != "}":
                    raise self.err("missing '}'")
                self.i += 1
            else:
                self.param(i + 2)
            text.append(WILD)
        elif nxt and (nxt.isalnum() or nxt == "_"):
            m = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d").match(s, i + 1)
            self.i = m.end() if m else i + 2
            text.append(WILD)
        elif nxt and nxt in "@*#?-$!":
            self.i = i + 2
            text.append(WILD)
        else:
            self.i = i + 1
            text.append("$")

    def ansi_c(self) -> str:
        s = self.s
        out: list[str] = []
        while True:
            if self.i >= self.n:
                raise self.err("unterminated $'...' quote")
            c = s[self.i]
            if c == "'":
                self.i += 1
                return "".join(out)
            if c != "\\":
                out.append(c)
                self.i += 1
                continue
            if self.i + 1 >= self.n:
                raise self.err("unterminated $'...' quote")
            e = s[self.i + 1]
            self.i += 2
            if e in ANSI:
                out.append(ANSI[e])
            elif e in "01234567":
                m = re.compile(r"[0-7]{1,3}").match(s, self.i - 1)
                assert m is not None
                code = int(m.group(0), 8) & 0xFF
                if code == 0:
                    raise self.err("$'...' holds a NUL character")
                out.append(chr(code))
                self.i = m.end()
            elif e in "xuU":
                width = {"x": 2, "u": 4, "U": 8}[e]
                m = re.compile("[0-9a-fA-F]{1,%d}" % width).match(s, self.i)  # noqa: UP031
                if not m:
                    out.append("\\" + e)
                    continue
                code = int(m.group(0), 16)
                if code == 0 or code > 0x10FFFF:
                    raise self.err("$'...' holds a NUL or invalid character")
                out.append(chr(code))
                self.i = m.end()
            elif e == "c" and self.i < self.n:
                out.append(chr(ord(s[self.i]) & 0x1F))
                self.i += 1
            else:
                out.append("\\" + e)
        # unreachable

    def param(self, j: int) -> None:
        """`${...}` from j (after the brace): find its end, collecting nested substitutions."""
        self.i = j
        depth = 1
        scratch: list[str] = []
        while self.i < self.n:
            c = self.s[self.i]
            if c == "}":
                depth -= 1
                self.i += 1
                if depth == 0:
                    return
            elif c == "{":
                depth += 1
                self.i += 1
            elif c == "\\":
                self.i += 2
            elif c == "'":
                end = self.s.find("'", self.i + 1)
                if end < 0:
                    raise self.err("unterminated single quote")
                self.i = end + 1
            elif c == '"':
                self.dquote(scratch)
            elif c == "$":
                self.dollar(scratch, in_dquote=True)
            elif c == "`":
                self.backtick()
            else:
                self.i += 1
        raise self.err("missing '}'")

    def arith(self, j: int) -> bool:
        """`((...))` from j (after the parentheses). False (nothing consumed) when it is not one."""
        save_i, save_out, save_pending = self.i, len(self.out), list(self.pending)
        self.i = j
        depth = 0
        scratch: list[str] = []
        try:
            while self.i < self.n:
                c = self.s[self.i]
                if c == "(":
                    depth += 1
                    self.i += 1
                elif c == ")":
                    if depth == 0:
                        if self.s.startswith("))", self.i):
                            self.speculate(self.s[j:self.i])
                            self.i += 2
                            return True
                        break
                    depth -= 1
                    self.i += 1
                elif c == "$":
                    self.dollar(scratch, in_dquote=True)
                elif c == "`":
                    self.backtick()
                elif c == '"':
                    self.dquote(scratch)
                elif c == "\\":
                    self.i += 2
                else:
                    self.i += 1
        except ShellSyntaxError:
            pass
        self.i, self.pending = save_i, save_pending
        del self.out[save_out:]
        return False

    def speculate(self, content: str) -> None:
        """Commands that `content` would run were it a subshell, for deny rules only."""
        try:
            sub = type(self)("(" + content + "\n)", self.depth + 1)
            if sub.parse_list(frozenset(), frozenset()):
                return
            sub.finish()
        except ShellSyntaxError:
            return
        for sc in sub.out:
            sc.speculative = True
        self.out.extend(sub.out)

    def backtick(self) -> None:
        s = self.s
        self.i += 1
        inner: list[str] = []
        while True:
            if self.i >= self.n:
                raise self.err("unterminated backquote")
            c = s[self.i]
            if c == "`":
                self.i += 1
                break
            if c == "\\" and self.i + 1 < self.n and s[self.i + 1] in "$`\\":
                inner.append(s[self.i + 1])
                self.i += 2
            else:
                inner.append(c)
                self.i += 1
        sub = type(self)("".join(inner), self.depth + 1)
        if sub.parse_list(frozenset(), frozenset()):
            raise self.err("bad command inside backquotes")
        sub.finish()
        self.out.extend(sub.out)
