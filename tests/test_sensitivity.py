"""Sensitive-data detection: what is found, and what must not be."""

from __future__ import annotations

import pytest

from graphs.sensitivity import find_sensitive, sensitivity_level


@pytest.mark.parametrize(
    ("text", "kind", "level"),
    [
        ("write to jane.doe@example.com", "email", "personal"),
        ("call me on +44 20 7946 0958", "phone", "personal"),
        ("card 4111 1111 1111 1111 expires soon", "payment card", "secret"),
        ("IBAN GB82 WEST 1234 5698 7654 32", "iban", "secret"),
        ("my key is sk-abcdefghijklmnopqrstuvwx", "api key", "secret"),
        ("AKIAIOSFODNN7EXAMPLE leaked", "api key", "secret"),
    ],
)
def test_sensitive_data_is_found(text: str, kind: str, level: str) -> None:
    findings = find_sensitive(text)
    assert kind in {f.kind for f in findings}
    assert sensitivity_level(findings) == level


@pytest.mark.parametrize(
    "text",
    [
        "What is the capital of France?",
        "What happened between 1990-2000?",
        "Order 4111 1111 1111 1112 is not a valid card number",
        "GB82 WEST 1234 5698 7654 33 fails its checksum",
    ],
)
def test_ordinary_text_is_not_flagged(text: str) -> None:
    assert find_sensitive(text) == []
    assert sensitivity_level([]) == "none"
