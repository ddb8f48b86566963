"""Every tool through the registry and the real helper (local backend): edge cases a model hits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runner.sandbox import SandboxConfig, ToolFailure, make_sandbox
from runner.tools import ToolContext, ToolRegistry


@pytest.fixture
async def ctx(tmp_path: Path) -> AsyncIterator[ToolContext]:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "src").mkdir()
    (root / "src" / "a.py").write_text("x = 1\ny = 2\nx = 1\n")
    (root / "README.md").write_text("hello\n")
    (root / "blob.bin").write_bytes(b"\x00\x01\x02binary")
    async with make_sandbox("local", SandboxConfig(run_id="t", worktree=root)) as sandbox:
        yield ToolContext(sandbox, tool_timeout=10, output_limit=2000)


REG = ToolRegistry.builtin()


async def call(ctx: ToolContext, name: str, **args: object) -> str:
    return await REG.call(name, dict(args), ctx)


async def fails(ctx: ToolContext, name: str, **args: object) -> str:
    with pytest.raises(ToolFailure) as info:
        await REG.call(name, dict(args), ctx)
    return str(info.value)


def test_tool_names_and_inputs_are_exactly_the_spec() -> None:
    schemas = {s.name: s.input_schema for s in REG.specs()}
    assert list(schemas) == ["bash", "read", "write", "edit", "grep", "glob", "ls"]
    props = {name: set(s["properties"]) for name, s in schemas.items()}
    assert props == {
        "bash": {"command", "timeout"},
        "read": {"path", "offset", "limit"},
        "write": {"path", "content"},
        "edit": {"path", "old_string", "new_string", "replace_all"},
        "grep": {"pattern", "path", "glob", "ignore_case"},
        "glob": {"pattern"},
        "ls": {"path"},
    }
    assert schemas["edit"]["required"] == ["path", "old_string", "new_string"]


async def test_bash_output_exit_code_and_timeout(ctx: ToolContext) -> None:
    assert await call(ctx, "bash", command="echo hi && pwd") == f"hi\n{ctx.sandbox.config.worktree}"
    assert "[exit code 3]" in await fails(ctx, "bash", command="echo oops; exit 3")
    msg = await fails(ctx, "bash", command="sleep 30", timeout=1)
    assert "timed out after 1s" in msg
    assert await call(ctx, "bash", command="true") == "[no output, exit code 0]"


async def test_bash_cannot_exceed_the_task_tool_timeout(tmp_path: Path, ctx: ToolContext) -> None:
    short = ToolContext(ctx.sandbox, tool_timeout=1, output_limit=2000)
    msg = await fails(short, "bash", command="sleep 30", timeout=3600)
    assert "timed out after 1s" in msg


async def test_bash_output_is_capped_head_and_tail(ctx: ToolContext) -> None:
    out = await call(ctx, "bash", command="seq 1 100000")
    assert out.startswith("1\n2\n3")
    assert out.rstrip().endswith("100000")
    assert "cut" in out
    assert len(out) < 2300


async def test_bash_binary_output_does_not_crash(ctx: ToolContext) -> None:
    out = await call(ctx, "bash", command="head -c 3000 /dev/urandom; echo; echo END")
    assert out.rstrip().endswith("END")


async def test_read_numbers_lines_and_pages(ctx: ToolContext) -> None:
    assert await call(ctx, "read", path="src/a.py") == "     1\tx = 1\n     2\ty = 2\n     3\tx = 1"
    out = await call(ctx, "read", path="/workspace/src/a.py", offset=2, limit=1)
    assert out.startswith("     2\ty = 2") and "lines 2-2 of 3" in out
    assert "offset 9 is past the end (3 lines)" in await fails(ctx, "read", path="src/a.py", offset=9)
    assert "binary file" in await fails(ctx, "read", path="blob.bin")
    assert "no such file" in await fails(ctx, "read", path="nope.py")
    assert "is a directory" in await fails(ctx, "read", path="src")


async def test_write_creates_parents_and_overwrites(ctx: ToolContext) -> None:
    assert await call(ctx, "write", path="new/deep/f.txt", content="a\n") == "created new/deep/f.txt (2 bytes)"
    assert await call(ctx, "write", path="new/deep/f.txt", content="bb") == "overwrote new/deep/f.txt (2 bytes)"
    assert (ctx.sandbox.config.worktree / "new/deep/f.txt").read_text() == "bb"


async def test_edit_errors_are_useful(ctx: ToolContext) -> None:
    assert "matches 2 times" in await fails(ctx, "edit", path="src/a.py", old_string="x = 1", new_string="x = 9")
    assert "not found" in await fails(ctx, "edit", path="src/a.py", old_string="zzz", new_string="q")
    assert "different leading/trailing whitespace" in await fails(
        ctx, "edit", path="src/a.py", old_string="   y = 2   ", new_string="q"
    )
    assert "the same" in await fails(ctx, "edit", path="src/a.py", old_string="y", new_string="y")
    out = await call(ctx, "edit", path="src/a.py", old_string="x = 1", new_string="x = 9", replace_all=True)
    assert out == "edited src/a.py (2 replacements)"
    assert (ctx.sandbox.config.worktree / "src/a.py").read_text() == "x = 9\ny = 2\nx = 9\n"


async def test_edit_three_matches_says_three(ctx: ToolContext) -> None:
    await call(ctx, "write", path="t.txt", content="a\na\na\n")
    assert "matches 3 times" in await fails(ctx, "edit", path="t.txt", old_string="a", new_string="b")


async def test_grep_glob_ls(ctx: ToolContext) -> None:
    assert await call(ctx, "grep", pattern=r"y = \d") == "src/a.py:2:y = 2"
    assert await call(ctx, "grep", pattern="HELLO", ignore_case=True, glob="*.md") == "README.md:1:hello"
    assert await call(ctx, "grep", pattern="HELLO") == "[no matches]"
    assert "invalid regular expression" in await fails(ctx, "grep", pattern="(")
    assert await call(ctx, "glob", pattern="**/*.py") == "src/a.py"
    assert await call(ctx, "glob", pattern="*.md") == "README.md"
    assert await call(ctx, "ls") == "README.md\nblob.bin\nsrc/"


async def test_paths_outside_the_workspace_are_refused(ctx: ToolContext, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret")
    root = ctx.sandbox.config.worktree
    (root / "link").symlink_to(secret)
    (root / "linkdir").symlink_to(tmp_path)
    for path in ["../secret.txt", str(secret), "/etc/passwd", "link", "linkdir/secret.txt", "src/../../secret.txt"]:
        assert "outside the workspace" in await fails(ctx, "read", path=path), path
    assert "outside the workspace" in await fails(ctx, "write", path="link", content="pwned")
    assert "outside the workspace" in await fails(ctx, "write", path="linkdir/x", content="pwned")
    assert secret.read_text() == "host secret"
    assert not (tmp_path / "x").exists()


async def test_bad_input_and_unknown_tools(ctx: ToolContext) -> None:
    assert "unknown tool 'rm'" in await fails(ctx, "rm", path="x")
    assert "invalid input for read: path: Field required" in await fails(ctx, "read")
    assert "invalid input for bash: cmd: unknown field" in await fails(ctx, "bash", command="ls", cmd="x")
    assert "invalid input for bash: timeout" in await fails(ctx, "bash", command="ls", timeout="soon")


async def test_writes_through_a_symlink_inside_the_workspace_are_refused(ctx: ToolContext) -> None:
    """Otherwise `ln -s .github/workflows w` + write(w/ci.yml) would get past write(.github/workflows/**)."""
    root = ctx.sandbox.config.worktree
    (root / ".github" / "workflows").mkdir(parents=True)
    (root / ".github" / "workflows" / "ci.yml").write_text("on: push\n")
    (root / "w").symlink_to(".github/workflows")
    (root / "alias.py").symlink_to("src/a.py")
    assert "goes through a symlink (to .github/workflows/ci.yml)" in await fails(
        ctx, "write", path="w/ci.yml", content="pwned")
    assert "goes through a symlink" in await fails(ctx, "edit", path="w/ci.yml", old_string="push", new_string="x")
    assert "goes through a symlink (to src/a.py)" in await fails(ctx, "write", path="alias.py", content="x")
    assert (root / ".github" / "workflows" / "ci.yml").read_text() == "on: push\n"
    assert await call(ctx, "read", path="alias.py")  # reading through an inside link is fine
