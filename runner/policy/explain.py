"""`astra-run policy TASK.yaml -- COMMAND...`: would the task's policy allow this bash command, and why?

Prints one line per simple command (the rule that decides it, or why none is needed), one per
write that a file rule refuses, then the verdict in the words the model would get on a denial.
Exit 0 when allowed, 1 when denied, 2 when the task file is bad (raised as ConfigError).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import TextIO

from runner.policy.commands import analyse
from runner.policy.rules import Allow, Policy, Verdict
from runner.policy.script import ShellSyntaxError


def command_line(words: Sequence[str]) -> str:
    """One argument is the command line as written; several are quoted back into one."""
    return words[0] if len(words) == 1 else shlex.join(words)


def explain(policy: Policy, line: str) -> tuple[list[str], bool]:
    """The report's lines and whether the line is allowed (the decision of Policy.check)."""
    decision = policy.check("bash", {"command": line})
    lines = [f"policy: {'built-in default' if policy.is_default else 'from the task'} (default: {policy.default})",
             f"command: {line}"]
    try:
        verdicts, _ = policy.bash_verdicts(analyse(line))
    except ShellSyntaxError:
        verdicts = []
    width = max((len(v.command) for v in verdicts), default=0)
    width = min(width, 60)
    for v in verdicts:
        lines.append(f"  {_label(v):<7} {_clip(v.command, 60):<{width}}  {_why(v)}")
    if isinstance(decision, Allow):
        lines.append("verdict: allowed" + (f" (first rule: {decision.rule})" if decision.rule else
                                          " (by the policy default)"))
        return lines, True
    lines.append(f"verdict: denied: {decision.message}")
    return lines, False


def _label(v: Verdict) -> str:
    if not v.needs_rule:
        return "free"
    return "allow" if isinstance(v.decision, Allow) else "deny"


def _why(v: Verdict) -> str:
    d = v.decision
    if not v.needs_rule:
        return "no rule needed (wrapper, nested shell or cd into the workspace; deny rules apply)"
    if isinstance(d, Allow):
        return f"rule {d.rule}" if d.rule else "the policy default (allow)"
    return f"rule {d.rule}" if d.rule else d.message


def _clip(text: str, limit: int) -> str:
    text = text.replace("\n", "⏎")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def cmd_policy(task_path: str, words: Sequence[str], out: TextIO) -> int:
    from runner.task import load_task

    task = load_task(task_path)
    policy = Policy.from_spec(task.spec.policy)
    lines, allowed = explain(policy, command_line(words))
    out.write("\n".join(lines) + "\n")
    return 0 if allowed else 1
