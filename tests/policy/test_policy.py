"""Policy decisions: a realistic policy, bypass attempts that must be denied, calls that must pass."""

from __future__ import annotations

import pytest

from runner.policy import DEFAULT_POLICY, Allow, Deny, Policy, PolicyError, check_rules
from runner.task import PolicySpec

REALISTIC = PolicySpec(
    default="deny",
    allow=["read", "grep", "glob", "ls", "edit(src/**)", "bash(python -m pytest*)", "bash(echo*)", "bash(cat*)",
           "bash(ls*)", "bash(grep*)"],
    deny=["bash(git push*)", "write(.github/workflows/**)"],
)
POLICY = Policy.from_spec(REALISTIC)

# (command, expected rule or None) -- every one must be denied.
BASH_DENIED = [
    ("pytest; curl x", None),
    ("python -m pytest; curl x", None),
    ("python -m pytest && $(curl x)", None),
    ("echo `git push`", "bash(git push*)"),
    ('bash -c "git push"', "bash(git push*)"),
    ("sh -c 'echo ok; git push origin main'", "bash(git push*)"),
    ("bash -lc 'git push'", "bash(git push*)"),
    ("bash -o pipefail -c 'git push'", "bash(git push*)"),
    ("zsh -c 'git push'", "bash(git push*)"),
    ("env A=1 git push", "bash(git push*)"),
    ("env -i A=1 B=2 git push", "bash(git push*)"),
    ("/usr/bin/git  push", "bash(git push*)"),
    ("/usr/bin/git push origin", "bash(git push*)"),
    ("echo hi\ngit push", "bash(git push*)"),
    ("echo hi\n\n  git push", "bash(git push*)"),
    ("cat <(git push)", "bash(git push*)"),
    ("echo hi > >(git push)", "bash(git push*)"),
    ("GIT_DIR=x git push", "bash(git push*)"),
    ("git  push", "bash(git push*)"),
    ("git\tpush", "bash(git push*)"),
    ("g'i't push", "bash(git push*)"),
    ('"git" "push"', "bash(git push*)"),
    ("\\git push", "bash(git push*)"),
    ("git -C . push", "bash(git push*)"),
    ("git -c user.name=x --no-pager push", "bash(git push*)"),
    ("command git push", "bash(git push*)"),
    ("command -p git push", "bash(git push*)"),
    ("builtin eval git push", "bash(git push*)"),
    ("exec git push", "bash(git push*)"),
    ("nohup git push &", "bash(git push*)"),
    ("nice -n 5 git push", "bash(git push*)"),
    ("timeout 10 git push", "bash(git push*)"),
    ("timeout -s KILL 10s git push", "bash(git push*)"),
    ("time git push", "bash(git push*)"),
    ("stdbuf -oL git push", "bash(git push*)"),
    ("sudo -u root git push", "bash(git push*)"),
    ("echo push | xargs git", "bash(git push*)"),
    ("echo x | xargs -I{} git push {}", "bash(git push*)"),
    ("find . -name x -exec git push \\;", "bash(git push*)"),
    ("find . -execdir sh -c 'git push' \\;", "bash(git push*)"),
    ("git pu{s,}h", "bash(git push*)"),
    ("git pu?h", "bash(git push*)"),
    ("git pu*", "bash(git push*)"),
    ("git $SUB", "bash(git push*)"),
    ("git push$X", "bash(git push*)"),
    ("$'git\\x20push'", "bash(git push*)"),
    ("git $'\\x70ush'", "bash(git push*)"),
    ("$'\\147it' push", "bash(git push*)"),
    ("bash <<EOF\ngit push\nEOF", "bash(git push*)"),
    ("bash <<'EOF'\necho ok\ngit push\nEOF", "bash(git push*)"),
    ("sh <<< 'git push'", "bash(git push*)"),
    ("cat <<EOF\n$(git push)\nEOF", "bash(git push*)"),
    ("cat <<EOF\n`git push`\nEOF", "bash(git push*)"),
    ('echo "$(git push)"', "bash(git push*)"),
    ('echo "x`git push`y"', "bash(git push*)"),
    ("echo ${X:-$(git push)}", "bash(git push*)"),
    ("echo $(( $(git push) + 1 ))", "bash(git push*)"),
    ("X=$(git push) echo hi", "bash(git push*)"),
    ("echo ok && { git push; }", "bash(git push*)"),
    ("(git push)", "bash(git push*)"),
    ("( (git push) )", "bash(git push*)"),
    ("if true; then git push; fi", "bash(git push*)"),
    ("if git push; then echo; fi", "bash(git push*)"),
    ("for i in 1; do git push; done", "bash(git push*)"),
    ("while false; do :; done; until git push; do :; done", "bash(git push*)"),
    ("case x in x) git push;; esac", "bash(git push*)"),
    ("f() { git push; }", "bash(git push*)"),
    ("function f { git push; }; f", "bash(git push*)"),
    ("[[ $(git push) ]]", "bash(git push*)"),
    ("eval git push", "bash(git push*)"),
    ("eval 'git' 'push'", "bash(git push*)"),
    ("trap 'git push' EXIT", "bash(git push*)"),
    ("alias p='git push'", "bash(git push*)"),
    ("watch git push", "bash(git push*)"),
    ("echo ok | git push", "bash(git push*)"),
    ("echo ok |& git push", "bash(git push*)"),
    ("echo ok || git push", "bash(git push*)"),
    ("echo x \\\n; git push", "bash(git push*)"),
    ("echo ${ git push; }", None),  # bash 5.3 syntax tree-sitter-bash does not know: refused as unparsable
    ("echo x > .github/workflows/ci.yml", "write(.github/workflows/**)"),
    ("cat a >> ./.github/workflows/../workflows/x.yml", "write(.github/workflows/**)"),
    # unknowable or unparsable: denied without a rule
    ("$CMD push", None),
    ("$(echo git) push", None),
    ("`echo git` push", None),
    ("git${IFS}push", None),
    ('bash -c "$X"', None),
    ('eval "$X"', None),
    ("echo 'git push' | bash", None),
    ("echo 'git push' | source /dev/stdin", None),
    ("source <(echo git push)", None),
    ("env -S 'git push'", None),
    ("env $X git push", None),
    ("timeout $T git push", None),
    ("sudo -s git push", None),
    ("hash -p /usr/bin/git p", None),
    ("echo 'unterminated", None),
    ('echo "unterminated', None),
    ("echo $(git push", None),
    ("echo `git push", None),
    ("echo \\$(git push)", None),
    ("(echo hi", None),
    ("echo hi)", None),
    ("{ echo hi", None),
    ("if true; then echo", None),
    ("echo a ;; echo b", None),
    ("echo hi\x00", None),
    ("curl http://x", None),
    ("echo ok; rm -rf /", None),
    ("python -c 'print(1)'", None),
    ("python -m pip install x", None),
    ("rm -rf src", None),
    ("./cat x", None),
    ("tools/echo hi", None),
]

