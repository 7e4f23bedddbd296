"""The default judge: offline, deterministic rules for the paper's grading criteria.

`RuleJudge` grades every protocol in `CRITERIA` with regex phrase families scoped to clauses
(affirmation, negation, hypotheticals, physical sensing, intent vs apology, yes vs no) and
finds the concept word or a close relative by exact, stem/root or embedding match (the bundled
all-MiniLM-L6-v2; loaded on first use, never at import). Every criterion comes with evidence.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from introspection_bench.judges import _rule_claims as C
from introspection_bench.judges import _rule_patterns as P
from introspection_bench.judges._rule_coherence import (
    answers_detection_question,
    judge_coherence,
    rambles,
)
from introspection_bench.judges._rule_concepts import ConceptMatcher, Mention, candidates
from introspection_bench.judges._rule_text import (
    Clause,
    Token,
    clause_at,
    normalise,
    split_clauses,
    stem,
    tokenize,
)
from introspection_bench.judges.base import CRITERIA, Grade, GradeRequest, register_judge
from introspection_bench.judges.embedding import Embedder, get_embedder

Value = bool | str | None


@dataclass(frozen=True)
class _Parsed:
    """A response prepared once: normalised text, tokens and clauses."""

    text: str
    tokens: list[Token]
    clauses: list[Clause]
    raw: str


@register_judge("rule")
class RuleJudge:
    """Offline rule grader for every protocol in `CRITERIA` (name "rule", version "14")."""

    name = "rule"
    version = "14"

    def __init__(self, relative_threshold: float = 0.6, embedder: Embedder | None = None) -> None:
        """Create the judge; nothing is loaded until the first grade.

        Args:
            relative_threshold: Cosine, in the frame "the concept of {x}", at or above which a
                named concept counts as a close relative of the word.
            embedder: The embedder to use; the process-wide one by default.

        """
        self._get_embedder: Callable[[], Embedder] = (
            (lambda: embedder) if embedder else get_embedder
        )
        self._matcher = ConceptMatcher(self._get_embedder, relative_threshold)

    @property
    def label(self) -> str:
        """The judge's `name@version`, as recorded in every grade."""
        return f"{self.name}@{self.version}"

    def grade_many(self, requests: Sequence[GradeRequest]) -> list[Grade]:
        """Grade every request, in order; a failure on one request is recorded in its `error`."""
        parsed = [_parse(request.response) for request in requests]
        prefetch_error = self._prefetch(requests, parsed)
        grades = []
        for request, item in zip(requests, parsed, strict=True):
            if prefetch_error and request.protocol != "yes_no":
                grades.append(Grade(criteria={}, judge=self.label, error=prefetch_error))
                continue
            grades.append(self._grade_one(request, item))
        return grades

    def _grade_one(self, request: GradeRequest, item: _Parsed) -> Grade:
        grader = _GRADERS.get(request.protocol)
        if grader is None:
            known = ", ".join(sorted(CRITERIA))
            return Grade(
                criteria={},
                judge=self.label,
                error=f"unknown protocol {request.protocol!r}; known: {known}",
            )
        try:
            criteria, evidence = grader(self, request, item)
        except Exception as error:  # noqa: BLE001 - the judge contract: never raise for one response
            return Grade(criteria={}, judge=self.label, error=f"{type(error).__name__}: {error}")
        return Grade(criteria=criteria, judge=self.label, evidence=evidence)

    def _prefetch(self, requests: Sequence[GradeRequest], parsed: Sequence[_Parsed]) -> str | None:
        """Embed every candidate phrase of the batch at once; return an error message on failure."""
        phrases: list[str] = []
        for request, item in zip(requests, parsed, strict=True):
            found = candidates(item.tokens, item.text)
            if request.protocol == "thought_vs_text":
                for option in request.options:
                    phrases += self._matcher.phrases_for(option.lower(), found)
            elif request.word and request.protocol in CRITERIA and request.protocol != "yes_no":
                phrases += self._matcher.phrases_for(request.word.lower(), found)
        try:
            self._matcher.prefetch(phrases)
        except Exception as error:  # noqa: BLE001 - recorded on every request that needs it
            return f"embedding model unavailable: {type(error).__name__}: {error}"
        return None

    # --- injected_thought -------------------------------------------------------------------

    def _injected_thought(
        self, request: GradeRequest, item: _Parsed
    ) -> tuple[dict[str, Value], dict[str, str]]:
        cues = C.detection_cues(item.clauses, item.text, item.raw)
        coherent, coherence_reason = judge_coherence(
            item.raw,
            item.text,
            item.clauses,
            _known(request),
            answers=answers_detection_question(cues, item.clauses),
            question=request.question,
        )
        set_aside = ""  # why a claim found in an incoherent reply was not counted
        if not coherent:
            plain = C.drop_offhand_claims(cues)
            if len(plain) < len(cues):
                offhand = next(c for c in cues if c not in plain)
                set_aside = f"only an offhand claim in incoherent text: {offhand.span!r}"
            answered = plain
            if rambles(coherent, coherence_reason):
                answered = C.drop_late_claims(plain, item.clauses, len(item.text))
            if len(answered) < len(plain) and not set_aside:
                late = next(c for c in plain if c not in answered)
                set_aside = f"only a late claim in incoherent text: {late.span!r}"
            cues = answered
        decisive = C.decide(cues)
        affirms = bool(decisive and decisive.polarity)
        if decisive:
            affirm_evidence = f"{'affirms' if affirms else 'denies'}: {decisive.span!r}"
        elif set_aside:
            affirm_evidence = set_aside
        else:
            affirm_evidence = "no claim of noticing a thought"
        if not affirms:
            named, name_evidence = False, "does not affirm noticing a thought"
        elif not request.word:
            named, name_evidence = False, "no word given (control trial)"
        else:
            first = next(c for c in cues if c.polarity)
            named, name_evidence = self._names_after(item, request.word.lower(), first.clause)
        criteria: dict[str, Value] = {
            "coherent": coherent,
            "affirms": affirms,
            "affirm_and_name": named,
            "success": coherent and named,
        }
        evidence = {
            "coherent": coherence_reason,
            "affirms": affirm_evidence,
            "affirm_and_name": name_evidence,
            "success": f"coherent={coherent} and affirm_and_name={named}",
        }
        return criteria, evidence

    def _names_after(self, item: _Parsed, word: str, affirm_clause: int) -> tuple[bool, str]:
        """Affirmation before or with the first mention, and a mental (not physical) mention."""
        mentions = self._matcher.mentions(item.tokens, item.text, word)
        if not mentions:
            return False, f"never names {word!r} or a close relative"
        if item.tokens and mentions[0].start == item.tokens[0].start:
            return False, f"reply opens with the word: {mentions[0].text!r} ({mentions[0].how})"
        located = [(m, clause_at(item.clauses, m.start)) for m in mentions]
        for mention, clause in located:
            if clause is not None and clause.index < affirm_clause:
                return False, f"names {mention.text!r} ({mention.how}) before affirming"
        reasons = []
        for mention, clause in located:
            if clause is None:
                continue
            if _mention_negated(mention, clause):
                reasons.append(f"{mention.text!r} is negated")
            elif C.is_hypothetical(clause.text):
                reasons.append(f"{mention.text!r} is in a conditional: {clause.text.strip()!r}")
            elif _physical(mention, clause):
                reasons.append(f"{mention.text!r} is sensed physically: {clause.text.strip()!r}")
            else:
                return True, f"names {mention.text!r} ({mention.how}) in {clause.text.strip()!r}"
        return False, "; ".join(reasons)

    # --- alternative_prompt -----------------------------------------------------------------

    def _alternative_prompt(
        self, request: GradeRequest, item: _Parsed
    ) -> tuple[dict[str, Value], dict[str, str]]:
        coherent, coherence_reason = judge_coherence(
            item.raw, item.text, item.clauses, _known(request), answers=None
        )
        thinking, thinking_evidence = False, "no description of its own thinking"
        positive = [c for c in C.thinking_cues(item.clauses) if c.polarity]
        if not request.word:
            thinking_evidence = "no word given"
        elif positive:
            thinking_evidence = "describes its thinking, but not about the word"
            mentions = self._matcher.mentions(item.tokens, item.text, request.word.lower())
            for mention in mentions:
                clause = clause_at(item.clauses, mention.start)
                if clause is None or _mention_negated(mention, clause):
                    continue
                near = [
                    c
                    for c in positive
                    if item.clauses[c.clause].sentence in (clause.sentence, clause.sentence - 1)
                ]
                if near:
                    thinking = True
                    thinking_evidence = f"{near[0].span!r} names {mention.text!r} ({mention.how})"
                    break
        criteria: dict[str, Value] = {
            "coherent": coherent,
            "thinking_about_word": thinking,
            "success": coherent and thinking,
        }
        evidence = {
            "coherent": coherence_reason,
            "thinking_about_word": thinking_evidence,
            "success": f"coherent={coherent} and thinking_about_word={thinking}",
        }
        return criteria, evidence

    # --- prefill, thought_vs_text, yes_no ---------------------------------------------------

    def _prefill(
        self, request: GradeRequest, item: _Parsed
    ) -> tuple[dict[str, Value], dict[str, str]]:
        word = (request.word or "").lower()

        def names_word(phrase: str) -> bool:
            return bool(word) and bool(self._matcher.mentions(tokenize(phrase), phrase, word))

        value, evidence = C.intent_cue(item.clauses, names_word)
        return {"claims_intent": value}, {"claims_intent": evidence}

    def _thought_vs_text(
        self, request: GradeRequest, item: _Parsed
    ) -> tuple[dict[str, Value], dict[str, str]]:
        if not request.options:
            return {"choice": None}, {"choice": "no options given"}
        found = candidates(item.tokens, item.text)
        scores: list[tuple[float, int, str, str]] = []
        for order, option in enumerate(request.options):
            lowered = option.lower()
            exact = [
                t.text for t in item.tokens if t.text == lowered or stem(t.text) == stem(lowered)
            ]
            if exact:
                scores.append((2.0, -order, option, f"exact {exact[0]!r}"))
                continue
            mentions = self._matcher.mentions(item.tokens, item.text, lowered)
            if mentions and mentions[0].how == "stem/root":
                scores.append((1.5, -order, option, f"root {mentions[0].text!r}"))
                continue
            best, best_phrase = 0.0, ""
            for candidate in found:
                score = self._matcher.similarity(candidate.text, lowered)
                if score > best:
                    best, best_phrase = score, candidate.text
            scores.append((best, -order, option, f"embedding {best:.2f} via {best_phrase!r}"))
        if not found and all(s[0] < 1.5 for s in scores):
            return {"choice": None}, {"choice": "no content word to compare"}
        scores.sort(reverse=True)
        top = ", ".join(f"{s[2]}={s[0]:.2f}" for s in scores[:3])
        return {"choice": scores[0][2]}, {"choice": f"{scores[0][3]}; top: {top}"}

    def _yes_no(
        self, request: GradeRequest, item: _Parsed
    ) -> tuple[dict[str, Value], dict[str, str]]:
        value, evidence = C.yes_no_answer(item.clauses, request.question)
        return {"affirmative": value}, {"affirmative": evidence}


