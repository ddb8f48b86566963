"""The cheap first step of the action: should this event run at all?

`astra-run github` makes the same decision again (it is the authority); this module lets the
action skip its expensive steps (installing astra-run, Docker, the sandbox image) for the many
events that do not trigger: a comment without the phrase, a bot, someone without write access.
It uses only the standard library and the modules below, so it runs straight from the action's
checkout before anything is installed:

    python -I -c 'import sys; sys.path.insert(0, sys.argv[1]); from runner.github.gate import main; \
        sys.exit(main())' "$ACTION_PATH"

(`-I` keeps the job's working directory - the repository, possibly hostile - off `sys.path`.)
It writes `run=true|false` and `reason=...` to $GITHUB_OUTPUT, and the action's outputs for a
skipped run (`status=skipped`, `exit_code=0`). Someone without write access gets no reply at all:
not a comment, not a reaction (a reply would let anyone make the bot talk); the reason is in the
job log and the step summary.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

from runner.errors import AstraError
from runner.github.api import GitHubAPI
from runner.github.event import GitHubEnv, Request, Skip, load_event, parse_request

DEFAULT_PHRASE = "/astra"


def decide(env: GitHubEnv, event: dict[str, Any], environ: Mapping[str, str], api: GitHubAPI) -> Request | Skip:
    """The event's request when it may run: triggered, not a bot, by someone with write access."""
    req = parse_request(env, event, environ)
    if isinstance(req, Skip) or req.actor is None:
        return req
    perm = api.permission(req.actor)
    if not perm.can_write:
        return Skip(f"{req.actor} has {_access(perm.permission, perm.role_name)} on {env.repository}; "
                    "astra-run runs only for write, maintain or admin")
    return req


def _access(permission: str, role: str | None) -> str:
    """`no access`, `read access`, `read access (role triage)`: the words a person would use."""
    if permission in ("none", ""):
        return "no access"
    extra = f" (role {role})" if role and role != permission else ""
    return f"{permission} access{extra}"


def _write(path: str | None, values: Mapping[str, str]) -> None:
    if not path:
        return
    with open(path, "a", encoding="utf-8") as f:
        for key, value in values.items():
            f.write(f"{key}={' '.join(value.split())}\n")


def main(environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    output = environ.get("GITHUB_OUTPUT") or None
    try:
        env = GitHubEnv.from_environ(environ, DEFAULT_PHRASE)
        api = GitHubAPI(env.api_url, env.repository, environ.get("GITHUB_TOKEN") or environ.get("GH_TOKEN") or "")
        decision = decide(env, load_event(env.event_path), environ, api)
    except AstraError as exc:
        print(f"astra-run gate: {exc}", file=sys.stderr)
        _write(output, {"run": "false", "reason": str(exc)[:500], "status": "error", "exit_code": str(exc.exit_code)})
        return exc.exit_code
    if isinstance(decision, Skip):
        print(f"astra-run gate: no run: {decision.reason}", file=sys.stderr)
        summary = environ.get("GITHUB_STEP_SUMMARY")
        if summary:
            try:
                with open(summary, "a", encoding="utf-8") as f:
                    f.write(f"astra-run: no run ({decision.reason})\n")
            except OSError:
                pass
        _write(output, {"run": "false", "reason": decision.reason[:500], "status": "skipped", "exit_code": "0"})
        return 0
    _write(output, {"run": "true", "reason": ""})
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
