"""Small text utilities shared by the router, the verifier and the knowledge base."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Any

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*", re.UNICODE)
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?|(?<![\w.])[-+]?\d+(?:\.\d+)?")

# Function words carry no topic: they are ignored when matching questions to knowledge or answers.
STOPWORDS = frozenset(
    """
    a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further
    had has have having he her here hers herself him himself his how i if in into is it its
    itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself yourselves
    tell please give explain describe list name many much know get use also may might must
    shall need let lets
    """.split()  # noqa: SIM905 (a word list reads better as text)
)


def normalize(text: str) -> str:
    """Unicode-normalised, case-folded text."""
    return unicodedata.normalize("NFKC", text).casefold()


def words(text: str) -> list[str]:
    """The words of a text, normalised, in order."""
    return _WORD.findall(normalize(text))


@lru_cache(maxsize=1)
def stemmer() -> Any:
    """The English Snowball stemmer (PyStemmer), created once."""
    import Stemmer

    return Stemmer.Stemmer("english")


def content_terms(text: str) -> list[str]:
    """Stems of the words that carry topic: no stopwords, no one-letter words, no bare numbers.

    Stemming lets "penalise" match "penalises" and "configure" match "configured".
    """
    kept = [w for w in words(text) if w not in STOPWORDS and len(w) > 1 and not w.isdigit()]
    return stemmer().stemWords(kept)


def numbers(text: str) -> list[float]:
    """Numbers written in a text (thousands separators allowed), as floats."""
    return [float(m.replace(",", "")) for m in _NUMBER.findall(text)]