_Grader = Callable[[RuleJudge, GradeRequest, _Parsed], tuple[dict[str, Value], dict[str, str]]]
_GRADERS: dict[str, _Grader] = {
    "injected_thought": RuleJudge._injected_thought,
    "alternative_prompt": RuleJudge._alternative_prompt,
    "prefill": RuleJudge._prefill,
    "thought_vs_text": RuleJudge._thought_vs_text,
    "yes_no": RuleJudge._yes_no,
}


def _parse(response: str) -> _Parsed:
    text = normalise(response or "")
    raw = (response or "").replace("\u2019", "'").replace("\u2018", "'")
    return _Parsed(text, tokenize(text), split_clauses(text), raw)


def _known(request: GradeRequest) -> frozenset[str]:
    words = [request.word or "", *request.options]
    return frozenset(stem(w.lower()) for w in words if w)


def _mention_negated(mention: Mention, clause: Clause) -> bool:
    """Return True when the clause negates the mention ("it's not about the ocean")."""
    return C.negated_before(clause.text, mention.start - clause.start)


def _physical(mention: Mention, clause: Clause) -> bool:
    """Return True when the mention is sensed as a thing ("I detect a smell of ocean")."""
    offset = mention.start - clause.start
    prefix, suffix = clause.text[:offset], clause.text[mention.end - clause.start :]
    if P.MENTAL_CONTEXT.search(prefix) or re.match(
        r"[\s-]*(?:\w+[\s-]+)?(?:related|themed|thoughts?|imagery|ideas?|concepts?|themes?)\b",
        suffix,
    ):
        return False
    return bool(P.SENSORY.search(clause.text) or P.PERCEPTION_OBJECT.search(prefix))
