"""Hand-made features of a query, of a math word problem, and of a model's worked answer.

- `query_features`: 27 features any query has (length, numbers, math symbols, code, answer options,
  negation, question form, ...).
- `math_word_features`: 28 features of arithmetic word problems (keyword counts, quantities).
- `response_check_features`: 48 features of a model's worked answer to a word problem, chief among
  them every written computation recomputed (`check_equations`, `check_annotations`), whether a
  final answer is stated, hedging, and question numbers the answer never used.

Pure Python and numpy, cheap enough for every query. Each vector's names are the matching `*_NAMES` list,
in order; the values are floats and never NaN.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from hybrid.arithmetic import evaluate_arithmetic

# ---------------------------------------------------------------------------------------------
# Query features
# ---------------------------------------------------------------------------------------------

_WH = ("what", "which", "who", "whom", "whose", "when", "where", "why", "how")
_MATH_CHARS = set("+-*/=^<>%√∑∫π≤≥×÷")
_CODE = re.compile(
    r"(def |return |print\(|#include|;\s*$|\{|\}|==|!=|->|=>|\bint\b|\bvoid\b|</?\w+>)", re.MULTILINE
)
_NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?%?")
_LATEX = re.compile(r"\\(frac|sqrt|sum|int|cdot|times|alpha|beta|theta|pi|le|ge)|\$[^$]+\$")
_NEGATION = re.compile(r"\b(NOT|EXCEPT|LEAST|FALSE|INCORRECT)\b")
_FIRST_OPTION = re.compile(r"\n\s*A[\.\)]\s")
_FORMULA_EQ = re.compile(r"\d\s*[=<>]\s*\d|[a-z]\s*=\s*\d")
_DECIMAL = re.compile(r"\d\.\d")
_SENTENCE_BREAK = re.compile(r"[.!?]\s")
_SENTENCE_END = re.compile(r"[.!?](\s|$)")
_LOWER_WORD = re.compile(r"[a-z]+")
_MID_SENTENCE_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]+")  # names, mid-sentence
_WRITTEN_NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?")
_OPTION_SPLIT = re.compile(r"\n\s*[A-J][\.\)]\s")

QUERY_FEATURE_NAMES: tuple[str, ...] = (
    "log_chars", "log_words", "log_lines", "n_numbers", "log_n_numbers", "digit_frac", "math_sym_frac",
    "has_latex", "code_score", "n_options", "has_answer_cue", "mean_option_len_log",
    "stem_log_chars", "frac_upper", "negation", "statement_pair", "wh_start", "how_many",
    "question_mark", "has_passage", "has_formula_eq", "max_num_log", "has_decimal", "has_percent",
    "has_money", "n_sentences_log", "avg_word_len",
)  # fmt: skip


def split_options(prompt: str) -> tuple[str, list[str]]:
    """A multiple-choice prompt's stem and its options (`A.`/`B)` ... lines); no options: ([], stem)."""
    found = _FIRST_OPTION.search(prompt)
    if not found:
        return prompt, []
    options = _OPTION_SPLIT.split(prompt[found.start() :])
    return prompt[: found.start()], [o.replace("Answer:", "").strip() for o in options if o.strip()]


