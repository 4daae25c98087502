"""What a local cluster is made of: its configuration, its parts, and the files HAProxy and
Prometheus read. Pure data and text: nothing here starts a process.

Layout under the cluster's folder (`<data dir>/cluster` by default):

    plan.json           what runs: every part's command, port, health check and log
    state.json          what the supervisor sees: pids, restarts, phase (written by it)
    haproxy.cfg         the load balancer in front of the replicas
    prometheus/         prometheus.yml, the alert rules it loads, its time-series database
    postgres/           the database cluster (initdb); run as root, it belongs to the `postgres`
                        user, and lives under /var/lib/postgresql/hybrid-clusters/ if that user
                        cannot enter this folder
    chroma/             the Chroma server's store
    replica-N/          each replica's own data directory (embedding caches; nothing shared)
    logs/               one log per part, and the supervisor's
    hold/               a file per part the supervisor must not restart (used by `hybrid eval chaos`)
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DEPLOY = Path(__file__).resolve().parent.parent.parent / "deploy"
ALERT_RULES = DEPLOY / "prometheus" / "alerts.yml"

Kind = Literal["postgres", "chroma", "model", "replica", "haproxy", "prometheus"]
# Start order: a group starts when the one before is healthy; `down` stops them in reverse.
GROUPS: tuple[tuple[Kind, ...], ...] = (
    ("postgres", "chroma", "model"),
    ("replica",),
    ("haproxy", "prometheus"),
)


class ClusterConfig(BaseModel):
    """What `hybrid cluster up` is asked for."""

    model_config = ConfigDict(extra="forbid")

    replicas: int = Field(2, ge=1, le=16, description="`hybrid serve` processes behind HAProxy.")
    port: int = Field(8000, ge=0, le=65535, description="HAProxy's port for clients (0: any free port).")
    prometheus_port: int = Field(9090, ge=0, le=65535, description="Prometheus' port (0: any free port).")
    health_path: str = Field("/health", description="What HAProxy and `status` ask each replica.")
    small_model: str = Field("smollm2-135m-instruct", description="GGUF of the small tier's server.")
    large_model: str = Field("gemma-3-270m", description="GGUF of the large tier's server.")
    model_threads: int = Field(1, ge=1, description="CPU threads of each model server.")
    request_timeout_s: float = Field(
        300, gt=0, description="How long HAProxy waits for a replica's answer before giving up."
    )
    start_timeout_s: float = Field(600, gt=0, description="How long a part may take to become healthy.")


class Part(BaseModel):
    """One supervised process."""

    name: str
    kind: Kind
    command: list[str]
    env: dict[str, str] = Field(default_factory=dict, description="Added to the supervisor's environment.")
    port: int
    health: str = Field(description="An http:// URL answering 200 when healthy, or a postgresql:// URL.")
    log: Path
    run_as: str | None = Field(None, description="User to run as (PostgreSQL refuses to run as root).")
    # A signal that stops it cleanly: PostgreSQL's fast shutdown is SIGINT (SIGTERM waits for
    # every client to leave).
    stop_signal: int = 15


class Plan(BaseModel):
    """Everything the supervisor needs, written once by `up`."""

    folder: Path
    config: ClusterConfig
    parts: list[Part]
    database_url: str
    chroma_url: str
    haproxy_stats_port: int

    @property
    def url(self) -> str:
        """Where clients send requests: HAProxy."""
        return f"http://127.0.0.1:{self.config.port}"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.config.prometheus_port}"

    def part(self, name: str) -> Part:
        return next(p for p in self.parts if p.name == name)

    def of_kind(self, kind: Kind) -> list[Part]:
        return [p for p in self.parts if p.kind == kind]

    def save(self) -> None:
        (self.folder / "plan.json").write_text(self.model_dump_json(indent=2))

    @classmethod
    def load(cls, folder: Path) -> Plan:
        return cls.model_validate_json((folder / "plan.json").read_text())


def postgres_bindir() -> Path | None:
    """Debian's PostgreSQL server binaries (the newest installed major version)."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parts[-3]))
    return candidates[-1].parent if candidates else None


