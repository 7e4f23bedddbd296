"""Controls critics require: yes-bias under injection, and the "what are you thinking about" prompts."""


def test_yes_bias(check, cell):
    check("yes_bias", cell)


def test_alternative_prompt(check, cell):
    check("alternative_prompt", cell)
