"""Property tests: random bash from a generator never gets a denied command past the policy.

Two oracles. By construction: a denied command placed where bash runs it, inside random
containers, must make the line denied. By running it: a random line the policy allows is run by
real bash in an empty directory, and the denied command (`touch P`) must not have run.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.policy import Allow, Deny, Policy
from runner.policy.commands import analyse
from runner.policy.paths import FilePattern
from runner.policy.script import ShellSyntaxError, Word
from runner.policy.targets import may_match
from runner.task import PolicySpec

POLICY = Policy.from_spec(PolicySpec(
    allow=["bash(echo*)", "bash(ls*)", "bash(cat*)", "bash(true*)", "bash(printf*)", "bash(test*)", "bash([*)",
           "bash(:*)", "bash(read*)", "bash(declare*)", "bash(let*)", "bash(set*)", "bash(compgen*)"],
    deny=["bash(touch*)"],
))
DENIED = ["touch P", "/usr/bin/touch P", "to'u'ch P", "\\touch P", '"touch" P', "$'touch' P", "command touch P",
          "env touch P", "timeout 5 touch P", "nice touch P", "xargs touch <<< P", "t=1 touch P"]


def _squote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _dquote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$").replace("`", "\\`") + '"'


CONTAINERS = [
    "{}", "echo a; {}", "{} && echo a", "false || {}", "echo a | {}", "{} | cat", "echo a &\n{}",
    "$({})", "echo $({})", "echo \"$({})\"", "cat <({})", "echo a > >({})",
    "( {} )", "{{ {}; }}", "if true; then {}; fi", "if {}; then :; fi", "for i in 1; do {}; done",
    "while {}; do break; done", "case a in a) {};; esac", "f() {{ {}; }}; f", "function g {{ {}; }}",
    "x=$({})", "echo ${{x:-$({})}}", "[[ -n $({}) ]]", "echo $(( $({}) ))", "cat <<EOF{n}\n$({})\nEOF{n}",
    "! {}", "time {}", "echo a\n\n{}", "echo a \\\n; {}", "echo `{bt}`", "x=`{bt}`",
]
SHELL_CONTAINERS = ["bash -c {q}", "sh -c {q}", "eval {q}", "bash <<'EOF{n}'\n{raw}\nEOF{n}", "bash <<< {q}",
                    "trap {q} EXIT", "find . -maxdepth 0 -exec sh -c {q} \\;", "env bash -c {q}"]


def _backticked(text: str) -> str:
    """The text as it must be written inside backquotes (they nest only when escaped)."""
    return text.replace("\\", "\\\\").replace("`", "\\`")


@st.composite
def wrapped_denied(draw: st.DrawFn) -> str:
    line = draw(st.sampled_from(DENIED))
    for n in range(draw(st.integers(1, 4))):
        if draw(st.booleans()):
            template = draw(st.sampled_from(CONTAINERS))
            line = template.replace("{bt}", "{0}").format(_backticked(line) if "{bt}" in template else line, n=n)
        else:
            template = draw(st.sampled_from(SHELL_CONTAINERS))
            line = template.format(q=draw(st.sampled_from([_squote, _dquote]))(line), raw=line, n=n)
    return line


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(wrapped_denied())
def test_a_denied_command_in_any_container_is_denied(line: str) -> None:
    decision = POLICY.check("bash", {"command": line})
    assert isinstance(decision, Deny), line


# ------------------------------------------------------------------ random lines run by real bash

WORDS = ["a", "'b c'", '"$HOME"', "$x", "*", "P", "x=1", "'$(touch P)'", '"`echo q`"', "$'\\x41'", "{a,b}",
         "'touch P'", "--", "-n", "$((1+2))", "~", "\\;", "'a[$(touch P)]'", "${x:-d}", "$(echo touch)"]
PROGRAMS = ["echo", "ls", "cat", "true", "printf %s", "test -n", "touch", "$x", "x=touch", "x='touch P'",
            "x='a[$(touch P)]'", ": $((x))", "eval", "bash -c", "sh -c", "xargs", "env", "command", ":",
            "let y=x", "declare -i n; n=x", "[[ $x -eq 1 ]]", "y=${x@P}", "set -x", "PS4='$(touch P)'",
            "compgen -W '$(touch P)'", "printf -v 'a[$(touch P)]'", "read 'a[$(touch P)]' <<< 1",
            "x='$(touch P)'", "echo ${!x}", "echo ${y:x}", "[ -v \"$x\" ]", "declare \"$x\"=1"]


@st.composite
def simple(draw: st.DrawFn) -> str:
    words = [draw(st.sampled_from(PROGRAMS))]
    words += draw(st.lists(st.sampled_from(WORDS), max_size=3))
    if draw(st.integers(0, 5)) == 0:
        words.append(draw(st.sampled_from(["> out", "2>&1", "< /dev/null", "<<< 'touch P'", ">> log"])))
    return " ".join(words)


def _compose(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    two = st.tuples(children, children)
    return st.one_of(
        two.map(lambda t: f"{t[0]}; {t[1]}"), two.map(lambda t: f"{t[0]} && {t[1]}"),
        two.map(lambda t: f"{t[0]} | {t[1]}"), two.map(lambda t: f"{t[0]} || {t[1]}"),
        children.map(lambda c: f"echo $({c})"), children.map(lambda c: f"( {c} )"),
        children.map(lambda c: f"{{ {c}; }}"), children.map(lambda c: f"bash -c {shlex.quote(c)}"),
        children.map(lambda c: f"eval {shlex.quote(c)}"), children.map(lambda c: f"if true; then {c}; fi"),
        children.map(lambda c: f"for i in 1 2; do {c}; done"), children.map(lambda c: f"cat <<EOF\n$({c})\nEOF"),
        children.map(lambda c: f"f() {{ {c}; }}; f"), children.map(lambda c: f"echo `{c}`"),
    )


LINES = st.recursive(simple(), _compose, max_leaves=6)


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("touch") is None, reason="needs bash")
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(LINES)
def test_allowed_random_lines_never_run_the_denied_command(tmp_path_factory: pytest.TempPathFactory,
                                                          line: str) -> None:
    decision = POLICY.check("bash", {"command": line})
    if not isinstance(decision, Allow):
        return
    work: Path = tmp_path_factory.mktemp("run")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work)}
    with contextlib.suppress(subprocess.TimeoutExpired):
        subprocess.run(["bash", "-c", line], cwd=work, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=10, check=False)
    assert not (work / "P").exists(), f"allowed as {decision.rule}, but `touch P` ran: {line!r}"


# ------------------------------------------------------------------ run-time write targets

PARTS = ["src", ".github", "workflows", "a.py", "*.py", "*", "**", "x?", "[ab]", "ci.yml", ".git", "b"]
PATH_PARTS = ["src", ".github", "workflows", "a.py", "ci.yml", ".git", "b", "x1", "a", "deep"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(PARTS), min_size=1, max_size=4), st.booleans(),
       st.lists(st.sampled_from(PATH_PARTS), min_size=1, max_size=5))
def test_the_run_time_check_covers_what_pathspec_matches(parts: list[str], anchor: bool, path: list[str]) -> None:
    """The automaton for 'may match' is never narrower than pathspec on a known path."""
    pattern = FilePattern(("/" if anchor else "") + "/".join(parts))
    text = "/".join(path)
    if pattern.matches(text):
        # the same path, spelled so that it is only known at run time
        glob = Word("\x00", "$X/" + text, glob="\x01/" + text)
        assert may_match(pattern, glob, frozenset({"."})), (pattern.text, text)
        assert may_match(pattern, Word(text, text), frozenset({"."}), directory=True), (pattern.text, text)


TOKENS = [*"ab;&|()<>{}[]$`'\"\\\n\t *?!#=-~/.,0123@:%^+", "$(", "${", "<<", "<<E\n", "\nE\n", "$'", "((", "))",
          "$((", "touch ", "eval ", "bash -c ", "case ", " in ", "esac", "for ", "do ", "done", "[[ ", " ]]", "<(",
          "cd ", "x=", "@P}", "[$(", ")]"]


@settings(max_examples=800, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=30).map("".join))
def test_random_text_never_raises(line: str) -> None:
    """Whatever the text, the analysis answers or says it cannot parse it (Policy.check would also
    refuse a line on any other exception, but that would hide a bug: none may happen)."""
    with contextlib.suppress(ShellSyntaxError):
        analyse(line)
    assert isinstance(POLICY.check("bash", {"command": line}), Allow | Deny)
