"""A fake Amazon Bedrock: InvokeModel (AWS event-stream) and the bedrock-mantle Messages API (SSE),
with every request's SigV4 signature verified against the credentials it was given.

    with FakeBedrock(script, access_key="AKIA...", secret_key="...", session_token="...") as aws:
        env["ANTHROPIC_BEDROCK_BASE_URL"] = aws.base_url            # InvokeModel (bedrock-runtime)
        env["ANTHROPIC_BEDROCK_MANTLE_BASE_URL"] = aws.mantle_url   # Messages API (bedrock-mantle)

Routes, as the SDK's AsyncAnthropicBedrock and AsyncAnthropicBedrockMantle send them:
- POST /model/{id}/invoke-with-response-stream: the body is a Messages request without `model`
  or `stream`, `anthropic_version` in the body; the answer is `application/vnd.amazon.eventstream`:
  binary frames (prelude, headers, payload, CRC32s), each `chunk` event holding one Messages
  stream event as base64 JSON, the last one carrying `amazon-bedrock-invocationMetrics`; a
  `stream_error` turn becomes an `exception` frame mid-stream.
- POST /model/{id}/invoke: the same request, the whole message as JSON.
- POST /anthropic/v1/messages: the Messages API as is (model in the body, SSE), signed for the
  `bedrock-mantle` service.
An unsigned or wrongly signed request gets 403 as AWS answers it; an `error: STATUS` turn gets
AWS's error shape (`x-amzn-ErrorType`, `{"message": ...}`).

It is also the STS of web identity (`AWS_ENDPOINT_URL_STS=aws.base_url`): POST / with
`Action=AssumeRoleWithWebIdentity` and the OIDC token in `web_identity_token` answers with the
credentials the Bedrock routes accept (the chain an EKS pod or `AWS_WEB_IDENTITY_TOKEN_FILE` uses).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct
from typing import Any

from tests.fakes.platform_wire import (
    BaseHandler,
    Call,
    PlatformFake,
    RequestInvalid,
    Turn,
    build_message,
    new_id,
    sse_events,
    sse_frame,
    validate_body,
)

RUNTIME_VERSION = "bedrock-2023-05-31"
"""What InvokeModel takes for the models on it (the SDK's newer default is refused there)."""
AWS_ERRORS = {400: "ValidationException", 403: "AccessDeniedException", 404: "ResourceNotFoundException",
              429: "ThrottlingException", 500: "InternalServerException", 503: "ServiceUnavailableException",
              529: "ServiceUnavailableException"}
AUTH = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[A-Z0-9]{16,128})/(?P<date>\d{8})/(?P<region>[a-z0-9-]+)/"
    r"(?P<service>[a-z-]+)/aws4_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<sig>[0-9a-f]{64})$"
)


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message: prelude (total, headers length), its CRC32, string headers,
    the payload, and the CRC32 of everything before it."""
    head = b"".join(
        bytes([len(k.encode())]) + k.encode() + b"\x07" + struct.pack(">H", len(v.encode())) + v.encode()
        for k, v in headers.items()
    )
    prelude = struct.pack(">II", 16 + len(head) + len(payload), len(head))
    message = prelude + struct.pack(">I", binascii.crc32(prelude)) + head + payload
    return message + struct.pack(">I", binascii.crc32(message))


def chunk_frame(event: dict[str, Any]) -> bytes:
    payload = {"bytes": base64.b64encode(json.dumps(event).encode()).decode(), "p": "abcdefghij"}
    return frame({":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"},
                 json.dumps(payload).encode())


def exception_frame(kind: str, message: str) -> bytes:
    return frame({":exception-type": kind, ":content-type": "application/json", ":message-type": "exception"},
                 json.dumps({"message": message}).encode())


class FakeBedrock(PlatformFake):
    def __init__(self, script: Any = (), *, access_key: str, secret_key: str, session_token: str | None = None,
                 region: str = "us-east-1", bearer_token: str | None = None) -> None:
        self.access_key, self.secret_key, self.session_token = access_key, secret_key, session_token
        self.region, self.bearer_token = region, bearer_token
        self.web_identity_token = "eyJ.web-identity." + new_id("")
        self.handler = _Handler
        super().__init__(script)

    @property
    def mantle_url(self) -> str:
        return f"{self.base_url}/anthropic"


class _Handler(BaseHandler):
    owner: FakeBedrock

    def do_POST(self) -> None:
        call = self.read_call()
        path = self.path.split("?")[0]
        if path == "/" and b"Action=AssumeRoleWithWebIdentity" in call.raw:
            self._sts(call)
            return
        mantle = path == "/anthropic/v1/messages"
        runtime = re.fullmatch(r"/model/(?P<id>[^/]+)/(?P<op>invoke|invoke-with-response-stream)", path)
        try:
            if not (mantle or runtime):
                raise RequestInvalid(404, f"no such route: {path}")
            self._authorize(call, "bedrock-mantle" if mantle else "bedrock")
            if mantle:
                _validate_mantle(call)
            else:
                validate_body(call.body, version=RUNTIME_VERSION)
                if "stream" in call.body:
                    raise RequestInvalid(400, "stream: Extra inputs are not permitted")
        except RequestInvalid as exc:
            call.status = exc.status
            self._error(exc.status, exc.message)
            return
        turn = self.scripted_turn(call)
        if turn is None:
            return
        body = dict(call.body)
        model_id = body.get("model") or (runtime.group("id") if runtime else "")
        message, blocks = build_message({**body, "model": model_id}, turn)
        events = sse_events(message, blocks, turn)
        if mantle:
            self._sse(events, turn)
        elif runtime is not None and runtime.group("op") == "invoke":
            message["content"] = [b["final"] for b in blocks]
            self.send_body(200, json.dumps(message).encode(), "application/json",
                           {"x-amzn-requestid": new_id("")})
        else:
            self._event_stream(events, turn)

    # -- auth ------------------------------------------------------------------------------------
    def _authorize(self, call: Call, service: str) -> None:
        auth = call.headers.get("authorization", "")
        if self.owner.bearer_token is not None and auth == f"Bearer {self.owner.bearer_token}":
            return
        m = AUTH.match(auth)
        if not m:
            raise RequestInvalid(403, "Missing Authentication Token" if not auth else "Authorization header "
                                 "is not a SigV4 signature")
        amz_date = call.headers.get("x-amz-date", "")
        signed = m["signed"].split(";")
        problems = [
            ("the access key", m["key"] == self.owner.access_key),
            ("the region", m["region"] == self.owner.region),
            ("the service", m["service"] == service),
            ("X-Amz-Date", re.fullmatch(r"\d{8}T\d{6}Z", amz_date) is not None and amz_date[:8] == m["date"]),
            ("the signed headers", "host" in signed and "x-amz-date" in signed),
            ("the session token", self.owner.session_token is None or (
                call.headers.get("x-amz-security-token") == self.owner.session_token
                and "x-amz-security-token" in signed)),
            ("the signature", m["sig"] == self._signature(call, signed, amz_date, service)),
        ]
        bad = [what for what, ok in problems if not ok]
        if bad:
            raise RequestInvalid(403, "The request signature we calculated does not match the signature you "
                                 f"provided ({', '.join(bad)})")

    def _signature(self, call: Call, signed: list[str], amz_date: str, service: str) -> str:
        """The SigV4 signature of this request, computed with botocore from the known secret."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        creds = Credentials(self.owner.access_key, self.owner.secret_key, self.owner.session_token)
        headers = {name: call.headers.get(name, "") for name in signed}
        request = AWSRequest(method=call.method, url=f"http://{call.headers.get('host', '')}{call.path}",
                             headers=headers, data=call.raw)
        request.context["timestamp"] = amz_date
        signer = SigV4Auth(creds, service, self.owner.region)
        canonical = signer.canonical_request(request)
        return str(signer.signature(signer.string_to_sign(request, canonical), request))

    def _sts(self, call: Call) -> None:
        import urllib.parse

        form = dict(urllib.parse.parse_qsl(call.raw.decode()))
        if form.get("WebIdentityToken") != self.owner.web_identity_token:
            call.status = 400
            self.send_body(400, b"<ErrorResponse><Error><Code>InvalidIdentityToken</Code>"
                                b"<Message>bad token</Message></Error></ErrorResponse>", "text/xml")
            return
        call.status = 200
        o = self.owner
        xml = (f'<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
               f"<AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>{o.access_key}</AccessKeyId>"
               f"<SecretAccessKey>{o.secret_key}</SecretAccessKey><SessionToken>{o.session_token}</SessionToken>"
               f"<Expiration>2099-01-01T00:00:00Z</Expiration></Credentials>"
               f"<AssumedRoleUser><Arn>{form.get('RoleArn', '')}/s</Arn><AssumedRoleId>AROAFAKE:s</AssumedRoleId>"
               f"</AssumedRoleUser></AssumeRoleWithWebIdentityResult>"
               f"<ResponseMetadata><RequestId>{new_id('')}</RequestId></ResponseMetadata>"
               f"</AssumeRoleWithWebIdentityResponse>")
        self.send_body(200, xml.encode(), "text/xml")

    # -- answers ---------------------------------------------------------------------------------
    def _error(self, status: int, message: str) -> None:
        kind = AWS_ERRORS.get(status, "InternalServerException")
        self.send_body(status, json.dumps({"message": message}).encode(), "application/json",
                       {"x-amzn-errortype": f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/",
                        "x-amzn-requestid": new_id("")})

    def _event_stream(self, events: list[tuple[str, dict[str, Any]]], turn: Turn) -> None:
        self.start_chunked("application/vnd.amazon.eventstream",
                           {"x-amzn-requestid": new_id(""), "x-amzn-bedrock-content-type": "application/json"})
        err = turn.get("stream_error")
        usage = events[0][1]["message"]["usage"]
        for i, (_, data) in enumerate(events):
            if err is not None and i >= int(err.get("after", 1)):
                self.chunk(exception_frame(err.get("type", "throttlingException"), err.get("message", "slow down")))
                break
            if data["type"] == "message_stop":
                final = events[-2][1]["usage"]
                data = {**data, "amazon-bedrock-invocationMetrics": {
                    "inputTokenCount": usage["input_tokens"], "outputTokenCount": final["output_tokens"],
                    "invocationLatency": 812, "firstByteLatency": 301,
                    "cacheReadInputTokenCount": usage["cache_read_input_tokens"],
                    "cacheWriteInputTokenCount": usage["cache_creation_input_tokens"]}}
            self.chunk(chunk_frame(data))
        self.chunk(b"")

    def _sse(self, events: list[tuple[str, dict[str, Any]]], turn: Turn) -> None:
        self.start_chunked("text/event-stream; charset=utf-8", {"request-id": new_id("req_")})
        for name, data in events:
            self.chunk(sse_frame(name, data))
        self.chunk(b"")


def _validate_mantle(call: Call) -> None:
    body = call.body
    if not call.headers.get("anthropic-version"):
        raise RequestInvalid(400, "anthropic-version: header is required")
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        raise RequestInvalid(400, "model: Field required")
    validate_body({k: v for k, v in body.items() if k != "model"} | {"anthropic_version": "header"}, version=None)
