"""From a bash command line to the commands the policy checks, and how a pattern matches one.

`analyse(line)` parses the line (runner.policy.shell) and normalises every simple command:
assignments and redirections dropped, the program path basenamed when it is in a system bin
directory (`/usr/bin/git` -> `git`; `./git` and `tools/git` stay as written), wrappers unwrapped
(`env`, `command`, `builtin`, `exec`, `nice`, `nohup`, `timeout`, `time`, `stdbuf`, `sudo`,
`doas`, `setsid`, `ionice`, `busybox`, `xargs`, `watch`), nested shells and `eval`/`trap`/`alias`
strings parsed recursively, and `find -exec/-execdir/-ok/-okdir CMD` turned into a command too.
A wrapper or shell invocation itself is kept as a *deny-only* command: deny rules see it
(`bash(sudo*)` still works), allow rules need not allow it.

A command that cannot be known before it runs gets `unknown` set (the policy denies it): the
program name is an expansion, an option of a wrapper is an expansion, `bash -c "$X"`,
`eval "$X"`, a shell reading its script from a pipe or /dev/stdin, `env -S`, `sudo -s`, `hash -p`,
`mapfile -C`, `compgen -C`/`complete -C`, `enable -f`, nesting deeper than MAX_DEPTH.

How patterns match the result is in runner.policy.match.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from runner.policy.shell import WILD, ShellSyntaxError, SimpleCommand, Word, parse

MAX_DEPTH = 8
SYSTEM_DIRS = frozenset({"/bin", "/sbin", "/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"})
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "yash", "rbash", "posh", "fish", "csh",
                    "tcsh"})
_OUTPUT_REDIRS = frozenset({">", ">>", ">|", "&>", "&>>", "<>"})
_ENV_ASSIGN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


class _Unknown(Exception):
    """The command cannot be determined before it runs."""


@dataclass(frozen=True)
class Command:
    words: tuple[Word, ...]
    unknown: str | None = None
    """Why what this runs cannot be known (then it is denied); None when it is known."""
    open_end: bool = False
    """More arguments, unknown, are appended at run time (xargs)."""
    deny_only: bool = False
    """A wrapper or shell around other commands: deny rules see it, allow rules need not allow it."""

    @property
    def display(self) -> str:
        text = " ".join(w.text if w.known else w.raw for w in self.words)
        return text + (" …" if self.open_end else "")


@dataclass(frozen=True)
class Analysis:
    commands: tuple[Command, ...]
    writes: tuple[str, ...]
    """Literal targets of output redirections (best effort: the working directory is not tracked)."""


def analyse(line: str) -> Analysis:
    """Raises ShellSyntaxError when the line cannot be parsed."""
    commands: list[Command] = []
    writes: list[str] = []
    _analyse_into(line, 0, commands, writes)
    return Analysis(tuple(commands), tuple(writes))


def _analyse_into(line: str, depth: int, commands: list[Command], writes: list[str]) -> None:
    for sc in parse(line):
        if sc.speculative and sc.words:  # maybe not a command at all: only deny rules look at it
            commands.extend(replace(c, deny_only=True) for c in _normalise(list(sc.words), sc, depth)
                            if c.unknown is None)
            continue
        if sc.speculative:
            continue
        for red in sc.redirects:
            if red.op in _OUTPUT_REDIRS and red.target is not None and red.target.known:
                writes.append(red.target.text)
        if sc.words:
            commands.extend(_normalise(list(sc.words), sc, depth))


def _inner_script(script: str, words: list[Word], depth: int) -> list[Command]:
    """Commands of a nested script, plus the invocation as a deny-only command."""
    out = [Command(tuple(words), deny_only=True)]
    if depth + 1 > MAX_DEPTH:
        raise _Unknown("shells are nested too deeply")
    try:
        _analyse_into(script, depth + 1, out, [])
    except ShellSyntaxError as exc:
        raise _Unknown(f"its inner command cannot be parsed: {exc}") from None
    return out


def program_name(word: Word) -> str:
    """`/usr/bin/git` -> `git`; other paths as written."""
    head, base = posixpath.split(word.text)
    return base if posixpath.normpath(head) in SYSTEM_DIRS else word.text


def _normalise(words: list[Word], sc: SimpleCommand, depth: int) -> list[Command]:
    try:
        return _dispatch(words, sc, depth)
    except _Unknown as exc:
        return [Command(tuple(words), unknown=str(exc))]


def _dispatch(words: list[Word], sc: SimpleCommand, depth: int) -> list[Command]:
    first = words[0]
    if not first.known or first.may_vanish:
        raise _Unknown("the command name is an expansion")
    name = program_name(first)
    words = [replace(first, text=name), *words[1:]]
    args = words[1:]
    if name in _WRAPPERS:
        start = _WRAPPERS[name](args)
        if start is None:
            return [Command(tuple(words))]
        inner = args[start:]
        if not inner:
            return [Command(tuple(words))] if name not in ("exec", "time", "command", "builtin") else []
        return [Command(tuple(words), deny_only=True), *_normalise(inner, sc, depth)]
    if name == "xargs":
        return _xargs(words, sc, depth)
    if name in SHELLS:
        return _shell(words, sc, depth)
    if name in ("eval", "watch"):
        if name == "watch":
            args = args[_options(args, "bcdeghptrwx", "nq", {"no-title", "exec", "beep", "errexit", "chgexit",
                                                             "color", "precise", "differences"},
                                 {"interval"}):]
        if any(not w.known for w in args):
            raise _Unknown(f"the string `{name}` runs is an expansion")
        return _inner_script(" ".join(w.text for w in args), words, depth) if args else [Command(tuple(words))]
    if name in ("source", "."):
        if args and (not args[0].known or args[0].text.startswith(("/dev/", "/proc/"))):
            raise _Unknown("it reads its script from an expansion, a pipe or a device")
        return [Command(tuple(words))]
    if name == "trap":
        if args and args[0].text == "--":
            args = args[1:]
        if not args or args[0].text in ("-", "-p", "-l", "-P") or re.fullmatch(r"\d+", args[0].text):
            return [Command(tuple(words))]
        if not args[0].known:
            raise _Unknown("the trap handler is an expansion")
        return _inner_script(args[0].text, words, depth)
    if name == "alias":
        out = [Command(tuple(words), deny_only=True)]
        for arg in args:
            if not arg.known:
                raise _Unknown("an alias value is an expansion")
            if "=" in arg.text:
                out += _inner_script(arg.text.split("=", 1)[1], words, depth)[1:]
        return out
    risky = {"hash": "-p", "mapfile": "-C", "readarray": "-C", "compgen": "-CF", "complete": "-CF",
             "enable": "-f"}
    if name in risky and any(w.text.startswith("-") and set(w.text[1:]) & set(risky[name][1:])
                             for w in args if not w.text.startswith("--")):
        raise _Unknown(f"`{name} {risky[name][:2]}` makes another name run a command")
    out = [Command(tuple(words))]
    if name == "find":
        out += _find_exec(args, sc, depth)
    return out


def _options(args: list[Word], flags: str, with_arg: str, long_flags: set[str] | frozenset[str] = frozenset(),
             long_with_arg: set[str] | frozenset[str] = frozenset(), *, numeric: bool = False) -> int:
    """Index of the first operand after the options; _Unknown for an unknown or unknowable option."""
    i = 0
    while i < len(args):
        w = args[i]
        if not w.known:
            raise _Unknown("an option before the command is an expansion")
        t = w.text
        if t == "--":
            return i + 1
        if not t.startswith("-") or t == "-":
            return i
        if t.startswith("--"):
            key = t[2:].split("=", 1)[0]
            if key in long_with_arg and "=" not in t:
                i += 1
            elif key not in long_flags and key not in long_with_arg:
                raise _Unknown(f"unknown option {t}")
        elif numeric and re.fullmatch(r"-\d+", t):
            pass
        else:
            for k, c in enumerate(t[1:], 1):
                if c in with_arg:
                    if k == len(t) - 1:
                        i += 1
                    break
                if c not in flags:
                    raise _Unknown(f"unknown option -{c}")
        i += 1
    if i > len(args):
        raise _Unknown("an option is missing its value")
    return i


def _env(args: list[Word]) -> int:
    for w in args:
        t = w.text
        if not t.startswith("-") or t in ("-", "--"):
            break
        if t.startswith("--split-string") or (not t.startswith("--") and "S" in t):
            raise _Unknown("env -S splits a string into a command")
    i = _options(args, "i0v", "uC", {"ignore-environment", "null", "debug"}, {"unset", "chdir"})
    if i < len(args) and args[i].text == "-" and i == 0:
        i += 1
    while i < len(args) and args[i].known and _ENV_ASSIGN.match(args[i].text):
        i += 1
    if i < len(args) and not args[i].known:
        raise _Unknown("an argument of env is an expansion")
    return i


def _command(args: list[Word]) -> int | None:
    i = _options(args, "pvV", "")
    if any(w.text.startswith("-") and set(w.text) & {"v", "V"} for w in args[:i]):
        return None  # `command -v x` only prints
    return i


def _timeout(args: list[Word]) -> int:
    i = _options(args, "v", "sk", {"preserve-status", "foreground", "verbose"}, {"signal", "kill-after"})
    if i >= len(args):
        return i
    if not args[i].known:
        raise _Unknown("the timeout duration is an expansion")
    return i + 1


def _sudo(args: list[Word]) -> int:
    for w in args:
        if not w.text.startswith("-") or w.text == "--":
            break
        if not w.text.startswith("--") and set(w.text[1:]) & set("sielvK"):
            raise _Unknown("sudo -s/-i/-e/-l/-v do not run a plain command")
    i = _options(args, "AbEHnPSkB", "ugCDhprtTU", {"preserve-env", "login", "non-interactive"},
                 {"user", "group", "chdir", "host", "prompt", "role", "type", "command-timeout", "other-user"})
    while i < len(args) and args[i].known and _ENV_ASSIGN.match(args[i].text):
        i += 1
    return i


_WRAPPERS: dict[str, Callable[[list[Word]], int | None]] = {
    "env": _env,
    "command": _command,
    "builtin": lambda a: 0,
    "exec": lambda a: _options(a, "cl", "a"),
    "nice": lambda a: _options(a, "", "n", frozenset(), {"adjustment"}, numeric=True),
    "nohup": lambda a: _options(a, "", ""),
    "timeout": _timeout,
    "time": lambda a: _options(a, "pvaq", "fo", {"portability", "verbose", "append", "quiet"},
                               {"format", "output"}),
    "stdbuf": lambda a: _options(a, "", "ioe", frozenset(), {"input", "output", "error"}),
    "sudo": _sudo,
    "doas": lambda a: _options(a, "n", "uC"),
    "setsid": lambda a: _options(a, "cfw", "", {"ctty", "fork", "wait"}),
    "ionice": lambda a: _options(a, "t", "cn", {"ignore"}, {"class", "classdata"}),
    "busybox": lambda a: 0,
    "coproc": lambda a: 0,
}


def _xargs(words: list[Word], sc: SimpleCommand, depth: int) -> list[Command]:
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
    i = _options(args, "0rtpxoeil", "adEILnPs",
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
    for cmd in _normalise(inner, sc, depth):
        out.append(replace(cmd, open_end=not replace_str) if not cmd.deny_only else cmd)
    return out


def _shell(words: list[Word], sc: SimpleCommand, depth: int) -> list[Command]:
    args = words[1:]
    i, cmode, stdin = 0, False, False
    while i < len(args):
        w = args[i]
        if not w.known:
            if cmode:
                break
            raise _Unknown("an option of the shell is an expansion")
        t = w.text
        if t == "--" or t == "-":
            i += 1
            break
        if t.startswith("--"):
            i += 2 if t in ("--rcfile", "--init-file") else 1
            continue
        if not t.startswith(("-", "+")):
            break
        cmode = cmode or "c" in t[1:]
        stdin = stdin or "s" in t[1:]
        i += 1 + sum(1 for c in t[1:] if c in "oO")
    if cmode:
        if i >= len(args):
            raise _Unknown("`-c` without a command string")
        if not args[i].known:
            raise _Unknown("its command string is an expansion")
        return _inner_script(args[i].text, words, depth)
    if i < len(args) and not stdin:
        script = args[i]
        if not script.known or script.text.startswith(("/dev/", "/proc/")):
            raise _Unknown("it reads its script from an expansion, a pipe or a device")
        return [Command(tuple(words))]  # runs a script file: matched as written
    bodies = [r for r in sc.redirects if r.op in ("<<", "<<-", "<<<", "<") and (r.target is None or
                                                                              r.target.text != "&")]
    if bodies and bodies[-1].op != "<" and bodies[-1].body is not None:
        return _inner_script(bodies[-1].body, words, depth)
    raise _Unknown("it reads its commands from standard input")


def _find_exec(args: list[Word], sc: SimpleCommand, depth: int) -> list[Command]:
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
                raise _Unknown("find -exec without a command")
            out += _normalise(inner, sc, depth)
            i = j
        i += 1
    return out
