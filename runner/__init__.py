"""astra-run: a headless runner for an AI coding agent in CI."""

__version__ = "0.1.0"
