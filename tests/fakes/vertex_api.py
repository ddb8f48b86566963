"""A fake Google Vertex AI for Claude, with the Google token endpoints its credentials refresh at.

    with FakeVertex(script, project="proj-1", region="us-east5") as gcp:
        adc = gcp.authorized_user_file(tmp_path / "adc.json")       # or gcp.workload_identity_file(...)
        env.update(GOOGLE_APPLICATION_CREDENTIALS=str(adc), ANTHROPIC_VERTEX_BASE_URL=gcp.vertex_url,
                   ANTHROPIC_VERTEX_PROJECT_ID="proj-1", CLOUD_ML_REGION="us-east5")

The real google-auth code path runs: the SDK loads the application-default credentials, refreshes
them at the fake's token endpoint (OAuth2 refresh for `authorized_user`; an STS token exchange of
an OIDC token file for `external_account`, the workload identity federation file that
google-github-actions/auth writes), and sends `Authorization: Bearer <access token>`.

Routes:
- POST /v1/projects/{project}/locations/{region}/publishers/anthropic/models/{model}:streamRawPredict
  (SSE, the Messages API's events) and :rawPredict (JSON); the body has no `model` and carries
  `anthropic_version`; only a token this fake issued is accepted (401 otherwise).
- POST /token (OAuth2 refresh_token grant), POST /sts/v1/token (token exchange).
"""

from __future__ import annotations

import json
import re
import secrets
import urllib.parse
from pathlib import Path
from typing import Any

from tests.fakes.platform_wire import (
    BaseHandler,
    Call,
    PlatformFake,
    RequestInvalid,
    build_message,
    new_id,
    sse_events,
    sse_frame,
    validate_body,
)

ROUTE = re.compile(r"/v1/projects/(?P<project>[^/]+)/locations/(?P<region>[^/]+)/publishers/anthropic/models/"
                   r"(?P<model>[^/:]+):(?P<op>streamRawPredict|rawPredict)")
OIDC_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"


