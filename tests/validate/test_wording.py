"""Wording a person reads (issue 17.6): no "1 turns", no limit said twice, no "none permission"."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.agent.guards import Guards
from runner.errors import LimitExceeded
from runner.github.gate import _access


def test_one_turn_is_one_turn() -> None:
    guards = Guards(1, 5.0, 5)
    guards.turns = 1
    with pytest.raises(LimitExceeded) as info:
        guards.before_model_call()
    assert str(info.value) == "max_turns reached: 1 of 1 turn used"


@pytest.mark.parametrize(("permission", "role", "said"), [
    ("none", "none", "no access"), ("read", "read", "read access"), ("read", "triage", "read access (role triage)"),
])
def test_access_is_said_as_a_person_would(permission: str, role: str, said: str) -> None:
    assert _access(permission, role) == said


def test_merge_says_merge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from runner.batch.commands import _print_total

    _print_total([], 0, tmp_path, "merge")
    assert capsys.readouterr().out.startswith("astra-run merge: 0 task(s)")


ROOT = Path(__file__).resolve().parents[2]


def test_every_relative_link_of_the_docs_stays_in_the_repository() -> None:
    """The README once linked `../shared/SPEC.md`, a file outside the repository: a dead link
    for every user. Every relative link of README.md and docs/*.md names a file in the repo."""
    import re

    bad = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        prose = re.sub(r"```.*?```|`[^`\n]*`", "", doc.read_text(encoding="utf-8"), flags=re.S)  # not code
        for target in re.findall(r"\]\(([^)\s]+)\)", prose):
            if re.match(r"^[a-z][a-z0-9+.-]*:|^#", target):
                continue  # a URL or an anchor
            path = (doc.parent / target.split("#", 1)[0]).resolve()
            if not path.is_relative_to(ROOT) or not path.exists():
                bad.append(f"{doc.relative_to(ROOT)}: {target}")
    assert bad == []


def _action_steps() -> list[dict[str, object]]:
    import yaml

    steps: list[dict[str, object]] = yaml.safe_load((ROOT / "action.yml").read_text())["runs"]["steps"]
    return steps


def test_the_action_installs_astra_run_into_a_private_venv() -> None:
    """setup-python must not change the Python of the user's later steps, and astra-run is
    installed into its own venv, never into that (or the runner's) Python."""
    steps = _action_steps()
    python = next(s for s in steps if "setup-python" in str(s.get("uses", "")))
    assert python["with"]["update-environment"] is False  # type: ignore[index]
    runs = [str(s.get("run", "")) for s in steps]
    installs = [r for r in runs if "pip install" in r]
    assert installs and all('-m venv "$RUNNER_TEMP/astra-venv"' in r for r in installs)
    for r in installs:
        for line in r.splitlines():
            if "pip install" in line:
                assert line.strip().startswith('"$RUNNER_TEMP/astra-venv/bin/python" -m pip'), line
    assert any('"$RUNNER_TEMP/astra-venv/bin/astra-run" github' in r for r in runs)


def test_the_action_reuses_a_sandbox_image_whose_recipe_has_not_changed() -> None:
    """The image is cached under a hash of its recipe (Dockerfile and build.sh) and loaded from
    the cache before ensure-docker.sh, which builds only when the loaded image is stale."""
    steps = _action_steps()
    by_id = {s.get("id"): s for s in steps if s.get("id")}
    recipe = str(by_id["recipe"]["run"])
    assert "sandbox-images/Dockerfile" in recipe and "sandbox-images/build.sh" in recipe and "sha256sum" in recipe
    cache = by_id["image-cache"]
    assert str(cache["uses"]).startswith("actions/cache@")
    assert "steps.recipe.outputs.hash" in cache["with"]["key"]  # type: ignore[index]
    docker = next(s for s in steps if "ensure-docker.sh" in str(s.get("run", "")))
    script = str(docker["run"])
    assert script.index("docker load") < script.index("ensure-docker.sh") < script.index("docker save")
    assert "CACHE_HIT" in script and "steps.image-cache.outputs.cache-hit" in str(docker.get("env"))