def _others_can_enter(folder: Path) -> bool:
    for ancestor in [folder, *folder.parents]:
        if ancestor.exists() and not ancestor.stat().st_mode & 0o001:
            return False
    return True


def postgres_folder(folder: Path) -> Path:
    """Where the database lives: in the cluster's folder, unless that is where the `postgres` user
    cannot go (run as root with the data directory under /root), then under its own home."""
    if os.geteuid() != 0 or _others_can_enter(folder):
        return folder / "postgres"
    import hashlib

    key = hashlib.sha256(str(folder).encode()).hexdigest()[:12]
    return Path("/var/lib/postgresql/hybrid-clusters") / key


def model_aliases(config: ClusterConfig) -> dict[str, str]:
    """The `openai:` model name each tier's server answers to."""
    return {"small": Path(config.small_model).stem, "large": Path(config.large_model).stem}


def build_plan(folder: Path, config: ClusterConfig, ports: dict[str, int]) -> Plan:
    """The parts of a cluster in `folder`, on the given ports (name -> port, `haproxy` and
    `prometheus` included)."""
    from hybrid.models.llamacpp import resolve_gguf
    from hybrid.models.openai_server import command as model_command

    python = sys.executable
    logs = folder / "logs"
    bindir = postgres_bindir()
    if bindir is None:
        raise FileNotFoundError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    pg_port, pg_folder = ports["postgres"], postgres_folder(folder)
    database_url = f"postgresql://postgres@127.0.0.1:{pg_port}/hybrid"
    parts = [
        Part(
            name="postgres",
            kind="postgres",
            command=[
                str(bindir / "postgres"),
                "-D",
                str(pg_folder / "data"),
                "-p",
                str(pg_port),
                "-h",
                "127.0.0.1",
                "-k",
                str(pg_folder),
                "-c",
                "max_connections=300",
            ],
            port=pg_port,
            health=f"postgresql://postgres@127.0.0.1:{pg_port}/postgres",
            log=logs / "postgres.log",
            run_as="postgres" if os.geteuid() == 0 else None,
            stop_signal=2,
        ),
        Part(
            name="chroma",
            kind="chroma",
            command=[
                str(Path(python).parent / "chroma"),
                "run",
                "--path",
                str(folder / "chroma"),
                "--host",
                "127.0.0.1",
                "--port",
                str(ports["chroma"]),
            ],
            port=ports["chroma"],
            health=f"http://127.0.0.1:{ports['chroma']}/api/v2/heartbeat",
            log=logs / "chroma.log",
        ),
    ]
    aliases = model_aliases(config)
    for tier, name in (("small", config.small_model), ("large", config.large_model)):
        port = ports[f"model-{tier}"]
        parts.append(
            Part(
                name=f"model-{tier}",
                kind="model",
                command=model_command(resolve_gguf(name), aliases[tier], port, threads=config.model_threads),
                port=port,
                health=f"http://127.0.0.1:{port}/v1/models",
                log=logs / f"model-{tier}.log",
            )
        )
    chroma_url = f"http://127.0.0.1:{ports['chroma']}"
    endpoints = {aliases[t]: f"http://127.0.0.1:{ports[f'model-{t}']}/v1" for t in ("small", "large")}
    for n in range(1, config.replicas + 1):
        name, port = f"replica-{n}", ports[f"replica-{n}"]
        parts.append(
            Part(
                name=name,
                kind="replica",
                command=[python, "-m", "hybrid.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
                env={
                    "HYBRID_DATA_DIR": str(folder / name),
                    # PostgreSQL names each replica's connections, for `status` and the soak test.
                    "HYBRID_CHECKPOINT_URL": f"{database_url}?application_name=hybrid-{name}",
                    "HYBRID_CHROMA_URL": chroma_url,
                    "HYBRID_SMALL_MODEL": f"openai:{aliases['small']}",
                    "HYBRID_LARGE_MODEL": f"openai:{aliases['large']}",
                    "HYBRID_OPENAI_ENDPOINTS": json.dumps(endpoints),
                },
                port=port,
                health=f"http://127.0.0.1:{port}{config.health_path}",
                log=logs / f"{name}.log",
            )
        )
    parts.append(
        Part(
            name="haproxy",
            kind="haproxy",
            command=["haproxy", "-f", str(folder / "haproxy.cfg"), "-db"],
            port=config.port,
            health=f"http://127.0.0.1:{ports['haproxy-stats']}/stats",
            log=logs / "haproxy.log",
        )
    )
    prometheus = folder / "prometheus"
    parts.append(
        Part(
            name="prometheus",
            kind="prometheus",
            command=[
                "prometheus",
                f"--config.file={prometheus / 'prometheus.yml'}",
                f"--storage.tsdb.path={prometheus / 'data'}",
                f"--web.listen-address=127.0.0.1:{config.prometheus_port}",
                "--storage.tsdb.retention.time=7d",
            ],
            port=config.prometheus_port,
            health=f"http://127.0.0.1:{config.prometheus_port}/-/ready",
            log=logs / "prometheus.log",
        )
    )
    return Plan(
        folder=folder,
        config=config,
        parts=parts,
        database_url=database_url,
        chroma_url=chroma_url,
        haproxy_stats_port=ports["haproxy-stats"],
    )


def haproxy_config(plan: Plan) -> str:
    """HAProxy in front of the replicas.

    - `leastconn`: a question holds its replica for seconds, so the replica with the fewest open
      requests is the one to pick, not the next in turn.
    - Health checks every second; two failures take a replica out, two passes bring it back.
    - A request whose replica refused the connection, or closed it without answering (killed
      mid-request), is sent again to another replica (`retry-on`, `redispatch`): nothing had been
      answered, so the client sees one answer, late, instead of an error. Answers that arrived,
      errors included, are passed on as they are. HAProxy retries only a request it holds whole:
      `http-buffer-request` waits for the body before choosing a replica (without it, a killed
      replica's requests ended as 502s, or as a closed connection the client must retry itself).
    """
    config = plan.config
    timeout = int(config.request_timeout_s)
    servers = "\n".join(
        f"    server {part.name} 127.0.0.1:{part.port} check" for part in plan.of_kind("replica")
    )
    return f"""# Written by `hybrid cluster up`; edits are overwritten at the next `up`.
global
    maxconn 4096
    stats socket {plan.folder / "haproxy.sock"} mode 600 level admin

defaults
    mode http
    log stdout format raw local0 info
    option httplog
    option log-separate-errors
    timeout connect 2s
    timeout client {timeout}s
    timeout server {timeout}s
    timeout queue 60s
    timeout http-request 30s
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response junk-response
    option http-buffer-request

frontend hybrid
    bind 127.0.0.1:{config.port}
    default_backend replicas

frontend stats
    bind 127.0.0.1:{plan.haproxy_stats_port}
    http-request use-service prometheus-exporter if {{ path /metrics }}
    stats enable
    stats uri /stats
    stats refresh 5s

backend replicas
    balance leastconn
    option httpchk GET {config.health_path}
    http-check expect status 200
    default-server inter 1s fastinter 500ms downinter 1s fall 2 rise 2
{servers}
"""


def prometheus_config(plan: Plan, rules: Path | None) -> str:
    """Prometheus scraping every replica's /metrics (and HAProxy's), with our alert rules."""
    replicas = ", ".join(f"'127.0.0.1:{p.port}'" for p in plan.of_kind("replica"))
    rule_files = f"rule_files: ['{rules}']\n" if rules else ""
    return f"""# Written by `hybrid cluster up`; edits are overwritten at the next `up`.
global:
  scrape_interval: 5s
  evaluation_interval: 5s
{rule_files}scrape_configs:
  - job_name: hybrid
    static_configs:
      - targets: [{replicas}]
  - job_name: haproxy
    static_configs:
      - targets: ['127.0.0.1:{plan.haproxy_stats_port}']
"""