def query_features(prompt: str) -> np.ndarray:
    """The 27 `QUERY_FEATURE_NAMES` features of any query."""
    text_words = prompt.split()
    n_chars = max(len(prompt), 1)
    stem, options = split_options(prompt)
    found = _NUMBER.findall(prompt)
    values = []
    for token in found:
        with contextlib.suppress(ValueError):
            values.append(abs(float(token.replace(",", "").rstrip("%"))))
    first = stem.strip().split()[0].lower() if stem.strip() else ""
    lowered = prompt.lower()
    features = [
        math.log1p(len(prompt)),
        math.log1p(len(text_words)),
        math.log1p(prompt.count("\n")),
        min(len(found), 30) / 10.0,
        math.log1p(len(found)),
        sum(map(str.isdigit, prompt)) / n_chars,
        sum(map(_MATH_CHARS.__contains__, prompt)) / n_chars,
        float(bool(_LATEX.search(prompt))),
        min(len(_CODE.findall(prompt)), 20) / 5.0,
        float(len(options)),
        float("Answer:" in prompt),
        math.log1p(float(np.mean([len(o) for o in options]))) if options else 0.0,
        math.log1p(len(stem)),
        sum(map(str.isupper, prompt)) / n_chars,
        float(bool(_NEGATION.search(stem))),
        float("Statement 1" in prompt),
        float(first in _WH),
        float("how many" in lowered or "how much" in lowered),
        float("?" in stem),
        float(len(stem) > 600),  # a reading passage before the question
        float(bool(_FORMULA_EQ.search(prompt))),
        math.log10(1 + max(values)) if values else 0.0,
        float(bool(_DECIMAL.search(prompt))),
        float("%" in prompt or "percent" in lowered),
        float("$" in prompt),
        math.log1p(len(_SENTENCE_BREAK.split(stem))),
        float(np.mean([len(w) for w in text_words])) / 10.0 if text_words else 0.0,
    ]
    return np.array(features, dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# Math-word-problem features
# ---------------------------------------------------------------------------------------------

_WORD_PROBLEM_PATTERNS: tuple[tuple[str, str], ...] = (
    ("percent", r"%|\bpercent"),
    ("fraction", r"\b\d+/\d+\b|\bhalf\b|\bthird\b|\bquarter\b|\bfifth"),
    ("money", r"\$|\bdollars?\b|\bcents?\b"),
    ("time", r"\b\d{1,2}:\d{2}\b|\b[ap]\.?m\.?\b|\bhours?\b|\bminutes?\b"),
    ("compare", r"\bmore than\b|\bless than\b|\bfewer\b|\btimes (as|more|less)\b|\btwice\b"),
    ("per", r"\beach\b|\bper\b|\bevery\b"),
    ("remain", r"\bremain|\brest\b|\bleft\b"),
    ("average", r"\baverage\b|\bmean\b"),
    ("ratio", r"\bratio\b|\bproportion"),
    ("finance", r"\bprofit|\bdiscount|\binterest\b|\btax\b|\bsalary|\bwage|\bcommission"),
    ("rate", r"\bspeed\b|\bmph\b|\brate\b|\bper hour\b|\bkm\b|\bmiles?\b"),
    ("age", r"\bage\b|\bold\b|\byounger\b|\bolder\b|\bborn\b"),
    ("condition", r"\bif\b"),
    (
        "unit_conv",
        r"\bdozen|\bweeks?\b|\bmonths?\b|\byears?\b|\binch|\bfeet|\bfoot\b|\bpounds?\b|\bounces?\b",
    ),
    ("increase", r"\bincrease|\bdecrease|\bgrow|\bdouble|\btriple"),
    ("total", r"\btotal\b|\baltogether\b|\bcombined\b|\bin all\b"),
    ("how_long", r"\bhow long\b|\bhow many (days|hours|minutes|weeks|years)\b"),
    ("how_much_more", r"\bhow (much|many) more\b|\bdifference\b"),
)
_WORD_PROBLEM_RES = tuple(re.compile(pattern) for _, pattern in _WORD_PROBLEM_PATTERNS)

MATH_WORD_FEATURE_NAMES: tuple[str, ...] = (
    *("mw_" + name for name, _ in _WORD_PROBLEM_PATTERNS),
    "mw_n_numbers", "mw_n_distinct", "mw_n_wordnums", "mw_sum_log_nums", "mw_max_log_num", "mw_n_decimal",
    "mw_n_sentences", "mw_log_words", "mw_n_questions", "mw_n_names",
)  # fmt: skip

# Number words, and words that imply a number (a week has 7 days), for matching text to operands.
_WORD_NUMBERS: dict[str, float] = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
    "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20,
    "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "hundred": 100, "thousand": 1000,
    "half": 0.5, "twice": 2, "double": 2, "triple": 3, "thrice": 3, "quarter": 0.25,
    "third": 3, "dozen": 12, "dozens": 12, "pair": 2, "once": 1, "week": 7, "weeks": 7,
    "hour": 60, "hours": 60, "minute": 60, "minutes": 60, "day": 24, "days": 24, "year": 12,
    "years": 12, "month": 30, "months": 30, "percent": 100, "%": 100,
}  # fmt: skip


