"""The fuzz tiers' pytest marker."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "fuzz_quick: the quick fuzz tier (hostile inputs through the real CLI; runs with the suite)"
    )
