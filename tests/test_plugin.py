"""The pytest plugin in a sandbox (`pytester`): option errors, test ids of the sweep, --help.

Only configuration and collection run here: no model is loaded and nothing is generated.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

SUITES = Path(__file__).resolve().parents[1] / "suites"


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    """A sandbox holding a copy of the suite modules and thresholds under `suites/`."""
    target = pytester.path / "suites"
    target.mkdir()
    for source in [*SUITES.glob("*.py"), SUITES / "thresholds.toml"]:
        shutil.copy(source, target / source.name)
    return pytester


def collected(result: pytest.RunResult) -> list[str]:
    """Node ids that `--collect-only -q` printed."""
    return [line for line in result.outlines if "::" in line]


# --- bad options are usage errors with a message naming the value and the fix ---------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--profile", "nonsense"],
            "*unknown profile 'nonsense'; use one of smoke, standard, paper*",
        ),
        (
            ["--layers", "abc"],
            "*--layers value 'abc' is not a number; give indices (20) or fractions (0.67)*",
        ),
        (["--layers", ","], "*--layers is empty*"),
        (["--layers", "0.5,1.5"], "*--layers fraction 1.5 is outside (0, 1)*"),
        (["--strengths", "1,nan"], "*--strengths value 'nan' is not finite*"),
        (["--strengths", "1,x"], "*--strengths value 'x' is not a number*"),
        (["--dose", "x"], "*unknown dose 'x'; use one of raw, norm*"),
        (["--trials", "0"], "*--trials 0 must be at least 1*"),
    ],
    ids=[
        "profile",
        "layers",
        "layers-empty",
        "layers-fraction",
        "strengths-nan",
        "strengths-word",
        "dose",
        "trials",
    ],
)
def test_bad_option_is_a_usage_error(suite: pytest.Pytester, args: list[str], message: str) -> None:
    result = suite.runpytest("--collect-only", "-q", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message.lstrip('*')}"])
    assert "Traceback" not in result.stderr.str()


def test_usage_error_collects_nothing(suite: pytest.Pytester) -> None:
    result = suite.runpytest("--collect-only", "-q", "--dose", "x")
    assert collected(result) == []


# --- the sweep names the tests --------------------------------------------------------------


def test_default_profile_ids(suite: pytest.Pytester) -> None:
    result = suite.runpytest("--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK
    ids = {line.split("::", 1)[1] for line in collected(result)}
    assert {
        "test_injected_thought[layer=0.67,strength=0.5]",
        "test_injected_thought[layer=0.67,strength=1]",
        "test_random_vector[layer=0.67,strength=0.5]",
        "test_control",
        "test_intentional_control[layer=0.67]",
        "test_thought_vs_text[layer=0.67,strength=1]",
        "test_prefill[layer=0.67,strength=1]",
        "test_yes_bias[layer=0.67,strength=1]",
        "test_alternative_prompt[layer=0.67,strength=1]",
    } <= ids
    assert "test_control" in ids and not any(i.startswith("test_control[") for i in ids)


def test_layers_and_strengths_give_one_test_per_cell(suite: pytest.Pytester) -> None:
    result = suite.runpytest("--collect-only", "-q", "--layers", "0.5,0.8", "--strengths", "1,2")
    assert result.ret == pytest.ExitCode.OK
    ids = collected(result)
    exp1 = sorted(i.split("::", 1)[1] for i in ids if "::test_injected_thought[" in i)
    assert exp1 == [
        "test_injected_thought[layer=0.5,strength=1]",
        "test_injected_thought[layer=0.5,strength=2]",
        "test_injected_thought[layer=0.8,strength=1]",
        "test_injected_thought[layer=0.8,strength=2]",
    ]
    for name in ("test_random_vector", "test_thought_vs_text", "test_prefill", "test_yes_bias"):
        assert len([i for i in ids if f"::{name}[" in i]) == 4, name
    assert sorted(i.split("::", 1)[1] for i in ids if "::test_intentional_control[" in i) == [
        "test_intentional_control[layer=0.5]",
        "test_intentional_control[layer=0.8]",
    ]
    assert len([i for i in ids if i.endswith("::test_control")]) == 1


def test_layer_indices_name_the_tests_as_given(suite: pytest.Pytester) -> None:
    result = suite.runpytest("--collect-only", "-q", "--layers", "12,20", "--strengths", "4")
    ids = collected(result)
    assert any(i.endswith("::test_injected_thought[layer=12,strength=4]") for i in ids)
    assert any(i.endswith("::test_intentional_control[layer=20]") for i in ids)


def test_regression_test_is_skipped_without_a_baseline(suite: pytest.Pytester) -> None:
    result = suite.runpytest("--collect-only", "-q")
    assert any(i.endswith("::test_no_regression[no-baseline]") for i in collected(result))


# --- --help ---------------------------------------------------------------------------------


def test_help_shows_the_option_group(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "introspection-bench: concept-injection protocols:",
            "*--model=*default | hf:<id> | local:<dir> | gguf:<file>*",
            "*--profile=*smoke | standard | paper*",
            "*--layers=*",
            "*--strengths=*",
            "*--dose=*raw*norm*",
            "*--trials=*",
            "*--judge=*",
            "*--baseline=*",
        ]
    )
    group = re.search(
        r"introspection-bench: concept-injection protocols:\n((?:  .*\n)+)", result.stdout.str()
    )
    assert group is not None
    options = re.findall(r"^  (--[a-z-]+)", group.group(1), flags=re.MULTILINE)
    assert {
        "--model",
        "--profile",
        "--layers",
        "--strengths",
        "--dose",
        "--seed",
        "--report-dir",
    } <= set(options)


def test_negative_layer_and_strength_are_accepted_as_documented(suite: pytest.Pytester) -> None:
    """README: `--layers -1` is the last block (Python-style), `--strengths -1` subtracts."""
    result = suite.runpytest("--collect-only", "-q", "--layers", "-1", "--strengths=-1,1")
    assert result.ret == pytest.ExitCode.OK
    ids = collected(result)
    assert any(i.endswith("::test_injected_thought[layer=-1,strength=-1]") for i in ids)
    assert any(i.endswith("::test_injected_thought[layer=-1,strength=1]") for i in ids)


def test_a_swept_test_checked_without_a_cell_says_how_to_pass_one() -> None:
    """`check("injected_thought")` without a cell: a ConfigError naming the fix, no TypeError."""
    from types import SimpleNamespace

    from introspection_bench.errors import ConfigError
    from introspection_bench.session import BenchSession

    unloaded = SimpleNamespace(lm=None)  # the check fails before the model is needed
    with pytest.raises(ConfigError, match=r"pass the `cell` .* check\(test, cell\)"):
        BenchSession.layer_index(unloaded, None)  # type: ignore[arg-type]
