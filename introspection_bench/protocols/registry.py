"""Which protocol owns which suite test: the six built-ins and every registered `Experiment`.

`register` is called where a user declares an experiment (a test file or conftest.py): from then
on the suite's fixtures, the runner, the summary and `--baseline` treat it like a built-in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from introspection_bench.errors import ConfigError

BUILTIN_NAMES = (
    "injected_thought",
    "thought_vs_text",
    "prefill",
    "intentional_control",
    "yes_bias",
    "alternative_prompt",
)
_REGISTERED: dict[str, Any] = {}


def is_builtin(name: str) -> bool:
    """Whether `name` is one of the package's own protocols."""
    return name in BUILTIN_NAMES


def register(experiment: Any) -> Any:
    """Make an `Experiment` runnable by the suite; returns it (usable as a decorator target).

    Registering the same name twice keeps the latest declaration (a re-imported test module).

    Raises:
        ConfigError: When the name or one of its test names is taken by another protocol.

    """
    from introspection_bench.runner import TEST_OWNERS

    if is_builtin(experiment.NAME):
        raise ConfigError(
            f"protocol name {experiment.NAME!r} is a built-in protocol; choose another name"
        )
    for test in experiment.TESTS:
        owner = TEST_OWNERS.get(test) or _owner_of(test)
        if owner is not None and owner.NAME != experiment.NAME:
            raise ConfigError(
                f"test name {test!r} of {experiment.NAME} already belongs to {owner.NAME}; "
                "rename the check"
            )
    _REGISTERED[experiment.NAME] = experiment
    return experiment


def registered() -> tuple[Any, ...]:
    """Every registered (non built-in) experiment, in registration order."""
    return tuple(_REGISTERED.values())


def _owner_of(test: str) -> Any:
    for experiment in _REGISTERED.values():
        if test in experiment.TESTS:
            return experiment
    return None


def owner(test: str, recorded: Mapping[str, Any] | None = None) -> Any:
    """The protocol (module or `Experiment`) that builds the trials of `test` and decides it.

    Args:
        test: The test name.
        recorded: Test name -> protocol rebuilt from a run's declarations
            (`recorded.rebuild_all`); these win over live registrations, since a finished run
            is decided by the rules it recorded.

    Raises:
        ConfigError: For an unknown test name, listing the known ones.

    """
    from introspection_bench.runner import TEST_OWNERS

    found = TEST_OWNERS.get(test) or (recorded or {}).get(test) or _owner_of(test)
    if found is None:
        known = sorted(set(TEST_OWNERS) | {t for e in _REGISTERED.values() for t in e.TESTS})
        raise ConfigError(
            f"unknown test {test!r}; known: {', '.join(known)} "
            "(declare your own with introspection_bench.register)"
        )
    return found


def per(test: str) -> str:
    """How `test` is parametrized: `cell`, `layer` or `run`."""
    found = owner(test)
    check = getattr(found, "check", None)
    if check is not None and not isinstance(found, type(register)):
        try:
            return str(check(test).per)
        except (ConfigError, AttributeError):
            pass
    return "cell"