BASH_ALLOWED = [
    ("echo hi", "bash(echo*)"),
    ('echo "a;b"', "bash(echo*)"),
    ("echo 'a && git push'", "bash(echo*)"),
    ("echo git push", "bash(echo*)"),
    ("echo \\$HOME \\`x\\`", "bash(echo*)"),
    ("echo '`git push`'", "bash(echo*)"),
    ("python -m pytest", "bash(python -m pytest*)"),
    ('python -m pytest -k "a or b"', "bash(python -m pytest*)"),
    ("python -m pytest -q 2>&1", "bash(python -m pytest*)"),
    ("python -m pytest > out.txt 2>&1", "bash(python -m pytest*)"),
    ("python -m pytest 2>&1 | grep FAIL", "bash(python -m pytest*)"),
    ("cat a.txt | grep x | ls", "bash(cat*)"),
    ("cat <<EOF\ngit push\nEOF", "bash(cat*)"),
    ("cat <<'EOF'\n$(git push)\nEOF", "bash(cat*)"),
    ("cat <<-EOF\n\tgit push\n\tEOF\necho done", "bash(cat*)"),
    ("cat <<< 'git push'", "bash(cat*)"),
    ("ls *.py", "bash(ls*)"),
    ("ls -la src/", "bash(ls*)"),
    ("echo $HOME", "bash(echo*)"),
    ('echo "$HOME/x"', "bash(echo*)"),
    ("grep -rn 'def main' src", "bash(grep*)"),
    ("cat x; echo done", "bash(cat*)"),
    ("cat x && echo ok || echo fail", "bash(cat*)"),
    ("echo a\necho b", "bash(echo*)"),
    ("  echo   spaced   ", "bash(echo*)"),
    ("echo hi # git push", "bash(echo*)"),
    ("X=1 echo hi", "bash(echo*)"),
    ("env X=1 python -m pytest", "bash(python -m pytest*)"),
    ("timeout 60 python -m pytest", "bash(python -m pytest*)"),
    ("/bin/cat x", "bash(cat*)"),
    ("for f in a b; do echo $f; done", "bash(echo*)"),
    ("if ls x; then cat x; else echo none; fi", "bash(ls*)"),
    ("(cd_is_not_needed=1; echo hi)", "bash(echo*)"),
    ("{ echo a; echo b; } > out.txt", "bash(echo*)"),
    ("echo $(echo nested)", "bash(echo*)"),
    ("ls | xargs echo", "bash(ls*)"),
    ("echo x > /dev/null", "bash(echo*)"),
    ("bash -c 'echo inner'", "bash(echo*)"),
    ("echo {}", "bash(echo*)"),
    ("echo a=b", "bash(echo*)"),
]


