"""Tests of introspection_bench.chat: rendering with SmolLM2's template and span -> token maps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from introspection_bench.chat import SpanRef, char_span_to_tokens, render_chat
from introspection_bench.errors import InjectionError, StimuliError

STIMULI = json.loads((Path(__file__).parents[1] / "fixtures" / "paper_stimuli.json").read_text())


def _turns(template: str, **fields: str) -> list[tuple[str, str]]:
    return [
        (role, content.format(**fields))
        for role, content in STIMULI["templates"][template]["turns"]
    ]


def _token_char_ranges(tokenizer: Any, ids: tuple[int, ...]) -> list[tuple[int, int]]:
    """Character range of each token, from decoding growing prefixes (independent of offsets)."""
    ranges, previous = [], 0
    for k in range(1, len(ids) + 1):
        length = len(tokenizer.decode(ids[:k]))
        ranges.append((previous, length))
        previous = length
    return ranges


def _expected_tokens(
    tokenizer: Any, text: str, ids: tuple[int, ...], start: int, end: int
) -> tuple[int, int]:
    assert tokenizer.decode(ids) == text  # decoding is lossless, so prefix lengths are offsets
    hits = [
        i for i, (a, b) in enumerate(_token_char_ranges(tokenizer, ids)) if a < end and b > start
    ]
    return hits[0], hits[-1] + 1


@pytest.fixture(scope="module")
def exp1_turns() -> list[tuple[str, str]]:
    return _turns("injected_thought")


def test_newlines_before_trial_1_map_to_their_tokens(
    smollm2_tokenizer: Any, exp1_turns: list[tuple[str, str]]
) -> None:
    content = exp1_turns[2][1]
    at = content.index("\n\nTrial 1")
    rendered = render_chat(smollm2_tokenizer, exp1_turns, {"inject_from": SpanRef(2, at, at + 2)})
    first, end = rendered.spans["inject_from"]
    ids = rendered.input_ids
    assert smollm2_tokenizer.decode(ids[first:end]) == "\n\n"
    assert smollm2_tokenizer.decode(ids[:first]).endswith("started.")
    assert smollm2_tokenizer.decode(ids[end:]).startswith("Trial 1")
    start_char = rendered.text.index("\n\nTrial 1")
    assert (first, end) == _expected_tokens(
        smollm2_tokenizer, rendered.text, ids, start_char, start_char + 2
    )
    # SmolLM2's BPE writes the two newlines as two tokens (pinned: the window start depends on it).
    assert (first, end) == (145, 147)
    assert rendered.template == "chat"


def test_chat_tokens_equal_template_tokenization(
    smollm2_tokenizer: Any, exp1_turns: list[tuple[str, str]]
) -> None:
    rendered = render_chat(smollm2_tokenizer, exp1_turns)
    messages = [{"role": role, "content": content} for role, content in exp1_turns]
    expected = smollm2_tokenizer.apply_chat_template(
        messages, tokenize=True, add_generation_prompt=True
    )
    expected_ids = expected["input_ids"] if hasattr(expected, "keys") else expected
    assert list(rendered.input_ids) == list(expected_ids)
    assert rendered.text.endswith("<|im_start|>assistant\n")


def test_generation_prompt_is_optional(
    smollm2_tokenizer: Any, exp1_turns: list[tuple[str, str]]
) -> None:
    rendered = render_chat(smollm2_tokenizer, exp1_turns, add_generation_prompt=False)
    assert rendered.text.endswith("<|im_end|>\n")


@pytest.mark.parametrize("sentence", STIMULI["sentences"][:4])
def test_sentence_span_decodes_to_sentence(smollm2_tokenizer: Any, sentence: str) -> None:
    turns = _turns("thought_vs_text_think", sentence=sentence)
    rendered = render_chat(smollm2_tokenizer, turns, {"sentence": SpanRef.of(turns, 0, sentence)})
    first, end = rendered.spans["sentence"]
    assert smollm2_tokenizer.decode(rendered.input_ids[first:end]) == sentence
    start_char = rendered.text.index(sentence)
    expected = _expected_tokens(
        smollm2_tokenizer, rendered.text, rendered.input_ids, start_char, start_char + len(sentence)
    )
    assert (first, end) == expected


def test_span_in_a_later_turn_maps_inside_that_turn(smollm2_tokenizer: Any) -> None:
    sentence = STIMULI["sentences"][0]
    turns = _turns("prefill", sentence=sentence, word="Bread")
    rendered = render_chat(
        smollm2_tokenizer,
        turns,
        {"word": SpanRef.whole(turns, 1), "question": SpanRef.of(turns, 2, "accident")},
    )
    word_first, word_end = rendered.spans["word"]
    assert smollm2_tokenizer.decode(rendered.input_ids[word_first:word_end]) == "Bread"
    question_first, question_end = rendered.spans["question"]
    assert (
        smollm2_tokenizer.decode(rendered.input_ids[question_first:question_end]).strip()
        == "accident"
    )
    assert question_first > word_end


def test_occurrence_selects_later_appearance() -> None:
    turns = [("user", "a b a b a")]
    assert SpanRef.of(turns, 0, "a", occurrence=0) == SpanRef(0, 0, 1)
    assert SpanRef.of(turns, 0, "a", occurrence=2) == SpanRef(0, 8, 9)
    with pytest.raises(StimuliError):
        SpanRef.of(turns, 0, "a", occurrence=3)


def test_raw_fallback_uses_human_assistant_format(
    fresh_tokenizer: Any, exp1_turns: list[tuple[str, str]]
) -> None:
    fresh_tokenizer.chat_template = None
    content = exp1_turns[2][1]
    at = content.index("\n\nTrial 1")
    rendered = render_chat(fresh_tokenizer, exp1_turns, {"inject_from": SpanRef(2, at, at + 2)})
    first_user, ok, second_user = (c for _, c in exp1_turns)
    assert rendered.template == "raw"
    assert (
        rendered.text
        == f"\n\nHuman: {first_user}\n\nAssistant: {ok}\n\nHuman: {second_user}\n\nAssistant:"
    )
    first, end = rendered.spans["inject_from"]
    assert fresh_tokenizer.decode(rendered.input_ids[first:end]) == "\n\n"
    assert fresh_tokenizer.decode(rendered.input_ids[end:]).startswith("Trial 1")


def test_raw_fallback_rejects_unknown_role(fresh_tokenizer: Any) -> None:
    fresh_tokenizer.chat_template = None
    with pytest.raises(StimuliError, match="unknown role 'narrator'"):
        render_chat(fresh_tokenizer, [("narrator", "Once upon a time")])


def test_span_not_in_turn_errors(exp1_turns: list[tuple[str, str]]) -> None:
    with pytest.raises(StimuliError, match=r"span 'Trial 2' not found in turn 2"):
        SpanRef.of(exp1_turns, 2, "Trial 2")


def test_span_in_other_turn_only_errors(exp1_turns: list[tuple[str, str]]) -> None:
    # "interpretability researcher" is in turn 0, not in turn 2.
    with pytest.raises(StimuliError, match="not found in turn 2"):
        SpanRef.of(exp1_turns, 2, "interpretability researcher")


def test_span_covering_no_token_errors() -> None:
    with pytest.raises(InjectionError, match=r"span 'late' \(characters 50..52\) covers no token"):
        char_span_to_tokens([(0, 3), (3, 7)], 50, 52, "late")


def test_template_that_rewrites_content_errors(fresh_tokenizer: Any) -> None:
    fresh_tokenizer.chat_template = "{% for m in messages %}{{ m['content'] | upper }}{% endfor %}"
    with pytest.raises(StimuliError, match="turn 0 is not verbatim"):
        render_chat(fresh_tokenizer, [("user", "hello there")])


def test_rendered_hash_is_of_text(
    smollm2_tokenizer: Any, exp1_turns: list[tuple[str, str]]
) -> None:
    import hashlib

    first = render_chat(smollm2_tokenizer, exp1_turns)
    assert first.sha256 == hashlib.sha256(first.text.encode()).hexdigest()
    assert render_chat(smollm2_tokenizer, exp1_turns).sha256 == first.sha256


@pytest.mark.parametrize(
    "turns",
    [
        [("user", "You")],  # in SmolLM2's default system prompt
        [("user", "assistant"), ("assistant", "user")],  # role names in the template's headers
        [("user", "Hugging Face"), ("assistant", "AI")],
    ],
)
def test_short_content_maps_to_its_own_turn(
    smollm2_tokenizer: Any, turns: list[tuple[str, str]]
) -> None:
    spans = {f"turn{i}": SpanRef.whole(turns, i) for i in range(len(turns))}
    rendered = render_chat(smollm2_tokenizer, turns, spans)
    for i, (_, content) in enumerate(turns):
        first, end = rendered.spans[f"turn{i}"]
        assert smollm2_tokenizer.decode(rendered.input_ids[first:end]) == content
        # The content is followed by the end-of-turn token, not by more template boilerplate.
        assert smollm2_tokenizer.decode(rendered.input_ids[end : end + 1]) == "<|im_end|>"
