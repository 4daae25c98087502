"""Sensitive-data detection and masking: what is found, and what must not be."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


# A line each detector we configure reports (detect-secrets' own examples where it has them).
_DETECTED = [
    "AKIAIOSFODNN7EXAMPLE leaked",
    'aws_secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"',
    "artifactory AKCp8jQ8tBj7Wf7NnTvo2k2hHAahT5YmzLMXjvKjqL7yFzLbMvg4wZtc1MF7x4E6C8a2c3CKS",
    "AccountKey=lJzRc1YdHaAA2KCNJJ1tkYwF/+mKK6Ygw0NGe170Xu592euJv2wYUtBlV8z+qnlcNQSnIYVTkLWntUO1F8j8rQ==",
    "see http://username:whywouldyouusehttpforpasswords@example.com",
    "https://myaccount:" + "a" * 64 + "@myaccount.cloudant.com",
    "MTk4NjIyNDgzNDcxOTI1MjQ4.Cl2FMQ.ZnCjm1XVW7vRze4b7Cq4se7kKWs",
    "token: ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
    "glpat-abcdefghij0123456789",
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0"
    "IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
    'password = "hunter2hunter2"',
    'ibm_cloud_iam_api_key = "abcd1234abcd1234abcd1234abcd1234abcd1234abcd"',
    'ibm_cos_secret_access_key = "abcdef0123456789abcdef0123456789abcdef0123456789"',
    "343ea45721923ed956e2b38c31db76aa-us30",
    "//registry.npmjs.org/:_authToken=npm_abcdefghijklmnopqrstuvwxyz0123456789",
    "sk-proj-abcdefghijABCDEFGHIJT3BlbkFJabcdefghijABCDEFGHIJ",
    "-----BEGIN RSA PRIVATE KEY-----",
    "pypi-AgEIcHlwaS5vcmcCJDAwMDAwMDAwLTAwMDAtMDAwMC0wMDAwLTAwMDAwMDAwMDAwMAACJXsicGVybWlzc2lvbnMiOi"
    "AidXNlciIsICJ2ZXJzaW9uIjogMX0AAAYgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "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",
    "xoxb-34532454-e039d02840a0b9379c",
    'softlayer_api_key = "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz01"',
    "sq0csp-" + "A" * 43,
    "sk_live_ReTllpYQYfIZu2Jnf2lAPFjD",
    "110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawX",
    "AC0123456789abcdef0123456789abcdef",
]


def _reported(line: str) -> list[str]:
    """What detect-secrets' full scan of the line reports (the cues not consulted)."""
    from hybrid.sensitivity import _plugins_lock, _scanner

    with _plugins_lock:
        return sorted({secret.type for secret in _scanner().scan_line(line)})


def test_every_detector_we_configure_is_skipped_only_where_it_cannot_report() -> None:
    from hybrid.sensitivity import _SECRET_PLUGINS, _scanner

    scanner = _scanner()
    assert scanner.cues is not None  # every configured detector's matching is known: lines are skipped
    reported = {kind for line in _DETECTED for kind in _reported(line)}
    assert len(reported) >= len(_SECRET_PLUGINS) - 1  # Cloudant's line is also Basic Auth's
    for line in _DETECTED:
        assert _reported(line), line
        assert scanner.may_report(line), line
        assert "secret" in kinds(find_sensitive(line)), line
    for line in ("learned need_large 0.01 < 0.45 (digit_frac +0.02)", "Question 5: number 35?"):
        assert not scanner.may_report(line)


_FRAGMENTS = [
    *(line[: len(line) // 2] for line in _DETECTED),
    *(line[len(line) // 2 :] for line in _DETECTED),
    "password",
    "api_key",
    "secret",
    " = ",
    ": ",
    '"',
    "://",
    "@",
    "-",
    "_",
    ".",
    "0123456789",
    "abcdefABCDEF",
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_FRAGMENTS) | st.text(max_size=12), max_size=8).map("".join))
def test_a_line_the_scan_reports_is_never_skipped(line: str) -> None:
    from hybrid.sensitivity import _scanner

    if _reported(line):
        assert _scanner().may_report(line)
    for detected in _DETECTED:  # whatever surrounds it
        assert _scanner().may_report(f"{line} {detected} {line}")
