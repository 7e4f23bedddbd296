"""suites/thresholds.toml: the shipped file loads; a broken one is a one-line error naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from introspection_bench.errors import ConfigError
from introspection_bench.thresholds import default_thresholds_path, load_thresholds

SHIPPED = Path(__file__).resolve().parents[1] / "suites" / "thresholds.toml"


def test_shipped_thresholds_load() -> None:
    data = load_thresholds(SHIPPED)
    assert data["version"] == "1" and data["control"]["max_false_positive_upper"] == 0.35
    assert default_thresholds_path().resolve() == SHIPPED


def _broken(tmp_path: Path, old: str, new: str) -> Path:
    text = SHIPPED.read_text()
    assert old in text
    path = tmp_path / "thresholds.toml"
    path.write_text(text.replace(old, new))
    return path


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("[control]", "[controls]", r"section \[control\] is missing, not a table"),
        (
            "chance = 0.10",
            'chance = "ten percent"',
            r"\[thought_vs_text\] chance = 'ten percent' is a str, not a float",
        ),
        (
            "bootstrap_resamples = 2000",
            "bootstrap_resamples = 20.5",
            r"bootstrap_resamples = 20.5 is a float, not an int",
        ),
        ("max_false_positive_upper = 0.35", "", r"\[control\] max_false_positive_upper is missing"),
        ("alpha = 0.05", "alpha = 5", r"alpha = 5 is outside \[0.0, 1.0\]"),
        ('version = "1"', "version = 1", r"version = 1 is an int, not a str"),
        ("[prefill]", "", r"section \[prefill\] is missing, not a table"),
    ],
)
def test_broken_thresholds_name_the_file_key_and_fix(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    path = _broken(tmp_path, old, new)
    with pytest.raises(ConfigError, match=message) as error:
        load_thresholds(path)
    text = str(error.value)
    assert str(path) in text and "restore it from the repository" in text and "\n" not in text


def test_unparseable_thresholds_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "thresholds.toml"
    path.write_text("version = \n")
    with pytest.raises(ConfigError, match=rf"cannot read thresholds {path}"):
        load_thresholds(path)
