"""May a path that bash builds at run time land on a path a file rule denies?

A known path is normalised and matched with pathspec (runner.policy.paths). A path with run-time
parts (`$PWD/.github/workflows/x`, `~/../../workspace/x`, `.github/workflow[s]/ci.yml`) is
resolved against every directory the command may run in into a set of workspace-relative paths,
written as a small automaton: an expansion is any text (`/` and `..` included, so what came
before it is lost), a glob is `*`/`?`/`[...]` inside one component. The target is judged denied
when that set and the deny pattern's paths intersect (a product search over the two automata).
The check errs towards "may": it is a superset of what bash could write.
"""

from __future__ import annotations

from functools import lru_cache

from runner.policy.paths import FilePattern, normalise, resolve
from runner.policy.script import ANY, Word

Pred = tuple[frozenset[str], bool]
"""A set of characters: (chars, negated); negated means every character but those."""
ANY_CHAR: Pred = (frozenset(), True)
NOT_SLASH: Pred = (frozenset("/"), True)
SLASH: Pred = (frozenset("/"), False)


class Nfa:
    """States 0..n; `edges[s]` are (predicate, next) pairs, `eps[s]` empty moves; state `final` accepts."""

    def __init__(self) -> None:
        self.edges: list[list[tuple[Pred, int]]] = [[]]
        self.eps: list[list[int]] = [[]]
        self.final = 0

    def new(self) -> int:
        self.edges.append([])
        self.eps.append([])
        return len(self.edges) - 1

    def char(self, pred: Pred) -> None:
        nxt = self.new()
        self.edges[self.final].append((pred, nxt))
        self.final = nxt

    def loop(self, pred: Pred) -> None:
        """Zero or more characters of `pred`."""
        self.edges[self.final].append((pred, self.final))

    def optional_dirs(self) -> None:
        """Empty, or any text ending in `/`."""
        start = self.final
        mid = self.new()
        end = self.new()
        self.eps[start].append(end)
        self.edges[start].append((ANY_CHAR, mid))
        self.edges[mid].append((ANY_CHAR, mid))
        self.edges[mid].append((SLASH, end))
        self.edges[start].append((SLASH, end))
        self.final = end

    def glob(self, text: str) -> None:
        """One glob over characters: `*` `?` `[...]`, `\\x` literal, ANY: any text (`/` too)."""
        i = 0
        while i < len(text):
            c = text[i]
            if c == "\\" and i + 1 < len(text):
                self.char((frozenset(text[i + 1]), False))
                i += 2
                continue
            if c == ANY:
                self.loop(ANY_CHAR)
            elif c == "*":
                self.loop(NOT_SLASH)
            elif c == "?":
                self.char(NOT_SLASH)
            elif c == "[" and "]" in text[i + 2:]:
                end = text.index("]", i + 2)
                body = text[i + 1:end]
                negated = body.startswith(("!", "^"))
                chars = _class_chars(body[1:] if negated else body)
                self.char((chars | {"/"}, True) if negated else (chars - {"/"}, False))
                i = end
            else:
                self.char((frozenset(c), False))
            i += 1


def _class_chars(body: str) -> frozenset[str]:
    chars: set[str] = set()
    i = 0
    while i < len(body):
        if i + 2 < len(body) and body[i + 1] == "-":
            chars.update(chr(k) for k in range(ord(body[i]), ord(body[i + 2]) + 1))
            i += 3
        else:
            chars.add(body[i])
            i += 1
    return frozenset(chars)


def _meet(a: Pred, b: Pred) -> bool:
    (ca, na), (cb, nb) = a, b
    if not na and not nb:
        return bool(ca & cb)
    if not na:
        return bool(ca - cb)
    if not nb:
        return bool(cb - ca)
    return True


