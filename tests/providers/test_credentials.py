"""Credentials: what is missing is named before anything runs (exit 2, no worktree made), and no
provider variable is taken into the sandbox or an MCP server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from runner.models.credentials import check_credentials, credential_values, custom_headers
from tests.conftest import make_repo
from tests.providers.conftest import cloud_env


def test_anthropic_needs_a_key_or_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    [problem] = check_credentials("anthropic")
    assert "ANTHROPIC_API_KEY" in problem and "ANTHROPIC_AUTH_TOKEN" in problem
    monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", "gateway-token-123456")
    assert check_credentials("anthropic") == []


def test_bedrock_names_the_missing_region_and_credentials() -> None:
    problems = check_credentials("bedrock")
    assert any("AWS_REGION" in p for p in problems)
    assert any("no AWS credentials" in p and "AWS_WEB_IDENTITY_TOKEN_FILE" in p for p in problems)


@pytest.mark.parametrize("how", ["keys", "web-identity", "profile", "bedrock-api-key"])
def test_bedrock_takes_each_source_of_the_standard_chain(how: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    if how == "keys":  # what aws-actions/configure-aws-credentials exports after the OIDC role assumption
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ASIAFAKEFAKEFAKE1234")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
        monkeypatch.setenv("AWS_SESSION_TOKEN", "token")
    elif how == "web-identity":  # resolved lazily: no STS call is made to check
        (tmp_path / "oidc").write_text("eyJ.fake.jwt")
        monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(tmp_path / "oidc"))
        monkeypatch.setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/astra")
    elif how == "profile":
        creds = tmp_path / "no-aws-credentials"
        creds.write_text("[ci]\naws_access_key_id = AKIAFAKEFAKEFAKE1234\naws_secret_access_key = s\n")
        monkeypatch.setenv("AWS_PROFILE", "ci")
    else:
        monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "bedrock-api-key-abc")
    assert check_credentials("bedrock") == []


def test_bedrock_with_an_unknown_profile_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_PROFILE", "nonesuch")
    [problem] = check_credentials("bedrock")
    assert "nonesuch" in problem


def test_vertex_names_region_credentials_and_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    problems = check_credentials("vertex")
    assert any("CLOUD_ML_REGION" in p for p in problems)
    assert any("application-default credentials" in p for p in problems)
    monkeypatch.setenv("CLOUD_ML_REGION", "global")
    wif = tmp_path / "wif.json"
    wif.write_text(json.dumps({"type": "external_account", "audience": "//iam.googleapis.com/x",
                               "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
                               "token_url": "http://127.0.0.1:9/token", "credential_source": {"file": "/dev/null"}}))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(wif))
    assert check_credentials("vertex") == ["no Google Cloud project for vertex: set ANTHROPIC_VERTEX_PROJECT_ID"]
    monkeypatch.setenv("ANTHROPIC_VERTEX_PROJECT_ID", "proj-1")
    assert check_credentials("vertex") == []


def test_credential_values_cover_every_provider(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "oidc").write_text("eyJ.oidc-gggg\n")
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(tmp_path / "oidc"))
    sa = tmp_path / "sa.json"
    sa.write_text(json.dumps({"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----x",
                              "client_email": "a@b", "private_key_id": "kid-123456"}))
    planted = {"ANTHROPIC_API_KEY": "sk-ant-aaaa", "ANTHROPIC_AUTH_TOKEN": "tok-bbbb",
               "AWS_SECRET_ACCESS_KEY": "aws-secret-cccc", "AWS_SESSION_TOKEN": "aws-session-dddd",
               "AWS_BEARER_TOKEN_BEDROCK": "bedrock-eeee", "GOOGLE_APPLICATION_CREDENTIALS": str(sa),
               "ANTHROPIC_CUSTOM_HEADERS": "X-Gateway-Key: gw-ffff\nX-Team: platform"}
    for k, v in planted.items():
        monkeypatch.setenv(k, v)
    values = credential_values()
    for secret in ("sk-ant-aaaa", "tok-bbbb", "aws-secret-cccc", "aws-session-dddd", "bedrock-eeee", "gw-ffff",
                   "-----BEGIN PRIVATE KEY-----x", "kid-123456", "eyJ.oidc-gggg"):
        assert secret in values
    assert custom_headers() == {"X-Gateway-Key": "gw-ffff", "X-Team": "platform"}


# -- through the CLI ----------------------------------------------------------------------------------
def task_file(tmp_path: Path, **extra: object) -> Path:
    make_repo(tmp_path / "repo", {"a.py": "x = 1\n"})
    spec = {"name": "t", "repo": "repo", "prompt": "p", "model": "claude-sonnet-5-5",
            "sandbox": {"backend": "local"}, "outputs": {"dir": str(tmp_path / "out")}, **extra}
    path = tmp_path / "task.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def astra(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**cloud_env(tmp_path), "ASTRA_CACHE": str(tmp_path / "cache"), **env}
    return subprocess.run([sys.executable, "-m", "runner", *args], capture_output=True, text=True, env=full,
                          cwd=tmp_path, timeout=120)


@pytest.mark.parametrize(("provider", "names"), [
    ("anthropic", ["ANTHROPIC_API_KEY"]), ("bedrock", ["AWS_REGION", "AWS_ACCESS_KEY_ID"]),
    ("vertex", ["CLOUD_ML_REGION", "GOOGLE_APPLICATION_CREDENTIALS"]),
])
def test_a_missing_credential_is_exit_2_before_anything_is_made(tmp_path: Path, provider: str,
                                                                names: list[str]) -> None:
    task = task_file(tmp_path, provider=provider)
    proc = astra(tmp_path, "run", str(task))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"{task}:" in proc.stderr  # found before anything is made: no output directory, no run dir
    for name in names:
        assert name in proc.stderr
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "cache" / "runs").exists() or not any((tmp_path / "cache" / "runs").iterdir())


def test_astra_provider_overrides_the_task_file(tmp_path: Path) -> None:
    task = task_file(tmp_path, provider="anthropic")
    proc = astra(tmp_path, "run", str(task), ASTRA_PROVIDER="bedrock", ANTHROPIC_API_KEY="sk-ant-x" * 4)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "ASTRA_PROVIDER: provider: " in proc.stderr and "AWS_REGION" in proc.stderr


def test_validate_reports_missing_credentials_unless_told_not_to(tmp_path: Path) -> None:
    task = task_file(tmp_path, provider="vertex")
    proc = astra(tmp_path, "validate", str(task))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"{task}:" in proc.stderr and "CLOUD_ML_REGION" in proc.stderr and "--no-credentials" in proc.stderr
    proc = astra(tmp_path, "validate", "--no-credentials", str(task))
    assert proc.returncode == 0, proc.stderr
    assert "credentials not checked (--no-credentials)" in proc.stdout and proc.stderr == ""


@pytest.mark.parametrize("where", ["sandbox", "mcp-env", "mcp-headers"])
def test_provider_variables_are_refused_in_the_sandbox_and_mcp_servers(tmp_path: Path, where: str) -> None:
    ref = {"V": "${AWS_SECRET_ACCESS_KEY}"}
    extra: dict[str, object] = {"sandbox": {"backend": "local", "env": ref}} if where == "sandbox" else {
        "mcp_servers": {"s": {"command": "true", "env": ref}}}
    if where == "mcp-headers":
        extra = {"mcp_servers": {"s": {"url": "http://127.0.0.1:9/mcp", "headers": {"X-K": "${GOOGLE_TOKEN}"}}}}
    task = task_file(tmp_path, **extra)
    proc = astra(tmp_path, "validate", str(task), AWS_SECRET_ACCESS_KEY="s3cr3t-value", GOOGLE_TOKEN="g")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "is a model provider's variable" in proc.stderr
