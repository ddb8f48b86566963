"""Secret redaction for every output file and log line (SPEC §4: no output ever holds a secret).

Two kinds of secrets: values we know (the API key, GITHUB_TOKEN, every host value passed into
`sandbox.env` or an MCP server's env/headers) are replaced wherever they appear; strings shaped
like common API keys and tokens are replaced even when we did not know them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

MASK = "[REDACTED]"
KNOWN_SECRET_VARS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "GITHUB_TOKEN", "GH_TOKEN", "ACTIONS_RUNTIME_TOKEN")
MIN_SECRET_LEN = 4
"""Shorter values (`1`, `no`) cannot be redacted without garbling every output; `add` says which."""

SHAPES = re.compile(
    r"""(
        sk-ant-[A-Za-z0-9_\-]{16,}            # Anthropic
      | sk-(?:proj-)?[A-Za-z0-9_\-]{32,}      # OpenAI-style
      | gh[pousr]_[A-Za-z0-9]{30,}            # GitHub tokens
      | github_pat_[A-Za-z0-9_]{40,}
      | xox[abprs]-[A-Za-z0-9\-]{10,}         # Slack
      | AKIA[0-9A-Z]{16}                      # AWS access key id
      | AIza[0-9A-Za-z_\-]{35}                # Google API key
      | glpat-[A-Za-z0-9_\-]{20,}             # GitLab
      | npm_[A-Za-z0-9]{36}
      | -----BEGIN[A-Z ]*PRIVATE\ KEY-----[\s\S]*?-----END[A-Z ]*PRIVATE\ KEY-----
    )""",
    re.VERBOSE,
)
_BEARER = re.compile(r"(?i)\b(bearer|token)\s+[A-Za-z0-9_\-\.=]{16,}")


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._values: set[str] = set()
        self.add(os.environ.get(v, "") for v in KNOWN_SECRET_VARS)
        self.add(secrets)

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
        return too_short

    @property
    def known_values(self) -> tuple[str, ...]:
        return tuple(self._ordered)

    def text(self, text: str) -> str:
        for value in self._ordered:
            if value in text:
                text = text.replace(value, MASK)
        text = SHAPES.sub(MASK, text)
        return _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", text)

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
