"""The rules of the Messages API as documented today, for the fake (tests/fakes/messages_api.py).

Kept apart from runner/models/models.json on purpose: the fake is the API's stand-in, so a wrong
row in the runner's data file shows up as a 400 here instead of agreeing with itself.

Each rule names the page it comes from (platform.claude.com/docs/en/...). Where a page states
the exact error text, the message below is that text; where it only says "a 400", the wording is
ours and marked `(wording ours)`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
from dataclasses import dataclass, field
from typing import Any


class Invalid(Exception):
    def __init__(self, status: int, message: str, etype: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.etype = etype


@dataclass(frozen=True)
class Rules:
    window: int = 200_000
    thinks_by_default: bool = False
    thinking_types: tuple[str, ...] = ("enabled", "disabled")
    between_tools_efforts: tuple[str, ...] | None = None
    sampling: bool = True
    forced_tool_choice: bool = True
    preserved_thinking: bool = False
    compaction: bool = False
    context_editing: bool = False
    efforts: tuple[str, ...] = ()


_EFFORTS = ("low", "medium", "high", "xhigh", "max")
# models/<model>/overview, whats-new-sonnet-5-5, build-with-claude/preserved-thinking,
# build-with-claude/compaction-threshold and build-with-claude/context-editing (supportedModels).
MODELS: dict[str, Rules] = {
    "claude-sonnet-5-5": Rules(1_000_000, True, ("adaptive", "between_tools"), ("low", "medium", "high"),
                               sampling=False, forced_tool_choice=False, preserved_thinking=True,
                               compaction=True, context_editing=True, efforts=_EFFORTS),
    "claude-opus-5-5": Rules(1_000_000, True, ("adaptive",), None, sampling=False, forced_tool_choice=False,
                             preserved_thinking=True, compaction=True, context_editing=True, efforts=_EFFORTS),
    "claude-haiku-5-5": Rules(1_000_000, True, ("adaptive", "disabled"), None, sampling=False,
                              preserved_thinking=True, compaction=True, context_editing=True, efforts=_EFFORTS),
    "claude-fable-5-2": Rules(1_000_000, True, ("adaptive",), None, sampling=False, forced_tool_choice=False,
                              preserved_thinking=True, efforts=_EFFORTS),
    "claude-fable-5-1": Rules(1_000_000, True, ("adaptive",), None, sampling=False, forced_tool_choice=False,
                              preserved_thinking=True, compaction=True, context_editing=True, efforts=_EFFORTS),
    "claude-sonnet-5": Rules(1_000_000, True, ("adaptive", "disabled"), None, sampling=False,
                             compaction=True, context_editing=True, efforts=_EFFORTS),
    "claude-opus-5": Rules(1_000_000, True, ("adaptive", "disabled"), None, sampling=False,
                           compaction=True, context_editing=True, efforts=_EFFORTS),
    "claude-haiku-4-5": Rules(200_000, context_editing=True),
    "claude-sonnet-4-5": Rules(200_000, context_editing=True),
    "claude-opus-4-1": Rules(200_000),
    "claude-sonnet-4-0": Rules(200_000),
}
DEFAULT_RULES = Rules()
"""Any other model id (tests use made-up ones): a 200k window and no thinking by default."""

COMPACTION_BETA = "compact-2026-01-12"
CONTEXT_EDITING_BETA = "context-management-2025-06-27"
MIN_COMPACTION_TRIGGER = 50_000
DEFAULT_COMPACTION_TRIGGER = 150_000
DEFAULT_CLEAR_TRIGGER = 100_000
DEFAULT_CLEAR_KEEP = 3
CLEARED = "[cleared to save context]"
CHARS_PER_TOKEN = 4
KNOWN_BLOCKS = frozenset({"text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking",
                          "compaction", "search_result"})


def rules_for(model: str) -> Rules:
    return MODELS.get(model, DEFAULT_RULES)


# -- sizes ---------------------------------------------------------------------------------------------
def tokens(value: Any) -> int:
    """The fake's token count: characters of the JSON over 4 (no real tokenizer needed)."""
    return max(1, math.ceil(len(json.dumps(value, sort_keys=True)) / CHARS_PER_TOKEN))


