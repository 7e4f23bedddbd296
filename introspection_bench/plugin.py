"""pytest plugin: options, session fixtures, terminal summary and report writing.

Heavy imports (torch, transformers) happen inside fixtures so `pytest --help` stays fast.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the suite's options in one group."""
    parser.getgroup("introspection-bench", "introspection-bench: concept-injection protocols")
