"""Configuration precedence: per-run context > HYBRID_* environment > defaults."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hybrid.errors import InvalidSetting
from hybrid.settings import PER_RUN_FIELDS, RunContext, Settings, resolve_settings

pytestmark = pytest.mark.unit


def test_defaults_use_the_embedded_profile() -> None:
    settings = resolve_settings()
    assert settings.profile == "embedded"
    assert settings.small_spec == "llamacpp:smollm2-135m-instruct"
    assert settings.large_spec == "llamacpp:gemma-3-270m"
    assert settings.price_of(settings.large_spec).output_per_million == 0.0


def test_environment_beats_defaults_and_context_beats_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYBRID_ROUTE_THRESHOLD", "0.7")
    monkeypatch.setenv("HYBRID_PROFILE", "ollama")
    assert resolve_settings().route_threshold == 0.7
    assert resolve_settings().small_spec == "ollama:qwen2.5:0.5b"

    settings = resolve_settings(RunContext(route_threshold=0.2, profile="embedded"))
    assert settings.route_threshold == 0.2
    assert settings.small_spec == "llamacpp:smollm2-135m-instruct"
    assert resolve_settings({"route_threshold": None}).route_threshold == 0.7  # None means "not set"


def test_every_change_to_the_environment_is_seen_and_nothing_else_resolves_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Settings are cached on the `HYBRID_*` and `XDG_*` variables."""
    monkeypatch.setenv("HYBRID_CACHE", "off")
    first = resolve_settings()
    assert first.cache == "off"
    monkeypatch.setenv("UNRELATED_VARIABLE", "x")
    assert resolve_settings() is first
    monkeypatch.setenv("HYBRID_CACHE", "exact")
    assert resolve_settings().cache == "exact"
    monkeypatch.setenv("HYBRID_MODEL_RETRIES", "5")
    assert resolve_settings().model_retries == 5
    monkeypatch.delenv("HYBRID_MODEL_RETRIES")
    monkeypatch.setenv("HYBRID_CACHE", "off")
    assert resolve_settings() is first
    monkeypatch.setenv("XDG_CACHE_HOME", "/nonexistent/elsewhere")
    assert resolve_settings() is not first


def test_tier_overrides_win_over_the_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYBRID_LARGE_MODEL", "openai:gpt-4o-mini")
    settings = resolve_settings()
    assert settings.small_spec == "llamacpp:smollm2-135m-instruct"
    assert settings.large_spec == "openai:gpt-4o-mini"


def test_profiles_and_prices_come_from_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "HYBRID_PROFILES", '{"cloud": {"small": "ollama:qwen2.5:0.5b", "large": "openai:gpt-4o"}}'
    )
    monkeypatch.setenv(
        "HYBRID_PRICES", '{"openai:gpt-4o": {"input_per_million": 2.5, "output_per_million": 10}}'
    )
    settings = resolve_settings(profile="cloud")
    assert settings.large_spec == "openai:gpt-4o"
    assert settings.price_of("openai:gpt-4o").input_per_million == 2.5
    assert "embedded" in settings.all_profiles


def test_unknown_values_are_named_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidSetting, match="unknown profile 'nope'; known profiles: embedded, ollama"):
        resolve_settings(profile="nope")
    with pytest.raises(InvalidSetting, match="unknown per-run setting"):
        resolve_settings({"data_dir": "/elsewhere"})
    monkeypatch.setenv("HYBRID_ROUTE_THRESHOLD", "high")
    with pytest.raises(InvalidSetting, match="route_threshold='high': Input should be a valid number"):
        resolve_settings()


def test_run_context_mirrors_the_per_run_settings() -> None:
    assert set(RunContext.model_fields) == set(PER_RUN_FIELDS)
    for name in PER_RUN_FIELDS:
        assert RunContext.model_fields[name].default is None
        assert name in Settings.model_fields


def test_importing_the_api_reads_no_setting_and_loads_no_model() -> None:
    code = (
        "import sys, hybrid.api, hybrid.cli, graphs.graph, retrieval.store, retrieval.ingest; "
        "heavy = {'llama_cpp', 'torch', 'sentence_transformers', 'chromadb'} & set(sys.modules); "
        "print(sorted(heavy))"
    )
    env = {**os.environ, "HYBRID_MAX_ANSWER_TOKENS": "not a number", "HYBRID_PROFILE": "missing"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("env", "runs"),
    [
        ({}, 4),  # the embedded models generate on this machine's cores
        ({"HYBRID_SMALL_MODEL": "openai:a", "HYBRID_LARGE_MODEL": "openai:b"}, 16),  # api.openai.com
        (
            {
                "HYBRID_SMALL_MODEL": "openai:a",
                "HYBRID_LARGE_MODEL": "openai:b",
                "HYBRID_OPENAI_BASE_URL": "http://127.0.0.1:8080/v1",
            },
            4,
        ),
        (
            {
                "HYBRID_SMALL_MODEL": "ollama:qwen3:4b",
                "HYBRID_LARGE_MODEL": "openai:b",
                "HYBRID_OLLAMA_BASE_URL": "http://gpu-box:11434",
                "HYBRID_OPENAI_BASE_URL": "https://vllm.internal/v1",
            },
            16,
        ),
        ({"HYBRID_MAX_ACTIVE_RUNS": "7"}, 7),
    ],
)
def test_run_slots_default_to_what_the_models_leave_of_the_cores(
    env: dict[str, str], runs: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert Settings().active_runs == runs
