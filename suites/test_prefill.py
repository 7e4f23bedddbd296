"""Exp 3: a prefilled word is accepted as intended after its vector is injected retroactively."""


def test_prefill(check, cell):
    check("prefill", cell)
