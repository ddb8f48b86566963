"""Every text field of a task file and a manifest, given a value YAML reads as something else,
says what it was read as, with the source text, and "quote it" (issue 17: YAML's surprise types).

The fields are found from the schema itself, so a text field added later is covered too.
"""

from __future__ import annotations

import os
import types
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from runner.batch.manifest import ManifestSpec
from runner.cli import main
from runner.task import TaskSpec

HINT = '`1.10` is read as the number 1.1: quote it ("1.10") to mean the text'


def _text_shape(annotation: object) -> str | None:
    """'str', 'list' (of text), 'dict' (text values) or None for a field that is not text."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if annotation is str:
        return "str"
    if origin is typing.Annotated:
        return _text_shape(args[0])
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return _text_shape(args[0])
    if origin is list and args and _text_shape(args[0]) == "str":
        return "list"
    if origin is dict and len(args) == 2 and _text_shape(args[1]) == "str":
        return "dict"
    return None


def _model_of(annotation: object) -> type[BaseModel] | None:
    for a in (annotation, *typing.get_args(annotation)):
        if isinstance(a, type) and issubclass(a, BaseModel):
            return a
        if typing.get_origin(a) in (list, dict) and (inner := _model_of(typing.get_args(a)[-1])) is not None:
            return inner
    return None


def text_fields(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str]]:
    for name, info in model.model_fields.items():
        if (shape := _text_shape(info.annotation)) is not None:
            yield (*prefix, name), shape
        elif (inner := _model_of(info.annotation)) is not None:
            yield from text_fields(inner, (*prefix, name))


TASK_FIELDS = list(text_fields(TaskSpec))
MANIFEST_FIELDS = [f for f in text_fields(ManifestSpec)]


def test_the_schema_walk_finds_the_text_fields() -> None:
    found = {".".join(p) for p, _ in TASK_FIELDS}
    assert {"name", "model", "ref", "sandbox.env", "sandbox.setup", "policy.allow", "verify.run", "verify.name",
            "mcp_servers.args", "mcp_servers.headers", "outputs.dir"} <= found, found
    assert {".".join(p) for p, _ in MANIFEST_FIELDS} >= {"tasks", "matrix.template", "matrix.repos", "matrix.refs"}


def _value(shape: str) -> str:
    return {"str": "1.10", "list": "[1.10]", "dict": "{K: 1.10}"}[shape]


def _shown(path: tuple[str, ...], shape: str, outer: dict[str, str]) -> str:
    shown = ""
    for part in path:
        shown += ("." if shown else "") + part + outer.get(part, "")
    return shown + {"str": "", "list": "[0]", "dict": ".K"}[shape]


def _task_yaml(path: tuple[str, ...], shape: str) -> str:
    top = {"name": "x", "prompt": "p", "sandbox": "{backend: local}"}
    value = _value(shape)
    head, *rest = path
    if head in ("name", "prompt", "prompt_file", "repo", "ref", "model"):
        top.pop("prompt" if head == "prompt_file" else "", None)
        top[head] = value
    elif head == "verify":
        check = {"name": "t", "run": "r", rest[0]: value}
        top["verify"] = "[{" + ", ".join(f"{k}: {v}" for k, v in check.items()) + "}]"
    elif head == "mcp_servers":
        base = "command: srv" if rest[0] not in ("url", "headers") else "url: 'http://127.0.0.1:9/mcp'"
        if rest[0] in ("command", "url"):
            base = ""
        top["mcp_servers"] = f"{{s: {{{base + ', ' if base else ''}{rest[0]}: {value}}}}}"
    else:
        top[head] = f"{{{'backend: local, ' if head == 'sandbox' else ''}{rest[0]}: {value}}}"
    return "".join(f"{k}: {v}\n" for k, v in top.items())


@pytest.mark.parametrize(("path", "shape"), TASK_FIELDS, ids=[".".join(p) for p, _ in TASK_FIELDS])
def test_every_text_field_of_a_task_file_says_how_yaml_read_it(
    path: tuple[str, ...], shape: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    for var in [v for v in os.environ if v.startswith("ASTRA_")]:
        monkeypatch.delenv(var)
    (tmp_path / "task.yaml").write_text(_task_yaml(path, shape))
    assert main(["validate", "task.yaml"]) == 2
    err = capsys.readouterr().err.removeprefix("astra-run: ")
    shown = _shown(path, shape, {"verify": "[0]", "mcp_servers": ".s"})
    assert f": {shown}: {HINT}" in err, (_task_yaml(path, shape), err)


@pytest.mark.parametrize(("path", "shape"), MANIFEST_FIELDS, ids=[".".join(p) for p, _ in MANIFEST_FIELDS])
def test_every_text_field_of_a_manifest_says_how_yaml_read_it(
    path: tuple[str, ...], shape: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    value = _value(shape)
    matrix = {"template": "t.yaml", "repos": "[.]"}
    if path[0] == "matrix":
        matrix[path[1]] = value
        text = "matrix: {" + ", ".join(f"{k}: {v}" for k, v in matrix.items()) + "}\n"
    else:
        text = f"{path[0]}: {value}\n"
    (tmp_path / "m.yaml").write_text(text)
    assert main(["validate", "m.yaml"]) == 2
    err = capsys.readouterr().err.removeprefix("astra-run: ")
    assert f"m.yaml:1: {_shown(path, shape, {})}: {HINT}" in err, (text, err)
