"""The manifest: validated before anything runs, errors as FILE:LINE: field: problem (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.batch.manifest import load_manifest, parse_shard, select_shard
from runner.errors import ConfigError
from runner.settings import Settings
from tests.batch.helpers import LS, Workdir
from tests.conftest import make_repo, sh_git


@pytest.fixture
def wd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workdir:
    monkeypatch.setenv("ASTRA_CACHE", str(tmp_path / "cache"))
    for var in ("ASTRA_SHARD", "JOB_COMPLETION_INDEX", "ASTRA_MODEL", "ASTRA_OUT"):
        monkeypatch.delenv(var, raising=False)
    return Workdir(tmp_path)


def problems(wd: Workdir, text: str) -> str:
    path = wd.root / "m.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_manifest(path, Settings(), wd.out)
    return str(info.value)


def test_duplicate_names_exit_2_naming_both_files(wd: Workdir, capsys: pytest.CaptureFixture[str]) -> None:
    wd.task("a", LS)
    other = wd.root / "extra"
    other.mkdir()
    (other / "again.yaml").write_text(
        (wd.root / "tasks" / "a.yaml").read_text().replace("../repo", "../repo").replace("../models", "../models"))
    wd.manifest({"defaults": {"sandbox": {"backend": "local"}}, "tasks": ["tasks/*.yaml", "extra/again.yaml"]})
    assert wd.batch() == 2
    err = capsys.readouterr().err
    assert "duplicate task name 'a'" in err and "tasks/a.yaml" in err and "extra/again.yaml" in err
    assert not wd.out.exists()  # nothing ran


def test_unknown_keys_and_bad_values_name_file_and_line(wd: Workdir) -> None:
    msg = problems(wd, "tasks: [tasks/*.yaml]\nparallel: 4\n")
    assert msg.endswith("m.yaml:2: parallel: unknown key")
    msg = problems(wd, "defaults:\n  limits: {max_turns: many}\n  colour: red\ntasks: [tasks/*.yaml]\n")
    assert "m.yaml:3: defaults.colour: unknown key" in msg
    msg = problems(wd, "defaults:\n  limits:\n    max_turns: many\ntasks: [tasks/*.yaml]\n")
    assert "m.yaml:3: defaults.limits.max_turns:" in msg
    msg = problems(wd, "defaults: {name: x}\ntasks: [tasks/*.yaml]\n")
    assert "m.yaml:1: defaults.name:" in msg
    msg = problems(wd, "tasks:\n  - tasks/*.yaml\n  - nope/*.yaml\n")
    assert "m.yaml:3: tasks[1]: 'nope/*.yaml' matches no file" in msg
    msg = problems(wd, "matrix:\n  template: t.yaml\n  repos: []\n")
    assert "m.yaml:3: matrix.repos:" in msg
    assert "needs `tasks`, a `matrix`" in problems(wd, "defaults: {}\n")
    assert "m.yaml:3: YAML syntax error" in problems(wd, "tasks:\n  - [unclosed\n")


def test_an_invalid_task_file_fails_the_whole_batch_before_anything_runs(wd: Workdir) -> None:
    wd.task("good", LS)
    wd.task("bad", LS, limits={"max_turnz": 3})
    (wd.root / "models" / "good.yaml").unlink()  # and a scripted model that is missing
    msg = problems(wd, "defaults: {sandbox: {backend: local}}\ntasks: [tasks/*.yaml]\n")
    assert "tasks/bad.yaml:" in msg and "limits.max_turnz: unknown key" in msg
    assert "good.yaml not found" in msg


def test_defaults_are_merged_under_tasks_and_outputs_go_to_out(wd: Workdir) -> None:
    wd.task("a", LS, limits={"max_turns": 7})
    wd.task("b", LS, outputs={"dir": "/somewhere/else"})
    path = wd.manifest({"defaults": {"sandbox": {"backend": "local"}, "limits": {"max_turns": 3, "max_cost_usd": 1}},
                        "tasks": ["tasks/a.yaml", "tasks/*.yaml"]})  # a listed twice: runs once
    tasks = load_manifest(path, Settings(), wd.out)
    assert [t.name for t in tasks] == ["a", "b"]
    a, b = (t.task.spec for t in tasks)
    assert (a.limits.max_turns, a.limits.max_cost_usd, b.limits.max_turns) == (7, 1, 3)
    assert a.sandbox.backend == "local"
    assert b.outputs.dir == str(wd.out / "b")


def test_matrix_one_task_per_repo_and_ref(wd: Workdir) -> None:
    for repo in (make_repo(wd.root / "svc-a", {"x": "1\n"}), make_repo(wd.root / "nested" / "svc-a", {"x": "2\n"})):
        sh_git(repo, "branch", "release/1.2")
    template = wd.task("refactor", LS)
    path = wd.manifest({
        "defaults": {"sandbox": {"backend": "local"}},
        "matrix": {"template": str(template.relative_to(wd.root)),
                   "repos": ["svc-a", "nested/svc-a", "https://example.org/team/svc-b.git"],
                   "refs": ["main", "release/1.2"]},
    })
    tasks = load_manifest(path, Settings(), wd.out)
    assert [t.name for t in tasks] == [
        "refactor.svc-a-1.main", "refactor.svc-a-1.release-1.2", "refactor.svc-a-2.main",
        "refactor.svc-a-2.release-1.2", "refactor.svc-b.main", "refactor.svc-b.release-1.2",
    ]
    first = tasks[0].task
    assert first.repo == str(wd.root / "svc-a") and first.spec.ref == "main"
    assert tasks[4].task.repo == "https://example.org/team/svc-b.git"
    assert "matrix: repo svc-a, ref main" in tasks[0].origin
    msg = problems(wd, f"matrix:\n  template: {template}\n  repos: [gone]\n")
    assert "m.yaml:3: matrix.repos[0]:" in msg and "does not exist" in msg


def test_reserved_names_are_refused(wd: Workdir) -> None:
    wd.task("x", LS)
    (wd.root / "tasks" / "x.yaml").write_text((wd.root / "tasks" / "x.yaml").read_text().replace(
        "name: x", "name: junit.xml"))
    msg = problems(wd, "defaults: {sandbox: {backend: local}}\ntasks: [tasks/*.yaml]\n")
    assert "'junit.xml' cannot be a batch task name" in msg


def test_shards_are_a_deterministic_round_robin_over_sorted_names(wd: Workdir) -> None:
    for name in ("e", "a", "d", "b", "c"):
        wd.task(name, LS)
    tasks = load_manifest(wd.manifest(), Settings(), wd.out)
    split = [[t.name for t in select_shard(tasks, parse_shard(f"{i}/2"))] for i in range(2)]
    assert split == [["a", "c", "e"], ["b", "d"]]
    for bad in ("2/2", "1/0", "x", "-1/2"):
        with pytest.raises(ConfigError):
            parse_shard(bad)
