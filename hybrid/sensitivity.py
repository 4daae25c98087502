"""Sensitive data in text: found, classified and masked.

Maintained libraries do the judging where one fits: detect-secrets' pattern detectors for keys and
tokens, Google's libphonenumber (`phonenumbers`) for phone numbers, python-stdnum for the checksums
of payment cards (Luhn), IBANs and national identity numbers. A finding says what kind it is and
where, never the value; `mask` replaces every finding with its kind.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

Sensitivity = Literal["none", "personal", "secret"]


@dataclass(frozen=True)
class Finding:
    kind: str
    level: Sensitivity
    start: int
    end: int


_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[a-z]{2,}\b", re.IGNORECASE)
_CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")
_GENERIC_KEY = re.compile(r"\b(?:sk|pk|rk)-[A-Za-z0-9_-]{20,}\b")  # OpenAI/Anthropic-style keys
# Candidates for national ids; stdnum decides which are real (checksums, valid ranges).
_NATIONAL_IDS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\b\d{3}-\d{2}-\d{4}\b"), "us.ssn"),
    (re.compile(r"\b[12]\s?\d{2}\s?\d{2}\s?\d{2}\s?\d{3}\s?\d{3}\s?\d{2}\b"), "fr.nir"),
    (re.compile(r"\b\d{8}[A-Z]\b"), "es.dni"),
    (re.compile(r"\b[A-Z]{6}\d{2}[A-Z]\d{2}[A-Z]\d{3}[A-Z]\b"), "it.codicefiscale"),
    (re.compile(r"\b\d{11}\b"), "de.idnr"),
]
_SECRET_PLUGINS = [
    "AWSKeyDetector",
    "ArtifactoryDetector",
    "AzureStorageKeyDetector",
    "BasicAuthDetector",
    "CloudantDetector",
    "DiscordBotTokenDetector",
    "GitHubTokenDetector",
    "GitLabTokenDetector",
    "IbmCloudIamDetector",
    "IbmCosHmacDetector",
    "JwtTokenDetector",
    "KeywordDetector",
    "MailchimpDetector",
    "NpmDetector",
    "OpenAIDetector",
    "PrivateKeyDetector",
    "PypiTokenDetector",
    "SendGridDetector",
    "SlackDetector",
    "SoftlayerDetector",
    "SquareOAuthDetector",
    "StripeDetector",
    "TelegramBotTokenDetector",
    "TwilioKeyDetector",
]  # fmt: skip  (entropy detectors left out: they flag ordinary prose)


@lru_cache(maxsize=1)
def _national_validators() -> dict[str, Any]:
    from stdnum.de import idnr
    from stdnum.es import dni
    from stdnum.fr import nir
    from stdnum.it import codicefiscale
    from stdnum.us import ssn

    return {"us.ssn": ssn, "fr.nir": nir, "es.dni": dni, "it.codicefiscale": codicefiscale, "de.idnr": idnr}


_plugins_lock = threading.Lock()


@dataclass(frozen=True)
class _SecretScanner:
    scan_line: Callable[[str], Iterable[Any]]
    # Patterns one of which a line must match for any detector to report it; None: some
    # detector's matching is not known here, and every line is scanned.
    cues: tuple[re.Pattern[str], ...] | None

    def may_report(self, line: str) -> bool:
        return self.cues is None or any(cue.search(line) for cue in self.cues)


@lru_cache(maxsize=1)
def _scanner() -> _SecretScanner:
    """detect-secrets' line scanner, with our plugins configured once per process.

    (Its `transient_settings` rebuilds every plugin on each call, for every string of every audit
    record.) Its ad-hoc scan takes each detector through its filter machinery, about 0.1 ms a line
    when nothing is found; a line none of the detectors' own patterns matches is not scanned.
    """
    from detect_secrets.core.scan import scan_line
    from detect_secrets.settings import get_plugins, get_settings

    get_settings().configure_plugins([{"name": name} for name in _SECRET_PLUGINS])
    return _SecretScanner(scan_line, _cues(get_plugins()))


def _cues(plugins: Iterable[Any]) -> tuple[re.Pattern[str], ...] | None:
    """The patterns without a match of which no detector reports anything.

    A pattern detector reports only what its `denylist` finds (JWT's also checks the token's
    form); the keyword detector only where one of its keywords occurs (every pattern it tries
    starts from them). Any other detector, or one matching in its own way: None."""
    from detect_secrets.plugins import keyword
    from detect_secrets.plugins.base import RegexBasedDetector
    from detect_secrets.plugins.jwt import JwtTokenDetector

    cues: list[re.Pattern[str]] = []
    for plugin in plugins:
        kind = type(plugin)
        if isinstance(plugin, RegexBasedDetector) and (
            kind.analyze_string is RegexBasedDetector.analyze_string or kind is JwtTokenDetector
        ):
            cues += plugin.denylist
        elif kind is keyword.KeywordDetector:
            cues.append(re.compile("|".join(keyword.DENYLIST), re.IGNORECASE))
        else:
            return None
    return tuple(cues)


_LONG_TOKEN = re.compile(r"[A-Za-z0-9_\-+/]{20,}")


def _may_hold_secret(text: str) -> bool:
    """Every detector's pattern needs a digit, `=`/`:`, a key header, or a long token; prose has none."""
    return any(ch.isdigit() or ch in "=:" for ch in text) or "-----" in text or bool(_LONG_TOKEN.search(text))


