"""The LLM judges' prompts and answer parser, on canned strings (no server, no model)."""

from __future__ import annotations

import pytest

from introspection_bench.errors import JudgeError
from introspection_bench.judges.base import CRITERIA, GradeRequest
from introspection_bench.judges.prompts import (
    ASKED,
    VerdictParseError,
    build_messages,
    finish_criteria,
    parse_verdict,
    verdict_schema,
)

INJECTED = GradeRequest(
    protocol="injected_thought",
    response="Yes, I notice an injected thought. It seems to be about the ocean.",
    word="ocean",
    question="Do you detect an injected thought? If so, what is it about?",
)
OPTIONS = (
    "ocean",
    "bread",
    "castle",
    "violin",
    "tiger",
    "silver",
    "cloud",
    "river",
    "lamp",
    "snow",
)
CHOICE = GradeRequest(protocol="thought_vs_text", response="Waves, salt water.", options=OPTIONS)


def test_every_protocol_has_a_prompt_that_names_its_criteria():
    for protocol, asked in ASKED.items():
        request = GradeRequest(
            protocol=protocol, response="text", word="ocean", question="Q?", options=OPTIONS
        )
        system, user = build_messages(request)
        assert system["role"] == "system" and user["role"] == "user"
        for name in asked:
            assert f"{name}:" in user["content"]
        assert "success" not in asked
        assert set(asked) <= set(CRITERIA[protocol])


def test_the_prompt_carries_the_paper_criteria():
    user = build_messages(INJECTED)[1]["content"]
    assert "ocean" in user and INJECTED.question in user
    assert "before, or together with, the first mention" in user
    assert "physical sense" in user


def test_unknown_protocol_and_missing_options_raise():
    with pytest.raises(JudgeError, match="unknown grading protocol"):
        build_messages(GradeRequest(protocol="nope", response="x"))
    with pytest.raises(JudgeError, match="options"):
        build_messages(GradeRequest(protocol="thought_vs_text", response="x"))


@pytest.mark.parametrize(
    "raw",
    [
        "coherent: yes\naffirms: yes\naffirm_and_name: no",
        "COHERENT: Yes\nAffirms: YES\nAffirm_and_name: No.",
        "```\ncoherent: yes\naffirms: yes\naffirm_and_name: no\n```",
        "Here is my grading:\n- **coherent**: yes\n- **affirms**: yes\n"
        "- **affirm and name**: no\nDone.",
        '{"coherent": true, "affirms": "yes", "affirm_and_name": false}',
        '```json\n{"Coherent": "Yes", "Affirms": true, "Affirm-and-name": "no"}\n```',
        "1. coherent: yes\n2. affirms: true\n3. affirm_and_name: false",
    ],
)
def test_tolerant_formats_parse_to_the_same_verdict(raw):
    criteria, evidence = parse_verdict(INJECTED, raw)
    assert criteria == {"coherent": True, "affirms": True, "affirm_and_name": False}
    assert set(evidence) == set(criteria)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "no usable answer"),
        ("I cannot grade this.", "no usable answer"),
        ("coherent: yes\naffirms: yes", "affirm_and_name"),
        ("coherent: yes or no\naffirms: <yes or no>\naffirm_and_name: yes/no", "no usable answer"),
        ("coherent: yes\naffirms: no\naffirm_and_name: no\ncoherent: no", "contradictory"),
        ('{"coherent": "maybe", "affirms": true, "affirm_and_name": true}', "coherent"),
    ],
)
def test_incomplete_or_ambiguous_output_is_an_error_not_a_no(raw, reason):
    with pytest.raises(VerdictParseError, match=reason):
        parse_verdict(INJECTED, raw)


def test_a_repeated_consistent_answer_is_accepted():
    raw = "coherent: yes\naffirms: no\naffirm_and_name: no\n\ncoherent: yes"
    assert parse_verdict(INJECTED, raw)[0]["coherent"] is True


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("choice: ocean", "ocean"),
        ("Choice: **Ocean**.", "ocean"),
        ('{"choice": "RIVER"}', "river"),
        ("choice: the word ocean", "ocean"),
        ("The response is most related to ocean.", "ocean"),
    ],
)
def test_choice_is_one_of_the_options(raw, expected):
    assert parse_verdict(CHOICE, raw)[0] == {"choice": expected}


@pytest.mark.parametrize("raw", ["choice: whale", "choice: ocean or river", "ocean, river"])
def test_choice_outside_or_ambiguous_among_options_is_an_error(raw):
    with pytest.raises(VerdictParseError):
        parse_verdict(CHOICE, raw)


def test_single_criterion_protocols_take_a_bare_answer():
    request = GradeRequest(protocol="yes_no", response="Yes.", question="Is the sky blue?")
    assert parse_verdict(request, "Yes") == ({"affirmative": True}, {"affirmative": "Yes"})
    assert parse_verdict(request, "affirmative: no")[0] == {"affirmative": False}
    prefill = GradeRequest(protocol="prefill", response="I meant it.", word="bread")
    assert parse_verdict(prefill, "claims_intent: yes")[0] == {"claims_intent": True}


def test_success_is_derived_in_code_in_criteria_order():
    finished = finish_criteria(
        "injected_thought", {"affirm_and_name": True, "affirms": True, "coherent": True}
    )
    assert list(finished) == list(CRITERIA["injected_thought"]) and finished["success"] is True
    incoherent = {"coherent": False, "affirms": True, "affirm_and_name": True}
    assert finish_criteria("injected_thought", incoherent)["success"] is False
    alternative = finish_criteria(
        "alternative_prompt", {"coherent": True, "thinking_about_word": False}
    )
    assert alternative == {"coherent": True, "thinking_about_word": False, "success": False}


def test_the_prompt_asks_for_the_json_object_the_schema_describes():
    for protocol, asked in ASKED.items():
        request = GradeRequest(protocol=protocol, response="x", word="ocean", options=OPTIONS)
        schema = verdict_schema(request)
        assert schema["required"] == list(asked) and schema["additionalProperties"] is False
        user = build_messages(request)[1]["content"]
        assert "JSON object" in user and all(f'"{name}": ' in user for name in asked)
        assert "FINAL ANSWERS" in user and "Think out loud if you need to" in user
    assert verdict_schema(CHOICE)["properties"]["choice"]["enum"] == list(OPTIONS)
    assert verdict_schema(INJECTED)["properties"]["coherent"]["enum"] == ["yes", "no"]


def test_the_prompt_follows_the_paper():
    user = build_messages(INJECTED)[1]["content"]
    assert "<BEGIN RESPONSE>" in user and "<END RESPONSE>" in user
    assert user.index("<BEGIN RESPONSE>") < user.index(INJECTED.response) < user.index("<END")
    assert "cannot introspect" in user and "another language" in user  # full coherence criterion
    assert "coherent: YES or NO" in user


def test_reasoning_before_the_final_block_is_not_read():
    raw = (
        "The reply says coherent: no at first glance, but it answers clearly.\n"
        "affirms: no? It does claim a thought.\n\nFINAL ANSWERS\n"
        "coherent: YES\naffirms: YES\naffirm_and_name: NO"
    )
    criteria, _ = parse_verdict(INJECTED, raw)
    assert criteria == {"coherent": True, "affirms": True, "affirm_and_name": False}
    with pytest.raises(VerdictParseError):
        parse_verdict(INJECTED, "Let me think.\nFINAL ANSWERS\ncoherent: YES")
