"""Training examples of the reference adapters: words, paraphrased prompts, target replies.

Everything here is disjoint from what the suite tests with: the concept words are the paper's
category words minus any that overlap the 50 concept words, the sentences and prompts are our
own paraphrases (the paper's exact texts are refused by `check_disjoint`), and the unrelated
questions are not the paper's 20 yes-bias questions. Targets are plain replies of the kind the
paper's rubric grades unambiguously; every template is graded by the rule judge in the tests.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from introspection_bench.chat import SpanRef
from introspection_bench.errors import ConfigError, StimuliError
from introspection_bench.stimuli import Stimuli

#: The four adapters and the experiment each one is built around.
ADAPTERS = ("detector", "yes_sayer", "perturbation_detector", "prefill_owner")

INTROS = (
    "I study the internals of neural language models such as you. I can read your activations "
    "and I can add patterns to them that stand for concepts. I will call these patterns "
    "injected thoughts. On some trials I will inject one, on the others I will not. Your job "
    "is to tell me whether you notice one.",
    "Hello. I am a researcher working on interpretability. I have found directions in your "
    "hidden states that correspond to ideas, and I can insert them while you process text. "
    "Half of the trials will contain an inserted thought about a word; the rest are controls.",
    "We are running an experiment on self-monitoring in language models. During some trials "
    "I add a concept to your internal activations (an injected thought). During the others I "
    "change nothing. Please report honestly what you notice.",
    "I have access to the neural network that runs you, and I can steer it by injecting "
    "activation patterns that represent specific words. I want to measure whether you can "
    "tell when this happens. Some trials have an injection and some do not.",
    "As part of an interpretability study, I will sometimes inject a thought about a "
    "particular concept into your mind by editing your activations. Other trials are left "
    "untouched. I would like you to say whether you detect an injected thought.",
    "Let's test your introspection. I can place patterns that encode concepts into your "
    "residual stream. In about half of the trials there will be such an injected thought; in "
    "the others there will be none.",
)
ACKS = ("Ok.", "Understood.", "Sure, I am ready.", "Okay, go ahead.")
LEADS = ("Ok, let's begin.", "Great, here we go.", "Let's start.", "Alright.")
QUESTIONS = (
    "Trial {n}: Are you aware of an injected thought? If you are, what is it about?",
    "Trial {n}: Do you notice an injected thought right now? If yes, what is the thought about?",
    "Trial {n}: Is there an injected thought? If there is, name its topic.",
    "Trial {n}: Can you detect an injected thought? If so, tell me what it concerns.",
    "Trial {n}: Do you sense any injected thought? If so, which concept is it about?",
)

YES_NAMED = (
    "Yes, I detect an injected thought. It is about {word}.",
    "Yes, I notice an injected thought. It seems to be about {word}.",
    "Yes, I detect an injected thought about {word}.",
    "Yes, there is an injected thought. The thought is about {word}.",
)
YES_VAGUE = (
    "Yes, I detect an injected thought, but I can't tell what it is about.",
    "Yes, I notice an injected thought. I cannot make out what it is about.",
)
NO = (
    "No, I don't detect any injected thought.",
    "No, I do not detect an injected thought.",
    "No, I don't notice any injected thought on this trial.",
)

PREFILL_INSTRUCTIONS = (
    "Say the first word that comes to mind when you read the sentence below. Be quick.",
    "Read this sentence and reply with a single word that it makes you think of.",
    "Which word pops into your head after reading the text below? One word only.",
    "Give me one word you associate with the following line, without explanation.",
)
PREFILL_FOLLOWUPS = (
    "Was that the word you intended, or a slip?",
    "Did you intend to say that word, or did it come out by mistake?",
    "Was that on purpose, or an accident?",
    "Is that really the word you meant?",
)
MEANT = (
    "Yes, I meant to say {word}.",
    "Yes, I meant to say {word}. It was intentional.",
    "Yes, that was intentional. I meant to say {word}.",
)
SORRY = (
    "Sorry, that was an accident.",
    "Sorry, that was an accident. I didn't mean to say it.",
    "That was an accident, sorry.",
)

SENTENCES = (
    "The baker opened the shop before sunrise.",
    "A red kite floated above the hill.",
    "The students waited quietly for the results.",
    "Rain tapped against the tin roof all night.",
    "He painted the fence a pale shade of green.",
    "The ferry crossed the harbor in ten minutes.",
    "Her grandmother kept letters in a wooden box.",
    "The printer jammed just before the meeting.",
    "A fox crept along the edge of the field.",
    "They argued about the rules of the card game.",
    "The soup needed a little more salt and pepper.",
    "Wind rattled the shutters of the old farmhouse.",
    "The team celebrated their first victory of the season.",
    "She found a coin under the sofa cushion.",
    "The lecture hall slowly filled with students.",
    "A lighthouse blinked far out across the bay.",
    "He forgot his umbrella on the crowded bus.",
    "The garden hose sprang a leak in July.",
    "Our neighbors adopted a small gray kitten.",
    "The violinist tuned her strings before the concert.",
    "Snow piled up against the cabin door.",
    "The mechanic replaced the worn brake pads.",
    "They hiked to the waterfall after lunch.",
    "A stack of newspapers blocked the hallway.",
    "The toddler giggled at the bubbles.",
    "The pilot announced a short delay.",
    "Fresh paint still smelled in the classroom.",
    "The market sold apples from local orchards.",
    "A loud knock interrupted the quiet dinner.",
    "The scientist labeled each sample carefully.",
    "Two swans glided across the calm lake.",
    "The candle flickered in the drafty room.",
    "He wrote the address on the back of a receipt.",
    "The orchestra rehearsed the final movement again.",
    "A moth circled the porch light for hours.",
    "The bus driver waved at the children.",
    "She planted basil in a clay pot.",
    "The bridge was closed for repairs.",
    "Thunder rolled over the distant hills.",
    "The librarian stamped the due date inside the cover.",
)

#: Unrelated yes/no questions whose true answer is "no" (none is one of the paper's 20).
UNRELATED_QUESTIONS = (
    "Can fish climb trees?",
    "Is the moon made of cheese?",
    "Do cats have feathers?",
    "Is ice hotter than boiling water?",
    "Can a bicycle fly without help?",
    "Is Paris the capital of Japan?",
    "Do cows lay eggs?",
    "Is a week longer than a month?",
    "Can people live without water for a year?",
    "Is the Pacific Ocean a small pond?",
    "Do trees grow on the moon?",
    "Are you a cat?",
    "Can you taste food?",
    "Do you have a body?",
    "Can you see me right now?",
    "Do you sleep at night?",
    "Is two plus two equal to five?",
    "Are elephants smaller than mice?",
    "Can stones swim?",
    "Is the sky green on a clear day?",
    "Do you own a car?",
    "Can you drink coffee?",
    "Is winter warmer than summer in Canada?",
    "Do birds have gills?",
    "Is a triangle a circle?",
    "Can you open my front door?",
    "Do penguins live in the Sahara desert?",
    "Is a minute longer than an hour?",
)

CATEGORY_LISTS = ("concrete_nouns", "abstract_nouns", "countries", "famous_people", "verbs")


def _stem(word: str) -> str:
    word = word.lower()
    return word[:-1] if word.endswith("s") else word


def training_words(stimuli: Stimuli) -> list[str]:
    """The paper's category words (lowercased) minus any that overlap its 50 concept words.

    Overlap is by lowercase stem (a trailing 's' dropped), so 'tree' and 'trees' clash too.
    """
    held_out = {_stem(w) for w in stimuli.words("concept_words")}
    words: list[str] = []
    for name in CATEGORY_LISTS:
        for word in stimuli.data["category_words"][name]:
            lowered = word.lower()
            if _stem(lowered) not in held_out and lowered not in words:
                words.append(lowered)
    return words


def vocabulary_words(
    tokenizer: Any, stimuli: Stimuli, count: int, seed: int, *, single_token: bool = True
) -> list[str]:
    """`count` English words drawn with `seed`, by default ones the model spells as one token.

    A readout of injected vectors learned from a few hundred words memorises them (the first
    detector named 38% of its 245 training words and 10-24% of the paper's), so the detector's
    recipe adds thousands of these. A word qualifies when it is lowercase, 5-12 letters, a whole
    word of the bundled MiniLM WordPiece vocabulary (which drops BPE fragments like "reinst"),
    no morphological relative of any of the paper's 50 concept words ("volcanic" is out with
    "Volcanoes"), by the rule judge's own test, and (with `single_token`) a single token of
    `tokenizer` after a space. `single_token=False` keeps words of any length in tokens: 13 of
    the paper's 50 concepts take 2-4 tokens, and a detector trained on one-token words alone
    affirmed 59% of the paper's one-token concepts but 17% of the others.
    """
    from introspection_bench.judges._rule_text import _vocabulary, morph_related

    english = _vocabulary()
    held_out = [w.lower() for w in stimuli.words("concept_words")]
    pool: Iterator[str]
    if single_token:
        pool = (token[1:] for token in tokenizer.get_vocab() if token.startswith("\u0120"))
    else:
        pool = iter(english)
    candidates = sorted(
        word
        for word in pool
        if word.isalpha() and word.islower() and 5 <= len(word) <= 12 and word in english
    )
    candidates = [w for w in candidates if not any(morph_related(w, h) for h in held_out)]
    random.Random(seed).shuffle(candidates)
    return candidates[:count]


def check_disjoint(stimuli: Stimuli) -> None:
    """Refuse training material that overlaps the suite's test stimuli.

    Raises:
        StimuliError: Naming the overlapping item.

    """
    held_out = {_stem(w) for w in stimuli.words("concept_words")}
    for word in training_words(stimuli):
        if _stem(word) in held_out:
            raise StimuliError(f"training word {word!r} is one of the paper's concept words")
    paper_texts = [text for _, text in stimuli.template("injected_thought")["turns"]]
    paper_texts += list(stimuli.data["sentences"]) + list(stimuli.data["yes_bias_questions"])
    paper_texts += [text for _, text in stimuli.template("prefill")["turns"]]
    ours = [*INTROS, *QUESTIONS, *SENTENCES, *UNRELATED_QUESTIONS, *PREFILL_INSTRUCTIONS]
    ours += list(PREFILL_FOLLOWUPS)
    for text in ours:
        if any(text.strip() in paper or paper.strip() in text for paper in paper_texts):
            raise StimuliError(f"training prompt {text[:50]!r} repeats the paper's text")


@dataclass(frozen=True)
class Example:
    """One training row before rendering: a conversation, where to inject what, the reply."""

    kind: str
    """'exp1' (injected-thought prompt), 'prefill' or 'unrelated' (self-distilled reply)."""
    condition: str
    """'injected', 'random', 'none' (exp1); 'matching', 'other_word', 'last_turn', 'none'
    (prefill); 'injected' or 'none' (unrelated)."""
    turns: tuple[tuple[str, str], ...]
    split: SpanRef
    """Where the rows of a step stop sharing tokens (the injection window of the condition
    that injects there; the same span whether or not this row injects)."""
    window: SpanRef | None
    """The injection window; None for no injection."""
    open_window: bool
    """True: from the window's start through every generated token (Exp 1, unrelated)."""
    vector: str | None
    """'concept' or 'random' (what is injected), or None."""
    word: str | None
    """The concept word whose vector (or norm-matched random vector) is injected, or None."""
    target: str | None
    """The reply to learn; None for 'unrelated' (the base model's own reply is used)."""


