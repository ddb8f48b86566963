#!/usr/bin/env python3
"""The sandbox helper: runs *inside* the sandbox and serves every tool call.

It is started once per sandbox (as the container's own process, attached, when there is no setup
phase - docker_attach.py; `docker exec -i ... python3 helper.py --root /workspace` after setup; or
as a host subprocess for the `local` backend) and speaks signed JSON lines on stdin/stdout:

    handshake (first line from the host, once):  {"channel_key": "<64 hex digits>"}
    request:  <mac> {"id": 7, "op": "exec", "command": "pytest -q", "timeout": 30, "limit": 30000}
    response: <mac> {"id": 7, "ok": true, "result": {...}}
              <mac> {"id": 7, "ok": false, "error": "no such file: src/x.py"}
              <mac> {"id": null, "ok": false, "fatal": "..."}   (the channel is compromised: stop)

The channel is part of the trust boundary (a forged `exit_code: 0` would pass any verify check),
so nothing the model runs may reach it or forge a line on it:
- the helper is non-dumpable from its first instruction to its exit: a process of the same uid
  (every command it runs) cannot open /proc/<helper>/fd/*, read its memory or ptrace it;
- the commands it starts inherit no channel fd (stdin is /dev/null, stdout a fresh pipe);
- every line in both directions carries an HMAC-SHA256 under a per-session key the host makes
  and hands over as the first line: a line that does not verify is never acted on - the host
  ends the run as a sandbox error naming it, the helper reports it (signed) and exits.

Because it runs inside the container, every path the model names is opened there: a symlink to
/etc/passwd resolves to the *container's* file, and is refused anyway since it leaves the root.
The host never opens a path the model chose.

Standard library only, Python >= 3.8: it must run on whatever python3 a user's image has.

It stays ONE file despite its length - do not split it: it is bind-mounted into the container as a
single script (/astra/helper.py) and run with `python3 -I -S`, so it cannot import siblings.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Dict  # noqa: UP035 - runs on the image's python3, maybe 3.8

Request = Dict[str, Any]  # noqa: UP006

MAX_READ_LINES = 2000
MAX_LINE_CHARS = 2000
MAX_LIST = 1000
MAX_GREP_MATCHES = 500
MAX_GREP_FILE_BYTES = 8 * 1024 * 1024
MAX_FILE_BYTES = 20 * 1024 * 1024
"""read and edit load the whole file: past this size they refuse (a huge file would OOM the helper)."""
BINARY_SNIFF = 8192
SKIP_DIRS = {".git"}
EXEC_GRACE_S = 0.2
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
PR_SET_CHILD_SUBREAPER = 36
PR_SET_DUMPABLE = 4
QUIESCE_S = 5.0
TO_HOST = b"astra-run helper->host\n"
TO_HELPER = b"astra-run host->helper\n"
"""What each direction's MAC covers besides the payload, so a line cannot be reflected back."""
KEY_BYTES = 32


class ChannelError(Exception):
    """A line on the host<->helper channel that is not what the other side sent."""