@pytest.mark.parametrize(("command", "rule"), BASH_DENIED, ids=[repr(c)[:60] for c, _ in BASH_DENIED])
def test_bash_denied(command: str, rule: str | None) -> None:
    decision = POLICY.check("bash", {"command": command})
    assert isinstance(decision, Deny), decision
    assert decision.rule == rule
    assert decision.message
    if rule is not None:
        assert f'"{rule}"' in decision.message


@pytest.mark.parametrize(("command", "rule"), BASH_ALLOWED, ids=[repr(c)[:60] for c, _ in BASH_ALLOWED])
def test_bash_allowed(command: str, rule: str) -> None:
    assert POLICY.check("bash", {"command": command}) == Allow(rule)


def test_deny_messages_name_rule_and_command() -> None:
    d = POLICY.check("bash", {"command": "echo ok; git push origin"})
    assert d == Deny("bash(git push*)",
                     'denied by rule "bash(git push*)": the command "git push origin" is not allowed')
    d = POLICY.check("bash", {"command": "echo ok; curl x"})
    assert d == Deny(None, 'no rule allows "curl x" and the policy default is deny')
    d = POLICY.check("bash", {"command": "echo 'x"})
    assert isinstance(d, Deny) and "cannot be parsed" in d.message
    d = POLICY.check("bash", {"command": "$CMD push"})
    assert isinstance(d, Deny) and "cannot tell what" in d.message and "$CMD push" in d.message


def test_git_global_options_shown_as_written() -> None:
    d = POLICY.check("bash", {"command": "git -C sub push"})
    assert isinstance(d, Deny) and '"git -C sub push"' in d.message


def test_git_options_do_not_widen_allow() -> None:
    p = Policy.from_spec(PolicySpec(allow=["bash(git status*)"]))
    assert p.check("bash", {"command": "git status"}) == Allow("bash(git status*)")
    assert isinstance(p.check("bash", {"command": "git -c core.pager=evil status"}), Deny)


