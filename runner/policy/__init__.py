"""Permission rules for tool calls (SPEC §3 "Permission rules").

A rule is `TOOL` or `TOOL(PATTERN)`; TOOL may hold `*` (`mcp__github__*`, `*`). `deny` beats
`allow`; a call that matches neither gets `policy.default`. `Policy.check` never raises: a
malformed call is denied with a message.

Rule syntax (errors are collected by `check_rules` / raised together by `Policy.from_spec`):
empty rules, unbalanced parentheses, unknown tool names (known: bash read write edit grep glob ls
and `mcp__<server>__<tool>`; a glob must be able to match one of them), an empty `TOOL()`, and a
PATTERN on an MCP tool or on a tool-name glob are errors: MCP tools are matched by name only.

File tools (runner.policy.paths): PATTERN is a gitignore-style glob over the normalised
workspace-relative path. read/write/edit check `path`; grep and ls check their `path` (default
`.`) as a directory, which a pattern covers when it covers the directory or what is inside it
(`grep(src/**)` allows grep in `src`); glob checks the fixed leading directories of its pattern
(`src/**/*.py` -> `src`, `**/*.py` -> `.`). A path outside the workspace is denied whatever the
rules say.

bash (runner.policy.shell, runner.policy.bash): the line is parsed like bash does, every simple
command is found (also inside `$(...)`, backticks, `<(...)`, double quotes, unquoted here-document
bodies, function bodies, `bash -c '...'`, `eval`, `trap`, `alias` values, here-documents fed to a
shell, `find -exec`, `xargs`, and behind wrappers such as `env`, `timeout`, `nohup`, `sudo`), and
PATTERN is matched against each one's words joined by single spaces (quotes removed, system
program paths basenamed). `*` matches any text including spaces; a pattern ending in ` *` also
matches without arguments. The line is allowed only when every command is allowed and none
matches a deny rule. A line that cannot be parsed is denied; so is a command that cannot be known
before it runs (its name is an expansion, `bash -c "$X"`, `eval "$X"`, `... | bash`) unless bash
is allowed by a bare `bash` rule and no bash deny pattern exists. Deny rules are tolerant
(matched against the command as written, with the program basenamed, with git's global options
such as `-C dir` / `-c k=v` dropped, and against the wrapper itself: `bash(sudo*)` works); allow
rules are strict (a command with run-time parts is allowed only if every value would match).
Output redirections (`> .github/workflows/x.yml`) are also checked against write/edit deny rules.

Known limitations -- the sandbox (no network, only the worktree mounted), not this policy, is the
security boundary:
- Any allowed interpreter runs arbitrary code: `python -c "import os; os.system('git push')"`,
  `python -m pytest` running a conftest.py the model wrote, `make`, `npm run`, `./script.sh`,
  `bash script.sh`, `source file` (a script file is matched as written, its content is not read).
- Patterns match words literally: `git push*` does not match `git -c alias.p=push p`, nor git
  aliases, nor tools that run git for you. Deny rules see through git global options only.
- Programs that run other programs and are not unwrapped (`strace`, `flock -c`, `su -c`,
  `script -c`, `parallel`, `git -c core.pager=...`, `perl -e`): an allow rule for them allows
  whatever they run; deny rules do not see inside them.
- `PATH=./evil:$PATH git status` runs the model's own `git`; `/workspace/bin/git` is matched as
  written, but a bare `git` is trusted to be the system one.
- Symbolic links are not resolved: after `ln -s .github/workflows w`, `write(w/ci.yml)` is
  checked as `w/ci.yml`. The file tools must resolve links (and refuse what leaves the workspace
  or lands on a denied path) before writing.
- bash can write any file the sandbox lets it; the redirection check does not track `cd` or
  commands such as `tee`, `cp`, `sed -i`. Deny `write`/`edit` rules govern the file tools.
- bash is parsed as bash; `fish -c`/`csh -c` strings are parsed as bash too (what does not parse
  is denied). Arithmetic inside `[[ ]]`, extglob patterns and other rare syntax may be refused.
"""

from __future__ import annotations

from runner.policy.rules import Allow, Decision, Deny, Policy, PolicyError, check_rules
from runner.task import PolicySpec

DEFAULT_POLICY = PolicySpec(
    default="deny",
    allow=["read", "grep", "glob", "ls", "write", "edit", "bash", "mcp__*"],
    deny=[
        "write(.git)", "edit(.git)",
        "write(.github/workflows/**)", "edit(.github/workflows/**)",
        "write(.github/actions/**)", "edit(.github/actions/**)",
        "bash(git push*)", "bash(git remote*)", "bash(git config*)", "bash(git credential*)",
        "bash(curl*)", "bash(wget*)", "bash(ssh*)", "bash(scp*)", "bash(rsync*)",
        "bash(sudo*)", "bash(doas*)", "bash(docker*)",
    ],
)

DEFAULT_POLICY_RATIONALE = """
An unattended CI agent must be able to do its job: read, search, edit and run the project's own
commands (tests, linters, builds), so the built-in tools and bash are allowed. MCP tools are
allowed because servers are opt-in: a task only has them when its author listed them.
What it must not do is change what runs after it or reach outside: writing the git metadata
(.git, which holds hooks and config) or CI definitions (.github/workflows, .github/actions) is
denied, and so are pushing, changing remotes, git config/credentials, network clients (curl,
wget, ssh, scp, rsync), privilege escalation (sudo, doas) and docker. The sandbox has no network
and mounts only the worktree, so these denials are defence in depth and a clear message to the
model; the sandbox is the boundary. Since bash deny rules exist, a command that cannot be known
before it runs ($CMD, eval "$X", ... | bash) is refused. Anything else (unknown tools) is denied.
"""

__all__ = [
    "DEFAULT_POLICY",
    "DEFAULT_POLICY_RATIONALE",
    "Allow",
    "Decision",
    "Deny",
    "Policy",
    "PolicyError",
    "check_rules",
]
