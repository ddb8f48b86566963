"""Option parsing of the programs that run another program (`env`, `timeout`, `sudo`, ...).

Each parser returns the index of the wrapped command in the wrapper's arguments, None when the
wrapper runs nothing (`command -v x`), or raises Unknown when that cannot be known before it runs
(an option is an expansion, `env -S`, `sudo -s`).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from runner.policy.script import CODE_VARIABLES, COMMAND_VARIABLES, Word
from runner.policy.values import Unknown

ENV_ASSIGN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def env_assignment(word: Word) -> None:
    """`env NAME=value` sets a variable for the program: the same variables are refused as in bash."""
    name = word.text.split("=", 1)[0]
    if name in CODE_VARIABLES or name in COMMAND_VARIABLES:
        raise Unknown(f"setting {name} makes a program run code from its value")


def options(args: list[Word], flags: str, with_arg: str, long_flags: set[str] | frozenset[str] = frozenset(),
             long_with_arg: set[str] | frozenset[str] = frozenset(), *, numeric: bool = False) -> int:
    """Index of the first operand after the options; Unknown for an unknown or unknowable option."""
    i = 0
    while i < len(args):
        w = args[i]
        if not w.known:
            raise Unknown("an option before the command is an expansion")
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
                raise Unknown(f"unknown option {t}")
        elif numeric and re.fullmatch(r"-\d+", t):
            pass
        else:
            for k, c in enumerate(t[1:], 1):
                if c in with_arg:
                    if k == len(t) - 1:
                        i += 1
                    break
                if c not in flags:
                    raise Unknown(f"unknown option -{c}")
        i += 1
    if i > len(args):
        raise Unknown("an option is missing its value")
    return i


def _env(args: list[Word]) -> int:
    for w in args:
        t = w.text
        if not t.startswith("-") or t in ("-", "--"):
            break
        if t.startswith("--split-string") or (not t.startswith("--") and "S" in t):
            raise Unknown("env -S splits a string into a command")
        if t.startswith("--chdir") or (not t.startswith("--") and "C" in t):
            raise Unknown("env -C runs the command in another directory, which the write rules cannot follow")
    i = options(args, "i0v", "uC", {"ignore-environment", "null", "debug"}, {"unset", "chdir"})
    if i < len(args) and args[i].text == "-" and i == 0:
        i += 1
    while i < len(args) and args[i].known and ENV_ASSIGN.match(args[i].text):
        env_assignment(args[i])
        i += 1
    if i < len(args) and not args[i].known:
        raise Unknown("an argument of env is an expansion")
    return i


def _command(args: list[Word]) -> int | None:
    i = options(args, "pvV", "")
    if any(w.text.startswith("-") and set(w.text) & {"v", "V"} for w in args[:i]):
        return None  # `command -v x` only prints
    return i


def _timeout(args: list[Word]) -> int:
    i = options(args, "v", "sk", {"preserve-status", "foreground", "verbose"}, {"signal", "kill-after"})
    if i >= len(args):
        return i
    if not args[i].known:
        raise Unknown("the timeout duration is an expansion")
    return i + 1


def _sudo(args: list[Word]) -> int:
    for w in args:
        if not w.text.startswith("-") or w.text == "--":
            break
        if (not w.text.startswith("--") and set(w.text[1:]) & set("sielvKD")) or w.text.startswith("--chdir"):
            raise Unknown("sudo -s/-i/-e/-l/-v/-D do not run a plain command in this directory")
    i = options(args, "AbEHnPSkB", "ugCDhprtTU", {"preserve-env", "login", "non-interactive"},
                 {"user", "group", "chdir", "host", "prompt", "role", "type", "command-timeout", "other-user"})
    while i < len(args) and args[i].known and ENV_ASSIGN.match(args[i].text):
        env_assignment(args[i])
        i += 1
    return i


WRAPPERS: dict[str, Callable[[list[Word]], int | None]] = {
    "env": _env,
    "command": _command,
    "builtin": lambda a: 0,
    "exec": lambda a: options(a, "cl", "a"),
    "nice": lambda a: options(a, "", "n", frozenset(), {"adjustment"}, numeric=True),
    "nohup": lambda a: options(a, "", ""),
    "timeout": _timeout,
    "time": lambda a: options(a, "pvaq", "fo", {"portability", "verbose", "append", "quiet"},
                               {"format", "output"}),
    "stdbuf": lambda a: options(a, "", "ioe", frozenset(), {"input", "output", "error"}),
    "sudo": _sudo,
    "doas": lambda a: options(a, "n", "uC"),
    "setsid": lambda a: options(a, "cfw", "", {"ctty", "fork", "wait"}),
    "ionice": lambda a: options(a, "t", "cn", {"ignore"}, {"class", "classdata"}),
    "busybox": lambda a: 0,
}


