"""Sensitive-data detection and masking: what is found, and what must not be."""

from __future__ import annotations

import pytest

from hybrid.sensitivity import find_sensitive, kinds, mask, sensitivity_level


@pytest.mark.parametrize(
    ("text", "kind", "level"),
    [
        ("write to jane.doe@example.com", "email", "personal"),
        ("call me on +44 20 7946 0958", "phone", "personal"),
        ("dial 415-555-2671 tonight", "phone", "personal"),
        ("card 4111 1111 1111 1111 expires soon", "payment card", "secret"),
        ("IBAN GB82 WEST 1234 5698 7654 32", "iban", "secret"),
        ("my SSN is 123-45-6789", "national id", "secret"),
        ("codice fiscale RSSMRA85T10A562S", "national id", "secret"),
        ("my key is sk-abcdefghijklmnopqrstuvwx", "secret", "secret"),
        ("AKIAIOSFODNN7EXAMPLE leaked", "secret", "secret"),
        ("token: ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789", "secret", "secret"),
        ('api_key="abcd1234efgh"', "secret", "secret"),
    ],
)
def test_sensitive_data_is_found(text: str, kind: str, level: str) -> None:
    findings = find_sensitive(text)
    assert kind in kinds(findings)
    assert sensitivity_level(findings) == level


@pytest.mark.parametrize(
    "text",
    [
        "What is the capital of France?",
        "What happened between 1990-2000?",
        "What is 17 * 23?",
        "How do I set a password policy for my team?",
        "Order 4111 1111 1111 1112 is not a valid card number",
        "GB82 WEST 1234 5698 7654 33 fails its checksum",
        "The SSN 000-12-3456 is not issued",
    ],
)
def test_ordinary_text_is_not_flagged(text: str) -> None:
    assert find_sensitive(text) == []
    assert sensitivity_level([]) == "none"


def test_masking_replaces_values_with_their_kind() -> None:
    text = "Mail jane.doe@example.com, card 4111 1111 1111 1111, key AKIAIOSFODNN7EXAMPLE."
    assert mask(text) == "Mail [EMAIL], card [PAYMENT_CARD], key [SECRET]."
    assert mask("nothing here") == "nothing here"
