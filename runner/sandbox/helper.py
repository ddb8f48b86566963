#!/usr/bin/env python3
"""The sandbox helper: runs *inside* the sandbox and serves every tool call.

It is started once per sandbox (`docker exec -i ... python3 helper.py --root /workspace`, or as
a host subprocess for the `local` backend) and speaks JSON lines on stdin/stdout:

    request:  {"id": 7, "op": "exec", "command": "pytest -q", "timeout": 30, "limit": 30000}
    response: {"id": 7, "ok": true, "result": {...}}
              {"id": 7, "ok": false, "error": "no such file: src/x.py"}

Because it runs inside the container, every path the model names is opened there: a symlink to
/etc/passwd resolves to the *container's* file, and is refused anyway since it leaves the root.
The host never opens a path the model chose.

Standard library only, Python >= 3.8: it must run on whatever python3 a user's image has.
"""

from __future__ import annotations

import contextlib
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
BINARY_SNIFF = 8192
SKIP_DIRS = {".git"}
EXEC_GRACE_S = 0.2


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
    """Runs commands, each in its own process group, and can kill one by request id."""

    def __init__(self, ws: Workspace, env: dict[str, str]) -> None:
        self.ws = ws
        self.env = env
        self.running: dict[Any, subprocess.Popen[bytes]] = {}
        self.lock = threading.Lock()

    def kill(self, rid: Any) -> bool:
        with self.lock:
            proc = self.running.get(rid)
        if proc is None:
            return False
        _kill_group(proc)
        return True

    def kill_all(self) -> None:
        with self.lock:
            procs = list(self.running.values())
        for proc in procs:
            _kill_group(proc)

    def exec(self, rid: Any, req: Request) -> Request:
        command = req.get("command")
        if not isinstance(command, str) or not command.strip():
            raise OpError("`command` must be a non-empty string")
        timeout = float(req.get("timeout_s") or 120)
        limit = int(req.get("limit") or 30000)
        env = dict(self.env)
        env.update({str(k): str(v) for k, v in (req.get("env") or {}).items()})
        cwd = self.ws.resolve(req.get("cwd") or ".")
        start = time.monotonic()
        proc = subprocess.Popen(
            ["/bin/bash", "-c", command] if os.path.exists("/bin/bash") else ["/bin/sh", "-c", command],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own session and process group: killed as one
        )
        with self.lock:
            self.running[rid] = proc
        out = Capped(limit)
        timed_out = False
        try:
            timed_out = _pump(proc, out, start + timeout)
        finally:
            # Whatever the command left behind (`server &`) dies with it: nothing outlives a call.
            _kill_group(proc)
            proc.wait()
            with self.lock:
                self.running.pop(rid, None)
        text, truncated = out.text()
        return {
            "exit_code": None if timed_out else proc.returncode,
            "output": text,
            "timed_out": timed_out,
            "truncated": truncated,
            "output_bytes": out.total,
            "duration_s": round(time.monotonic() - start, 4),
        }


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


def _read_bytes(real: str) -> bytes:
    if os.path.isdir(real):
        raise OpError("is a directory (use ls)")
    if not os.path.isfile(real):
        raise OpError("not a regular file")
    with open(real, "rb") as f:
        return f.read()


def op_read(ws: Workspace, req: Request) -> Request:
    path = req.get("path")
    real = ws.resolve(path)
    data = _read_bytes(real)
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
    return {"content": "\n".join(numbered), "total_lines": total, "first": offset, "last": last}


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
    data = _read_bytes(real)
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
    files_matched, truncated = 0, False
    for real in files:
        rel = os.path.relpath(real, ws.root)
        if glob_rx and not glob_rx.match(rel):
            continue
        try:
            if os.path.islink(real) or os.path.getsize(real) > MAX_GREP_FILE_BYTES:
                continue
            with open(real, "rb") as f:
                data = f.read()
        except OSError:
            continue
        if _is_binary(data):
            continue
        hit = False
        for n, line in enumerate(data.decode("utf-8", "replace").splitlines(), start=1):
            if rx.search(line):
                hit = True
                if len(matches) >= MAX_GREP_MATCHES:
                    truncated = True
                    break
                matches.append(f"{rel}:{n}:{line[:500]}")
        files_matched += hit
        if truncated:
            break
    return {"matches": matches, "files_matched": files_matched, "truncated": truncated}


def op_stat(ws: Workspace, req: Request) -> Request:
    real = ws.resolve(req.get("path"), must_exist=False)
    return {"exists": os.path.lexists(real), "is_dir": os.path.isdir(real)}


FILE_OPS: dict[str, Callable[[Workspace, Request], Request]] = {
    "read": op_read, "write": op_write, "edit": op_edit, "ls": op_ls, "glob": op_glob,
    "grep": op_grep, "stat": op_stat,
}


# ---------------------------------------------------------------------------------- server


class Server:
    def __init__(self, ws: Workspace, env: dict[str, str]) -> None:
        self.ws = ws
        self.runner = Runner(ws, env)
        self.out_lock = threading.Lock()

    def send(self, msg: Request) -> None:
        line = json.dumps(msg, ensure_ascii=False) + "\n"
        with self.out_lock:
            sys.stdout.write(line)
            sys.stdout.flush()

    def handle(self, req: Request) -> None:
        rid = req.get("id")
        op = req.get("op")
        try:
            if op == "exec":
                result = self.runner.exec(rid, req)
            elif op in FILE_OPS:
                result = FILE_OPS[op](self.ws, req)
            elif op == "ping":
                result = {"pid": os.getpid(), "uid": os.getuid(), "root": self.ws.root,
                          "python": sys.version.split()[0]}
            else:
                raise OpError(f"unknown op {op!r}")
            self.send({"id": rid, "ok": True, "result": result})
        except OpError as exc:
            self.send({"id": rid, "ok": False, "error": str(exc)})
        except OSError as exc:
            self.send({"id": rid, "ok": False, "error": f"{exc.strerror or exc}"})
        except Exception as exc:  # a helper bug must not kill the helper
            self.send({"id": rid, "ok": False, "error": f"internal error: {type(exc).__name__}: {exc}"})

    def serve(self) -> None:
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                req = json.loads(line)
            except ValueError:
                self.send({"id": None, "ok": False, "error": "request is not JSON"})
                continue
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


def _cap_line(name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1], 16)
    return -1


def main(argv: list[str]) -> int:
    root, virtual, drop_caps = ".", "/workspace", False
    i = 0
    while i < len(argv):
        if argv[i] == "--root":
            root, i = argv[i + 1], i + 2
        elif argv[i] == "--virtual":
            virtual, i = argv[i + 1], i + 2
        elif argv[i] == "--drop-caps":
            drop_caps, i = True, i + 1
        elif argv[i] == "--exec":  # `--exec ARGV...`: drop capabilities, then become ARGV (spawn)
            if drop_caps:
                drop_capabilities()
            os.execvp(argv[i + 1], argv[i + 1 :])  # noqa: S606 - argv from the runner, not a shell
        else:
            sys.stderr.write(f"helper: unknown argument {argv[i]}\n")
            return 2
    if drop_caps:
        drop_capabilities()  # before any thread exists: capset acts on the calling thread only
    # The environment commands get is the helper's own, which its launcher set up cleanly.
    server = Server(Workspace(root, virtual), dict(os.environ))

    def terminate(_signum: int, _frame: object) -> None:
        server.runner.kill_all()
        os._exit(0)

    signal.signal(signal.SIGTERM, terminate)
    server.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
