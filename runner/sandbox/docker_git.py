"""Git isolation for the docker sandbox: the container gets git, never the trusted git dir.

The host's git dir stays outside the container: trusted host git (`_host_git`, no hooks, no
config) finds the objects directory and the base commit (`_git_source`); the objects are mounted
read-only at IN_OBJECTS, the worktree's `.git` is covered by a read-only file pointing at
IN_GIT_DIR (written by docker_files.py), and inside, a container-private git dir on a tmpfs is written by
`_git_init_script` to borrow those objects through alternates. Nothing the sandbox writes is ever
read by host git. Kept apart from docker.py because it is one self-contained argument - why host
git stays safe - whose pieces are easier to check side by side.
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

from runner.errors import SandboxError
from runner.procs import communicate
from runner.sandbox.base import WORKSPACE, SandboxConfig

IN_GIT_DIR = "/astra/git"
IN_OBJECTS = "/astra/objects"
GIT_TMPFS_SIZE = "1g"

# Runs as the agent's uid inside the container. /astra/git is a tmpfs owned by that uid; its
# objects come from the trusted store (read-only at /astra/objects) through alternates; HEAD is
# a branch at the base commit; `git reset` builds the index from HEAD and the worktree's stat
# data, so `git status` is clean at start. Nothing here is ever read by host git. The files are
# written directly (one git process instead of seven: this is on the start path).
_GIT_INIT = """set -e
command -v git >/dev/null 2>&1 || exit 0   # a custom image without git: no git inside, that's all
g={git_dir}
mkdir -p $g/objects/info $g/refs/heads $g/refs/tags
cat > $g/config <<'EOF'
[core]
\trepositoryformatversion = {format_version}
\tfilemode = true
\tbare = false
\tlogallrefupdates = true
\tworktree = {workspace}
[user]
\tname = astra-agent
\temail = agent@astra-run.invalid
{extensions}EOF
echo {objects} > $g/objects/info/alternates
echo {base} > $g/refs/heads/astra
echo 'ref: refs/heads/astra' > $g/HEAD
cd {workspace} && GIT_DIR=$g git reset -q
"""


def _git_init_script(base: str) -> str:
    sha256 = len(base) == 64
    return _GIT_INIT.format(
        git_dir=IN_GIT_DIR, workspace=WORKSPACE, objects=IN_OBJECTS, base=base,
        format_version=1 if sha256 else 0,
        extensions="[extensions]\n\tobjectformat = sha256\n" if sha256 else "",
    )


async def _host_git(git_dir: Path, *args: str) -> str:
    """Run trusted host git on the trusted git dir (never on anything the sandbox wrote)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_CONFIG_GLOBAL": "/dev/null", "HOME": "/nonexistent", "LANG": "C"}
    proc = await asyncio.create_subprocess_exec(
        "git", "-c", "core.hooksPath=/dev/null", f"--git-dir={git_dir}", *args,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await communicate(proc)
    if proc.returncode != 0:
        raise SandboxError(f"git {' '.join(args)} failed on {git_dir}: {err.decode(errors='replace').strip()}")
    return out.decode().strip()


async def _git_source(cfg: SandboxConfig) -> tuple[Path | None, str | None]:
    """The trusted objects dir to mount read-only, and the base commit (None: no git inside)."""
    dot_git = cfg.worktree / ".git"
    if dot_git.is_dir() and not dot_git.is_symlink():
        # Mounting it would hand the sandbox a writable git dir that host git later reads.
        raise SandboxError(
            f"{dot_git} is a directory: the docker sandbox needs a `git worktree` (whose .git is "
            "a file) so that the trusted git dir stays outside the container"
        )
    if cfg.git_objects is not None:
        objects: Path | None = cfg.git_objects
    elif cfg.git_dir is not None:
        common = await _host_git(cfg.git_dir, "rev-parse", "--path-format=absolute", "--git-common-dir")
        objects = Path(common) / "objects"
    else:
        return None, None
    if objects is None or not objects.is_dir():
        raise SandboxError(f"the git objects directory {objects} does not exist")
    base = cfg.base_commit
    if base is None:
        if cfg.git_dir is None:
            return None, None
        base = await _host_git(cfg.git_dir, "rev-parse", "--verify", "HEAD^{commit}")
    if not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", base):
        if cfg.git_dir is None:
            raise SandboxError(f"base_commit {base!r} is not a full commit id")
        base = await _host_git(cfg.git_dir, "rev-parse", "--verify", f"{base}^{{commit}}")
    return objects.resolve(), base
