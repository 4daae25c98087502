"""Arithmetic, recomputed: the one evaluator the router's features and the verifier's rules share.

Only numbers and `+ - * / // ^ ( )` are evaluated, by walking Python's AST (never `eval`), with
floats throughout so that a tower of powers overflows at once instead of running for hours.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable

_OPERATORS: dict[type, Callable[..., float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Pow: operator.pow,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}
_PLAIN_ARITHMETIC = re.compile(r"[\d\.\s\+\-\*/\(\)]+")

_WORD_OPS = [
    (re.compile(r"\bmultiplied by\b|\btimes\b"), "*"),
    (re.compile(r"\bdivided by\b|\bover\b"), "/"),
    (re.compile(r"\bplus\b|\badded to\b"), "+"),
    (re.compile(r"\bminus\b"), "-"),
]
_EXPRESSION = re.compile(r"\(?\s*-?\d+(?:\.\d+)?(?:\s*[-+*/×÷^x]\s*\(?\s*-?\d+(?:\.\d+)?\s*\)?)+")
_ARITHMETIC_CUE = re.compile(r"\b(what is|what's|calculate|compute|how much is|solve|evaluate|equals?)\b|=")


def _evaluate_node(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return float(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_evaluate_node(node.left), _evaluate_node(node.right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_evaluate_node(node.operand))
    raise ValueError("not arithmetic")


def evaluate_arithmetic(expression: str) -> float | None:
    """The value of a plain `+ - * / ^ ( )` expression of numbers; None for anything else."""
    text = expression.replace("^", "**")
    if (
        len(text) > 200
        or not re.search(r"\d", text)
        or not _PLAIN_ARITHMETIC.fullmatch(text.replace("**", "*"))
    ):
        return None
    try:
        value = _evaluate_node(ast.parse(text.strip(), mode="eval").body)
    except (SyntaxError, ValueError, TypeError, ZeroDivisionError, OverflowError, RecursionError):
        return None
    return value if isinstance(value, float) and math.isfinite(value) else None


def arithmetic_in(question: str) -> float | None:
    """The value of the arithmetic expression a question asks about, if it has exactly one."""
    text = question.casefold()
    for pattern, symbol in _WORD_OPS:
        text = pattern.sub(f" {symbol} ", text)
    found = _EXPRESSION.findall(text)
    if len(found) != 1:
        return None
    # A bare hyphen between numbers is usually a range ("1990-2000"), not a subtraction.
    if not re.search(r"[+*/×÷^x]", found[0]) and not _ARITHMETIC_CUE.search(text):
        return None
    return evaluate_arithmetic(found[0].strip().replace("×", "*").replace("÷", "/").replace("x", "*"))