def _closure(nfa: Nfa, states: set[int]) -> set[int]:
    stack = list(states)
    seen = set(states)
    while stack:
        for nxt in nfa.eps[stack.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


def intersects(a: Nfa, b: Nfa) -> bool:
    """Is there a string both automata accept?"""
    start = [(p, q) for p in _closure(a, {0}) for q in _closure(b, {0})]
    seen = set(start)
    stack = list(start)
    while stack:
        p, q = stack.pop()
        if p == a.final and q == b.final:
            return True
        for pa, na in a.edges[p]:
            for pb, nb in b.edges[q]:
                if _meet(pa, pb):
                    for pair in ((x, y) for x in _closure(a, {na}) for y in _closure(b, {nb})):
                        if pair not in seen:
                            seen.add(pair)
                            stack.append(pair)
    return False


@lru_cache(maxsize=512)
def pattern_nfa(pattern: str) -> Nfa:
    """The paths a gitignore pattern covers (itself or anything below), as runner.policy.paths reads it."""
    text = pattern.strip().rstrip("/") or pattern.strip()
    anchored = "/" in text
    parts = [p for p in text.lstrip("/").split("/") if p not in ("", ".")]
    nfa = Nfa()
    if not anchored:
        nfa.optional_dirs()
    for k, part in enumerate(parts):
        if part == "**":
            if k == len(parts) - 1:
                nfa.char(ANY_CHAR)
                nfa.loop(ANY_CHAR)
            else:
                nfa.optional_dirs()
            continue
        nfa.glob("*" if set(part) == {"*"} else part)
        if k < len(parts) - 1:
            nfa.char(SLASH)
    end = nfa.final  # below it: `/` and anything
    tail = nfa.new()
    nfa.edges[end].append((SLASH, tail))
    nfa.edges[tail].append((ANY_CHAR, tail))
    done = nfa.new()
    nfa.eps[end].append(done)
    nfa.eps[tail].append(done)
    nfa.final = done
    return nfa


def _components(glob: str) -> list[str]:
    return glob.split("/")


def resolved_paths(word: Word, cwds: frozenset[str]) -> list[Nfa]:
    """Automata for the workspace-relative paths `word` may name from any of `cwds` (outside: none)."""
    out: list[Nfa] = []
    glob = word.pattern
    for cwd in cwds:
        free = cwd == ANY and not glob.startswith("/")
        stack: list[str] = []
        if not glob.startswith("/") and not free:
            base = resolve(cwd, ".")
            stack = ["workspace", *([] if base == "." else base.split("/"))] if not base.startswith("/") else \
                base.strip("/").split("/")
        for comp in _components(glob):
            if comp in ("", "."):
                continue
            if comp == "..":
                if stack:
                    stack.pop()
                continue
            if ANY in comp:
                free, stack = True, [comp]
                continue
            stack.append(comp)
        if not free:
            if stack[:1] == ["workspace"]:
                out.append(_literal_path(stack[1:]))
            continue
        nfa = Nfa()
        nfa.optional_dirs()  # whatever the expansion held: any directory, the workspace root included
        if stack and ANY in stack[0]:
            stack = stack[1:] or [ANY]
        _append_components(nfa, stack)
        out.append(nfa)
        if stack[:1] == ["workspace"]:
            out.append(_literal_path(stack[1:]))
    return out


def _literal_path(comps: list[str]) -> Nfa:
    nfa = Nfa()
    _append_components(nfa, comps or ["."])
    return nfa


def _append_components(nfa: Nfa, comps: list[str]) -> None:
    for k, comp in enumerate(comps):
        if k:
            nfa.char(SLASH)
        nfa.glob(comp)


def may_match(pattern: FilePattern, word: Word, cwds: frozenset[str], *, directory: bool = False) -> bool:
    """Might `word`, written from one of `cwds`, name a path `pattern` covers (or, for a directory,
    a path inside it)? "Inside" counts for anchored patterns only (`.github/workflows/**` is inside
    `.github`): an unanchored name such as `.git` could be inside any directory, and `rm -r build`
    is not taken as a write to a `.git` that might be nested in it."""
    directory = directory and pattern.anchored
    if word.known and ANY not in cwds and not directory:
        paths = {normalise(resolve(cwd, word.text)) for cwd in cwds}
        return any(p is not None and pattern.matches(p) for p in paths)
    target = pattern_nfa(pattern.text)
    for nfa in resolved_paths(word, cwds):
        if directory:  # the path itself, or anything below it
            end = nfa.final
            nfa.char(SLASH)
            nfa.loop(ANY_CHAR)
            nfa.char(ANY_CHAR)
            nfa.eps[end].append(nfa.final)
        if intersects(nfa, target):
            return True
    return False
