"""Sandbox backends. `make_sandbox` imports the chosen backend lazily (no docker import for local)."""

from __future__ import annotations

from runner.sandbox.base import ExecResult, Sandbox, SandboxConfig, ToolFailure

__all__ = ["ExecResult", "Sandbox", "SandboxConfig", "ToolFailure", "make_sandbox"]


def make_sandbox(backend: str, config: SandboxConfig) -> Sandbox:
    if backend == "local":
        from runner.sandbox.local import LocalSandbox

        return LocalSandbox(config)
    if backend == "docker":
        from runner.sandbox.docker import DockerSandbox

        return DockerSandbox(config)
    raise ValueError(f"unknown sandbox backend {backend!r}")
