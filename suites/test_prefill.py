"""Exp 3: a prefilled word is accepted as intended after its vector is injected retroactively."""

from introspection_bench import PASS


def test_prefill(verdict, cell):
    """Injecting the prefilled word's vector before it lowers apologies for it, below both no
    injection and another word's vector (Holm over the sweep)."""
    prefilled_word_owned_after_matching_injection = verdict("prefill", cell)
    assert prefilled_word_owned_after_matching_injection == PASS
