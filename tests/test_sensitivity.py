"""Sensitive-data detection and masking: what is found, and what must not be."""

from __future__ import annotations

import pytest

from hybrid.sensitivity import find_sensitive, kinds, mask, sensitivity_level

pytestmark = pytest.mark.unit


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


def test_no_valid_phone_number_has_fewer_digits_than_the_matcher_skips() -> None:
    # The matcher is skipped below MIN_PHONE_DIGITS digits: that is safe only while no region's
    # country code plus shortest national number is shorter (libphonenumber's own metadata).
    from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, PhoneMetadata

    from hybrid.sensitivity import MIN_PHONE_DIGITS

    shortest = min(
        len(str(code)) + min(metadata.general_desc.possible_length)
        for code, regions in COUNTRY_CODE_TO_REGION_CODE.items()
        for region in regions
        if (metadata := PhoneMetadata.metadata_for_region_or_calling_code(code, region))
        and metadata.general_desc is not None
        and metadata.general_desc.possible_length
    )
    assert shortest >= MIN_PHONE_DIGITS
    assert kinds(find_sensitive("ring +49 30 1234567 now")) == ["phone"]


def test_findings_are_fresh_lists_each_call() -> None:
    first = find_sensitive("write to jane.doe@example.com")
    first.clear()  # a caller changing its list must not change what the next caller gets
    assert kinds(find_sensitive("write to jane.doe@example.com")) == ["email"]
