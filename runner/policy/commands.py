"""From a command line to the commands the policy checks (see runner.policy.walker for the parse).

`analyse(line)` walks the line and normalises every simple command: assignments and redirections
dropped, the program path basenamed when it is in a system bin directory (`/usr/bin/git` ->
`git`; `./git` and `tools/git` stay as written), wrappers unwrapped (runner.policy.wrappers,
`xargs`, `watch`), nested shells parsed recursively, and `find -exec CMD` turned into a command.
A wrapper, a shell invocation or a `cd` into the workspace is kept as a *deny-only* command: deny
rules see it (`bash(sudo*)` still works), allow rules need not allow it.

A command that can run code nobody can read before it runs gets `unknown` set (the policy denies
it unless bash is allowed outright): its name is an expansion, `bash -c "$X"`, a shell reading a
script from a pipe or a device, `eval`, `trap`, `alias`, `source`, `compgen -W`, options that run
code (`shopt -s expand_aliases`, `git -c core.pager=...`), nesting deeper than MAX_DEPTH. The
strings `eval`, `trap` and `alias` run are still analysed, so a deny rule names what they hide.

`writes` are the paths the line may write: output redirections and the file arguments of common
writers (`tee`, `cp`, `mv`, `touch`, `sed -i`, ...), with the directories they may run in.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, replace

from runner.policy.paths import resolve
from runner.policy.script import WILD, ShellSyntaxError, SimpleCommand, Word
from runner.policy.values import Unknown
from runner.policy.walker import walk
from runner.policy.wrappers import WRAPPERS, options

MAX_DEPTH = 8
SYSTEM_DIRS = frozenset({"/bin", "/sbin", "/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"})
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "yash", "rbash", "posh", "fish", "csh",
                    "tcsh"})
RESERVED = frozenset({"{", "}", "(", ")", "[[", "]]", "!", "if", "then", "elif", "else", "fi", "do", "done", "case",
                      "esac", "while", "until", "for", "in", "select", "function", "coproc"})
OUTPUT_REDIRS = frozenset({">", ">>", ">|", "&>", "&>>", "<>", ">&"})
# Builtins that run a string or a file as code in this shell, later or now.
_RISKY_OPTIONS = {"hash": "p", "mapfile": "C", "readarray": "C", "compgen": "CFW", "complete": "CFW",
                  "enable": "f", "bind": "x"}
_CODE_SHOPTS = frozenset({"expand_aliases", "extdebug"})
# Programs whose arguments are files they write (all operands are checked: conservative).
WRITERS = frozenset({"tee", "cp", "mv", "install", "ln", "touch", "rm", "rmdir", "mkdir", "truncate", "shred",
                     "chmod", "chown", "chgrp", "unlink", "dd", "patch"})
_GIT_CODE_KEYS = re.compile(r"(?i)^(alias\.|core\.(pager|editor|sshcommand|fsmonitor|hookspath|askpass|gitproxy)"
                            r"|.*\.(textconv|command|cmd|helper|program|process|clean|smudge)$|diff\.external"
                            r"|sequence\.editor|pager\.|include|credential|gpg\.|uploadpack|receivepack|protocol)")


@dataclass(frozen=True)
class Command:
    words: tuple[Word, ...]
    unknown: str | None = None
    """Why what this runs cannot be known (then it is denied); None when it is known."""
    open_end: bool = False
    """More arguments, unknown, are appended at run time (xargs)."""
    deny_only: bool = False
    """A wrapper, shell or `cd` around other commands: deny rules see it, allow rules need not allow it."""

    @property
    def display(self) -> str:
        text = " ".join(w.text if w.known else w.raw for w in self.words)
        return text + (" …" if self.open_end else "")


@dataclass(frozen=True)
class Target:
    """A path the line may write: as a word (maybe built at run time) and the directories it may run in."""

    word: Word
    cwds: frozenset[str]
    directory: bool = False
    """The path may be a directory the command writes into (`cp a dir/`)."""


@dataclass(frozen=True)
class Analysis:
    commands: tuple[Command, ...]
    writes: tuple[Target, ...]


def analyse(line: str) -> Analysis:
    """Raises ShellSyntaxError when the line cannot be parsed."""
    commands: list[Command] = []
    writes: list[Target] = []
    _analyse_into(line, 0, commands, writes, nested=False)
    return Analysis(tuple(commands), tuple(writes))


def _analyse_into(line: str, depth: int, commands: list[Command], writes: list[Target], *, nested: bool) -> None:
    for sc in walk(line, nested=nested):
        for red in sc.redirects:
            if red.op in OUTPUT_REDIRS and red.target is not None:
                writes.append(Target(red.target, sc.cwds))
        for script in sc.scripts:
            commands.extend(_inner_script(script, list(sc.words), depth, sc)[1:])
        if sc.unknown is not None:
            words = tuple(sc.words) or (Word(sc.display, sc.display),)
            commands.append(Command(words, unknown=sc.unknown))
        elif sc.navigation:
            commands.append(Command(tuple(sc.words), deny_only=True))
        elif sc.words:
            commands.extend(_normalise(list(sc.words), sc, depth, writes))


def _inner_script(script: str, words: list[Word], depth: int, sc: SimpleCommand,
                  writes: list[Target] | None = None) -> list[Command]:
    """Commands of a nested script, after the invocation as a deny-only command."""
    out = [Command(tuple(words), deny_only=True)]
    if depth + 1 > MAX_DEPTH:
        raise Unknown("shells are nested too deeply")
    try:
        _analyse_into(script, depth + 1, out, writes if writes is not None else [], nested=True)
    except ShellSyntaxError as exc:
        raise Unknown(f"its inner command cannot be parsed: {exc}") from None
    return out


def _hidden(inner: list[Command], words: list[Word], why: str) -> list[Command]:
    """What `eval`/`trap`/`alias` would run, for deny rules, and the command itself as unknown."""
    return [*[c for c in inner[1:] if c.unknown is None], Command(tuple(words), unknown=why)]


def program_name(word: Word) -> str:
    """`/usr/bin/git` -> `git`; other paths as written."""
    head, base = posixpath.split(word.text)
    return base if posixpath.normpath(head) in SYSTEM_DIRS else word.text


def _normalise(words: list[Word], sc: SimpleCommand, depth: int, writes: list[Target]) -> list[Command]:
    try:
        return _dispatch(words, sc, depth, writes)
    except Unknown as exc:
        return [Command(tuple(words), unknown=str(exc))]


def _dispatch(words: list[Word], sc: SimpleCommand, depth: int, writes: list[Target]) -> list[Command]:
    first = words[0]
    if not first.known or first.may_vanish:
        raise Unknown("the command name is an expansion")
    name = program_name(first)
    if name in RESERVED and not first.quoted:
        raise Unknown(f"{name!r} where a command name should be: the line is not read as bash reads it")
    words = [replace(first, text=name), *words[1:]]
    args = words[1:]
    if name in WRAPPERS:
        start = WRAPPERS[name](args)
        if start is None:
            return [Command(tuple(words))]
        inner = args[start:]
        if not inner:
            return [Command(tuple(words))] if name not in ("exec", "time", "command", "builtin") else []
        return [Command(tuple(words), deny_only=True), *_normalise(inner, sc, depth, writes)]
    if name == "xargs":
        return _xargs(words, sc, depth, writes)
    if name in SHELLS:
        return _shell(words, sc, depth, writes)
    if name in ("eval", "watch"):
        if name == "watch":
            args = args[options(args, "bcdeghptrwx", "nq", {"no-title", "exec", "beep", "errexit", "chgexit",
                                                            "color", "precise", "differences"}, {"interval"}):]
        if any(not w.known for w in args):
            raise Unknown(f"the string `{name}` runs is an expansion")
        if not args:
            return [Command(tuple(words))]
        nested = _inner_script(" ".join(w.text for w in args), words, depth, sc, writes)
        return nested if name == "watch" else _hidden(nested, words, "eval runs a string as code")
    if name in ("source", "."):
        return [Command(tuple(words), unknown=_source(args, sc))]
    if name == "trap":
        return _trap(words, args, sc, depth)
    if name == "alias":
        out: list[Command] = []
        for arg in args:
            if not arg.known:
                raise Unknown("an alias value is an expansion")
            if "=" in arg.text:
                out += _inner_script(arg.text.split("=", 1)[1], words, depth, sc)[1:]
        if not out:
            return [Command(tuple(words))]
        return _hidden([Command(tuple(words)), *out], words, "an alias replaces a command by another text")
    _refuse_code_options(name, args)
    out = [Command(tuple(words))]
    if name == "find":
        out += _find_exec(args, sc, depth, writes)
    if name in WRITERS or (name in ("sed", "perl") and any(w.text.startswith("-i") for w in args)):
        _file_writes(name, args, sc, writes)
    return out


def _source(args: list[Word], sc: SimpleCommand) -> str | None:
    """Why sourcing is refused; None for a system file (under /usr or /etc) the agent cannot write."""
    if not args:
        return "source without a file"
    if not args[0].known:
        return "it reads its script from an expansion"
    paths = {resolve(cwd, args[0].text) for cwd in sc.cwds}
    if all(p.startswith(("/usr/", "/etc/")) for p in paths):
        return None
    return (f"it runs {args[0].text!r} in this shell: a file the agent can write, which nobody reads "
            "before it runs")


def _trap(words: list[Word], args: list[Word], sc: SimpleCommand, depth: int) -> list[Command]:
    if args and args[0].text == "--":
        args = args[1:]
    if not args or args[0].text in ("-", "-p", "-l", "-P") or re.fullmatch(r"\d+", args[0].text):
        return [Command(tuple(words))]
    if not args[0].known:
        raise Unknown("the trap handler is an expansion")
    inner = _inner_script(args[0].text, words, depth, sc)
    return _hidden(inner, words, "a trap runs its handler later, in a state nobody can predict")


def _refuse_code_options(name: str, args: list[Word]) -> None:
    letters = _RISKY_OPTIONS.get(name)
    if letters and any(w.text.startswith("-") and not w.text.startswith("--") and set(w.text[1:]) & set(letters)
                       for w in args):
        raise Unknown(f"`{name} -{letters}` makes a name or a word list run a command")
    if name == "shopt" and any(w.text in _CODE_SHOPTS for w in args) and any(w.text.startswith("-s") for w in args):
        raise Unknown("this shell option runs code the policy cannot read")
    if name == "set" and any(w.text in ("-T", "-o") for w in args) and any(
            w.text in ("functrace", "-T") for w in args):
        raise Unknown("functrace runs traps inside functions")
    if name == "fc":
        raise Unknown("fc runs commands from the history")
    if name == "git":
        _git_options(args)


def _git_options(args: list[Word]) -> None:
    """`git -c core.pager=CMD`, `--config-env`, `--exec-path=DIR`: git would run code from a value."""
    i = 0
    while i < len(args) and args[i].text.startswith("-"):
        w = args[i]
        value = None
        if w.text in ("-c", "--config-env") and i + 1 < len(args):
            value = args[i + 1]
            i += 1
        elif w.text.startswith("-c") and len(w.text) > 2:
            value = replace(w, text=w.text[2:])
        elif w.text.startswith(("--exec-path=", "--config-env=")):
            raise Unknown(f"`git {w.text}` makes git run programs from a chosen place")
        if value is not None and (not value.known or _GIT_CODE_KEYS.match(value.text.split("=", 1)[0])):
            raise Unknown(f"`git -c {value.raw}` makes git run a command from a configuration value")
        i += 1


def _file_writes(name: str, args: list[Word], sc: SimpleCommand, writes: list[Target]) -> None:
    if name == "ln":  # a link to a denied directory would let later writes through: every operand counts
        for w in args:
            if not (w.known and w.text.startswith("-")):
                writes.append(Target(w, sc.cwds, directory=True))
        return
    if name in ("cp", "install"):  # they write the last operand (or -t DIR), maybe a directory
        operands = [w for w in args if not (w.known and w.text.startswith("-"))]
        for k, w in enumerate(args):
            if w.known and w.text in ("-t", "--target-directory") and k + 1 < len(args):
                operands = [args[k + 1]]
            elif w.known and w.text.startswith("--target-directory="):
                operands = [replace(w, text=w.text.split("=", 1)[1], glob="")]
        if operands:
            writes.append(Target(operands[-1], sc.cwds, directory=True))
        return
    for w in args:
        if name == "dd":
            if w.text.startswith("of="):
                writes.append(Target(replace(w, text=w.text[3:], glob=w.glob[3:] if w.glob else ""), sc.cwds))
            continue
        if w.text.startswith("-") and w.known:
            continue
        writes.append(Target(w, sc.cwds, directory=name in ("mv", "rm", "rmdir", "chmod", "chown", "chgrp")))


def _xargs(words: list[Word], sc: SimpleCommand, depth: int, writes: list[Target]) -> list[Command]:
    args = words[1:]
    replace_str: str | None = None
    for w in args:
        if not w.text.startswith("-") or w.text == "--":
            break
        m = re.match(r"^-[0rtpxo]*I(.*)$", w.text)
        if m:
            replace_str = m.group(1) or "?"  # the value is the next word when not attached
        elif w.text.startswith(("-i", "--replace")):
            replace_str = w.text.split("=", 1)[1] if "=" in w.text else (w.text[2:] or "{}")
    i = options(args, "0rtpxoeil", "adEILnPs",
                {"null", "no-run-if-empty", "verbose", "interactive", "exit", "open-tty", "show-limits"},
                {"arg-file", "delimiter", "eof", "max-lines", "max-args", "max-procs", "max-chars",
                 "process-slot-var", "replace"})
    if replace_str == "?":
        idx = next(k for k, w in enumerate(args) if re.match(r"^-[0rtpxo]*I$", w.text))
        replace_str = args[idx + 1].text if idx + 1 < len(args) else ""
    inner = args[i:] or [Word("echo", "echo")]
    if replace_str:
        inner = [replace(w, text=w.text.replace(replace_str, WILD)) if replace_str in w.text else w
                 for w in inner]
    out = [Command(tuple(words), deny_only=True)]
    for cmd in _normalise(inner, sc, depth, writes):
        out.append(replace(cmd, open_end=not replace_str) if not cmd.deny_only else cmd)
    return out


def _shell(words: list[Word], sc: SimpleCommand, depth: int, writes: list[Target]) -> list[Command]:
    args = words[1:]
    i, cmode, stdin = 0, False, False
    startup: str | None = None
    while i < len(args):
        w = args[i]
        if not w.known:
            if cmode:
                break
            raise Unknown("an option of the shell is an expansion")
        t = w.text
        if t == "--" or t == "-":
            i += 1
            break
        if t.startswith("--"):
            if t in ("--rcfile", "--init-file", "--login", "--interactive"):
                startup = t
            i += 2 if t in ("--rcfile", "--init-file") else 1
            continue
        if not t.startswith(("-", "+")):
            break
        cmode = cmode or "c" in t[1:]
        stdin = stdin or "s" in t[1:]
        if t.startswith("-") and set(t[1:]) & set("il"):
            startup = t
        i += 1 + sum(1 for c in t[1:] if c in "oO")
    inner: list[Command] = []
    if cmode:
        if i >= len(args):
            raise Unknown("`-c` without a command string")
        if not args[i].known:
            raise Unknown("its command string is an expansion")
        inner = _inner_script(args[i].text, words, depth, sc, writes)
    elif i < len(args) and not stdin:
        script = args[i]
        if not script.known or any(resolve(cwd, script.text).startswith(("/dev/", "/proc/", "\x01"))
                                   for cwd in sc.cwds):
            raise Unknown("it reads its script from an expansion, a pipe or a device")
        inner = [Command(tuple(words))]  # runs a script file: matched as written
    else:
        bodies = [r for r in sc.redirects if r.op in ("<<", "<<-", "<<<", "<")]
        if not bodies or bodies[-1].op == "<" or bodies[-1].body is None:
            raise Unknown("it reads its commands from standard input")
        inner = _inner_script(bodies[-1].body, words, depth, sc, writes)
    if startup is not None:
        return _hidden(inner, words, f"`{startup}` makes the shell run start-up files the agent can write")
    return inner


def _find_exec(args: list[Word], sc: SimpleCommand, depth: int, writes: list[Target]) -> list[Command]:
    out: list[Command] = []
    i = 0
    while i < len(args):
        if args[i].text in ("-exec", "-execdir", "-ok", "-okdir"):
            j = i + 1
            while j < len(args) and args[j].text != ";" and not (args[j].text == "+" and
                                                                  args[j - 1].text.endswith("{}")):
                j += 1
            inner = [replace(w, text=w.text.replace("{}", WILD)) for w in args[i + 1:j]]
            if not inner:
                raise Unknown("find -exec without a command")
            out += _normalise(inner, sc, depth, writes)
            i = j
        i += 1
    return out
