"""The Messages API as documented today: blocks kept verbatim, options per model, the errors and
stop reasons of the docs, compaction and context editing — the real SDK against the fake."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic
import pytest

from runner.errors import ConfigError, ModelAPIError
from runner.models.anthropic import AnthropicModel
from runner.models.base import (
    CompactionBlock,
    ContextRequest,
    Message,
    ModelCallFailed,
    ModelRequest,
    OpaqueBlock,
    RedactedThinkingBlock,
    TextBlock,
    ThinkingBlock,
    ToolResult,
    ToolSpec,
    ToolUse,
    Usage,
)
from runner.models.catalog import model_info, resolve_options
from runner.models.pricing import load_prices
from tests.fakes.messages_api import FakeMessagesAPI
from tests.models.conftest import API_KEY

MakeModel = Callable[..., AnthropicModel]
TOOLS = [ToolSpec("bash", "Run a command", {"type": "object", "properties": {"command": {"type": "string"}}})]


def ask(text: str = "go") -> list[Message]:
    return [Message("user", [TextBlock(text)])]


def client(api: FakeMessagesAPI) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=API_KEY, base_url=api.base_url, max_retries=0)


# -- 1. every block verbatim --------------------------------------------------------------------------
async def test_a_tool_turn_goes_back_with_its_thinking_redacted_and_unknown_blocks(
    api: FakeMessagesAPI, make_model: MakeModel
) -> None:
    api.add({"thinking": "", "redacted_thinking": True, "opaque": {"type": "x_fake_future", "n": 1, "deep": [1, {}]},
             "text": "Listing.", "tool_calls": [{"id": "toolu_1", "name": "bash", "input": {"command": "ls"}}]},
            {"text": "done"})
    model = make_model(model="claude-sonnet-5-5")
    first = await model.complete(ModelRequest("sys", TOOLS, ask()))
    kinds = [type(b) for b in first.content]
    assert kinds == [ThinkingBlock, RedactedThinkingBlock, OpaqueBlock, TextBlock, ToolUse]
    thinking = first.content[0]
    assert isinstance(thinking, ThinkingBlock) and thinking.thinking == "" and thinking.signature  # empty text kept
    history = [*ask(), Message("assistant", list(first.content)), Message("user", [ToolResult("toolu_1", "a b")])]
    second = await model.complete(ModelRequest("sys", TOOLS, history))
    assert second.text == "done" and [c.status for c in api.calls] == [200, 200]
    sent = [{k: v for k, v in b.items() if k != "cache_control"} for b in api.requests[1]["messages"][1]["content"]]
    assert sent[2] == {"type": "x_fake_future", "n": 1, "deep": [1, {}]}
    assert sent[0] == {"type": "thinking", "thinking": "", "signature": thinking.signature}


@pytest.mark.parametrize("tamper", ["text", "signature", "earlier_message", "drop_block"])
def test_the_fake_checks_every_thinking_block_like_the_api(api: FakeMessagesAPI, tamper: str) -> None:
    api.add({"thinking": "first", "tool_calls": [{"id": "toolu_a", "name": "bash", "input": {}}]},
            {"thinking": "second", "tool_calls": [{"id": "toolu_b", "name": "bash", "input": {}}]}, {"text": "ok"})
    c = client(api)
    tools: Any = [{"name": "bash", "description": "d", "input_schema": {"type": "object"}}]
    msgs: list[Any] = [{"role": "user", "content": "go"}]
    for tid in ("toolu_a", "toolu_b"):
        r = c.messages.create(model="claude-sonnet-5-5", max_tokens=50, tools=tools, messages=msgs)
        msgs += [{"role": "assistant", "content": [b.to_dict() for b in r.content]},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tid, "content": "x"}]}]
    if tamper == "text":
        msgs[3]["content"][0]["thinking"] = "second, edited"
    elif tamper == "signature":
        msgs[3]["content"][0]["signature"] = msgs[1]["content"][0]["signature"]
    elif tamper == "earlier_message":
        msgs[2]["content"][0]["content"] = "x (redacted)"  # what a redacting client would do
    else:
        msgs[1]["content"].pop(0)  # an earlier thinking block left out changes the later one's prefix
    with pytest.raises(anthropic.BadRequestError) as info:
        c.messages.create(model="claude-sonnet-5-5", max_tokens=50, tools=tools, messages=msgs)
    assert "Invalid `signature` in `thinking` block" in str(info.value)
    if tamper in ("earlier_message", "drop_block"):
        # preserved-thinking/fix-bound-to-a-different-conversation: the API's own words
        assert "The block is bound to a different conversation." in str(info.value)


def test_the_fake_rejects_what_sonnet_5_5_rejects(api: FakeMessagesAPI) -> None:
    c = client(api)
    base: dict[str, Any] = {"model": "claude-sonnet-5-5", "max_tokens": 50, "messages": [{"role": "user", "content": "x"}]}
    tools: Any = [{"name": "bash", "description": "d", "input_schema": {"type": "object"}}]
    cases: list[tuple[dict[str, Any], str]] = [
        ({"extra_body": {"temperature": 0.2}}, "temperature"),  # the SDK itself no longer offers it
        ({"thinking": {"type": "disabled"}}, "between_tools"),
        ({"thinking": {"type": "between_tools"}, "output_config": {"effort": "max"}}, "between_tools"),
        ({"tools": tools, "tool_choice": {"type": "any"}}, "forced tool use"),
    ]
    for extra, fragment in cases:
        with pytest.raises(anthropic.BadRequestError, match=fragment):
            c.messages.create(**base, **extra)
    ok = c.messages.create(**base, thinking={"type": "between_tools"}, output_config={"effort": "low"})  # type: ignore[arg-type]
    assert ok.stop_reason == "end_turn"


def test_count_tokens_and_the_window(api: FakeMessagesAPI) -> None:
    c = client(api)
    big = "word " * 220_000  # ~275k tokens by the fake's count: over haiku-4-5's 200k window
    counted = c.messages.count_tokens(model="claude-haiku-4-5", messages=[{"role": "user", "content": big}])
    assert counted.input_tokens > 200_000
    with pytest.raises(anthropic.BadRequestError, match=r"prompt is too long: \d+ tokens > 200000 maximum"):
        c.messages.create(model="claude-haiku-4-5", max_tokens=50, messages=[{"role": "user", "content": big}])


# -- 2. model options -----------------------------------------------------------------------------------
def test_options_are_checked_per_model_with_file_and_line() -> None:
    def where(field: str) -> str:
        return f"task.yaml:7: {field}"

    with pytest.raises(ConfigError, match=r"task.yaml:7: model_options.thinking: .*between_tools"):
        resolve_options(model_info("claude-sonnet-5-5"), thinking="off", where=where)
    with pytest.raises(ConfigError, match=r"model_options.thinking: .*only at effort low, medium, high"):
        resolve_options(model_info("claude-sonnet-5-5"), thinking="between_tools", effort="xhigh", where=where)
    with pytest.raises(ConfigError, match=r"model_options.thinking: claude-opus-5-5 .*always on"):
        resolve_options(model_info("claude-opus-5-5"), thinking="off", where=where)
    with pytest.raises(ConfigError, match=r"model_options.max_output_tokens: 100000 is more than claude-haiku-4-5"):
        resolve_options(model_info("claude-haiku-4-5"), max_output_tokens=100_000, where=where)
    with pytest.raises(ConfigError, match=r"model_options.effort: claude-haiku-4-5 does not accept effort"):
        resolve_options(model_info("claude-haiku-4-5"), effort="high", where=where)
    sonnet = resolve_options(model_info("claude-sonnet-5-5"), thinking="between_tools", effort="medium")
    assert sonnet.params() == {"thinking": {"type": "between_tools"}, "output_config": {"effort": "medium"}}
    assert resolve_options(model_info("claude-sonnet-5-5")).max_tokens == 64_000  # not 16k
    assert resolve_options(model_info("claude-haiku-4-5-20251001")).max_tokens == 32_000
    assert resolve_options(model_info("claude-sonnet-5")).params() == {}  # unset: the model's defaults


def test_a_task_file_with_an_option_the_model_refuses_is_exit_2(tmp_path: Path) -> None:
    from runner.run import model_setup
    from runner.task import load_task

    (tmp_path / "task.yaml").write_text(
        "name: t\nprompt: p\nmodel: claude-sonnet-5-5\nmodel_options:\n  effort: high\n  thinking: 'off'\n"
    )
    with pytest.raises(ConfigError) as info:
        model_setup(load_task(tmp_path / "task.yaml"))
    assert f"{tmp_path / 'task.yaml'}:6: model_options.thinking" in str(info.value)


async def test_requests_carry_the_options_and_nothing_the_model_rejects(
    api: FakeMessagesAPI, make_model: MakeModel
) -> None:
    info = model_info("claude-sonnet-5-5")
    model = make_model(model="claude-sonnet-5-5", info=info,
                       options=resolve_options(info, thinking="between_tools", effort="low"))
    await model.complete(ModelRequest("sys", TOOLS, ask()))
    body = api.requests[0]
    assert body["thinking"] == {"type": "between_tools"} and body["output_config"] == {"effort": "low"}
    assert body["max_tokens"] == 64_000
    assert not {"temperature", "top_p", "top_k", "tool_choice"} & set(body)
    assert api.calls[0].status == 200


# -- 3. errors and stop reasons -----------------------------------------------------------------------
async def test_a_spend_limit_429_is_not_retried(api: FakeMessagesAPI, make_model: MakeModel) -> None:
    api.add({"error": {"status": 429, "spend_limit": True}}, {"text": "never"})
    with pytest.raises(ModelAPIError, match="spend limit"):
        await make_model(max_retries=3).complete(ModelRequest("", [], ask()))
    assert len(api.calls) == 1  # neither the SDK nor we tried again


async def test_x_should_retry_is_honoured(api: FakeMessagesAPI, make_model: MakeModel) -> None:
    api.add({"error": {"status": 529, "headers": {"x-should-retry": "false"}}})
    with pytest.raises(ModelAPIError, match="not to retry"):
        await make_model(max_retries=3).complete(ModelRequest("", [], ask()))
    assert len(api.calls) == 1
    api.add({"error": {"status": 400, "headers": {"x-should-retry": "true"}, "message": "try again"}}, {"text": "ok"})
    assert (await make_model(max_retries=1).complete(ModelRequest("", [], ask()))).text == "ok"


async def test_retry_after_is_honoured_and_capped(
    api: FakeMessagesAPI, make_model: MakeModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    import runner.models.anthropic as module

    monkeypatch.setattr(module, "MAX_RETRY_WAIT_S", 0.3)
    api.add({"error": {"status": 429, "retry_after": 3600}}, {"text": "after"})
    started = time.monotonic()
    assert (await make_model(max_retries=1).complete(ModelRequest("", [], ask()))).text == "after"
    assert 0.25 <= time.monotonic() - started < 3
    api.add({"error": {"status": 429, "retry_after": 7}})
    with pytest.raises(ModelCallFailed) as info:
        await make_model(max_retries=0).complete(ModelRequest("", [], ask()))
    assert info.value.retry_after_s == 7


async def test_stop_details_iterations_edits_and_1h_cache_are_read(api: FakeMessagesAPI, make_model: MakeModel) -> None:
    api.add({"text": "I can't help with that.", "stop_reason": "refusal",
             "stop_details": {"type": "refusal", "category": "cyber", "explanation": "not allowed"}})
    refused = await make_model().complete(ModelRequest("", [], ask()))
    assert refused.stop_reason == "refusal" and refused.stop_details is not None
    assert refused.stop_details["category"] == "cyber"
    api.add({"text": "ok", "usage": {"input_tokens": 10, "output_tokens": 5, "cache_creation_input_tokens": 300,
                                     "ephemeral_1h_input_tokens": 100}})
    written = await make_model().complete(ModelRequest("", [], ask()))
    assert written.usage.cache_creation_1h_input_tokens == 100


async def test_threshold_compaction_round_trip_and_billing(api: FakeMessagesAPI, make_model: MakeModel) -> None:
    model = make_model(model="claude-sonnet-5-5")
    big = "y" * 240_000  # ~60k tokens: over a 50k trigger
    api.add({"text": "summarized and answered", "summary": "S: the user sent a lot of y."}, {"text": "next"})
    request = ModelRequest("", [], [Message("user", [TextBlock(big)])], context=ContextRequest(compact_at_tokens=50_000))
    first = await model.complete(request)
    body = api.requests[0]
    assert body["context_management"] == {"edits": [{"type": "compact_20260112",
                                                     "trigger": {"type": "input_tokens", "value": 50_000}}]}
    assert api.calls[0].headers["anthropic-beta"] == "compact-2026-01-12"
    block = first.content[0]
    assert isinstance(block, CompactionBlock) and block.content == "S: the user sent a lot of y."
    assert first.compacted and len(first.iterations) == 1
    assert first.billed_usage.prompt_tokens > first.usage.prompt_tokens  # the summary step is billed
    history = [*request.messages, Message("assistant", list(first.content)), Message("user", [TextBlock("more")])]
    await model.complete(ModelRequest("", [], history, context=request.context))
    assert api.requests[1]["messages"][1]["content"][0]["type"] == "compaction"
    assert api.calls[1].status == 200


async def test_context_editing_is_requested_with_its_beta(api: FakeMessagesAPI, make_model: MakeModel) -> None:
    model = make_model(model="claude-haiku-4-5")
    await model.complete(ModelRequest("", [], ask(), context=ContextRequest(
        clear_at_tokens=150_000, clear_keep=3, clear_at_least=100_000)))
    edit = api.requests[0]["context_management"]["edits"][0]
    assert edit == {"type": "clear_tool_uses_20250919", "trigger": {"type": "input_tokens", "value": 150_000},
                    "keep": {"type": "tool_uses", "value": 3},
                    "clear_at_least": {"type": "input_tokens", "value": 100_000}}
    assert api.calls[0].headers["anthropic-beta"] == "context-management-2025-06-27"


# -- 5. cost ---------------------------------------------------------------------------------------------
def test_prices_per_call_with_bands_and_1h_writes() -> None:
    prices = load_prices()
    haiku = prices.price_for("claude-haiku-5-5")
    assert haiku is not None and haiku.long_prompt is not None
    short, long = Usage(90_000, 1_000), Usage(90_000, 1_000, cache_read_input_tokens=20_000)
    assert prices.turn_cost("claude-haiku-5-5", short) == pytest.approx((90_000 * 0.1 + 1_000 * 0.5) / 1e6)
    assert prices.turn_cost("claude-haiku-5-5", long) == pytest.approx(
        (90_000 * 0.5 + 1_000 * 2.5 + 20_000 * 0.05) / 1e6)  # every token at the long-prompt price
    sonnet = prices.price_for("claude-sonnet-5-5")
    assert sonnet is not None
    one_hour = Usage(0, 0, cache_creation_input_tokens=1_000_000, cache_creation_1h_input_tokens=400_000)
    assert sonnet.cost(one_hour) == pytest.approx(0.6 * 2.5 + 0.4 * 4.0)
    assert prices.price_for("claude-opus-4-1").retired  # type: ignore[union-attr]


async def test_client_clearing_on_a_model_with_preserved_thinking_asks_to_drop_failing_blocks(
    api: FakeMessagesAPI, make_model: MakeModel
) -> None:
    """claude-fable-5-2 has neither API compaction nor context editing (models.json), so the client
    clears; the thinking blocks after a cleared result then fail the prefix check, unless the
    request says `prefix_mismatch_behavior: drop_block` (preserved-thinking)."""
    api.add({"tool_calls": [{"id": "toolu_1", "name": "bash", "input": {}}]},
            {"tool_calls": [{"id": "toolu_2", "name": "bash", "input": {}}]})
    model = make_model(model="claude-fable-5-2")
    history = ask()
    for tid in ("toolu_1", "toolu_2"):
        r = await model.complete(ModelRequest("s", TOOLS, history))
        history = [*history, Message("assistant", list(r.content)), Message("user", [ToolResult(tid, "big output")])]
    cleared = [*history[:2], Message("user", [ToolResult("toolu_1", "[cleared]")]), *history[3:]]
    with pytest.raises(ModelAPIError, match="bound to a different conversation"):
        await model.complete(ModelRequest("s", TOOLS, cleared))
    api.add({"text": "ok"})
    ok = await model.complete(ModelRequest("s", TOOLS, cleared, context=ContextRequest(drop_mismatched_thinking=True)))
    assert ok.text == "ok"
    assert api.requests[-1]["thinking"]["block_binding"] == {"prefix_mismatch_behavior": "drop_block"}
    assert "thinking-binding-controls-2026-08-01" in api.calls[-1].headers["anthropic-beta"]
