"""How a bash rule's PATTERN matches a command (see runner.policy.commands for the command model).

The command's words are joined by single spaces. In a pattern only `*` is special: it matches any
text, spaces included; a pattern ending in ` *` also matches the words before it alone (`git push *`
matches `git push` but not `git pushx`). WILD (text only known at run time) makes deny rules match
when *some* value would match (`exists_match`: tolerant) and allow rules match only when *every*
value would (`forall_match`: strict).
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import replace
from itertools import combinations

from runner.policy.commands import Command
from runner.policy.script import WILD, Word

MAX_VANISHING = 6


def deny_texts(cmd: Command) -> list[str]:
    """Spellings a deny rule is tried against: as written, basenamed, git global options dropped."""
    words = list(cmd.words)
    forms = [words]
    if "/" in words[0].text:
        forms.append([replace(words[0], text=posixpath.basename(words[0].text)), *words[1:]])
    for form in list(forms):
        if form[0].text == "git":
            forms += [[form[0], *rest] for rest in _git_subcommands(form[1:])]
    texts = []
    for form in forms:
        parts = []
        for w in form:
            if w.may_vanish:  # absent, or any number of words: one WILD eats its leading space too
                parts.append(WILD)
            else:
                parts.append(" " + w.text)
        text = "".join(parts)[1:]
        texts.append(text + (WILD if cmd.open_end else ""))
    return texts


def allow_texts(cmd: Command) -> list[str] | None:
    """Every spelling an allow rule must match (None: too many words that may vanish to check)."""
    vanishing = [k for k, w in enumerate(cmd.words) if w.may_vanish]
    if len(vanishing) > MAX_VANISHING:
        return None
    texts = []
    for r in range(len(vanishing) + 1):
        for gone in combinations(vanishing, r):
            text = " ".join(w.text for k, w in enumerate(cmd.words) if k not in gone)
            texts.append(text)
            if cmd.open_end:
                texts.append(text + " " + WILD)
    return texts


_GIT_FLAGS = frozenset({"-p", "-P", "--paginate", "--no-pager", "--bare", "--no-replace-objects",
                        "--literal-pathspecs", "--glob-pathspecs", "--noglob-pathspecs", "--icase-pathspecs",
                        "--no-optional-locks", "--no-lazy-fetch", "--no-advice", "--exec-path", "--html-path",
                        "--man-path", "--info-path"})
_GIT_WITH_ARG = frozenset({"-C", "-c", "--git-dir", "--work-tree", "--namespace", "--config-env",
                           "--super-prefix", "--list-cmds", "--shallow-file", "--attr-source"})
MAX_GIT_FORMS = 16


def _git_subcommands(args: list[Word]) -> list[list[Word]]:
    """Every way git's global options may end: an option git does not list here may or may not
    take a value, so both are tried (deny rules are tolerant)."""
    forms: list[list[Word]] = []
    todo, seen = [0], set()
    while todo and len(forms) < MAX_GIT_FORMS:
        i = todo.pop()
        if i in seen or i > len(args):
            continue
        seen.add(i)
        if i == len(args) or not args[i].known or not args[i].text.startswith("-"):
            if i:
                forms.append(args[i:])
            continue
        t = args[i].text
        if t in _GIT_WITH_ARG:
            todo.append(i + 2)
        elif t in _GIT_FLAGS or "=" in t or re.match(r"^-[Cc].", t):
            todo.append(i + 1)
        else:
            todo += [i + 2, i + 1]
    return forms


def pattern_variants(pattern: str) -> list[str]:
    pattern = " ".join(pattern.split())
    return [pattern, pattern[:-2]] if pattern.endswith(" *") else [pattern]


def exists_match(text: str, pattern: str) -> bool:
    """Some value of the WILD parts of `text` makes it match `pattern`."""
    n, m = len(text), len(pattern)
    seen: set[tuple[int, int]] = set()
    stack = [(0, 0)]
    while stack:
        i, j = stack.pop()
        if (i, j) in seen:
            continue
        seen.add((i, j))
        if i == n and j == m:
            return True
        t = text[i] if i < n else None
        p = pattern[j] if j < m else None
        if t == WILD:
            stack.append((i + 1, j))
            if p is not None:
                stack.append((i, j + 1))
        if p == "*":
            stack.append((i, j + 1))
            if t is not None:
                stack.append((i + 1, j))
        if t is not None and p is not None and t == p and t != WILD and p != "*":
            stack.append((i + 1, j + 1))
    return False


def forall_match(text: str, pattern: str) -> bool:
    """Every value of the WILD parts of `text` makes it match (a sufficient check)."""
    n, m = len(text), len(pattern)
    seen: set[tuple[int, int]] = set()
    stack = [(0, 0)]
    while stack:
        i, j = stack.pop()
        if (i, j) in seen:
            continue
        seen.add((i, j))
        if i == n and j == m:
            return True
        if j < m and pattern[j] == "*":
            stack.append((i, j + 1))
            if i < n:
                stack.append((i + 1, j))
        elif i < n and j < m and text[i] == pattern[j] and text[i] != WILD:
            stack.append((i + 1, j + 1))
    return False
