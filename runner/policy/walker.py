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

import posixpath
import re

import tree_sitter_bash
from tree_sitter import Language, Node, Parser

from runner.policy.script import ANY, ArithUse, Facts, Redirect, ShellSyntaxError, SimpleCommand, Word
from runner.policy.values import IDENT, INTEGER, Arith, Unknown, Values

MAX_LENGTH = 100_000
MAX_CWDS = 8
WORKSPACE = "/workspace"
_PARSER = Parser(Language(tree_sitter_bash.language()))

_CONTAINERS = frozenset({"program", "list", "pipeline", "do_group", "negated_command", "if_statement",
                         "elif_clause", "else_clause", "while_statement"})
_REDIRECTS = frozenset({"file_redirect", "heredoc_redirect", "herestring_redirect"})
_OUTPUT_OPS = frozenset({">", ">>", ">|", "&>", "&>>", "<>", ">&"})
# Variables whose value bash or a common program runs as code the walker cannot read.
CODE_VARIABLES = frozenset({
    "BASH_ENV", "ENV", "PS0", "PS1", "PS2", "PS3", "PS4", "PROMPT_COMMAND", "SHELLOPTS", "BASHOPTS",
    "BASH_LOADABLES_PATH", "LD_PRELOAD", "LD_AUDIT", "LD_LIBRARY_PATH", "GIT_EXEC_PATH", "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT", "GIT_CONFIG", "GIT_CONFIG_GLOBAL", "GIT_CONFIG_SYSTEM", "GIT_SSH", "GIT_ASKPASS",
    "SSH_ASKPASS", "GIT_PROXY_COMMAND", "NODE_OPTIONS", "PERL5OPT", "PYTHONSTARTUP", "IFS",
    "CDPATH", "TEXTDOMAIN", "TEXTDOMAINDIR",  # where `cd` goes, what $"..." turns into
})
# Variables holding a command line that a program runs with `sh -c`: analysed like `bash -c VALUE`.
COMMAND_VARIABLES = frozenset({"GIT_PAGER", "PAGER", "GIT_EDITOR", "EDITOR", "VISUAL", "GIT_SSH_COMMAND",
                               "GIT_SEQUENCE_EDITOR", "MANPAGER", "GIT_EXTERNAL_DIFF"})
# Builtins that assign the variables named in their arguments: (options taking a value, how names are found).
_NAME_ASSIGNERS = {"read": "dinNptu", "mapfile": "CcdnOsu", "readarray": "CcdnOsu"}


def walk(line: str, *, nested: bool = False) -> list[SimpleCommand]:
    """Every simple command of `line` in source order (nested ones before their parent)."""
    if "\x00" in line:
        raise ShellSyntaxError("the command holds a NUL character")
    if len(line) > MAX_LENGTH:
        raise ShellSyntaxError(f"the command is longer than {MAX_LENGTH} characters")
    src = line.encode("utf-8", "surrogateescape")
    tree = _PARSER.parse(src)
    if tree.root_node.has_error:
        raise ShellSyntaxError(_error_where(tree.root_node, src))
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


_TRIGGER = re.compile(rb"`|\$[({\[]|[<>]\(")
_SUBSTITUTIONS = frozenset({"command_substitution", "process_substitution", "expansion", "arithmetic_expansion"})
_INERT = frozenset({"raw_string", "ansi_c_string", "comment"})


