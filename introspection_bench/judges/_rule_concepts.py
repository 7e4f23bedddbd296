"""Find where a response names a concept: exact, stem, derivation, or an embedding neighbour.

A "close relative" of the word is a candidate (one content word, or two adjacent ones) that
is the word, shares its stem or root ("oceanic", "snowflakes"), or whose all-MiniLM-L6-v2
embedding, read in the frame "the concept of {x}", has cosine >= the threshold with the word's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from introspection_bench.judges._rule_text import STOPWORDS, Token, morph_related, stem
from introspection_bench.judges.embedding import Embedder, cosine

#: Frame that makes single-word embeddings compare concepts (better separated than bare words).
_FRAME = "the concept of {}"

#: Words of the task itself: never compared by embedding (they would match abstract concepts).
META_WORDS = frozenset(
    """thought thoughts inject injects injected injecting injection injections detect detects
    detected detecting detection notice noticed noticing sense sensed sensing idea ideas concept
    concepts word words mind minds feel feeling feelings felt something anything nothing unusual
    strange odd trial trials experiment researcher interpretability neural network activity
    patterns pattern model language assistant ai think thinking sure certain maybe perhaps
    seems seem appears appear right now currently really actually specific particular kind sort
    thing things lot bit little really quite clear clearly faint strong unusual different weird
    say said mean meant accident mistake intended intentional sorry apologize question answer
    respond response tell know aware notion image presence related regarding about
    yes yeah okay hmm well let first one two also subtle distinct definitely""".split()
)


@dataclass(frozen=True)
class Mention:
    """A span of the response that names the word or a close relative."""

    start: int
    """Offset of the span in the normalised response."""
    end: int
    """Offset just past the span."""
    text: str
    """The span, lowercased."""
    how: str
    """Why it matched: "exact", "stem/root", or "embedding 0.71"."""


@dataclass(frozen=True)
class Candidate:
    """A content word or an adjacent pair of content words that could name a concept."""

    start: int
    end: int
    text: str


def candidates(tokens: Sequence[Token], text: str) -> list[Candidate]:
    """Content unigrams, adjacent content bigrams and topic phrases of a response."""
    content = [
        t
        for t in tokens
        if t.text not in STOPWORDS and t.text not in META_WORDS and len(t.text) >= 3
    ]
    found = [Candidate(t.start, t.end, t.text) for t in content]
    for left, right in zip(content, content[1:], strict=False):
        gap = text[left.end : right.start]
        if gap.strip(" -") == "" and len(gap) <= 2:
            found.append(Candidate(left.start, right.end, f"{left.text} {right.text}"))
    for match in _TOPIC_PHRASE.finditer(text):
        words = match.group(1).split()
        if 3 <= len(words) <= 10:
            found.append(Candidate(match.start(1), match.end(1), " ".join(words).lower()))
    return found


#: The topic of a thought, "about <phrase>", for paraphrases ("about vast bodies of salt water").
_TOPIC_PHRASE = re.compile(
    r"\b(?:about|involving|concerning|regarding|related to)\s+(?:an?\s+|the\s+|some\s+)?"
    r"([A-Za-z][A-Za-z' -]*?)\s*(?=[.,;:!?]|$)"
)


class ConceptMatcher:
    """Decides which spans of a response name a word; embeddings are batched and cached."""

    def __init__(self, embedder: Callable[[], Embedder], threshold: float) -> None:
        """Create a matcher.

        Args:
            embedder: Returns the embedder (called only when an embedding is needed).
            threshold: Cosine (in the "the concept of {x}" frame) at or above which a
                candidate is a close relative.

        """
        self._embedder = embedder
        self.threshold = threshold

    def prefetch(self, phrases: Iterable[str]) -> None:
        """Embed many phrases in one batch so that later look-ups hit the cache."""
        unique = sorted({_FRAME.format(p) for p in phrases})
        if unique:
            self._embedder().encode(unique)

    def phrases_for(self, word: str, found: Sequence[Candidate]) -> list[str]:
        """Return the phrases `mentions` will embed for this word and these candidates."""
        return [*self._word_forms(word), *(c.text for c in found if not _lexical(c.text, word))]

    def similarity(self, phrase: str, word: str) -> float:
        """Cosine between a phrase and the closest form of the word, in the concept frame."""
        forms = self._word_forms(word)
        vectors = self._embedder().encode([_FRAME.format(x) for x in (phrase, *forms)])
        return max(cosine(vectors[0], other) for other in vectors[1:])

    def mentions(self, tokens: Sequence[Token], text: str, word: str) -> list[Mention]:
        """Every span that names `word` or a close relative, in order of position.

        Args:
            tokens: The response's tokens.
            text: The normalised response.
            word: The concept word, lowercase.

        Returns:
            Non-overlapping mentions sorted by start offset (the earliest match wins a tie).

        """
        found: list[Mention] = []
        for token in tokens:
            if _lexical(token.text, word):
                how = "exact" if token.text == word else "stem/root"
                found.append(Mention(token.start, token.end, token.text, how))
        pool = [c for c in candidates(tokens, text) if not _lexical(c.text, word)]
        if pool:
            forms = self._word_forms(word)
            vectors = self._embedder().encode(
                [_FRAME.format(x) for x in forms] + [_FRAME.format(c.text) for c in pool]
            )
            targets, rest = vectors[: len(forms)], vectors[len(forms) :]
            for candidate, vector in zip(pool, rest, strict=True):
                score = max(cosine(vector, target) for target in targets)
                if score >= self.threshold:
                    found.append(
                        Mention(
                            candidate.start, candidate.end, candidate.text, f"embedding {score:.2f}"
                        )
                    )
        # Lexical matches first, then longer spans: an overlapping weaker match is dropped.
        found.sort(key=lambda m: (m.how.startswith("embedding"), m.start, -(m.end - m.start)))
        result: list[Mention] = []
        for mention in found:
            if all(mention.end <= kept.start or mention.start >= kept.end for kept in result):
                result.append(mention)
        return sorted(result, key=lambda m: m.start)

    @staticmethod
    def _word_forms(word: str) -> tuple[str, ...]:
        base = stem(word)
        return (word,) if base == word else (word, base)


def _lexical(phrase: str, word: str) -> bool:
    """Return True when a single-word phrase is the word or shares its stem/root."""
    return " " not in phrase and (phrase == word or morph_related(phrase, word))
