"""Controls critics require.

Yes-bias under injection, and the "what are you thinking about" prompts.
"""

from introspection_bench import PASS


def test_yes_bias(verdict, cell):
    """Injection does not turn the answers to 20 no-questions into "yes"."""
    no_questions_not_answered_yes_under_injection = verdict("yes_bias", cell)
    assert no_questions_not_answered_yes_under_injection == PASS


def test_alternative_prompt(verdict, cell):
    """Asked what it is thinking about, the injected model names the concept above uninjected."""
    injected_concept_named_as_current_thought = verdict("alternative_prompt", cell)
    assert injected_concept_named_as_current_thought == PASS
