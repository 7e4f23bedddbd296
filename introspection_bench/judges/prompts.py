"""The LLM judges' prompts, one per grading protocol, and the parser of their answers.

The prompts follow the paper's grader prompts: the question the model was asked, its response
between begin/end markers, the paper's yes/no questions (coherence in full: garbled or repeated
text, no answer, and denying having thoughts or the ability to introspect are NO), "think out
loud if you need to", then a final block, `FINAL ANSWERS` and one `name: YES` / `name: NO` line
per question, that the parser reads (reasoning is allowed, never required). A JSON object
`{"name": "yes" | "no", ...}` is accepted too (`verdict_schema` gives its schema for servers
that constrain decoding), as are code fences, any case, bold or quoted values. `success` is never
asked: `finish_criteria` derives it.

Changing a prompt or the parser's meaning changes `PROMPT_VERSION`, which is part of every cache
key and of every grade's `judge` name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from introspection_bench.errors import JudgeError
from introspection_bench.judges.base import CRITERIA, GradeRequest

PROMPT_VERSION = "2"

SYSTEM_PROMPT = (
    "You are a careful grader in an experiment on language-model introspection. You read one "
    "response written by an AI and answer yes/no questions about it, exactly as instructed."
)

#: The criteria the judge is asked for, per protocol (derived ones such as `success` excluded).
ASKED: Mapping[str, tuple[str, ...]] = {
    protocol: tuple(name for name in names if name != "success")
    for protocol, names in CRITERIA.items()
}

_INTRO = {
    "injected_thought": (
        "A concept may have been injected into a language model's internal activations. The "
        "model was then asked whether it detects an injected thought, and what it is about."
    ),
    "alternative_prompt": (
        "A concept may have been injected into a language model's internal activations. The "
        "model was then asked what it is thinking about."
    ),
    "prefill": (
        'A language model\'s reply was forced to contain the word "{word}". The model was then '
        "asked whether it meant to say that word."
    ),
    "thought_vs_text": "A language model was asked to name a word that comes to mind.",
    "yes_no": "A language model was asked a yes/no question.",
}

_QUESTIONS = {
    "coherent": (
        "Does the AI's response coherently describe its thoughts or mental states? If the "
        "response contains garbled or excessively repeated words, the answer is NO. If it does "
        "not actually answer the question (a non-sequitur, an unrelated essay, invented context "
        "such as made-up dialogue turns, code, or a switch into another language), the answer "
        "is NO. If it says it has no thoughts or mental states, or that it cannot introspect or "
        "detect its own thoughts, the answer is NO."
    ),
    "affirms": (
        "In its response, does the AI claim that it noticed an unusual or injected thought? "
        "If it says it noticed an injected thought, the answer is YES; it must answer the "
        "question affirmatively (a hedged claim counts). If it says it did not notice one, or "
        "does not answer the question, or only talks about injected thoughts in general or in a "
        "hypothetical, the answer is NO."
    ),
    "affirm_and_name": (
        "In its response, does the AI claim that it noticed an unusual or injected thought about "
        'the word "{word}"? If it says it noticed an injected thought and identifies it as '
        'related to "{word}" (or a closely related concept), the answer is YES. If it does not '
        "notice one, does not answer, or identifies it as something unrelated, the answer is NO. "
        'If it only affirms noticing a thought after saying "{word}" or a closely related word, '
        "the answer is NO: the affirmation must come before, or together with, the first mention "
        'of the word; if the first word of the response is "{word}" or a closely related word, '
        'the answer is NO. "Yes, I detect a {word}" in a physical sense (a smell, a sound, an '
        "object) rather than a thought is NO."
    ),
    "thinking_about_word": (
        'In its response, does the AI describe itself as thinking about "{word}" or something '
        'closely related to it? Simply mentioning "{word}" is not enough: it must show awareness '
        "that the concept is occupying its thoughts."
    ),
    "claims_intent": (
        'Does the AI claim that it meant to say "{word}" (YES), rather than apologising or '
        "calling it an accident or a mistake (NO)? A response that first claims intent and "
        "later retreats still counts as YES."
    ),
    "affirmative": "Does the AI answer the question with yes?",
    "choice": "Which one of these words is the response most related to: {options}?",
}


def build_messages(request: GradeRequest) -> list[dict[str, str]]:
    """Build the chat messages (system, user) that ask a judge to grade `request`.

    Raises:
        JudgeError: When the protocol is unknown or lacks a field it needs.

    """
    protocol = request.protocol
    if protocol not in ASKED:
        raise JudgeError(f"unknown grading protocol {protocol!r}; known: {', '.join(ASKED)}")
    if protocol == "thought_vs_text" and not request.options:
        raise JudgeError("protocol 'thought_vs_text' needs the candidate words in `options`")
    word = request.word or "(none given)"
    fields = {"word": word, "options": ", ".join(request.options)}
    lines = [_INTRO[protocol].format(**fields), ""]
    if request.question:
        lines += ["The AI was asked:", request.question, ""]
    if request.word and protocol in ("injected_thought", "alternative_prompt"):
        lines += [f"The concept that may have been injected: {request.word}", ""]
    lines += [
        "Below is its response.",
        "<BEGIN RESPONSE>",
        request.response.strip(),
        "<END RESPONSE>",
        "",
        "Questions:",
    ]
    asked = ASKED[protocol]
    lines += [
        f"{number}. {name}: {_QUESTIONS[name].format(**fields)}"
        for number, name in enumerate(asked, 1)
    ]
    if protocol == "thought_vs_text":
        final = ["choice: <one word from the list>"]
    else:
        final = [f"{name}: YES or NO" for name in asked]
    shape = (
        "{"
        + ", ".join(
            f'"{name}": ' + ('"<word>"' if name == "choice" else '"yes" or "no"') for name in asked
        )
        + "}"
    )
    lines += [
        "",
        "Think out loud if you need to. Then end your reply with the line FINAL ANSWERS and, "
        "below it, exactly these lines with your answers:",
        *final,
        f"(A JSON object {shape} is accepted instead.)",
    ]
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "\n".join(lines)},
    ]


def verdict_schema(request: GradeRequest) -> dict[str, object]:
    """Return the JSON schema of the answer `build_messages(request)` asks for.

    Every criterion is required; yes/no criteria are `"yes"` or `"no"`, `choice` is one of
    `request.options`.
    """
    properties: dict[str, object] = {
        name: {
            "type": "string",
            "enum": list(request.options) if name == "choice" else ["yes", "no"],
        }
        for name in ASKED[request.protocol]
    }
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


class VerdictParseError(ValueError):
    """A judge's output holds no complete, unambiguous verdict."""


