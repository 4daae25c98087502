"""`hybrid cluster up|down|status`, and the handles `hybrid eval chaos` turns: hold, kill, wait."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from hybrid.cluster.plan import (
    ALERT_RULES,
    ClusterConfig,
    Plan,
    build_plan,
    haproxy_config,
    postgres_bindir,
    postgres_folder,
    prometheus_config,
)
from hybrid.cluster.supervisor import probe, tail
from hybrid.errors import ClusterError

Log = Callable[[str], None]


def default_folder() -> Path:
    """`<data dir>/cluster`."""
    from hybrid.settings import resolve_settings

    return resolve_settings().data_dir / "cluster"


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):  # a zombie is not alive
        if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
            return False
    return True


def read_state(folder: Path) -> dict[str, Any]:
    """What the supervisor last wrote (empty if it never ran)."""
    try:
        return json.loads((folder / "state.json").read_text())
    except (OSError, ValueError):
        return {}


def supervisor_pid(folder: Path) -> int | None:
    """The supervisor's pid if it is running."""
    try:
        pid = int((folder / "supervisor.pid").read_text())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports(count: int, taken: set[int]) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in taken and port not in ports:
            ports.append(port)
    return ports


def _allocate(config: ClusterConfig) -> tuple[ClusterConfig, dict[str, int]]:
    fixed = {"port": config.port, "prometheus_port": config.prometheus_port}
    for name, port in fixed.items():
        if port and not _port_free(port):
            raise ClusterError(
                f"port {port} ({name}) is in use: choose another with --{name.replace('_', '-')}"
            )
    names = ["postgres", "chroma", "model-small", "model-large", "haproxy-stats"]
    names += [f"replica-{n}" for n in range(1, config.replicas + 1)]
    needed = len(names) + sum(1 for port in fixed.values() if not port)
    free = _free_ports(needed, {p for p in fixed.values() if p})
    ports = dict(zip(names, free, strict=False))
    rest = iter(free[len(names) :])
    config = config.model_copy(
        update={k: v or next(rest) for k, v in fixed.items()}  # 0: any free port
    )
    ports["haproxy"], ports["prometheus"] = config.port, config.prometheus_port
    return config, ports


def _as_postgres() -> dict[str, Any]:
    return {"user": "postgres", "group": "postgres", "extra_groups": []} if os.geteuid() == 0 else {}