def unseen_substitution(root: Node, src: bytes) -> str | None:
    """A `$(`, backtick, `${`, `$[` or `<(` that tree-sitter-bash did not parse as one (it reads some
    contexts, such as backticks in a here-document or a `${x#pattern}`, as plain text): fail closed."""
    if not _TRIGGER.search(src):
        return None
    starts: set[int] = set()
    inert: list[tuple[int, int]] = []
    stack = [root]
    while stack:
        node = stack.pop()
        kind = node.type
        if kind in _SUBSTITUTIONS:
            starts.add(node.start_byte)
            if src[node.start_byte:node.start_byte + 1] == b"`":
                starts.add(node.end_byte - 1)
        elif kind in _INERT or (kind == "heredoc_redirect" and _quoted_heredoc(node, src)):
            inert.append((node.start_byte, node.end_byte))
            continue
        elif kind == "heredoc_body" or kind == "regex":
            inert.append((node.start_byte, node.end_byte))  # walked again as a string by the walker
        stack.extend(node.children)
    for m in _TRIGGER.finditer(src):
        pos = m.start()
        if pos in starts or any(a <= pos < b for a, b in inert):
            continue
        backslashes = len(src[:pos]) - len(src[:pos].rstrip(b"\\"))
        if backslashes % 2:
            continue
        if src[pos:pos + 1] in (b"<", b">") and pos + 1 in starts:
            continue
        return f"tree-sitter-bash does not read {src[pos:pos + 2].decode(errors='replace')!r} at offset {pos} " \
               "as a substitution, so what it runs cannot be checked"
    return None


def _quoted_heredoc(node: Node, src: bytes) -> bool:
    start = next((c for c in node.children if c.type == "heredoc_start"), None)
    return start is not None and any(q in src[start.start_byte:start.end_byte] for q in (b"'", b'"', b"\\"))


def _error_where(root: Node, src: bytes) -> str:
    stack = [root]
    while stack:
        node = stack.pop()
        if node.is_missing:
            return f"{node.type!r} is missing at offset {node.start_byte}"
        if node.type == "ERROR":
            text = src[node.start_byte:node.end_byte].decode("utf-8", "replace")
            return f"bash syntax error near {text[:40]!r} at offset {node.start_byte}"
        stack.extend(reversed([c for c in node.children if c.has_error or c.is_missing]))
    return "bash syntax error"


def resolve(cwd: str, path: str) -> str:
    """A directory or file path -> workspace-relative (`.`, `src/x`), absolute outside it, or ANY."""
    if cwd == ANY and not path.startswith("/"):
        return ANY
    base = WORKSPACE if cwd == "." else (cwd if cwd.startswith("/") else f"{WORKSPACE}/{cwd}")
    full = posixpath.normpath(posixpath.join(base, path))
    full = "/" + full.lstrip("/")
    if full == WORKSPACE:
        return "."
    if full.startswith(WORKSPACE + "/"):
        return full[len(WORKSPACE) + 1:]
    return full


