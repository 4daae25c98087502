"""The verifier's signals: pure functions from (question, answer, passages, model signals) to numbers.

Every signal is a real measurement or explicitly missing. A signal that cannot be measured (no
retrieved passages, a model that reports no token probabilities, an embedding model that failed)
is `None` in `Signals.values`, and the indicator `no_context` / `no_logprobs` / `no_embedding`
is 1. The combiner then puts the training mean in its place (no contribution) and learns the
indicator's own weight where the training data had such rows; nothing pretends a 0 was measured.

Groups of signals:

- degenerate output: `refusal`, `echo`, `repetition` (and `distinct_trigrams`), `truncated`,
  `log_answer_words`; the heuristic's checks, now features;
- answer kind: `answer_type_mismatch` (asks how many / when / who, answer has no number / name);
- grounding in the passages: `term_grounding` (share of the answer's terms found in question or
  passages), `context_similarity` (max MiniLM cosine of answer and passage), `unsupported_numbers`
  and `unsupported_names` (numbers / capitalised names in the answer found in neither question nor
  passages), `question_context_similarity` (how well the passages match the question at all);
- what the answer adds: `new_terms` (how many content terms it adds to the question's),
  `new_term_grounding` (the share of those the passages hold), `span_in_passage` (the answer is a
  verbatim run of a passage), `best_sentence_match` (how well the passage sentence closest to the
  question matches it) and `best_sentence_support` (the share of the added terms that sentence
  holds: an extractive answer comes from the sentence the question points at);
- relevance: `question_similarity` (MiniLM cosine of answer and question);
- confidence: `mean_token_prob` (exp of the mean token log-probability), `min_token_prob`.

Arithmetic is recomputed from the question (`arithmetic_in`): a wrong result is a rule of the
verifier, not a learned weight (the training questions hold no arithmetic).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from hybrid.text import content_terms, numbers, words

REFUSAL = re.compile(
    r"\b(i('m| am) sorry|i cannot|i can't|i can not|i do not know|i don't know|as an ai|"
    r"i am not able|i'm not able|i am unable|unable to (answer|help)|no information|"
    r"(do|does) not (contain|mention|provide|say)|not mentioned|not (provided|specified|stated))\b"
)
EXPECTS_NUMBER = re.compile(r"\b(how (many|much|old|long|far)|what (year|number|percentage)|when)\b")
EXPECTS_NAME = re.compile(r"^\s*who\b")
_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][\w'’-]+")

# Column order of the feature vector; the artifact stores the names it was trained with.
FEATURE_NAMES: tuple[str, ...] = (
    "refusal",
    "echo",
    "repetition",
    "distinct_trigrams",
    "truncated",
    "log_answer_words",
    "answer_type_mismatch",
    "term_grounding",
    "context_similarity",
    "question_context_similarity",
    "unsupported_numbers",
    "unsupported_names",
    "question_similarity",
    "new_term_grounding",
    "new_terms",
    "span_in_passage",
    "best_sentence_support",
    "best_sentence_match",
    "mean_token_prob",
    "min_token_prob",
    "no_context",
    "no_logprobs",
    "no_embedding",
)
CONTEXT_FEATURES = (
    "term_grounding",
    "new_term_grounding",
    "span_in_passage",
    "best_sentence_support",
    "best_sentence_match",
    "context_similarity",
    "question_context_similarity",
    "unsupported_numbers",
    "unsupported_names",
)
LOGPROB_FEATURES = ("mean_token_prob", "min_token_prob")
EMBEDDING_FEATURES = ("context_similarity", "question_context_similarity", "question_similarity")

# A feature in words: (when its value is above the training mean, when below). The reason shows the
# words for the draft's value and the signed contribution, so a weight that runs against intuition
# (say, answers very close to the question's wording doing worse) reads as what was measured.
DESCRIPTIONS: dict[str, tuple[str, str]] = {
    "refusal": ("refuses or does not know", "does not refuse"),
    "echo": ("repeats the question instead of answering", "does not repeat the question"),
    "repetition": ("repetitive", "not repetitive"),
    "distinct_trigrams": ("varied wording", "repetitive wording"),
    "truncated": ("cut off at the answer-length limit", "complete"),
    "log_answer_words": ("long answer", "short answer"),
    "answer_type_mismatch": ("not the kind of answer asked for", "answer of the kind asked for"),
    "term_grounding": ("answer's terms found in the sources", "answer's terms missing from the sources"),
    "context_similarity": ("answer close to a source", "answer poorly grounded in sources"),
    "question_context_similarity": ("sources match the question", "sources do not match the question"),
    "unsupported_numbers": ("numbers not in the sources", "no invented numbers"),
    "unsupported_names": ("names not in the sources", "names found in the sources"),
    "question_similarity": (
        "answer close to the question's wording",
        "answer far from the question's wording",
    ),
    "new_term_grounding": (
        "what the answer adds is in the sources",
        "what the answer adds is not in the sources",
    ),
    "new_terms": ("adds several words to the question's", "adds few words to the question's"),
    "span_in_passage": ("copied verbatim from a source", "not a verbatim span of a source"),
    "best_sentence_support": (
        "adds words of the source sentence that matches the question",
        "adds nothing from the source sentence that matches the question",
    ),
    "best_sentence_match": (
        "a source sentence matches the question",
        "no source sentence matches the question",
    ),
    "mean_token_prob": ("model confident", "model unsure"),
    "min_token_prob": ("no very unlikely token", "a very unlikely token"),
    "no_context": ("no sources to check against", "sources given"),
    "no_logprobs": ("no token probabilities", "token probabilities given"),
    "no_embedding": ("no embedding signals", "embedding signals given"),
}


@dataclass
class Signals:
    """The measured signals of one draft; `None` where a signal could not be measured."""

    values: dict[str, float | None]
    notes: list[str] = field(default_factory=list)
    """Facts worth showing beside the score (e.g. which number is unsupported)."""


def distinct_ratio(tokens: Sequence[str], n: int = 3) -> float:
    """Share of distinct word n-grams (1 when there are none)."""
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 1.0


def is_refusal(answer: str) -> bool:
    """Whether the answer refuses or says it does not know."""
    return bool(REFUSAL.search(answer.casefold()))


def is_echo(question: str, answer: str) -> bool:
    """Whether the answer repeats the question instead of answering it."""
    answer_words = words(answer)
    answer_terms = set(content_terms(answer))
    overlap = len(answer_terms & set(content_terms(question))) / len(answer_terms) if answer_terms else 0.0
    # A terse answer ("17.") may well appear in the question; an echo is several words of it.
    echoed = len(answer_words) >= 3 and " ".join(answer_words) in " ".join(words(question))
    return echoed or (overlap >= 0.9 and len(answer_terms) >= 3 and answer.rstrip().endswith("?"))


def answer_type_mismatch(question: str, answer: str) -> bool:
    """The question asks for a number or date, or for a person, and the answer has none."""
    folded = question.casefold()
    if EXPECTS_NUMBER.search(folded) and not numbers(answer):
        return True
    return bool(EXPECTS_NAME.search(folded) and not re.search(r"\b[A-Z][a-z]+", answer))


def names(text: str) -> set[str]:
    """Capitalised words not at the start of a sentence (names, places, titles), case-folded."""
    return {m.group(0).casefold() for m in _NAME.finditer(text)}


def unsupported_numbers(answer: str, support: str) -> list[float]:
    """Numbers of the answer that the question and passages do not contain."""
    known = numbers(support)
    return [n for n in numbers(answer) if not any(math.isclose(n, k) for k in known)]


def unsupported_names(answer: str, support: str) -> list[str]:
    """Names of the answer whose words appear nowhere in the question and passages."""
    known = set(words(support))
    return sorted(n for n in names(answer) if not set(words(n)) <= known)


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def new_term_grounding(question: str, answer: str, passages: Sequence[str]) -> tuple[float, int]:
    """Of the content terms the answer adds to the question's, the share the passages contain (0 when
    it adds none: an answer that only restates the question says nothing), and how many it adds."""
    new = set(content_terms(answer)) - set(content_terms(question))
    if not new:
        return 0.0, 0
    return len(new & set(content_terms(" ".join(passages)))) / len(new), len(new)


def best_sentence(question: str, passages: Sequence[str]) -> tuple[str, float]:
    """The passage sentence that matches the question best (its content terms, length-damped), and the
    share of the question's terms it holds."""
    asked = set(content_terms(question))
    sentences = [s for p in passages for s in _SENTENCE_END.split(p) if s.strip()]
    if not sentences or not asked:
        return "", 0.0

    def match(sentence: str) -> float:
        terms = set(content_terms(sentence))
        return len(asked & terms) / (math.sqrt(len(terms)) + 1)

    chosen = max(sentences, key=match)
    return chosen, len(asked & set(content_terms(chosen))) / len(asked)


