"""The action's provider inputs: what the run step exports for astra-run, run for real in bash."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def run_step(tmp_path: Path, **inputs: str) -> dict[str, str]:
    """The action's run step in bash, with a stand-in astra-run that prints its environment."""
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    step = next(s for s in action["runs"]["steps"] if s.get("id") == "run")
    stub = tmp_path / "astra-venv" / "bin" / "astra-run"
    stub.parent.mkdir(parents=True, exist_ok=True)
    stub.write_text("#!/bin/sh\nenv\n")
    stub.chmod(0o755)
    env = {"PATH": os.environ["PATH"], "RUNNER_TEMP": str(tmp_path), "IN_PUBLISH": "none"}
    for key, expr in step["env"].items():
        name = expr.removeprefix("${{ inputs.").removesuffix(" }}") if expr.startswith("${{ inputs.") else None
        env[key] = inputs.get(name, "") if name else "x"
    out = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]], env=env,
                         capture_output=True, text=True, check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_bedrock_inputs_become_the_variables_astra_run_reads(tmp_path: Path) -> None:
    env = run_step(tmp_path, provider="bedrock", aws_region="eu-west-1")
    assert env["ASTRA_PROVIDER"] == "bedrock" and env["AWS_REGION"] == "eu-west-1"
    assert "ANTHROPIC_API_KEY" not in env  # an empty key is not exported as set


def test_vertex_and_gateway_inputs(tmp_path: Path) -> None:
    env = run_step(tmp_path, provider="vertex", vertex_project_id="p-1", vertex_region="global")
    assert (env["ASTRA_PROVIDER"], env["ANTHROPIC_VERTEX_PROJECT_ID"], env["CLOUD_ML_REGION"]) == \
        ("vertex", "p-1", "global")
    env = run_step(tmp_path, anthropic_auth_token="gw-token", anthropic_base_url="https://gw.example.invalid")
    assert env["ANTHROPIC_AUTH_TOKEN"] == "gw-token" and env["ANTHROPIC_BASE_URL"] == "https://gw.example.invalid"
    assert "IN_AUTH_TOKEN" not in env and "ASTRA_PROVIDER" not in env
    env = run_step(tmp_path, anthropic_api_key="sk-ant-x")
    assert env["ANTHROPIC_API_KEY"] == "sk-ant-x"
