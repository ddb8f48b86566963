"""tree-sitter-bash, loaded once, and the checks around what its grammar gets wrong.

`parse(src)` gives the syntax tree or raises ShellSyntaxError (an ERROR or MISSING node anywhere).
`unseen_substitution` finds text that bash would expand or run but the tree holds as plain text
(tree-sitter-bash reads backticks in a here-document, or `$(...)` in a `${x#pattern}`, as words):
the walker then marks the line unknown rather than trust the tree.
"""

from __future__ import annotations

import re

import tree_sitter_bash
from tree_sitter import Language, Node, Parser, Tree

from runner.policy.script import ShellSyntaxError

MAX_LENGTH = 100_000
PARSER = Parser(Language(tree_sitter_bash.language()))


def parse(src: bytes) -> Tree:
    if len(src) > MAX_LENGTH:
        raise ShellSyntaxError(f"the command is longer than {MAX_LENGTH} bytes")
    tree = PARSER.parse(src)
    if tree.root_node.has_error:
        raise ShellSyntaxError(_error_where(tree.root_node, src))
    return tree


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
