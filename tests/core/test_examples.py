"""The deployment examples use what this repository builds, and share the cache with their daemon."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def _containers(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in doc["spec"]["template"]["spec"]["containers"]}


def test_no_example_installs_astra_run_from_a_package_index() -> None:
    """`astra-run` is not ours on any package index: whoever registers it would run in the CI."""
    for path in EXAMPLES.rglob("*"):
        if path.is_file() and path.suffix in {".yml", ".yaml", ".sh", ""}:
            text = path.read_text(errors="replace")
            assert not re.search(r"pip install\s+(-\S+\s+)*astra-run\b(?!/)", text), path
            assert "ghcr.io/example" not in text, path


def test_the_nightly_workflow_installs_from_a_checkout_of_astra_run() -> None:
    wf = yaml.safe_load((EXAMPLES / "workflows" / "astra-nightly.yml").read_text())
    for job in wf["jobs"].values():
        steps = job["steps"]
        checkout = [s for s in steps if s.get("uses", "").startswith("actions/checkout")
                    and (s.get("with") or {}).get("repository")]
        assert checkout, job
        where = checkout[0]["with"]["path"]
        assert any(f"pip install ./{where}" in s.get("run", "") for s in steps)


def test_kubernetes_runner_and_daemon_share_the_cache_at_one_path() -> None:
    docs = list(yaml.safe_load_all((EXAMPLES / "k8s" / "astra-batch.yaml").read_text()))
    job = next(d for d in docs if d and d["kind"] == "Job" and d["metadata"]["name"] == "astra-nightly")
    containers = _containers(job)
    astra, dind = containers["astra"], containers["dind"]
    assert "astra-runner" in astra["image"]
    env = {e["name"]: e.get("value") for e in astra["env"]}
    mounts = {c: {m["name"]: m["mountPath"] for m in containers[c]["volumeMounts"]} for c in ("astra", "dind")}
    assert mounts["astra"]["cache"] == mounts["dind"]["cache"] == env["ASTRA_CACHE"]
    assert set(mounts["dind"]) == {"cache"}, "the daemon needs the cache and nothing else"
    assert dind["securityContext"]["privileged"] is True
    assert env["DOCKER_HOST"].startswith("tcp://localhost:")


def test_gitlab_example_puts_the_cache_where_the_dind_service_sees_it() -> None:
    ci = yaml.safe_load((EXAMPLES / "gitlab" / ".gitlab-ci.yml").read_text())
    job = ci["astra-nightly"]
    assert "astra-runner" in job["image"]
    assert any("dind" in (s["name"] if isinstance(s, dict) else s) for s in job["services"])
    assert job["variables"]["ASTRA_CACHE"].startswith("$CI_PROJECT_DIR/")
    assert job["variables"]["DOCKER_HOST"] == "tcp://docker:2375"
    assert any("astra-run batch" in line for line in job["script"])


def test_the_runner_image_is_built_by_build_sh() -> None:
    script = (ROOT / "sandbox-images" / "build.sh").read_text()
    assert "runner.Dockerfile" in script and "astra-runner:latest" in script
    assert (ROOT / "sandbox-images" / "runner.Dockerfile").is_file()