class FakeVertex(PlatformFake):
    def __init__(self, script: Any = (), *, project: str, region: str) -> None:
        self.project, self.region = project, region
        self.refresh_token = "1//refresh-" + secrets.token_urlsafe(24)
        self.client_secret = "GOCSPX-" + secrets.token_urlsafe(18)
        self.subject_token = "eyJoidc." + secrets.token_urlsafe(32)
        self.issued: list[str] = []
        """Every access token the token endpoints handed out."""
        self.handler = _Handler
        super().__init__(script)

    @property
    def vertex_url(self) -> str:
        return f"{self.base_url}/v1"

    def authorized_user_file(self, path: Path) -> Path:
        """An `authorized_user` ADC file (what `gcloud auth application-default login` writes)."""
        path.write_text(json.dumps({
            "type": "authorized_user", "client_id": "764086051850-fake.apps.googleusercontent.com",
            "client_secret": self.client_secret, "refresh_token": self.refresh_token,
            "token_uri": f"{self.base_url}/token", "quota_project_id": self.project,
        }))
        return path

    def service_account_file(self, path: Path) -> Path:
        """A service account key file (a fresh RSA key) whose token_uri is this fake: google-auth
        signs a JWT with it and trades it for an access token (the JWT-bearer grant)."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.service_account_public_key = key.public_key()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        path.write_text(json.dumps({
            "type": "service_account", "project_id": self.project, "private_key_id": secrets.token_hex(20),
            "private_key": pem, "client_email": f"astra@{self.project}.iam.gserviceaccount.com",
            "client_id": "1234567890", "token_uri": f"{self.base_url}/token",
        }))
        return path

    def workload_identity_file(self, path: Path, token_file: Path) -> Path:
        """An `external_account` file for workload identity federation: an OIDC token in a file,
        exchanged at STS (as google-github-actions/auth sets it up, without impersonation)."""
        token_file.write_text(self.subject_token)
        path.write_text(json.dumps({
            "type": "external_account",
            "audience": "//iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/gh/providers/gh",
            "subject_token_type": OIDC_TOKEN_TYPE, "token_url": f"{self.base_url}/sts/v1/token",
            "credential_source": {"file": str(token_file)},
        }))
        return path


class _Handler(BaseHandler):
    owner: FakeVertex

    def do_POST(self) -> None:
        call = self.read_call()
        path = self.path.split("?")[0]
        if path in ("/token", "/sts/v1/token"):
            self._token(call, sts=path != "/token")
            return
        route = ROUTE.fullmatch(urllib.parse.unquote(path))
        try:
            if route is None:
                raise RequestInvalid(404, f"no such route: {path}")
            if call.headers.get("authorization", "").removeprefix("Bearer ") not in self.owner.issued:
                raise RequestInvalid(401, "Request had invalid authentication credentials.")
            if (route["project"], route["region"]) != (self.owner.project, self.owner.region):
                raise RequestInvalid(404, f"Project or location not found: {route['project']}/{route['region']}")
            validate_body(call.body, version=None)
            if (route["op"] == "streamRawPredict") != bool(call.body.get("stream")):
                raise RequestInvalid(400, f"{route['op']} with stream={call.body.get('stream')!r}")
        except RequestInvalid as exc:
            call.status = exc.status
            self._error(exc.status, exc.message)
            return
        turn = self.scripted_turn(call)
        if turn is None:
            return
        message, blocks = build_message({**call.body, "model": route["model"]}, turn)
        if route["op"] == "rawPredict":
            message["content"] = [b["final"] for b in blocks]
            self.send_body(200, json.dumps(message).encode(), "application/json")
            return
        self.start_chunked("text/event-stream; charset=utf-8")
        err = turn.get("stream_error")
        for i, (name, data) in enumerate(sse_events(message, blocks, turn)):
            if err is not None and i >= int(err.get("after", 1)):
                payload = {"type": "error", "error": {"type": err.get("type", "overloaded_error"), "message": "x"}}
                self.chunk(sse_frame("error", payload))
                break
            self.chunk(sse_frame(name, data))
        self.chunk(b"")

    def _token(self, call: Call, *, sts: bool) -> None:
        form = dict(urllib.parse.parse_qsl(call.raw.decode()))
        if not form and call.raw:  # STS may be sent as JSON
            form = json.loads(call.raw)
        if sts:
            ok = (form.get("grant_type") == "urn:ietf:params:oauth:grant-type:token-exchange"
                  and form.get("subject_token") == self.owner.subject_token)
        elif form.get("grant_type") == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            ok = self._jwt_signed_by_the_service_account(form.get("assertion", ""))
        else:
            ok = form.get("grant_type") == "refresh_token" and form.get("refresh_token") == self.owner.refresh_token \
                and form.get("client_secret") == self.owner.client_secret
        if not ok:
            call.status = 400
            self.send_body(400, b'{"error": "invalid_grant"}', "application/json")
            return
        token = "ya29.fake-" + secrets.token_urlsafe(32)
        self.owner.issued.append(token)
        call.status = 200
        answer: dict[str, Any] = {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}
        if sts:
            answer["issued_token_type"] = "urn:ietf:params:oauth:token-type:access_token"
        self.send_body(200, json.dumps(answer).encode(), "application/json")

    def _jwt_signed_by_the_service_account(self, assertion: str) -> bool:
        import base64

        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        key = getattr(self.owner, "service_account_public_key", None)
        parts = assertion.split(".")
        if key is None or len(parts) != 3:
            return False
        signature = base64.urlsafe_b64decode(parts[2] + "=" * (-len(parts[2]) % 4))
        try:
            key.verify(signature, f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return False
        return True

    def _error(self, status: int, message: str) -> None:
        codes = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 529: "UNAVAILABLE"}
        payload = [{"error": {"code": status, "message": message, "status": codes.get(status, "UNKNOWN")}}]
        self.send_body(status, json.dumps(payload).encode(), "application/json", {"x-request-id": new_id("")})
