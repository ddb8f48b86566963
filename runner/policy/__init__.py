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

bash (runner.policy.walker, runner.policy.commands): the line is parsed by tree-sitter-bash and its
syntax tree walked fail-closed. Every simple command is found (also inside `$(...)`, backticks,
`<(...)`, double quotes, here-document bodies, function bodies, `bash -c '...'`, `find -exec`,
`xargs`, and behind wrappers such as `env`, `timeout`, `nohup`, `sudo`), and PATTERN is matched
against each one's words joined by single spaces (quotes removed, system program paths
basenamed). `*` matches any text including spaces; a pattern ending in ` *` also matches without
arguments. The line is allowed only when every command is allowed and none matches a deny rule.
`cd`/`pushd`/`popd` into the workspace need no rule (deny rules still see them).

A line that does not parse is denied. A command is *unknown* -- denied unless bash is allowed by a
bare `bash` rule and no bash deny pattern exists -- when it can run code nobody can read before it
runs: a node type the walker does not model; a name that is an expansion; `bash -c "$X"`, `... |
bash`, a shell reading a device (paths normalised first: `bash ../../dev/stdin`); `eval`, `trap`,
`alias`, `source`/`.` of any file but a system one (the strings eval/trap/alias run are still
checked against deny rules); prompt expansion `${x@P}` and indirect `${!x}`; arithmetic that may
read a value holding an array subscript (`x='a[$(cmd)]'; : $((x))`, also `let`, `[[ -eq ]]`,
`${x:off}`, subscripts, `printf -v`/`read`/`unset`/`declare`/`[ -v ]` names computed at run time,
`declare -i`/`-n`); `compgen -W/-C/-F`, `mapfile -C`, `hash -p`, `enable -f`, `fc`, `shopt -s
expand_aliases`; variables that make bash or a program run code (`BASH_ENV`, `ENV`, `PS0`-`PS4`,
`PROMPT_COMMAND`, `SHELLOPTS`, `LD_PRELOAD`, `NODE_OPTIONS`, `GIT_CONFIG_*`, `CDPATH`, ...), while
command-line variables (`GIT_PAGER`, `EDITOR`, `GIT_SSH_COMMAND`, ...) are checked as `sh -c VALUE`;
`git -c` keys that run commands (`core.pager`, `alias.*`, ...); `bash -l`/`-i`; `env -C`; a
substitution tree-sitter-bash leaves unparsed (it reads backticks in a here-document as text).
Deny rules are tolerant (matched against the command as written, with the program basenamed, with
git's global options dropped in every way they may end: `git --shallow-file x push`), allow rules
strict (a command with run-time parts is allowed only if every value would match).

Writes: output redirections and the file arguments of common writers (`tee`, `cp`, `mv`, `rm`,
`touch`, `sed -i`, `dd of=`, ...) are checked against write/edit deny rules, resolved against every
directory the command may run in (a `cd` may fail, so the old one stays possible). A path built at
run time (`> $PWD/x`, `> ~/../x`, `> .github/workflow[s]/x`) is denied when it *may* land on a
denied path (runner.policy.targets); in practice any target with an expansion is refused while a
write deny rule exists.

Known limitations -- the sandbox (no network, only the worktree mounted), not this policy, is the
security boundary:
- Any allowed interpreter runs arbitrary code: `python -c "import os; os.system('git push')"`,
  `python -m pytest` running a conftest.py the model wrote, `make`, `npm run`, `./script.sh`,
  `bash script.sh` (a script file is matched as written, its content is not read).
- Patterns match words literally: `git push*` does not match git aliases from a config file, nor
  tools that run git for you. Deny rules see through git's global options only.
- Programs that run other programs and are not unwrapped (`strace`, `flock -c`, `su -c`,
  `script -c`, `parallel`, `perl -e`): an allow rule for them allows whatever they run; deny rules
  do not see inside them.
- `PATH=./evil:$PATH git status` runs the model's own `git`; `/workspace/bin/git` is matched as
  written, but a bare `git` is trusted to be the system one.
- Symbolic links are not resolved: after `ln -s .github/workflows w`, `write(w/ci.yml)` and
  `> w/ci.yml` are checked as `w/ci.yml`. The file tools must resolve links (and refuse what
  leaves the workspace or lands on a denied path) before writing.
- bash can write files through programs not listed as writers (`tar -x`, `git apply`, an
  interpreter); deny `write`/`edit` rules govern the file tools, redirections and those writers.
- Programs that change directory themselves (`git -C`, `make -C`, `tar -C`) are not followed.
- tree-sitter-bash refuses some valid bash (case fall-through `;&`/`;;&` in the last item, bash
  5.3's `${ cmd; }`, extglob `@(...)` outside `[[ ]]`): such a line is denied as unparsable.
- Arithmetic is judged by names: `n=$(wc -l < f); echo $((n + 1))` is unknown (the value could
  hold a subscript); a name the line never assigns comes from the task's environment and is
  trusted at the top level (not inside `bash -c`/`eval`).
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
model; the sandbox is the boundary. Since bash deny rules exist, a command that can run code
nobody can read before it runs ($CMD, eval, source, ... | bash, arithmetic on computed values) is
refused, and so is a write whose path is built at run time. Anything else (unknown tools) is
denied.
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
