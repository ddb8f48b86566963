"""A task's content as one digest: what `batch --resume` keys a result on.

Everything that decides what a run does goes in: every field of the effective task (the file,
the manifest's defaults under it, ASTRA_* and flag overrides), the prompt's text (also when it
comes from `prompt_file`) and the resolved repository. Not `outputs.dir`: where the outputs go
is not what the task is. Editing the task file, its prompt file or the manifest's defaults
changes the digest, so `--resume` runs the task again.
"""

from __future__ import annotations

import hashlib
import json

from runner.task import LoadedTask


def task_digest(task: LoadedTask) -> str:
    spec = task.spec.model_dump(mode="json", exclude={"outputs"})
    data = {"spec": spec, "prompt": task.prompt, "repo": task.repo}
    text = json.dumps(data, sort_keys=True, ensure_ascii=False, default=str)
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()