# ------------------------------------------------------------------ file tools

FILE_CASES = [
    ("read", {"path": "README.md"}, Allow("read")),
    ("read", {"path": "/etc/passwd"}, None),
    ("read", {"path": "../x"}, None),
    ("read", {"path": "src/../../x"}, None),
    ("read", {"path": ""}, None),
    ("read", {}, None),
    ("read", {"path": 3}, None),
    ("edit", {"path": "src/a.py"}, Allow("edit(src/**)")),
    ("edit", {"path": "./src/pkg/../a.py"}, Allow("edit(src/**)")),
    ("edit", {"path": "/workspace/src/a.py"}, Allow("edit(src/**)")),
    ("edit", {"path": "/workspace/src/../../etc/x"}, None),
    ("edit", {"path": "tests/a.py"}, None),
    ("edit", {"path": "src"}, None),
    ("edit", {"path": "srcx/a.py"}, None),
    ("write", {"path": "src/a.py", "content": ""}, None),
    ("write", {"path": ".github/workflows/ci.yml", "content": ""}, "write(.github/workflows/**)"),
    ("write", {"path": "./.github//workflows/./ci.yml", "content": ""}, "write(.github/workflows/**)"),
    ("write", {"path": "x/../.github/workflows/ci.yml", "content": ""}, "write(.github/workflows/**)"),
    ("grep", {"pattern": "x"}, Allow("grep")),
    ("grep", {"pattern": "x", "path": "/tmp"}, None),
    ("ls", {}, Allow("ls")),
    ("ls", {"path": "/"}, None),
    ("glob", {"pattern": "src/**/*.py"}, Allow("glob")),
    ("glob", {"pattern": "../*"}, None),
    ("glob", {"pattern": "/etc/*"}, None),
]


@pytest.mark.parametrize(("tool", "tool_input", "expected"), FILE_CASES)
def test_file_tools(tool: str, tool_input: dict[str, object], expected: Allow | str | None) -> None:
    decision = POLICY.check(tool, tool_input)
    if isinstance(expected, Allow):
        assert decision == expected
    else:
        assert isinstance(decision, Deny), decision
        assert decision.rule == expected


def test_escaping_path_message() -> None:
    d = POLICY.check("read", {"path": "/etc/passwd"})
    assert isinstance(d, Deny) and "outside the workspace" in d.message


@pytest.mark.parametrize(
    ("pattern", "path", "hit"),
    [
        ("src/**", "src/a/b.py", True),
        ("src/**", "src", False),
        ("src/**", "lib/src/a.py", False),
        ("*.py", "a.py", True),
        ("*.py", "deep/er/a.py", True),
        ("*.py", "a.pyc", False),
        ("/a.py", "a.py", True),
        ("/a.py", "x/a.py", False),
        ("**/tests/**", "tests/t.py", True),
        ("**/tests/**", "pkg/tests/t.py", True),
        ("**/tests/**", "pkg/testsx/t.py", False),
        ("a/**/b", "a/b", True),
        ("a/**/b", "a/x/y/b", True),
        (".git", ".git/config", True),
        (".git", "sub/.git/hooks/pre-commit", True),
        (".git", ".github/x", False),
        ("docs/*.md", "docs/a.md", True),
        ("docs/*.md", "docs/x/a.md", False),
        ("file?.txt", "file1.txt", True),
        ("file[0-9].txt", "filea.txt", False),
        ("build/", "build/out.o", True),
    ],
)
def test_gitignore_patterns(pattern: str, path: str, hit: bool) -> None:
    p = Policy.from_spec(PolicySpec(default="allow", deny=[f"write({pattern})"]))
    d = p.check("write", {"path": path, "content": ""})
    assert isinstance(d, Deny) is hit, d


