"""Benchmarks that print figures (`hybrid eval ...`); separate from the tests."""
