"""SIGINT and SIGTERM from the first instruction (SPEC §1: 130/143, with the outputs).

`cli.main` calls `install_early()` before anything heavy is imported: from then on a signal is
remembered instead of killing the process (SIGTERM's default) or raising KeyboardInterrupt in
the middle of an import. Once a run's event loop is up, its handlers take over and honour a
signal that came before (`early_signal()`): the run stops at once and still writes its outputs.
Commands that run nothing (validate, cleanup, merge, policy) get the default behaviour back
(`restore_defaults`), and a signal that came before that ends them with its exit code.

Only the standard library is imported here, on purpose: this must be cheap.
"""

from __future__ import annotations

import signal
from types import FrameType

HANDLED = (signal.SIGINT, signal.SIGTERM)
_pending: int | None = None


def _remember(signum: int, _frame: FrameType | None) -> None:
    global _pending
    if _pending is None:
        _pending = signum


def install_early() -> None:
    global _pending
    _pending = None  # one command per process (tests call main() many times in one)
    for signum in HANDLED:
        signal.signal(signum, _remember)


def early_signal() -> int | None:
    """The first SIGINT/SIGTERM that came before an event loop took over, if any."""
    return _pending


def restore_defaults() -> int | None:
    """Back to Python's defaults (SIGINT raises KeyboardInterrupt, SIGTERM ends the process);
    returns the signal that came meanwhile, if one did: the caller exits with 128 + it."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    return _pending


def reset_for_tests() -> None:
    global _pending
    _pending = None
