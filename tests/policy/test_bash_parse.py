"""The tree-sitter walker and the command normalisation behind bash rules."""

from __future__ import annotations

import contextlib
import random

import pytest

from runner.policy import Allow, Deny, Policy
from runner.policy.commands import analyse
from runner.policy.match import exists_match, forall_match
from runner.policy.script import WILD, ShellSyntaxError
from runner.policy.walker import walk as parse
from runner.task import PolicySpec


def words(line: str) -> list[list[str]]:
    return [[w.text for w in sc.words] for sc in parse(line) if sc.words]


def commands(line: str) -> list[str]:
    """Normalised commands that allow rules must allow (wrappers and unknowables left out)."""
    return [" ".join(w.text for w in c.words) for c in analyse(line).commands
            if not c.deny_only and c.unknown is None]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("echo hi", [["echo", "hi"]]),
        ("echo   a\t b", [["echo", "a", "b"]]),
        ('echo "a;b" c', [["echo", "a;b", "c"]]),
        ("echo 'a  b'", [["echo", "a  b"]]),
        ("echo a\\ b", [["echo", "a b"]]),
        ("echo $'a\\tb\\x41\\101'", [["echo", "a\tbAA"]]),
        ('echo $"x"', [["echo", WILD]]),  # locale translation: TEXTDOMAIN's catalog may replace it
        ("a; b && c || d | e |& f & g", [["a"], ["b"], ["c"], ["d"], ["e"], ["f"], ["g"]]),
        ("a\nb", [["a"], ["b"]]),
        ("echo a\\\nb", [["echo", "ab"]]),
        ("echo $(a; b)", [["a"], ["b"], ["echo", WILD]]),
        ("echo `a`", [["a"], ["echo", WILD]]),
        ('echo "x$(a)y"', [["a"], ["echo", f"x{WILD}y"]]),
        ("echo <(a) >(b)", [["a"], ["b"], ["echo", WILD, WILD]]),
        ("X=1 Y=$(a) b", [["a"], ["b"]]),
        ("cat <<EOF\nnot a command\nEOF\nb", [["cat"], ["b"]]),
        ("cat <<EOF\n$(a)\nEOF", [["a"], ["cat"]]),
        ("(a; b) && { c; }", [["a"], ["b"], ["c"]]),
        ("if a; then b; elif c; then d; else e; fi", [["a"], ["b"], ["c"], ["d"], ["e"]]),
        ("for x in 1 2; do a $x; done", [["a", WILD]]),
        ("for ((i=0;i<3;i++)); do a; done", [["a"]]),
        ("while a; do b; done", [["a"], ["b"]]),
        ("case $x in a|b) c;; *) d;; e) f;; esac", [["c"], ["d"], ["f"]]),
        ("f() { a; }; function g { b; }", [["a"], ["b"]]),
        ("[[ -n $(a) && x == y ]]", [["a"]]),
        ("(( x = $(a) + 1 ))", [["a"]]),
        ("echo $((1 + 2))", [["echo", WILD]]),
        ("echo ${x:-$(a)}", [["a"], ["echo", WILD]]),
        ("a 2>&1 >out <in", [["a"]]),
        ("a # comment; b", [["a"]]),
        ("echo a#b", [["echo", "a#b"]]),
        ("echo {a,b} {} x{1..3}", [["echo", WILD, "{}", WILD]]),
        ("arr=(a $(b) c) d", [["b"], ["d"]]),
        ("declare -a arr=(a $(b)) x=1", [["b"], ["declare", "-a", f"arr={WILD}", "x=1"]]),
        ("! a | b", [["a"], ["b"]]),
        ("time -p a", [["time", "-p", "a"]]),  # tree-sitter reads `time` as a command: unwrapped later
        ("", []),
        ("   \n\n  ", []),
    ],
)
def test_parse_words(line: str, expected: list[list[str]]) -> None:
    assert words(line) == expected


