"""The real SDK clients against fakes that speak each platform's wire format."""

from __future__ import annotations

import binascii
import json
import struct
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.errors import ModelAPIError
from runner.models.base import Message, ModelRequest, TextBlock, ToolSpec, ToolUse
from runner.models.platform_model import PlatformModel, make_api_model
from tests.fakes.bedrock_api import RUNTIME_VERSION, FakeBedrock, chunk_frame, frame
from tests.fakes.messages_api import FakeMessagesAPI
from tests.fakes.vertex_api import FakeVertex

AKID, SECRET, SESSION = "ASIAFAKEFAKEFAKE1234", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYPLANTED01", "IQoJb3JpZ2luPLANTED-session"
TOOL = ToolSpec("bash", "run a command", {"type": "object", "properties": {"command": {"type": "string"}}})
TURN = {"text": "Looking.", "tool_calls": [{"name": "bash", "input": {"command": "ls"}}],
        "usage": {"input_tokens": 120, "output_tokens": 30, "cache_creation_input_tokens": 40,
                  "cache_read_input_tokens": 900}}


def ask(text: str = "fix it") -> ModelRequest:
    return ModelRequest(system="You fix bugs.", tools=[TOOL], messages=[Message("user", [TextBlock(text)])])


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBedrock]:
    with FakeBedrock(access_key=AKID, secret_key=SECRET, session_token=SESSION) as fake:
        for k, v in {"AWS_ACCESS_KEY_ID": AKID, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_SESSION_TOKEN": SESSION,
                     "AWS_REGION": "us-east-1", "ANTHROPIC_BEDROCK_BASE_URL": fake.base_url,
                     "ANTHROPIC_BEDROCK_MANTLE_BASE_URL": fake.mantle_url}.items():
            monkeypatch.setenv(k, v)
        yield fake


@pytest.fixture
def gcp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeVertex]:
    with FakeVertex(project="proj-1", region="us-east5") as fake:
        adc = fake.workload_identity_file(tmp_path / "wif.json", tmp_path / "oidc-token")
        for k, v in {"GOOGLE_APPLICATION_CREDENTIALS": str(adc), "ANTHROPIC_VERTEX_BASE_URL": fake.vertex_url,
                     "ANTHROPIC_VERTEX_PROJECT_ID": "proj-1", "CLOUD_ML_REGION": "us-east5"}.items():
            monkeypatch.setenv(k, v)
        yield fake


@pytest.fixture
async def models() -> AsyncIterator[Callable[..., PlatformModel]]:
    made: list[PlatformModel] = []

    def make(name: str, provider: Any, **kwargs: Any) -> PlatformModel:
        model = PlatformModel(name, provider=provider, max_retries=0, **kwargs)
        model.stream_retry_delay_s = 0.01
        made.append(model)
        return model

    yield make
    for m in made:
        await m.aclose()


# -- the AWS event-stream framing itself ------------------------------------------------------------
def test_frames_decode_with_botocore_and_their_crcs_are_checked() -> None:
    from botocore.eventstream import ChecksumMismatch, EventStreamBuffer

    data = chunk_frame({"type": "ping"}) + frame({":message-type": "event", ":event-type": "x"}, b"{}")
    buf = EventStreamBuffer()
    buf.add_data(data)
    messages = list(buf)
    assert [m.headers[":event-type"] for m in messages] == ["chunk", "x"]
    assert json.loads(messages[0].payload)["bytes"]
    total, _headers_len = struct.unpack(">II", data[:8])
    assert struct.unpack(">I", data[8:12])[0] == binascii.crc32(data[:8])
    broken = bytearray(data[:total])
    broken[-5] ^= 1  # one bit of the payload
    buf = EventStreamBuffer()
    buf.add_data(bytes(broken))
    with pytest.raises(ChecksumMismatch):
        list(buf)


