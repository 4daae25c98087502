"""Hypothesis: whatever the input, settings, the ingestion loaders and the server's OpenAI message
converter either work or refuse with their own clear error type; none crashes with another one."""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.unit

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# -- settings ------------------------------------------------------------------------------------

# No NUL: an environment variable cannot hold one (the OS refuses, before any code of ours runs).
_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\x00"), max_size=40
)
_values = st.one_of(
    _text,
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["", "true", "false", "none", "null", "{}", "[]", '{"a": 1}', "1e999", "-0", " 3 "]),
)


@FAST
@given(data=st.data())
def test_any_environment_is_parsed_or_refused_naming_the_setting(
    data: st.DataObject, monkeypatch: Any
) -> None:
    from hybrid.errors import InvalidSetting
    from hybrid.settings import Settings, resolve_settings

    names = data.draw(
        st.lists(st.sampled_from(sorted(Settings.model_fields)), min_size=1, max_size=4, unique=True)
    )
    env = {f"HYBRID_{name.upper()}": data.draw(_values) for name in names}
    assume("HYBRID_DATA_DIR" not in env)  # the fixture's temporary folder stays
    with monkeypatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        try:
            parsed = resolve_settings()
        except InvalidSetting as exc:
            refusal = str(exc)
        else:
            refusal = ""
    if refusal:
        assert any(name in refusal.lower() for name in names), refusal
        return
    assert Settings(**parsed.model_dump()) == parsed  # what was accepted survives a round trip


_override_names = st.sampled_from(
    ["retrieval", "temperature", "max_answer_tokens", "force_route", "route_threshold", "user_id",
     "profile", "nonsense", "cache"]
)  # fmt: skip
_override_values = st.one_of(_text, st.integers(), st.floats(), st.none(), st.booleans())


@FAST
@given(overrides=st.dictionaries(_override_names, _override_values, max_size=4))
def test_any_per_run_override_is_applied_or_refused(overrides: dict[str, Any]) -> None:
    from hybrid.errors import InvalidSetting
    from hybrid.settings import Settings, resolve_settings

    try:
        resolved = resolve_settings(**overrides)
    except InvalidSetting:
        return
    assert isinstance(resolved, Settings)
    for key, value in overrides.items():
        if value is not None and isinstance(value, str) and key in ("retrieval", "force_route", "cache"):
            assert getattr(resolved, key) == value


# -- ingestion loaders ---------------------------------------------------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=20,
)
_squad_like = st.fixed_dictionaries(
    {"data": st.lists(st.one_of(_json_values, st.fixed_dictionaries(
        {"title": _json_values, "paragraphs": st.one_of(_json_values, st.lists(st.one_of(
            _json_values, st.fixed_dictionaries({"context": _json_values}))))}
    )), max_size=3)}
)  # fmt: skip


def _loads_or_refuses(path: Path) -> list[Any]:
    from retrieval.loaders import LoadError, load

    try:
        sections = load(path)
    except LoadError as exc:
        message = str(exc)
        assert message  # a refusal says why
        return []
    for section in sections:
        assert isinstance(section.text, str)
        assert section.text.strip()
    return sections


@FAST
@given(document=st.one_of(_json_values, _squad_like, st.lists(_json_values, max_size=4)))
def test_any_json_document_is_loaded_or_refused(document: Any, tmp_path: Path) -> None:
    path = tmp_path / "corpus.json"
    path.write_text(json.dumps(document))
    _loads_or_refuses(path)
    (tmp_path / "corpus.jsonl").write_text(
        "\n".join(json.dumps(item) for item in (document if isinstance(document, list) else [document]))
    )
    _loads_or_refuses(tmp_path / "corpus.jsonl")


@FAST
@given(raw=st.binary(max_size=2000))
def test_any_bytes_in_a_json_html_or_markdown_file_are_loaded_or_refused(raw: bytes, tmp_path: Path) -> None:
    for name in ("corpus.json", "corpus.jsonl", "page.html", "notes.md", "notes.txt"):
        (tmp_path / name).write_bytes(raw)
        _loads_or_refuses(tmp_path / name)


