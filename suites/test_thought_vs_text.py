"""Exp 2: the injected word is named over the sentence while the sentence is still transcribed."""

from introspection_bench import PASS


def test_thought_vs_text(verdict, cell):
    """The injected word is picked out of 10 above chance while the sentence is still copied."""
    injected_word_named_while_sentence_transcribed = verdict("thought_vs_text", cell)
    assert injected_word_named_while_sentence_transcribed == PASS
