"""The doctor's checks and readiness, on this machine's real parts where they are cheap (the shipped
artefacts, SQLite, MiniLM, a loopback port nothing listens on); the web app's banner headless."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from hybrid import api, doctor
from hybrid.doctor import Check, Report, run_checks
from hybrid.settings import Settings, resolve_settings
from tests.conftest import REPO
from tests.fakes import FakeModels
from tests.servers import free_port

pytestmark = pytest.mark.integration

SHIPPED_PAIR = {"small": "llamacpp:smollm2-135m-instruct", "large": "llamacpp:gemma-3-270m"}


def by_name(report: Report, prefix: str) -> Check:
    return next(c for c in report.checks if c.name.startswith(prefix))


def test_only_a_failed_required_check_fails_the_report() -> None:
    warning = Check("telemetry: ONNX Runtime", "warning", "on", "export ORT_DISABLE_TELEMETRY=1", False)
    optional = Check("knowledge store", "failed", "down", "start it", required=False)
    assert Report([warning, optional, Check("database", "ok", "answers")]).ok
    assert not Report([warning, Check("model x:y", "failed", "refused", "start it")]).ok


def test_a_check_that_breaks_is_reported_not_raised() -> None:
    def check_broken(settings: Settings) -> list[Check]:
        raise RuntimeError("boom")

    report = run_checks(resolve_settings(), [check_broken])
    assert report.checks == [Check("broken", "failed", "the check itself failed: RuntimeError: boom")]
    assert not report.ok


# --- Models -----------------------------------------------------------------------------------------


def test_ollama_with_nothing_listening_fails_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv("HYBRID_PROFILE", "ollama")
    monkeypatch.setenv("HYBRID_OLLAMA_BASE_URL", f"http://127.0.0.1:{port}")

    checks = doctor.check_models(resolve_settings())

    assert [c.name for c in checks] == [
        "model ollama:qwen2.5:0.5b (small tier)",
        "model ollama:llama3.1:8b (large tier)",
    ]
    assert all(c.status == "failed" and c.required for c in checks)
    assert checks[0].found == f"cannot reach http://127.0.0.1:{port}/api/tags: connection refused"
    assert "ollama serve" in checks[0].fix
    assert "HYBRID_OLLAMA_BASE_URL" in checks[0].fix


def test_a_missing_gguf_and_an_unknown_provider_fail(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HYBRID_SMALL_MODEL", f"llamacpp:{tmp_path / 'missing.gguf'}")
    monkeypatch.setenv("HYBRID_LARGE_MODEL", "nosuch:model")

    small, large = doctor.check_models(resolve_settings())

    assert (small.status, large.status) == ("failed", "failed")
    assert "neither a packaged model" in small.found
    assert "HYBRID_SMALL_MODEL" in small.fix
    assert large.found == "unknown model provider 'nosuch'"


def test_a_file_that_is_not_a_gguf_model_does_not_load(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bogus = tmp_path / "broken.gguf"
    bogus.write_bytes(b"GGUF" + b"\0" * 64)
    monkeypatch.setenv("HYBRID_SMALL_MODEL", f"llamacpp:{bogus}")

    small = doctor.check_models(resolve_settings())[0]

    assert small.status == "failed"
    assert small.found.startswith("does not load: RuntimeError: llama.cpp could not load")


def test_a_spec_in_both_tiers_is_checked_once(fakes: FakeModels, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYBRID_LARGE_MODEL", "fake:small")
    [check] = doctor.check_models(resolve_settings())
    assert check.name == "model fake:small (small and large tier)"
    assert (check.status, check.required) == ("warning", False)  # no probe exists for a test provider


# --- Artefacts ------------------------------------------------------------------------------------------


def test_the_shipped_artefacts_load_and_are_calibrated_for_the_embedded_models() -> None:
    checks = doctor.check_artefacts(resolve_settings())
    assert [c.name for c in checks] == ["router", "small-tier verifier", "large-tier verifier"]
    assert [c.status for c in checks] == ["ok", "ok", "ok"]
    assert "version shipped (shipped)" in checks[0].found
    assert checks[0].found.endswith(f"calibrated for {SHIPPED_PAIR['small']} -> {SHIPPED_PAIR['large']}")
    assert checks[2].found.endswith(f"calibrated for {SHIPPED_PAIR['large']}")


def test_artefacts_calibrated_for_other_models_are_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYBRID_PROFILE", "ollama")
    checks = doctor.check_artefacts(resolve_settings())
    assert [(c.status, c.required, c.fix) for c in checks] == [
        ("warning", False, "calibrate for these models: `hybrid tune`")
    ] * 3
    assert "router calibrated for llamacpp:smollm2-135m-instruct -> llamacpp:gemma-3-270m" in checks[0].found
    assert (
        "large-tier verifier calibrated for llamacpp:gemma-3-270m, serving ollama:llama3.1:8b"
        in checks[2].found
    )


def test_a_router_that_does_not_load_fails_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "nowhere").mkdir()
    (tmp_path / "nowhere" / "router.json").write_text("{broken")
    monkeypatch.setenv("HYBRID_ROUTER_PATH", str(tmp_path / "nowhere"))
    [check, *_] = doctor.check_artefacts(resolve_settings())
    assert check.status == "failed"
    assert "the heuristic decides" in check.found
    assert "hybrid tune" in check.fix
    monkeypatch.setenv("HYBRID_ROUTER", "heuristic")
    assert doctor.check_artefacts(resolve_settings())[0].status == "skipped"


# --- Database, store, policy file, telemetry -----------------------------------------------------------


def test_sqlite_not_created_yet_then_current_then_from_an_older_version() -> None:
    settings = resolve_settings()
    [fresh] = doctor.check_database(settings)
    made = f"not created yet; {settings.data_dir.parent} is writable (it is made at first use)"
    assert (fresh.status, fresh.found) == ("ok", made)

    from hybrid.database import database_for

    database_for(settings)
    assert doctor.check_database(settings)[0].found.endswith("tables current")

    api.reset()
    with sqlite3.connect(settings.database_path) as connection:
        connection.execute("ALTER TABLE hybrid_reviews DROP COLUMN claim_token")
    [old] = doctor.check_database(settings)
    assert (old.status, old.found) == ("failed", "hybrid_reviews lacks claim_token")
    assert "another version of Hybrid AI" in old.fix


def test_the_embedded_store_is_reported_before_and_after_ingestion(tmp_path: Path) -> None:
    settings = resolve_settings()
    assert (
        doctor.check_knowledge_store(settings)[0].found == "not created yet: `hybrid ingest PATH` creates it"
    )
    (tmp_path / "doc.md").write_text("# Paris\n\nParis is the capital of France.\n")
    api.ingest([tmp_path / "doc.md"])
    [check] = doctor.check_knowledge_store(settings)
    assert check.status == "ok"
    assert check.found.startswith("opens; collection 'knowledge' has 1 chunks")


def test_a_chroma_server_that_does_not_answer_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYBRID_CHROMA_URL", f"http://127.0.0.1:{free_port()}")
    [check] = doctor.check_knowledge_store(resolve_settings())
    assert check.status == "failed"
    assert "chroma run" in check.fix
    assert "unset HYBRID_CHROMA_URL" in check.fix


def test_the_policy_file_is_validated_with_the_line_of_each_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert doctor.check_policy_file(resolve_settings())[0].status == "skipped"
    path = tmp_path / "policy.yaml"
    monkeypatch.setenv("HYBRID_POLICY_FILE", str(path))
    [missing] = doctor.check_policy_file(resolve_settings())
    assert missing.status == "failed"
    assert "No such file" in missing.found
    assert "unset it" in missing.fix
    path.write_text("tiers:\n  free:\n    models: [small]\n    bogus: 1\n")
    [invalid] = doctor.check_policy_file(resolve_settings())
    assert invalid.status == "failed"
    assert "line 4, column 12: tiers.free.bogus: unknown field" in invalid.found
    assert f"hybrid policy check {path}" in invalid.fix
    path.write_text("tiers:\n  free:\n    models: [small]\n")
    [valid] = doctor.check_policy_file(resolve_settings())
    assert valid.status == "ok"
    assert "1 tier(s)" in valid.found


def test_telemetry_is_read_from_the_values_in_effect(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ORT_DISABLE_TELEMETRY", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "LANGSMITH_TRACING",
                 "LANGSMITH_TRACING_V2", "LANGCHAIN_TRACING", "LANGCHAIN_TRACING_V2",
                 "STREAMLIT_BROWSER_GATHER_USAGE_STATS"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    checks = {c.name.removeprefix("telemetry: "): c for c in doctor.check_telemetry(resolve_settings())}
    assert {name: c.status for name, c in checks.items()} == {
        "ONNX Runtime": "warning",
        "Chroma": "ok",
        "Streamlit": "ok",
        "LangSmith": "ok",
        "Hugging Face hub": "warning",
    }
    assert all(not c.required for c in checks.values())
    assert checks["ONNX Runtime"].fix == "export ORT_DISABLE_TELEMETRY=1"

    monkeypatch.setenv("ORT_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("LANGCHAIN_TRACING_V2", "true")
    monkeypatch.setenv("LANGSMITH_TRACING", "false")  # the _V2 spelling is read first
    monkeypatch.setenv("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "true")
    checks = {c.name.removeprefix("telemetry: "): c for c in doctor.check_telemetry(resolve_settings())}
    assert [checks[n].status for n in ("ONNX Runtime", "Hugging Face hub")] == ["ok", "ok"]
    assert checks["LangSmith"].found == "on (LANGCHAIN_TRACING_V2=true): every run is sent to LangSmith"
    assert checks["LangSmith"].fix == "unset LANGCHAIN_TRACING_V2 (or set it to false)"
    assert checks["Streamlit"].status == "warning"


# --- Readiness ------------------------------------------------------------------------------------------


def test_readiness_names_what_cannot_answer_and_caches_its_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYBRID_PROFILE", "ollama")
    monkeypatch.setenv("HYBRID_OLLAMA_BASE_URL", f"http://127.0.0.1:{free_port()}")
    probes = []
    real = doctor.probe
    monkeypatch.setattr(
        doctor, "probe", lambda spec, settings, **kw: probes.append(spec) or real(spec, settings, **kw)
    )

    first = api.readiness()
    second = api.readiness()

    assert not first.ready
    assert probes == ["ollama:qwen2.5:0.5b", "ollama:llama3.1:8b"]  # the second call reused them
    assert second.checked_at == first.checked_at
    assert first.database.status == "ok"
    assert [p.split(":")[0] for p in first.problems] == [
        "small tier cannot answer",
        "large tier cannot answer",
    ]
    assert "ollama serve" in first.problems[0]
    with pytest.raises(api.ModelsUnreachable, match="Run `hybrid doctor`"):
        api.check_reachable()

    monkeypatch.setenv("HYBRID_READINESS_CACHE_S", "0")
    api.readiness()
    assert len(probes) == 4


def test_a_model_in_cooldown_makes_its_tier_unready(fakes: FakeModels) -> None:
    from hybrid.models.resilience import breaker

    assert api.readiness().ready  # fake models have no probe: they may answer
    breaker.failed("fake:small", threshold=1, cooldown_s=60)
    readiness = api.readiness()
    assert [t.can_answer for t in readiness.tiers] == [False, True]
    assert readiness.ready
    assert readiness.tiers[0].models[0].found.startswith("in cooldown for")
    api.check_reachable()  # a cooldown is not a dead configuration


def test_a_refused_postgresql_url_makes_readiness_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "HYBRID_CHECKPOINT_URL", f"postgresql://postgres:secret@127.0.0.1:{free_port()}/hybrid"
    )
    readiness = api.readiness()
    assert not readiness.ready
    assert readiness.database.status == "failed"
    assert "Connection refused" in readiness.database.found
    assert "secret" not in json.dumps(readiness.as_dict())


# --- The web app -------------------------------------------------------------------------------------------


def test_the_chat_page_shows_a_banner_naming_the_unreachable_tiers(monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlit.testing.v1 import AppTest

    port = free_port()
    monkeypatch.setenv("HYBRID_PROFILE", "ollama")
    monkeypatch.setenv("HYBRID_OLLAMA_BASE_URL", f"http://127.0.0.1:{port}")

    app = AppTest.from_file(str(REPO / "ui" / "app.py"), default_timeout=60)
    app.run()

    assert not app.exception, app.exception
    banners = [e.value for e in app.error]
    assert len(banners) == 2
    assert banners[0].startswith("**The small tier cannot be reached**: `ollama:qwen2.5:0.5b` (cannot reach")
    assert f"http://127.0.0.1:{port}/api/tags: connection refused" in banners[0]
    assert "Fix: start Ollama (`ollama serve`)" in banners[0]
    assert banners[1].startswith("**The large tier cannot be reached**")
    assert all("Run `hybrid doctor`" in b for b in banners)


def test_no_banner_when_the_tiers_can_answer() -> None:
    from streamlit.testing.v1 import AppTest

    app = AppTest.from_file(str(REPO / "ui" / "app.py"), default_timeout=60)
    app.run()
    assert not app.exception, app.exception
    assert [e.value for e in app.error] == []
