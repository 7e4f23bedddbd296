"""introspection-bench: concept-injection introspection experiments as a pytest suite."""

from __future__ import annotations

__version__ = "0.1.0"
