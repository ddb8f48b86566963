"""A scripted model: replays a YAML list of turns. For tests and the no-API-key demo.

    - text: "Let me run the tests first."
      tool_calls:
        - {name: bash, input: {command: "python -m pytest -q"}}
    - tool_calls:
        - {name: edit, input: {path: src/x.py, old_string: "a", new_string: "b"}}
    - text: "Fixed: ..."            # no tool calls: the agent's turn ends

Optional keys of a turn: `thinking` (a thinking block first), `usage` (token counts, default
zeros), `stop_reason`, `sleep` (seconds before answering), `fail: <message>` (the call fails
as a retryable model error), and in a tool call `input_error` (as if the streamed JSON was
broken). When the list runs out the model ends its turn saying so. It calls no API and costs nothing.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from runner.errors import ConfigError
from runner.models.base import (
    AssistantBlock,
    ModelCallFailed,
    ModelRequest,
    ModelResponse,
    TextBlock,
    ThinkingBlock,
    ToolUse,
    Usage,
)

PREFIX = "scripted:"


class _Call(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    input: dict[str, Any] = Field(default_factory=dict)
    input_error: str | None = None


class _Usage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0


class ScriptedTurn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = ""
    thinking: str | None = None
    """A thinking block before the text (its signature is made up: scripted turns call no API)."""
    tool_calls: list[_Call] = Field(default_factory=list)
    usage: _Usage = Field(default_factory=_Usage)
    stop_reason: str | None = None
    sleep: float = 0.0
    fail: str | None = None


_TURNS: TypeAdapter[list[ScriptedTurn]] = TypeAdapter(list[ScriptedTurn])


def load_script(path: Path) -> list[ScriptedTurn]:
    """The turns of a scripted model file, read with the task file's limits; every problem at
    once as `FILE:LINE: field: problem` (`m.yaml:4: [1].tool_calls[0].name: ...`), ConfigProblems."""
    from runner.problems import ConfigProblems, Layers, from_validation
    from runner.yamlio import load_yaml_file  # limits: size, encoding, depth, file type

    data, positions, problems = load_yaml_file(path, "scripted model")
    layers = Layers.of(str(path), positions)
    if not isinstance(data, list):
        raise ConfigProblems([*problems, layers.problem((), "a scripted model is a YAML list of turns")])
    try:
        turns = _TURNS.validate_python(data)
    except ValidationError as exc:
        raise ConfigProblems([*problems, *from_validation(exc, layers)]) from None
    if problems:
        raise ConfigProblems(problems)
    return turns


class ScriptedModel:
    def __init__(self, script: Path, name: str | None = None) -> None:
        self.name = name or PREFIX + str(script)
        self.turns = load_script(script)
        self._next = 0
        self._ids = itertools.count(1)
        self.requests: list[ModelRequest] = []

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.requests.append(request)
        if self._next >= len(self.turns):
            return ModelResponse([TextBlock("(the scripted model has no more turns)")], "end_turn", Usage(), self.name)
        turn = self.turns[self._next]
        self._next += 1
        if turn.sleep:
            await asyncio.sleep(turn.sleep)
        if turn.fail is not None:
            raise ModelCallFailed(turn.fail)
        content: list[AssistantBlock] = []
        if turn.thinking is not None:
            content.append(ThinkingBlock(turn.thinking, f"scripted-signature-{self._next}"))
        if turn.text:
            content.append(TextBlock(turn.text))
        for call in turn.tool_calls:
            content.append(ToolUse(f"toolu_scripted_{next(self._ids):04d}", call.name, call.input, call.input_error))
        stop = turn.stop_reason or ("tool_use" if turn.tool_calls else "end_turn")
        return ModelResponse(content, stop, Usage(**turn.usage.model_dump()), self.name)

    async def aclose(self) -> None:
        return None


def resolve_script(spec: str, base_dir: Path) -> Path:
    from runner.yamlio import is_file  # a path the system refuses (too long) is simply not found

    raw = Path(spec[len(PREFIX):]).expanduser()
    for candidate in ([raw] if raw.is_absolute() else [base_dir / raw, Path.cwd() / raw]):
        if is_file(candidate):
            return candidate.resolve()
    raise ConfigError(f"model: scripted model file {raw} not found (relative to {base_dir} or the current directory)")
