"""The taskbroker fixtures (``taskbroker_app``, ``run_task``) come with taskbroker itself."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def taskbroker_load_plugins() -> str:
    """Load only this distribution's plugin on the test worker, whatever else is installed."""
    return "taskbroker-hello"
