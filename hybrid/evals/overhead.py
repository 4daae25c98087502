"""`hybrid eval overhead`: what one hop through a proxy costs, ours beside others, on an instant upstream.

An instant OpenAI-compatible stub (`hybrid.evals.stub`, its own process) stands in for the models.
A real `hybrid serve` process (its own data directory, the cache off so every request runs the
graph, the shipped learned router and verifiers, a key check) has both tiers pointed at it as
`openai:` models. The targets, each measured over HTTP with the same client:

- the stub directly: the floor;
- our server (and, with `heuristic=True`, a second one with the heuristic router);
- with `passthrough=True`, a proxy that only forwards (`hybrid.evals.passthrough`): what the hop
  itself costs on this machine, and how much of it a proxy's own clock cannot see; and at
  concurrency 1 a second one that holds each request as long as our server's own overhead (its
  median so far at the level, the warm-up included) before forwarding it: how much a proxy's own
  clock misses when the client waits as long as it waits for ours;
- every other OpenAI-compatible proxy the user started in front of the same stub (`against`).

At each concurrency level the targets take turns within a round, in a balanced order that changes
from round to round (`round_order`), so each sees the same machine. Per target: p50 and p95
latency, overhead (the target's p50 minus the stub's p50 in the same round, the median over
rounds), CPU time of the target's processes per request, requests per second, and upstream calls
per request. Ours also reports the overhead it measures itself (`hybrid.timings_ms.overhead`), as
LiteLLM's proxy and the pass-through do in a header; how far each account falls under the client's
is `self_reported_gap_ms`. Ratios compare our servers with every other proxy (not the
pass-through, a yardstick rather than a rival), with their range over the rounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from hybrid.evals.load import load_question
from hybrid.evals.stats import percentile

Kind = Literal["stub", "ours", "passthrough", "other"]
STUB = "stub"
# Where another proxy states its own overhead on each response (LiteLLM's proxy does, in
# milliseconds, and our pass-through): read beside ours, so every account can be checked against
# the client's.
PEER_OVERHEAD_HEADERS = ("x-litellm-overhead-duration-ms", "x-passthrough-overhead-ms")


def peer_reported_overhead(headers: Any) -> float | None:
    """The overhead another proxy reports for one response, in milliseconds, if it reports one."""
    for name in PEER_OVERHEAD_HEADERS:
        value = headers.get(name)
        if value is not None:
            try:
                return float(value)
            except ValueError:
                return None
    return None


@dataclass(frozen=True)
class Target:
    """One server the benchmark sends requests to."""

    name: str
    kind: Kind
    base_url: str
    """OpenAI-style base URL, ending in /v1: requests go to `{base_url}/chat/completions`."""
    model: str
    key: str | None = None
    pids: tuple[int, ...] = ()
    """Processes whose CPU time counts as the target's (empty: unknown, CPU is reported as n/a)."""
    holds_as: str | None = None
    """A held pass-through: each request held as long as this target's own overhead (the median of
    what it reported at the level so far, its warm-up included). Measured at concurrency 1 only."""

    def measured_at(self, concurrency: int) -> bool:
        """Whether the target is measured at this concurrency (a held one serves one at a time)."""
        return self.holds_as is None or concurrency == 1


@dataclass
class Block:
    """One target's share of one round: `requests` requests at one concurrency."""

    target: str
    round: int
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    cpu_s: float | None = None
    upstream_calls: int | None = None
    self_overheads_ms: list[float] = field(default_factory=list)
    queued_ms: list[float] = field(default_factory=list)
    # Ours only, per answer: the client's latency minus the `total` we report (time outside our
    # clock), and the model servers' time we report (`models`).
    outside_ms: list[float] = field(default_factory=list)
    models_ms: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)


def openai_base(url: str) -> str:
    """A server's URL as an OpenAI client takes it: `http://host:port` becomes `http://host:port/v1`."""
    url = url.rstrip("/")
    return url if urlsplit(url).path else f"{url}/v1"


