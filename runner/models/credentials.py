"""Credentials of each provider (SPEC §7): what is missing, what to redact, what never enters the sandbox.

- `check_credentials(provider)`: what is missing, in words, without calling any API (preflight
  turns it into exit 2 before anything runs). Each platform's own standard chain is asked:
  the Anthropic variables; boto3's chain for AWS (environment, profile, web identity / OIDC,
  container and instance roles); google-auth's application-default credentials for Google
  (a credentials file, gcloud's ADC, workload identity federation, the metadata server).
- `credential_values()`: every secret value the environment holds for a provider, for redaction;
  `request_secrets(headers)`: the ones a request carries (runner.models.provider_clients hands
  them to the redactor as they leave, so values minted at run time are redacted too).
- `is_provider_secret_var(name)`: the host variables that must never be taken into the sandbox
  or an MCP server.

Light on purpose (boto3 and google-auth are imported only when asked about their provider):
preflight and every run import it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping

from runner.models.providers import Provider, aws_region

OnSecret = Callable[[Iterable[str]], object]

SECRET_VAR_PREFIXES = ("ANTHROPIC_", "AWS_", "GOOGLE_", "CLOUDSDK_", "GCLOUD_")
"""Host variables of these families never enter the sandbox or an MCP server (preflight refuses
`${NAME}` of them): they configure or hold a model provider's credentials."""

SECRET_ENV = (
    "ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN", "AWS_BEARER_TOKEN_BEDROCK", "ANTHROPIC_AWS_API_KEY", "CLOUDSDK_AUTH_ACCESS_TOKEN",
    "GOOGLE_OAUTH_ACCESS_TOKEN",
)
"""Variables whose whole value is a secret (redacted from every output)."""
_ADC_SECRET_FIELDS = ("private_key", "private_key_id", "client_secret", "refresh_token", "access_token")
_REQUEST_SECRET_HEADERS = ("authorization", "x-api-key", "x-amz-security-token", "x-goog-api-key")


def is_provider_secret_var(name: str) -> bool:
    return name.startswith(SECRET_VAR_PREFIXES)


# -- what is missing ----------------------------------------------------------------------------------
def check_credentials(provider: Provider) -> list[str]:
    """Problems that would stop the first model call on `provider`; empty when it can be tried."""
    if provider == "bedrock":
        return _check_aws()
    if provider == "vertex":
        return _check_google()
    if _env("ANTHROPIC_API_KEY") or _env("ANTHROPIC_AUTH_TOKEN"):
        return []
    return ["no credential for the Claude API: set ANTHROPIC_API_KEY, or ANTHROPIC_AUTH_TOKEN (a bearer "
            "token, e.g. for a gateway or a local server at ANTHROPIC_BASE_URL); or choose provider bedrock "
            "or vertex"]


def _check_aws() -> list[str]:
    found = []
    if not aws_region():
        found.append("no AWS region for bedrock: set AWS_REGION (or AWS_DEFAULT_REGION, or a region in the AWS "
                     "profile)")
    if _env("AWS_BEARER_TOKEN_BEDROCK"):  # a Bedrock API key: no AWS credentials needed
        return found
    try:
        import boto3
        import botocore.exceptions
    except ImportError:
        return [*found, "bedrock needs boto3: pip install 'anthropic[bedrock]'"]
    try:
        # The chain the SDK signs with; it resolves lazily, so web identity costs no STS call here.
        credentials = boto3.Session(profile_name=_env("AWS_PROFILE")).get_credentials()
    except botocore.exceptions.BotoCoreError as exc:
        return [*found, f"AWS credentials for bedrock cannot be loaded: {exc}"]
    if credentials is None:
        found.append("no AWS credentials for bedrock: set AWS_ACCESS_KEY_ID and "
                     "AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), AWS_PROFILE, or AWS_ROLE_ARN with "
                     "AWS_WEB_IDENTITY_TOKEN_FILE (GitHub OIDC: aws-actions/configure-aws-credentials), "
                     "or AWS_BEARER_TOKEN_BEDROCK")
    return found


