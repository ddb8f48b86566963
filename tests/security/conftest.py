"""The GitHub world (a fake API, an origin repository, the Actions environment) for test_publish."""

from tests.github.conftest import world  # noqa: F401 - a fixture, registered by being here
