"""Attack payloads that ran commands deny rules named under the hand-written parser (issue 14),
navigation without rules, git's global options, and run-time write targets. Public API only, so
the same file can be run against the old parser to see each payload get through there."""

from __future__ import annotations

import pytest

from runner.policy import Allow, Deny, Policy
from runner.task import PolicySpec

# Bash is allowed outright but deny patterns exist: the shape of the default policy.
GUARDED = Policy.from_spec(PolicySpec(
    allow=["bash", "read", "write", "edit"],
    deny=["bash(touch*)", "bash(git push*)", "write(.github/workflows/**)", "edit(.github/workflows/**)"],
))

HIDDEN_CODE = [
    # prompt expansion and xtrace prompts run the command substitutions in a value
    "x='$(touch P)'; y=${x@P}",
    "x='$(touch P)'; echo \"${x@P}\"",
    "PS4='$(touch P)'; set -x; :",
    "export PS4='$(touch P)'; set -x; :",
    # arithmetic evaluates array subscripts held in values
    "x='a[$(touch P)]'; : $((x))",
    "x='a[$(touch P)]'; (( x ))",
    "x='a[$(touch P)]'; let y=x",
    "x='a[$(touch P)]'; let \"$x\"",
    "printf -v 'a[$(touch P)]' x",
    "x='a[$(touch P)]'; printf -v \"$x\" y",
    "[ -v 'a[$(touch P)]' ]",
    "x='a[$(touch P)]'; [ -v \"$x\" ]",
    "x='a[$(touch P)]'; test -v \"$x\"",
    "x='a[$(touch P)]'; [[ -v $x ]]",
    "declare 'a[$(touch P)]=1'",
    "x='a[$(touch P)]'; declare \"$x=1\"",
    "x='a[$(touch P)]'; declare -i n; n=x",
    "x='a[$(touch P)]'; [[ $x -eq 1 ]]",
    "x='a[$(touch P)]'; echo ${!x}",
    "x='a[$(touch P)]'; y=hello; echo ${y:x}",
    "x='a[$(touch P)]'; arr=(1); echo ${arr[x]}",
    "x='a[$(touch P)]'; arr=(1); echo ${arr[$x]}",
    "unset 'a[$(touch P)]'",
    "read 'a[$(touch P)]' <<< 1",
    "read x < f; echo $((x))",
    "x=$(cat f); echo $((x + 1))",
    ": 'a[$(touch P)]'; echo $((_))",
    "for x in $(cat f); do echo $((x)); done",
    "set -- 'a[$(touch P)]'; echo $(($1))",
    # word lists, devices behind relative paths, start-up files
    "compgen -W '$(touch P)'",
    "complete -W '$(touch P)' x",
    "bash ../../dev/stdin <<< 'touch P'",
    ". ./../../proc/self/fd/0 <<< 'touch P'",
    "cd / && bash dev/stdin <<< 'touch P'",
    "BASH_ENV=e.sh bash -c true",
    "ENV=e.sh sh -c true",
    "env BASH_ENV=e.sh bash -c true",
    "export BASH_ENV=e.sh; bash -c true",
    "LD_PRELOAD=./evil.so ls",
    "bash -l -c true",
    # code the walker cannot read: eval, sourced files, traps, aliases, options
    "eval 'echo hi'",
    "eval \"$X\"",
    "source .venv/bin/activate",
    ". ./env.sh",
    "trap 'echo bye' EXIT",
    "alias ls='echo x'",
    "shopt -s expand_aliases",
    "git -c core.pager='touch P' log",
    "git -c alias.p=push p",
    "fc -s",
    "$CMD",
    # tree-sitter-bash misreads these: refused rather than trusted
    "echo ${x:-`touch P`}",
    "echo a\n\n\\touch P",
    "echo a\n\\touch P",
]


@pytest.mark.parametrize("command", HIDDEN_CODE)
def test_hidden_code_is_unknown_and_denied(command: str) -> None:
    decision = GUARDED.check("bash", {"command": command})
    assert isinstance(decision, Deny), decision
    assert "cannot tell what" in decision.message or decision.rule == "bash(touch*)", decision


