"""Checks that need the machine, not just the file: done by `validate` and before a run starts.

A task file can be well-formed and still not runnable here: a `${NAME}` whose host variable is
unset, a repository path that is not a git repository, a `ref` that names nothing. Each problem
is reported as `FILE:LINE: field: problem` (exit 2) before anything is created.
"""

from __future__ import annotations

import os

from runner.errors import ConfigError
from runner.models.credentials import check_credentials as credential_problems
from runner.models.credentials import is_provider_secret_var
from runner.models.scripted import PREFIX as SCRIPTED_PREFIX
from runner.models.scripted import resolve_script
from runner.redact import HOST_VAR
from runner.task import LoadedTask, is_git_url


def problems(task: LoadedTask, *, check_git: bool = True, check_credentials: bool = True) -> list[str]:
    """Every problem found, as `FILE:LINE: field: what is wrong`.

    `check_credentials`: also whether the provider's credentials are there (a run needs them;
    `validate` reports them apart, since a task is often checked where they are not)."""
    from runner.workspace import resolve_commit, trusted_git_dir  # git only when asked

    spec = task.spec
    found: list[str] = []
    for key, value in spec.sandbox.env.items():
        for name in HOST_VAR.findall(value):
            if name not in os.environ:
                found.append(f"{task.where('sandbox', 'env', key)}: host variable ${{{name}}} is not set")
    for server_name, server in spec.mcp_servers.items():
        if server.optional:
            continue
        for section, values in (("env", server.env), ("headers", server.headers)):
            for key, value in values.items():
                for name in HOST_VAR.findall(value):
                    if name not in os.environ:
                        found.append(f"{task.where('mcp_servers', server_name, section, key)}: "
                                     f"host variable ${{{name}}} is not set")
    found += provider_secret_refs(task)
    if check_credentials and spec.model and not spec.model.startswith(SCRIPTED_PREFIX):
        found += [f"{task.where('provider')}: {p}" for p in credential_problems(spec.provider or "anthropic")]
    if spec.model and spec.model.startswith(SCRIPTED_PREFIX):
        try:
            resolve_script(spec.model, task.base_dir)
        except ConfigError as exc:
            found.append(f"{task.where('model')}: {str(exc).removeprefix('model: ')}")
    if check_git and not is_git_url(task.repo):
        try:
            git_dir = trusted_git_dir(task.repo, cache=task.base_dir)  # a local path: no cache used
        except ConfigError:
            found.append(f"{task.where('repo')}: {task.repo} is not a git repository")
        else:
            try:
                resolve_commit(git_dir, spec.ref)
            except ConfigError:
                found.append(f"{task.where('ref')}: {spec.ref or 'HEAD'} does not name a commit in {task.repo}")
    return found


def check(task: LoadedTask, *, check_git: bool = True, check_credentials: bool = True) -> None:
    if found := problems(task, check_git=check_git, check_credentials=check_credentials):
        raise ConfigError("\n".join(found))


def provider_secret_refs(task: LoadedTask) -> list[str]:
    """`${NAME}` of a model provider's variable in sandbox.env or an MCP server's env or headers:
    refused, whatever the variable holds (SPEC §7: no credential ever enters the sandbox)."""
    spec = task.spec
    fields: list[tuple[tuple[str, ...], dict[str, str]]] = [(("sandbox", "env"), dict(spec.sandbox.env))]
    for server_name, server in spec.mcp_servers.items():
        fields += [(("mcp_servers", server_name, "env"), server.env),
                   (("mcp_servers", server_name, "headers"), server.headers)]
    found = []
    for loc, values in fields:
        for key, value in values.items():
            for name in HOST_VAR.findall(value):
                if is_provider_secret_var(name):
                    found.append(f"{task.where(*loc, key)}: ${{{name}}} is a model provider's variable; "
                                 "it is never passed to the sandbox or an MCP server")
    return found
