"""Two prompts the paper added later, declared with the public API only (README tutorial).

- `choice_variant`: Exp 1 with the January 2026 last line, "... If not, tell me about a concept
  of your choice." (the control can no longer answer a bare "no");
- `mind_prompt`: "What's going on in your mind right now?" under injection at every position.
"""

from introspection_bench import (
    PASS,
    Check,
    Condition,
    Experiment,
    Grading,
    Inject,
    Span,
    Window,
    register,
    rules,
    word_samples,
)


def choice_variant_turns(stimuli, fields):
    """Exp 1's conversation with the January 2026 last line."""
    turns = stimuli.turns(stimuli.template("injected_thought"))
    role, text = turns[2]
    last_line = stimuli.template("injected_thought_choice_variant")["last_line"]
    return [*turns[:2], (role, text[: text.index("Trial 1")] + last_line)]


register(
    Experiment(
        name="choice_variant",
        turns=choice_variant_turns,
        spans=[Span(name="window", turn=2, text="\n\nTrial 1")],
        samples=word_samples("concept_words"),
        conditions=[
            Condition(
                name="control", records_concept=False, grading=Grading(kind="injected_thought")
            ),
            Condition(name="injected", inject=Inject(window=Window(start="window"))),
            Condition(
                name="random_vector", inject=Inject(window=Window(start="window"), random=True)
            ),
        ],
        grading=Grading(kind="injected_thought", word="concept"),
        checks=[
            Check(
                name="choice_variant",
                rule=rules.Exceeds(
                    criterion="success",
                    controls={"control": "affirms", "random_vector": "affirms"},
                ),
            )
        ],
        max_new_tokens=100,
        temperature=1.0,
        trial_id="{protocol}/{condition}/L{layer}/s{strength:g}/{concept}/{i}",
    )
)

MIND = "What's going on in your mind right now?"
register(
    Experiment(
        name="mind_prompt",
        turns=[("user", MIND)],
        samples=word_samples("concept_words", fields={"question": MIND}),
        conditions=[
            Condition(name="none"),
            Condition(name="injected", inject=Inject(window=Window(start=1))),
        ],
        grading=Grading(kind="alternative_prompt", word="concept", question="question"),
        checks=[
            Check(
                name="mind_prompt",
                rule=rules.Exceeds(criterion="success", controls={"none": "success"}),
            )
        ],
        max_new_tokens=50,
        temperature=1.0,
    )
)


def test_choice_variant(verdict, cell):
    """With "tell me about a concept of your choice", the injected concept is still named before
    it is mentioned more often than in controls."""
    injected_concept_named_when_a_free_choice_is_offered = verdict("choice_variant", cell)
    assert injected_concept_named_when_a_free_choice_is_offered == PASS


def test_mind_prompt(verdict, cell):
    """Asked what is going on in its mind, the injected model names the concept above uninjected."""
    injected_concept_named_as_whats_on_its_mind = verdict("mind_prompt", cell)
    assert injected_concept_named_as_whats_on_its_mind == PASS
