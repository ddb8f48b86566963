"""Issues 12.4, 12.5 and 17.3: redaction sees text as its reader will, finds known values in the
encodings a hostile model reaches for, and has neither false positives on ordinary text nor
fewer true positives (a table-driven corpus of real-looking text)."""

from __future__ import annotations

import base64
import contextlib
import html
import random
import string
import textwrap
import urllib.parse
from pathlib import Path

import pytest

from runner.redact import MASK, Redactor
from runner.redact_view import View, strip_hidden
from tests.security.helpers import attack, bash, every_output, result

RNG = random.Random(12)


def rand(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(RNG.choice(alphabet) for _ in range(n))


ORDINARY = [  # must come out exactly as they went in
    "flask-debug-flag-for-the-long-running-worker-pool",
    "mask-generation-pipeline-refactor-step-two-and-three-final",
    "risk-assessment-dashboard-2026-release-candidate-v2",
    "task-sk-learn-compat-upgrade-to-the-newest-version-now",
    "flask-debug-flag-20261201T234356Z-411250",
    "run flask-debug-flag-20261201T234356Z-411250: task flask-debug-flag, model claude-sonnet-5-5",
    "/home/runner/work/widgets/widgets/src/tokenizer/tokens_and_keys.py",
    "3f2b8c1e-9a4d-4e7b-8c2a-1d5e6f7a8b9c",
    "commit a2f2448c0d9e3b1f5a6e7d8c9b0a1f2e3d4c5b6a (HEAD -> main)",
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "Bearer of bad news: the token count was exceeded after 12345 tokens",
    "the api_key parameter is optional; password: hunter",
    "pytest -k test_token_refresh_handles_expired_tokens_gracefully",
    "https://example.org/search?q=flask%20debug&lang=en&page=2",
    "&lt;div class=&quot;x&quot;&gt; &amp; co",
    "def sk_learn_wrapper(estimator_with_a_long_name): return estimator_with_a_long_name",
    "AKIAisnotakey and ghp_ alone and xoxb- alone and eyJ alone",
    "2026-12-01T23:43:56+00:00 container 13f511f78259fd15e2bbb22dcfd9269a2c70c7439bc9271cdb89cde8b9052b65",
    "desk-booking-api-v2-migrate-to-postgres-sqlalchemy-2-0-async",
    "tokenizer.encode(text) -> list[int]  # token ids, not secrets",
]

SECRETS = [  # each must vanish whole, wherever it sits
    "sk-ant-api03-" + rand(93, string.ascii_letters + string.digits + "-_") + "AA",
    "sk-ant-admin01-" + rand(80, string.ascii_letters + string.digits + "-_"),
    "sk-proj-" + rand(20) + "T3BlbkFJ" + rand(20),
    "ghp_" + rand(36),
    "github_pat_" + rand(22) + "_" + rand(59),
    "ghs_" + rand(36),
    "AKIA" + rand(16, string.ascii_uppercase + string.digits),
    "ASIA" + rand(16, string.ascii_uppercase + string.digits),
    "ya29.a0AfH6SMB" + rand(60, string.ascii_letters + string.digits + "-_"),
    "AIza" + rand(35, string.ascii_letters + string.digits + "-_"),
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "xoxb-" + rand(12, string.digits) + "-" + rand(24),
    "glpat-" + rand(20),
]
IN_CONTEXT = [  # secret because of the word before it
    ("aws_secret_access_key = ", "wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + rand(10)),
    ("AWS_SESSION_TOKEN=", "FwoGZXIvYXdzE" + rand(60, string.ascii_letters + string.digits + "/+")),
    ("Authorization: Bearer ", "abcDEF123456ghiJKL789mno"),
    ("curl -H 'Authorization: token ", "a1b2c3d4e5f6a7b8c9d0e1f2a3b4"),
]


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_text_is_never_redacted(text: str) -> None:
    assert Redactor().text(text) == text


@pytest.mark.parametrize("secret", SECRETS)
@pytest.mark.parametrize("where", ["{}", "key={}", "prefix {} suffix", '"{}",', "x:{}\n", "({})"])
def test_real_shaped_keys_are_redacted_anywhere(secret: str, where: str) -> None:
    out = Redactor().text(where.format(secret))
    assert out == where.format(MASK), out


@pytest.mark.parametrize(("before", "secret"), IN_CONTEXT)
def test_secrets_named_by_their_context_are_redacted(before: str, secret: str) -> None:
    out = Redactor().text(before + secret)
    assert secret not in out and out.startswith(before.strip()[:5]) and MASK in out, out


def test_task_names_and_run_ids_are_kept_even_when_shaped_like_a_key() -> None:
    name = "sk-ant-api03-" + "a1B2" * 6
    r = Redactor(keep=[name, f"{name}-20261201T000000Z-abc123"])
    assert r.text(f"task {name}, run {name}-20261201T000000Z-abc123") == \
        f"task {name}, run {name}-20261201T000000Z-abc123"


KNOWN = "s3cr3t/p@ss+w0rd=Xy!"


def _encodings(secret: str) -> dict[str, str]:
    raw = secret.encode()
    long = secret * 5
    return {
        "raw": f"DB_PASS={secret}",
        "base64@0": base64.b64encode(raw).decode(),
        "base64@1": base64.b64encode(b"=" + raw + b"\n").decode(),
        "base64@2": base64.b64encode(b"S=" + raw).decode(),
        "base64 of DB_PASS=...": base64.b64encode(b"DB_PASS=" + raw).decode(),
        "base64url": base64.urlsafe_b64encode(b"x" + raw).decode(),
        "base64 wrapped at 76": "\n".join(textwrap.wrap(base64.b64encode(b"ab" + long.encode()).decode(), 76)),
        "hex": raw.hex(),
        "HEX": raw.hex().upper(),
        "url": urllib.parse.quote(secret, safe=""),
        "url, every byte": "".join(f"%{b:02X}" for b in raw),
        "xml decimal": "".join(f"&#{ord(c)};" for c in secret),
        "xml hex, mixed": "".join(f"&#x{ord(c):x};" if i % 2 else c for i, c in enumerate(secret)),
        "ansi inside": secret[:5] + "\x1b[0m\x1b[31m" + secret[5:],
        "osc inside": secret[:3] + "\x1b]0;title\x07" + secret[3:],
        "zero-width and bidi inside": secret[:4] + "\u200b" + secret[4:9] + "\u202e" + secret[9:],
        "xml-escaped ansi inside": secret[:6] + "&#x1b;[1m" + secret[6:],
        "\\u escapes": "".join(f"\\u{ord(c):04x}" for c in secret),
        "\\x escapes": "".join(f"\\x{ord(c):02x}" for c in secret),
        "carriage return inside": secret[:7] + "\r" + secret[7:],
    }


def _reader_sees(text: str) -> str:
    """Everything a reader could decode out of `text`, joined."""
    views = [level for level, _ in View(text, depth=3).levels]
    views += [html.unescape(text), urllib.parse.unquote(text), strip_hidden(html.unescape(text))]
    compact = "".join(text.split())
    for chunk in (compact, compact[1:], compact[2:], compact[3:]):
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            for cut in range(4):
                with contextlib.suppress(ValueError):
                    views.append(decode(chunk[cut:][: (len(chunk) - cut) // 4 * 4]).decode("latin-1"))
    with contextlib.suppress(ValueError):
        views.append(bytes.fromhex(compact).decode("latin-1"))
    return "\n".join(views)


@pytest.mark.parametrize("form", list(_encodings(KNOWN)))
def test_a_known_value_is_masked_in_every_encoding(form: str) -> None:
    text = f"output before\n{_encodings(KNOWN)[form]}\nafter"
    r = Redactor([KNOWN])
    out = r.text(text)
    assert MASK in out, (form, out)
    assert KNOWN not in _reader_sees(out), (form, out)
    assert out.startswith("output before\n") and out.endswith("\nafter")
    assert r.holds_known_secret(text.encode())


def test_holds_known_secret_has_no_false_positive() -> None:
    r = Redactor([KNOWN])
    assert not r.holds_known_secret("\n".join(ORDINARY).encode() + bytes(range(256)))


# ----------------------------------------------------------------- through the CLI, in docker

JUNIT = """<?xml version="1.0"?>
<testsuite name="t"><testcase classname="c" name="leak">
<failure message="pass is {refs}">{ansi}</failure>
<system-out><![CDATA[{a}]]><![CDATA[{b}]]></system-out>
</testcase></testsuite>
"""


@pytest.mark.docker
def test_a_secret_hidden_in_junit_xml_is_redacted(tmp_path: Path) -> None:
    """A planted check writes sandbox.env's secret into $ASTRA_JUNIT as character references, with
    an ANSI escape in the middle, and split over two CDATA sections."""
    script = ("import os\ns = os.environ['DB_PASS']\nx = open(os.environ['ASTRA_JUNIT'], 'w')\n"
              f"x.write({JUNIT!r}.format(refs=''.join('&#x%x;' % ord(c) for c in s), "
              "ansi=s[:4] + '&#x1b;[0m' + s[4:], a=s[:6], b=s[6:]))\nprint(s[:5] + '\\x1b[1m' + s[5:])\n")
    proc, out = attack(tmp_path, [bash("echo hello")], env={"HOST_DB_PASS": KNOWN},
                       files={"planted_check.py": script}, sandbox={"env": {"DB_PASS": "${HOST_DB_PASS}"}},
                       verify=[{"name": "leaky", "run": "python3 planted_check.py; false"}])
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert 'name="leak"' in (out / "junit.xml").read_text()  # the planted file was merged
    for name in ("junit.xml", "result.json", "summary.md", "trajectory.jsonl"):
        text = (out / name).read_text()
        assert KNOWN not in _reader_sees(text), name
    assert KNOWN not in _reader_sees(proc.stdout + proc.stderr)


@pytest.mark.docker
def test_a_secret_encoded_into_files_never_reaches_the_patch(tmp_path: Path) -> None:
    commands = " && ".join([
        "printf 'DB_PASS=%s' \"$DB_PASS\" | base64 > env.b64",
        "printf 'xx%s' \"$DB_PASS\" | base64 -w0 > env2.b64",
        "printf '%s' \"$DB_PASS\" | od -An -tx1 | tr -d ' \\n' > env.hex",
        "python3 -c \"import os,urllib.parse;print(urllib.parse.quote(os.environ['DB_PASS'],safe=''))\" > env.url",
        "python3 -c \"import os;print(''.join('&#%d;' % ord(c) for c in os.environ['DB_PASS']))\" > env.xml",
        "echo ordinary > notes.txt", "cat env.b64 env2.b64 env.hex env.url env.xml",
    ])
    proc, out = attack(tmp_path, [bash(commands)], env={"HOST_DB_PASS": KNOWN},
                       sandbox={"env": {"DB_PASS": "${HOST_DB_PASS}"}})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    patch = (out / "patch.diff").read_text()
    assert "notes.txt" in patch
    for leaked in ("env.b64", "env2.b64", "env.hex", "env.url", "env.xml"):
        assert f"{leaked} (holds a secret)" in result(out)["patch_excluded"], result(out)["patch_excluded"]
        assert leaked not in patch
    assert KNOWN not in _reader_sees(every_output(out))
    assert KNOWN not in _reader_sees(proc.stdout + proc.stderr)