def listening_pids(url: str) -> tuple[int, ...]:
    """The processes that listen on `url`'s port on this machine, and their children; () if none is
    found (another host, or a process this user may not inspect)."""
    import psutil

    from hybrid.settings import is_loopback_url

    parts = urlsplit(url)
    if not (is_loopback_url(url) or parts.hostname == "0.0.0.0"):
        return ()
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return ()
    found = {c.pid for c in connections if c.pid and c.status == psutil.CONN_LISTEN and c.laddr.port == port}
    return tuple(sorted(found | {child for pid in found for child in _children(pid)}))


def _children(pid: int) -> set[int]:
    import psutil

    try:
        return {child.pid for child in psutil.Process(pid).children(recursive=True)}
    except psutil.Error:
        return set()


def cpu_seconds(pids: Sequence[int]) -> float | None:
    """User plus system CPU time of these processes so far; None when none can be read."""
    total, seen = 0.0, False
    for pid in pids:
        spent = _process_cpu(pid)
        if spent is not None:
            total += spent
            seen = True
    return total if seen else None


def _process_cpu(pid: int) -> float | None:
    """One process's CPU time: from Linux's CPU clock of the process (nanoseconds, every thread,
    finished ones too) where it can be read, else from psutil (the kernel's 10 ms ticks, too coarse
    for a block of a few fast requests)."""
    import psutil

    if sys.platform == "linux":
        # The clock id clock_getcpuclockid(3) would give: the pid inverted, shifted, CPUCLOCK_SCHED.
        with contextlib.suppress(OSError, OverflowError):
            return time.clock_gettime((~pid << 3) | 2)
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return times.user + times.system


# The arithmetic (pure: the unit tests feed it made-up blocks).


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return round(numerator / denominator, 3)


def _paired(mine: dict[int, float], theirs: dict[int, float]) -> list[float | None]:
    return [_ratio(mine[r], theirs[r]) for r in sorted(mine.keys() & theirs.keys())]


def _spread(ratios: Sequence[float | None]) -> str:
    """The range of the per-round ratios, as ` (0.91-1.08x over 3 rounds)`; nothing for fewer than two."""
    known = [r for r in ratios if r is not None]
    if len(known) < 2:
        return ""
    return f" ({min(known):.2f}-{max(known):.2f}x over {len(known)} rounds)"


def _per_answer(totals: Sequence[float | None], answered: int, scale: float = 1.0) -> float | None:
    """Block totals (CPU seconds, upstream calls) per answered request; None if any is unknown."""
    if not answered or not totals or any(t is None for t in totals):
        return None
    return round(scale * sum(t or 0.0 for t in totals) / answered, 3)