def math_word_features(question: str) -> np.ndarray:
    """The 28 `MATH_WORD_FEATURE_NAMES` features of an arithmetic word problem (any text works)."""
    lowered = question.lower()
    features = [float(min(len(pattern.findall(lowered)), 5)) for pattern in _WORD_PROBLEM_RES]
    values = _numbers(question)
    tokens = _LOWER_WORD.findall(lowered)
    features += [
        float(len(values)),
        float(len(set(values))),
        float(sum(token in _WORD_NUMBERS for token in tokens)),
        float(sum(math.log10(1 + abs(x)) for x in values)),
        max((math.log10(1 + abs(x)) for x in values), default=0.0),
        float(len(_DECIMAL.findall(question))),
        float(len(_SENTENCE_END.findall(question))),
        math.log1p(len(tokens)),
        float(question.count("?")),
        float(len(set(_MID_SENTENCE_NAME.findall(question)))),
    ]
    return np.array(features, dtype=np.float32)


@lru_cache(maxsize=32768)
def query_feature_vector(text: str) -> np.ndarray:
    """`query_features` then `math_word_features`: the 55 query features the router reads (read-only)."""
    vector = np.concatenate([query_features(text), math_word_features(text)])
    vector.flags.writeable = False  # cached: shared by every caller
    return vector


QUERY_VECTOR_NAMES: tuple[str, ...] = QUERY_FEATURE_NAMES + MATH_WORD_FEATURE_NAMES


def feature_matrix(function: Callable[..., np.ndarray], *columns: Sequence[str]) -> np.ndarray:
    """One row of `function(*row)` per item of the columns, as a float32 matrix."""
    return np.stack([function(*row) for row in zip(*columns, strict=True)]).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Arithmetic, recomputed (`hybrid.arithmetic`)
# ---------------------------------------------------------------------------------------------


def _to_float(token: str) -> tuple[float | None, bool]:
    """A written number (`$1,200`, `15%`, `3/4`) and whether it was a percentage."""
    text = token.replace("$", "").replace(",", "").strip()
    percent = text.endswith("%")
    text = text.rstrip("%")
    try:
        if "/" in text:
            numerator, denominator = text.split("/", 1)
            return float(numerator) / float(denominator), percent
        return float(text), percent
    except (ValueError, ZeroDivisionError):
        return None, percent


def _numbers(text: str) -> list[float]:
    values = []
    for found in _WRITTEN_NUMBER.finditer(text):
        value, _ = _to_float(found.group(0))
        if value is not None:
            values.append(value)
    return values


def _close(value: float | None, written: float | None) -> bool:
    """Whether a computed value matches the written one, allowing the rounding the text shows."""
    if value is None or written is None:
        return True
    if abs(value - written) <= 1e-6 + 1e-4 * abs(written):
        return True
    for digits in (0, 1, 2, 3):  # 0.2667 written 0.27, 78.333 written 78.33 or 78
        if abs(round(value, digits) - written) < 1e-9:
            return True
    return abs(value - written) <= 0.005 * max(1.0, abs(written)) and abs(value - written) < 0.5


def _normalise_expression(text: str, percent: str) -> str:
    """Written arithmetic to Python's: `×`, `x`, `÷`, `$`, thousands commas; `%` as /100 or dropped."""
    text = text.replace("\\*", "*").replace("×", "*").replace("÷", "/").replace("−", "-").replace("·", "*")
    text = re.sub(r"(?<=[\d\)])\s*[xX]\s*(?=[\d\(\$])", " * ", text)
    text = text.replace("$", "")
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)
    if percent == "fraction":
        return re.sub(r"(\d+(?:\.\d+)?)%", r"(\1/100)", text)
    return text.replace("%", "")