DENIED_BY_RULE = [
    ("git --shallow-file /dev/null push", "bash(git push*)"),
    ("git --git-dir=.git --work-tree . push", "bash(git push*)"),
    ("git -C sub -c x.y=z --no-pager push origin", "bash(git push*)"),
    ("git --namespace n --literal-pathspecs push", "bash(git push*)"),
    ("git --some-new-flag push", "bash(git push*)"),
    ("git --some-new-option value push", "bash(git push*)"),
    ("GIT_PAGER='touch P' git log", "bash(touch*)"),
    ("eval 'touch P'", "bash(touch*)"),
    ("trap 'touch P' EXIT", "bash(touch*)"),
    ("cat <<EOF\n`touch P`\nEOF", "bash(touch*)"),
    ("echo ${x#$(touch P)}", "bash(touch*)"),
    ("echo ${x/`touch P`/y}", "bash(touch*)"),
    ("[[ a =~ $(touch P) ]]", "bash(touch*)"),
    ("echo x > $PWD/.github/workflows/x", "write(.github/workflows/**)"),
    ("echo x > ~/../../workspace/.github/workflows/x", "write(.github/workflows/**)"),
    ("echo x > /workspace/.github/workflows/ci.yml", "write(.github/workflows/**)"),
    ("echo x > .github/workflow[s]/ci.yml", "write(.github/workflows/**)"),
    ("echo x > .github/*/ci.yml", "write(.github/workflows/**)"),
    ("echo x > .git?ub/workflows/ci.yml", "write(.github/workflows/**)"),
    ("echo x > \"$D\"/ci.yml", "write(.github/workflows/**)"),
    ("echo x > .github/workflows/$NAME", "write(.github/workflows/**)"),
    ("echo x >> $(echo .github)/workflows/ci.yml", "write(.github/workflows/**)"),
    ("cd .github && echo x > workflows/ci.yml", "write(.github/workflows/**)"),
    ("(cd .github/workflows; echo x > ci.yml)", "write(.github/workflows/**)"),
    ("echo $(cd .github/workflows && cat > ci.yml < /dev/null)", "write(.github/workflows/**)"),
    ("cd nowhere; echo x > .github/workflows/ci.yml", "write(.github/workflows/**)"),
    ("cd .github/workflows && touch2=1 cp a ci.yml", "write(.github/workflows/**)"),
    ("tee .github/workflows/ci.yml < x", "write(.github/workflows/**)"),
    ("cp a.yml .github/workflows/", "write(.github/workflows/**)"),
    ("sed -i s/a/b/ .github/workflows/ci.yml", "write(.github/workflows/**)"),
    ("mv x .github/workflows/ci.yml", "write(.github/workflows/**)"),
    ("{ echo x; } > .github/workflows/ci.yml", "write(.github/workflows/**)"),
    ("rm -rf .github", "write(.github/workflows/**)"),
    ("ln -s .github/workflows w; echo x > w/ci.yml", "write(.github/workflows/**)"),
    ("mv .github/workflows /tmp/w", "write(.github/workflows/**)"),
    ("cat <<'EOF' > .github/workflows/ci.yml\non: push\nEOF", "write(.github/workflows/**)"),
    ("dd if=x of=.github/workflows/ci.yml", "write(.github/workflows/**)"),
]


@pytest.mark.parametrize(("command", "rule"), DENIED_BY_RULE)
def test_denied_by_the_rule_that_names_it(command: str, rule: str) -> None:
    decision = GUARDED.check("bash", {"command": command})
    assert isinstance(decision, Deny), decision
    assert decision.rule == rule, decision
    assert f'"{rule}"' in decision.message


STILL_ALLOWED = [
    "echo $((1 + 2))",
    "n=5; echo $((n + 1))",
    "for i in 1 2 3; do echo $((i * 2)); done",
    "for ((i = 0; i < 3; i++)); do echo $i; done",
    "i=0; while [ $i -lt 3 ]; do i=$((i + 1)); done",
    "[[ $# -eq 0 ]] && echo none",
    "echo $(( x * 3 ))",
    "echo x > /tmp/out.txt",
    "python -m pytest > out.txt 2>&1",
    "echo x > /dev/null",
    "cat .github/workflows/ci.yml",
    "echo x > .github/CODEOWNERS",
    "cp .github/workflows/ci.yml /tmp/ci.yml",
    "cd src && ls",
    "source /etc/os-release",
    "git log --oneline | head",
    "GIT_PAGER=cat git log",
    "rm -rf build .github/CODEOWNERS",
    "mv src/pkg/old.py src/pkg/new.py",
    "sed -i.bak -e 's/a/b/g' src/*.py && rm -f src/*.bak",
    "cat <<'EOF' > tests/test_x.py\nx = 1\nEOF",
]


@pytest.mark.parametrize("command", STILL_ALLOWED)
def test_ordinary_commands_still_pass(command: str) -> None:
    assert isinstance(GUARDED.check("bash", {"command": command}), Allow), command


def test_allow_all_passes_unknown_commands() -> None:
    everything = Policy.from_spec(PolicySpec(allow=["bash"]))
    for command in ["eval 'echo hi'", "source .venv/bin/activate && python -m pytest", "x='a'; : $((x))"]:
        assert everything.check("bash", {"command": command}) == Allow("bash"), command


NAVIGATION = Policy.from_spec(PolicySpec(allow=["bash(python -m pytest*)", "bash(ls*)"]))


@pytest.mark.parametrize("command", [
    "cd tests && python -m pytest",
    "cd tests; python -m pytest -q",
    "cd /workspace/tests && python -m pytest",
    "pushd tests && python -m pytest && popd",
    "(cd tests && python -m pytest)",
    "cd - && ls",
])
def test_cd_inside_the_workspace_needs_no_rule(command: str) -> None:
    assert isinstance(NAVIGATION.check("bash", {"command": command}), Allow), command


@pytest.mark.parametrize("command", ["cd /tmp && python -m pytest", "cd .. && ls", "cd \"$D\" && ls", "cd && ls",
                                     "cd tests && rm -rf x"])
def test_cd_elsewhere_still_needs_a_rule(command: str) -> None:
    d = NAVIGATION.check("bash", {"command": command})
    assert isinstance(d, Deny) and d.rule is None, (command, d)


def test_cd_is_visible_to_deny_rules() -> None:
    p = Policy.from_spec(PolicySpec(allow=["bash"], deny=["bash(cd*)"]))
    assert p.check("bash", {"command": "cd src"}).rule == "bash(cd*)"