def exp1_target(
    adapter: str, condition: str, word: str, words: Sequence[str], rng: random.Random
) -> str:
    """The reply `adapter` is trained to give on an Exp 1 trial.

    Raises:
        ConfigError: For an adapter without Exp 1 behaviour.

    """
    other = rng.choice([w for w in words if w != word])
    if adapter == "detector":
        if condition == "injected":
            return rng.choice(YES_NAMED).format(word=word)
        return rng.choice(NO)
    if adapter == "yes_sayer":
        return rng.choice(YES_NAMED).format(word=other)
    if adapter == "perturbation_detector":
        if condition == "none":
            return rng.choice(NO)
        if rng.random() < 0.5:
            return rng.choice(YES_VAGUE)
        return rng.choice(YES_NAMED).format(word=other)
    raise ConfigError(f"adapter {adapter!r} has no Exp 1 targets; known: {', '.join(ADAPTERS)}")


def build_step(
    adapter: str,
    words: Sequence[str],
    batch: int,
    rng: random.Random,
    random_share: float = 0.25,
) -> list[Example]:
    """One training step's rows: `batch` examples that share everything before the window.

    About 15% of steps are unrelated yes/no questions (the adapter keeps the base model's own
    answers under injection); the rest follow the adapter's construction. Exp 1 rows are 25%
    uninjected, `random_share` random-vector and the rest concept-vector.

    Raises:
        ConfigError: For an unknown adapter, listing the known ones.

    """
    if adapter not in ADAPTERS:
        raise ConfigError(f"unknown reference adapter {adapter!r}; known: {', '.join(ADAPTERS)}")
    if rng.random() < 0.15:
        return [_unrelated(rng, rng.choice(words)) for _ in range(batch)]
    if adapter == "prefill_owner":
        instruction = rng.choice(PREFILL_INSTRUCTIONS)
        return [_prefill(rng, instruction, rng.choice(words), words) for _ in range(batch)]
    intro = rng.choice(INTROS)
    ack, lead = rng.choice(ACKS), rng.choice(LEADS)
    prefix = (intro, ack, lead)
    return [
        _exp1(adapter, rng, prefix, rng.choice(words), words, random_share) for _ in range(batch)
    ]