def _median(values: Sequence[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def _gap(overhead: float | None, self_overheads: Sequence[float]) -> float | None:
    if overhead is None or not self_overheads:
        return None
    return round(overhead - percentile(self_overheads, 50), 3)


def summarise_level(concurrency: int, blocks: Sequence[Block], targets: Sequence[Target]) -> dict[str, Any]:
    """The figures of one concurrency level from its blocks (every target, every round)."""
    stub_p50 = {
        b.round: percentile(b.latencies_ms, 50) for b in blocks if b.target == STUB and b.latencies_ms
    }
    figures: dict[str, dict[str, Any]] = {}
    # Per target, its overhead and requests a second in each round: the ratios pair them by round.
    overhead_by_round: dict[str, dict[int, float]] = {}
    rps_by_round: dict[str, dict[int, float]] = {}
    for target in targets:
        mine = sorted((b for b in blocks if b.target == target.name), key=lambda b: b.round)
        latencies = [ms for b in mine for ms in b.latencies_ms]
        answered = len(latencies)
        overhead_by_round[target.name] = {
            b.round: percentile(b.latencies_ms, 50) - stub_p50[b.round]
            for b in mine
            if b.latencies_ms and b.round in stub_p50
        }
        rps_by_round[target.name] = {b.round: len(b.latencies_ms) / b.wall_s for b in mine if b.wall_s > 0}
        overheads = list(overhead_by_round[target.name].values())
        overhead = _median(overheads)
        self_overheads = [ms for b in mine for ms in b.self_overheads_ms]
        queued = [ms for b in mine for ms in b.queued_ms]
        outside = [ms for b in mine for ms in b.outside_ms]
        models = [ms for b in mine for ms in b.models_ms]
        outcomes: Counter[str] = Counter()
        for b in mine:
            outcomes.update(b.outcomes)
        figures[target.name] = {
            "kind": target.kind,
            "requests": answered + sum(len(b.errors) for b in mine),
            "errors": sum(len(b.errors) for b in mine),
            "error_samples": [e for b in mine for e in b.errors][:3],
            "latency_ms": {
                "p50": round(percentile(latencies, 50), 3),
                "p95": round(percentile(latencies, 95), 3),
            },
            # The stub's overhead over itself is 0 by definition; kept for a uniform table.
            "overhead_ms": 0.0 if target.kind == "stub" else overhead,
            "overhead_ms_rounds": [round(o, 3) for o in overheads],
            "cpu_ms_per_request": _per_answer([b.cpu_s for b in mine], answered, scale=1000),
            "rps": _median(list(rps_by_round[target.name].values())),
            "upstream_calls_per_request": _per_answer([b.upstream_calls for b in mine], answered),
            # Ours from `timings_ms`; another proxy's from its own header, where it sends one.
            "self_reported_overhead_ms_p50": (
                round(percentile(self_overheads, 50), 3) if self_overheads else None
            ),
            # How much of the client's overhead the target's own account leaves out. Ours counts
            # the wait for a run slot apart from its overhead: both are its account of the hop.
            "self_reported_gap_ms": _gap(
                overhead,
                [o + q for o, q in zip(self_overheads, queued, strict=True)] if queued else self_overheads,
            ),
            # Time our requests waited for a run slot (HYBRID_MAX_ACTIVE_RUNS), outside `overhead`.
            "self_reported_queued_ms_p50": (
                round(percentile(queued, 50), 3) if target.kind == "ours" and queued else None
            ),
            # Where a self-reported overhead and the client's part: the time the client waited
            # outside our clock (reading and writing the HTTP messages, the loopback, waking up),
            # and the model servers' time we subtract, against the stub's p50 called directly.
            "outside_clock_ms_p50": round(percentile(outside, 50), 3) if outside else None,
            "self_reported_models_ms_p50": round(percentile(models, 50), 3) if models else None,
            "outcomes": dict(sorted(outcomes.items())),
        }
    ratios = []
    for ours in (t for t in targets if t.kind == "ours"):
        for other in (t for t in targets if t.kind in ("ours", "other") and t.name != ours.name):
            a, b = figures[ours.name], figures[other.name]
            ratios.append(
                {
                    "target": ours.name,
                    "against": other.name,
                    "overhead": _ratio(a["overhead_ms"], b["overhead_ms"]),
                    "rps": _ratio(a["rps"], b["rps"]),
                    "cpu_per_request": _ratio(a["cpu_ms_per_request"], b["cpu_ms_per_request"]),
                    # The same ratios round by round (both measured in the same round): their
                    # spread says whether the ratio above stands out from this machine's noise.
                    "overhead_rounds": _paired(overhead_by_round[ours.name], overhead_by_round[other.name]),
                    "rps_rounds": _paired(rps_by_round[ours.name], rps_by_round[other.name]),
                }
            )
    return {"concurrency": concurrency, "targets": figures, "ratios": ratios}


def _williams_rows(n: int) -> list[list[int]]:
    """A Williams design for `n` targets: each row a round's order (indexes). As many rows as
    targets, and for an odd number each row followed by its mirror (twice as many)."""
    first = [0]  # 0, 1, n-1, 2, n-2, ...
    for step in range(1, n):
        first.append((step + 1) // 2 if step % 2 else n - step // 2)
    rows = []
    for shift in range(n):
        row = [(i + shift) % n for i in first]
        rows.append(row)
        if n % 2:
            rows.append(row[::-1])
    return rows


def balanced_rounds(targets: int) -> int:
    """The default number of rounds: a full cycle of `round_order`'s design, and at least 3."""
    return max(3, len(_williams_rows(targets)))


def target_count(concurrency: int, heuristic: bool, passthrough: bool, against: int) -> int:
    """How many targets `evaluate_overhead` measures at a level (for a progress bar)."""
    return 2 + heuristic + passthrough + (passthrough and concurrency == 1) + against


def round_order(targets: Sequence[Target], round_: int) -> list[Target]:
    """The order of round `round_`, from a Williams design: over a full cycle of its rows (one
    round each) each target comes first equally often and straight after every other target
    equally often. A block runs in what the one before it leaves (a busy or an idle machine): with
    a plain rotation one proxy always followed the same other, and two copies of one server
    measured about 4 % apart by that alone (docs/benchmarks.md)."""
    rows = _williams_rows(len(targets))
    return [targets[i] for i in rows[round_ % len(rows)]]


# Driving the targets.


async def _block(
    client: Any,
    target: Target,
    concurrency: int,
    requests: int,
    numbers: Iterator[int],
    *,
    round_: int,
    hold_ms: float | None = None,
) -> Block:
    import httpx

    from hybrid.evals.passthrough import HOLD_HEADER

    block = Block(target=target.name, round=round_)
    headers = {"Authorization": f"Bearer {target.key}"} if target.key else {}
    if hold_ms is not None:
        headers[HOLD_HEADER] = f"{hold_ms:.3f}"
    left = requests

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            body = {
                "model": target.model,
                "messages": [{"role": "user", "content": load_question(next(numbers))}],
            }
            began = time.perf_counter()
            try:
                response = await client.post(
                    f"{target.base_url}/chat/completions", json=body, headers=headers, timeout=120
                )
                elapsed = (time.perf_counter() - began) * 1000
            except httpx.HTTPError as exc:
                block.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            # 202: our server parked the question for a human reviewer; it is still a full run.
            if response.status_code not in (200, 202):
                block.errors.append(f"HTTP {response.status_code}: {response.text[:200]}")
                continue
            block.latencies_ms.append(elapsed)
            if target.kind == "ours":
                report = response.json().get("hybrid") or {}
                timings = report.get("timings_ms") or {}
                block.self_overheads_ms.append(float(timings.get("overhead", 0.0)))
                block.queued_ms.append(float(timings.get("queued", 0.0)))
                if "total" in timings:
                    block.outside_ms.append(elapsed - float(timings["total"]))
                    block.models_ms.append(float(timings.get("models", 0.0)))
                block.outcomes[f"{report.get('route')}/{report.get('status')}"] += 1
            elif (reported := peer_reported_overhead(response.headers)) is not None:
                block.self_overheads_ms.append(reported)

    cpu_before = cpu_seconds(target.pids) if target.pids else None
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    block.wall_s = time.perf_counter() - started
    cpu_after = cpu_seconds(target.pids) if target.pids else None
    if cpu_before is not None and cpu_after is not None:
        block.cpu_s = cpu_after - cpu_before
    return block


async def _stub_calls(client: Any, stub_url: str) -> int:
    return int((await client.get(f"{stub_url}/health", timeout=10)).json()["completions"])


async def _warm_up(
    clients: dict[str, Any],
    targets: Sequence[Target],
    level: int,
    *,
    warmup: int,
    numbers: Iterator[int],
    stub_url: str,
    tick: Callable[[str], None],
    warnings: list[str],
    reported: dict[str, list[float]],
) -> None:
    """Warm every target up at `level` (unmeasured), in order, adding to `reported` the own
    overheads of each target a held one stands in for. A held target whose stand-in reported none
    (no warm-up) is not warmed up."""
    for target in targets:
        hold = _hold(target, reported)
        if target.holds_as is not None and hold is None:
            continue
        tick(f"c={level} warm-up {target.name}")
        before = await _stub_calls(clients[STUB], stub_url)
        warm = await _block(clients[target.name], target, level, warmup, numbers, round_=-1, hold_ms=hold)
        if warm.errors:
            raise RuntimeError(f"{target.name} failed in the warm-up: {warm.errors[0]}")
        if warmup and await _stub_calls(clients[STUB], stub_url) == before:
            warning = f"{target.name} ({target.base_url}) answered without calling the stub"
            if warning not in warnings:
                warnings.append(warning)
        if target.name in reported:
            reported[target.name].extend(warm.self_overheads_ms)


def _hold(target: Target, reported: dict[str, list[float]]) -> float | None:
    """How long a held target holds each request now: the median own overhead its stand-in has
    reported at this level so far (None for a target that holds nothing, or nothing reported)."""
    if target.holds_as is None or not reported.get(target.holds_as):
        return None
    return statistics.median(reported[target.holds_as])


async def _measure(
    targets: Sequence[Target],
    stub_url: str,
    *,
    concurrency: Sequence[int],
    rounds: int,
    requests: int,
    warmup: int,
    tick: Callable[[str], None],
) -> tuple[list[dict[str, Any]], list[str]]:
    import httpx

    numbers = itertools.count()  # distinct questions across the whole run: no two requests repeat
    warnings: list[str] = []
    limits = httpx.Limits(
        max_connections=max(concurrency) + 2, max_keepalive_connections=max(concurrency) + 2
    )
    levels = []
    async with contextlib.AsyncExitStack() as stack:
        # One client per target for the whole run: connections are opened once, in the warm-up.
        clients = {t.name: await stack.enter_async_context(httpx.AsyncClient(limits=limits)) for t in targets}
        for level in concurrency:
            measured = [t for t in targets if t.measured_at(level)]
            # The own overheads of each target a held one stands in for, reported so far at this level.
            reported: dict[str, list[float]] = {t.holds_as: [] for t in measured if t.holds_as}
            await _warm_up(
                clients,
                measured,
                level,
                warmup=warmup,
                numbers=numbers,
                stub_url=stub_url,
                tick=tick,
                warnings=warnings,
                reported=reported,
            )
            measured = [t for t in measured if t.holds_as is None or _hold(t, reported) is not None]
            held: dict[str, list[float]] = {t.name: [] for t in measured if t.holds_as}
            blocks = []
            for round_ in range(rounds):
                for target in round_order(measured, round_):
                    tick(f"c={level} round {round_ + 1}/{rounds} {target.name}")
                    before = await _stub_calls(clients[STUB], stub_url)
                    hold = _hold(target, reported)
                    block = await _block(
                        clients[target.name], target, level, requests, numbers, round_=round_, hold_ms=hold
                    )
                    block.upstream_calls = await _stub_calls(clients[STUB], stub_url) - before
                    blocks.append(block)
                    if hold is not None:
                        held[target.name].append(hold)
                    if target.name in reported:  # the held one follows it through the run
                        reported[target.name].extend(block.self_overheads_ms)
            summary = summarise_level(level, blocks, measured)
            for target in (t for t in measured if t.holds_as is not None):
                _against_held(summary["targets"], target, statistics.median(held[target.name]))
            levels.append(summary)
    return levels, warnings


def _against_held(figures: dict[str, dict[str, Any]], held: Target, hold_ms: float) -> None:
    """Record a held pass-through's hold, and how much more than it the target it stood in for
    leaves out of its own account: the part of that target's gap a proxy taking as long would not
    have, and so the part its own clock could see."""
    figures[held.name]["hold_ms"] = round(hold_ms, 3)
    mine, yardstick = figures[held.holds_as or ""], figures[held.name]
    if mine.get("self_reported_gap_ms") is not None and yardstick.get("self_reported_gap_ms") is not None:
        mine["self_reported_gap_beyond_held_ms"] = round(
            mine["self_reported_gap_ms"] - yardstick["self_reported_gap_ms"], 3
        )


# The servers.


@contextlib.contextmanager
def _our_servers(folder: Path, stub_url: str, routers: Sequence[str]) -> Iterator[list[Target]]:
    """`hybrid serve` per router, each with its own data directory, tiers on the stub, a key."""
    from hybrid.evals.servers import free_port, running

    targets = []
    with contextlib.ExitStack() as stack:
        for router in routers:
            port, key = free_port(), secrets.token_urlsafe(16)
            env = dict(os.environ) | {
                "HYBRID_DATA_DIR": str(folder / f"ours-{router}"),
                "HYBRID_CACHE": "off",
                "HYBRID_ROUTER": router,
                "HYBRID_SMALL_MODEL": "openai:stub-small",
                "HYBRID_LARGE_MODEL": "openai:stub-large",
                "HYBRID_OPENAI_BASE_URL": stub_url,
                "HYBRID_API_KEYS": key,
            }
            command = [
                sys.executable,
                "-m",
                "hybrid.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ]
            log = folder / f"ours-{router}.log"
            process = stack.enter_context(running(command, f"http://127.0.0.1:{port}/health", log, env=env))
            name = "ours" if router == "learned" else f"ours-{router}"
            url = f"http://127.0.0.1:{port}/v1"
            targets.append(Target(name, "ours", url, "hybrid", key, (process.pid,)))
        yield targets


@contextlib.contextmanager
def _passthrough(folder: Path, stub_root: str, *, enabled: bool, held: bool) -> Iterator[list[Target]]:
    """The pass-through proxy in front of the stub, as a target (none when not `enabled`), and
    with `held` a second one, in a process of its own, holding each request as long as ours."""
    if not enabled:
        yield []
        return
    from hybrid.evals.servers import free_port, running

    kinds: list[tuple[str, str | None]] = [("passthrough", None)]
    if held:
        kinds.append(("passthrough-held", "ours"))
    targets = []
    with contextlib.ExitStack() as stack:
        for name, holds_as in kinds:
            port = free_port()
            command = [
                sys.executable,
                "-m",
                "hybrid.evals.passthrough",
                "--port",
                str(port),
                "--upstream",
                stub_root,
            ]
            root = f"http://127.0.0.1:{port}"
            process = stack.enter_context(running(command, f"{root}/health", folder / f"{name}.log"))
            targets.append(Target(name, "passthrough", f"{root}/v1", "stub", None, (process.pid,), holds_as))
        yield targets


def evaluate_overhead(
    *,
    concurrency: Sequence[int] = (1, 8),
    rounds: int | None = None,
    requests: int = 200,
    warmup: int = 20,
    against: Sequence[str] = (),
    against_key: str | None = None,
    against_model: str = "stub",
    heuristic: bool = False,
    passthrough: bool = False,
    stub_port: int | None = None,
    log: Callable[[str], None] = lambda _m: None,
    tick: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """Start the stub and our server(s), measure every target, return the report.

    `against`: base URLs of other proxies in front of the stub (started by the user: they must be
    pointed at `stub_port`). `passthrough`: also measure a proxy that only forwards to the stub
    (and at concurrency 1 one held as long as ours). `rounds`: default `balanced_rounds` of the
    most targets measured at one level. `tick` is called before each block (a progress bar)."""
    from hybrid.evals.servers import free_port, running

    with tempfile.TemporaryDirectory(prefix="hybrid-overhead-") as tmp:
        folder = Path(tmp)
        port = stub_port or free_port()
        stub_root = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "hybrid.evals.stub", "--port", str(port)]
        log(f"starting the stub upstream on {stub_root} ...")
        with running(command, f"{stub_root}/health", folder / "stub.log") as stub_process:
            stub = Target(STUB, "stub", f"{stub_root}/v1", "stub", None, (stub_process.pid,))
            routers = ["learned", "heuristic"] if heuristic else ["learned"]
            log(f"starting hybrid serve ({', '.join(routers)} router) with both tiers on the stub ...")
            with (
                _our_servers(folder, stub.base_url, routers) as ours,
                _passthrough(folder, stub_root, enabled=passthrough, held=1 in concurrency) as hop,
            ):
                others = []
                for n, url in enumerate(against, start=1):
                    pids = listening_pids(url)
                    others.append(
                        Target(f"against-{n}", "other", openai_base(url), against_model, against_key, pids)
                    )
                targets = [stub, *ours, *hop, *others]
                rounds = rounds or max(
                    balanced_rounds(sum(t.measured_at(level) for t in targets)) for level in concurrency
                )
                log(f"measuring {len(targets)} targets: {rounds} rounds x {requests} requests per level ...")
                levels, warnings = asyncio.run(
                    _measure(
                        targets,
                        stub_root,
                        concurrency=concurrency,
                        rounds=rounds,
                        requests=requests,
                        warmup=warmup,
                        tick=tick,
                    )
                )
    return {
        "settings": {
            "concurrency": list(concurrency),
            "rounds": rounds,
            "requests": requests,
            "warmup": warmup,
        },
        "targets": [
            {
                "name": t.name,
                "kind": t.kind,
                "url": t.base_url,
                "model": t.model,
                "router": ("learned" if t.name == "ours" else t.name.removeprefix("ours-"))
                if t.kind == "ours"
                else None,
                "cpu_measured": bool(t.pids),
            }
            for t in targets
        ],
        "levels": levels,
        "warnings": warnings,
        "errors_total": sum(f["errors"] for lvl in levels for f in lvl["targets"].values()),
    }


def _cell(value: float | None, spec: str, width: int) -> str:
    return f"{'n/a':>{width}}" if value is None else f"{value:>{width}{spec}}"


def format_table(report: dict[str, Any]) -> str:
    """The figures for people."""
    settings = report["settings"]
    names = {t["name"]: t for t in report["targets"]}
    lines = [
        f"{settings['rounds']} interleaved rounds x {settings['requests']} requests per target and level; "
        "overhead = p50 minus the stub's p50 in the same round (median over rounds)"
    ]
    header = (
        "target",
        "p50 ms",
        "p95 ms",
        "overhead",
        "self-rep.",
        "CPU ms/req",
        "req/s",
        "upstr/req",
        "errors",
    )
    widths = (16, 9, 9, 10, 11, 12, 9, 11, 8)
    for level in report["levels"]:
        lines.append("")
        lines.append(f"concurrency {level['concurrency']}")
        lines.append(
            "".join(
                f"{h:<{w}}" if i == 0 else f"{h:>{w}}"
                for i, (h, w) in enumerate(zip(header, widths, strict=True))
            )
        )
        for name, f in level["targets"].items():
            lines.append(
                f"{name:<16}{f['latency_ms']['p50']:>9.2f}{f['latency_ms']['p95']:>9.2f}"
                + _cell(f["overhead_ms"], ".2f", 10)
                + (
                    _cell(f["self_reported_overhead_ms_p50"], ".2f", 11)
                    if f["kind"] != "stub"
                    else f"{'-':>11}"
                )
                + _cell(f["cpu_ms_per_request"], ".2f", 12)
                + _cell(f["rps"], ".1f", 9)
                + _cell(f["upstream_calls_per_request"], ".2f", 11)
                + f"{f['errors']:>8}"
            )
        for ratio in level["ratios"]:
            parts = [
                f"{label} "
                + ("n/a" if ratio[key] is None else f"{ratio[key]:.2f}x")
                + _spread(ratio.get(f"{key}_rounds", ()))
                for label, key in (("overhead", "overhead"), ("req/s", "rps"), ("CPU/req", "cpu_per_request"))
            ]
            lines.append(f"{ratio['target']} / {ratio['against']}: " + ", ".join(parts))
        gaps = [f"{name} {f['self_reported_gap_ms']:.2f} ms" for name, f in level["targets"].items()
                if f.get("self_reported_gap_ms") is not None]  # fmt: skip
        if gaps:
            lines.append("own account under the client's overhead: " + ", ".join(gaps))
        for name, f in level["targets"].items():
            if f.get("self_reported_gap_beyond_held_ms") is not None:
                lines.append(
                    f"{name}'s account misses {f['self_reported_gap_beyond_held_ms']:.2f} ms more than a "
                    "pass-through held as long as it takes"
                )
        for name, f in level["targets"].items():
            if f["outcomes"]:
                lines.append(
                    f"{name} outcomes (route/status): "
                    + ", ".join(f"{k} {v}" for k, v in f["outcomes"].items())
                )
            if f.get("self_reported_queued_ms_p50") is not None:
                lines.append(f"{name} waited for a run slot: p50 {f['self_reported_queued_ms_p50']:.2f} ms")
            if f.get("outside_clock_ms_p50") is not None:
                stub = level["targets"].get(STUB, {}).get("latency_ms", {}).get("p50")
                lines.append(
                    f"{name} outside its own clock: p50 {f['outside_clock_ms_p50']:.2f} ms; model servers "
                    f"{f['self_reported_models_ms_p50']:.2f} ms by its account"
                    + (f", the stub directly {stub:.2f} ms" if stub is not None else "")
                )
            for sample in f["error_samples"]:
                lines.append(f"{name} error: {sample}")
    lines.extend(f"warning: {w}" for w in report.get("warnings", []))
    others = [t for t in names.values() if t["kind"] == "other"]
    if others:
        lines.append("")
        lines.extend(f"{t['name']}: {t['url']} (model {t['model']})" for t in others)
    return "\n".join(lines)
