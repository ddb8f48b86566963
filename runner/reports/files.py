"""Writing the report files: atomically, so a crash never leaves half a file behind.

Each file is written to a temporary file in the same directory, flushed and fsynced, then moved
over the target with os.replace (atomic on POSIX and Windows). If serialization fails, the old
file is left as it was. patch.diff and trajectory.jsonl are written elsewhere.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from runner.models.pricing import PriceTable
from runner.reports.cost import cost_json
from runner.reports.junit import junit_report
from runner.reports.summary import append_step_summary, summary_md
from runner.result import RunResult

log = logging.getLogger(__name__)


@functools.cache
def _file_mode() -> int:
    """What a plain open() would give: 0666 less the umask (mkstemp's 0600 would surprise CI users)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _write_atomic(path: Path, write: Callable[[IO[str]], None]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (best effort: not every platform can open a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Bytes written as is (a patch must not be decoded), atomically like the text files."""

    def write(fh: IO[str]) -> None:
        fh.flush()
        fh.buffer.write(data)  # type: ignore[attr-defined]  # a real text file has its binary buffer

    _write_atomic(path, write)


def write_text_atomic(path: Path, text: str) -> None:
    def write(fh: IO[str]) -> None:
        fh.write(text)

    _write_atomic(path, write)


def write_json_atomic(path: Path, data: Any) -> None:
    """JSON with a trailing newline. NaN/Infinity are refused (they are not JSON)."""

    def write(fh: IO[str]) -> None:
        json.dump(data, fh, indent=2, ensure_ascii=False, allow_nan=False)
        fh.write("\n")

    _write_atomic(path, write)


def write_reports(
    out_dir: Path, result: RunResult, prices: PriceTable, *, step_summary: bool = True,
    failed: list[str] | None = None,
) -> list[str]:
    """Write result.json, junit.xml, cost.json and summary.md into `out_dir`, and append the
    summary to $GITHUB_STEP_SUMMARY. Returns warnings (unknown prices, unmerged JUnit files,
    a report that could not be written); each report is attempted even if another fails.
    `failed` gets one line per report that could not be written (a full disk: the run is an error)."""
    out_dir = Path(out_dir)
    warnings: list[str] = []

    def attempt(name: str, action: Callable[[], None]) -> None:
        try:
            action()
        except Exception as exc:
            message = f"could not write {out_dir / name}: {type(exc).__name__}: {exc}"
            log.error("%s", message)
            warnings.append(message)
            if failed is not None:
                failed.append(f"could not write {name}: {exc}")

    def junit() -> None:
        text, notes = junit_report(result)
        warnings.extend(notes)
        write_text_atomic(out_dir / "junit.xml", text)

    def cost() -> None:
        data = cost_json(result, prices)
        warnings.extend(data["warnings"])
        write_json_atomic(out_dir / "cost.json", data)

    summary = ""

    def summary_file() -> None:
        nonlocal summary
        summary = summary_md(result)
        write_text_atomic(out_dir / "summary.md", summary)

    attempt("result.json", lambda: write_json_atomic(out_dir / "result.json", result.to_json()))
    attempt("junit.xml", junit)
    attempt("cost.json", cost)
    attempt("summary.md", summary_file)
    if step_summary and summary and os.environ.get("GITHUB_STEP_SUMMARY") and not append_step_summary(summary):
        warnings.append("could not append the summary to $GITHUB_STEP_SUMMARY")
    return warnings
