"""What the walker (runner.policy.walker) finds in a command line: words, redirections, simple
commands, and the facts about variables that decide whether arithmetic can run hidden code.

A Word's `text` holds WILD where its value is only known at run time; `glob` is the same word as a
pattern over its possible values (WILD parts as `*` that may cross `/`, see runner.policy.targets),
used to judge where a redirection or file argument built at run time may land.
"""

from __future__ import annotations

from dataclasses import dataclass, field

WILD = "\x00"
"""Stands for text only known at run time. A real command line cannot hold NUL (it is refused)."""

ANY = "\x01"
"""In Word.glob: any text, `/` included (an expansion). `*`, `?` and `[...]` keep their glob meaning."""


class ShellSyntaxError(ValueError):
    """The line is not bash that tree-sitter-bash parses without error (it is then denied)."""


@dataclass(frozen=True)
class Word:
    text: str
    """After quote removal; WILD marks text only known at run time."""
    raw: str
    """As written."""
    quoted: bool = False
    may_vanish: bool = False
    """Made only of unquoted expansions or globs: may expand to no word at all (or to several)."""
    glob: str = ""
    """The possible values as a pattern: literal text escaped with `\\`, ANY for an expansion, glob
    characters for a glob (empty: the same as `text`, which then holds no WILD)."""

    @property
    def known(self) -> bool:
        return WILD not in self.text

    @property
    def pattern(self) -> str:
        return self.glob or "".join("\\" + c if c in "*?[\\" else c for c in self.text)


@dataclass(frozen=True)
class Redirect:
    op: str
    target: Word | None = None
    body: str | None = None
    """Here-document or here-string text (None: not known, or not a here-document)."""
    fd: str | None = None


@dataclass
class SimpleCommand:
    words: list[Word]
    assignments: list[tuple[str, Word]] = field(default_factory=list)
    redirects: list[Redirect] = field(default_factory=list)
    cwds: frozenset[str] = frozenset({"."})
    """Where it may run: workspace-relative directories, "/abs" outside it, or ANY (not known)."""
    unknown: str | None = None
    """Why this command can run code the walker cannot see (then it is denied); None when it cannot."""
    display: str = ""
    """The source text, for messages."""
    navigation: bool = False
    """`cd`/`pushd`/`popd` into the workspace: needs no allow rule (deny rules still see it)."""
    scripts: list[str] = field(default_factory=list)
    """Command lines it hands to `sh -c` through a variable (GIT_PAGER=...): analysed as nested scripts."""


@dataclass
class ArithUse:
    """An arithmetic context (`$(( ))`, `(( ))`, `let`, a subscript, `[[ -eq ]]`, `${x:off}`)."""

    names: set[str]
    command: SimpleCommand
    dynamic: str | None = None
    """Why its text is only known at run time (then it is unsafe whatever the names)."""


@dataclass
class Facts:
    """Per script: how each variable is assigned, to tell which ones arithmetic may safely read.

    Bash evaluates a variable's value recursively in arithmetic, and an array subscript in that
    value (`x='a[$(cmd)]'; : $((x))`) runs `cmd`. A name is safe when every assignment of it gives
    an integer literal or an arithmetic result over safe names; a name the script never assigns
    comes from the task's environment, which the agent cannot set, unless the script is nested
    (`bash -c`, `eval`: its caller may have exported it) or assigns names in ways not tracked.
    """

    nested: bool = False
    unsafe: set[str] = field(default_factory=set)
    deps: dict[str, set[str]] = field(default_factory=dict)
    assigned: set[str] = field(default_factory=set)
    uses: list[ArithUse] = field(default_factory=list)
    opaque: str | None = None
    """Set when something may assign variables the walker cannot see (eval, source, ...)."""

    def assign(self, name: str, *, safe: bool, deps: set[str] | None = None) -> None:
        self.assigned.add(name)
        if not safe:
            self.unsafe.add(name)
        elif deps:
            self.deps.setdefault(name, set()).update(deps)

    def unsafe_names(self) -> set[str]:
        bad = set(self.unsafe)
        changed = True
        while changed:
            changed = False
            for name, deps in self.deps.items():
                if name not in bad and any(self.is_unsafe(d, bad) for d in deps):
                    bad.add(name)
                    changed = True
        return bad

    def is_unsafe(self, name: str, bad: set[str]) -> bool:
        if name in bad or name in ALWAYS_UNSAFE or name.startswith(IMPLICIT_PREFIXES) or name.isdigit():
            return True
        if name in NUMERIC_SPECIALS:
            return False
        return name not in self.assigned and (self.nested or self.opaque is not None)


# Set by bash itself from data the agent controls (the last argument, read input, a directory name...).
ALWAYS_UNSAFE = frozenset({"_", "-", "@", "*", "0", "REPLY", "OPTARG", "MAPFILE", "COPROC", "PWD", "OLDPWD",
                           "DIRSTACK", "FUNCNAME", "PIPESTATUS", "HOSTNAME", "IFS"})
IMPLICIT_PREFIXES = ("BASH_", "COMP_", "READLINE_", "GROUPS")
NUMERIC_SPECIALS = frozenset({"#", "?", "$", "!", "RANDOM", "LINENO", "SECONDS", "BASHPID", "PPID", "UID",
                              "EUID", "EPOCHSECONDS", "SRANDOM", "OPTIND", "SHLVL"})


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