def _strip_cache(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_cache(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [_strip_cache(v) for v in value]
    return value


# -- thinking signatures (build-with-claude/preserved-thinking) ------------------------------------
@dataclass
class Signer:
    """Signs a thinking block over its model and its prefix (system, tools, every message and
    block before it), like the API's prefix check; verifies it when it comes back."""

    secret: bytes = field(default_factory=lambda: b"fake-messages-api-secret")

    def digests(self, body: dict[str, Any], extra: list[dict[str, Any]] | None = None) -> dict[tuple[int, int], str]:
        """The prefix digest before every block of every message, in one pass: (i, j) -> digest of
        system, tools, messages[:i] and the first j blocks of message i. With `extra`, also the
        digest before a new assistant message's blocks (at (len(messages), len(extra)))."""
        h = hashlib.sha256()
        h.update(json.dumps([_strip_cache(body.get("system")), _strip_cache(body.get("tools"))],
                            sort_keys=True).encode())
        out: dict[tuple[int, int], str] = {}
        messages = list(body.get("messages", []))
        if extra is not None:
            messages.append({"role": "assistant", "content": extra})
        for i, m in enumerate(messages):
            h.update(b"\x00" + str(m.get("role")).encode())
            blocks = _blocks(m.get("content"))
            for j, b in enumerate(blocks):
                out[(i, j)] = h.copy().hexdigest()
                h.update(b"\x01" + json.dumps(_strip_cache(b), sort_keys=True).encode())
            out[(i, len(blocks))] = h.copy().hexdigest()
        return out

    def sign(self, model: str, digest: str, thinking: str) -> str:
        mac = hmac.new(self.secret, f"{model}\n{digest}\n{thinking}".encode(), hashlib.sha256).digest()
        return base64.b64encode(b"sig1" + mac).decode()

    def check(self, model: str, digest: str, thinking: str, signature: str) -> bool:
        return hmac.compare_digest(self.sign(model, digest, thinking), signature)


def _blocks(content: Any) -> list[dict[str, Any]]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content or [])


BINDING_BETA = "thinking-binding-controls-2026-08-01"


def drops_mismatched(body: dict[str, Any], betas: set[str]) -> bool:
    """preserved-thinking: `thinking.block_binding.prefix_mismatch_behavior: "drop_block"` (with
    its beta) drops blocks that fail the prefix check instead of refusing the request."""
    binding = (body.get("thinking") or {}).get("block_binding") or {}
    if binding and BINDING_BETA not in betas:
        raise Invalid(400, "thinking.block_binding: Extra inputs are not permitted")
    return binding.get("prefix_mismatch_behavior") == "drop_block"


def check_thinking(body: dict[str, Any], signer: Signer, rules: Rules, issued: dict[str, str],
                   drop: bool = False) -> None:
    """Every thinking block that comes back must be one we sent, unmodified, after the same prefix.

    `issued` maps signature -> the model that produced it. A block from another model is
    dropped without an error (preserved-thinking: "If the current model can't read a block, the
    API drops it from that request without an error")."""
    model = str(body.get("model"))
    digests: dict[tuple[int, int], str] | None = None
    for i, m in enumerate(body.get("messages", [])):
        if m.get("role") != "assistant":
            continue
        for j, b in enumerate(_blocks(m.get("content"))):
            if b.get("type") == "redacted_thinking":
                if b.get("data") not in issued:
                    raise Invalid(400, f"messages.{i}.content.{j}: Invalid `data` in `redacted_thinking` block.")
                continue
            if b.get("type") != "thinking":
                continue
            signature = str(b.get("signature") or "")
            producer = issued.get(signature)
            if producer is None:
                # extended-thinking: a modified or made-up block fails its signature check (wording ours)
                raise Invalid(400, f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block.")
            if producer != model:
                continue
            digests = digests if digests is not None else signer.digests(body)
            digest = digests[(i, j)]
            if not signer.check(model, digest, str(b.get("thinking") or ""), signature):
                if drop:
                    continue
                if rules.preserved_thinking:
                    # preserved-thinking/fix-bound-to-a-different-conversation: the exact message.
                    raise Invalid(
                        400,
                        f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block. The block is bound to a "
                        "different conversation. Remove the block, or set "
                        '`thinking.block_binding.prefix_mismatch_behavior` to "drop_block".',
                    )
                raise Invalid(400, f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block.")


def thinking_on(body: dict[str, Any], rules: Rules) -> bool:
    thinking = body.get("thinking")
    if thinking is None:
        return rules.thinks_by_default
    return isinstance(thinking, dict) and thinking.get("type") != "disabled"


def check_tool_turn_starts_with_thinking(body: dict[str, Any], rules: Rules) -> None:
    """extended-thinking#preserving-thinking-blocks: with thinking on, the assistant turn that
    made the lastmost tool calls must start with its thinking block (the API's own message)."""
    if not thinking_on(body, rules):
        return
    messages = body.get("messages", [])
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if m.get("role") != "assistant":
            continue
        blocks = [b for b in _blocks(m.get("content")) if b.get("type") != "compaction"]
        if not any(b.get("type") == "tool_use" for b in blocks):
            return
        first = blocks[0].get("type") if blocks else None
        if first not in ("thinking", "redacted_thinking"):
            raise Invalid(
                400,
                f"messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `{first}`. "
                "When `thinking` is enabled, a final `assistant` message must start with a thinking block "
                "(preceeding the lastmost set of `tool_use` and `tool_result` blocks). We recommend you include "
                "thinking blocks from previous turns. To avoid this requirement, disable `thinking`. Please consult "
                "our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking",
            )
        return


# -- request parameters per model ----------------------------------------------------------------------
def check_parameters(body: dict[str, Any], rules: Rules, betas: set[str]) -> None:
    model = body.get("model")
    if not rules.sampling:
        for name in ("temperature", "top_p", "top_k"):
            if name in body:
                # models/sonnet-5/overview: non-default sampling parameters are a 400 (wording ours)
                raise Invalid(400, f"{name}: `{name}` is not supported for model {model}; remove it")
    thinking = body.get("thinking")
    effort = (body.get("output_config") or {}).get("effort")
    if effort is not None and rules.efforts and effort not in rules.efforts:
        raise Invalid(400, f"output_config.effort: Input should be {', '.join(repr(e) for e in rules.efforts)}")
    if effort is not None and not rules.efforts:
        raise Invalid(400, f"output_config.effort: effort is not supported for model {model} (wording ours)")
    if isinstance(thinking, dict):
        ttype = thinking.get("type")
        if ttype not in rules.thinking_types:
            hint = ' Use `thinking: {"type": "between_tools"}` to turn off up-front thinking.' \
                if "between_tools" in rules.thinking_types else ""
            # whats-new-sonnet-5-5: "disabled" is a 400 whose message points to between_tools (wording ours)
            raise Invalid(400, f"thinking.type: `{ttype}` is not supported for model {model}.{hint}")
        if ttype == "between_tools" and rules.between_tools_efforts is not None:
            level = effort or "high"
            if level not in rules.between_tools_efforts:
                # whats-new-sonnet-5-5: between_tools at xhigh or max is a 400 (wording ours)
                raise Invalid(400, f"thinking.type: `between_tools` is not supported with effort `{level}`; "
                                   "use adaptive thinking for xhigh or max")
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") in ("any", "tool"):
        if not rules.forced_tool_choice:
            # whats-new-sonnet-5-5: forced tool use returns an error (wording ours)
            raise Invalid(400, f"tool_choice: forced tool use (`{choice.get('type')}`) is not supported for model {model}")
        if thinking_on(body, rules):
            raise Invalid(400, "Thinking may not be enabled when tool_choice forces tool use.")
    management = body.get("context_management")
    if management is not None:
        for k, edit in enumerate((management or {}).get("edits") or []):
            etype = edit.get("type")
            if etype == "compact_20260112":
                if COMPACTION_BETA not in betas:
                    raise Invalid(400, "context_management: Extra inputs are not permitted")
                if not rules.compaction:
                    raise Invalid(400, f"context_management.edits.{k}: compaction is not supported for model {model}")
                value = ((edit.get("trigger") or {}).get("value")) or DEFAULT_COMPACTION_TRIGGER
                if value < MIN_COMPACTION_TRIGGER:
                    raise Invalid(400, f"context_management.edits.{k}.trigger.value: must be at least "
                                       f"{MIN_COMPACTION_TRIGGER}")
            elif etype == "clear_tool_uses_20250919":
                if CONTEXT_EDITING_BETA not in betas:
                    raise Invalid(400, "context_management: Extra inputs are not permitted")
                if not rules.context_editing:
                    raise Invalid(400, f"context_management.edits.{k}: context editing is not supported for model "
                                       f"{model}")
            else:
                raise Invalid(400, f"context_management.edits.{k}.type: unknown edit type {etype!r}")


def check_block_types(body: dict[str, Any]) -> None:
    for i, m in enumerate(body.get("messages", [])):
        for j, b in enumerate(_blocks(m.get("content"))):
            kind = b.get("type")
            if kind not in KNOWN_BLOCKS and not str(kind).startswith("x_fake_"):
                raise Invalid(400, f"messages.{i}.content.{j}: Input tag '{kind}' found using 'type' does not match "
                                   "any of the expected tags")


# -- the prompt the model sees: compaction and context editing -----------------------------------------
@dataclass
class Prompt:
    """What the model reads for one request after the API's own context management."""

    units: list[tuple[Any, bool]]
    """(content, has cache_control) in render order: tools, system, message blocks."""
    total: int
    sent_total: int
    """The prompt as the client sent it, before compaction dropped or editing cleared anything."""
    cleared_uses: int = 0
    cleared_tokens: int = 0


def effective_prompt(body: dict[str, Any]) -> Prompt:
    edits = {e.get("type"): e for e in ((body.get("context_management") or {}).get("edits") or [])}
    messages = [dict(m, content=_blocks(m.get("content"))) for m in body.get("messages", [])]
    sent_total = _total(body, messages)
    # compaction-threshold: "The API automatically drops all content blocks before the compaction block".
    for i in range(len(messages) - 1, -1, -1):
        blocks = messages[i]["content"]
        at = next((k for k in range(len(blocks) - 1, -1, -1) if blocks[k].get("type") == "compaction"), None)
        if at is not None:
            messages = [dict(messages[i], content=blocks[at:]), *messages[i + 1:]]
            break
    cleared_uses = cleared_tokens = 0
    clear = edits.get("clear_tool_uses_20250919")
    if clear is not None:
        messages, cleared_uses, cleared_tokens = _clear_tool_results(body, messages, clear)
    units: list[tuple[Any, bool]] = []
    for t in body.get("tools") or []:
        units.append((_strip_cache(t), bool(t.get("cache_control"))))
    system = body.get("system")
    for s in (system if isinstance(system, list) else ([{"type": "text", "text": system}] if system else [])):
        units.append((_strip_cache(s), bool(s.get("cache_control"))))
    for m in messages:
        units.append(({"role": m["role"]}, False))
        for b in m["content"]:
            units.append((_strip_cache(b), bool(b.get("cache_control"))))
    return Prompt(units, sum(tokens(u) for u, _ in units), sent_total, cleared_uses, cleared_tokens)


def _total(body: dict[str, Any], messages: list[dict[str, Any]]) -> int:
    return tokens({"s": body.get("system"), "t": body.get("tools"), "m": _strip_cache(messages)})


def _clear_tool_results(
    body: dict[str, Any], messages: list[dict[str, Any]], edit: dict[str, Any]
) -> tuple[list[dict[str, Any]], int, int]:
    """context-editing, clear_tool_uses_20250919: once the prompt reaches the trigger, the oldest
    tool results are replaced by a placeholder, the newest `keep` tool uses never.

    The fake is stateless, like the API: what it clears depends only on the request. It clears
    in multiples of `clear_at_least` (the oldest results whose tokens add up to the next multiple
    above the excess), so the cleared boundary moves in steps and the prompt's prefix stays the
    same between steps. (How the API rounds is not documented; this is the fake's model of it.)"""
    total = _total(body, messages)
    trigger = int(((edit.get("trigger") or {}).get("value")) or DEFAULT_CLEAR_TRIGGER)
    keep = int(((edit.get("keep") or {}).get("value")) or DEFAULT_CLEAR_KEEP)
    at_least = int(((edit.get("clear_at_least") or {}).get("value")) or 0)
    if total < trigger:
        return messages, 0, 0
    excess = total - trigger
    target = max(excess, 1) if at_least <= 0 else at_least * max(1, math.ceil(excess / at_least))
    places = [(i, j) for i, m in enumerate(messages) for j, b in enumerate(m["content"]) if b.get("type") == "tool_result"]
    clearable = places[:-keep] if keep else places
    out = [dict(m, content=list(m["content"])) for m in messages]
    cleared = uses = 0
    for i, j in clearable:
        if cleared >= target:
            break
        block = out[i]["content"][j]
        before = tokens(block)
        out[i]["content"][j] = {k: v for k, v in block.items() if k not in ("content",)} | {"content": CLEARED}
        cleared += before - tokens(out[i]["content"][j])
        uses += 1
    return out, uses, cleared


# -- prompt caching (build-with-claude/prompt-caching) ----------------------------------------------
LOOKBACK = 20
"""prompt-caching: a breakpoint looks back at most 20 blocks for an earlier cache entry."""


@dataclass
class Cache:
    """Prefix cache per model: a breakpoint writes the prefix up to it; a later request reads the
    longest written prefix it shares, found from its breakpoints within the 20-block lookback."""

    entries: set[str] = field(default_factory=set)

    def usage(self, model: str, prompt: Prompt) -> tuple[int, int, int]:
        """(input_tokens, cache_creation_input_tokens, cache_read_input_tokens) for `prompt`."""
        digests: list[str] = []
        sizes: list[int] = []
        h = hashlib.sha256(model.encode())
        for content, _ in prompt.units:
            h.update(json.dumps(content, sort_keys=True).encode())
            digests.append(h.copy().hexdigest())
            sizes.append(tokens(content))
        marks = [k for k, (_, marked) in enumerate(prompt.units) if marked]
        read_upto = -1
        for mark in marks:
            for k in range(mark, max(-1, mark - LOOKBACK), -1):
                if digests[k] in self.entries:
                    read_upto = max(read_upto, k)
                    break
        last_mark = marks[-1] if marks else -1
        read = sum(sizes[: read_upto + 1])
        write = sum(sizes[read_upto + 1 : last_mark + 1]) if last_mark > read_upto else 0
        for mark in marks:
            self.entries.add(digests[mark])
        return max(0, prompt.total - read - write), write, read