def sentence_support(question: str, answer: str, sentence: str) -> float:
    """Share of the content terms the answer adds to the question that `sentence` holds."""
    new = set(content_terms(answer)) - set(content_terms(question))
    return len(new & set(content_terms(sentence))) / len(new) if new else 0.0


def is_span_of(answer: str, passages: Sequence[str]) -> bool:
    """Whether the answer, normalised as SQuAD normalises, is a contiguous run of a passage."""
    from hybrid.verification.data import squad_tokens

    tokens = " ".join(squad_tokens(answer))
    return bool(tokens) and any(tokens in " ".join(squad_tokens(p)) for p in passages)


def term_grounding(answer: str, support: str) -> float:
    """Share of the answer's content terms that question or passages contain (1 when it has none)."""
    answer_terms = set(content_terms(answer))
    if not answer_terms:
        return 1.0
    return len(answer_terms & set(content_terms(support))) / len(answer_terms)


Embedder = Callable[[list[str]], np.ndarray]


def _cosines(
    embedder: Embedder | None, question: str, answer: str, passages: Sequence[str]
) -> tuple[float, float | None, float | None] | None:
    """(answer~question, max answer~passage, max question~passage), or None if embedding failed."""
    if embedder is None:
        return None
    try:
        vectors = np.asarray(embedder([question, answer, *passages]), dtype=np.float64)
    except Exception:  # a verifier without embeddings still judges; the indicator says so
        return None
    q, a, p = vectors[0], vectors[1], vectors[2:]
    if not len(p):
        return float(a @ q), None, None
    return float(a @ q), float((p @ a).max()), float((p @ q).max())


