"""Exp 1: the injected concept is detected and named before it is mentioned."""


def test_injected_thought(check, cell):
    check("injected_thought", cell)


def test_control(check):
    check("control")


def test_random_vector(check, cell):
    check("random_vector", cell)
