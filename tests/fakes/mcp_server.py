"""A real MCP server, written with the mcp 2.x SDK (`MCPServer`), for tests.

    python tests/fakes/mcp_server.py [--tag TAG] [--die-at-start] [--http PORT [--token T]]
    python -m tests.fakes.mcp_server ...

Over stdio by default; `--http PORT` serves streamable HTTP on 127.0.0.1:PORT/mcp, and with
`--token T` every request must carry `Authorization: Bearer T` (401 otherwise). `--tag` only
marks the command line so a test can `pgrep -f` for leftovers.

Tools: echo, add (structured result), fail (an is_error result), hang (never answers), crash
(the process exits at once), image (a 3x1 PNG), getenv, spawn_child (a grandchild that sleeps,
in the server's process group).
"""

from __future__ import annotations

import argparse
import base64
import os
import subprocess
import sys
import time
from typing import Any

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.utilities.types import Image
from mcp_types import CallToolResult, TextContent

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAMAAAABCAIAAAB7QOjdAAAAEklEQVR4nGP4z8DAwMDAwMAAAA0WAQE0bZ5tAAAAAElFTkSuQmCC"
)


def build() -> MCPServer:
    server = MCPServer("fake")

    @server.tool(description="Return the text unchanged.")
    def echo(text: str) -> str:
        return text

    @server.tool(description="Add two integers.")
    def add(a: int, b: int) -> dict[str, int]:
        return {"sum": a + b}

    @server.tool(description="Always fails (an is_error result).")
    def fail(reason: str = "it broke") -> CallToolResult:
        return CallToolResult(content=[TextContent(type="text", text=f"failed on purpose: {reason}")], is_error=True)

    @server.tool(description="Never answers.")
    async def hang() -> str:
        await anyio.sleep_forever()
        return "unreachable"

    @server.tool(description="The server process exits at once.")
    def crash() -> str:
        sys.stderr.write("fake server: crashing on request\n")
        sys.stderr.flush()
        os._exit(3)

    @server.tool(description="A small PNG image.")
    def image() -> Image:
        return Image(data=PNG, format="png")

    @server.tool(description="The value of an environment variable, or <unset>.")
    def getenv(name: str) -> str:
        return os.environ.get(name, "<unset>")

    @server.tool(description="Start a grandchild process that sleeps (to check group kills).")
    def spawn_child(tag: str) -> str:
        child = subprocess.Popen([sys.executable, "-c", "import time, sys; time.sleep(600)", tag])
        return str(child.pid)

    return server


def _serve_http(server: MCPServer, port: int, token: str | None) -> None:
    import uvicorn

    app = server.streamable_http_app(host="127.0.0.1")

    async def guarded(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and token is not None:
            headers = dict(scope.get("headers") or [])
            if headers.get(b"authorization") != f"Bearer {token}".encode():
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"text/plain")]})
                await send({"type": "http.response.body", "body": b"missing or wrong token"})
                return
        await app(scope, receive, send)

    uvicorn.run(guarded, host="127.0.0.1", port=port, log_level="warning", lifespan="on")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tag", default="")
    parser.add_argument("--die-at-start", action="store_true")
    parser.add_argument("--http", type=int, default=None)
    parser.add_argument("--token", default=None)
    args = parser.parse_args(argv)
    if args.die_at_start:
        sys.stderr.write("fake server: refusing to start (--die-at-start)\n")
        sys.stderr.flush()
        time.sleep(0.1)
        sys.exit(3)
    server = build()
    if args.http is not None:
        _serve_http(server, args.http, args.token)
    else:
        server.run("stdio")


if __name__ == "__main__":
    main()