def test_deeply_nested_json_is_refused_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    assert _loads_or_refuses(path) == []


_tags = st.sampled_from(
    ["p", "h1", "h2", "li", "td", "script", "style", "div", "pre", "title", "nav", "blockquote"]
)
_html = st.recursive(
    _text.map(lambda t: t.replace("<", "&lt;")),
    lambda inner: st.tuples(_tags, st.lists(inner, max_size=3), st.booleans()).map(
        lambda t: f"<{t[0]}>{''.join(t[1])}" + (f"</{t[0]}>" if t[2] else "")  # unclosed tags too
    ),
    max_leaves=15,
)


@FAST
@given(body=_html)
def test_any_html_is_loaded_or_refused(body: str, tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text(f"<html><head><title>t</title></head><body>{body}</body></html>")
    _loads_or_refuses(path)


def _pdf(text: str) -> bytes:
    """A one-page PDF that shows `text` (written by hand: pypdf writes no text)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def test_the_hand_written_pdf_is_read() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "page.pdf"
        path.write_bytes(_pdf("Hybrid AI answers with the cheapest model"))
        assert "cheapest model" in _loads_or_refuses(path)[0].text


@FAST
@given(
    text=st.text(alphabet=string.ascii_letters + " ", min_size=1, max_size=30),
    cuts=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=8),
    truncate=st.integers(0, 10_000),
)
def test_a_corrupted_pdf_is_loaded_or_refused(
    text: str, cuts: list[tuple[int, int]], truncate: int, tmp_path: Path
) -> None:
    raw = bytearray(_pdf(text))
    for at, byte in cuts:
        raw[at % len(raw)] = byte
    path = tmp_path / "page.pdf"
    path.write_bytes(bytes(raw[: max(1, truncate % (len(raw) + 1))]))
    _loads_or_refuses(path)


# -- the server's OpenAI message converter -------------------------------------------------------

_roles = st.sampled_from(["system", "user", "assistant", "tool", "developer"])
_parts = st.lists(
    st.one_of(
        st.fixed_dictionaries({"type": st.just("text"), "text": st.one_of(_text, _json_values)}),
        st.dictionaries(_text, _json_values, max_size=3),
    ),
    max_size=4,
)
_messages = st.lists(
    st.fixed_dictionaries({"role": _roles, "content": st.one_of(st.none(), _text, _parts)}), max_size=6
)


@FAST
@given(messages=_messages)
def test_any_openai_messages_become_a_question_and_history_or_a_400(messages: list[dict[str, Any]]) -> None:
    from pydantic import ValidationError

    from hybrid.server import ChatRequest, OpenAIError, _conversation

    try:
        request = ChatRequest(model="hybrid", messages=messages)
    except ValidationError:
        return  # the server answers these 400 (RequestValidationError)
    try:
        question, history = _conversation(request)
    except OpenAIError as exc:
        status = exc.status
    else:
        status = 200
    if status != 200:
        assert status == 400
        return
    assert isinstance(question, str)
    assert all(turn["role"] in ("user", "assistant") and isinstance(turn["content"], str) for turn in history)
    user_turns = [m for m in messages if m["role"] in ("user", "assistant")]
    assert len(history) == len(user_turns) - 1


# -- the audit log's masking ---------------------------------------------------------------------

_sensitive_text = st.one_of(
    _text,
    st.sampled_from(
        ["mail me at ann.lee@example.org", "call +44 20 7946 0958", "key sk-abc123def456ghi789jkl"]
    ),
)
_audit_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),  # NaN is JSON's too, but never equal to itself
    _sensitive_text,
    st.datetimes(),
)
_audit_values = st.recursive(
    _audit_leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(
            st.one_of(_text, st.integers(), st.booleans(), st.none(), st.floats()), inner, max_size=4
        ),
    ),
    max_leaves=12,
)


@FAST
@given(value=_audit_values)
def test_the_audit_masks_in_one_walk_what_a_json_round_trip_then_masking_gave(value: Any) -> None:
    from hybrid.audit import masked

    assert masked(value) == masked(json.loads(json.dumps(value, default=str)))