def _check_google() -> list[str]:
    found = []
    if not _env("CLOUD_ML_REGION"):
        found.append("no Vertex AI region: set CLOUD_ML_REGION (e.g. global or us-east5)")
    try:
        import google.auth
        import google.auth.exceptions
    except ImportError:
        return [*found, "vertex needs google-auth: pip install 'anthropic[vertex]'"]
    try:
        # Without scopes: no token is minted and no project lookup is made (no network), except
        # the metadata-server probe that finds a GCE / GKE / Cloud Run identity.
        _, project = google.auth.default()
    except google.auth.exceptions.GoogleAuthError as exc:
        first = str(exc).split(". ", 1)[0]
        return [*found, f"no Google application-default credentials for vertex ({first}): set "
                        "GOOGLE_APPLICATION_CREDENTIALS, run `gcloud auth application-default login`, or use "
                        "workload identity (GitHub OIDC: google-github-actions/auth)"]
    if not (_env("ANTHROPIC_VERTEX_PROJECT_ID") or project):
        found.append("no Google Cloud project for vertex: set ANTHROPIC_VERTEX_PROJECT_ID")
    return found


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


# -- what to redact -----------------------------------------------------------------------------------
def credential_values() -> list[str]:
    """Every provider secret the environment holds: whole-value secrets, the values of
    ANTHROPIC_CUSTOM_HEADERS, and the secret fields of the Google credentials file."""
    values = [os.environ[name] for name in SECRET_ENV if os.environ.get(name)]
    values += custom_headers().values()
    values += _adc_file_secrets()
    values += _file_contents(_env("AWS_WEB_IDENTITY_TOKEN_FILE"))  # the OIDC token a role is assumed with
    return [v for v in values if v]


def custom_headers() -> dict[str, str]:
    """ANTHROPIC_CUSTOM_HEADERS as Claude Code and the SDK read it: `Name: value` per line."""
    parsed: dict[str, str] = {}
    for line in os.environ.get("ANTHROPIC_CUSTOM_HEADERS", "").split("\n"):
        name, colon, value = line.partition(":")
        if colon and name.strip():
            parsed[name.strip()] = value.strip()
    return parsed


def _adc_file_secrets() -> list[str]:
    path = _env("GOOGLE_APPLICATION_CREDENTIALS")
    if path is None:
        return []
    try:
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
    except (OSError, ValueError):
        return []
    if not isinstance(info, dict):
        return []
    found = [str(info[k]) for k in _ADC_SECRET_FIELDS if isinstance(info.get(k), str)]
    source = info.get("credential_source")
    if isinstance(source, dict) and isinstance(source.get("headers"), dict):  # e.g. GitHub's OIDC request token
        found += [str(v) for v in source["headers"].values()]
        found += [str(v).partition(" ")[2] for v in source["headers"].values() if " " in str(v)]
    token_file = source.get("file") if isinstance(source, dict) else None
    return found + _file_contents(token_file if isinstance(token_file, str) else None)  # an OIDC token


def _file_contents(path: str | None) -> list[str]:
    if path is None:
        return []
    try:
        with open(path, encoding="utf-8") as f:
            return [f.read().strip()]
    except (OSError, UnicodeDecodeError):
        return []


def request_secrets(headers: Mapping[str, str]) -> list[str]:
    """The credential values a request carries in its headers."""
    found = []
    for name in _REQUEST_SECRET_HEADERS:
        value = headers.get(name)
        if not value or value.startswith("AWS4-HMAC-SHA256 "):  # a SigV4 signature is no secret
            continue
        found.append(value)
        scheme, _, rest = value.partition(" ")
        if scheme.lower() == "bearer" and rest:
            found.append(rest)
    return found
