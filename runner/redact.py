"""Secret redaction for every output file and log line (SPEC §4: no output ever holds a secret).

Two kinds of secrets: values we know (the API key, GITHUB_TOKEN, every host value passed into
`sandbox.env` or an MCP server's env/headers) are replaced wherever they appear; strings shaped
like common API keys and tokens are replaced even when we did not know them.

Redaction sees text as its reader will (redact_view.py): after XML references, URL encoding and
`\\u`/`\\x` escapes are decoded and terminal escapes, control and invisible characters are
dropped - a secret spelled that way is masked where it is written. A known value is also found
base64-encoded at every alignment and hex-encoded, across line breaks.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterable
from typing import Any

from runner.redact_view import View, decoded_levels, without_whitespace

MASK = "[REDACTED]"
KNOWN_SECRET_VARS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "GITHUB_TOKEN", "GH_TOKEN", "ACTIONS_RUNTIME_TOKEN")
MIN_SECRET_LEN = 4
"""Shorter values (`1`, `no`) cannot be redacted without garbling every output; `add` says which."""

_B = r"(?<![A-Za-z0-9_\-])"
"""Left boundary: a key starts a token (`flask-debug-...` holds `sk-` but is no key)."""
_E = r"(?![A-Za-z0-9_\-])"
SHAPES = re.compile(
    rf"""(?=[sgxAyne-])(   # the first characters of every shape below: most positions fail at once
        {_B}sk-ant-[a-z]{{2,8}}\d{{2}}-[A-Za-z0-9_\-]{{20,}}{_E}     # Anthropic (api03, admin01, oat01)
      | {_B}sk-(?:proj-|svcacct-|admin-)?                              # OpenAI-style: digits and both cases
          (?=[A-Za-z0-9_\-]*\d)(?=[A-Za-z0-9_\-]*[A-Z])(?=[A-Za-z0-9_\-]*[a-z])[A-Za-z0-9_\-]{{32,}}{_E}
      | {_B}gh[pousr]_[A-Za-z0-9]{{30,}}{_E}                           # GitHub tokens
      | {_B}github_pat_[A-Za-z0-9_]{{40,}}{_E}
      | {_B}xox[abprse]-[A-Za-z0-9\-]{{10,}}{_E}                       # Slack
      | (?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{{16}}(?![A-Z0-9])  # AWS access key ids
      | {_B}AIza[0-9A-Za-z_\-]{{35}}{_E}                               # Google API key
      | {_B}ya29\.[0-9A-Za-z_\-]{{20,}}{_E}                            # Google OAuth access token
      | {_B}glpat-[A-Za-z0-9_\-]{{20,}}{_E}                            # GitLab
      | {_B}npm_[A-Za-z0-9]{{36}}{_E}
      | {_B}eyJ[A-Za-z0-9_\-]{{8,}}\.eyJ[A-Za-z0-9_\-]{{8,}}\.[A-Za-z0-9_\-]{{8,}}{_E}   # JWT
      | -----BEGIN[A-Z ]*PRIVATE\ KEY-----[\s\S]*?-----END[A-Z ]*PRIVATE\ KEY-----
    )""",
    re.VERBOSE,
)
"""Strings shaped like common keys and tokens: each anchored at both ends, and the one generic
shape (`sk-...`) needs digits and both cases, so ordinary names (task names, run ids, paths,
uuids, git hashes) never match; tests/core/test_redact_corpus.py holds both sides."""
_IN_CONTEXT = re.compile(
    r"""(?ix)(?=[btap])(
        \b(?:bearer|token)\s+                                  # Authorization: Bearer X / token X
      | \bauthorization\s*[:=]\s*(?:basic\s+)?
      | \b(?:aws_?secret_?access_?key|aws_?session_?token|secret_?key|api_?key|password|passwd)["']?\s*[:=]\s*["']?
    )(?P<value>[A-Za-z0-9_\-\.=+/~]{16,})"""
)
"""Values that are secrets because of the word before them; masked when they look random."""
MIN_ENCODED_LEN = 8
"""An encoded form (base64 at an offset, hex) shorter than this is not searched for: too common."""


def _random_looking(value: str) -> bool:
    return any(c.isdigit() for c in value) and any(c.isalpha() for c in value)


def encoded_forms(secret: str) -> set[str]:
    """How a secret looks encoded, as a tool writes it: base64 (standard and URL-safe) at each
    of the three alignments it can start at inside longer data (`printf 'X=%s' "$S" | base64`),
    hex in both cases. Percent-encoding, XML references and escapes are decoded instead (View)."""
    raw = secret.encode()
    forms = {raw.hex(), raw.hex().upper()}
    for offset, skip in ((0, 0), (1, 2), (2, 3)):  # characters that still hold the bytes before it
        padded = b"\0" * offset + raw
        whole = padded[: len(padded) // 3 * 3]  # the last group mixes with whatever follows...
        at_end = base64.b64encode(padded).decode().rstrip("=")  # ...unless nothing does
        for encoded in (base64.b64encode(whole).decode()[skip:], at_end[skip:]):
            forms.update({encoded, encoded.replace("+", "-").replace("/", "_")})
    return {f for f in forms if len(f) >= MIN_ENCODED_LEN}


class Redactor:
    """Masks secrets in text written anywhere. Known values come from `secrets` and `add`
    (the API key, GITHUB_TOKEN, `${NAME}` values; issue 18's cloud credentials go through the
    same `add`); `keep` names strings that are never masked by shape (the task name, run id)."""

    def __init__(self, secrets: Iterable[str] = (), keep: Iterable[str] = ()) -> None:
        self._values: set[str] = set()
        self._keep: set[str] = set()
        self._plain: re.Pattern[str] | None = None
        self._encoded: re.Pattern[str] | None = None
        self._ordered: list[str] = []
        self.add(os.environ.get(v, "") for v in KNOWN_SECRET_VARS)
        self.add(secrets)
        self.keep(keep)

    def add(self, values: Iterable[str]) -> list[str]:
        """Redact these values from now on. Returns the ones too short to redact (to warn about)."""
        too_short = []
        for value in values:
            if len(value) >= MIN_SECRET_LEN:
                self._values.add(value)
            elif value:
                too_short.append(value)
        # Longest first, so a secret that contains another is masked whole.
        self._ordered = sorted(self._values, key=len, reverse=True)
        self._plain = re.compile("|".join(map(re.escape, self._ordered))) if self._ordered else None
        encoded = sorted({f for v in self._ordered for f in encoded_forms(v)}, key=len, reverse=True)
        self._encoded = re.compile("|".join(map(re.escape, encoded))) if encoded else None
        return too_short

    def keep(self, values: Iterable[str]) -> None:
        """Never mask these by shape (a task named like a key is still the task's name)."""
        self._keep.update(v for v in values if v)

    @property
    def known_values(self) -> tuple[str, ...]:
        return tuple(self._ordered)

    def _may_hold(self, text: str) -> bool:
        """A fast first look (no maps): could `text` show a secret at all?"""
        levels = decoded_levels(text)
        for level in levels:
            if (self._plain is not None and self._plain.search(level)) or SHAPES.search(level) \
                    or _IN_CONTEXT.search(level):
                return True
        return self._encoded is not None and self._encoded.search(without_whitespace(levels[-1])) is not None

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Where `text` shows a secret - as is, or once decoded as its reader decodes it."""
        found: list[tuple[int, int]] = []
        if not self._may_hold(text):
            return found
        view = View(text)
        for level, layers in view.levels:
            for pattern in (self._plain, SHAPES):
                if pattern is not None:
                    found += [View.to_original(layers, *m.span()) for m in pattern.finditer(level)
                              if pattern is self._plain or not self._kept(m.group(0))]
            found += [View.to_original(layers, *m.span("value")) for m in _IN_CONTEXT.finditer(level)
                      if _random_looking(m.group("value")) and not self._kept(m.group("value"))]
        if self._encoded is not None:
            level, layers = view.compact()
            found += [View.to_original(layers, *m.span()) for m in self._encoded.finditer(level)]
        return _merged(found)

    def _kept(self, match: str) -> bool:
        return any(match in kept for kept in self._keep)

    def text(self, text: str) -> str:
        spans = self.spans(text)
        if not spans:
            return text
        out, pos = [], 0
        for start, end in spans:
            out += [text[pos:start], MASK]
            pos = end
        return "".join([*out, text[pos:]])

    def holds_known_secret(self, data: bytes) -> bool:
        """Whether file content shows a known value in any form `spans` finds (binary files too)."""
        if self._plain is None:
            return False
        levels = decoded_levels(data.decode("utf-8", "surrogateescape"))
        if any(self._plain.search(level) for level in levels):
            return True
        return self._encoded is not None and self._encoded.search(without_whitespace(levels[-1])) is not None

    def known_values_bytes(self, data: bytes) -> bytes:
        """Only the known values (a patch must stay appliable where no secret is involved)."""
        for value in self._ordered:
            data = data.replace(value.encode(), MASK.encode())
        return data

    def data(self, obj: Any) -> Any:
        """Redact every string inside JSON-like data."""
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, dict):
            return {self.text(str(k)): self.data(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [self.data(v) for v in obj]
        return obj


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


HOST_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
"""`${NAME}`: a host variable taken into the sandbox or an MCP server (and redacted)."""


def expand_host_vars(values: dict[str, str], where: str) -> tuple[dict[str, str], list[str]]:
    """`${NAME}` -> the host variable's value. Returns the expanded dict and the values taken
    from the host (to be redacted). A missing variable is a configuration error."""
    from runner.errors import ConfigError

    taken: list[str] = []
    out: dict[str, str] = {}
    for key, raw in values.items():
        def sub(m: re.Match[str], key: str = key) -> str:
            name = m.group(1)
            if name not in os.environ:
                raise ConfigError(f"{where}.{key}: host variable ${{{name}}} is not set")
            taken.append(os.environ[name])
            return os.environ[name]

        out[key] = HOST_VAR.sub(sub, raw)
    return out, taken
