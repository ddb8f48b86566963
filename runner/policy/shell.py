"""A bash parser for the policy: the command line -> the simple commands it would run.

It is a recursive-descent parser over the raw text (no bashlex), written to *find every command*,
not to run anything. It knows quoting (`'…'`, `"…"`, `$'…'`, `$"…"`, backslashes), the list and
pipeline operators, subshells and groups, `if/while/until/for/select/case`, functions, `[[ ]]`,
`(( ))`, redirections with here-strings and here-documents, and every place where bash runs a
nested command: `$(…)`, backticks, `<(…)`/`>(…)`, `${ …; }`, and substitutions inside double
quotes, `${…}`, `$((…))` and unquoted here-document bodies. Commands are collected from all of
them, including function bodies that may never be called.

Text whose value is only known at run time (parameter expansion, command substitution, globs,
brace expansion) is kept as the marker `WILD` inside the word's text; the policy treats it as
"could be anything". Anything the parser does not understand raises ShellSyntaxError; the policy
denies such a line.
"""

from __future__ import annotations

import re

from runner.policy.words import (
    ASSIGN_RE,
    BLANK,
    FD_RE,
    MAX_NESTING,
    META,
    OPS,
    REDIR_OPS,
    RESERVED,
    WILD,
    Heredoc,
    Redirect,
    ShellSyntaxError,
    SimpleCommand,
    Word,
    WordReader,
)

__all__ = ["WILD", "Redirect", "ShellSyntaxError", "SimpleCommand", "Word", "parse"]


def parse(src: str) -> list[SimpleCommand]:
    """Every simple command of `src`, in source order (nested ones included)."""
    if WILD in src:
        raise ShellSyntaxError("the command holds a NUL character")
    parser = Parser(src, 0)
    try:
        stop = parser.parse_list(frozenset(), frozenset())
        if stop:
            raise ShellSyntaxError(f"unexpected {stop!r}")
        parser.finish()
    except RecursionError:
        raise ShellSyntaxError("the command is nested too deeply") from None
    return parser.out