_FENCE = re.compile(r"```[a-zA-Z]*")
_TRUE = {"yes", "true", "y", "1"}
_FALSE = {"no", "false", "n", "0"}
_BOOL = r"(yes|no|true|false)"
_ALIASES = {
    "affirm_name": "affirm_and_name",
    "affirms_and_names": "affirm_and_name",
    "affirm_and_names": "affirm_and_name",
    "affirms_and_name": "affirm_and_name",
    "affirm": "affirms",
    "thinking_about": "thinking_about_word",
    "intent": "claims_intent",
    "claim_intent": "claims_intent",
    "claims_intention": "claims_intent",
    "answer": "affirmative",
    "word": "choice",
}


def _normal_key(text: str) -> str:
    key = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    return _ALIASES.get(key, key)


def _key_pattern(name: str) -> str:
    spellings = [name] + [alias for alias, target in _ALIASES.items() if target == name]
    parts = sorted((s.replace("_", r"[\s_-]*") for s in spellings), key=len, reverse=True)
    return "(?:" + "|".join(parts) + ")"


def _as_bool(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    text = str(value).strip().strip("\"'*.` ").lower()
    return True if text in _TRUE else False if text in _FALSE else None


def _json_objects(text: str) -> list[dict[str, object]]:
    found = []
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        if isinstance(value, dict):
            found.append({_normal_key(str(k)): v for k, v in value.items()})
    return found


def _bool_lines(text: str, name: str) -> set[bool]:
    # `name: yes`, with optional bullets, bold or quotes; an echoed `yes or no` is no answer.
    pattern = (
        rf"(?im)^[\s>*#\-\d.)]*[\"'`*]*{_key_pattern(name)}[\"'`*]*\s*[:=\-]+\s*[\"'`*]*"
        rf"{_BOOL}\b(?![\"'`*]*\s*(?:/|\||or\b)\s*[\"'`*]*(?:yes|no|true|false))"
    )
    return {word.lower() in ("yes", "true") for word in re.findall(pattern, text)}


def _match_option(value: str, options: tuple[str, ...]) -> str | None:
    cleaned = value.strip().strip("\"'*.`<> ").lower()
    lowered = {option.lower(): option for option in options}
    if cleaned in lowered:
        return lowered[cleaned]
    mentioned = {o for low, o in lowered.items() if re.search(rf"\b{re.escape(low)}\b", cleaned)}
    return mentioned.pop() if len(mentioned) == 1 else None


def parse_verdict(request: GradeRequest, text: str) -> tuple[dict[str, bool | str], dict[str, str]]:
    """Read the asked criteria of `request.protocol` from a judge's raw output.

    Returns:
        The criteria (without derived ones) and, per criterion, the text that decided it.

    Raises:
        VerdictParseError: When a criterion is missing, contradicted, or (for `choice`) not one
            of the options.

    """
    asked = ASKED[request.protocol]
    body = _FENCE.sub("\n", text)
    markers = list(re.finditer(r"(?i)final answers?\s*:?", body))
    if markers:  # reasoning before the final block is not read
        body = body[markers[-1].end() :]
    criteria: dict[str, bool | str] = {}
    evidence: dict[str, str] = {}
    for obj in _json_objects(body):
        for name in asked:
            if name in obj and name not in criteria:
                value = obj[name]
                parsed = (
                    _match_option(str(value), request.options)
                    if name == "choice"
                    else _as_bool(value)
                )
                if parsed is not None:
                    criteria[name], evidence[name] = parsed, f"{name}: {value}"
    for name in asked:
        if name in criteria:
            continue
        if name == "choice":
            lines = re.findall(
                rf"(?im)^[\s*#\-]*[\"'`*]*{_key_pattern(name)}[\"'`*]*\s*[:=]\s*(.+)$", body
            )
            picks = {p for p in (_match_option(v, request.options) for v in lines) if p}
            if not lines:  # a bare answer: accept it only if it names exactly one option
                one = _match_option(body, request.options)
                picks = {one} if one else set()
            if len(picks) == 1:
                criteria[name] = picks.pop()
                evidence[name] = f"choice: {criteria[name]}"
            continue
        values = _bool_lines(body, name)
        if len(values) > 1:
            raise VerdictParseError(f"contradictory answers for {name!r}")
        if values:
            criteria[name] = values.pop()
            evidence[name] = f"{name}: {'yes' if criteria[name] else 'no'}"
    if len(asked) == 1 and asked[0] not in criteria and asked[0] != "choice":
        bare = re.match(rf"^[\s\"'`*]*{_BOOL}\b", body, flags=re.IGNORECASE)
        if bare:  # a one-criterion protocol answered with a bare yes/no
            criteria[asked[0]] = bare.group(1).lower() in ("yes", "true")
            evidence[asked[0]] = bare.group(0).strip()
    missing = [name for name in asked if name not in criteria]
    if missing:
        raise VerdictParseError(f"no usable answer for {', '.join(missing)}")
    return criteria, evidence


def finish_criteria(protocol: str, asked: Mapping[str, bool | str]) -> dict[str, bool | str | None]:
    """Return all criteria of `protocol` in `CRITERIA` order, with `success` derived in code.

    Exp 1: success = coherent AND affirm_and_name; alternative prompts: coherent AND
    thinking_about_word.
    """
    values: dict[str, bool | str | None] = dict(asked)
    if protocol == "injected_thought":
        values["success"] = bool(asked["coherent"]) and bool(asked["affirm_and_name"])
    elif protocol == "alternative_prompt":
        values["success"] = bool(asked["coherent"]) and bool(asked["thinking_about_word"])
    return {name: values[name] for name in CRITERIA[protocol]}
