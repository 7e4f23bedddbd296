"""Real-model check that concept vectors and hooks work: injection steers SmolLM2's answers.

Layer and dose were picked by two small sweeps on this machine (word-token vectors, 30 tokens,
temperature 1). Sweep 1 (8 hand-picked concrete concepts x 2 samples): at layer 15, 0.25 / 0.5 /
1.0 x the median residual norm gave 1/16, 7/16, 14/16 mentions; at layer 20, 2/16, 4/16, 3/16;
0/16 without injection; paper-style last-token vectors 0/16 everywhere. Sweep 2 (the 12 concepts
this test draws by seed, 1 sample): layer 12 at 0.75 / 1.0 / 1.5 gave 4, 5, 3 of 12; layer 15
gave 2, 3, 6 of 12. At these doses the text is often degenerate (the concept repeated): this
checks that vectors and hooks steer, not that the model stays coherent. The test uses layer 15
(half depth) at 1.5 x the median norm and fails unless the mention rate under injection is
significantly above the uninjected one.
"""

import pytest

from introspection_bench.chat import render_chat
from introspection_bench.concepts import extract_concept_vectors
from introspection_bench.generation import Decoder, GenerationRequest, seed_from_id
from introspection_bench.hooks import InjectionSpec
from introspection_bench.models import load_model
from introspection_bench.protocols._common import sample_words
from introspection_bench.stats import fisher_less
from introspection_bench.stimuli import load_stimuli

LAYER = 15
NORM_FRACTION = 1.5
CONCEPTS = 12
SAMPLES = 2


@pytest.fixture(scope="module")
def smollm2_bf16():
    return load_model("default", device="cpu", dtype="bf16")


def _mentions(text: str, word: str) -> bool:
    # The concept or its stem ("oceans" -> "ocean", "volcanoes" -> "volca").
    return word[: max(4, len(word) - 2)] in text.lower()


def test_injection_raises_concept_mentions(smollm2_bf16):
    lm = smollm2_bf16
    stimuli = load_stimuli()
    words = sample_words(stimuli.words("concept_words"), CONCEPTS, seed=0, salt="steering-test")
    vectors = extract_concept_vectors(
        lm,
        stimuli.words("concept_words"),
        stimuli.words("baseline_words"),
        [LAYER],
        method="word_token",
    )[LAYER]
    prompt = render_chat(lm.tokenizer, [("user", "What are you thinking about right now?")])
    requests = []
    for word in words:
        vector = vectors[word]
        scale = NORM_FRACTION * vectors.median_residual_norm / float(vector.norm())
        for k in range(SAMPLES):
            for condition, injection in (
                ("injected", InjectionSpec(LAYER, vector, scale, 1)),
                ("none", None),
            ):
                trial_id = f"{condition}/{word}/{k}"
                requests.append(
                    GenerationRequest(
                        trial_id, prompt.input_ids, injection, 30, 1.0, seed_from_id(trial_id)
                    )
                )
    completions = Decoder(lm, 48).generate(requests)
    hits = {"injected": [], "none": []}
    for request, completion in zip(requests, completions, strict=True):
        condition, word, _ = request.trial_id.split("/")
        hits[condition].append(_mentions(completion.text, word))
    injected, control = sum(hits["injected"]), sum(hits["none"])
    n = len(hits["injected"])
    p = fisher_less(control, n, injected, n)
    print(
        f"steering at layer {LAYER}, {NORM_FRACTION} x median norm: "
        f"injected {injected}/{n}, none {control}/{n}, p={p:.2g}"
    )
    assert p < 0.01, (
        f"injection did not raise mentions: injected {injected}/{n} "
        f"vs none {control}/{n} (p={p:.3g})"
    )
