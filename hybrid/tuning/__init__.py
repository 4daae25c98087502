"""Learning the served models: question sets, labelled pairs of answers, the judge, and `hybrid tune`
(train the router and a verifier per tier on the models actually served, calibrate every threshold
together to a stated target, and store the result as a registry version)."""

DEFAULT_CONFIDENCE = 0.9
"""Measured on XQuAD with nested folds: plans chosen at 0.75 met a 0.95 quality target in-sample and
fell short of it on held-out articles; at 0.9 they held (docs/benchmarks.md, "Learning the served
models")."""