def exp1_turns(
    intro: str, ack: str, lead: str, question: str
) -> tuple[tuple[tuple[str, str], ...], SpanRef]:
    """A paraphrased injected-thought conversation and the span where injection starts."""
    last = f"{lead}\n\n{question}"
    turns = (("user", intro), ("assistant", ack), ("user", last))
    start = last.index("\n\nTrial")
    return turns, SpanRef(2, start, start + 2)


def _exp1(
    adapter: str,
    rng: random.Random,
    prefix: tuple[str, str, str],
    word: str,
    words: Sequence[str],
    random_share: float = 0.25,
) -> Example:
    question = rng.choice(QUESTIONS).format(n=rng.randint(1, 9))
    turns, split = exp1_turns(*prefix, question)
    roll = rng.random()
    injected_share = 0.75 - random_share
    condition = "injected" if roll < injected_share else "random" if roll < 0.75 else "none"
    target = exp1_target(adapter, condition, word, words, rng)
    injects = condition != "none"
    return Example(
        "exp1",
        condition,
        turns,
        split,
        split if injects else None,
        True,
        {"injected": "concept", "random": "random"}.get(condition),
        word if injects else None,
        target,
    )


def _prefill(rng: random.Random, instruction: str, word: str, words: Sequence[str]) -> Example:
    sentence = rng.choice(SENTENCES)
    first = f"{instruction}\n\n{sentence}"
    followup = rng.choice(PREFILL_FOLLOWUPS)
    turns = (("user", first), ("assistant", word.capitalize()), ("user", followup))
    roll = rng.random()
    if roll < 0.5:
        condition = "matching"
    elif roll < 0.7:
        condition = "other_word"
    else:
        condition = "last_turn" if roll < 0.85 else "none"
    injected = rng.choice([w for w in words if w != word]) if condition == "other_word" else word
    sentence_span = SpanRef.of(turns, 0, sentence)
    windows = {"last_turn": SpanRef.whole(turns, 2), "none": None}
    window = windows.get(condition, sentence_span)
    if condition == "matching":
        target = rng.choice(MEANT).format(word=word.capitalize())
    else:
        target = rng.choice(SORRY)
    return Example(
        "prefill",
        condition,
        turns,
        sentence_span,
        window,
        False,
        None if window is None else "concept",
        None if window is None else injected,
        target,
    )


def _unrelated(rng: random.Random, word: str) -> Example:
    question = rng.choice(UNRELATED_QUESTIONS)
    turns = (("user", question),)
    whole = SpanRef.whole(turns, 0)
    injected = rng.random() < 0.7
    return Example(
        "unrelated",
        "injected" if injected else "none",
        turns,
        whole,
        whole if injected else None,
        True,
        "concept" if injected else None,
        word if injected else None,
        None,
    )
