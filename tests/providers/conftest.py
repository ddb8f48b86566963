"""Isolation for the provider tests: no real cloud credentials, files or metadata servers.

Every AWS and Google lookup stays on this machine: the instance-metadata (IMDS) and GCE metadata
probes are off, the AWS config and credential files and gcloud's config point at empty places.
`cloud_env(tmp_path)` is the same environment for a CLI subprocess.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

PREFIXES = ("ANTHROPIC_", "AWS_", "GOOGLE_", "CLOUDSDK_", "GCLOUD_", "CLOUD_ML_")


def cloud_env(tmp_path: Path) -> dict[str, str]:
    """os.environ without any provider variable, with every metadata probe off."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(PREFIXES)}
    env.update(AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-aws-credentials"), NO_GCE_CHECK="true",
               CLOUDSDK_CONFIG=str(tmp_path / "no-gcloud"))
    return env


@pytest.fixture(autouse=True)
def _no_cloud(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith(PREFIXES):
            monkeypatch.delenv(name)
    for name, value in cloud_env(tmp_path).items():
        if os.environ.get(name) != value:
            monkeypatch.setenv(name, value)
    import google.auth.compute_engine._metadata as gce_metadata

    monkeypatch.setattr(gce_metadata, "_NO_GCE_CHECK", True)  # read at its import: set it whatever the order
    import anthropic._base_client
    import anthropic.lib.aws._auth

    anthropic.lib.aws._auth._get_session.cache_clear()  # the SDK keeps one boto3 session per process

    monkeypatch.setattr(anthropic._base_client, "INITIAL_RETRY_DELAY", 0.01)
    monkeypatch.setattr(anthropic._base_client, "MAX_RETRY_DELAY", 0.02)
    yield
