"""GitHub integration: `astra-run github` (SPEC §6). See docs/github.md.

Importing this package loads nothing heavy: `runner.github.gate` runs with the standard library
alone, before astra-run's dependencies are installed.
"""

from __future__ import annotations

import argparse


def cmd_github(args: argparse.Namespace) -> int:
    from runner.github.command import cmd_github as run

    return run(args)


__all__ = ["cmd_github"]
