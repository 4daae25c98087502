"""`hybrid eval fuzz`: whatever the schema allows, and what it does not, against the real server.

The server (`create_app`, served by uvicorn on 127.0.0.1 in this process) is configured with
HYBRID_API_KEYS; schemathesis generates requests from its own OpenAPI document, valid ones and
invalid ones, for every endpoint, in three phases: no key, a wrong key, the right key. Each
response is checked: no status of 500 or above, the status and body as the document says. The
models are a stand-in that answers at once and counts its calls (fuzzing is about the HTTP
layer; a real model would only make each request slower): after the phases without a valid key,
no model may have run and no question may have been counted. At the end the server must still
answer /health.
"""

from __future__ import annotations

import collections
import contextlib
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

Log = Callable[[str], None]
ANSWER = "Paris is the capital of France."
MAX_ROUNDS = 20


class CountingModel(BaseChatModel):
    """Answers every prompt at once with the same sentence, and counts the calls."""

    calls: Any = Field(description="A list the calls are appended to (Any: pydantic would copy a list).")

    @property
    def _llm_type(self) -> str:
        return "fuzz-stand-in"

    def _generate(
        self, messages: list[BaseMessage], stop: list[str] | None = None, **_kwargs: Any
    ) -> ChatResult:
        self.calls.append(1)
        usage = {"input_tokens": 10, "output_tokens": 6, "total_tokens": 16}
        message = AIMessage(ANSWER, usage_metadata=usage, response_metadata={"finish_reason": "stop"})
        return ChatResult(generations=[ChatGeneration(message=message)])


@contextlib.contextmanager
def _server(folder: Path, key: str, calls: list[int]) -> Iterator[str]:
    import uvicorn

    from hybrid import api
    from hybrid.evals.servers import environment, free_port
    from hybrid.models import register_provider, unregister_provider
    from hybrid.server import create_app

    env = {
        "HYBRID_DATA_DIR": str(folder),
        "HYBRID_API_KEYS": key,
        "HYBRID_SMALL_MODEL": "fuzz:small",
        "HYBRID_LARGE_MODEL": "fuzz:large",
        "HYBRID_CACHE": "off",
    }
    with environment(env):
        api.reset()
        register_provider("fuzz", lambda _name, _settings: CountingModel(calls=calls), is_local=True)
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="critical")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 120
            while not server.started:
                if not thread.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError("the server did not start")
                time.sleep(0.05)
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            thread.join(30)
            unregister_provider("fuzz")
            api.reset()


def _questions_counted(url: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics", timeout=30).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "hybrid_requests_total"
    )


def _run_operation(
    operation: Any,
    mode: Any,
    examples: int,
    round_: int,
    *,
    headers: dict[str, str],
    tally: dict[str, Any],
    url: str,
) -> None:
    from hypothesis import HealthCheck, Phase, given, seed, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis.checks import not_a_server_error
    from schemathesis.core.failures import FailureGroup
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
        response_headers_conformance,
    ]

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # the document's examples, then generated cases
        suppress_health_check=list(HealthCheck),
    )
    @seed(round_)  # reproducible, and a new set of cases each round
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        label = f"{case.method} {operation.path}"
        # The phase decides the key: whatever the generator put in Authorization is replaced.
        case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
        try:
            response = case.call(base_url=url, headers=headers, timeout=120)
        except Exception as exc:  # the server did not answer at all: a finding
            tally["failures"].append(f"{label}: no response: {type(exc).__name__}: {exc}"[:400])
            tally["sent"] += 1
            return
        tally["sent"] += 1
        tally["statuses"][response.status_code] += 1
        tally["by_operation"][label] += 1
        if response.status_code >= 500:
            tally["server_errors"].append(f"{label} -> {response.status_code}: {response.text[:300]}")
        try:
            case.validate_response(response, checks=checks, headers=headers)
        except (Exception, FailureGroup) as exc:  # a check failed: recorded, and the run goes on
            failed = exc.exceptions if isinstance(exc, FailureGroup) else [exc]
            names = "; ".join(f"{type(f).__name__}: {getattr(f, 'title', '') or f}"[:200] for f in failed)
            tally["failures"].append(f"{label} -> {response.status_code}: {names} ({response.text[:200]})")

    try:
        run()
    except Unsatisfiable:  # nothing to get wrong (GET /health has no input): no negative case
        tally["unsatisfiable"].append(f"{operation.method.upper()} {operation.path} ({mode.value})")