_EXPRESSION_CHARS = r"[\d\.\s\+\-\*/\(\)xX×÷\$,%\\·−]"
_TAIL_EXPRESSION = re.compile(_EXPRESSION_CHARS + r"+$")
_HEAD_EXPRESSION = re.compile(_EXPRESSION_CHARS + r"+")
_NUMBER_TOKEN = r"\$?\(?-?\d[\d,]*(?:\.\d+)?%?\)?"
_HEAD_NUMBER = re.compile(r"\s*(" + _NUMBER_TOKEN + ")")
_ALGEBRA = re.compile(r"\d[a-zA-Z]\b|\b[a-zA-Z]\s*[\+\-\*/]\s*\d|\d\s*[\+\-\*/]\s*[a-wyzA-WYZ]\b")
_HAS_OPERATION = re.compile(r"\d\s*[\+\-\*/xX×÷\\·−]\s*\(?\$?\d")


def _strip_units(segment: str) -> str:
    """`2 centimeters x 5 hours` → `2 x 5`; `1.5 hours/day * 10` → `1.5 * 10`."""
    return re.sub(r"(?<=[\d%\)])\s+[A-Za-z][A-Za-z\-']+(?:/[A-Za-z]+)?", " ", segment)


def _tail_expression(segment: str) -> str:
    """The arithmetic a text segment ends with (the left side of an `=`)."""
    found = _TAIL_EXPRESSION.search(segment)
    if not found:
        return ""
    expression = found.group(0).strip()
    while expression and expression[0] in ")+*/,.":
        expression = expression[1:].strip()
    depth, start = 0, 0
    for i in range(len(expression) - 1, -1, -1):  # cut at an unbalanced '(' (text like "(so 2 + 3")
        if expression[i] == ")":
            depth += 1
        elif expression[i] == "(":
            if depth == 0:
                start = i + 1
                break
            depth -= 1
    return expression[start:].strip()


def _head_number(segment: str) -> float | None:
    found = _HEAD_NUMBER.match(segment)
    return _to_float(found.group(1).strip("()"))[0] if found else None


def _head_value(segment: str) -> float | None:
    """The value of the arithmetic a text segment starts with (the right side of an `=`)."""
    found = _HEAD_EXPRESSION.match(segment)
    if not found:
        return None
    expression = found.group(0).rstrip(" .,")
    while expression.count(")") > expression.count("("):
        expression = expression[: expression.rfind(")")].rstrip()
    while expression and expression[-1] in "+-*/xX×÷(,.$ ":
        expression = expression[:-1]
    if not re.search(r"\d", expression):
        return None
    value = evaluate_arithmetic(_normalise_expression(expression, "raw"))
    return value if value is not None else _head_number(segment)


class ArithmeticCheck(NamedTuple):
    """Written computations recomputed: how many, how many wrong, where the first wrong one is."""

    checked: int
    errors: int
    first_error_at: float
    """Position of the first wrong computation as a fraction of the text; 1.0 when none."""


def check_equations(text: str) -> ArithmeticCheck:
    """Recompute every written `a op b (op c ...) = r` chain of a text.

    Handles `x`, `×`, `\\*`, `÷`, `$`, thousands commas and `%` (as /100 or as a plain number,
    either may be meant), units between numbers, and the rounding the right side is written
    with; skips algebra with variables (`7x + 11x = 162`).
    """
    checked = errors = 0
    first_error = 1.0
    length = max(len(text), 1)
    offset = 0
    for line in re.split(r"\n|(?<=[^\d])\.\s|;", text):
        parts = line.split("=")
        if len(parts) < 2:
            offset += len(line) + 1
            continue
        for left, right in itertools.pairwise(parts):
            if _ALGEBRA.search(left):
                continue
            written = _head_value(right)
            if written is None:
                continue
            ok = None
            for segment in (left, _strip_units(left)):
                expression = _tail_expression(segment)
                if not _HAS_OPERATION.search(expression):
                    continue
                values = [
                    evaluate_arithmetic(_normalise_expression(expression, p)) for p in ("fraction", "raw")
                ]
                computed = [v for v in values if v is not None]
                if not computed:
                    continue
                ok = any(
                    _close(v, written) or _close(v, written / 100) or _close(v * 100, written)
                    for v in computed
                )
                break
            if ok is None:
                continue
            checked += 1
            if not ok:
                errors += 1
                # (The research added `offset` to `find`'s absolute position, counting it twice.)
                first_error = min(first_error, (text.find(line) if line else offset) / length)
        offset += len(line) + 1
    return ArithmeticCheck(checked, errors, min(first_error, 1.0))


