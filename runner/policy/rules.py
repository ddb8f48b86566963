"""Rules (`TOOL` / `TOOL(PATTERN)`), their syntax check, and the Policy that decides tool calls."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runner.policy import match, paths
from runner.policy.commands import Analysis, Command, analyse
from runner.policy.script import WILD, ShellSyntaxError
from runner.policy.targets import may_match
from runner.task import PolicySpec

BUILTIN_TOOLS = ("bash", "read", "write", "edit", "grep", "glob", "ls")
FILE_TOOLS = frozenset({"read", "write", "edit"})
DIR_TOOLS = frozenset({"grep", "glob", "ls"})
_TOOL_RE = re.compile(r"^[A-Za-z0-9_*-]+$")
_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class Allow:
    rule: str | None
    """The allow rule that matched (for bash: the one for the first command); None = the default."""


@dataclass(frozen=True)
class Deny:
    rule: str | None
    """The deny rule that matched; None when the default, an unparsable line or an escaping path refused it."""
    message: str
    """Told to the model: which rule and why, so it can change course."""


Decision = Allow | Deny


@dataclass(frozen=True)
class Verdict:
    """One part of a bash line and what decided it (`astra-run policy` prints these)."""

    command: str
    decision: Decision
    needs_rule: bool = True
    """False for a wrapper, a nested shell or a `cd` into the workspace: only deny rules look at it."""


class PolicyError(ValueError):
    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(f"{where}: {msg}" for where, msg in self.problems))


@dataclass(frozen=True)
class Rule:
    text: str
    tool: str
    pattern: str | None
    path: paths.FilePattern | None

    def covers_tool(self, name: str) -> bool:
        return match.forall_match(name, self.tool) if "*" in self.tool else name == self.tool

    def __str__(self) -> str:
        return self.text


def parse_rule(text: str) -> Rule:
    """Raises ValueError with what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("empty rule")
    rule = text.strip()
    if "(" in rule or ")" in rule:
        head, sep, rest = rule.partition("(")
        if not sep or not rest.endswith(")") or rest.count("(") != rest.count(")") - 1:
            raise ValueError(f"{rule!r}: unbalanced parentheses: write TOOL or TOOL(PATTERN)")
        tool, pattern = head.strip(), rest[:-1]
    else:
        tool, pattern = rule, None
    if not tool:
        raise ValueError(f"{rule!r}: the tool name is missing")
    if not _TOOL_RE.match(tool):
        raise ValueError(f"{rule!r}: {tool!r} is not a tool name (letters, digits, '_', '-' and '*')")
    known = tool in BUILTIN_TOOLS or tool.startswith("mcp__")
    if not known and "*" in tool:
        known = any(match.forall_match(t, tool) for t in BUILTIN_TOOLS) or match.exists_match(
            f"mcp__{WILD}__{WILD}", tool)
    if not known:
        raise ValueError(f"{rule!r}: unknown tool {tool!r}: use one of {', '.join(BUILTIN_TOOLS)} "
                         "or mcp__<server>__<tool> ('*' allowed)")
    if pattern is None:
        return Rule(rule, tool, None, None)
    if not pattern.strip():
        raise ValueError(f"{rule!r}: the pattern is empty: write {tool!r} alone to match every call")
    if tool not in BUILTIN_TOOLS:
        raise ValueError(f"{rule!r}: a (PATTERN) is only allowed on {', '.join(BUILTIN_TOOLS)}; "
                         "MCP tools and tool-name globs are matched by name only")
    if tool == "bash":
        return Rule(rule, tool, " ".join(pattern.split()), None)
    problem = paths.pattern_problem(pattern)
    if problem:
        raise ValueError(f"{rule!r}: {problem}")
    return Rule(rule, tool, pattern.strip(), paths.FilePattern(pattern))


def check_rules(spec: PolicySpec) -> list[tuple[str, str]]:
    """Syntax problems of every rule, as (field path, message); empty when all is well."""
    problems = []
    for key, rules in (("allow", spec.allow), ("deny", spec.deny)):
        for k, text in enumerate(rules):
            try:
                parse_rule(text)
            except ValueError as exc:
                problems.append((f"policy.{key}[{k}]", str(exc)))
    return problems