def _init_database(folder: Path) -> None:
    """`initdb` once: trust on loopback only (a local cluster; Kubernetes gets a Secret)."""
    pg = postgres_folder(folder)
    if (pg / "data" / "PG_VERSION").exists():
        return
    bindir = postgres_bindir()
    assert bindir is not None
    pg.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(pg, "postgres", "postgres")
        pg.chmod(0o700)
    result = subprocess.run(
        [str(bindir / "initdb"), "-D", str(pg / "data"), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
        **_as_postgres(),
    )
    if result.returncode:
        raise ClusterError(f"initdb failed: {result.stderr[-2000:]}")


def _check(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode:
        raise ClusterError(f"{what} is invalid:\n{(result.stdout + result.stderr)[-2000:]}")


def _require(binary: str, package: str) -> None:
    if shutil.which(binary) is None:
        raise ClusterError(f"{binary} is not installed (Debian: apt-get install {package})")


def up(
    config: ClusterConfig,
    folder: Path | None = None,
    *,
    ingest: Iterable[Path] = (),
    log: Log = lambda _m: None,
) -> Plan:
    """Start a cluster in `folder` and return once every part is healthy (`ClusterError` if one
    is not: the cluster is then stopped again)."""
    folder = (folder or default_folder()).resolve()
    if supervisor_pid(folder):
        raise ClusterError(f"a cluster is already running in {folder}: `hybrid cluster down` first")
    _require("haproxy", "haproxy")
    _require("prometheus", "prometheus")
    if postgres_bindir() is None:
        raise ClusterError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    for sub in ("logs", "hold", "prometheus", "chroma"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for held in (folder / "hold").iterdir():
        held.unlink()
    (folder / "state.json").unlink(missing_ok=True)
    config, ports = _allocate(config)
    plan = build_plan(folder, config, ports)
    plan.save()
    _init_database(folder)
    (folder / "haproxy.cfg").write_text(haproxy_config(plan))
    _check(["haproxy", "-c", "-q", "-f", str(folder / "haproxy.cfg")], "haproxy.cfg")
    rules = None
    if ALERT_RULES.exists():
        rules = folder / "prometheus" / "alerts.yml"
        shutil.copyfile(ALERT_RULES, rules)
    (folder / "prometheus" / "prometheus.yml").write_text(prometheus_config(plan, rules))
    _check(["promtool", "check", "config", str(folder / "prometheus" / "prometheus.yml")], "prometheus.yml")

    with (folder / "logs" / "supervisor.out").open("a") as out:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "hybrid.cluster.supervisor", str(folder)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # outlives this command
            cwd=folder,
        )
    (folder / "supervisor.pid").write_text(str(supervisor.pid))
    seen: set[str] = set()
    while True:
        state = read_state(folder)
        for name, record in state.get("parts", {}).items():
            if record.get("pid") and name not in seen:
                seen.add(name)
                log(f"started {name} (pid {record['pid']})")
        if state.get("phase") == "running":
            break
        if state.get("phase") in ("failed", "stopped") or supervisor.poll() is not None:
            supervisor.wait()
            error = state.get("error") or tail(folder / "logs" / "supervisor.out")
            raise ClusterError(f"the cluster did not start: {error}")
        time.sleep(0.5)
    paths = list(ingest)
    if paths:
        log(f"ingesting {', '.join(map(str, paths))} into the Chroma server ...")
        replica = plan.of_kind("replica")[0]
        env = {**os.environ, **replica.env, "HYBRID_DATA_DIR": str(folder / "ingest")}
        result = subprocess.run(
            [sys.executable, "-m", "hybrid.cli", "ingest", *map(str, paths)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        log(result.stdout.strip() or result.stderr.strip()[-500:])
    return plan


def down(folder: Path | None = None, *, purge: bool = False, log: Log = lambda _m: None) -> str:
    """Stop every part (the supervisor does, in reverse order of start); `purge` deletes the data.
    Returns what was done; `ClusterError` if there was nothing to do."""
    folder = (folder or default_folder()).resolve()
    pid = supervisor_pid(folder)
    leftovers = [r["pid"] for r in read_state(folder).get("parts", {}).values() if _alive(r.get("pid"))]
    if not pid and not leftovers and not (purge and folder.exists()):
        raise ClusterError(f"no cluster is running in {folder}")
    if pid:
        log(f"stopping the cluster in {folder} ...")
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 180
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    # Whatever is left (a supervisor killed with -9 leaves its parts behind).
    for name, record in read_state(folder).get("parts", {}).items():
        if _alive(record.get("pid")):
            log(f"killing {name} (pid {record['pid']}), left behind")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(record["pid"], signal.SIGKILL)
    (folder / "supervisor.pid").unlink(missing_ok=True)
    if purge:
        pg = postgres_folder(folder)
        if not pg.is_relative_to(folder):
            shutil.rmtree(pg, ignore_errors=True)
        shutil.rmtree(folder, ignore_errors=True)
        return f"cluster in {folder} stopped and deleted"
    return f"cluster in {folder} stopped (its data is kept; `down --purge` deletes it)"


def haproxy_view(plan: Plan) -> dict[str, str]:
    """What HAProxy thinks of each replica (UP, DOWN, ...), from its stats page."""
    import csv
    import io

    import httpx

    try:
        text = httpx.get(f"http://127.0.0.1:{plan.haproxy_stats_port}/stats;csv", timeout=2).text
    except httpx.HTTPError:
        return {}
    rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
    return {row["svname"]: row["status"] for row in rows if row.get("pxname") == "replicas"}


def status(folder: Path | None = None) -> dict[str, Any]:
    """Each part: pid, port, health (asked now), restarts; plus HAProxy's view of the replicas."""
    folder = (folder or default_folder()).resolve()
    if not (folder / "plan.json").exists():
        raise ClusterError(f"no cluster in {folder}: start one with `hybrid cluster up`")
    plan = Plan.load(folder)
    state = read_state(folder)
    running = supervisor_pid(folder) is not None
    balancer = haproxy_view(plan) if running else {}
    parts = []
    for part in plan.parts:
        record = state.get("parts", {}).get(part.name, {})
        pid = record.get("pid") if running else None
        healthy, detail = probe(part, timeout=2) if pid and _alive(pid) else (False, "not running")
        entry = {
            "name": part.name,
            "kind": part.kind,
            "pid": pid,
            "port": part.port,
            "healthy": healthy,
            "health": detail,
            "restarts": record.get("restarts", 0),
            "held": bool(record.get("held")),
            "uptime_s": round(time.time() - record["started_at"], 1)
            if pid and record.get("started_at")
            else None,
            "log": str(part.log),
        }
        if part.kind == "replica":
            entry["haproxy"] = balancer.get(part.name, "unknown")
        parts.append(entry)
    phase = state.get("phase", "never started") if running else "stopped"
    return {
        "folder": str(folder),
        "phase": phase,
        "error": state.get("error"),
        "url": plan.url,
        "prometheus": plan.prometheus_url,
        "healthy": running and all(p["healthy"] for p in parts),
        "parts": parts,
    }


def format_status(report: dict[str, Any]) -> str:
    """The status for people."""
    lines = [
        f"cluster in {report['folder']}: {report['phase']}",
        f"  clients: {report['url']} (HAProxy)   metrics: {report['prometheus']} (Prometheus)",
        "",
        f"{'part':<13}{'pid':>8}{'port':>7}  {'health':<30}{'restarts':>9}{'uptime':>9}",
    ]
    for part in report["parts"]:
        health = ("ok " if part["healthy"] else "DOWN ") + part["health"]
        if "haproxy" in part:
            health += f", haproxy {part['haproxy']}"
        if part["held"]:
            health += " (held)"
        uptime = f"{part['uptime_s']:.0f}s" if part["uptime_s"] is not None else "-"
        pid = part["pid"] or "-"
        lines.append(
            f"{part['name']:<13}{pid:>8}{part['port']:>7}  {health:<30}{part['restarts']:>9}{uptime:>9}"
        )
    if report.get("error"):
        lines.append(f"\nerror: {report['error']}")
    return "\n".join(lines)


# -- handles for `hybrid eval chaos` ------------------------------------------------------------


def hold(folder: Path, name: str) -> None:
    """Keep the supervisor from restarting `name` until `release`."""
    (folder / "hold" / name).touch()


def release(folder: Path, name: str) -> None:
    (folder / "hold" / name).unlink(missing_ok=True)


def part_pid(folder: Path, name: str) -> int | None:
    pid = read_state(folder).get("parts", {}).get(name, {}).get("pid")
    return pid if _alive(pid) else None


def signal_part(folder: Path, name: str, signum: int) -> int:
    """Send `signum` to a part's main process; returns its pid."""
    pid = part_pid(folder, name)
    if pid is None:
        raise ClusterError(f"{name} is not running")
    os.kill(pid, signum)
    return pid


def wait_exited(pid: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            raise ClusterError(f"pid {pid} did not exit within {timeout:.0f}s")
        time.sleep(0.05)
