"""The pass rules file (`suites/thresholds.toml`): where it is, and reading it with its checks.

Every protocol reads its numbers from this one versioned file. A missing section, a missing
value or a value of the wrong type is a `ConfigError` naming the file, the key and the fix,
before any model is loaded (a KeyError or TypeError mid-run otherwise).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from introspection_bench.errors import ConfigError

THRESHOLDS_FILE = Path("suites") / "thresholds.toml"

#: dotted key -> (type, low, high, what it is); bounds are inclusive, None for unbounded.
REQUIRED: Mapping[str, tuple[type, float | None, float | None, str]] = {
    "version": (str, None, None, 'the thresholds version, e.g. version = "1"'),
    "alpha": (float, 0.0, 1.0, "the significance level, e.g. alpha = 0.05"),
    "control.max_false_positive_upper": (float, 0.0, 1.0, "the false-positive cap, e.g. 0.35"),
    "thought_vs_text.chance": (float, 0.0, 1.0, "the 10-way chance level, 0.10"),
    "thought_vs_text.min_transcription": (float, 0.0, 1.0, "the transcription floor, e.g. 0.5"),
    "intentional_control.bootstrap_resamples": (int, 1, None, "resamples, e.g. 2000"),
}
#: Sections that must be present (tables), even when they only document their rule.
SECTIONS = (
    "control",
    "thought_vs_text",
    "prefill",
    "intentional_control",
    "yes_bias",
    "alternative_prompt",
)


def default_thresholds_path() -> Path:
    """suites/thresholds.toml of the working directory, else of this package's checkout."""
    checkout = Path(__file__).resolve().parents[1] / THRESHOLDS_FILE
    return THRESHOLDS_FILE if THRESHOLDS_FILE.is_file() or not checkout.is_file() else checkout


def load_thresholds(path: Path | str) -> dict[str, Any]:
    """Read and check the versioned thresholds file.

    Args:
        path: The TOML file (normally suites/thresholds.toml).

    Returns:
        The parsed tables.

    Raises:
        ConfigError: When the file cannot be read or parsed, lacks a section or a value, or
            holds a value of the wrong type or out of range; one line naming the file and fix.

    """
    path = Path(path)
    fix = "restore it from the repository (git checkout suites/thresholds.toml) or fix that line"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"cannot read thresholds {path}: {error}; {fix}") from error
    for section in SECTIONS:
        if not isinstance(data.get(section), dict):
            found = "missing" if section not in data else _a(type(data[section]).__name__)
            raise ConfigError(
                f"thresholds {path}: section [{section}] is {found}, not a table; {fix}"
            )
    for key, (kind, low, high, meaning) in REQUIRED.items():
        _check_value(path, data, key, kind, (low, high), f"{meaning}; {fix}")
    return data


def _check_value(
    path: Path,
    data: Mapping[str, Any],
    key: str,
    kind: type,
    bounds: tuple[float | None, float | None],
    hint: str,
) -> None:
    *sections, name = key.split(".")
    table: Mapping[str, Any] = data
    for section in sections:
        table = table[section]
    where = f"[{'.'.join(sections)}] {name}" if sections else name
    if name not in table:
        raise ConfigError(f"thresholds {path}: {where} is missing; give {hint}")
    value = table[name]
    numeric = kind in (int, float)
    ok = (
        isinstance(value, kind)
        if not numeric
        else isinstance(value, (int, float) if kind is float else int)
        and not isinstance(value, bool)
    )
    if not ok:
        raise ConfigError(
            f"thresholds {path}: {where} = {value!r} is {_a(type(value).__name__)}, "
            f"not {_a(kind.__name__)}; give {hint}"
        )
    low, high = bounds
    if numeric and ((low is not None and value < low) or (high is not None and value > high)):
        span = f"[{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
        raise ConfigError(f"thresholds {path}: {where} = {value!r} is outside {span}; give {hint}")


def _a(noun: str) -> str:
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"