def _short(text: str, limit: int = 200) -> str:
    text = text.replace(WILD, "…")
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Policy:
    def __init__(self, spec: PolicySpec, *, is_default: bool = False) -> None:
        self.spec = spec
        self.default = spec.default
        self.allow = [parse_rule(r) for r in spec.allow]
        self.deny = [parse_rule(r) for r in spec.deny]
        self.is_default = is_default

    @classmethod
    def from_spec(cls, spec: PolicySpec | None) -> Policy:
        from runner.policy import DEFAULT_POLICY

        if spec is None:
            return cls(DEFAULT_POLICY, is_default=True)
        problems = check_rules(spec)
        if problems:
            raise PolicyError(problems)
        return cls(spec)

    # ----------------------------------------------------------------- decisions

    def _default(self, what: str) -> Decision:
        if self.default == "allow":
            return Allow(None)
        return Deny(None, f"no rule allows {what} and the policy default is deny")

    def check(self, tool: str, tool_input: Mapping[str, Any]) -> Decision:
        if not isinstance(tool, str) or not tool:
            return Deny(None, "the tool call has no tool name")
        if not isinstance(tool_input, Mapping):
            return Deny(None, f"the input of {tool} is not an object")
        deny = [r for r in self.deny if r.covers_tool(tool)]
        allow = [r for r in self.allow if r.covers_tool(tool)]
        for r in deny:
            if r.pattern is None:
                return Deny(r.text, f'denied by rule "{r}": the {tool} tool is not allowed')
        if tool == "bash":
            return self._bash(tool_input, deny, allow)
        if tool in FILE_TOOLS or tool in DIR_TOOLS:
            return self._file(tool, tool_input, deny, allow)
        for r in allow:
            if r.pattern is None:
                return Allow(r.text)
        return self._default(f"the {tool} tool")

    def _file(self, tool: str, tool_input: Mapping[str, Any], deny: list[Rule], allow: list[Rule]) -> Decision:
        directory = tool in DIR_TOOLS
        if tool == "glob":
            raw = tool_input.get("pattern")
            if not isinstance(raw, str) or not raw:
                return Deny(None, "glob needs a non-empty string `pattern`")
            parts = raw.split("/")
            fixed = []
            for part in parts[:-1]:
                if _GLOB_CHARS.search(part):
                    break
                fixed.append(part)
            raw = "/".join(fixed) or ("/" if raw.startswith("/") else ".")
        elif tool in DIR_TOOLS:
            raw = tool_input.get("path") or "."
        else:
            raw = tool_input.get("path")
        if not isinstance(raw, str) or not raw:
            return Deny(None, f"{tool} needs a non-empty string `path`")
        path = paths.normalise(raw)
        if path is None:
            return Deny(None, f"{tool} of {_short(raw)!r} is refused: the path is outside the workspace "
                              "(use a path relative to the workspace root)")
        for r in deny:
            if r.path is not None and r.path.matches(path, directory=directory):
                return Deny(r.text, f'denied by rule "{r}": {tool} of "{_short(path)}" is not allowed')
        for r in allow:
            if r.path is None or r.path.matches(path, directory=directory):
                return Allow(r.text)
        return self._default(f'{tool} of "{_short(path)}"')

    def _bash(self, tool_input: Mapping[str, Any], deny: list[Rule], allow: list[Rule]) -> Decision:
        line = tool_input.get("command")
        if not isinstance(line, str):
            return Deny(None, "bash needs a string `command`")
        try:
            analysis = analyse(line)
        except ShellSyntaxError as exc:
            return Deny(None, f"the command line cannot be parsed ({exc}), so it was not run; "
                              "simplify it (balanced quotes and parentheses, no NUL)")
        except Exception as exc:  # a bug in the walker must refuse the line, never let it through
            return Deny(None, f"the command line could not be analysed ({type(exc).__name__}), so it was not run; "
                              "simplify it")
        return self.bash_verdicts(analysis, deny, allow)[1]

    def bash_verdicts(self, analysis: Analysis, deny: list[Rule] | None = None,
                      allow: list[Rule] | None = None) -> tuple[list[Verdict], Decision]:
        """What decides each part of an analysed line, and the line's decision.

        The line is denied by, in this order: a deny rule naming one of its commands, a command
        that cannot be known, a write to a denied path, a command no rule allows (default deny)."""
        deny = [r for r in self.deny if r.covers_tool("bash")] if deny is None else deny
        allow = [r for r in self.allow if r.covers_tool("bash")] if allow is None else allow
        bare_allow = next((r for r in allow if r.pattern is None), None)
        deny_patterns = [r for r in deny if r.pattern is not None]
        verdicts: list[Verdict] = []
        by_rule: list[Deny] = []
        unknown: list[Deny] = []
        unallowed: list[Deny] = []
        first: str | None = bare_allow.text if bare_allow else None
        for cmd in analysis.commands:
            shown = _short(cmd.display)
            rule = self._bash_deny_rule(cmd, deny_patterns) if cmd.unknown is None else None
            if rule is not None:
                d = Deny(rule.text, f'denied by rule "{rule}": the command "{shown}" is not allowed')
                by_rule.append(d)
            elif cmd.unknown is not None:
                d = Deny(None, f'cannot tell what "{shown}" runs ({cmd.unknown}), so it was not run; '
                               "write the command out literally")
                if deny_patterns or bare_allow is None:
                    unknown.append(d)
                    verdicts.append(Verdict(cmd.display, d))
                    continue
                verdicts.append(Verdict(cmd.display, Allow(bare_allow.text)))
                continue
            elif cmd.deny_only:
                verdicts.append(Verdict(cmd.display, Allow(None), needs_rule=False))
                continue
            else:
                allowed = bare_allow or self._bash_allow_rule(cmd, allow)
                if allowed is not None:
                    verdicts.append(Verdict(cmd.display, Allow(allowed.text)))
                    first = first or allowed.text
                    continue
                if self.default == "allow":
                    verdicts.append(Verdict(cmd.display, Allow(None)))
                    continue
                d = Deny(None, f'no rule allows "{shown}" and the policy default is deny')
                unallowed.append(d)
            verdicts.append(Verdict(cmd.display, d))
        writes: list[Deny] = []
        for target in analysis.writes:
            where = _short(target.word.text if target.word.known else target.word.raw)
            for r in self.deny:
                if r.tool in ("write", "edit") and r.path is not None and may_match(r.path, target.word, target.cwds,
                                                                                   directory=target.directory):
                    runtime = "" if target.word.known and target.cwds == {"."} else \
                        " (a path built at run time or from a changed directory: it may land there)"
                    d = Deny(r.text, f'denied by rule "{r}": the command writes to "{where}"{runtime}')
                    writes.append(d)
                    verdicts.append(Verdict(f"(write) {where}", d))
                    break
        for denials in (by_rule, unknown, writes, unallowed):
            if denials:
                return verdicts, denials[0]
        if not analysis.commands and bare_allow is None and not any(r.pattern for r in allow):
            return verdicts, self._default("bash")
        return verdicts, Allow(first)

    @staticmethod
    def _bash_deny_rule(cmd: Command, deny_patterns: list[Rule]) -> Rule | None:
        for text in match.deny_texts(cmd):
            for r in deny_patterns:
                assert r.pattern is not None
                if any(match.exists_match(text, p) for p in match.pattern_variants(r.pattern)):
                    return r
        return None

    @staticmethod
    def _bash_allow_rule(cmd: Command, allow: list[Rule]) -> Rule | None:
        texts = match.allow_texts(cmd)
        if texts is None:
            return None
        for r in allow:
            if r.pattern is None:
                return r
            variants = match.pattern_variants(r.pattern)
            if all(any(match.forall_match(t, p) for p in variants) for t in texts):
                return r
        return None

    # ----------------------------------------------------------------- description

    def describe(self) -> str:
        from runner.policy import DEFAULT_POLICY_RATIONALE

        src = "built-in default (the task has no `policy:`)" if self.is_default else "from the task"
        lines = [f"policy: {src}",
                 f"  default: {self.default} (a call that matches no rule is "
                 f"{'allowed' if self.default == 'allow' else 'refused'})",
                 "  deny (checked first; any match refuses the call):"]
        lines += [f"    - {r}" for r in self.deny] or ["    (none)"]
        lines.append("  allow:")
        lines += [f"    - {r}" for r in self.allow] or ["    (none)"]
        lines += [
            "  bash: the line is parsed by tree-sitter-bash; every simple command (after ; && || | &,",
            "    newlines, $(...), backticks, <(...), nested `bash -c`, wrappers like env/timeout/xargs,",
            "    find -exec) must be allowed, and any one matching a deny rule refuses the line; cd into the",
            "    workspace needs no rule. A line that cannot be parsed, or a command that can run code nobody",
            "    can read first (a computed name, eval, source, trap, arithmetic on computed values, ...),",
            "    is refused unless bash is allowed outright. Try a line: astra-run policy TASK -- COMMAND.",
            "  files: gitignore-style patterns over the workspace-relative path; paths outside the",
            "    workspace are always refused.",
        ]
        if self.is_default:
            lines += ["  why:"] + [f"    {line}" for line in DEFAULT_POLICY_RATIONALE.strip().splitlines()]
        return "\n".join(lines)