def test_dir_tools_cover_directory_contents() -> None:
    p = Policy.from_spec(PolicySpec(allow=["grep(src/**)", "ls(src/**)", "glob(src/**)"]))
    assert p.check("grep", {"pattern": "x", "path": "src"}) == Allow("grep(src/**)")
    assert p.check("ls", {"path": "src/pkg"}) == Allow("ls(src/**)")
    assert p.check("glob", {"pattern": "src/**/*.py"}) == Allow("glob(src/**)")
    assert isinstance(p.check("grep", {"pattern": "x"}), Deny)
    assert isinstance(p.check("glob", {"pattern": "**/*.py"}), Deny)


# ------------------------------------------------------------------ tools, defaults, MCP


def test_mcp_name_globs() -> None:
    p = Policy.from_spec(PolicySpec(allow=["mcp__github__*"], deny=["mcp__github__merge_*"]))
    assert p.check("mcp__github__get_issue", {}) == Allow("mcp__github__*")
    assert p.check("mcp__github__merge_pull_request", {}) == Deny(
        "mcp__github__merge_*", 'denied by rule "mcp__github__merge_*": the mcp__github__merge_pull_request '
        "tool is not allowed")
    d = p.check("mcp__jira__get", {})
    assert isinstance(d, Deny) and d.rule is None and "policy default is deny" in d.message


def test_deny_beats_allow() -> None:
    p = Policy.from_spec(PolicySpec(allow=["bash", "write"], deny=["bash(rm *)", "write(secrets/**)"]))
    assert p.check("bash", {"command": "ls"}) == Allow("bash")
    assert p.check("bash", {"command": "ls; rm -rf x"}).rule == "bash(rm *)"
    assert isinstance(p.check("write", {"path": "secrets/a", "content": ""}), Deny)
    assert p.check("write", {"path": "a", "content": ""}) == Allow("write")


def test_default_allow_vs_deny() -> None:
    allow = Policy.from_spec(PolicySpec(default="allow", deny=["bash(curl*)"]))
    deny = Policy.from_spec(PolicySpec(default="deny", allow=["read"]))
    assert allow.check("bash", {"command": "make test"}) == Allow(None)
    assert allow.check("write", {"path": "x", "content": ""}) == Allow(None)
    assert isinstance(allow.check("bash", {"command": "make; curl x"}), Deny)
    assert isinstance(allow.check("bash", {"command": "$X"}), Deny)  # unknowable: denied even by default allow
    assert deny.check("bash", {"command": "make test"}) == Deny(
        None, 'no rule allows "make test" and the policy default is deny')
    assert deny.check("write", {"path": "x", "content": ""}) == Deny(
        None, 'no rule allows write of "x" and the policy default is deny')
    assert isinstance(deny.check("mcp__a__b", {}), Deny)


def test_bare_bash_allows_unknowable_only_without_deny_patterns() -> None:
    p = Policy.from_spec(PolicySpec(allow=["bash"]))
    assert p.check("bash", {"command": '"$PY" -m pytest'}) == Allow("bash")
    assert isinstance(p.check("bash", {"command": "echo 'x"}), Deny)
    q = Policy.from_spec(PolicySpec(allow=["bash"], deny=["bash(curl*)"]))
    assert isinstance(q.check("bash", {"command": '"$PY" -m pytest'}), Deny)


def test_bare_deny_and_star_tool() -> None:
    p = Policy.from_spec(PolicySpec(allow=["*"], deny=["bash"]))
    assert p.check("read", {"path": "a"}) == Allow("*")
    assert p.check("mcp__x__y", {}) == Allow("*")
    assert p.check("bash", {"command": "echo"}) == Deny("bash", 'denied by rule "bash": the bash tool is not allowed')


def test_wrapper_visible_to_deny_rules() -> None:
    p = Policy.from_spec(PolicySpec(default="allow", deny=["bash(sudo*)", "bash(bash *)"]))
    assert p.check("bash", {"command": "sudo ls"}).rule == "bash(sudo*)"
    assert p.check("bash", {"command": "bash -c 'ls'"}).rule == "bash(bash *)"


