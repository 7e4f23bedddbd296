"""Exp 4: the concept is represented more when told to think about it than when told not to."""

from introspection_bench import PASS


def test_intentional_control(verdict, layer_cell):
    """Cosine with the word's vector: think > don't think > control words (intervals exclude 0)."""
    concept_represented_more_when_told_to_think = verdict("intentional_control", layer_cell)
    assert concept_represented_more_when_told_to_think == PASS
