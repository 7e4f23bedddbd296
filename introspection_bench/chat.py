r"""Render a conversation with the tokenizer's chat template and map named spans to tokens.

The paper writes raw `Human:` / `Assistant:` turns. Open models need their own template, so a
protocol names the character spans it cares about (the "\n\n" before "Trial 1", a {sentence},
a prefilled word) inside a turn's content, and `render_chat` returns the token span of each in
the rendered prompt. Tokenizers without a template fall back to the paper's raw format.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from introspection_bench.errors import InjectionError, StimuliError

#: Turns in the paper's raw format, used when the tokenizer has no chat template.
RAW_ROLE_PREFIXES = {"system": "", "user": "\n\nHuman: ", "assistant": "\n\nAssistant: "}
RAW_GENERATION_PROMPT = "\n\nAssistant:"
#: The raw format as one string: what a base model's `chat_template_hash` is the hash of, so a
#: summary still says how its prompts were built (and changes if this format ever does).
RAW_FORMAT = "raw:" + "|".join(
    [
        *(f"{role}={prefix!r}" for role, prefix in RAW_ROLE_PREFIXES.items()),
        f"generation={RAW_GENERATION_PROMPT!r}",
    ]
)


@dataclass(frozen=True)
class SpanRef:
    """A character range inside one turn's content."""

    turn: int
    """Index of the turn in the conversation."""
    start: int
    """First character, relative to the turn's content."""
    end: int
    """One past the last character."""

    @classmethod
    def of(
        cls, turns: Sequence[tuple[str, str]], turn: int, text: str, *, occurrence: int = 0
    ) -> SpanRef:
        """The span of `text` inside turn `turn` (its `occurrence`-th appearance).

        Raises:
            StimuliError: When `text` is not in that turn.

        """
        content = turns[turn][1]
        start = -1
        for _ in range(occurrence + 1):
            start = content.find(text, start + 1)
            if start < 0:
                raise StimuliError(f"span {text!r} not found in turn {turn} ({content[:60]!r}...)")
        return cls(turn, start, start + len(text))

    @classmethod
    def whole(cls, turns: Sequence[tuple[str, str]], turn: int) -> SpanRef:
        """The span of a turn's whole content."""
        return cls(turn, 0, len(turns[turn][1]))


@dataclass(frozen=True)
class RenderedPrompt:
    """A conversation rendered to tokens, with named token spans."""

    text: str
    """The rendered prompt text."""
    input_ids: tuple[int, ...]
    """Its tokens (special tokens included as the template writes them)."""
    spans: Mapping[str, tuple[int, int]]
    """Name -> token range [start, end) covering the named characters."""
    template: str
    """'chat' (the tokenizer's template) or 'raw' (the paper's Human/Assistant format)."""

    @property
    def sha256(self) -> str:
        """Hash of the rendered text, recorded with every trial."""
        return hashlib.sha256(self.text.encode()).hexdigest()


def render_chat(
    tokenizer: Any,
    turns: Sequence[tuple[str, str]],
    spans: Mapping[str, SpanRef] | None = None,
    *,
    add_generation_prompt: bool = True,
) -> RenderedPrompt:
    """Render `turns` and map each named character span to the tokens that cover it.

    Args:
        tokenizer: A fast Hugging Face tokenizer (offsets are needed).
        turns: (role, content) pairs; roles `system`, `user`, `assistant`.
        spans: Name -> character span inside a turn's content.
        add_generation_prompt: Append the assistant header so the model answers next.

    Returns:
        The rendered prompt.

    Raises:
        StimuliError: When a turn's content cannot be found verbatim in the rendered text.

    """
    spans = spans or {}
    text, content_starts, template = _render_text(tokenizer, turns, add_generation_prompt)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets: list[tuple[int, int]] = encoded["offset_mapping"]
    token_spans = {}
    for name, ref in spans.items():
        char_start = content_starts[ref.turn] + ref.start
        char_end = content_starts[ref.turn] + ref.end
        token_spans[name] = char_span_to_tokens(offsets, char_start, char_end, name)
    return RenderedPrompt(text, tuple(encoded["input_ids"]), token_spans, template)


def char_span_to_tokens(
    offsets: Sequence[tuple[int, int]], start: int, end: int, name: str = "span"
) -> tuple[int, int]:
    """Token range [first, last + 1) of every token overlapping characters [start, end).

    Raises:
        InjectionError: When no token overlaps the range (an empty or out-of-text span).

    """
    hits = [i for i, (a, b) in enumerate(offsets) if a < end and b > start and b > a]
    if not hits:
        raise InjectionError(
            f"span {name!r} (characters {start}..{end}) covers no token of the prompt"
        )
    return hits[0], hits[-1] + 1


def _render_text(
    tokenizer: Any, turns: Sequence[tuple[str, str]], add_generation_prompt: bool
) -> tuple[str, list[int], str]:
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": role, "content": content} for role, content in turns]
        text = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt
        )
        starts = _marked_starts(tokenizer, turns, text, add_generation_prompt)
        return text, starts if starts is not None else _locate_contents(text, turns), "chat"
    pieces, starts, cursor = [], [], 0
    for role, content in turns:
        prefix = RAW_ROLE_PREFIXES.get(role)
        if prefix is None:
            raise StimuliError(f"unknown role {role!r}; use system, user or assistant")
        pieces.append(prefix)
        cursor += len(prefix)
        starts.append(cursor)
        pieces.append(content)
        cursor += len(content)
    if add_generation_prompt:
        pieces.append(RAW_GENERATION_PROMPT)
    return "".join(pieces), starts, "raw"


def _marked_starts(
    tokenizer: Any, turns: Sequence[tuple[str, str]], text: str, add_generation_prompt: bool
) -> list[int] | None:
    # Searching for each content in the rendered text can land inside the template's own
    # words (SmolLM2's default system prompt holds "You", "AI", "assistant"). Render once
    # more with a unique marker per turn and read the starts off the markers instead.
    markers = [f"\ue000{index}\ue001" for index in range(len(turns))]
    messages = [{"role": r, "content": m} for (r, _), m in zip(turns, markers, strict=True)]
    marked = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt
    )
    starts, pieces, cursor, shift = [], [], 0, 0
    for marker, (_, content) in zip(markers, turns, strict=True):
        found = marked.find(marker, cursor)
        if found < 0:
            return None
        pieces += [marked[cursor:found], content]
        starts.append(found + shift)
        shift += len(content) - len(marker)
        cursor = found + len(marker)
    pieces.append(marked[cursor:])
    # Templates whose output depends on the content itself: fall back to searching.
    return starts if "".join(pieces) == text else None


def _locate_contents(text: str, turns: Sequence[tuple[str, str]]) -> list[int]:
    starts, cursor = [], 0
    for index, (_, content) in enumerate(turns):
        found = text.find(content, cursor)
        if found < 0:
            raise StimuliError(
                f"turn {index} is not verbatim in the rendered chat template "
                "(the template rewrote it); "
                "spans cannot be mapped: use a model whose template keeps content verbatim"
            )
        starts.append(found)
        cursor = found + len(content)
    return starts