def test_space_star_suffix_matches_bare_command() -> None:
    p = Policy.from_spec(PolicySpec(allow=["bash(make *)"]))
    assert p.check("bash", {"command": "make"}) == Allow("bash(make *)")
    assert p.check("bash", {"command": "make test"}) == Allow("bash(make *)")
    assert isinstance(p.check("bash", {"command": "makefoo"}), Deny)


def test_bad_inputs_never_raise() -> None:
    assert isinstance(POLICY.check("bash", {}), Deny)
    assert isinstance(POLICY.check("bash", {"command": ["ls"]}), Deny)
    assert isinstance(POLICY.check("", {}), Deny)


# ------------------------------------------------------------------ rule syntax


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("", "empty rule"),
        ("   ", "empty rule"),
        ("bash(git push", "unbalanced parentheses"),
        ("bash)", "unbalanced parentheses"),
        ("bash(a))", "unbalanced parentheses"),
        ("bash()", "the pattern is empty"),
        ("read(  )", "the pattern is empty"),
        ("shell", "unknown tool 'shell'"),
        ("Bash", "unknown tool 'Bash'"),
        ("foo*", "unknown tool 'foo*'"),
        ("(x)", "the tool name is missing"),
        ("ba sh", "is not a tool name"),
        ("mcp__github__get(x)", "MCP tools and tool-name globs are matched by name only"),
        ("read(!x)", "negated patterns"),
        ("read(../x)", "holds '..'"),
    ],
)
def test_rule_syntax_errors(rule: str, message: str) -> None:
    problems = check_rules(PolicySpec(allow=[rule]))
    assert len(problems) == 1
    assert problems[0][0] == "policy.allow[0]"
    assert message in problems[0][1]


def test_from_spec_lists_every_problem() -> None:
    spec = PolicySpec(allow=["read", "bash(", "nope"], deny=["write()"])
    with pytest.raises(PolicyError) as info:
        Policy.from_spec(spec)
    assert [w for w, _ in info.value.problems] == ["policy.allow[1]", "policy.allow[2]", "policy.deny[0]"]
    assert "policy.allow[2]" in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("rule", ["read", "bash(git *)", "mcp__*", "mcp__srv__tool", "re*", "*", "edit(src/**)",
                                  "ls(/docs)", " read "])
def test_good_rules(rule: str) -> None:
    assert check_rules(PolicySpec(allow=[rule])) == []


# ------------------------------------------------------------------ the default policy


def test_default_policy() -> None:
    p = Policy.from_spec(None)
    assert p.spec is DEFAULT_POLICY
    assert check_rules(DEFAULT_POLICY) == []
    assert p.check("bash", {"command": "python -m pytest -q"}) == Allow("bash")
    assert p.check("write", {"path": "src/a.py", "content": ""}) == Allow("write")
    assert p.check("mcp__github__get_issue", {}) == Allow("mcp__*")
    for cmd in ["git push", "git -C . push origin", "curl x", "sudo ls", "docker ps", "git config x y",
                "git remote add o u", "echo $(wget x)"]:
        assert isinstance(p.check("bash", {"command": cmd}), Deny), cmd
    for path in [".git/config", ".git", ".github/workflows/ci.yml", "sub/.git/hooks/x"]:
        assert isinstance(p.check("write", {"path": path, "content": ""}), Deny), path
        assert isinstance(p.check("edit", {"path": path}), Deny), path
    assert p.check("write", {"path": ".github/CODEOWNERS", "content": ""}) == Allow("write")
    assert isinstance(p.check("read", {"path": "/etc/passwd"}), Deny)


def test_describe() -> None:
    text = Policy.from_spec(None).describe()
    assert "built-in default" in text and "bash(git push*)" in text and "why:" in text
    text = POLICY.describe()
    assert "from the task" in text and "edit(src/**)" in text and "default: deny" in text
    assert "why:" not in text