def _secrets(text: str) -> list[Finding]:
    if not _may_hold_secret(text):
        return []
    scanner = _scanner()
    found = []
    for line in text.splitlines() or [text]:
        if not scanner.may_report(line):
            continue
        with _plugins_lock:  # the scanner's plugin state is shared
            secrets = list(scanner.scan_line(line))
        for secret in secrets:
            value = secret.secret_value or ""
            start = text.find(value) if value else -1
            if start >= 0:
                found.append(Finding("secret", "secret", start, start + len(value)))
            else:
                at = text.find(line)
                found.append(Finding("secret", "secret", at, at + len(line)))
    found += [Finding("secret", "secret", m.start(), m.end()) for m in _GENERIC_KEY.finditer(text)]
    return found


# The fewest digits a valid phone number has anywhere: country code plus shortest national number
# (Austria, Germany, Iran: 2 + 4).
MIN_PHONE_DIGITS = 6


def _may_hold_phone(text: str) -> bool:
    """Whether a candidate span of libphonenumber's own matcher pattern has enough digits to be a
    number: the matcher is slow on every string with numbers in it (route and verifier reasons)."""
    from phonenumbers import phonenumbermatcher

    pattern = getattr(phonenumbermatcher, "_PATTERN", None)  # private: without it, always match
    if pattern is None:
        return True
    return any(sum(ch.isdigit() for ch in m.group()) >= MIN_PHONE_DIGITS for m in pattern.finditer(text))


def find_sensitive(text: str) -> list[Finding]:
    """Every piece of sensitive data in `text`, in order of position."""
    return list(_find_sensitive(text))


@lru_cache(maxsize=1024)  # a question is judged when routed and again when its answer is audited
def _find_sensitive(text: str) -> tuple[Finding, ...]:
    import phonenumbers
    from stdnum import iban, luhn

    findings = _secrets(text)
    for match in _CARD.finditer(text):
        digits = re.sub(r"\D", "", match.group())
        if 13 <= len(digits) <= 19 and luhn.is_valid(digits):
            findings.append(Finding("payment card", "secret", match.start(), match.end()))
    findings += [
        Finding("iban", "secret", m.start(), m.end())
        for m in _IBAN.finditer(text)
        if iban.is_valid(m.group())
    ]
    validators = _national_validators()
    for pattern, kind in _NATIONAL_IDS:
        findings += [
            Finding("national id", "secret", m.start(), m.end())
            for m in pattern.finditer(text)
            if validators[kind].is_valid(m.group())
        ]
    findings += [Finding("email", "personal", m.start(), m.end()) for m in _EMAIL.finditer(text)]
    taken = [(f.start, f.end) for f in findings]
    if _may_hold_phone(text):
        for match in phonenumbers.PhoneNumberMatcher(text, "US", leniency=phonenumbers.Leniency.VALID):
            if not any(start < match.end and match.start < end for start, end in taken):
                findings.append(Finding("phone", "personal", match.start, match.end))
    return tuple(sorted(findings, key=lambda f: (f.start, -f.end)))


def sensitivity_level(findings: list[Finding]) -> Sensitivity:
    """The most sensitive level among findings."""
    levels = {f.level for f in findings}
    return "secret" if "secret" in levels else "personal" if "personal" in levels else "none"


def kinds(findings: list[Finding]) -> list[str]:
    """The kinds found, each once, in order of first appearance."""
    return list(dict.fromkeys(f.kind for f in findings))


@lru_cache(maxsize=4096)  # audit records repeat many strings (model names, reasons)
def mask(text: str) -> str:
    """`text` with every sensitive value replaced by its kind, e.g. `[EMAIL]`."""
    if not text:
        return text
    out, position = [], 0
    for finding in find_sensitive(text):
        if finding.start < position:
            continue  # overlaps a span already masked
        out += [text[position : finding.start], f"[{finding.kind.upper().replace(' ', '_')}]"]
        position = finding.end
    return "".join(out) + text[position:]
