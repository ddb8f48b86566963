"""From a bash command line to its simple commands, by walking tree-sitter-bash's syntax tree.

`walk(line)` parses with tree-sitter-bash and visits every node, fail-closed: a parse error is a
ShellSyntaxError, and a node type the walker does not model, or a construct that can run code the
walker cannot see, sets `unknown` on the command it belongs to (the policy then denies the line
unless bash is allowed outright). Commands are collected from everywhere bash may run one: lists,
pipelines, compound commands, function bodies (called or not), `$(...)`, backticks, `<(...)`,
here-document bodies, parameter-expansion defaults. Nested command strings (`bash -c`, `eval`,
`trap`) are analysed by runner.policy.commands, which calls `walk` again with `nested=True`.

The walker also follows the working directory (`cd`, `pushd`, `popd`) as the set of directories a
command may run in (a `cd` may fail, so the old directory stays possible), and the variable facts
(runner.policy.script.Facts) that decide whether arithmetic may run hidden code.
"""

from __future__ import annotations

import re

from tree_sitter import Node

from runner.policy.builtins import Builtins
from runner.policy.grammar import PARSER, parse, unseen_substitution
from runner.policy.script import (
    ANY,
    CODE_VARIABLES,
    COMMAND_VARIABLES,
    ArithUse,
    Facts,
    Redirect,
    ShellSyntaxError,
    SimpleCommand,
    Word,
)
from runner.policy.values import INTEGER, Arith, Unknown

_CONTAINERS = frozenset({"program", "list", "pipeline", "do_group", "negated_command", "if_statement",
                         "elif_clause", "else_clause", "while_statement"})
_REDIRECTS = frozenset({"file_redirect", "heredoc_redirect", "herestring_redirect"})
def walk(line: str, *, nested: bool = False) -> list[SimpleCommand]:
    """Every simple command of `line` in source order (nested ones before their parent)."""
    if "\x00" in line:
        raise ShellSyntaxError("the command holds a NUL character")
    src = line.encode("utf-8", "surrogateescape")
    tree = parse(src)
    walker = Walker(src, Facts(nested=nested), [])
    try:
        walker.statement(tree.root_node, subshell=False)
        missed = unseen_substitution(tree.root_node, src)
    except RecursionError:
        raise ShellSyntaxError("the command is nested too deeply") from None
    if missed is not None:
        walker.current = None
        walker.flag(missed)
        assert walker.current is not None
        walker.current.display = line
    walker.judge_arithmetic()
    return walker.out


