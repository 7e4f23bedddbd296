"""What suite tests and the plugin share: verdicts as assertable results, ini options, markers.

A suite test states its claim and asserts it::

    def test_injected_thought(verdict, cell):
        detection = verdict("injected_thought", cell)
        assert detection == PASS

`detection == PASS` is the protocol's statistical rule (intervals, Holm p-value, threshold); on
failure `pytest_assertrepr_compare` prints the verdict's one line. No torch, no model here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from introspection_bench.protocols.base import Verdict

#: Option dest -> (default, type) for every option that also has an ini twin.
_INI_DEFAULTS: dict[str, tuple[Any, Any]] = {}


class _Pass:
    """The expected outcome of a suite test: its rule holds."""

    def __repr__(self) -> str:
        return "PASS"


PASS = _Pass()
"""Compare a `Result` with it: `assert verdict(test, cell) == PASS`."""


@dataclass(frozen=True)
class Result:
    """A decided suite test: equal to `PASS` exactly when its verdict passed."""

    verdict: Verdict

    def __eq__(self, other: object) -> bool:
        if other is PASS:
            return self.verdict.passed
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.verdict.message)

    @property
    def passed(self) -> bool:
        """Whether the rule held."""
        return self.verdict.passed

    @property
    def metrics(self) -> Any:
        """The numbers the rule read (k, n, intervals, p-values)."""
        return self.verdict.metrics

    def __repr__(self) -> str:
        return f"{self.verdict.test}[{self.verdict.cell.label}]"


def assertrepr_compare(op: str, left: object, right: object) -> list[str] | None:
    """Failure text of `result == PASS`: the verdict's one line and how the sweep was corrected."""
    if op != "==" or not isinstance(left, Result) or right is not PASS:
        return None
    verdict = left.verdict
    lines = [f"{left!r} == PASS", verdict.message]
    if verdict.multiple_comparison != "none":
        lines.append(f"multiple comparisons: {verdict.multiple_comparison}")
    return lines


# -- ini twins of the command-line options ----------------------------------------------------
def add_ini_twins(parser: pytest.Parser, group: Any) -> None:
    """Give every option of `group` an ini key of its dest name (`ib_model = "hf:..."`).

    The option's default moves to the ini lookup, so the command line wins over the ini file,
    which wins over the default.
    """
    for option in group.options:
        dest, flag = option.dest, option.names()[-1]
        _INI_DEFAULTS[dest] = (option.default, option.type)
        # Unset on the command line: the ini file decides (pytest 9 wraps an argparse action).
        try:
            option.default = None
        except AttributeError:
            option.attrs()["default"] = None
        parser.addini(dest, f"{option.attrs().get('help', '')} (ini twin of {flag})", default="")


def apply_ini(config: pytest.Config) -> None:
    """Fill options not given on the command line from the ini file, then from the defaults.

    Raises:
        pytest.UsageError: When an ini value does not parse (naming the key and the fix).

    """
    for dest, (default, kind) in _INI_DEFAULTS.items():
        if getattr(config.option, dest, None) is not None:
            continue
        raw = config.getini(dest)
        value = default
        if raw not in ("", None, []):
            try:
                value = kind(raw) if callable(kind) else str(raw)
            except ValueError as error:
                raise pytest.UsageError(
                    f"[tool.pytest.ini_options] {dest} = {raw!r}: {error}; give a {kind.__name__}"
                ) from error
        setattr(config.option, dest, value)


# -- a marker per protocol --------------------------------------------------------------------
def _owner(test: str) -> Any:
    from introspection_bench.errors import ConfigError
    from introspection_bench.protocols.registry import owner

    try:
        return owner(test)
    except ConfigError:
        return None


def protocol_of_item(item: pytest.Item) -> Any:
    """The protocol a suite test belongs to, by its name `test_<test>`, or None."""
    return _owner(getattr(item, "originalname", item.name).removeprefix("test_"))


def register_markers(config: pytest.Config, names: Sequence[str]) -> None:
    """Register a marker per protocol name (so `--strict-markers` accepts `-m prefill`)."""
    for name in names:
        config.addinivalue_line("markers", f"{name}: tests of the {name} protocol")


def suite_protocols(items: Sequence[pytest.Item]) -> list[Any]:
    """The protocols of the suite tests among `items`, each once, in item order."""
    found: dict[str, Any] = {}
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "check" in fixtures or "verdict" in fixtures:
            owner = protocol_of_item(item)
            if owner is not None:
                found.setdefault(owner.NAME, owner)
    return list(found.values())


def mark_suite_items(config: pytest.Config, items: Sequence[pytest.Item]) -> None:
    """Mark each suite test with its protocol and group it for `--dist loadgroup`."""
    seen: set[str] = set()
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "check" not in fixtures and "verdict" not in fixtures:
            continue
        owner = protocol_of_item(item)
        if owner is None:
            continue
        if owner.NAME not in seen:
            register_markers(config, [owner.NAME])
            seen.add(owner.NAME)
        item.add_marker(getattr(pytest.mark, owner.NAME))
        item.add_marker(pytest.mark.xdist_group(owner.NAME))


def strengths_of(run: Any, test: str) -> tuple[float, ...]:
    """The strengths `test`'s cells sweep: its protocol's own, or the run's."""
    from introspection_bench.protocols._common import strengths_for

    owner = _owner(test)
    return strengths_for(run, owner.NAME) if owner else tuple(run.strengths)