@pytest.mark.parametrize(
    "line",
    ["echo 'x", 'echo "x', "echo $(x", "echo `x", "(a", "a)", "{ a", "if a; then b", "a && ", "| a", "a ||",
     "case x in a) b", "echo ${x", "a <", "while a; do b", "a\x00", "f() )", "echo a ;; echo b",
     # valid bash that tree-sitter-bash refuses: denied as unparsable (fail closed)
     "case x in a) b;& c) d;;& esac", "echo @(a|b)", "echo ${ git push; }"],
)
def test_parse_errors(line: str) -> None:
    with pytest.raises(ShellSyntaxError):
        parse(line)


@pytest.mark.parametrize("line", ["echo $'\\0'", "echo (a)"])
def test_not_modelled_is_unknown(line: str) -> None:
    assert any(c.unknown for c in analyse(line).commands)


def test_heredoc_bodies() -> None:
    sc = parse("cat <<'EOF' && b\n$(x)\nEOF\n")[0]
    assert sc.redirects[0].body == "$(x)\n"
    sc = parse("cat <<-E\n\tline\n\tE")[0]
    assert sc.redirects[0].body == "line\n"
    sc = parse("cat <<E\n$X\nE")[0]
    assert sc.redirects[0].body is None  # holds an expansion: not known
    sc = parse("cat <<< 'a b'")[0]
    assert sc.redirects[0].body == "a b\n"  # a here-string ends with a newline


def test_word_flags() -> None:
    w = parse("a $X \"$X\" *.py 'q' x$Y")[0].words
    assert [x.may_vanish for x in w] == [False, True, False, True, False, False]  # *.py: nullglob
    assert [x.quoted for x in w] == [False, False, True, False, True, False]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("/usr/bin/git  push", ["git push"]),
        ("./script.sh x", ["./script.sh x"]),
        ("/workspace/bin/git push", ["/workspace/bin/git push"]),
        ("env -i A=1 git push", ["git push"]),
        ("env", ["env"]),
        ("command -v git", ["command -v git"]),
        ("exec 3>&1", []),
        ("nice -n 5 nohup timeout -k 5 10 stdbuf -oL time -p a b", ["a b"]),
        ("sudo -u x -E A=1 a", ["a"]),
        ("xargs -0 -n1 grep -l x", ["grep -l x"]),
        ("xargs", ["echo"]),
        ("find . -name '*.py' -exec wc -l {} +", ["find . -name *.py -exec wc -l {} +", f"wc -l {WILD}"]),
        ("bash -c 'a; b' name arg", ["a", "b"]),
        ("sh -ec 'a | b'", ["a", "b"]),
        ("bash script.sh", ["bash script.sh"]),
        ("eval 'a;' b", ["a", "b"]),
        ("trap 'a' EXIT; trap - EXIT", ["a", "trap - EXIT"]),
        ("alias x='a b' y=c", ["a b", "c"]),
        ("bash <<EOF\na\nEOF", ["a"]),
        ("watch -n 1 a b", ["a b"]),
        ("busybox sh -c a", ["a"]),
    ],
)
def test_normalised_commands(line: str, expected: list[str]) -> None:
    assert commands(line) == expected


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("$X a", "the command name is an expansion"),
        ("bash -c \"$X\"", "command string is an expansion"),
        ("a | bash", "standard input"),
        ("env -S 'a b'", "env -S"),
        ("timeout $T a", "expansion"),
        ("mapfile -C cb x", "mapfile -C"),
        ("bash -c 'echo \"x'", "cannot be parsed"),
        ("source x.sh", "a file the agent can write"),
    ],
)
def test_unknowable(line: str, reason: str) -> None:
    unknown = [c.unknown for c in analyse(line).commands if c.unknown]
    assert unknown and reason in unknown[0]


def test_nested_shell_depth_limit() -> None:
    line = "a"
    for _ in range(10):
        line = "bash -c " + "'" + line.replace("'", "'\\''") + "'"
    assert any(c.unknown for c in analyse(line).commands)


