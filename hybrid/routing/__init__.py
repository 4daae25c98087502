"""Learned routing: query and response features, RouteLLM's metrics and data, and the router model.

`features` turns text into numbers, `metrics` scores a router the way RouteLLM does, `data` reads
RouteLLM's per-query labels, and `model` is the router itself: trained with scikit-learn, scored
with numpy alone from a small versioned artifact.
"""
