"""The supervisor: starts a cluster's parts in order, restarts any that dies, stops them all.

    python -m hybrid.cluster.supervisor FOLDER

`hybrid cluster up` starts it detached; it runs until SIGTERM (`hybrid cluster down`). Like
systemd's `Restart=always` or a Kubernetes pod's restart policy: a part that exits is started
again at once (with a growing pause if it keeps dying young), unless a file `hold/<part>`
exists (`hybrid eval chaos` holds a model server down for its 20 seconds). What it sees goes to
`state.json`, which `status` reads.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hybrid.cluster.plan import GROUPS, Part, Plan

POLL_S = 0.25
YOUNG_S = 10.0  # a part that dies younger than this is restarted after a growing pause
STOP_TIMEOUT_S = 20.0


def probe(part: Part, timeout: float = 2.0) -> tuple[bool, str]:
    """Whether a part answers its health check now, and what it said."""
    if part.health.startswith("postgresql://"):
        import psycopg

        try:
            with psycopg.connect(part.health, connect_timeout=max(1, int(timeout))) as connection:
                connection.execute("SELECT 1")
            return True, "accepts connections"
        except psycopg.Error as exc:
            return False, str(exc).strip().splitlines()[0][:120]
    import httpx

    try:
        response = httpx.get(part.health, timeout=timeout)
    except httpx.HTTPError as exc:
        return False, f"{type(exc).__name__}"
    return response.status_code == 200, f"HTTP {response.status_code}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Supervisor:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.processes: dict[str, subprocess.Popen] = {}
        self.records: dict[str, dict[str, Any]] = {
            p.name: {"pid": None, "started_at": None, "restarts": 0, "last_exit": None} for p in plan.parts
        }
        self.phase = "starting"
        self.error: str | None = None
        self.stopping = threading.Event()
        self.log = (plan.folder / "logs" / "supervisor.log").open("a", buffering=1)

    # -- state ---------------------------------------------------------------------------------
    def say(self, message: str) -> None:
        self.log.write(f"{_now()} {message}\n")

    def write_state(self) -> None:
        state = {
            "supervisor_pid": os.getpid(),
            "phase": self.phase,
            "error": self.error,
            "updated_at": _now(),
            "parts": self.records,
        }
        target = self.plan.folder / "state.json"
        partial = target.with_suffix(".json.part")
        partial.write_text(json.dumps(state, indent=2))
        os.replace(partial, target)

    def held(self, part: Part) -> bool:
        return (self.plan.folder / "hold" / part.name).exists()

    # -- processes -----------------------------------------------------------------------------
    def start(self, part: Part) -> None:
        env = {**os.environ, **part.env}
        user: dict[str, Any] = {}
        cwd = self.plan.folder
        if part.run_as:
            user = {"user": part.run_as, "group": part.run_as, "extra_groups": []}
            cwd = Path("/")
        with part.log.open("a") as out:
            out.write(f"\n--- {_now()} started by the supervisor ---\n")
            out.flush()
            process = subprocess.Popen(
                part.command,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own group: stopped as a whole, untouched by ours
                cwd=cwd,
                **user,
            )
        self.processes[part.name] = process
        record = self.records[part.name]
        record.update(pid=process.pid, started_at=time.time())
        self.say(f"started {part.name} (pid {process.pid})")

    def stop(self, part: Part) -> None:
        process = self.processes.get(part.name)
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGCONT)
            os.kill(process.pid, part.stop_signal)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.say(f"{part.name} did not stop in {STOP_TIMEOUT_S:.0f}s: killed")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # whatever it left in its group
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
        self.say(f"stopped {part.name}")

    def wait_healthy(self, parts: list[Part]) -> None:
        deadline = time.monotonic() + self.plan.config.start_timeout_s
        waiting = {p.name: p for p in parts}
        while waiting:
            for name, part in list(waiting.items()):
                if probe(part)[0]:
                    self.say(f"{name} is healthy")
                    del waiting[name]
                elif self.processes[name].poll() is not None:
                    raise RuntimeError(
                        f"{name} exited with {self.processes[name].returncode}: {tail(part.log)}"
                    )
            if self.stopping.is_set():
                raise RuntimeError("stopped while starting")
            if waiting and time.monotonic() > deadline:
                names = ", ".join(waiting)
                raise RuntimeError(f"not healthy within {self.plan.config.start_timeout_s:.0f}s: {names}")
            time.sleep(POLL_S)

    # -- life cycle ----------------------------------------------------------------------------
    def run(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())
        signal.signal(signal.SIGINT, lambda *_: self.stopping.set())
        self.write_state()
        try:
            for group in GROUPS:
                parts = [p for p in self.plan.parts if p.kind in group]
                for part in parts:
                    self.start(part)
                self.write_state()
                self.wait_healthy(parts)
                if "postgres" in group:
                    create_database(self.plan)
            self.phase = "running"
            self.write_state()
            self.say("cluster running")
            self.watch()
        except Exception as exc:
            self.phase, self.error = "failed", str(exc)[-3000:]
            self.say(f"failed: {exc}")
        finally:
            self.shut_down()
        return 0 if self.error is None else 1

    def watch(self) -> None:
        backoff: dict[str, float] = {}
        coming_back: dict[str, float] = {}  # restarted parts, until they answer their check
        while not self.stopping.wait(POLL_S):
            changed = False
            for name, since in list(coming_back.items()):
                if self.processes[name].poll() is None and probe(self.plan.part(name), timeout=1)[0]:
                    self.say(f"{name} is healthy again, {time.time() - since:.1f}s after its restart")
                    del coming_back[name]
            for part in self.plan.parts:
                process = self.processes.get(part.name)
                record = self.records[part.name]
                record["held"] = self.held(part)
                if process is None or process.poll() is None:
                    continue
                if record["pid"] is not None:  # first time we see it gone
                    record.update(pid=None, last_exit=process.returncode, exited_at=time.time())
                    self.say(f"{part.name} exited with {process.returncode}")
                    changed = True
                if record["held"]:
                    continue
                young = time.time() - (record["started_at"] or 0) < YOUNG_S
                pause = min(5.0, backoff.get(part.name, 0.25) * 2) if young else 0.0
                if time.time() - record.get("exited_at", 0) < pause:
                    continue
                backoff[part.name] = pause
                record["restarts"] += 1
                self.start(part)
                coming_back[part.name] = time.time()
                changed = True
            if changed:
                self.write_state()
            elif int(time.time()) % 5 == 0:
                self.write_state()  # the held flags, and a sign of life

    def shut_down(self) -> None:
        if self.phase != "failed":
            self.phase = "stopping"
        self.write_state()
        for group in reversed(GROUPS):
            parts = [p for p in self.plan.parts if p.kind in group]
            threads = [threading.Thread(target=self.stop, args=(p,)) for p in parts]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        for record in self.records.values():
            record["pid"] = None
        if self.phase != "failed":
            self.phase = "stopped"
        self.write_state()
        self.say(f"supervisor done ({self.phase})")


def tail(log: Path, size: int = 2000) -> str:
    try:
        return log.read_text(errors="replace")[-size:]
    except OSError:
        return ""


def create_database(plan: Plan) -> None:
    """The `hybrid` database, created at the first start."""
    import psycopg

    admin = plan.part("postgres").health
    with psycopg.connect(admin, autocommit=True) as connection:
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = 'hybrid'").fetchone()
        if not exists:
            connection.execute("CREATE DATABASE hybrid")


def main(argv: list[str]) -> None:
    from hybrid.privacy import disable_telemetry

    disable_telemetry()
    plan = Plan.load(Path(argv[0]))
    sys.exit(Supervisor(plan).run())


if __name__ == "__main__":
    main(sys.argv[1:])
