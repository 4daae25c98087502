"""Question validation: what counts as a usable question, checked before anything runs or is stored."""

from __future__ import annotations

import unicodedata

from hybrid.errors import InvalidQuestion
from hybrid.settings import Settings


def check_question(question: object, settings: Settings) -> str:
    """The question, stripped, or a clear error if it is not a usable question."""
    if isinstance(question, bytes | bytearray):
        try:
            question = bytes(question).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidQuestion(f"the question is not valid UTF-8 (byte {exc.start})") from None
    if not isinstance(question, str):
        raise InvalidQuestion(f"the question must be text, not {type(question).__name__}")
    # Undecodable bytes from a terminal arrive as lone surrogates (Python's surrogateescape).
    if any("\ud800" <= ch <= "\udfff" for ch in question):
        raise InvalidQuestion("the question is not valid UTF-8 (it holds undecodable bytes)")
    stripped = question.strip()
    if not stripped:
        raise InvalidQuestion("the question is empty")
    if len(stripped) > settings.max_question_chars:
        raise InvalidQuestion(
            f"the question is {len(stripped):,} characters long; the limit is "
            f"{settings.max_question_chars:,} (HYBRID_MAX_QUESTION_CHARS)"
        )
    controls = sum(1 for ch in stripped if unicodedata.category(ch) == "Cc" and ch not in "\n\r\t")
    if "\x00" in stripped or controls > max(2, len(stripped) // 20):
        raise InvalidQuestion("the question looks like binary data (NUL or control characters), not text")
    return stripped