class AnnotationCheck(NamedTuple):
    """GSM8K-style `<<expr=value>>shown` annotations recomputed."""

    checked: int
    wrong_value: int
    """`expr` does not give `value`."""
    wrong_shown: int
    """The number shown after the annotation is not `value`."""


def check_annotations(response: str) -> AnnotationCheck:
    """Recompute each `<<expr=value>>shown` annotation and compare with `value` and `shown`."""
    checked = wrong_value = wrong_shown = 0
    for found in re.finditer(r"<<([^<>=]*)=([^<>]*)>>\s*([^\s]*)", response):
        expression, value_text, shown = found.group(1), found.group(2), found.group(3)
        computed = evaluate_arithmetic(_normalise_expression(expression, "fraction"))
        value = evaluate_arithmetic(_normalise_expression(value_text, "fraction"))
        if computed is None or value is None:
            continue
        checked += 1
        if not _close(computed, value):
            wrong_value += 1
        shown_text = shown.split("/")[0] if "/" not in value_text else shown
        shown_value, _ = _to_float(re.sub(r"[^\d\.\-,/%$]", "", shown_text).rstrip(".,"))
        if shown_value is not None and not _close(value, shown_value):
            wrong_shown += 1
    return AnnotationCheck(checked, wrong_value, wrong_shown)


# ---------------------------------------------------------------------------------------------
# Response-check features
# ---------------------------------------------------------------------------------------------

RESPONSE_FEATURE_NAMES: tuple[str, ...] = (
    "no_final", "final_parse_fail", "final_has_text", "final_nonint", "final_negative",
    "final_log_mag", "final_in_question", "final_is_zero", "truncated", "open_annotation",
    "n_annot_log", "annot_err", "annot_shown_err", "n_eq_log", "eq_err", "any_arith_err",
    "first_err_pos", "n_hedge", "hedge_any", "log_resp_chars", "log_resp_lines",
    "q_nums_unused", "q_nums_unused_frac", "n_underivable", "underivable_frac", "final_matches_last_result",
    "final_eq_last_number", "n_q_numbers", "log_q_chars", "has_variable", "resp_q_len_ratio",
    "final_is_question_number_only", "n_distinct_results_log", "final_decimal_places",
    "q_nums_unused_ops", "q_nums_unused_ops_frac", "q_wordnums_unused", "n_steps",
    "ask_overlap", "q_content_coverage", "ask_in_final_sentence",
    "n_nonint_results", "frac_nonint_results", "n_messy_results", "final_vs_max_q_log",
    "n_text_eq_minus_annot", "q_has_decimal_or_pct", "binding_mismatch",
)  # fmt: skip

# Numbers a worked answer may use without taking them from the question.
_CONSTANTS = {0.0, 1.0, 2.0, 10.0, 100.0, 60.0, 24.0, 7.0, 12.0, 52.0, 365.0, 1000.0, 30.0, 0.5,
              3600.0, 0.01, 0.1}  # fmt: skip
_MULTIPLIER_WORDS = frozenset(
    """
    two three four five six seven eight nine ten eleven twelve twice double triple thrice half quarter
    third dozen dozens
    """.split()  # noqa: SIM905 (a word list reads better as text)
)
_HEDGES = (
    "approx", "≈", "round", "assum", "however", "cannot", "not possible", "whole number", "closest",
    "estimate", "actually", "mistake", "wait", "not enough", "unclear", "not clear", "doesn't make sense",
    "does not make sense", "but ", "let's", "let x", "equation", "solve for", "fraction", "impossible",
    "error", "recalculate", "re-evaluate",
)  # fmt: skip
_STOP = frozenset(
    """
    the a an and or of to in on for with at by from is are was were be been has have had this that these
    those it its he she they them his her their there what which who how many much does did do will would
    can could if then than each every per into out up more less some any all after before she's he's
    """.split()  # noqa: SIM905
)
_BINDING = re.compile(r"(?<![\w.])\$?(\d[\d,]*(?:\.\d+)?)\s+([a-z]{3,})")
_UNBOUND_NOUNS = frozenset(("minute", "hour", "day", "week", "year", "month", "time", "dollar", "cent"))