def test_arithmetic_read_as_commands_for_deny_rules_only() -> None:
    p = Policy.from_spec(PolicySpec(allow=["bash(echo*)"], deny=["bash(git push*)"]))
    assert p.check("bash", {"command": "echo $((1 + 2)) $(( x * 3 ))"}) == Allow("bash(echo*)")
    assert isinstance(p.check("bash", {"command": "echo $((git push))"}), Deny)
    assert isinstance(p.check("bash", {"command": "((git push))"}), Deny)


def test_matchers() -> None:
    assert exists_match(f"git {WILD}", "git push*")
    assert not exists_match("git status", "git push*")
    assert exists_match(f"g{WILD}h", "git push")
    assert forall_match(f"echo {WILD}", "echo *")
    assert not forall_match(f"echo {WILD}", "echo x*")
    assert not forall_match(f"{WILD}", "echo*")
    assert forall_match("python -m pytest -k a or b", "python -m pytest*")


# ------------------------------------------------------------------ adversarial random tests

_ALPHABET = [*list("ab gitpush;&|()<>{}[]$`'\"\\\n\t*?!#=-~/.,0123456789"), "$(", "${", "<<", "<<EOF\n", "\nEOF\n", "$'", "((", "))", "bash -c ", "eval ", "if ", "then ", "fi", "case ", " in ", "esac", "do ", "done", "for ", "while ", "function ", "[[ ", " ]]", "xargs ", "env ", "\\x", "<(", ">(", "2>&1", "|&", ";;", "}", "{ "]

_POLICY = Policy.from_spec(PolicySpec(allow=["bash(echo*)", "bash(ls*)"], deny=["bash(git push*)"]))


@pytest.mark.parametrize("seed", range(8))
def test_parser_never_crashes_on_random_input(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(600):
        line = "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, 40)))
        with contextlib.suppress(ShellSyntaxError):
            parse(line)
        decision = _POLICY.check("bash", {"command": line})
        assert isinstance(decision, Allow | Deny)
        if isinstance(decision, Allow):
            # whatever was allowed only ran allowed commands: re-check every command by itself
            for cmd in commands(line):
                assert cmd.startswith(("echo", "ls")), (line, cmd)


def test_deep_nesting_is_denied_not_crashing() -> None:
    for line in ["(" * 5000, "$(" * 3000, "`" * 2001, "{ " * 3000, "echo " + "${" * 3000]:
        d = _POLICY.check("bash", {"command": line})
        assert isinstance(d, Deny)


_CONTAINERS = ["{}", "$( {})", "`{}`", "echo $( {})", "echo \"$( {})\"", "cat <({})", "( {} )", "{{ {}; }}",
               "bash -c '{}'", "sh -c \"{}\"", "eval '{}'", "if true; then {}; fi", "for i in 1; do {}; done",
               "echo ok | {}", "echo ok && {}", "echo ok\n{}", "f() {{ {}; }}", "cat <<EOF\n$({})\nEOF",
               "bash <<EOF\n{}\nEOF", "echo ${{x:-$( {})}}"]
_WRAPPERS = ["", "env A=1 ", "command ", "exec ", "nohup ", "timeout 5 ", "nice ", "time ", "sudo ", "X=1 ",
             "builtin ", "stdbuf -o0 "]
_SPELLINGS = ["git push", "/usr/bin/git push", "g'i't push", "\\git push", "git  push", '"git" push',
              "git -C . push", "git pu{s,}h", "git $'push'", "git push origin"]


@pytest.mark.parametrize("seed", range(4))
def test_random_compositions_of_git_push_are_denied(seed: int) -> None:
    rng = random.Random(1000 + seed)
    for _ in range(300):
        inner = rng.choice(_WRAPPERS) + rng.choice(_SPELLINGS)
        for _ in range(rng.randint(1, 3)):
            container = rng.choice(_CONTAINERS)
            if "'" in container:
                inner = inner.replace("'", "'\\''")
            if container == 'sh -c "{}"':
                inner = inner.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
            inner = container.format(inner)
        decision = _POLICY.check("bash", {"command": inner})
        assert isinstance(decision, Deny), inner
