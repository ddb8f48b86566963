"""AnthropicModel with the real `anthropic` SDK talking HTTP to the fake Messages API."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest

from runner.errors import ModelAPIError
from runner.models.anthropic import AnthropicModel
from runner.models.base import (
    Message,
    ModelCallFailed,
    ModelRequest,
    PromptTooLong,
    TextBlock,
    ThinkingBlock,
    ToolResult,
    ToolSpec,
    ToolUse,
    Usage,
)
from tests.fakes.messages_api import FakeMessagesAPI
from tests.models.conftest import API_KEY

MakeModel = Callable[..., AnthropicModel]

TOOLS = [
    ToolSpec("bash", "Run a command", {"type": "object", "properties": {"command": {"type": "string"}}}),
    ToolSpec("read", "Read a file", {"type": "object", "properties": {"path": {"type": "string"}}}),
    ToolSpec("edit", "Edit a file", {"type": "object", "properties": {"path": {"type": "string"}}}),
]


def ask(text: str = "Fix the failing test.", **kwargs: Any) -> ModelRequest:
    return ModelRequest(
        system="You are a careful engineer.",
        tools=TOOLS,
        messages=[Message("user", [TextBlock(text)])],
        **kwargs,
    )


def cache_marked(body: dict[str, Any]) -> list[dict[str, Any]]:
    blocks = list(body.get("tools", [])) + list(body.get("system", []))
    for m in body["messages"]:
        blocks += m["content"]
    return [b for b in blocks if "cache_control" in b]


# -- plain turns ------------------------------------------------------------------------------------
async def test_plain_text_turn(api: FakeMessagesAPI, make_model: MakeModel) -> None:
    api.add({"text": "Hello there, I will look at the tests.", "model": "claude-reported-7", "chunks": 4})
    response = await make_model().complete(ask())

    assert response.content == [TextBlock("Hello there, I will look at the tests.")]
    assert response.stop_reason == "end_turn"
    assert response.model == "claude-reported-7"
    assert response.retries == 0
    assert response.request_id is not None and response.request_id.startswith("req_")
    assert response.tool_uses == []
    body = api.requests[0]
    assert body["stream"] is True
    assert body["model"] == "claude-test-1"
    assert body["max_tokens"] == 16_000
    assert body["system"][0]["text"] == "You are a careful engineer."
    assert body["messages"][0] == {
        "role": "user",
        "content": [{"type": "text", "text": "Fix the failing test.", "cache_control": {"type": "ephemeral"}}],
    }
    assert [t["name"] for t in body["tools"]] == ["bash", "read", "edit"]
    assert body["tools"][0]["input_schema"]["properties"]["command"] == {"type": "string"}


async def test_tool_use_turn_with_multi_chunk_json(api: FakeMessagesAPI, make_model: MakeModel) -> None:
    tool_input = {
        "command": "python -m pytest -q tests/test_x.py",
        "timeout": 30,
        "env": {"A": "1", "B": [1, 2]},
    }
    api.add(
        {
            "text": "Running the tests.",
            "tool_calls": [
                {"id": "toolu_01A", "name": "bash", "input": tool_input},
                {"name": "read", "input": {"path": "x.py"}},
            ],
            "chunks": 7,
        }
    )
    response = await make_model().complete(ask())

    assert response.stop_reason == "tool_use"
    assert response.text == "Running the tests."
    assert response.content[1] == ToolUse("toolu_01A", "bash", tool_input)
    second = response.content[2]
    assert isinstance(second, ToolUse) and second.name == "read" and second.input == {"path": "x.py"}
    assert second.id.startswith("toolu_") and second.input_error is None


async def test_thinking_blocks_are_kept_and_sent_back_verbatim(api: FakeMessagesAPI, make_model: MakeModel) -> None:
    # Was: thinking blocks are skipped. The API requires them back unmodified (preserved-thinking).
    api.add({"thinking": "Let me consider the options carefully.", "text": "Answer."}, {"text": "ok"})
    model = make_model()
    response = await model.complete(ask())
    thinking, text = response.content
    assert isinstance(thinking, ThinkingBlock) and thinking.thinking == "Let me consider the options carefully."
    assert thinking.signature and text == TextBlock("Answer.")
    history = [*ask().messages, Message("assistant", list(response.content)), Message("user", [TextBlock("more")])]
    await model.complete(ModelRequest("You are a careful engineer.", TOOLS, history))
    sent = api.requests[1]["messages"][1]["content"]
    assert sent[0] == {"type": "thinking", "thinking": "Let me consider the options carefully.",
                       "signature": thinking.signature}
    assert [c.status for c in api.calls] == [200, 200]


@pytest.mark.parametrize("delta_usage", ["full", "output_only"])
async def test_usage_with_cache_tokens(api: FakeMessagesAPI, make_model: MakeModel, delta_usage: str) -> None:
    usage = {
        "input_tokens": 120,
        "output_tokens": 45,
        "cache_creation_input_tokens": 300,
        "cache_read_input_tokens": 2000,
    }
    api.add({"text": "one", "usage": usage, "delta_usage": delta_usage})
    api.add({"text": "two", "usage": {**usage, "output_tokens": 7, "cache_read_input_tokens": 2300}})
    model = make_model()
    first = await model.complete(ask())
    second = await model.complete(ask())

    # message_start says output_tokens=1; message_delta's cumulative 45 replaces it (not 46).
    assert first.usage == Usage(
        input_tokens=120, output_tokens=45, cache_creation_input_tokens=300, cache_read_input_tokens=2000
    )
    assert (first.usage + second.usage).as_dict() == {
        "input_tokens": 240,
        "output_tokens": 52,
        "cache_creation_input_tokens": 600,
        "cache_read_input_tokens": 4300,
        "cache_creation_1h_input_tokens": 0,
    }


# -- the request: caching and conversion ------------------------------------------------------------
async def test_cache_breakpoints_on_tools_system_and_newest_message(
    api: FakeMessagesAPI, make_model: MakeModel
) -> None:
    model = make_model()
    await model.complete(ask())
    body = api.requests[0]
    assert body["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    assert all("cache_control" not in t for t in body["tools"][:-1])
    assert body["system"] == [
        {"type": "text", "text": "You are a careful engineer.", "cache_control": {"type": "ephemeral"}}
    ]
    assert body["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral"}
    assert len(cache_marked(body)) == 3


async def test_cache_breakpoints_in_a_long_conversation_stay_within_four(
    api: FakeMessagesAPI, make_model: MakeModel
) -> None:
    messages = [Message("user", [TextBlock("start")])]
    for i in range(5):
        messages.append(
            Message("assistant", [TextBlock(f"step {i}"), ToolUse(f"toolu_{i}", "bash", {"command": "ls"})])
        )
        messages.append(Message("user", [ToolResult(f"toolu_{i}", f"output {i}")]))
    await make_model().complete(ModelRequest("sys", TOOLS, messages))

    body = api.requests[0]
    assert api.calls[0].status == 200
    marked = cache_marked(body)
    assert len(marked) == 4
    assert body["messages"][-1]["content"][-1]["tool_use_id"] == "toolu_4"
    assert "cache_control" in body["messages"][-1]["content"][-1]
    # the newest message of the previous call: what that call wrote, this one reads
    assert "cache_control" in body["messages"][-3]["content"][-1]
    assert sum("cache_control" in b for m in body["messages"] for b in m["content"]) == 2


async def test_conversion_of_blocks_to_the_wire(api: FakeMessagesAPI, make_model: MakeModel) -> None:
    messages = [
        Message("user", [TextBlock("go"), TextBlock("")]),
        Message(
            "assistant",
            [
                TextBlock("  "),
                ToolUse("toolu_1", "bash", {"command": "false"}),
                ToolUse("toolu_2", "bash", {}, input_error="could not parse"),
            ],
        ),
        # text before results on purpose: the API wants tool results first
        Message(
            "user",
            [
                TextBlock("and also"),
                ToolResult("toolu_1", "exit 1", is_error=True),
                ToolResult("toolu_2", ""),
            ],
        ),
        Message("assistant", [TextBlock("")]),
        Message("user", [TextBlock("continue")]),
    ]
    response = await make_model().complete(ModelRequest("", [], messages))

    assert response.text == "done"  # the fake accepted the request (it validates like the API)
    body = api.requests[0]
    assert "system" not in body and "tools" not in body
    wire = [[{k: v for k, v in b.items() if k != "cache_control"} for b in m["content"]] for m in body["messages"]]
    assert wire[0] == [{"type": "text", "text": "go"}]
    assert wire[1] == [
        {"type": "tool_use", "id": "toolu_1", "name": "bash", "input": {"command": "false"}},
        {"type": "tool_use", "id": "toolu_2", "name": "bash", "input": {}},
    ]
    assert wire[2] == [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "exit 1", "is_error": True},
        {"type": "tool_result", "tool_use_id": "toolu_2"},
        {"type": "text", "text": "and also"},
    ]
    assert wire[3] == [{"type": "text", "text": "(no content)"}]


async def test_max_tokens_and_extra_params(api: FakeMessagesAPI, make_model: MakeModel) -> None:
    await make_model(max_tokens=4096).complete(
        ask(max_tokens=8000, extra={"temperature": 0.2, "metadata": {"user_id": "u1"}})
    )
    await make_model(max_tokens=4096).complete(ask(max_tokens=1000))
    assert api.requests[0]["max_tokens"] == 4096
    assert api.requests[0]["temperature"] == 0.2
    assert api.requests[0]["metadata"] == {"user_id": "u1"}
    assert api.requests[1]["max_tokens"] == 1000


# -- retries ------------------------------------------------------------------------------------------
async def test_429_then_success_is_retried_by_the_sdk(api: FakeMessagesAPI, make_model: MakeModel) -> None:
    api.add({"error": {"status": 429, "retry_after": 0.01}}, {"text": "after the rate limit"})
    response = await make_model(max_retries=2).complete(ask())
    assert response.text == "after the rate limit"
    assert response.retries == 0  # the SDK's own retries are not ours to count
    assert [c.status for c in api.calls] == [429, 200]
    assert api.calls[1].headers["x-stainless-retry-count"] == "1"


async def test_529_beyond_the_sdk_retries_is_a_retryable_failure(api: FakeMessagesAPI, make_model: MakeModel) -> None:
    api.add(*[{"error": 529}] * 3, {"text": "never reached"})
    with pytest.raises(ModelCallFailed) as info:
        await make_model(max_retries=2).complete(ask())
    assert "529" in str(info.value) and "overloaded_error" in str(info.value) and "Overloaded" in str(info.value)
    assert [c.status for c in api.calls] == [529, 529, 529]
    assert api.remaining == 1


async def test_500_after_retries_is_a_retryable_failure(api: FakeMessagesAPI, make_model: MakeModel) -> None:
    api.add({"error": {"status": 500, "message": "boom"}})
    with pytest.raises(ModelCallFailed, match="500 api_error: boom"):
        await make_model(max_retries=0).complete(ask())


@pytest.mark.parametrize(
    "fault",
    [
        {"cut_after": 5},  # connection dropped in the middle of the body
        {"cut_after": 5, "cut_mode": "eof"},  # body ended cleanly, but no message_stop
        {"stream_error": {"type": "overloaded_error", "after": 4}},  # `error` event mid-stream
    ],
    ids=["dropped", "no-message-stop", "error-event"],
)
async def test_stream_dying_midway_is_resent(
    api: FakeMessagesAPI, make_model: MakeModel, fault: dict[str, Any]
) -> None:
    api.add(
        {"text": "a long answer that dies", "chunks": 6, **fault},
        {"text": "the full answer", "usage": {"output_tokens": 9}},
    )
    response = await make_model().complete(ask())
    assert response.retries == 1
    assert response.text == "the full answer"  # nothing of the dead stream leaks in
    assert response.usage.output_tokens == 9
    assert len(api.calls) == 2
    assert api.requests[0] == api.requests[1]


async def test_stream_that_keeps_dying_fails_after_stream_retries(api: FakeMessagesAPI, make_model: MakeModel) -> None:
    api.add(*[{"text": "x", "cut_after": 3}] * 3, {"text": "not reached"})
    with pytest.raises(ModelCallFailed, match="broke 3 time"):
        await make_model(stream_retries=2).complete(ask())
    assert len(api.calls) == 3


async def test_invalid_request_error_event_in_the_stream_is_fatal(api: FakeMessagesAPI, make_model: MakeModel) -> None:
    api.add(
        {
            "text": "x",
            "stream_error": {"type": "invalid_request_error", "message": "messages.3: bad block", "after": 2},
        }
    )
    with pytest.raises(ModelAPIError, match=r"invalid_request_error: messages\.3: bad block"):
        await make_model().complete(ask())
    assert len(api.calls) == 1


async def test_prompt_too_long_in_the_stream_is_its_own_lane(api: FakeMessagesAPI, make_model: MakeModel) -> None:
    # Was fatal (exit 4); a prompt over the window is now for the loop to shrink, never exit 4.
    api.add({"text": "x", "stream_error": {"type": "invalid_request_error", "after": 2,
                                           "message": "prompt is too long: 210000 tokens > 200000 maximum"}})
    with pytest.raises(PromptTooLong) as info:
        await make_model().complete(ask())
    assert (info.value.tokens, info.value.maximum) == (210000, 200000)


# -- broken output ------------------------------------------------------------------------------------
async def test_broken_tool_json_becomes_an_input_error(api: FakeMessagesAPI, make_model: MakeModel) -> None:
    api.add(
        {
            "tool_calls": [
                {"id": "toolu_bad", "name": "edit", "input_json": '{"path": "a.py", "old_string": "x'},
                {"id": "toolu_list", "name": "bash", "input_json": "[1, 2]"},
                {"id": "toolu_ok", "name": "read", "input": {"path": "b.py"}},
            ],
            "chunks": 4,
        }
    )
    response = await make_model().complete(ask())
    bad, listed, ok = response.tool_uses
    assert bad.id == "toolu_bad" and bad.name == "edit" and bad.input == {}
    assert bad.input_error is not None
    assert bad.input_error.startswith("could not parse the tool input as JSON: ")
    assert "a.py" in bad.input_error  # the model is shown what it sent
    assert listed.input == {} and listed.input_error is not None and "JSON object" in listed.input_error
    assert ok == ToolUse("toolu_ok", "read", {"path": "b.py"})
    assert response.stop_reason == "tool_use"


async def test_tool_call_cut_by_max_tokens_has_an_input_error(api: FakeMessagesAPI, make_model: MakeModel) -> None:
    api.add(
        {
            "tool_calls": [{"name": "edit", "input_json": '{"path": "a.py", "new_str'}],
            "stop_reason": "max_tokens",
        }
    )
    response = await make_model().complete(ask())
    assert response.stop_reason == "max_tokens"
    assert response.tool_uses[0].input_error is not None


# -- fatal errors -----------------------------------------------------------------------------------
async def test_401_is_fatal_and_does_not_show_the_key(api: FakeMessagesAPI, make_model: MakeModel) -> None:
    wrong = "sk-ant-wrong-key-SECRET-42"
    with pytest.raises(ModelAPIError) as info:
        await make_model(api_key=wrong).complete(ask())
    text = str(info.value)
    assert "401" in text and "authentication_error" in text and "invalid x-api-key" in text
    assert wrong not in text and "SECRET" not in text and API_KEY not in text
    assert info.value.exit_code == 4
    assert [c.status for c in api.calls] == [401]  # not retried
    assert wrong in api.calls[0].headers["authorization"]  # the SDK sent it: the fake checked it


async def test_400_from_a_tool_use_without_result_is_fatal(api: FakeMessagesAPI, make_model: MakeModel) -> None:
    messages = [
        Message("user", [TextBlock("go")]),
        Message("assistant", [ToolUse("toolu_1", "bash", {"command": "ls"})]),
        Message("user", [TextBlock("I forgot the result")]),
    ]
    with pytest.raises(ModelAPIError) as info:
        await make_model().complete(ModelRequest("sys", TOOLS, messages))
    assert "400 invalid_request_error" in str(info.value)
    assert "toolu_1" in str(info.value) and "tool_result" in str(info.value)


async def test_404_unknown_path_is_fatal(api: FakeMessagesAPI, make_model: MakeModel) -> None:
    with pytest.raises(ModelAPIError, match="404 not_found_error"):
        await make_model(base_url=api.base_url + "/nowhere").complete(ask())


async def test_connection_refused_is_fatal() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    model = AnthropicModel("claude-test-1", api_key=API_KEY, base_url=f"http://127.0.0.1:{port}", max_retries=1)
    try:
        with pytest.raises(ModelAPIError) as info:
            await model.complete(ask())
    finally:
        await model.aclose()
    assert "cannot reach the Anthropic API" in str(info.value) and str(port) in str(info.value)
    assert API_KEY not in str(info.value)


def test_missing_key_names_the_variable() -> None:
    with pytest.raises(ModelAPIError, match="ANTHROPIC_API_KEY"):
        AnthropicModel("claude-test-1")


async def test_environment_is_honoured_and_explicit_arguments_win(
    api: FakeMessagesAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", api.base_url)
    model = AnthropicModel("claude-test-1")
    assert (await model.complete(ask())).text == "done"
    await model.aclose()

    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")  # discard port: nothing there
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-wrong")
    model = AnthropicModel("claude-test-1", api_key=API_KEY, base_url=api.base_url)
    assert (await model.complete(ask())).text == "done"
    await model.aclose()
    assert [c.status for c in api.calls] == [200, 200]


# -- cancellation -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "turn",
    [{"text": "slow", "stall_after": 3, "stall_s": 20}, {"text": "late", "delay_ms": 20_000}],
    ids=["mid-stream", "before-headers"],
)
async def test_cancellation_closes_the_stream_promptly(
    api: FakeMessagesAPI, make_model: MakeModel, turn: dict[str, Any]
) -> None:
    api.add(turn)
    task = asyncio.create_task(make_model().complete(ask()))
    started = await asyncio.to_thread(
        api.wait_until, lambda a: a.stalls == 1 if "stall_after" in turn else len(a.calls) == 1
    )
    assert started
    await asyncio.sleep(0.1)
    t0 = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - t0 < 1.0
    # the server side sees the connection closed, within a second
    assert await asyncio.to_thread(api.wait_until, lambda a: a.disconnects == 1, 1.0)


async def test_dropped_connection_before_the_response_is_retried(api: FakeMessagesAPI, make_model: MakeModel) -> None:
    api.add({"drop": True}, {"text": "second try"})
    response = await make_model(max_retries=2).complete(ask())
    assert response.text == "second try" and response.retries == 0
    assert len(api.calls) == 2


async def test_connections_dropped_beyond_retries_are_a_retryable_failure(
    api: FakeMessagesAPI, make_model: MakeModel
) -> None:
    api.add(*[{"drop": True}] * 2)
    with pytest.raises(ModelCallFailed, match="connection failed"):
        await make_model(max_retries=1).complete(ask())
    assert len(api.calls) == 2


async def test_slow_server_times_out_as_a_retryable_failure(api: FakeMessagesAPI, make_model: MakeModel) -> None:
    api.add({"text": "too late", "delay_ms": 3000})
    with pytest.raises(ModelCallFailed, match="timed out"):
        await make_model(max_retries=0, timeout_s=0.3).complete(ask())


async def test_stream_stalling_past_the_read_timeout_is_resent(api: FakeMessagesAPI, make_model: MakeModel) -> None:
    api.add({"text": "stalls", "stall_after": 3, "stall_s": 3}, {"text": "fine"})
    response = await make_model(max_retries=0, timeout_s=0.3).complete(ask())
    assert response.text == "fine" and response.retries == 1