def _bindings(text: str) -> dict[str, set[float]]:
    """Noun → the numbers written right before it (`6 paintings`, `4 small candles`)."""
    out: dict[str, set[float]] = {}
    for found in _BINDING.finditer(text.lower()):
        value, _ = _to_float(found.group(1))
        if value is not None:
            out.setdefault(found.group(2).rstrip("s"), set()).add(round(value, 6))
    return out


def binding_mismatch(question: str, response: str, results: set[float]) -> int:
    """How often the response writes `<n> <noun>` where the question binds that noun to other numbers.

    e.g. the question says `6 paintings` and the response `7 paintings`, and 7 is no computed result.
    """
    in_question = _bindings(question)
    body = re.sub(r"<<[^<>]*>>", " ", response)
    count = 0
    for noun, values in _bindings(body).items():
        if noun in in_question and noun not in _UNBOUND_NOUNS:
            count += sum(1 for v in values if v not in in_question[noun] and v not in results)
    return count


def _content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]+", text.lower()) if len(w) > 2 and w not in _STOP}


def _final_answer(response: str) -> tuple[str | None, float | None]:
    """The text after the last `####` and the first number in it."""
    found = re.findall(r"####\s*(.*)", response)
    if not found:
        return None, None
    raw = found[-1].strip()
    values = re.findall(r"-?\$?\d[\d,]*(?:\.\d+)?", raw)
    return raw, (_to_float(values[0])[0] if values else None)