class Walker(Values):
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
        tree = _PARSER.parse(src)
        if tree.root_node.has_error:
            self.arith_use(Arith(dynamic=f"the arithmetic {text!r} cannot be parsed"))
            return
        sub = Walker(src, self.facts, self.out)
        sub.current, sub.cwds = self.current, self.cwds
        body = tree.root_node.named_children[0]
        sub.arith_use(sub.arith_nodes(body.named_children))

    def sub_script(self, text: str) -> None:
        src = text.encode("utf-8", "surrogateescape")
        tree = _PARSER.parse(src)
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
        tree = _PARSER.parse(src)
        command = tree.root_node.named_children[0] if tree.root_node.named_children else None
        args = command.children_by_field_name("argument") if command is not None else []
        if tree.root_node.has_error or len(args) != 1:
            self.flag(f"cannot read {text[:40]!r} as bash would")
            return Word("\x00", text, glob=ANY)
        sub = Walker(src, self.facts, self.out)
        sub.current, sub.cwds = self.current, self.cwds
        word = sub._word_or_flag(args)
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
        elif kind == "subshell":
            for child in node.named_children:
                self.statement(child, subshell=True)
        elif kind == "compound_statement":
            if node.children and node.children[0].type == "((":
                self._holder(node)
                self.arith_use(self.arith_nodes(node.named_children))
            else:
                for child in node.named_children:
                    self.statement(child, subshell=False)
        elif kind == "command":
            self.command(node)
        elif kind == "redirected_statement":
            self._redirected(node)
        elif kind in ("variable_assignment", "variable_assignments"):
            self._holder(node)
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
            self._holder(node)
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
            self._holder(node)
            self.flag(f"unsupported syntax ({kind})")

    def _holder(self, node: Node) -> SimpleCommand:
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
        self._holder(node)
        values = node.children_by_field_name("value")
        words = [self._word_or_flag(group) for group in self._groups(values)]
        var = node.child_by_field_name("variable")
        if var is not None:
            literal = bool(values) and all(w.known and INTEGER.fullmatch(w.text) for w in words)
            select = node.children[0].type == "select"
            self.assign(self.text(var), safe=literal and not select)
        self._body(node)

    def _case(self, node: Node) -> None:
        holder = self._holder(node)
        value = node.child_by_field_name("value")
        if value is not None:
            self._word_or_flag([value])
        for item in node.named_children:
            if item.type != "case_item":
                continue
            self.current = holder
            for pattern in item.children_by_field_name("value"):
                self._word_or_flag([pattern])
            for child in item.named_children:
                if child not in item.children_by_field_name("value"):
                    self.statement(child, subshell=False)

    def _word_or_flag(self, nodes: list[Node]) -> Word:
        try:
            return self.word(nodes)
        except Unknown as exc:
            self.flag(str(exc))
            return Word("\x00", self.between(nodes[0].start_byte, nodes[-1].end_byte), may_vanish=True, glob=ANY)

    def _groups(self, nodes: list[Node]) -> list[list[Node]]:
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
        sc = self._holder(node)
        sc.redirects.extend(self.redirect(r) for r in redirects)

    def redirect(self, node: Node) -> Redirect:
        op = next((self.text(c) for c in node.children if not c.is_named), "")
        fd_node = node.child_by_field_name("descriptor")
        fd = self.text(fd_node) if fd_node is not None else None
        if node.type == "herestring_redirect":
            parts = [c for c in node.named_children]
            word = self._word_or_flag(parts) if parts else Word("", "")
            return Redirect("<<<", word, word.text + "\n" if word.known else None, fd)
        if node.type == "heredoc_redirect":
            return self._heredoc(node, op, fd)
        dest = node.children_by_field_name("destination")
        if not dest:
            return Redirect(op, None, None, fd)
        target = self._word_or_flag(dest)
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
        groups = self._groups(word_nodes)
        all_redirects = redirect_nodes + (extra_redirects or [])
        if groups and all_redirects and re.fullmatch(r"\{[A-Za-z_][A-Za-z0-9_]*\}", self.text(groups[-1][-1])) \
                and groups[-1][-1].end_byte == min(r.start_byte for r in all_redirects):
            self.facts.assign(self.text(groups.pop()[-1])[1:-1], safe=True)  # {fd}>file: a number
        for a in assigns:
            self.assignment(a, into=sc)
        sc.words = [self._word_or_flag(g) for g in groups]
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
                self._word_or_flag([element])
            value = Word("\x00", self.text(value_node), glob=ANY)
        else:
            siblings = [c for c in node.children if c.start_byte >= value_node.start_byte and c.is_named]
            value = self._word_or_flag(siblings)
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
            word = self._word_or_flag([child])
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
        for group in self._groups([c for c in node.children[1:] if c.is_named]):
            word = self._word_or_flag(group)
            sc.words.append(word)
            if not (word.known and word.text.startswith("-")):
                self._name_argument(word, keyword, assigns=False)
        self.current = sc
        self.out.append(sc)

    def test(self, node: Node) -> None:
        double = node.children[0].type == "[["
        sc = self._holder(node)
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
                self._name_argument(self._word_or_flag([operands[-1]]), "-v", assigns=False)
            for child in node.children:
                self._test_expr(child, double, sc)
            return
        if kind == "regex" or kind == "comment":
            return
        if kind == "test_operator" or not node.is_named:
            if not double:
                sc.words.append(Word(self.text(node), self.text(node)))
            return
        word = self._word_or_flag([node])
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


__all__ = ["IDENT", "ShellSyntaxError", "resolve", "walk"]