def seal(key: bytes, direction: bytes, msg: Request) -> bytes:
    """One channel line: the hex HMAC-SHA256 of direction + payload, a space, the JSON payload."""
    payload = json.dumps(msg, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    mac = hmac.new(key, direction + payload, hashlib.sha256).hexdigest().encode("ascii")
    return mac + b" " + payload + b"\n"


def unseal(key: bytes, direction: bytes, line: bytes) -> Request:
    """The message of a channel line, or ChannelError when it is unsigned, forged or malformed."""
    mac, _, payload = line.rstrip(b"\r\n").partition(b" ")
    want = hmac.new(key, direction + payload, hashlib.sha256).hexdigest().encode("ascii")
    if not hmac.compare_digest(mac, want):
        raise ChannelError(f"a line that does not carry the session's signature: {_preview(line)}")
    try:
        msg = json.loads(payload)
    except ValueError:
        raise ChannelError(f"a signed line that is not JSON: {_preview(line)}") from None
    if not isinstance(msg, dict) or not (msg.get("id") is None or type(msg.get("id")) is int):
        raise ChannelError(f"a signed line that is not a message: {_preview(line)}")
    return msg


def _preview(line: bytes) -> str:
    return repr(line[:120]) + (f" ... ({len(line)} bytes)" if len(line) > 120 else "")


class OpError(Exception):
    """A tool-level failure: reported to the model, not an infrastructure problem."""


class Workspace:
    def __init__(self, root: str, virtual: str) -> None:
        self.root = os.path.realpath(root)
        self.virtual = virtual.rstrip("/") or "/"

    def relative(self, path: Any) -> str:
        """A model-supplied path -> a normalised workspace-relative path, or OpError."""
        path = path if isinstance(path, str) and path else "."
        if "\0" in path:
            raise OpError("path contains a NUL byte")
        if os.path.isabs(path):
            norm = os.path.normpath(path)
            if norm == self.virtual:
                rel = "."
            elif norm.startswith(self.virtual + "/"):
                rel = norm[len(self.virtual) + 1 :]
            else:
                raise OpError(f"{path}: outside the workspace (paths are relative to {self.virtual})")
        else:
            rel = path
        rel = os.path.normpath(rel)
        if rel == ".." or rel.startswith("../"):
            raise OpError(f"{path}: outside the workspace")
        return rel

    def resolve(self, path: Any, *, must_exist: bool = True) -> str:
        """A model-supplied path -> a real path inside the root, or OpError.

        Accepts workspace-relative paths and absolute paths under the virtual root. `..` that
        leaves the root, absolute paths elsewhere, and symlinks that point outside are refused.
        """
        full = os.path.join(self.root, self.relative(path))
        real = os.path.realpath(full)
        if real != self.root and not real.startswith(self.root + os.sep):
            raise OpError(f"{path}: resolves outside the workspace (through a symlink)")
        if must_exist and not os.path.lexists(full):
            raise OpError(f"{path}: no such file or directory")
        return real

    def resolve_for_write(self, path: Any) -> str:
        """Like resolve, but a path through a symlink is refused: the permission policy judged
        the path the model named, so the file changed must be that very path."""
        real = self.resolve(path, must_exist=False)
        if real != os.path.normpath(os.path.join(self.root, self.relative(path))):
            raise OpError(f"{path}: goes through a symlink (to {self.display(real)}); name the real path instead")
        return real

    def display(self, real: str) -> str:
        rel = os.path.relpath(real, self.root)
        return "." if rel == "." else rel


# ------------------------------------------------------------------------------------ exec


class Capped:
    """Keeps the first and last `limit/2` bytes of a stream and counts the rest."""

    def __init__(self, limit: int) -> None:
        self.half = max(limit // 2, 1)
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        room = self.half - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            if len(self.tail) > self.half:
                del self.tail[: len(self.tail) - self.half]

    def text(self) -> tuple[str, bool]:
        dropped = self.total - len(self.head) - len(self.tail)
        head = self.head.decode("utf-8", "replace")
        if dropped <= 0:
            return head + self.tail.decode("utf-8", "replace"), False
        tail = self.tail.decode("utf-8", "replace")
        cut = f"\n[... {dropped} bytes of output cut: showing the first and last {self.half} ...]\n"
        return head + cut + tail, True


class Runner:
    """Runs commands, each in its own process group, and can kill one by request id.

    Nothing a call started outlives it: the helper is a child subreaper (see `main`), so whatever
    a command leaves behind - `setsid server &`, a double fork - is re-parented to the helper
    when its parent dies, and `sweep` kills every descendant that no running call owns.
    """

    def __init__(self, ws: Workspace, env: dict[str, str]) -> None:
        self.ws = ws
        self.env = env
        self.running: dict[Any, subprocess.Popen[bytes]] = {}
        self.lock = threading.Lock()
        """Held while a command is being started and registered, and while sweeping: the sweep
        must never see a call's fresh process before it is in `running`."""

    def kill(self, rid: Any) -> bool:
        with self.lock:
            proc = self.running.get(rid)
        if proc is None:
            return False
        _kill_group(proc)
        return True

    def kill_all(self) -> None:
        """The runner is gone: kill every call and everything they left (no lock: may run in a
        signal handler while the main thread holds it)."""
        for proc in list(self.running.values()):
            _kill_group(proc)
        _sweep(set(), time.monotonic() + 1.0)

    def sweep(self) -> int:
        """Kill the descendants of the helper that no running call owns; reap them. How many died."""
        killed = 0
        deadline = time.monotonic() + 1.0
        while True:
            with self.lock:
                owned = {p.pid for p in self.running.values()}
                n, left = _sweep_once(owned)
            killed += n
            if not left or time.monotonic() > deadline:
                return killed
            time.sleep(0.002)

    def exec(self, rid: Any, req: Request) -> Request:
        command = req.get("command")
        if not isinstance(command, str) or not command.strip():
            raise OpError("`command` must be a non-empty string")
        timeout = float(req.get("timeout_s") or 120)
        limit = int(req.get("limit") or 30000)
        env = dict(self.env)
        extra = req.get("env") or {}
        if not isinstance(extra, dict):
            raise OpError("`env` must map names to strings")
        for k, v in extra.items():
            if not isinstance(k, str) or not ENV_NAME.match(k):
                raise OpError(f"invalid environment variable name {k!r}")
            if not isinstance(v, str) or "\0" in v:
                raise OpError(f"environment variable {k}: the value must be a string without NUL bytes")
            env[k] = v
        cwd = self.ws.resolve(req.get("cwd") or ".")
        start = time.monotonic()
        with self.lock:
            proc = subprocess.Popen(
                ["/bin/bash", "-c", command] if os.path.exists("/bin/bash") else ["/bin/sh", "-c", command],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own session and process group: killed as one
            )
            self.running[rid] = proc
        out = Capped(limit)
        timed_out = False
        try:
            timed_out = _pump(proc, out, start + timeout)
        finally:
            # Whatever the command left behind (`server &`, `setsid server &`) dies with it.
            _kill_group(proc)
            proc.wait()
            with self.lock:
                self.running.pop(rid, None)
            self.sweep()
        text, truncated = out.text()
        return {
            "exit_code": None if timed_out else proc.returncode,
            "output": text,
            "timed_out": timed_out,
            "truncated": truncated,
            "output_bytes": out.total,
            "duration_s": round(time.monotonic() - start, 4),
        }


# ----------------------------------------------------------------- processes, via /proc

_HAS_CHILDREN_FILE = os.path.exists(f"/proc/self/task/{os.getpid()}/children")
"""/proc/PID/task/TID/children needs CONFIG_PROC_CHILDREN; without it, scan all of /proc."""


def _proc_table() -> dict[int, tuple[int, str, int]]:
    """pid -> (ppid, state, start time in ticks) of every process visible in /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # "pid (comm) state ppid ..." - comm may hold spaces and parentheses: split after the last ')'
        fields = stat[stat.rfind(b")") + 2 :].split()
        with contextlib.suppress(IndexError, ValueError):
            table[int(entry)] = (int(fields[1]), fields[0].decode(), int(fields[19]))
    return table


def _children_of(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in tasks:  # orphans are re-parented to any live thread of the subreaper
        with contextlib.suppress(OSError, ValueError), open(f"/proc/{pid}/task/{tid}/children") as f:
            kids.extend(int(x) for x in f.read().split())
    return kids


def _descendants(roots: list[int], table: dict[int, tuple[int, str, int]] | None) -> list[int]:
    """roots and everything below them."""
    below: dict[int, list[int]] = {}
    for pid, (ppid, _state, _start) in (table or {}).items():
        below.setdefault(ppid, []).append(pid)
    seen: list[int] = []
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.append(pid)
        todo.extend(below.get(pid, []) if table is not None else _children_of(pid))
    return seen


def _sweep_once(owned: set[int]) -> tuple[int, bool]:
    """One pass: SIGKILL every descendant of this process outside the `owned` children's trees
    and reap the dead among our direct children (never an owned one: its Popen waits for it).
    Returns (signals sent, whether any unowned child is still there)."""
    me = os.getpid()
    table = None if _HAS_CHILDREN_FILE else _proc_table()
    children = _children_of(me) if table is None else [pid for pid, (pp, _s, _t) in table.items() if pp == me]
    strays = [pid for pid in children if pid not in owned]
    if not strays:
        return 0, False
    sent = 0
    for pid in _descendants(strays, table):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            sent += 1
    left = False
    for pid in strays:
        try:
            done, _status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            continue
        left = left or done == 0
    return sent, left


def _sweep(owned: set[int], deadline: float) -> None:
    while _sweep_once(owned)[1] and time.monotonic() < deadline:
        time.sleep(0.002)


def _pump(proc: subprocess.Popen[bytes], out: Capped, deadline: float) -> bool:
    """Copy output into `out` until EOF (or shortly after the main process exits). True on timeout."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ)
    exited_at = None
    try:
        while True:
            now = time.monotonic()
            if now >= deadline:
                return True
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > EXEC_GRACE_S:
                return False  # background children hold the pipe open; don't wait for them
            wait = min(deadline - now, 0.05 if exited_at is None else EXEC_GRACE_S)
            for _key, _ in sel.select(wait):
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                if not data:  # EOF: the command may still run with its output closed
                    try:
                        proc.wait(timeout=max(deadline - time.monotonic(), 0))
                    except subprocess.TimeoutExpired:
                        return True
                    return False
                out.add(data)
    finally:
        sel.close()
        proc.stdout.close()


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


# ------------------------------------------------------------------------------ file ops


def _is_binary(data: bytes) -> bool:
    return b"\0" in data[:BINARY_SNIFF]


def _read_bytes(real: str, path: Any) -> bytes:
    if os.path.isdir(real):
        raise OpError("is a directory (use ls)")
    if not os.path.isfile(real):
        raise OpError("not a regular file")
    with open(real, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        data = f.read(MAX_FILE_BYTES + 1)  # the size may change under us: never read past the cap
    if max(size, len(data)) > MAX_FILE_BYTES:
        raise OpError(
            f"{path}: {max(size, len(data))} bytes, over the {MAX_FILE_BYTES >> 20} MB this tool loads; "
            "look at parts of it with bash (`head -n 100`, `sed -n '2000,2100p'`, `grep -n`)"
        )
    return data


def op_read(ws: Workspace, req: Request) -> Request:
    path = req.get("path")
    real = ws.resolve(path)
    data = _read_bytes(real, path)
    if _is_binary(data):
        raise OpError(f"{path}: binary file ({len(data)} bytes); inspect it with bash (file, xxd)")
    offset = max(int(req.get("offset") or 1), 1)
    limit = int(req.get("limit") or MAX_READ_LINES)
    limit = max(1, min(limit, MAX_READ_LINES))
    lines = data.decode("utf-8", "replace").splitlines()
    total = len(lines)
    if total and offset > total:
        raise OpError(f"{path}: offset {offset} is past the end ({total} lines)")
    chosen = lines[offset - 1 : offset - 1 + limit]
    numbered = []
    for n, line in enumerate(chosen, start=offset):
        if len(line) > MAX_LINE_CHARS:
            line = line[:MAX_LINE_CHARS] + f" [... line cut at {MAX_LINE_CHARS} characters]"
        numbered.append(f"{n:6}\t{line}")
    last = offset - 1 + len(chosen)
    # `resolved`: the file actually read (symlinks followed), so the caller can judge that path.
    return {"content": "\n".join(numbered), "total_lines": total, "first": offset, "last": last,
            "resolved": ws.display(real)}


def _write_file(ws: Workspace, path: str, content: str) -> str:
    real = ws.resolve(path, must_exist=False)
    if os.path.isdir(real):
        raise OpError(f"{path}: is a directory")
    parent = os.path.dirname(real)
    os.makedirs(parent, exist_ok=True)
    # The parent was created inside the root; re-check in case a component was a symlink.
    ws.resolve(os.path.relpath(parent, ws.root))
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(real, flags, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(content.encode("utf-8"))
    return real


def op_write(ws: Workspace, req: Request) -> Request:
    path, content = req.get("path"), req.get("content")
    if not isinstance(path, str) or not path:
        raise OpError("`path` must be a non-empty string")
    if not isinstance(content, str):
        raise OpError("`content` must be a string")
    existed = os.path.lexists(ws.resolve_for_write(path))
    real = _write_file(ws, path, content)
    return {"path": ws.display(real), "bytes": len(content.encode("utf-8")), "created": not existed}


def op_edit(ws: Workspace, req: Request) -> Request:
    path, old, new = req.get("path"), req.get("old_string"), req.get("new_string")
    if not isinstance(old, str) or not isinstance(new, str):
        raise OpError("`old_string` and `new_string` must be strings")
    if old == "":
        raise OpError("`old_string` is empty; use write to create a file")
    if old == new:
        raise OpError("`old_string` and `new_string` are the same; nothing to change")
    real = ws.resolve_for_write(path)
    if not os.path.lexists(real):
        raise OpError(f"{path}: no such file or directory")
    data = _read_bytes(real, path)
    if _is_binary(data):
        raise OpError(f"{path}: binary file; edit works on text only")
    text = data.decode("utf-8", "replace")
    count = text.count(old)
    if count == 0:
        hint = ""
        if old.strip() and old.strip() in text:
            hint = " (it does appear with different leading/trailing whitespace)"
        raise OpError(f"{path}: old_string not found{hint}; read the file and copy the text exactly")
    if count > 1 and not req.get("replace_all"):
        raise OpError(
            f"{path}: old_string matches {count} times; add surrounding lines to make it unique, "
            "or set replace_all to replace every match"
        )
    updated = text.replace(old, new) if req.get("replace_all") else text.replace(old, new, 1)
    _write_file(ws, ws.display(real), updated)
    return {"path": ws.display(real), "replacements": count if req.get("replace_all") else 1}


def op_ls(ws: Workspace, req: Request) -> Request:
    path = req.get("path") or "."
    real = ws.resolve(path)
    if not os.path.isdir(real):
        raise OpError(f"{path}: not a directory")
    entries = []
    with os.scandir(real) as it:
        for entry in sorted(it, key=lambda e: e.name):
            if entry.is_symlink():
                entries.append(f"{entry.name}@ -> {os.readlink(entry.path)}")
            elif entry.is_dir():
                entries.append(entry.name + "/")
            else:
                entries.append(entry.name)
    total = len(entries)
    return {"path": ws.display(real), "entries": entries[:MAX_LIST], "total": total}


def _walk(ws: Workspace, top: str) -> Iterator[str]:
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for name in sorted(filenames):
            yield os.path.join(dirpath, name)


def _glob_re(pattern: str) -> re.Pattern[str]:
    """A gitignore-ish glob over '/'-separated paths: `*` within a part, `**` across parts."""
    i, out = 0, ""
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
            continue
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            j = pattern.find("]", i + 1)
            if j == -1:
                out += re.escape(c)
            else:
                out += "[" + pattern[i + 1 : j].replace("!", "^", 1) + "]"
                i = j
        else:
            out += re.escape(c)
        i += 1
    return re.compile(out + r"\Z")


def op_glob(ws: Workspace, req: Request) -> Request:
    pattern = req.get("pattern")
    if not isinstance(pattern, str) or not pattern:
        raise OpError("`pattern` must be a non-empty string")
    if pattern.startswith(ws.virtual + "/"):
        pattern = pattern[len(ws.virtual) + 1 :]
    pattern = pattern.lstrip("./") if pattern.startswith("./") else pattern
    if pattern.startswith("/") or ".." in pattern.split("/"):
        raise OpError(f"{pattern}: outside the workspace (patterns are relative to it)")
    rx = _glob_re(pattern)
    matches: list[str] = []
    for real in _walk(ws, ws.root):
        rel = os.path.relpath(real, ws.root)
        if rx.match(rel):
            matches.append(rel)
    return {"matches": matches[:MAX_LIST], "total": len(matches)}


def op_grep(ws: Workspace, req: Request) -> Request:
    """Matches as `rel:line:text` and `files`, the files that matched. Every path is the real one
    relative to the root: the start path is resolved, and the walk follows no symlink (a symlinked
    directory is not entered, a symlinked file is skipped)."""
    pattern = req.get("pattern")
    if not isinstance(pattern, str) or not pattern:
        raise OpError("`pattern` must be a non-empty string")
    try:
        rx = re.compile(pattern, re.IGNORECASE if req.get("ignore_case") else 0)
    except re.error as exc:
        raise OpError(f"invalid regular expression: {exc}") from None
    top = ws.resolve(req.get("path") or ".")
    file_glob = req.get("glob")
    glob_rx = _glob_re(file_glob if "/" in file_glob else "**/" + file_glob) if file_glob else None
    files = [top] if os.path.isfile(top) else _walk(ws, top)
    matches: list[str] = []
    matched_files: list[str] = []
    truncated = False
    for real in files:
        rel = os.path.relpath(real, ws.root)
        if glob_rx and not glob_rx.match(rel):
            continue
        try:
            if os.path.islink(real) or os.path.getsize(real) > MAX_GREP_FILE_BYTES:
                continue
            with open(real, "rb") as f:
                data = f.read(MAX_GREP_FILE_BYTES + 1)
        except OSError:
            continue
        if len(data) > MAX_GREP_FILE_BYTES or _is_binary(data):
            continue
        hit = False
        for n, line in enumerate(data.decode("utf-8", "replace").splitlines(), start=1):
            if rx.search(line):
                hit = True
                if len(matches) >= MAX_GREP_MATCHES:
                    truncated = True
                    break
                matches.append(f"{rel}:{n}:{line[:500]}")
        if hit:
            matched_files.append(rel)
        if truncated:
            break
    return {"matches": matches, "files_matched": len(matched_files), "files": matched_files,
            "truncated": truncated}


def op_stat(ws: Workspace, req: Request) -> Request:
    real = ws.resolve(req.get("path"), must_exist=False)
    return {"exists": os.path.lexists(real), "is_dir": os.path.isdir(real)}


def quiesce(runner: Runner) -> Request:
    """Kill every process in the container but PID 1 (docker's init), the bounded `sleep` it
    started and this helper - i.e. whatever setup left running - before the agent phase.

    Only for the root setup helper of the docker backend (`--setup-phase`): it runs in the
    container's PID namespace and holds CAP_KILL. The `sleep` is told apart from a look-alike
    started by setup by its start time: it is the oldest child of PID 1, started before any
    `docker exec`. Repeats until nothing is left (a fork loop may race the first pass) or
    QUIESCE_S passes; zombies are reaped or left to their parent (they run nothing).
    """
    me = os.getpid()
    deadline = time.monotonic() + QUIESCE_S
    keep: set[int] | None = None
    killed: set[int] = set()
    while True:
        table = _proc_table()
        if keep is None:
            under_init = [(start, pid) for pid, (ppid, _state, start) in table.items() if ppid == 1]
            keep = {1, me} | ({min(under_init)[1]} if under_init else set())
        with runner.lock:
            owned = {p.pid for p in runner.running.values()}
        left = [pid for pid, (_ppid, state, _start) in table.items()
                if pid not in keep and pid not in owned and state != "Z"]
        for pid, (ppid, state, _start) in table.items():
            if state == "Z" and ppid == me and pid not in owned:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
        if not left:
            return {"killed": len(killed), "left": []}
        if time.monotonic() > deadline:
            return {"killed": len(killed), "left": sorted(left)}
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
        time.sleep(0.01)


def runtime_manifest() -> Request:
    """What this interpreter relies on, asked of the setup helper before any setup command runs.

    Setup runs as root and could plant a `python3` earlier on PATH, patch the interpreter, a
    library it maps, a stdlib module it imports (or a file that would shadow one), or
    /etc/ld.so.preload. The docker backend compares the daemon's list of what setup changed in
    the container against this, and starts the agent's helper by these absolute paths (through
    the loader, with the library search pinned) instead of by a PATH lookup.
    """
    files: set[str] = set()
    lib_dirs: list[str] = []
    loader = None
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split(None, 5)
            path = parts[5].strip() if len(parts) == 6 else ""
            if not path.startswith("/") or path.endswith(" (deleted)"):
                continue
            files.add(path)
            name = os.path.basename(path)
            if name.startswith("ld-linux"):
                loader = path
            elif ".so" in name and os.path.dirname(path) not in lib_dirs and "python" not in path:
                lib_dirs.append(os.path.dirname(path))
    python_dirs = {p for p in sys.path if os.path.isdir(p)}
    absent = sorted(p for p in sys.path if not os.path.exists(p))
    for name, module in list(sys.modules.items()):
        if name == "__main__":  # this script: on a read-only mount, and not on sys.path (-I)
            continue
        for attr in ("__file__", "__cached__"):
            source = getattr(module, attr, None)
            if isinstance(source, str) and os.path.isfile(source):
                files.add(os.path.realpath(source))
                python_dirs.add(os.path.dirname(os.path.realpath(source)))
    interpreter = os.path.realpath(sys.executable)
    files.add(interpreter)
    return {"interpreter": interpreter, "loader": loader, "lib_dirs": lib_dirs, "files": sorted(files),
            "python_dirs": sorted(python_dirs), "absent": absent}


FILE_OPS: dict[str, Callable[[Workspace, Request], Request]] = {
    "read": op_read, "write": op_write, "edit": op_edit, "ls": op_ls, "glob": op_glob,
    "grep": op_grep, "stat": op_stat,
}


# ---------------------------------------------------------------------------------- server


class Server:
    def __init__(self, ws: Workspace, env: dict[str, str], key: bytes, *, setup_phase: bool = False) -> None:
        self.ws = ws
        self.key = key
        self.runner = Runner(ws, env)
        self.out_lock = threading.Lock()
        self.setup_phase = setup_phase
        """The docker backend's root setup helper (`--setup-phase`): only it may `quiesce` (on the
        host, or as the agent, that would kill every process it may signal)."""

    def send(self, msg: Request) -> None:
        line = seal(self.key, TO_HOST, msg)
        with self.out_lock:
            sys.stdout.buffer.write(line)
            sys.stdout.buffer.flush()

    def handle(self, req: Request) -> None:
        rid = req.get("id")
        op = req.get("op")
        try:
            if op == "exec":
                result = self.runner.exec(rid, req)
            elif op in FILE_OPS:
                result = FILE_OPS[op](self.ws, req)
            elif op == "quiesce" and self.setup_phase:
                result = quiesce(self.runner)
            elif op == "alone":  # nothing but this helper runs in the container (it is PID 1)
                with self.runner.lock:
                    busy = bool(self.runner.running)
                me = os.getpid()
                others = [pid for pid, (_ppid, state, _start) in _proc_table().items() if pid != me and state != "Z"]
                result = {"alone": me == 1 and not busy and not others}
            elif op == "ping":
                result = {"pid": os.getpid(), "uid": os.getuid(), "root": self.ws.root,
                          "python": sys.version.split()[0]}
                try:  # which file system the root is: the host checks it is the worktree's (diskcap.py)
                    result["fsid"] = os.statvfs(self.ws.root).f_fsid
                except (OSError, AttributeError):
                    result["fsid"] = None
                if self.setup_phase:
                    result["runtime"] = runtime_manifest()
            else:
                raise OpError(f"unknown op {op!r}")
            self.send({"id": rid, "ok": True, "result": result})
        except OpError as exc:
            self.send({"id": rid, "ok": False, "error": str(exc)})
        except OSError as exc:
            self.send({"id": rid, "ok": False, "error": f"{exc.strerror or exc}"})
        except Exception as exc:  # a helper bug must not kill the helper
            self.send({"id": rid, "ok": False, "error": f"internal error: {type(exc).__name__}: {exc}"})

    def serve(self, stdin: Any) -> None:
        for line in stdin:
            if not line.strip():
                continue
            try:
                req = unseal(self.key, TO_HELPER, line)
            except ChannelError as exc:
                # Someone other than the host reached our stdin: say so (signed) and stop.
                self.send({"id": None, "ok": False, "fatal": f"the helper received {exc}"})
                break
            if req.get("op") == "cancel":  # answered inline: must not queue behind the target
                killed = self.runner.kill(req.get("target"))
                self.send({"id": req.get("id"), "ok": True, "result": {"killed": killed}})
                continue
            threading.Thread(target=self.handle, args=(req,), daemon=True).start()
        self.runner.kill_all()  # stdin closed: the runner is gone; leave nothing behind


def drop_capabilities() -> None:
    """Give up every capability of this process, for good.

    The docker backend runs the helper as the invoking user's uid. When that uid is 0 (root CI
    jobs) docker exec hands it the container's capability set - which holds a few capabilities
    when the task has setup commands (see docker.py). Clearing the permitted set here is always
    allowed; with no-new-privileges set (docker's security_opt, and again below) the kernel
    intersects what any later execve may gain with this empty set, so no command the model runs
    ever holds a capability, root or not. A non-root uid has none to begin with.
    """
    if _cap_line("CapEff") == 0 and _cap_line("CapPrm") == 0:
        return
    import ctypes

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_no_new_privs = 38
    if libc.prctl(pr_set_no_new_privs, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    header = Header(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3: two 32-bit words
    data = (Data * 2)()
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")
    if _cap_line("CapEff") != 0 or _cap_line("CapPrm") != 0:
        raise OSError("capabilities are still held after capset")


def become_subreaper() -> None:
    """Orphans of the commands we run become our children instead of PID 1's, so that
    `Runner.sweep` finds what `setsid cmd &` left behind. Best effort: Linux only."""
    _prctl(PR_SET_CHILD_SUBREAPER, 1)


def _prctl(option: int, value: int) -> bool:
    try:
        import ctypes

        return int(ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)) == 0
    except Exception:  # not Linux, no libc: best effort
        return False


def _cap_line(name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1], 16)
    return -1


def read_channel_key(stdin: Any) -> bytes:
    """The handshake: the host's first line carries the session key (see the module docstring)."""
    line = stdin.readline(1000)
    try:
        key = bytes.fromhex(json.loads(line)["channel_key"])
    except (ValueError, KeyError, TypeError):
        key = b""
    if len(key) != KEY_BYTES:
        raise ChannelError("the first line on stdin must be the channel handshake")
    return key


def main(argv: list[str]) -> int:
    # First of all, before reading anything: nothing of this uid may open our fds (the channel),
    # read our memory (the key) or ptrace us - the commands we run have our uid, and setup's run
    # as root with capabilities (no Yama in many CI kernels). The kernel resets it at an execve
    # (`--exec`: that process is not the helper).
    _prctl(PR_SET_DUMPABLE, 0)
    root, virtual, drop_caps, setup_phase = ".", "/workspace", False, False
    deadline_s = 0
    i = 0
    while i < len(argv):
        if argv[i] == "--root":
            root, i = argv[i + 1], i + 2
        elif argv[i] == "--virtual":
            virtual, i = argv[i + 1], i + 2
        elif argv[i] == "--drop-caps":
            drop_caps, i = True, i + 1
        elif argv[i] == "--setup-phase":
            setup_phase, i = True, i + 1
        elif argv[i] == "--max-file-bytes":  # sandbox.disk: no file may grow past it (kernel-enforced)
            import resource

            cap = int(argv[i + 1])
            resource.setrlimit(resource.RLIMIT_FSIZE, (cap, cap))  # hard too: no command may raise it
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # our own writes get EFBIG; commands die (SIG_DFL)
            i += 2
        elif argv[i] == "--deadline-s":  # the container's own process: end it at the run's deadline
            deadline_s, i = int(argv[i + 1]), i + 2
        elif argv[i] == "--exec":  # `--exec ARGV...`: drop capabilities, then become ARGV (spawn)
            if drop_caps:
                drop_capabilities()
            os.execvp(argv[i + 1], argv[i + 1 :])  # noqa: S606 - argv from the runner, not a shell
        else:
            sys.stderr.write(f"helper: unknown argument {argv[i]}\n")
            return 2
    if drop_caps:
        drop_capabilities()  # before any thread exists: capset acts on the calling thread only
    become_subreaper()
    stdin = sys.stdin.buffer
    try:
        key = read_channel_key(stdin)
    except ChannelError as exc:
        sys.stderr.write(f"helper: {exc}\n")
        return 2
    # The environment commands get is the helper's own, which its launcher set up cleanly.
    server = Server(Workspace(root, virtual), dict(os.environ), key, setup_phase=setup_phase)

    def terminate(_signum: int, _frame: object) -> None:
        server.runner.kill_all()
        os._exit(0)

    signal.signal(signal.SIGTERM, terminate)
    if deadline_s > 0:  # what PID 1's bounded `sleep` is on the exec path (docker_attach.py)
        signal.signal(signal.SIGALRM, terminate)
        signal.alarm(deadline_s)
    server.serve(stdin)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
