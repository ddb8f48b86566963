"""`astra-run github`: event -> who may trigger -> run in the sandbox -> publish with the token.

Three layers, in this order:
1. Who may trigger: the trigger phrase in visible text, no bots (unless allowed), and the
   commenter's repository permission (write, maintain or admin) asked of the REST API.
2. What the agent may do: the normal run (sandbox, policy, limits), configured from the BASE
   branch's `.astra/task.yaml` and AGENTS.md - never from a pull request's head.
3. Publishing, after the sandbox is gone, in this process only: the token is taken out of the
   process environment before anything starts, so no child process (sandbox, verify, MCP, git)
   inherits it; it is used by the API client and handed to the one `git push` that needs it.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import os
import re
import secrets
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import AstraError, ConfigError
from runner.github import comment as tracking
from runner.github import followup, gitops, messages
from runner.github.api import GitHubAPI, GitHubAPIError
from runner.github.event import GitHubEnv, Request, Skip, load_event
from runner.github.gate import decide
from runner.github.progress import LiveComment
from runner.github.prompt import Where, build_prompt
from runner.github.text import TRACKING_MARKER
from runner.models.credentials import credential_values
from runner.problems import Layer
from runner.redact import Redactor
from runner.reports.summary import append_step_summary
from runner.result import RunResult
from runner.settings import Flags, Settings, apply_overrides, load_settings
from runner.task import LoadedTask, build_task, deep_merge, load_task, parse_yaml
from runner.workspace import GitError
from runner.yamlio import Positions

TASK_DEFAULTS = ".astra/task.yaml"
EVENT_KEYS = ("name", "repo", "ref", "prompt", "prompt_file")
"""Keys of .astra/task.yaml the event decides (ignored in the file)."""
_TRUE = {"1", "true", "yes", "on"}
_ALLOW_LOCAL_SANDBOX = False
"""Tests only (monkeypatched): let `astra-run github` use the local backend. Deliberately not an
environment variable or a task key - nothing a repository or workflow controls can set it."""
TOKEN_AUTHOR = "github-actions[bot]"  # noqa: S105 - a login, not a secret
"""Who posts with the Actions GITHUB_TOKEN."""


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def take_token() -> str:
    """GITHUB_TOKEN (or GH_TOKEN) out of the process environment: only this process keeps it."""
    token = os.environ.pop("GITHUB_TOKEN", "")
    gh = os.environ.pop("GH_TOKEN", "")
    return token or gh


@dataclass
class Outputs:
    """Step outputs ($GITHUB_OUTPUT) the action maps to its own."""

    status: str = "skipped"
    exit_code: int = 0
    cost_usd: str = ""
    patch_path: str = ""
    branch: str = ""
    pr_url: str = ""
    final_message: str = ""
    """The agent's last words (redacted), several lines: written with a heredoc delimiter."""

    def write(self, path: str | None) -> None:
        if not path:
            return
        with open(path, "a", encoding="utf-8") as f:
            for key, value in vars(self).items():
                text = str(value)
                if "\n" in text or "\r" in text:
                    # GitHub's multi-line form; the delimiter is random, so the text cannot end it early
                    delimiter = f"ASTRA_EOF_{secrets.token_hex(16)}"
                    f.write(f"{key}<<{delimiter}\n{text.replace(chr(13), '')}\n{delimiter}\n")
                else:
                    f.write(f"{key}={text}\n")


def _say(message: str) -> None:
    print(f"astra-run github: {message}", file=sys.stderr)


def _is_own_comment(comment: dict[str, Any]) -> bool:
    """Posted by the token's identity, not merely carrying our (predictable) marker: anyone can
    write the marker into a comment of their own. With the Actions token that is
    `github-actions[bot]`; with a GitHub App's token, a Bot account acting through that app. A
    personal access token's comments are never adopted (a re-run posts a new comment)."""
    user = comment.get("user")
    if not isinstance(user, dict) or user.get("type") != "Bot":
        return False
    login = str(user.get("login") or "")
    return login == TOKEN_AUTHOR or (login.endswith("[bot]") and isinstance(comment.get("performed_via_github_app"),
                                                                            dict))


def cmd_github(args: argparse.Namespace) -> int:
    publish: str = getattr(args, "publish", None) or "comment"
    settings = load_settings()
    token = take_token()
    env = dataclasses.replace(GitHubEnv.from_environ(os.environ, settings.trigger_phrase), token=token)
    event = load_event(env.event_path)
    outputs = Outputs()
    api = GitHubAPI(env.api_url, env.repository, token)
    req = decide(env, event, os.environ, api)
    if isinstance(req, Skip):
        # No reply, whoever asked: a denial comment would let anyone make the bot post (docs/github.md).
        _say(f"no run: {req.reason}")
        append_step_summary(f"astra-run: no run ({req.reason})")
        outputs.write(env.output_file)
        return 0
    return _GitHubRun(env, api, req, publish, settings, event, outputs).go()