# -- Bedrock -------------------------------------------------------------------------------------------
async def test_bedrock_invoke_with_response_stream_signed_and_framed(aws: FakeBedrock, models: Any) -> None:
    aws._state.script.append(TURN)
    model = models("claude-sonnet-4-5", "bedrock")
    response = await model.complete(ask())
    [call] = aws.calls
    assert call.path == "/model/global.anthropic.claude-sonnet-4-5-20250929-v1:0/invoke-with-response-stream"
    assert call.headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={AKID}/")
    assert "/us-east-1/bedrock/aws4_request" in call.headers["authorization"]
    assert call.headers["x-amz-security-token"] == SESSION
    assert call.body["anthropic_version"] == RUNTIME_VERSION and "model" not in call.body
    assert response.text == "Looking." and isinstance(response.content[1], ToolUse)
    assert response.content[1].input == {"command": "ls"}
    assert response.usage.input_tokens == 120 and response.usage.cache_read_input_tokens == 900
    assert response.model == "claude-sonnet-4-5"  # global profile: no regional premium


async def test_bedrock_non_streaming_invoke_through_the_sdk(aws: FakeBedrock, models: Any) -> None:
    aws._state.script.append({"text": "plain"})
    model = models("claude-sonnet-4-5", "bedrock")
    params = model.build_params(ask())
    message = await model._client.messages.create(**params)
    assert message.content[0].text == "plain"
    assert aws.calls[0].path.endswith("/invoke")


