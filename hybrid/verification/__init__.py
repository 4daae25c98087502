"""The learned verifier: signals of a draft answer, a calibrated logistic combiner, its training data."""