def evaluate_fuzz(requests: int = 1000, *, log: Log = lambda _m: None) -> dict[str, Any]:
    """Fuzz every endpoint with about `requests` requests over three key phases."""
    from hybrid.errors import InvalidSetting

    try:
        import schemathesis
        from schemathesis import GenerationMode
    except ImportError as missing:  # test tools, not needed to answer: an extra of their own
        raise InvalidSetting(
            f"hybrid eval fuzz needs schemathesis and hypothesis ({missing}): "
            "pip install 'hybrid-ai[fuzz]', or the pins in requirements/test.txt"
        ) from missing

    key = secrets.token_urlsafe(16)
    calls: list[int] = []
    phases = [
        ("no key", {}),
        ("wrong key", {"Authorization": "Bearer not-the-key"}),
        ("valid key", {"Authorization": f"Bearer {key}"}),
    ]
    report: dict[str, Any] = {"phases": []}
    with (
        tempfile.TemporaryDirectory(prefix="hybrid-fuzz-") as folder,
        _server(Path(folder), key, calls) as url,
    ):
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
        per_run = max(1, requests // (len(phases) * len(operations) * len(modes)))
        started = time.monotonic()
        for name, headers in phases:
            before_calls, before_questions = len(calls), _questions_counted(url)
            tally: dict[str, Any] = {
                "sent": 0,
                "statuses": collections.Counter(),
                "by_operation": collections.Counter(),
                "server_errors": [],
                "failures": [],
                "unsatisfiable": [],
            }
            log(f"phase: {name} ({len(operations)} operations x {len(modes)} modes, rounds of {per_run}) ...")
            # Small inputs (GET /health) run out of distinct cases: rounds with new seeds go on
            # until this phase's share of requests is sent.
            for round_ in range(MAX_ROUNDS):
                for operation in operations:
                    for mode in modes:
                        _run_operation(
                            operation, mode, per_run, round_, headers=headers, tally=tally, url=url
                        )
                if tally["sent"] >= requests / len(phases):
                    break
            model_calls = len(calls) - before_calls
            questions = _questions_counted(url) - before_questions
            report["phases"].append(
                {
                    "phase": name,
                    "sent": tally["sent"],
                    "statuses": {str(k): v for k, v in sorted(tally["statuses"].items())},
                    "by_operation": dict(tally["by_operation"]),
                    "server_errors": len(tally["server_errors"]),
                    "server_error_samples": tally["server_errors"][:5],
                    "check_failures": len(tally["failures"]),
                    "check_failure_samples": tally["failures"][:5],
                    "model_calls": model_calls,
                    "questions_counted": questions,
                    "no_negative_case": sorted(set(tally["unsatisfiable"])),
                }
            )
            found = f"{len(tally['server_errors'])} >= 500, {len(tally['failures'])} check failures"
            log(f"  {tally['sent']} sent, {found}, {model_calls} model calls")
        health = httpx.get(f"{url}/health", timeout=30)
        report["seconds"] = round(time.monotonic() - started, 1)
        report["operations"] = sorted(f"{op.method.upper()} {op.path}" for op in operations)
    report["sent"] = sum(p["sent"] for p in report["phases"])
    report["server_errors"] = sum(p["server_errors"] for p in report["phases"])
    report["check_failures"] = sum(p["check_failures"] for p in report["phases"])
    unauthorised = [p for p in report["phases"] if p["phase"] != "valid key"]
    report["model_calls_without_key"] = sum(p["model_calls"] for p in unauthorised)
    report["questions_without_key"] = sum(p["questions_counted"] for p in unauthorised)
    report["healthy_after"] = health.status_code == 200 and health.json() == {"status": "ok"}
    report["targets"] = {
        "no_5xx": report["server_errors"] == 0,
        "responses_match_schema": report["check_failures"] == 0,
        "no_model_without_key": report["model_calls_without_key"] == 0
        and report["questions_without_key"] == 0,
        "healthy_after": report["healthy_after"],
        "enough_requests": report["sent"] >= requests * 0.9,
    }
    report["met"] = all(report["targets"].values())
    return report


def format_report(report: dict[str, Any]) -> str:
    """The figures for people."""
    lines = [f"{'phase':<12}{'sent':>7}{'>=500':>7}{'check fails':>13}{'model calls':>13}  statuses"]
    for p in report["phases"]:
        statuses = ", ".join(f"{k}: {v}" for k, v in p["statuses"].items())
        counts = f"{p['sent']:>7}{p['server_errors']:>7}{p['check_failures']:>13}{p['model_calls']:>13}"
        lines.append(f"{p['phase']:<12}{counts}  {statuses}")
        lines += [f"    {s}" for s in p["server_error_samples"] + p["check_failure_samples"]]
    lines.append(
        f"\n{report['sent']} requests over {len(report['operations'])} operations in "
        f"{report['seconds']:.0f}s; server healthy afterwards: {report['healthy_after']}"
    )
    missed = [name for name, ok in report["targets"].items() if not ok]
    lines.append("targets: " + ("all met" if not missed else "missed: " + ", ".join(missed)))
    return "\n".join(lines)