def response_check_features(question: str, response: str) -> np.ndarray:
    """The 48 `RESPONSE_FEATURE_NAMES` features of a worked answer to a word problem.

    Reads only the question and the answer being judged (never a reference answer): arithmetic
    recomputed, the final `####` answer (stated, integer, with text), truncation, hedging, and
    whether the answer used the question's numbers.
    """
    raw_final, final_number = _final_answer(response)
    no_final = raw_final is None
    question_numbers = _numbers(question)
    question_words = re.findall(r"[a-z]+", question.lower())
    question_set = {round(x, 6) for x in question_numbers} | {
        float(_WORD_NUMBERS[w]) for w in question_words if w in _WORD_NUMBERS
    }
    body = re.sub(r"<<[^<>]*>>", " ", response)
    body_numbers = _numbers(body)
    # What the answer computed: annotation values and the right sides of its equations.
    results = [x for x in (_to_float(v)[0] for v in re.findall(r"=([^<>]*)>>", response)) if x is not None]
    results += [x for x in (_head_number(segment) for segment in body.split("=")[1:]) if x is not None]
    result_set = {round(x, 6) for x in results}
    operands: list[float] = []
    for segment in body.split("=")[:-1]:
        operands += _numbers(_tail_expression(_strip_units(segment)))
    annotation_operands: list[float] = []
    for expression in re.findall(r"<<([^<>=]*)=", response):
        annotation_operands += _numbers(expression)
    known = (
        question_set
        | _CONSTANTS
        | {round(x * 100, 6) for x in question_set}
        | {round(x / 100, 6) for x in question_set}
    )
    operand_set = {round(x, 6) for x in operands + annotation_operands}
    question_number_set = {round(x, 6) for x in question_numbers}
    unused_as_operands = [
        x for x in question_number_set if x not in operand_set and round(x / 100, 6) not in operand_set
    ]
    multipliers = {float(_WORD_NUMBERS[w]) for w in question_words if w in _MULTIPLIER_WORDS}
    response_numbers = {round(x, 6) for x in _numbers(response)}
    unused_words = [
        x
        for x in multipliers
        if round(x, 6) not in response_numbers and round(1 / x, 6) not in response_numbers
    ]
    n_annotations = len(re.findall(r"<<", response))
    question_sentences = [s for s in re.split(r"(?<=[.?!])\s+", question.strip()) if s]
    ask = next(
        (s for s in reversed(question_sentences) if "?" in s),
        question_sentences[-1] if question_sentences else "",
    )
    response_sentences = [
        s for s in re.split(r"(?<=[.?!])\s+|\n", re.sub(r"####.*", "", response).strip()) if s.strip()
    ]
    ask_words = _content_words(ask)
    last_words = _content_words(response_sentences[-1] if response_sentences else "")
    question_content = _content_words(question)
    non_integers = [x for x in results if abs(x - round(x)) > 1e-9]
    # "messy": neither a multiple of 0.25 nor a 2-decimal money-like value
    messy = [
        x for x in non_integers if abs(x * 4 - round(x * 4)) > 1e-9 and abs(x * 100 - round(x * 100)) > 1e-6
    ]
    largest_in_question = max((abs(x) for x in question_numbers), default=0.0)
    underivable = [
        x
        for x in operands + annotation_operands
        if round(x, 6) not in known and round(x, 6) not in result_set
    ]
    unused_anywhere = [x for x in question_number_set if x not in response_numbers]
    annotations = check_annotations(response)
    equations = check_equations(body)
    lowered = response.lower()
    hedges = sum(lowered.count(h) for h in _HEDGES)
    truncated = float(no_final and not re.search(r"[\.\!\)]\s*$|\d\s*$", response.rstrip()))
    last_result = results[-1] if results else None
    if len(body_numbers) >= 2 and not no_final:
        last_number: float | None = body_numbers[-2]  # the last is the final answer itself
    else:
        last_number = body_numbers[-1] if body_numbers else None
    final = final_number if final_number is not None else (body_numbers[-1] if body_numbers else None)
    decimals = 0
    if raw_final is not None:
        found = re.search(r"\d\.(\d+)", raw_final)
        decimals = len(found.group(1).rstrip("0")) if found else 0
    features = [
        float(no_final),
        float(raw_final is not None and final_number is None),
        float(raw_final is not None and bool(re.search(r"[A-Za-z]", raw_final))),
        float(final is not None and abs(final - round(final)) > 1e-9),
        float(final is not None and final < 0),
        math.log10(1 + abs(final)) if final is not None else 0.0,
        float(final is not None and round(final, 6) in question_set),
        float(final is not None and final == 0),
        truncated,
        float(bool(re.search(r"<<[^>]*$", response))),
        math.log1p(annotations.checked),
        float(annotations.wrong_value),
        float(annotations.wrong_shown),
        math.log1p(equations.checked),
        float(equations.errors),
        float(annotations.wrong_value + equations.errors > 0),
        equations.first_error_at,
        float(min(hedges, 10)),
        float(hedges > 0),
        math.log1p(len(response)),
        math.log1p(response.count("\n")),
        float(len(unused_anywhere)),
        len(unused_anywhere) / max(len(set(question_numbers)), 1),
        float(min(len(underivable), 10)),
        len(underivable) / max(len(operands), 1),
        float(final is not None and last_result is not None and _close(last_result, final)),
        float(final is not None and last_number is not None and _close(last_number, final)),
        float(len(question_numbers)),
        math.log1p(len(question)),
        float(bool(re.search(r"\blet\s+[a-z]\b|\b[xyn]\s*=|\bequation\b", lowered))),
        math.log1p(len(response)) - math.log1p(len(question)),
        float(final is not None and round(final, 6) in question_set and not results),
        math.log1p(len(result_set)),
        float(decimals),
        float(len(unused_as_operands)),
        len(unused_as_operands) / max(len(question_number_set), 1),
        float(len(unused_words)),
        float(max(n_annotations, len(result_set))),
        len(ask_words & last_words) / max(len(ask_words | last_words), 1),
        len(question_content & _content_words(response)) / max(len(question_content), 1),
        len(ask_words & last_words) / max(len(ask_words), 1),
        float(min(len(non_integers), 10)),
        len(non_integers) / max(len(results), 1),
        float(min(len(messy), 10)),
        (math.log10(1 + abs(final)) - math.log10(1 + largest_in_question)) if final is not None else 0.0,
        float(equations.checked - annotations.checked),
        float(bool(re.search(r"\d\.\d|%|percent", question.lower()))),
        float(min(binding_mismatch(question, response, result_set), 5)),
    ]
    return np.array(features, dtype=np.float32)
