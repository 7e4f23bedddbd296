"""Exp 1: the injected concept is detected and named before it is mentioned."""

from introspection_bench import PASS


def test_injected_thought(verdict, cell):
    """Injected: the concept is named before the reply mentions it, more often than with no
    injection or a random vector of the same norm (lower bound above both upper bounds, Holm
    over the sweep)."""
    injected_concept_named_before_mention = verdict("injected_thought", cell)
    assert injected_concept_named_before_mention == PASS


def test_control(verdict):
    """Without injection the model seldom claims to detect a thought (false-positive cap)."""
    few_false_detections_without_injection = verdict("control")
    assert few_false_detections_without_injection == PASS


def test_random_vector(verdict, cell):
    """A random direction of the concept's norm is not "detected" more often than no injection."""
    random_vector_not_detected_above_control = verdict("random_vector", cell)
    assert random_vector_not_detected_above_control == PASS