class _GitHubRun:
    def __init__(self, env: GitHubEnv, api: GitHubAPI, req: Request, publish: str, settings: Settings,
                 event: dict[str, Any], outputs: Outputs) -> None:
        self.env, self.api, self.req, self.publish = env, api, req, publish
        self.settings, self.event, self.outputs = settings, event, outputs
        self.checkout = Path.cwd()
        self.comment_id: int | None = None
        self.mark = tracking.marker(env.run_id, str(req.comment_id or f"{env.event_name}-{req.number}"))
        self.redactor = Redactor([env.token, *credential_values()])  # comments never hold a provider credential
        self.pull: dict[str, Any] = {}
        self.git_dir = Path()
        self._defaults_root: Any = None
        self.steps = ""
        """The last progress checklist (shown, collapsed, in the final comment)."""
        self._run_redact: Callable[[str], str] = lambda text: text

    # -------------------------------------------------------------------------- flow

    def go(self) -> int:
        """The run, from the tracking comment to publishing. Whatever happens - a configuration
        error, a failed push, an unexpected exception, an interrupt - the tracking comment ends up
        saying so (never "working" forever) and the step outputs are written."""
        result: RunResult | None = None
        patch_path = Path()
        outcome = tracking.Outcome()
        try:
            self.git_dir = gitops.git_dir_of(self.checkout)
            where = self._resolve()
            self._start_tracking(where)
            task = self._task(where)
            result = self._redacted(asyncio.run(self._run(task, where)))
            out_dir = Path(task.spec.outputs.dir).expanduser().resolve()
            patch_path = out_dir / "patch.diff"
            self.outputs.status, self.outputs.exit_code = result.status, result.exit_code
            self.outputs.cost_usd = "" if result.cost_usd is None else f"{result.cost_usd:.6f}"
            self.outputs.patch_path = str(patch_path)
            self.outputs.final_message = result.final_message
            exit_code = result.exit_code
            try:
                self._publish(result, patch_path, where, outcome)
            except AstraError as exc:
                outcome.not_published = f"publishing failed: {exc}"
                exit_code = exit_code or exc.exit_code
            self.outputs.exit_code = exit_code
            self._finish_tracking(result, patch_path, outcome)
            if outcome.not_published:
                append_step_summary(f"astra-run: not published: {outcome.not_published}")
            for line in outcome.published:
                append_step_summary(line)
            return exit_code
        except AstraError as exc:
            self._report_failure(result, patch_path, outcome, str(exc), exc.exit_code)
            raise
        except Exception as exc:  # a bug or an unexpected OS error: report it, exit 4
            detail = self.redactor.text(f"internal error: {type(exc).__name__}: {exc}")
            _say(detail)
            print(self.redactor.text("".join(traceback.format_exception(exc))), file=sys.stderr)
            self._report_failure(result, patch_path, outcome, detail, 4)
            return 4
        except BaseException:  # KeyboardInterrupt, SystemExit: say so, then go on stopping
            self._report_failure(result, patch_path, outcome, "interrupted", 130, status="interrupted")
            raise
        finally:
            self.outputs.write(self.env.output_file)

    def _report_failure(self, result: RunResult | None, patch_path: Path, outcome: tracking.Outcome, detail: str,
                        code: int, status: str = "error") -> None:
        """The tracking comment and outputs after `go` stopped early. Never raises."""
        try:
            if result is None:
                self.outputs.status, self.outputs.exit_code = status, code
                self._fail_tracking("could not start" if status == "error" else status, detail)
            else:  # the run is over: report it, with why it was not (fully) published
                self.outputs.exit_code = self.outputs.exit_code or code
                outcome.not_published = f"publishing failed: {detail}"
                self._finish_tracking(result, patch_path, outcome)
        except Exception as exc:  # the original error is the one to raise
            _say(self.redactor.text(f"could not report the failure on GitHub: {type(exc).__name__}: {exc}"))

    async def _run(self, task: LoadedTask, where: Where) -> RunResult:
        from runner.reports.console import Console
        from runner.run import Interrupt, install_signal_handlers, run_task

        interrupt = Interrupt()
        install_signal_handlers(interrupt)
        console = Console(sys.stdout, verbosity=0)
        live = None
        if self._comments_on() and self.comment_id is not None:
            live = LiveComment(console, post=self._update_tracking, frame=self._progress_body)
        try:
            result = await run_task(task, self.settings, console=live or console,
                                    interrupt=interrupt, instructions_commit=where.base_sha,
                                    secrets=[self.env.token] if self.env.token else [])
            self._run_redact = console.redact  # the run's redactor: its sandbox.env values too
            return result
        finally:
            if live is not None:
                await asyncio.to_thread(live.close)
                self.steps = live.checklist()

    def _clean(self, text: str) -> str:
        """Redacted of every secret the run knew and the token (before any escaping, which would
        hide a secret from the redactor)."""
        return self.redactor.text(self._run_redact(text))

    def _redacted(self, result: RunResult) -> RunResult:
        """The run's result with its free text redacted: all that is published is made from it."""
        clean = self._clean
        return dataclasses.replace(
            result, reason=clean(result.reason), final_message=clean(result.final_message),
            verify=[dataclasses.replace(v, name=clean(v.name), output=clean(v.output)) for v in result.verify])

    def _update_tracking(self, body: str) -> None:
        assert self.comment_id is not None
        self.api.update_comment(self.comment_id, self.redactor.text(body))

    def _progress_body(self, checklist: str) -> str:
        return tracking.progress_body(self.mark, self.env.run_url, self._what(), checklist)

    def _what(self) -> str:
        return f"this {'pull request' if self.req.kind == 'pull_request' else 'issue'}"

    # ------------------------------------------------------------------- where to work

    def _fetch(self, src: str, dst: str) -> str:
        return gitops.fetch(self.git_dir, src, dst, self.env.token, self.env.server_url)

    def _resolve(self) -> Where:
        req = self.req
        if req.kind == "pull_request":
            assert req.number is not None
            pull = req.extra.get("pull") or {}
            if not (isinstance(pull, dict) and isinstance(pull.get("head"), dict)
                    and isinstance(pull.get("base"), dict)):
                pull = self.api.pull(req.number)
            self.pull = pull
            head, base = pull["head"], pull["base"]
            base_ref = self._branch_name(base.get("ref"))
            head_repo = (head.get("repo") or {}).get("full_name") if isinstance(head.get("repo"), dict) else None
            same_repo = bool(head_repo) and str(head_repo).lower() == self.env.repository.lower()
            base_sha = self._fetch(f"refs/heads/{base_ref}", "refs/astra/base")
            if same_repo and followup.is_own_pull(pull, self.env.repository, messages.PR_MARKER):
                return self._follow_up_where(req.number, pull, base_ref, base_sha)
            try:
                head_sha = self._fetch(f"refs/pull/{req.number}/head", "refs/astra/head")
            except GitError:
                head_sha = str(head.get("sha") or "")
                if not re.fullmatch(r"[0-9a-f]{40}", head_sha) or not gitops.has_commit(self.git_dir, head_sha):
                    raise
            head_ref = str(head.get("ref") or "")
            return Where(base_ref, base_sha, head_sha, head_ref, same_repo)
        if req.kind == "issue":
            assert req.number is not None
            own = followup.open_pull_for_issue(self.api.pulls(), req.number, self.env.repository, messages.PR_MARKER)
            if own is not None:
                self.pull = own
                base_ref = self._branch_name((own.get("base") or {}).get("ref"))
                base_sha = self._fetch(f"refs/heads/{base_ref}", "refs/astra/base")
                return self._follow_up_where(int(own["number"]), own, base_ref, base_sha)
            repo = self.event.get("repository")
            default = repo.get("default_branch") if isinstance(repo, dict) else None
            base_ref = self._branch_name(default or self.env.ref_name or "main")
            return Where(base_ref, self._fetch(f"refs/heads/{base_ref}", "refs/astra/base"))
        repo = self.event.get("repository")
        default = repo.get("default_branch") if isinstance(repo, dict) else None
        base_ref = self._branch_name(self.env.ref_name or default or "main")
        return Where(base_ref, gitops.rev_parse(self.git_dir, "HEAD"))

    def _follow_up_where(self, pr_number: int, pull: dict[str, Any], base_ref: str, base_sha: str) -> Where:
        """Continue astra-run's own branch: its head (fetched by name: what a fast-forward push
        builds on), what the earlier runs said, and the thread's comments since."""
        assert self.req.number is not None
        branch = self._branch_name((pull.get("head") or {}).get("ref"))
        head_sha = self._fetch(f"refs/heads/{branch}", "refs/astra/head")
        comments, left_out = followup.comments_since(self.api.comments(self.req.number), self.req.comment_id)
        follow = followup.FollowUp(pr_number, branch, followup.earlier_messages(self.git_dir, base_sha, head_sha),
                                   comments, left_out)
        _say(f"following up on pull request #{pr_number} (branch {branch})")
        return Where(base_ref, base_sha, head_sha, branch, True, follow_up=follow)

    # --------------------------------------------------------------------------- task

    def _defaults(self, where: Where) -> dict[str, Any]:
        source = f"{where.base_ref}:{TASK_DEFAULTS}"
        text = gitops.read_file_at(self.git_dir, where.base_sha, TASK_DEFAULTS, "task defaults file", source=source)
        if text is None:
            return {}
        data, root = parse_yaml(text, source)  # the task file's limits: depth, values, duplicate keys
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise ConfigError(f"{source}:1: (top level): expected a mapping of keys")
        self._defaults_root = root
        for key in EVENT_KEYS:
            if key in data:
                _say(f"{source}: {key!r} is decided by the event; the file's value is ignored")
                data.pop(key)
        return data

    def _task(self, where: Where) -> LoadedTask:
        task = apply_overrides(self._build_task(where), self.settings, Flags())
        backend = task.spec.sandbox.backend
        if backend != "docker" and not _ALLOW_LOCAL_SANDBOX:
            raise ConfigError(
                f"astra-run github runs only with the Docker sandbox, not {backend!r} (from ASTRA_SANDBOX or "
                f"sandbox.backend in {TASK_DEFAULTS}): with the local backend the agent's commands are host "
                "processes that could read the GitHub token from this process (/proc). Use `backend: docker`.")
        on_host = [name for name, srv in task.spec.mcp_servers.items() if srv.command and srv.where == "host"]
        if on_host and not _ALLOW_LOCAL_SANDBOX:
            raise ConfigError(
                f"astra-run github does not start MCP servers on the host ({', '.join(on_host)}): a host process "
                "could read the GitHub token from this process (/proc). Use `where: sandbox` or an HTTP server.")
        return task

    def _build_task(self, where: Where) -> LoadedTask:
        req, defaults = self.req, self._defaults(where)
        task_file = str(req.extra.get("task_file") or "")
        if req.kind == "none" and task_file:
            layer = Layer(f"{where.base_ref}:{TASK_DEFAULTS}", self._defaults_root or Positions())
            task = load_task(self.checkout / task_file, overrides=defaults, overrides_layer=layer)
        else:
            prompt = build_prompt(req, self.env.repository, where)
            if not prompt.strip():
                raise ConfigError(f"{self.env.event_name}: no task: set ASTRA_TASK (a task file) or ASTRA_PROMPT, "
                                  "or give the dispatch input `prompt`")
            name = {"pull_request": f"gh-pr-{req.number}", "issue": f"gh-issue-{req.number}"}.get(
                req.kind, f"gh-{self.env.event_name}")
            data = deep_merge(defaults, {"name": name, "repo": str(self.checkout),
                                         "ref": where.head_sha or where.base_sha, "prompt": prompt})
            task = build_task(data, root=self._defaults_root, source=f"{where.base_ref}:{TASK_DEFAULTS}",
                              base_dir=self.checkout)
        return task

    # ----------------------------------------------------------------------- tracking

    def _comments_on(self) -> bool:
        return self.publish != "none" and self.req.number is not None

    def _start_tracking(self, where: Where) -> None:
        """This request's tracking comment: found again by its marker on a re-run of the job; for a
        follow-up, the thread's existing astra-run tracking comment (SPEC §8: the same comment is
        updated, a sticky comment), else a new one."""
        if not self._comments_on():
            return
        assert self.req.number is not None
        body = tracking.working_body(self.mark, self.env.run_url, self._what())
        own = [c for c in self.api.comments(self.req.number)
               if isinstance(c.get("body"), str) and isinstance(c.get("id"), int) and _is_own_comment(c)]
        same = [c for c in own if c["body"].startswith(self.mark)]
        sticky = [c for c in own if c["body"].startswith(TRACKING_MARKER)] if where.follow_up is not None else []
        for c in (same or sticky[-1:]):
            self.comment_id = c["id"]
            self.api.update_comment(c["id"], body)
            return
        created = self.api.create_comment(self.req.number, body)
        self.comment_id = created.get("id") if isinstance(created.get("id"), int) else None

    def _post(self, body: str) -> None:
        if not self._comments_on():
            return
        assert self.req.number is not None
        body = self.redactor.text(body)  # built from the redacted result: the token is all that is left
        try:
            if self.comment_id is not None:
                self.api.update_comment(self.comment_id, body)
            else:
                self.api.create_comment(self.req.number, body)
        except GitHubAPIError as exc:
            _say(f"could not update the tracking comment: {exc}")

    def _fail_tracking(self, headline: str, detail: str) -> None:
        self._post(tracking.simple_body(self.mark, self.env.run_url, headline, detail))

    def _finish_tracking(self, result: RunResult, patch_path: Path, outcome: tracking.Outcome) -> None:
        try:
            patch = patch_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            patch = ""
        self._post(tracking.result_body(self.mark, self.env.run_url, result, patch, outcome, steps=self.steps))

    # ----------------------------------------------------------------------- publish

    def _publish(self, result: RunResult, patch_path: Path, where: Where, outcome: tracking.Outcome) -> None:
        if self.publish not in ("branch", "pr"):
            return
        if result.exit_code != 0:
            outcome.not_published = f"the run did not succeed ({result.status}); the patch is in the artifact"
            return
        if not result.patch.files_changed or not patch_path.is_file() or not patch_path.stat().st_size:
            outcome.not_published = "there are no changes to push"
            return
        if self.req.kind == "pull_request" and not where.same_repo:
            outcome.not_published = ("the pull request comes from a fork: astra-run never pushes a fork's commits "
                                     "to this repository (nor to the fork); apply the patch below yourself")
            return
        base = result.base_commit or where.head_sha or where.base_sha
        commit = gitops.commit_patch(self.git_dir, base, patch_path, self._message(result))
        links = gitops.risky_symlinks(commit)
        if links:
            outcome.not_published = (f"the changes add symlinks that are or point into .github "
                                     f"({', '.join(links[:5])}); such symlinks are never published")
            return
        protected = gitops.protected_files(commit.files)
        if protected and not _flag("ASTRA_ALLOW_WORKFLOW_CHANGES"):
            outcome.not_published = (f"the changes touch {', '.join(protected[:5])}; changes to .github itself or "
                                     f"under {' and '.join(d + '/' for d in gitops.PROTECTED_DIRS)} are published "
                                     "only when ASTRA_ALLOW_WORKFLOW_CHANGES=true (input allow_workflow_changes)")
            return
        if where.follow_up is not None:  # astra-run's own branch: a fast-forward, never a new pull request
            branch = where.follow_up.branch
            gitops.push(self.git_dir, commit.sha, branch, self.env.token, self.env.server_url)
            self.outputs.branch = branch
            self.outputs.pr_url = f"{self.env.server_url}/{self.env.repository}/pull/{where.follow_up.pr_number}"
            outcome.published.append(f"Pushed {commit.sha[:12]} to branch `{branch}` of pull request "
                                     f"#{where.follow_up.pr_number}.")
            return
        to_head = self.req.kind == "pull_request" and _flag("ASTRA_PUSH_TO_PR_HEAD") and self.publish == "branch"
        branch = self._branch_name(where.head_ref) if to_head else self._new_branch()
        gitops.push(self.git_dir, commit.sha, branch, self.env.token, self.env.server_url)
        self.outputs.branch = branch
        url = f"{self.env.server_url}/{self.env.repository}/tree/{branch}"
        outcome.published.append(
            f"Pushed {commit.sha[:12]} to {'the pull request branch' if to_head else 'branch'} "
            f"[`{branch}`]({url}).")
        if self.publish == "pr":
            pr_base = where.head_ref if self.req.kind == "pull_request" else where.base_ref
            pr = self.api.create_pull(title=self._title(), head=branch, base=pr_base, body=self._pr_body(result),
                                      draft=True)
            self.outputs.pr_url = str(pr.get("html_url") or "")
            outcome.published.append(f"Opened draft pull request {self.outputs.pr_url or '(no URL returned)'}.")

    def _branch_name(self, value: object) -> str:
        name = str(value or "")
        if not gitops.check_branch_name(self.git_dir, name):
            raise ConfigError(f"refusing the branch name {name!r} from the event")
        return name

    def _new_branch(self) -> str:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
        req = self.req
        what = {"pull_request": f"pr-{req.number}", "issue": f"issue-{req.number}"}.get(req.kind, self.env.event_name)
        return f"astra/{what.replace('_', '-')}-{stamp}"

    def _title(self) -> str:
        return messages.title(self.req, self.env.event_name, self.env.run_id)

    def _message(self, result: RunResult) -> str:
        return messages.commit_message(self._title(), result.final_message, self.env.run_url, self.req.actor)

    def _pr_body(self, result: RunResult) -> str:
        return messages.pr_body(self.req, self.env.run_url, result.final_message)
