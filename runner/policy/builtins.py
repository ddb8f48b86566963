"""Builtins whose arguments matter to the policy (used by runner.policy.walker's Walker).

`declare`/`local`/`export`/`unset`/`read`/`printf -v`/`[ -v ]` take variable names whose subscripts
bash evaluates as arithmetic; `let` is arithmetic; `eval`/`source` may assign anything; `cd`,
`pushd` and `popd` move the directory later commands run in.
"""

from __future__ import annotations

import posixpath
import re

from tree_sitter import Node

from runner.policy.paths import resolve
from runner.policy.script import ANY, Facts, SimpleCommand, Word
from runner.policy.values import INTEGER, Values

MAX_CWDS = 8
# Builtins that assign the variables named in their operands -> their options that take a value.
_NAME_ASSIGNERS = {"read": "dinNptu", "mapfile": "CcdnOsu", "readarray": "CcdnOsu"}


class Builtins(Values):
    """The walker's handling of builtins; the walker supplies the bookkeeping below."""

    facts: Facts
    out: list[SimpleCommand]
    cwds: frozenset[str]
    current: SimpleCommand | None

    def flag(self, reason: str) -> None:
        raise NotImplementedError

    def arith_text(self, text: str) -> None:
        raise NotImplementedError

    def word_or_flag(self, nodes: list[Node]) -> Word:
        raise NotImplementedError

    def holder(self, node: Node) -> SimpleCommand:
        raise NotImplementedError

    def assignment(self, node: Node, into: SimpleCommand | None = None) -> tuple[str, Word]:
        raise NotImplementedError

    def groups(self, nodes: list[Node]) -> list[list[Node]]:
        raise NotImplementedError

    def declaration(self, node: Node) -> None:
        keyword = node.children[0].type
        sc = SimpleCommand([Word(keyword, keyword)], cwds=self.cwds, display=self.text(node))
        self.current = sc
        for child in node.children[1:]:
            if not child.is_named:
                continue
            if child.type == "variable_assignment":
                name, value = self.assignment(child)
                sc.words.append(Word(f"{name}={value.text}", self.text(child), may_vanish=False, glob=value.glob))
                continue
            if child.type == "variable_name":
                if keyword in ("local", "declare", "typeset"):
                    self.assign(self.text(child), safe=True)
                sc.words.append(Word(self.text(child), self.text(child)))
                continue
            word = self.word_or_flag([child])
            sc.words.append(word)
            if word.known and word.text.startswith(("-", "+")):
                if word.text.startswith("-") and set(word.text[1:]) & set("in"):
                    self.flag(f"`{keyword} {word.text}` makes later assignments run arithmetic or follow names")
                continue
            self._name_argument(word, keyword)
        self.current = sc
        self.out.append(sc)

    def _name_argument(self, word: Word, what: str, *, assigns: bool = True) -> None:
        """An argument naming a variable (`NAME`, `NAME=value`, `a[subscript]`): the subscript is arithmetic."""
        if not word.known:
            self.flag(f"`{what}` names a variable computed at run time (its subscript could run a command)")
            return
        m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)(\[(.*?)\])?(\+?=(.*))?$", word.text, re.DOTALL)
        if m is None:
            return  # not a valid name: bash refuses it
        if m.group(2) is not None and m.group(3) not in ("@", "*"):
            self.arith_text(m.group(3))
        if assigns:
            value = m.group(5)
            literal = value is not None and bool(INTEGER.fullmatch(value) or value == "")
            self.assign(m.group(1), safe=literal and m.group(2) is None,
                        value=Word(value, value) if value is not None else None)

    def unset(self, node: Node) -> None:
        keyword = node.children[0].type
        sc = SimpleCommand([Word(keyword, keyword)], cwds=self.cwds, display=self.text(node))
        self.current = sc
        for group in self.groups([c for c in node.children[1:] if c.is_named]):
            word = self.word_or_flag(group)
            sc.words.append(word)
            if not (word.known and word.text.startswith("-")):
                self._name_argument(word, keyword, assigns=False)
        self.current = sc
        self.out.append(sc)

    def test(self, node: Node) -> None:
        double = node.children[0].type == "[["
        sc = self.holder(node)
        for child in node.children:
            self._test_expr(child, double, sc)

    def _test_expr(self, node: Node, double: bool, sc: SimpleCommand) -> None:
        """`[[ ]]` adds no words (it runs nothing); `[ ]` is the `[` command with its words in order."""
        kind = node.type
        if kind in ("binary_expression", "unary_expression", "parenthesized_expression"):
            ops = [self.text(c) for c in node.children if c.type == "test_operator" or not c.is_named]
            operands = [c for c in node.named_children if c.type != "test_operator"]
            if double and any(o in ("-eq", "-ne", "-lt", "-le", "-gt", "-ge") for o in ops):
                for operand in operands:
                    if operand.type in ("word", "number"):
                        self.arith_text(self.text(operand))
                    else:
                        self.arith_use(self.arith_nodes([operand]))
                return
            if "-v" in ops and operands:
                self._name_argument(self.word_or_flag([operands[-1]]), "-v", assigns=False)
            for child in node.children:
                self._test_expr(child, double, sc)
            return
        if kind == "regex" or kind == "comment":
            return
        if kind == "test_operator" or not node.is_named:
            if not double:
                sc.words.append(Word(self.text(node), self.text(node)))
            return
        word = self.word_or_flag([node])
        if not double:
            sc.words.append(word)

    # ------------------------------------------------------------------ builtins with side effects

    def _builtin(self, sc: SimpleCommand) -> None:
        words = sc.words
        i = 0
        while i < len(words) and words[i].known and words[i].text in ("command", "builtin"):
            i += 1
            while i < len(words) and words[i].known and words[i].text.startswith("-") and words[i].text != "--":
                i += 1
        if i >= len(words) or not words[i].known:
            return
        name, args = posixpath.basename(words[i].text), words[i + 1:]
        if name in _NAME_ASSIGNERS:
            for word in _operands(args, _NAME_ASSIGNERS[name]):
                self._name_argument(word, name)
            self.assign("REPLY" if name == "read" else "MAPFILE", safe=False)
        elif name == "printf":
            for k, w in enumerate(args[:-1]):
                if w.known and w.text == "-v":
                    self._name_argument(args[k + 1], "printf -v")
                    self.facts.unsafe.add(args[k + 1].text.split("[", 1)[0])
        elif name in ("getopts", "wait"):
            if name == "getopts" and len(args) >= 2:
                self._name_argument(args[1], name)
                self.facts.unsafe.add(args[1].text)
            for k, w in enumerate(args[:-1]):
                if name == "wait" and w.known and w.text == "-p":
                    self._name_argument(args[k + 1], "wait -p")
        elif name == "let":
            for w in args:
                if not w.known:
                    self.flag("`let` evaluates arithmetic computed at run time")
                else:
                    self.arith_text(w.text)
        elif name == "test":
            for k, w in enumerate(args[:-1]):
                if w.known and w.text == "-v":
                    self._name_argument(args[k + 1], "test -v", assigns=False)
        elif name in ("eval", "source", "."):
            self.facts.opaque = name
        elif name in ("cd", "pushd", "popd"):
            self._navigate(sc, name, args)

    def _navigate(self, sc: SimpleCommand, name: str, args: list[Word]) -> None:
        operands = [a for a in args if not (a.known and re.fullmatch(r"-[LPe@]+", a.text))]
        if operands and operands[0].known and operands[0].text == "--":
            operands = operands[1:]
        if name == "popd" or (name == "pushd" and (not operands or re.fullmatch(r"[+-]\d+", operands[0].text))):
            sc.navigation = True  # back to a directory this line already went to (or failed)
            return
        if name == "cd" and operands and operands[0].text == "-":
            sc.navigation = True
            return
        if not operands or not operands[0].known:
            self.cwds = self.cwds | {ANY}
            return
        targets = {resolve(cwd, operands[0].text) for cwd in self.cwds}
        sc.navigation = all(t != ANY and not t.startswith("/") for t in targets)
        cwds = self.cwds | targets
        self.cwds = cwds if len(cwds) <= MAX_CWDS else frozenset({ANY})
        self.current = sc


def _operands(args: list[Word], with_value: str) -> list[Word]:
    out: list[Word] = []
    i = 0
    while i < len(args):
        w = args[i]
        if w.known and w.text.startswith("-") and w.text != "-" and not out:
            if w.text == "--":
                out.extend(args[i + 1:])
                break
            if w.text[-1] in with_value:
                i += 1
        else:
            out.append(w)
        i += 1
    return out