async def test_a_wrong_aws_secret_is_refused_by_the_signature_check(aws: FakeBedrock, models: Any,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-at-all-0123456789abcdefgh")
    model = models("claude-sonnet-4-5", "bedrock")
    with pytest.raises(ModelAPIError, match="403") as err:
        await model.complete(ask())
    assert "signature" in str(err.value)
    assert aws.calls[0].status == 403


async def test_bedrock_with_web_identity_assumes_the_role_at_sts(aws: FakeBedrock, models: Any, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    (tmp_path / "oidc").write_text(aws.web_identity_token)
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(tmp_path / "oidc"))
    monkeypatch.setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/astra")
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", aws.base_url)
    aws._state.script.append({"text": "assumed"})
    minted: list[str] = []
    model = models("claude-sonnet-4-5", "bedrock", on_secret=minted.extend)
    response = await model.complete(ask())
    sts, call = aws.calls
    assert b"AssumeRoleWithWebIdentity" in sts.raw and sts.status == 200
    assert response.text == "assumed" and call.headers["x-amz-security-token"] == SESSION
    assert SESSION in minted  # never in the environment: known to the redactor from its first use


async def test_a_bedrock_exception_frame_mid_stream_is_retried(aws: FakeBedrock, models: Any) -> None:
    aws._state.script += [{"text": "abc", "stream_error": {"type": "throttlingException", "after": 3}},
                          {"text": "second try"}]
    model = models("claude-sonnet-4-5", "bedrock")
    response = await model.complete(ask())
    assert response.text == "second try" and response.retries == 1


async def test_bedrock_mantle_messages_api_signed_for_its_service(aws: FakeBedrock, models: Any) -> None:
    aws._state.script.append(TURN)
    model = models("claude-sonnet-5-5", "bedrock")
    response = await model.complete(ask())
    [call] = aws.calls
    assert call.path == "/anthropic/v1/messages" and call.body["model"] == "anthropic.claude-sonnet-5-5"
    assert "/us-east-1/bedrock-mantle/aws4_request" in call.headers["authorization"]
    assert response.model == "claude-sonnet-5-5 (bedrock, regional)" and response.usage.output_tokens == 30


async def test_bedrock_drops_what_invokemodel_lacks(aws: FakeBedrock, models: Any) -> None:
    aws._state.script.append({"text": "ok"})
    model = models("claude-sonnet-4-5", "bedrock")
    request = ask()
    request.extra["context_management"] = {"edits": [{"type": "compact_20260112"}]}
    await model.complete(request)
    assert "context_management" not in aws.calls[0].body
    assert model.fallbacks == ["compaction (compact_20260112)"]


# -- Vertex --------------------------------------------------------------------------------------------
async def test_vertex_stream_raw_predict_with_a_workload_identity_token(gcp: FakeVertex, models: Any) -> None:
    gcp._state.script.append(TURN)
    minted: list[str] = []
    model = models("claude-sonnet-4-5", "vertex", on_secret=minted.extend)
    response = await model.complete(ask())
    sts, call = gcp.calls
    assert sts.path == "/sts/v1/token" and gcp.subject_token in sts.raw.decode()
    assert call.path == ("/v1/projects/proj-1/locations/us-east5/publishers/anthropic/models/"
                         "claude-sonnet-4-5@20250929:streamRawPredict")
    assert call.headers["authorization"] == f"Bearer {gcp.issued[0]}"
    assert call.body["stream"] is True and "model" not in call.body
    assert gcp.issued[0] in minted  # the minted token is known to the redactor from its first use
    assert response.model == "claude-sonnet-4-5 (vertex, regional)"
    assert response.usage.cache_creation_input_tokens == 40


async def test_vertex_with_a_service_account_key(gcp: FakeVertex, models: Any, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(gcp.service_account_file(tmp_path / "sa.json")))
    monkeypatch.delenv("ANTHROPIC_VERTEX_PROJECT_ID")  # the key file's project is used
    gcp._state.script.append({"text": "as a service account"})
    model = models("claude-sonnet-5-5", "vertex")
    response = await model.complete(ask())
    token, call = gcp.calls
    assert b"jwt-bearer" in token.raw and token.status == 200  # a JWT signed with the key, verified
    assert response.text == "as a service account" and "/projects/proj-1/" in call.path


async def test_a_refused_token_exchange_is_a_clear_credential_error(gcp: FakeVertex, models: Any) -> None:
    gcp.subject_token = "a-token-the-fake-no-longer-accepts"
    model = models("claude-sonnet-5-5", "vertex")
    with pytest.raises(ModelAPIError, match="vertex credentials could not be used"):
        await model.complete(ask())
    assert [c.path for c in gcp.calls] == ["/sts/v1/token"]


async def test_vertex_raw_predict_without_streaming(gcp: FakeVertex, models: Any) -> None:
    gcp._state.script.append({"text": "plain"})
    model = models("claude-sonnet-5-5", "vertex")
    message = await model._client.messages.create(**model.build_params(ask()))
    assert message.content[0].text == "plain"
    assert gcp.calls[-1].path.endswith("/models/claude-sonnet-5-5:rawPredict")


async def test_vertex_with_a_token_it_did_not_issue_is_401(gcp: FakeVertex, models: Any,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    gcp.issued = _Forgetful()  # the fake accepts only tokens it issued: make it forget them
    model = models("claude-sonnet-4-5", "vertex")
    with pytest.raises(ModelAPIError, match="401"):
        await model.complete(ask())


class _Forgetful(list[str]):
    def __contains__(self, item: object) -> bool:
        return False


# -- gateways: bearer token and custom headers on the anthropic provider ---------------------------------
async def test_auth_token_and_custom_headers_reach_a_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeMessagesAPI([{"text": "via gateway"}], api_key="gw-bearer-token-PLANTED") as api:
        monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", "gw-bearer-token-PLANTED")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", api.base_url)
        monkeypatch.setenv("ANTHROPIC_CUSTOM_HEADERS", "X-Gateway-Team: astra\nX-Gateway-Key: hdr-PLANTED-1")
        model = make_api_model("claude-sonnet-5-5", "anthropic")
        try:
            response = await model.complete(ask())
        finally:
            await model.aclose()
        [call] = api.calls
    assert response.text == "via gateway"
    assert call.headers["authorization"] == "Bearer gw-bearer-token-PLANTED" and "x-api-key" not in call.headers
    assert call.headers["x-gateway-team"] == "astra" and call.headers["x-gateway-key"] == "hdr-PLANTED-1"

