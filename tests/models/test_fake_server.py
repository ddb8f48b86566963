"""The fake Messages API itself: wire format, validation, faults, scripting, process mode."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.fakes.messages_api import FakeMessagesAPI
from tests.models.conftest import API_KEY

ROOT = Path(__file__).resolve().parents[2]
HELLO = {"model": "claude-test-1", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}


def post(
    base_url: str,
    body: Any,
    *,
    key: str | None = API_KEY,
    version: str | None = "2023-06-01",
    path: str = "/v1/messages",
) -> tuple[int, dict[str, str], bytes]:
    url = urlparse(base_url)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["x-api-key"] = key
    if version is not None:
        headers["anthropic-version"] = version
    try:
        conn.request("POST", path, body=json.dumps(body), headers=headers)
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data


def sse(data: bytes) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for chunk in data.decode().split("\n\n"):
        if not chunk.strip():
            continue
        fields = dict(line.split(": ", 1) for line in chunk.splitlines())
        payload = json.loads(fields["data"])
        assert payload["type"] == fields["event"]  # the event name repeats the data's type
        events.append((fields["event"], payload))
    return events


def test_stream_has_the_real_event_order_and_shapes() -> None:
    turn = {
        "text": "Hello world",
        "tool_calls": [{"id": "toolu_1", "name": "bash", "input": {"command": "ls -la"}}],
        "usage": {
            "input_tokens": 50,
            "output_tokens": 20,
            "cache_creation_input_tokens": 7,
            "cache_read_input_tokens": 900,
        },
    }
    with FakeMessagesAPI([turn], api_key=API_KEY) as api:
        status, headers, data = post(api.base_url, {**HELLO, "stream": True})
    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["request-id"].startswith("req_")
    events = sse(data)
    names = [n for n, _ in events]
    text_deltas = names.index("content_block_stop") - names.index("ping") - 1
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert text_deltas == 3
    assert names[-2:] == ["message_delta", "message_stop"]
    assert names.count("content_block_start") == names.count("content_block_stop") == 2

    start = events[0][1]["message"]
    assert start["id"].startswith("msg_") and start["type"] == "message" and start["role"] == "assistant"
    assert start["model"] == "claude-test-1" and start["content"] == [] and start["stop_reason"] is None
    assert {
        k: start["usage"][k] for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    } == {"input_tokens": 50, "cache_creation_input_tokens": 7, "cache_read_input_tokens": 900}
    assert start["usage"]["output_tokens"] == 1

    tool_start = events[names.index("content_block_start", 2)][1]
    assert tool_start == {
        "type": "content_block_start",
        "index": 1,
        "content_block": {"type": "tool_use", "id": "toolu_1", "name": "bash", "input": {}},
    }
    partial = [e["delta"]["partial_json"] for n, e in events if n == "content_block_delta" and e["index"] == 1]
    assert len(partial) > 2 and json.loads("".join(partial)) == {"command": "ls -la"}
    text = "".join(e["delta"]["text"] for n, e in events if n == "content_block_delta" and e["index"] == 0)
    assert text == "Hello world"
    delta = events[-2][1]
    assert delta["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] == 20


def test_broken_input_json_is_sent_verbatim() -> None:
    with FakeMessagesAPI([{"tool_calls": [{"name": "bash", "input_json": '{"command": "l'}]}]) as api:
        _, _, data = post(api.base_url, {**HELLO, "stream": True})
    partial = [e["delta"]["partial_json"] for n, e in sse(data) if n == "content_block_delta"]
    assert "".join(partial) == '{"command": "l'


def test_non_streaming_request_gets_a_message_object() -> None:
    with FakeMessagesAPI(
        [{"text": "hi", "tool_calls": [{"name": "read", "input": {"path": "a"}}], "model": "m2"}]
    ) as api:
        status, headers, data = post(api.base_url, HELLO)
    body = json.loads(data)
    assert status == 200 and headers["content-type"] == "application/json"
    assert body["type"] == "message" and body["model"] == "m2" and body["stop_reason"] == "tool_use"
    assert body["content"][0] == {"type": "text", "text": "hi"}
    assert body["content"][1]["type"] == "tool_use" and body["content"][1]["input"] == {"path": "a"}
    assert set(body["usage"]) >= {
        "input_tokens",
        "output_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
    }


@pytest.mark.parametrize(
    ("key", "message"), [(None, "x-api-key header is required"), ("sk-wrong", "invalid x-api-key")]
)
def test_authentication(key: str | None, message: str) -> None:
    with FakeMessagesAPI([{"text": "secret turn"}], api_key=API_KEY) as api:
        status, headers, data = post(api.base_url, HELLO, key=key)
        assert api.remaining == 1  # a rejected request takes no turn
    body = json.loads(data)
    assert status == 401
    assert body["type"] == "error" and body["error"] == {"type": "authentication_error", "message": message}
    assert body["request_id"].startswith("req_") and headers["request-id"] == body["request_id"]


@pytest.mark.parametrize(
    ("messages", "fragment"),
    [
        (
            [
                {"role": "user", "content": "go"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "bash", "input": {}}]},
                {"role": "user", "content": [{"type": "text", "text": "no result"}]},
            ],
            "`tool_use` ids were found without `tool_result` blocks immediately after: toolu_1",
        ),
        (
            [
                {"role": "user", "content": "go"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "bash", "input": {}}]},
            ],
            "`tool_use` ids were found without `tool_result` blocks",
        ),
        (
            [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "x"}]}],
            "unexpected `tool_use_id` found in `tool_result` blocks: toolu_9",
        ),
        (
            [
                {"role": "user", "content": "go"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "bash", "input": {}}]},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "a"}, {"type": "tool_result", "tool_use_id": "toolu_1"}],
                },
            ],
            "`tool_result` blocks must come before",
        ),
        (
            [{"role": "user", "content": [{"type": "text", "text": " "}]}],
            "text content blocks must contain non-whitespace text",
        ),
        ([{"role": "user", "content": []}], "all messages must have non-empty content"),
        (
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": str(i), "cache_control": {"type": "ephemeral"}} for i in range(5)
                    ],
                }
            ],
            "A maximum of 4 blocks with cache_control may be provided. Found 5.",
        ),
    ],
    ids=[
        "tool_use-without-result",
        "dangling-tool_use",
        "unexpected-result",
        "result-after-text",
        "blank-text",
        "empty-content",
        "five-breakpoints",
    ],
)
def test_invalid_requests_are_rejected_like_the_api(messages: list[Any], fragment: str) -> None:
    with FakeMessagesAPI([{"text": "t"}]) as api:
        status, _, data = post(api.base_url, {**HELLO, "messages": messages})
        assert api.remaining == 1
    body = json.loads(data)
    assert status == 400 and body["error"]["type"] == "invalid_request_error"
    assert fragment in body["error"]["message"]


def test_required_fields_and_headers() -> None:
    with FakeMessagesAPI() as api:
        for field in ("model", "max_tokens", "messages"):
            status, _, data = post(api.base_url, {k: v for k, v in HELLO.items() if k != field})
            assert status == 400 and json.loads(data)["error"]["message"] == f"{field}: Field required"
        status, _, data = post(api.base_url, HELLO, version=None)
        assert status == 400 and "anthropic-version" in json.loads(data)["error"]["message"]
        status, _, data = post(api.base_url, HELLO, path="/v1/complete")
        assert status == 404 and json.loads(data)["error"]["type"] == "not_found_error"
        good = [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "bash", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}]},
        ]
        status, _, _ = post(api.base_url, {**HELLO, "messages": good})
        assert status == 200
        assert len(api.requests) == 6 and api.requests[-1]["messages"] == good


def test_injected_http_errors() -> None:
    script = [
        {"error": {"status": 429, "retry_after": 3}},
        {"error": 529},
        {"error": {"status": 500, "message": "oops"}},
    ]
    with FakeMessagesAPI(script) as api:
        s429, h429, b429 = post(api.base_url, HELLO)
        s529, _, b529 = post(api.base_url, HELLO)
        s500, _, b500 = post(api.base_url, HELLO)
        s200, _, b200 = post(api.base_url, HELLO)
    assert (s429, h429["retry-after"], json.loads(b429)["error"]["type"]) == (429, "3", "rate_limit_error")
    assert (s529, json.loads(b529)["error"]) == (529, {"type": "overloaded_error", "message": "Overloaded"})
    assert (s500, json.loads(b500)["error"]) == (500, {"type": "api_error", "message": "oops"})
    assert s200 == 200 and json.loads(b200)["content"] == [{"type": "text", "text": "done"}]  # script ran out


def test_error_event_mid_stream() -> None:
    with FakeMessagesAPI([{"text": "abcdef", "stream_error": {"type": "overloaded_error", "after": 4}}]) as api:
        status, _, data = post(api.base_url, {**HELLO, "stream": True})
    events = sse(data)
    assert status == 200
    assert [n for n, _ in events] == ["message_start", "content_block_start", "ping", "content_block_delta", "error"]
    assert events[-1][1] == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


def test_cut_stream_drops_the_connection() -> None:
    with (
        FakeMessagesAPI([{"text": "abcdef", "cut_after": 3}]) as api,
        pytest.raises(http.client.IncompleteRead) as info,
    ):
        post(api.base_url, {**HELLO, "stream": True})
    assert [n for n, _ in sse(info.value.partial)] == ["message_start", "content_block_start", "ping"]


def test_hooks_and_latency() -> None:
    seen: list[Any] = []

    def echo(body: dict[str, Any]) -> dict[str, Any]:
        seen.append(body)
        return {"text": f"you said {body['messages'][-1]['content']}"}

    with FakeMessagesAPI([echo, {"text": "scripted", "delay_ms": 150}], hook=lambda body: None, latency_ms=50) as api:
        t0 = time.monotonic()
        first = json.loads(post(api.base_url, HELLO)[2])
        t1 = time.monotonic()
        second = json.loads(post(api.base_url, HELLO)[2])
        t2 = time.monotonic()
        third = json.loads(post(api.base_url, HELLO)[2])
    assert first["content"][0]["text"] == "you said hi" and seen == [HELLO]
    assert second["content"][0]["text"] == "scripted" and third["content"][0]["text"] == "done"
    assert t1 - t0 >= 0.05 and t2 - t1 >= 0.2


def test_concurrent_requests_each_take_one_turn() -> None:
    n = 16
    with FakeMessagesAPI([{"text": f"turn {i}", "delay_ms": 20} for i in range(n)]) as api:
        texts: list[str] = []
        lock = threading.Lock()

        def call() -> None:
            text = json.loads(post(api.base_url, HELLO)[2])["content"][0]["text"]
            with lock:
                texts.append(text)

        threads = [threading.Thread(target=call) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(api.requests) == n
    assert sorted(texts) == sorted(f"turn {i}" for i in range(n))


def test_runs_as_a_process(tmp_path: Path) -> None:
    script = tmp_path / "turns.yaml"
    script.write_text("- text: from the file\n  tool_calls:\n    - {name: bash, input: {command: ls}}\n- error: 529\n")
    log = tmp_path / "requests.jsonl"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fakes.messages_api",
            "--port",
            "0",
            "--script",
            str(script),
            "--api-key",
            API_KEY,
            "--requests-log",
            str(log),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        first = json.loads(post(url, HELLO)[2])
        status, _, _ = post(url, HELLO)
        assert first["content"][0]["text"] == "from the file" and first["content"][1]["input"] == {"command": "ls"}
        assert status == 529
        assert post(url, HELLO, key="nope")[0] == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()
    assert code == 0
    assert [json.loads(line)["model"] for line in log.read_text().splitlines()] == ["claude-test-1"] * 3