class Walker(Builtins):
    def __init__(self, src: bytes, facts: Facts, out: list[SimpleCommand]) -> None:
        self.src = src
        self.facts = facts
        self.out = out
        self.cwds: frozenset[str] = frozenset({"."})
        self.current: SimpleCommand | None = None

    # ------------------------------------------------------------------ bookkeeping

    def flag(self, reason: str) -> None:
        if self.current is None:
            self.current = SimpleCommand([], cwds=self.cwds, display="")
            self.out.append(self.current)
        if self.current.unknown is None:
            self.current.unknown = reason

    def arith_use(self, arith: Arith) -> None:
        if self.current is None:
            self.flag("")  # makes a holder; cleared below
            assert self.current is not None
            self.current.unknown = None
        for name in arith.assigns:
            self.assign(name, safe=True, deps=arith.names)
        self.facts.uses.append(ArithUse(arith.names, self.current, arith.dynamic))

    def arith_text(self, text: str) -> None:
        """Arithmetic given as text (`let`, a subscript in a string, an operand of `[[ -eq ]]`)."""
        src = f"(({text}))".encode("utf-8", "surrogateescape")
        tree = PARSER.parse(src)
        if tree.root_node.has_error:
            self.arith_use(Arith(dynamic=f"the arithmetic {text!r} cannot be parsed"))
            return
        sub = Walker(src, self.facts, self.out)
        sub.current, sub.cwds = self.current, self.cwds
        body = tree.root_node.named_children[0]
        sub.arith_use(sub.arith_nodes(body.named_children))

    def sub_script(self, text: str) -> None:
        src = text.encode("utf-8", "surrogateescape")
        tree = PARSER.parse(src)
        if tree.root_node.has_error:
            self.flag(f"cannot read {text[:40]!r} as bash would")
            return
        sub = Walker(src, self.facts, self.out)
        sub.current, sub.cwds = self.current, self.cwds
        sub.statement(tree.root_node, subshell=False)
        missed = unseen_substitution(tree.root_node, src)
        if missed is not None:
            self.flag(missed)

    def as_dquoted(self, text: str) -> Word:
        def requote(m: re.Match[str]) -> str:
            if m.group(0) == '"':
                return '\\"'
            return '\\\\\\"' if m.group(1) == '"' else m.group(0)

        src = (': "' + re.sub(r'\\(.)|"', requote, text, flags=re.DOTALL) + '"').encode("utf-8", "surrogateescape")
        tree = PARSER.parse(src)
        command = tree.root_node.named_children[0] if tree.root_node.named_children else None
        args = command.children_by_field_name("argument") if command is not None else []
        if tree.root_node.has_error or len(args) != 1:
            self.flag(f"cannot read {text[:40]!r} as bash would")
            return Word("\x00", text, glob=ANY)
        sub = Walker(src, self.facts, self.out)
        sub.current, sub.cwds = self.current, self.cwds
        word = sub.word_or_flag(args)
        missed = unseen_substitution(tree.root_node, src)
        if missed is not None:
            self.flag(missed)
        return word

    def assign(self, name: str, *, safe: bool, deps: set[str] | None = None, value: Word | None = None) -> None:
        if name in CODE_VARIABLES:
            self.flag(f"assigning {name} makes bash or a program run code from its value")
        elif name in COMMAND_VARIABLES:
            if value is None or not value.known:
                self.flag(f"{name} holds a command line that is only known at run time")
            elif self.current is not None:
                self.current.scripts.append(value.text)
        self.facts.assign(name, safe=safe, deps=deps)

    def judge_arithmetic(self) -> None:
        unsafe = self.facts.unsafe_names()
        for use in self.facts.uses:
            if use.command.unknown is not None:
                continue
            if use.dynamic:
                use.command.unknown = f"{use.dynamic}: arithmetic evaluation can run commands held in a value"
                continue
            bad = sorted(n for n in use.names if self.facts.is_unsafe(n, unsafe))
            if bad:
                use.command.unknown = (f"arithmetic reads {', '.join('$' + b for b in bad)}, whose value may hold "
                                       "an array subscript that runs a command")

    # ------------------------------------------------------------------ statements

    def statement(self, node: Node, *, subshell: bool) -> None:
        if subshell:
            saved, outer = self.cwds, self.current
            self.statement(node, subshell=False)
            self.cwds, self.current = saved, outer
            return
        kind = node.type
        if not node.is_named or kind == "comment":
            return
        if kind != "case_item" and any(c.type in (";;", ";&", ";;&") for c in node.children):
            raise ShellSyntaxError(f"';;' outside a case statement at offset {node.start_byte}")
        if kind in _CONTAINERS:
            for child in node.named_children:
                self.statement(child, subshell=False)
        elif kind in ("subshell", "command_substitution", "process_substitution"):
            saved, outer = self.cwds, self.current  # one scope: a `cd` inside holds until its end
            for child in node.named_children:
                self.statement(child, subshell=False)
            self.cwds, self.current = saved, outer
        elif kind == "compound_statement":
            if node.children and node.children[0].type == "((":
                self.holder(node)
                self.arith_use(self.arith_nodes(node.named_children))
            else:
                for child in node.named_children:
                    self.statement(child, subshell=False)
        elif kind == "command":
            self.command(node)
        elif kind == "redirected_statement":
            self._redirected(node)
        elif kind in ("variable_assignment", "variable_assignments"):
            self.holder(node)
            nodes = [node] if kind == "variable_assignment" else node.named_children
            for child in nodes:
                self.assignment(child)
        elif kind == "declaration_command":
            self.declaration(node)
        elif kind == "unset_command":
            self.unset(node)
        elif kind == "test_command":
            self.test(node)
        elif kind == "for_statement":
            self._for(node)
        elif kind == "c_style_for_statement":
            self.holder(node)
            for field in ("initializer", "condition", "update"):
                parts = node.children_by_field_name(field)
                if parts:
                    self.arith_use(self.arith_nodes(parts))
            self._body(node)
        elif kind == "case_statement":
            self._case(node)
        elif kind == "function_definition":
            self._body(node)
            redirects = [c for c in node.named_children if c.type in _REDIRECTS]
            if redirects:
                self._redirect_only(node, redirects)
        else:
            self.holder(node)
            self.flag(f"unsupported syntax ({kind})")

    def holder(self, node: Node) -> SimpleCommand:
        """A command with no words, for what a compound command evaluates itself."""
        sc = SimpleCommand([], cwds=self.cwds, display=self.text(node))
        self.out.append(sc)
        self.current = sc
        return sc

    def _body(self, node: Node) -> None:
        body = node.child_by_field_name("body")
        if body is not None:
            self.statement(body, subshell=False)

    def _for(self, node: Node) -> None:
        self.holder(node)
        values = node.children_by_field_name("value")
        words = [self.word_or_flag(group) for group in self.groups(values)]
        var = node.child_by_field_name("variable")
        if var is not None:
            literal = bool(values) and all(w.known and INTEGER.fullmatch(w.text) for w in words)
            select = node.children[0].type == "select"
            self.assign(self.text(var), safe=literal and not select)
        self._body(node)

    def _case(self, node: Node) -> None:
        holder = self.holder(node)
        value = node.child_by_field_name("value")
        if value is not None:
            self.word_or_flag([value])
        for item in node.named_children:
            if item.type != "case_item":
                continue
            self.current = holder
            for pattern in item.children_by_field_name("value"):
                self.word_or_flag([pattern])
            for child in item.named_children:
                if child not in item.children_by_field_name("value"):
                    self.statement(child, subshell=False)

    def word_or_flag(self, nodes: list[Node]) -> Word:
        try:
            return self.word(nodes)
        except Unknown as exc:
            self.flag(str(exc))
            return Word("\x00", self.between(nodes[0].start_byte, nodes[-1].end_byte), may_vanish=True, glob=ANY)

    def groups(self, nodes: list[Node]) -> list[list[Node]]:
        """Adjacent sibling nodes form one shell word (tree-sitter splits `$"x"`, `a\\<newline>b`)."""
        groups: list[list[Node]] = []
        for node in nodes:
            if groups and re.fullmatch(rb"(\\\n)*", self.src[groups[-1][-1].end_byte:node.start_byte]):
                groups[-1].append(node)
            else:
                groups.append([node])
        return groups

    # ------------------------------------------------------------------ redirections

    def _redirected(self, node: Node) -> None:
        body = node.child_by_field_name("body")
        redirects = [c for c in node.children if c.type in _REDIRECTS]
        redirects += [c for r in redirects if r.type == "heredoc_redirect" for c in r.children  # cat <<E > f
                      if c.type in _REDIRECTS]
        if body is not None and body.type == "command":
            self.command(body, extra_redirects=redirects)
        else:
            if body is not None:
                self.statement(body, subshell=False)
            self._redirect_only(node, redirects)
        for red in redirects:  # tree-sitter keeps the rest of a here-document's first line inside it
            for child in red.named_children:
                if red.type == "heredoc_redirect" and child.type not in (
                        "heredoc_start", "heredoc_body", "heredoc_end", "file_descriptor", *_REDIRECTS):
                    self.statement(child, subshell=False)

    def _redirect_only(self, node: Node, redirects: list[Node]) -> None:
        sc = self.holder(node)
        sc.redirects.extend(self.redirect(r) for r in redirects)

    def redirect(self, node: Node) -> Redirect:
        op = next((self.text(c) for c in node.children if not c.is_named), "")
        fd_node = node.child_by_field_name("descriptor")
        fd = self.text(fd_node) if fd_node is not None else None
        if node.type == "herestring_redirect":
            parts = [c for c in node.named_children]
            word = self.word_or_flag(parts) if parts else Word("", "")
            return Redirect("<<<", word, word.text + "\n" if word.known else None, fd)
        if node.type == "heredoc_redirect":
            return self._heredoc(node, op, fd)
        dest = node.children_by_field_name("destination")
        if not dest:
            return Redirect(op, None, None, fd)
        target = self.word_or_flag(dest)
        if op in (">&", "<&") and (target.text.isdigit() or target.text == "-"):
            return Redirect(op + "fd", target, None, fd)
        return Redirect(op, target, None, fd)

    def _heredoc(self, node: Node, op: str, fd: str | None) -> Redirect:
        start = next((c for c in node.children if c.type == "heredoc_start"), None)
        body = next((c for c in node.children if c.type == "heredoc_body"), None)
        end = next((c for c in node.children if c.type == "heredoc_end"), None)
        delim = self.text(start) if start is not None else ""
        quoted = any(q in delim for q in "'\"\\")
        if body is None:
            return Redirect(op, Word(delim, delim), "", fd)
        text = self.between(body.start_byte, end.start_byte if end is not None else body.end_byte)
        lines = text.split("\n")
        lines = lines[:-1] if len(lines) > 1 else lines  # the indentation before the delimiter
        if op == "<<-":
            lines = [ln.lstrip("\t") for ln in lines]
        content = "".join(ln + "\n" for ln in lines)
        if quoted:
            return Redirect(op, Word(delim, delim), content, fd)
        value = self.as_dquoted(content)
        return Redirect(op, Word(delim, delim), value.text if value.known else None, fd)

    # ------------------------------------------------------------------ simple commands

    def command(self, node: Node, extra_redirects: list[Node] | None = None) -> None:
        sc = SimpleCommand([], cwds=self.cwds, display=self.text(node))
        self.current = sc
        word_nodes: list[Node] = []
        redirect_nodes: list[Node] = []
        assigns: list[Node] = []
        for child in node.children:
            if (not child.is_named and child.type != "$") or child.type == "comment":
                continue
            if child.type == "variable_assignment" and not word_nodes:
                assigns.append(child)
            elif child.type == "command_name":
                word_nodes.extend(child.named_children or [child])
            elif child.type in _REDIRECTS:
                redirect_nodes.append(child)
            else:
                word_nodes.append(child)
        groups = self.groups(word_nodes)
        all_redirects = redirect_nodes + (extra_redirects or [])
        if groups and all_redirects and re.fullmatch(r"\{[A-Za-z_][A-Za-z0-9_]*\}", self.text(groups[-1][-1])) \
                and groups[-1][-1].end_byte == min(r.start_byte for r in all_redirects):
            self.facts.assign(self.text(groups.pop()[-1])[1:-1], safe=True)  # {fd}>file: a number
        for a in assigns:
            self.assignment(a, into=sc)
        sc.words = [self.word_or_flag(g) for g in groups]
        sc.redirects = [self.redirect(r) for r in all_redirects]
        self.current = sc
        self.out.append(sc)
        if sc.words and sc.words[0].known:
            self._builtin(sc)

    def assignment(self, node: Node, into: SimpleCommand | None = None) -> tuple[str, Word]:
        name_node = node.child_by_field_name("name")
        value_node = node.child_by_field_name("value")
        if name_node is None:
            self.flag("unsupported assignment")
            return "", Word("", "")
        if name_node.type == "subscript":
            self._subscript(name_node)
            base = name_node.child_by_field_name("name")
            name = self.text(base) if base is not None else self.text(name_node)
        else:
            name = self.text(name_node)
        op = next((self.text(c) for c in node.children if not c.is_named), "=")
        if value_node is None:
            value = Word("", "")
        elif value_node.type == "array":
            for element in value_node.named_children:
                self.word_or_flag([element])
            value = Word("\x00", self.text(value_node), glob=ANY)
        else:
            siblings = [c for c in node.children if c.start_byte >= value_node.start_byte and c.is_named]
            value = self.word_or_flag(siblings)
        safe = op == "=" and name_node.type != "subscript" and value.known and (
            value.text == "" or bool(INTEGER.fullmatch(value.text)))
        deps: set[str] | None = None
        if op == "=" and value_node is not None and value_node.type == "arithmetic_expansion":
            arith = self.arith_nodes(value_node.named_children)  # i=$((i + 1)): a number over those names
            safe, deps = arith.dynamic is None and name_node.type != "subscript", arith.names
        self.assign(name, safe=safe, deps=deps, value=value)
        if into is not None:
            into.assignments.append((name, value))
        return name, value

__all__ = ["ShellSyntaxError", "Walker", "walk"]