def measure(
    question: str,
    answer: str,
    passages: Sequence[str],
    *,
    finish_reason: str | None,
    model_meta: dict[str, float | str] | None,
    embedder: Embedder | None,
) -> Signals:
    """Every signal of one non-empty draft."""
    values: dict[str, float | None] = {}
    notes: list[str] = []
    answer_words = words(answer)
    distinct = distinct_ratio(answer_words)
    values["refusal"] = float(is_refusal(answer))
    values["echo"] = float(is_echo(question, answer))
    values["repetition"] = float(distinct < 0.5)
    values["distinct_trigrams"] = distinct
    values["truncated"] = float(finish_reason == "length")
    values["log_answer_words"] = math.log1p(len(answer_words))
    values["answer_type_mismatch"] = float(answer_type_mismatch(question, answer))

    has_context = any(p.strip() for p in passages)
    values["no_context"] = float(not has_context)
    support = "\n".join([question, *passages])
    grounding_of_new, added = new_term_grounding(question, answer, passages)
    values["new_terms"] = math.log1p(added)
    if has_context:
        values["term_grounding"] = term_grounding(answer, support)
        values["new_term_grounding"] = grounding_of_new
        values["span_in_passage"] = float(is_span_of(answer, passages))
        sentence, values["best_sentence_match"] = best_sentence(question, passages)
        values["best_sentence_support"] = sentence_support(question, answer, sentence)
        invented = unsupported_numbers(answer, support)
        unknown = unsupported_names(answer, support)
        values["unsupported_numbers"] = float(min(len(invented), 3))
        values["unsupported_names"] = float(min(len(unknown), 3))
        if invented:
            notes.append(f"numbers not in the sources: {', '.join(f'{n:g}' for n in invented[:3])}")
        if unknown:
            notes.append(f"names not in the sources: {', '.join(unknown[:3])}")
    else:
        for name in CONTEXT_FEATURES:
            values[name] = None

    cosines = _cosines(embedder, question, answer, [p for p in passages if p.strip()])
    values["no_embedding"] = float(cosines is None)
    if cosines is None:
        values.update(question_similarity=None, context_similarity=None, question_context_similarity=None)
    else:
        values["question_similarity"], values["context_similarity"], values["question_context_similarity"] = (
            cosines
        )

    meta = model_meta or {}
    mean_logprob, min_prob = meta.get("mean_token_logprob"), meta.get("min_token_prob")
    has_logprobs = isinstance(mean_logprob, int | float) and math.isfinite(mean_logprob)
    values["no_logprobs"] = float(not has_logprobs)
    values["mean_token_prob"] = math.exp(float(mean_logprob)) if has_logprobs else None  # type: ignore[arg-type]
    values["min_token_prob"] = float(min_prob) if has_logprobs and isinstance(min_prob, int | float) else None
    return Signals(values={name: values.get(name) for name in FEATURE_NAMES}, notes=notes)


def minilm_embedder() -> Embedder:
    """MiniLM, loaded on first use, one thread; the question and the passages were usually
    embedded already by routing, retrieval or the previous draft's check, and are not again."""
    from retrieval.embeddings import embed_remembered

    return embed_remembered
