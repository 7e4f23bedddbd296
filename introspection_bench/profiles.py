"""Run profiles: how many trials, which layers, which doses.

- `smoke`: CI on a CPU: one layer near 2/3 depth, two strengths, few trials.
- `standard`: three layers, three strengths, 30 trials per condition.
- `paper`: the paper's strengths and trial counts (raw vectors read at the last prompt token,
  raw strength multipliers); give `--layers` to choose the sweep.
Command-line options override any field.
"""

from __future__ import annotations

from typing import Any

from introspection_bench.errors import ConfigError

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        "layers": (0.67,),
        "strengths": (0.5, 1.0),
        "dose": "norm",
        "vector_method": "word_token",
        "trials": 8,
    },
    "standard": {
        "layers": (0.5, 0.67, 0.8),
        "strengths": (0.25, 0.5, 1.0),
        "dose": "norm",
        "vector_method": "word_token",
        "trials": 30,
    },
    "paper": {
        "layers": (0.33, 0.5, 0.67, 0.8),
        "strengths": (1.0, 2.0, 4.0, 8.0),
        "protocol_strengths": {
            "thought_vs_text": (1.0, 2.0, 4.0, 8.0, 16.0),
            "prefill": (1.0, 2.0, 4.0, 8.0, 16.0),
        },
        "dose": "raw",
        "vector_method": "last_token",
        "trials": 50,
    },
}


def profile_settings(name: str) -> dict[str, Any]:
    """The settings of a named profile.

    Raises:
        ConfigError: For an unknown profile, listing the known ones.

    """
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}; use one of {', '.join(PROFILES)}")
    return dict(PROFILES[name])


def parse_layers(text: str) -> tuple[float | int, ...]:
    """`"0.5,0.67,20"` -> (0.5, 0.67, 20): floats are depth fractions, ints are indices.

    Raises:
        ConfigError: For a value that is neither.

    """
    values: list[float | int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            values.append(float(part) if "." in part else int(part))
        except ValueError:
            raise ConfigError(
                f"--layers value {part!r} is not a number; give indices (20) or fractions (0.67)"
            ) from None
    if not values:
        raise ConfigError("--layers is empty; give e.g. 0.67 or 12,16,20")
    return tuple(values)


def parse_strengths(text: str) -> tuple[float, ...]:
    """`"1,2,4"` -> (1.0, 2.0, 4.0).

    Raises:
        ConfigError: For a non-number or a non-finite value.

    """
    values = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            value = float(part)
        except ValueError:
            raise ConfigError(
                f"--strengths value {part!r} is not a number; give e.g. 1,2,4"
            ) from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"--strengths value {part!r} is not finite")
        values.append(value)
    if not values:
        raise ConfigError("--strengths is empty; give e.g. 1,2,4")
    return tuple(values)
