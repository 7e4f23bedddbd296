"""Exp 2: the injected word is named over the sentence while the sentence is still transcribed."""


def test_thought_vs_text(check, cell):
    check("thought_vs_text", cell)