class Parser(WordReader):
    """The grammar: lists, pipelines, compound commands, simple commands, redirections."""

    def skip(self, newlines: bool = False) -> None:
        s = self.s
        while self.i < self.n:
            c = s[self.i]
            if c in BLANK:
                self.i += 1
            elif c == "\\" and s.startswith("\n", self.i + 1):
                self.i += 2
            elif c == "#":
                while self.i < self.n and s[self.i] != "\n":
                    self.i += 1
            elif c == "\n" and newlines:
                self.i += 1
                self.read_heredocs()
            else:
                return

    def peek_op(self) -> str | None:
        for op in OPS:
            if self.s.startswith(op, self.i):
                return op
        return None

    def peek_reserved(self) -> str | None:
        m = re.compile(r"[^\s;&|()<>]+").match(self.s, self.i)
        if not m or m.group(0) not in RESERVED:
            return None
        word = m.group(0)
        end = m.end()
        if word == "{" and end < self.n and self.s[end] not in " \t\n":
            return None
        return word

    def expect_reserved(self, word: str) -> None:
        self.skip(newlines=True)
        if self.peek_reserved() != word:
            raise self.err(f"expected {word!r}")
        self.i += len(word)

    def at_redirect(self) -> bool:
        j = self.i
        m = FD_RE.match(self.s, j)
        if m:
            j = m.end()
        if self.s.startswith(("<(", ">("), j):
            return False
        return any(self.s.startswith(op, j) for op in REDIR_OPS)

    # ------------------------------------------------------------------ lists and commands

    def parse_list(self, stop_words: frozenset[str], stop_ops: frozenset[str]) -> str:
        """Commands up to a stop word/operator (not consumed); returns it, or '' at the end."""
        self.nesting += 1
        if self.nesting > MAX_NESTING:
            raise self.err("the command is nested too deeply")
        try:
            while True:
                self.skip(newlines=True)
                if self.i >= self.n:
                    return ""
                op = self.peek_op()
                if op is not None and op in stop_ops:
                    return op
                word = self.peek_reserved()
                if word is not None and word in stop_words:
                    return word
                self.parse_and_or()
                self.skip()
                if self.i >= self.n:
                    return ""
                op = self.peek_op()
                word = self.peek_reserved()
                if op in (";", "&"):
                    self.i += 1
                elif not (op == "\n" or (op is not None and op in stop_ops)
                          or (word is not None and word in stop_words)):
                    raise self.err(f"unexpected {self.s[self.i]!r}")
        finally:
            self.nesting -= 1

    def parse_and_or(self) -> None:
        self.parse_pipeline()
        while True:
            self.skip()
            if self.peek_op() in ("&&", "||"):
                self.i += 2
                self.skip(newlines=True)
                self.parse_pipeline()
            else:
                return

    def parse_pipeline(self) -> None:
        while True:
            self.skip()
            word = self.peek_reserved()
            if word == "!":
                self.i += 1
            elif word == "time":
                self.i += 4
                self.skip()
                if re.compile(r"-p(?=[\s;&|()<>]|$)").match(self.s, self.i):
                    self.i += 2
            else:
                break
        self.parse_command()
        while True:
            self.skip()
            op = self.peek_op()
            if op in ("|", "|&"):
                self.i += len(op or "")
                self.skip(newlines=True)
                self.parse_command()
            else:
                return

    def parse_command(self) -> None:
        self.skip()
        if self.i >= self.n:
            raise self.err("a command is missing")
        word = self.peek_reserved()
        if word == "{":
            self.i += 1
            if self.parse_list(frozenset({"}"}), frozenset()) != "}":
                raise self.err("missing '}'")
            self.i += 1
        elif self.s.startswith("((", self.i) and self.arith(self.i + 2):
            pass
        elif self.peek_op() == "(":
            self.i += 1
            self.subshell_body()
        elif word == "if":
            self.i += 2
            self.clause("then")
            while True:
                stop = self.parse_list(frozenset({"elif", "else", "fi"}), frozenset())
                if stop == "elif":
                    self.i += 4
                    self.clause("then")
                elif stop == "else":
                    self.i += 4
                elif stop == "fi":
                    self.i += 2
                    break
                else:
                    raise self.err("missing 'fi'")
        elif word in ("while", "until"):
            self.i += len(word)
            self.clause("do")
            self.clause("done")
        elif word in ("for", "select"):
            self.i += len(word)
            self.for_head()
            self.skip(newlines=True)
            if self.peek_reserved() == "{":
                self.parse_command()
                return
            self.expect_reserved("do")
            self.clause("done")
        elif word == "case":
            self.i += 4
            self.case_body()
        elif word == "function":
            self.i += 8
            self.skip()
            self.read_word()
            self.skip()
            if self.s.startswith("(", self.i):
                self.i += 1
                self.skip()
                if not self.s.startswith(")", self.i):
                    raise self.err("expected ')' after the function name")
                self.i += 1
            self.skip(newlines=True)
            self.parse_command()
            return
        elif word == "[[":
            self.i += 2
            self.cond_body()
        elif word is not None and word not in ("!", "time"):
            raise self.err(f"unexpected {word!r}")
        else:
            self.parse_simple()
            return
        self.trailing_redirects()

    def clause(self, end: str) -> None:
        if self.parse_list(frozenset({end}), frozenset()) != end:
            raise self.err(f"missing {end!r}")
        self.i += len(end)

    def subshell_body(self) -> None:
        if self.parse_list(frozenset(), frozenset({")"})) != ")":
            raise self.err("missing ')'")
        self.i += 1

    def trailing_redirects(self) -> None:
        redirects: list[Redirect] = []
        while True:
            self.skip()
            if not self.at_redirect():
                break
            redirects.append(self.redirect())
        if redirects:
            self.out.append(SimpleCommand([], [], redirects))

    def for_head(self) -> None:
        self.skip()
        if self.s.startswith("((", self.i):
            if not self.arith(self.i + 2):
                raise self.err("bad for (( ))")
        else:
            self.read_word()
            self.skip(newlines=True)
            if self.peek_reserved() == "in":
                self.i += 2
                words = []
                while True:
                    self.skip()
                    if self.i >= self.n or self.s[self.i] in ";\n&|()<>":
                        break
                    words.append(self.read_word())
                self.out.append(SimpleCommand([], words, []))  # expansions in the list run
        self.skip()
        if self.peek_op() == ";":
            self.i += 1

    def case_body(self) -> None:
        self.skip()
        self.out.append(SimpleCommand([], [self.read_word()], []))
        self.expect_reserved("in")
        while True:
            self.skip(newlines=True)
            if self.i >= self.n:
                raise self.err("missing 'esac'")
            if self.peek_reserved() == "esac":
                self.i += 4
                return
            if self.s.startswith("(", self.i):
                self.i += 1
            while True:  # patterns: word ( '|' word )* ')'
                self.skip()
                if self.i < self.n and self.s[self.i] not in META:
                    self.read_word()
                    self.skip()
                if self.s.startswith("|", self.i):
                    self.i += 1
                elif self.s.startswith(")", self.i):
                    self.i += 1
                    break
                else:
                    raise self.err("bad case pattern")
            stop = self.parse_list(frozenset({"esac"}), frozenset({";;", ";&", ";;&"}))
            if stop in (";;", ";&", ";;&"):
                self.i += len(stop)
            elif stop != "esac":
                raise self.err("missing 'esac'")

    def cond_body(self) -> None:
        words = []
        while True:
            self.skip(newlines=True)
            if self.i >= self.n:
                raise self.err("missing ']]'")
            if self.peek_reserved() == "]]":
                self.i += 2
                break
            op = next((o for o in ("&&", "||", "(", ")", "!", "<", ">", "=~") if self.s.startswith(o, self.i)),
                      None)
            if op is not None:
                self.i += len(op)
            elif self.s[self.i] in META:
                self.i += 1
            else:
                words.append(self.read_word())
        self.out.append(SimpleCommand([], words, []))

    def parse_simple(self) -> None:
        words: list[Word] = []
        assigns: list[Word] = []
        redirects: list[Redirect] = []
        while True:
            self.skip()
            if self.i >= self.n:
                break
            if self.at_redirect():
                redirects.append(self.redirect())
                continue
            c = self.s[self.i]
            if c in META and not (c in "<>" and self.s.startswith("(", self.i + 1)):
                break
            word = self.read_word()
            declaring = bool(words) and words[0].text in ("declare", "typeset", "local", "export", "readonly")
            if (not words or declaring) and ASSIGN_RE.match(word.raw):
                if word.raw.endswith("=") and self.s.startswith("(", self.i):
                    self.i += 1
                    while True:
                        self.skip(newlines=True)
                        if self.s.startswith(")", self.i):
                            self.i += 1
                            break
                        if self.i >= self.n or self.s[self.i] in META:
                            raise self.err("bad array assignment")
                        assigns.append(self.read_word())
                (words if declaring else assigns).append(word)
            else:
                words.append(word)
        if len(words) == 1 and not assigns and not redirects and self.peek_op() == "(":
            self.i += 1  # name () compound-command
            self.skip()
            if not self.s.startswith(")", self.i):
                raise self.err("expected ')' in a function definition")
            self.i += 1
            self.skip(newlines=True)
            self.parse_command()
            return
        if not (words or assigns or redirects):
            raise self.err(f"unexpected {self.s[self.i]!r}" if self.i < self.n else "a command is missing")
        self.out.append(SimpleCommand(words, assigns, redirects))

    def redirect(self) -> Redirect:
        m = FD_RE.match(self.s, self.i)
        if m:
            self.i = m.end()
        op = next(o for o in REDIR_OPS if self.s.startswith(o, self.i))
        self.i += len(op)
        self.skip()
        if self.i >= self.n or (self.s[self.i] in META and not self.s.startswith(("<(", ">("), self.i)):
            raise self.err(f"a redirection {op!r} needs a target")
        target = self.read_word()
        red = Redirect(op, target)
        if op in ("<<", "<<-"):
            delim = re.sub(r"""['"\\]""", "", target.raw)
            if target.raw.startswith(("$'", '$"')):
                delim = delim[1:]
            self.pending.append(Heredoc(red, delim, op == "<<-", target.quoted))
        elif op == "<<<":
            red.body = target.text if target.known else None
        return red
