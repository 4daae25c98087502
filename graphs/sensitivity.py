"""Detection of sensitive data in text, so sensitive queries stay on local models.

Patterns cover the common cases (emails, phone numbers, payment cards with a Luhn check, IBANs
with their checksum, API keys); each finding says what kind it is, never the value itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from graphs.state import Sensitivity


@dataclass(frozen=True)
class Finding:
    kind: str
    level: Sensitivity


_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[a-z]{2,}\b", re.IGNORECASE)
# International (+CC ...), national with a trunk 0, or North-American 3-3-4 groupings.
_PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}(?:[\s.-]?\(?\d{1,4}\)?){2,5}"
    r"|\(?0\d{1,4}\)?(?:[\s.-]?\d{2,4}){2,4}"
    r"|\(?\d{3}\)?[\s.-]\d{3}[\s.-]\d{4})(?!\w)"
)
_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?\b")
_SECRET = re.compile(
    r"\b(?:sk-[A-Za-z0-9_-]{16,}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30,}|xox[abpr]-[A-Za-z0-9-]{10,}"
    r"|AIza[0-9A-Za-z_-]{35})\b"
)


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _iban_ok(candidate: str) -> bool:
    compact = candidate.replace(" ", "")
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return 15 <= len(compact) <= 34 and int(number) % 97 == 1


def find_sensitive(text: str) -> list[Finding]:
    """Every kind of sensitive data in `text` (each kind once)."""
    found: dict[str, Finding] = {}
    if _SECRET.search(text):
        found["api key"] = Finding("api key", "secret")
    for match in _CARD.finditer(text):
        digits = re.sub(r"\D", "", match.group())
        if 13 <= len(digits) <= 19 and _luhn_ok(digits):
            found["payment card"] = Finding("payment card", "secret")
    if any(_iban_ok(m.group()) for m in _IBAN.finditer(text)):
        found["iban"] = Finding("iban", "secret")
    if _EMAIL.search(text):
        found["email"] = Finding("email", "personal")
    # E.164 numbers have 9 to 15 digits; year ranges such as 1990-2000 have fewer.
    phones = (re.sub(r"\D", "", m.group()) for m in _PHONE.finditer(text))
    if any(9 <= len(digits) <= 15 for digits in phones):
        found["phone"] = Finding("phone", "personal")
    return list(found.values())


def sensitivity_level(findings: list[Finding]) -> Sensitivity:
    """The most sensitive level among findings."""
    levels = {f.level for f in findings}
    return "secret" if "secret" in levels else "personal" if "personal" in levels else "none"
