"""A minimal MCP stdio server in the standard library only, for the Docker sandbox tests.

The sandbox image has python3 but not the mcp package, and the repo is not mounted in the
container - only the workspace. So the tests copy this one file into the task's repo and run
`python3 stdlib_server.py` at /workspace. Installing mcp in `setup:` would need the network and
tens of seconds per run, and would test pip as much as us; this file needs nothing. It also
shows that the bridge talks plain MCP (JSON-RPC lines), not just to servers built with the SDK.

`--ignore-eof`: keep running when stdin closes. Tools: echo, fail (is_error), hang (never answers), crash (exits), image, getenv, whoami,
big (a text of `size` bytes: one long JSON-RPC line).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any

PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAMAAAABCAIAAAB7QOjdAAAAEklEQVR4nGP4z8DAwMDAwMAAAA0WAQE0bZ5tAAAAAElFTkSuQmCC"
TOOLS = [
    {"name": "echo", "description": "Return the text.",
     "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}},
    {"name": "fail", "description": "An is_error result.", "inputSchema": {"type": "object", "properties": {}}},
    {"name": "hang", "description": "Never answers.", "inputSchema": {"type": "object", "properties": {}}},
    {"name": "crash", "description": "Exit at once.", "inputSchema": {"type": "object", "properties": {}}},
    {"name": "image", "description": "A PNG.", "inputSchema": {"type": "object", "properties": {}}},
    {"name": "getenv", "description": "An environment variable.",
     "inputSchema": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}},
    {"name": "whoami", "description": "uid, cwd and whether the network is reachable.",
     "inputSchema": {"type": "object", "properties": {}}},
    {"name": "big", "description": "A text of `size` bytes.",
     "inputSchema": {"type": "object", "properties": {"size": {"type": "integer"}}, "required": ["size"]}},
]
_lock = threading.Lock()


def send(msg: dict[str, Any]) -> None:
    with _lock:
        sys.stdout.write(json.dumps(msg) + "\n")
        sys.stdout.flush()


def text(t: str, error: bool = False) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": t}], "isError": error}


def call(name: str, args: dict[str, Any]) -> dict[str, Any]:
    if name == "echo":
        return text(str(args.get("text", "")))
    if name == "fail":
        return text("failed on purpose", error=True)
    if name == "hang":
        while True:
            time.sleep(3600)
    if name == "crash":
        sys.stderr.write("stdlib server: crashing on request\n")
        sys.stderr.flush()
        os._exit(3)
    if name == "image":
        return {"content": [{"type": "image", "data": PNG_B64, "mimeType": "image/png"}]}
    if name == "big":
        return text("x" * int(args.get("size", 0)))
    if name == "getenv":
        return text(os.environ.get(str(args.get("name")), "<unset>"))
    if name == "whoami":
        import socket

        try:
            socket.create_connection(("1.1.1.1", 53), timeout=2).close()
            net = "network: yes"
        except OSError as exc:
            net = f"network: no ({exc.strerror or exc})"
        return text(f"uid={os.getuid()} cwd={os.getcwd()} {net}")
    raise KeyError(name)


def handle(msg: dict[str, Any]) -> None:
    rid, method, params = msg.get("id"), msg.get("method"), msg.get("params") or {}
    if rid is None:
        return  # a notification (initialized, cancelled)
    if method == "initialize":
        send({"jsonrpc": "2.0", "id": rid, "result": {
            "protocolVersion": params.get("protocolVersion", "2025-06-18"),
            "capabilities": {"tools": {}}, "serverInfo": {"name": "stdlib-fake", "version": "1"}}})
    elif method == "ping":
        send({"jsonrpc": "2.0", "id": rid, "result": {}})
    elif method == "tools/list":
        send({"jsonrpc": "2.0", "id": rid, "result": {"tools": TOOLS}})
    elif method == "tools/call":
        def run() -> None:
            try:
                result = call(params.get("name"), params.get("arguments") or {})
            except KeyError:
                send({"jsonrpc": "2.0", "id": rid, "error": {"code": -32602, "message": "unknown tool"}})
                return
            send({"jsonrpc": "2.0", "id": rid, "result": result})

        threading.Thread(target=run, daemon=True).start()
    else:
        send({"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": f"no method {method}"}})


def main() -> None:
    if "--die-at-start" in sys.argv:
        sys.stderr.write("stdlib server: refusing to start\n")
        sys.exit(3)
    for line in sys.stdin:
        if line.strip():
            handle(json.loads(line))
    while "--ignore-eof" in sys.argv:  # a misbehaving server: the MCP shutdown alone does not end it
        time.sleep(3600)


if __name__ == "__main__":
    main()
