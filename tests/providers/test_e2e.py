"""End to end through the CLI: the demo fix (examples/demo) on Bedrock and on Vertex, the real SDK
talking to the platform fakes; cost and usage as priced for the platform; credentials planted in
the environment reach neither the sandbox (its env, PID 1's environ, its files) nor any output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from runner.models.base import Usage
from runner.models.pricing import load_prices
from tests.conftest import make_repo
from tests.fakes.bedrock_api import FakeBedrock
from tests.fakes.platform_wire import Call, PlatformFake
from tests.fakes.vertex_api import FakeVertex
from tests.providers.conftest import cloud_env

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo"
MARK = "PLANTED"
"""Every planted secret holds this: nothing the sandbox prints may."""
AKID, SECRET, SESSION = "ASIAFAKEFAKEFAKE1234", f"wJalrXUtnFEMI/{MARK}/bPxRfiCYEXAMPLEKEY01", f"IQoJb3{MARK}session"
OTHER = {"ANTHROPIC_API_KEY": f"sk-ant-api03-{MARK}" + "k" * 40, "ANTHROPIC_AUTH_TOKEN": f"gw-{MARK}-token",
         "ANTHROPIC_CUSTOM_HEADERS": f"X-Gateway-Key: hdr-{MARK}-1", "AWS_BEARER_TOKEN_BEDROCK": ""}
PROBES = {
    "docker": ("env; echo ---; tr '\\0' '\\n' </proc/1/environ; echo ---; "
               f"grep -rlsI {MARK} /workspace /tmp /root /home /etc /run /var/tmp /astra 2>/dev/null; echo probe-done"),
    "local": "env; echo probe-done",  # not a sandbox: only its environment is ours to check
}
USAGE = [(1200, 80, 3000, 0), (400, 60, 500, 3000), (300, 120, 200, 3500), (350, 40, 0, 3700), (300, 50, 0, 3900),
         (280, 90, 0, 4100)]


def demo_turns(echo: str, backend: str) -> list[Any]:
    """The demo's scripted turns with usage, a leak probe first, and a last turn that repeats
    the credential the request came with (which every output must redact)."""
    steps: list[Any] = [{"text": "First, what can I see?", "tool_calls": [{"name": "bash", "input": {"command": PROBES[backend]}}]}]
    steps += yaml.safe_load((DEMO / "model.yaml").read_text())[:-1]
    for step, (i, o, cw, cr) in zip(steps, USAGE, strict=False):
        step["usage"] = {"input_tokens": i, "output_tokens": o, "cache_creation_input_tokens": cw,
                         "cache_read_input_tokens": cr}

    def last(call: Call) -> dict[str, Any]:
        i, o, cw, cr = USAGE[len(steps)]
        return {"text": f"Fixed: interleave_evenly([]) returns an empty iterator. I was called with {echo}: "
                        f"{call.headers.get(echo, '').removeprefix('Bearer ')}",
                "usage": {"input_tokens": i, "output_tokens": o, "cache_creation_input_tokens": cw,
                          "cache_read_input_tokens": cr}}

    return [*steps, last]


def demo_task(tmp_path: Path, provider: str, model: str, backend: str) -> tuple[Path, Path]:
    files = {str(p.relative_to(DEMO / "project")): p.read_text() for p in (DEMO / "project").rglob("*") if p.is_file()}
    make_repo(tmp_path / "repo", files)
    spec = yaml.safe_load((DEMO / "task.yaml").read_text())
    spec.update(repo="repo", model=model, provider=provider, outputs={"dir": str(tmp_path / "out")},
                policy={"default": "allow", "deny": ["bash(git push*)"]})
    spec["sandbox"]["backend"] = backend
    task = tmp_path / "task.yaml"
    task.write_text(yaml.safe_dump(spec))
    return task, tmp_path / "out"


def run_cli(task: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", "run", str(task)], capture_output=True, text=True,
                          env=env, cwd=task.parent, timeout=300)


def check_run(fake: PlatformFake, proc: subprocess.CompletedProcess[str], out: Path, price_key: str,
              premium: float, secrets: list[str]) -> None:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "success" and result["turns"] == len(USAGE)
    assert "+    if not lists:" in (out / "patch.diff").read_text()
    # cost and usage: summed over the turns, priced as the platform prices them
    usage = Usage(*(sum(u[k] for u in USAGE) for k in range(4)))
    price = load_prices().price_for(price_key.split(" (")[0])
    assert price is not None
    expected = premium * price.cost(usage)
    cost = json.loads((out / "cost.json").read_text())
    assert list(cost["models"]) == [price_key]
    assert cost["models"][price_key]["cache_read_input_tokens"] == usage.cache_read_input_tokens
    assert cost["models"][price_key]["input_tokens"] == usage.input_tokens
    assert cost["total_cost_usd"] == pytest.approx(expected, rel=1e-9) and result["cost_usd"] == pytest.approx(expected)
    # the sandbox saw no credential: the probe's output went back to the model as a tool result
    model_calls = [c for c in fake.calls if isinstance(c.body, dict) and "messages" in c.body]
    results = [b for b in model_calls[1].body["messages"][-1]["content"] if b.get("type") == "tool_result"]
    seen = json.dumps(results)
    assert "probe-done" in seen and MARK not in seen, seen
    assert "AWS_" not in seen and "GOOGLE_" not in seen and "ANTHROPIC_" not in seen, seen
    # no output holds a credential, not even the one the model repeated
    everything = "\n".join(p.read_text(errors="replace") for p in out.iterdir()) + proc.stdout + proc.stderr
    for secret in secrets:
        assert secret and secret not in everything, secret
    assert "I was called with" in (out / "trajectory.jsonl").read_text()  # the repeated credential, redacted
    assert "[REDACTED]" in (out / "trajectory.jsonl").read_text()


def bedrock_env(tmp_path: Path, fake: FakeBedrock) -> dict[str, str]:
    env = {**cloud_env(tmp_path), **OTHER, "ASTRA_CACHE": str(tmp_path / "cache"), "CI": "true",
           "AWS_ACCESS_KEY_ID": AKID, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_SESSION_TOKEN": SESSION,
           "AWS_REGION": "us-east-1", "ANTHROPIC_BEDROCK_BASE_URL": fake.base_url,
           "ANTHROPIC_BEDROCK_MANTLE_BASE_URL": fake.mantle_url}
    return {k: v for k, v in env.items() if v}


@pytest.mark.docker
def test_demo_fix_on_bedrock_invokemodel_in_docker(tmp_path: Path) -> None:
    task, out = demo_task(tmp_path, "bedrock", "claude-sonnet-4-5", "docker")
    with FakeBedrock(demo_turns("x-amz-security-token", "docker"), access_key=AKID, secret_key=SECRET,
                     session_token=SESSION) as aws:
        proc = run_cli(task, bedrock_env(tmp_path, aws))
        paths = {c.path for c in aws.calls}
    assert paths == {"/model/global.anthropic.claude-sonnet-4-5-20250929-v1:0/invoke-with-response-stream"}
    check_run(aws, proc, out, "claude-sonnet-4-5", 1.0, [SECRET, SESSION, *filter(None, OTHER.values())])


def test_demo_fix_on_bedrock_mantle(tmp_path: Path) -> None:
    task, out = demo_task(tmp_path, "bedrock", "claude-sonnet-5-5", "local")
    with FakeBedrock(demo_turns("x-amz-security-token", "local"), access_key=AKID, secret_key=SECRET,
                     session_token=SESSION) as aws:
        proc = run_cli(task, bedrock_env(tmp_path, aws))
        paths = {c.path for c in aws.calls}
    assert paths == {"/anthropic/v1/messages"}
    assert "model claude-sonnet-5-5 on bedrock: anthropic.claude-sonnet-5-5 (bedrock-mantle)" in \
        (out / "trajectory.jsonl").read_text()
    check_run(aws, proc, out, "claude-sonnet-5-5 (bedrock, regional)", 1.1,
              [SECRET, SESSION, *filter(None, OTHER.values())])


@pytest.mark.docker
def test_demo_fix_on_vertex_with_workload_identity_in_docker(tmp_path: Path) -> None:
    task, out = demo_task(tmp_path, "vertex", "claude-sonnet-5-5", "docker")
    with FakeVertex(demo_turns("authorization", "docker"), project="proj-1", region="us-east5") as gcp:
        adc = gcp.workload_identity_file(tmp_path / "wif.json", tmp_path / "oidc-token")
        env = {**cloud_env(tmp_path), **OTHER, "ASTRA_CACHE": str(tmp_path / "cache"), "CI": "true",
               "GOOGLE_APPLICATION_CREDENTIALS": str(adc), "ANTHROPIC_VERTEX_BASE_URL": gcp.vertex_url,
               "ANTHROPIC_VERTEX_PROJECT_ID": "proj-1", "CLOUD_ML_REGION": "us-east5"}
        proc = run_cli(task, {k: v for k, v in env.items() if v})
        issued = list(gcp.issued)
    assert len(issued) == 1  # one token, minted by google-auth at the fake STS, reused for every turn
    check_run(gcp, proc, out, "claude-sonnet-5-5 (vertex, regional)", 1.1,
              [issued[0], gcp.subject_token, *filter(None, OTHER.values())])
