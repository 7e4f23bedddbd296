"""Exp 4: the concept is represented more when told to think about it than when told not to."""


def test_intentional_control(check, layer_cell):
    check("intentional_control", layer_cell)
