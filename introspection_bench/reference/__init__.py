"""Reference adapters with known behaviour (issue 9): training data, training, the panel."""
