"""GitHub integration: `astra-run github` (SPEC §6). See docs/github.md."""

from runner.github.command import cmd_github

__all__ = ["cmd_github"]
