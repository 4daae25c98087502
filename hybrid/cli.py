"""The `hybrid` command. Every subcommand goes through the Python API façade (`hybrid.api`)."""

from __future__ import annotations

import getpass
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
from pydantic import ValidationError

from hybrid.errors import HybridError
from hybrid.tuning import DEFAULT_CONFIDENCE as DEFAULT_TUNE_CONFIDENCE

if TYPE_CHECKING:
    from hybrid.settings import Settings

# The graphs `langgraph dev` serves; the repository's langgraph.json declares the same.
LANGGRAPH_GRAPHS = {"hybrid": "hybrid.langgraph_app:graph", "ingest": "hybrid.langgraph_app:ingest"}
# Keys and tenancy in `langgraph dev` (hybrid.langgraph_auth); Studio's own auth would bypass it.
LANGGRAPH_AUTH = {"path": "hybrid.langgraph_auth:auth", "disable_studio_auth": True}
DEV_PORT = 2025  # 2024, langgraph's default, is taken on our machines


def _fail(message: str) -> NoReturn:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(1)


def _handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn expected errors into one clear line on stderr and exit code 1."""
    import functools

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except HybridError as exc:
            _fail(str(exc))
        except ValidationError as exc:
            from hybrid.settings import invalid_setting

            _fail(str(invalid_setting(exc)))

    return wrapper


def _parse_sets(pairs: tuple[str, ...]) -> dict[str, str]:
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--set")
        overrides[key.strip().replace("-", "_")] = value
    return overrides


def _reviewer() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "anonymous"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hybrid-ai")
def cli() -> None:
    """Hybrid AI: answer with the cheapest model that answers well, and show why."""
    from hybrid.privacy import disable_telemetry

    disable_telemetry()  # before anything imports ONNX Runtime, Chroma or the Hugging Face hub
    from hybrid.observability import configure_logging
    from hybrid.settings import resolve_settings

    try:
        configure_logging(resolve_settings().log_level)
    except ValueError as exc:  # InvalidSetting names the setting, the value and what is allowed
        _fail(str(exc))


@cli.command()
@click.argument("question")
@click.option("--json", "as_json", is_flag=True, help="Print the whole answer record as one JSON object.")
@click.option("--route", type=click.Choice(["small", "large", "human"]), help="Force a route.")
@click.option("--profile", help="Model profile (e.g. embedded, ollama).")
@click.option("--thread", "thread_id", help="Continue this conversation.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a per-run setting.")
@click.option("--key", help="Ask as this API key's tenant and tier (policy file).")
@_handle_errors
def ask(
    question: str,
    *,
    as_json: bool,
    route: str | None,
    profile: str | None,
    thread_id: str | None,
    sets: tuple[str, ...],
    key: str | None,
) -> None:
    """Answer QUESTION and explain the route it took (QUESTION `-` reads it from stdin)."""
    from hybrid import api

    if question == "-":
        question = sys.stdin.buffer.read()  # type: ignore[assignment]  (bytes: checked as UTF-8 by the API)
    overrides = {**_parse_sets(sets), "force_route": route, "profile": profile}
    answer = api.ask(question, thread_id=thread_id, key=key, **overrides)
    if as_json:
        click.echo(answer.model_dump_json())
        _wait_for_shadow_runs()
        return
    if answer.status == "answered":
        click.echo(answer.answer)
    elif answer.status == "pending_review":
        click.secho(f"Waiting for human review (thread {answer.thread_id}).", fg="yellow")
        click.echo(f"Resolve it with: hybrid review approve|edit|reject {answer.thread_id}")
    else:
        click.secho("The answer was rejected by a reviewer.", fg="red")
    click.secho(f"route: {answer.explanation}", dim=True)
    _wait_for_shadow_runs()


def _wait_for_shadow_runs() -> None:
    """A one-shot command waits for the shadow runs it queued (the process would end them)."""
    from hybrid import api

    api.wait_for_shadow_runs()


_DOCTOR_COLOURS = {"ok": "green", "warning": "yellow", "failed": "red", "skipped": None}


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the checks as one JSON object.")
@click.option("--profile", help="Check this model profile instead of the configured one.")
@_handle_errors
def doctor(as_json: bool, profile: str | None) -> None:
    """Check everything the settings rely on, one line per check with its fix.

    Models (servers reachable, models pulled or listed, embedded files load), MiniLM, the knowledge
    store, the database, the router and verifier, the policy file and telemetry. Exits with 1 when
    a part answering needs has failed.
    """
    from hybrid import api

    report = api.doctor(profile=profile)
    if as_json:
        click.echo(json.dumps(report.as_dict()))
    else:
        for check in report.checks:
            status = click.style(f"{check.status:<8}", fg=_DOCTOR_COLOURS[check.status], bold=True)
            fix = f" -> fix: {check.fix}" if check.fix else ""
            click.echo(f"{status}{check.name}: {check.found}{fix}")
        failed = [c for c in report.checks if c.blocking]
        summary = (
            f"{len(report.checks)} checks: {report.count('ok')} ok, {report.count('warning')} warning(s), "
            f"{report.count('failed')} failed, {report.count('skipped')} skipped"
        )
        if failed:
            click.secho(f"{summary}. Answering needs the failed parts: apply the fixes above.", fg="red")
        else:
            click.echo(f"{summary}. Ready to answer.")
    if not report.ok:
        sys.exit(1)


class _ProgressBar:
    """A progress bar over chunks stored, on stderr, for `hybrid ingest` on a terminal."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=0, unit="chunk", file=sys.stderr, dynamic_ncols=True, leave=False)

    def file_started(self, path: Path, chunks: int) -> None:
        self.bar.set_description(path.name[:40])
        self.bar.total = (self.bar.total or 0) + chunks
        self.bar.refresh()

    def chunks_stored(self, count: int) -> None:
        self.bar.update(count)

    def close(self) -> None:
        self.bar.close()


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--collection", help="Collection to add to (default: the configured one).")
@click.option(
    "--sync",
    is_flag=True,
    help="Also remove chunks of files under PATHS that are gone or changed.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@_handle_errors
def ingest(paths: tuple[Path, ...], collection: str | None, sync: bool, as_json: bool) -> None:
    """Add files and folders to the knowledge base.

    Markdown, text, HTML, PDF, and JSON/JSONL corpora (BEIR corpus.jsonl, SQuAD-format JSON).
    Exits with 1 if any file could not be ingested (the others are).
    """
    from hybrid import api

    bar = _ProgressBar() if sys.stderr.isatty() and not as_json else None
    try:
        report = api.ingest(paths, collection=collection, sync=sync, progress=bar)
    finally:
        if bar:
            bar.close()
    if as_json:
        click.echo(report.model_dump_json())
    else:
        click.echo(report.summary())
    if not report.ok:
        sys.exit(1)


@cli.group()
def review() -> None:
    """List and resolve answers waiting for a human."""


@review.command("list")
@click.option("--json", "as_json", is_flag=True)
@_handle_errors
def review_list(as_json: bool) -> None:
    """Cases waiting for a reviewer."""
    from hybrid import api

    pending = api.pending_reviews()
    if as_json:
        click.echo(json.dumps([p.model_dump(mode="json") for p in pending]))
        return
    if not pending:
        click.echo("No pending reviews.")
    for case in pending:
        claimed = f", being resolved by {case.claimed_by}" if case.claimed_by else ""
        click.echo(
            f"{case.thread_id}  {case.created_at:%Y-%m-%d %H:%M}  {case.request['question'][:60]!r}  "
            f"({case.request['why']}{claimed}; may: {', '.join(case.request['actions'])})"
        )


@review.command("show")
@click.argument("thread_id")
@_handle_errors
def review_show(thread_id: str) -> None:
    """Everything about one case, as JSON."""
    from hybrid import api

    click.echo(api.answer_for(thread_id).model_dump_json(indent=2))


def _resolve(thread_id: str, **decision: Any) -> None:
    from hybrid import api

    answer = api.resume(thread_id, {k: v for k, v in decision.items() if v is not None})
    click.echo(f"{thread_id}: {answer.status}" + (f": {answer.answer}" if answer.answer else ""))


_reviewer_option = click.option("--reviewer", default=_reviewer, show_default="current user")


@review.command("approve")
@click.argument("thread_id")
@_reviewer_option
@_handle_errors
def review_approve(thread_id: str, reviewer: str) -> None:
    """Accept the latest model answer as it is."""
    _resolve(thread_id, action="approve", reviewer=reviewer)


@review.command("edit")
@click.argument("thread_id")
@click.option("--answer", required=True, help="The answer to give instead.")
@_reviewer_option
@_handle_errors
def review_edit(thread_id: str, answer: str, reviewer: str) -> None:
    """Answer with your own text."""
    _resolve(thread_id, action="edit", answer=answer, reviewer=reviewer)


@review.command("reject")
@click.argument("thread_id")
@click.option("--reason", help="Why the question is not answered.")
@_reviewer_option
@_handle_errors
def review_reject(thread_id: str, reason: str | None, reviewer: str) -> None:
    """Decline to answer."""
    _resolve(thread_id, action="reject", reason=reason, reviewer=reviewer)


@review.command("escalate")
@click.argument("thread_id")
@_reviewer_option
@_handle_errors
def review_escalate(thread_id: str, reviewer: str) -> None:
    """Send the question to the large model (its answer is verified, and reviewed again if it fails)."""
    _resolve(thread_id, action="escalate", reviewer=reviewer)


@review.command("expire")
@click.option("--json", "as_json", is_flag=True)
@_handle_errors
def review_expire(as_json: bool) -> None:
    """Resolve cases past their deadline with the configured fallback (for cron)."""
    from hybrid import api

    answers = api.expire_reviews()
    if as_json:
        click.echo(json.dumps([{"thread_id": a.thread_id, "status": a.status} for a in answers]))
        return
    click.echo(f"{len(answers)} overdue case(s) resolved")
    for answer in answers:
        click.echo(f"  {answer.thread_id}: {answer.status}")


@cli.command()
@click.argument("thread_id")
@click.argument("rating", type=click.Choice(["up", "down"]))
@click.option("--comment", help="What was good or wrong.")
@_handle_errors
def feedback(thread_id: str, rating: str, comment: str | None) -> None:
    """Rate the latest answer of a conversation (teaches the router)."""
    from hybrid import api

    api.feedback(thread_id, rating, comment=comment)  # type: ignore[arg-type]
    click.echo(f"{thread_id}: thumbs {rating} recorded")


@cli.group()
def audit() -> None:
    """The audit log of every decision."""


@audit.command("export")
@click.option("--since", type=click.DateTime(), help="Only events at or after this time (UTC).")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@_handle_errors
def audit_export(since: Any, fmt: str) -> None:
    """Print the audit log (route, scores, models, reviewers, verdicts, timestamps)."""
    from datetime import UTC

    from hybrid import api

    moment = since.replace(tzinfo=UTC) if since is not None and since.tzinfo is None else since
    for chunk in api.audit_export(since=moment, fmt=fmt):  # type: ignore[arg-type]
        click.echo(chunk, nl=False)


@cli.group()
def policy() -> None:
    """Check a policy file, see where a question would go under it, make API keys."""


@policy.command("check")
@click.argument("file", type=click.Path(path_type=Path))
@_handle_errors
def policy_check(file: Path) -> None:
    """Validate FILE as HYBRID_POLICY_FILE would be: every problem with its line (exit 1 if any)."""
    from hybrid import api
    from hybrid.policy.loading import load

    problems = api.check_policy(file)
    if problems:
        for problem in problems:
            where = f"{problem.where}: " if problem.where else ""
            click.echo(f"{file}:{problem.line}:{problem.column}: {where}{problem.message}", err=True)
        _fail(f"{file}: {len(problems)} problem(s); the policy in force (if any) is unchanged")
    loaded = load(file)
    rules = loaded.policy
    click.echo(
        f"{file}: valid (version {loaded.version}): {len(rules.tiers)} tier(s), {len(rules.tenants)} "
        f"tenant(s), {len(rules.rules)} rule(s), {len(rules.restrictions)} data-class restriction(s)"
    )


@policy.command("explain")
@click.argument("question")
@click.option("--key", help="As this API key's tenant and tier.")
@click.option("--tier", help="As a request of this service tier.")
@click.option("--tenant", help="As this tenant (its tier and budget).")
@click.option("--json", "as_json", is_flag=True, help="Print the explanation as one JSON object.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a per-run setting.")
@_handle_errors
def policy_explain(
    question: str,
    *,
    key: str | None,
    tier: str | None,
    tenant: str | None,
    as_json: bool,
    sets: tuple[str, ...],
) -> None:
    """Where QUESTION would go and why, without running a model: the rules that matched, the
    router's score against the threshold, the tiers and models allowed."""
    from hybrid import api

    if key and (tier or tenant):
        raise click.UsageError("give --key, or --tier/--tenant, not both")
    found = api.explain_route(question, key=key, tier=tier, tenant=tenant, **_parse_sets(sets))
    if as_json:
        click.echo(found.model_dump_json())
        return
    route = found.route
    click.echo(
        f"as: {'tenant ' + found.tenant if found.tenant else 'no tenant'}, tier {found.tier or '(none)'}"
    )
    click.echo(f"data class: {found.data_class}")
    for check in found.rules:
        mark = "matched" if check.matched else "no"
        click.echo(f"  rule {check.rule} ({check.action}): {mark}: {check.detail}")
    if not found.rules:
        click.echo("  no policy rules")
    score, threshold = route["difficulty"], route["threshold"]
    click.echo(f"router: {route['router']} scored {score:.3f} against threshold {threshold:.3f}")
    review = route["policies"].get("review", "allowed")
    if found.refusal:
        click.secho(f"refused: {found.refusal}", fg="red")
    elif route["route"] == "human" and review != "allowed":
        click.secho(f"route: human, but the {found.tier} tier has no human review: {review}", bold=True)
    else:
        models = "; ".join(
            f"{tier_}: {', '.join(specs) or 'none'}" for tier_, specs in route["models"].items()
        )
        click.secho(f"route: {route['route']} ({models})", bold=True)
    for reason in route["reasons"]:
        click.echo(f"  - {reason}")


@policy.command("new-key")
def policy_new_key() -> None:
    """Make a random API key: give the key to its user, put the hash in the policy file."""
    from hybrid.policy import new_key

    key, digest = new_key()
    click.echo(f"key:  {key}")
    click.echo(f"hash: {digest}")


@policy.command("status")
@_handle_errors
def policy_status() -> None:
    """The policy in force (HYBRID_POLICY_FILE): version, when loaded, why a newer file was refused."""
    from hybrid import api

    click.echo(json.dumps(api.policy_status(), indent=2))


@cli.group("eval")
def eval_() -> None:
    """Benchmarks that print figures."""


@eval_.command("retrieval")
@click.option(
    "--beir",
    "folder",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A BEIR dataset folder (corpus.jsonl, queries.jsonl, qrels/test.tsv).",
)
@click.option(
    "--reference",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of MTEB results to print beside ours [default: ../mteb-reference next to --beir].",
)
@click.option("--max-queries", type=int, help="Run only the first N test queries.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@_handle_errors
def eval_retrieval(folder: Path, reference: Path | None, max_queries: int | None, as_json: bool) -> None:
    """nDCG@10, Recall@100 (dense, BM25, hybrid), ingestion throughput and query latency."""
    from hybrid.evals.retrieval import evaluate_beir, format_table

    figures = evaluate_beir(
        folder,
        reference=reference or folder.parent / "mteb-reference",
        max_queries=max_queries,
        log=lambda message: click.echo(message, err=True),
    )
    click.echo(json.dumps(figures) if as_json else format_table(figures))


@eval_.command("cache")
@click.option(
    "--routellm",
    "folder",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="RouteLLM's data folder (GSM8K and MMLU questions).",
)
@click.option(
    "--xquad", type=click.Path(path_type=Path), help="XQuAD JSON [default: ../qa/xquad-en-dev.json]."
)
@click.option("--limit", default=6000, show_default=True, help="Distinct questions to use.")
@click.option("--target", default=0.001, show_default=True, help="Highest acceptable false-hit rate.")
@click.option("--json", "as_json", is_flag=True)
@_handle_errors
def eval_cache(folder: Path, xquad: Path | None, limit: int, target: float, as_json: bool) -> None:
    """Calibrate the cache's near-duplicate threshold (false hits on distinct questions, recall)."""
    from hybrid.evals.cache import evaluate_cache, format_table

    report = evaluate_cache(
        folder,
        xquad=xquad or folder.parent / "qa" / "xquad-en-dev.json",
        limit=limit,
        target_false_hits=target,
        log=lambda message: click.echo(message, err=True),
    )
    click.echo(json.dumps(report) if as_json else format_table(report))


@eval_.command("fuzz")
@click.option("--requests", default=1200, show_default=True, type=click.IntRange(30), help="About this many.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@_handle_errors
def eval_fuzz(requests: int, as_json: bool) -> None:
    """Generated requests (valid and not) against every endpoint of the server, with and without keys.

    Checks every response against the server's OpenAPI document; exits with 1 on any status of 500
    or more, a response the document does not allow, or a model run without a valid key."""
    from hybrid.evals.fuzz import evaluate_fuzz, format_report

    report = evaluate_fuzz(requests, log=lambda message: click.echo(message, err=True))
    click.echo(json.dumps(report) if as_json else format_report(report))
    if not report["met"]:
        sys.exit(1)


def _levels(_ctx: click.Context, _param: click.Parameter, value: str) -> list[int]:
    """Comma-separated concurrency levels, each a positive integer."""
    try:
        levels = [int(level) for level in value.split(",") if level.strip()]
    except ValueError:
        levels = []
    if not levels or min(levels) < 1:
        raise click.BadParameter(f"{value!r}: give positive levels, like 1,8")
    return levels


@eval_.command("load")
@click.option(
    "--concurrency",
    "levels",
    default="1,4,16",
    show_default=True,
    callback=_levels,
    help="Comma-separated concurrency levels.",
)
@click.option(
    "--requests", "requests_per_level", type=int, help="Requests per level [default: 2 x level, >= 8]."
)
@click.option(
    "--shadow-rate",
    type=click.FloatRange(0, 1, min_open=True),
    help="Also compare the user's p50 with shadow runs off and at this rate, in alternating rounds.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@_handle_errors
def eval_load(
    levels: list[int], requests_per_level: int | None, shadow_rate: float | None, as_json: bool
) -> None:
    """Drive `hybrid serve` over HTTP on the embedded models: throughput, latency, errors, overhead."""
    from hybrid.evals.load import evaluate_load, format_table

    report = evaluate_load(
        levels, requests_per_level, log=lambda message: click.echo(message, err=True), shadow_rate=shadow_rate
    )
    click.echo(json.dumps(report) if as_json else format_table(report))


@eval_.command("overhead")
@click.option(
    "--concurrency",
    "levels",
    default="1,8",
    show_default=True,
    callback=_levels,
    help="Comma-separated concurrency levels.",
)
@click.option(
    "--rounds",
    type=click.IntRange(1),
    help="Interleaved rounds per level [default: a full cycle of the balanced order, at least 3: as "
    "many rounds as targets, twice that for an odd number; 3 for the stub and ours, 6 with one more].",
)
@click.option(
    "--requests", default=200, show_default=True, type=click.IntRange(1), help="Per target, round and level."
)
@click.option(
    "--warmup",
    default=20,
    show_default=True,
    type=click.IntRange(0),
    help="Unmeasured requests per target and level.",
)
@click.option(
    "--against",
    "against",
    multiple=True,
    metavar="URL",
    help="Another OpenAI-compatible proxy in front of the stub (repeatable), e.g. http://127.0.0.1:4000; "
    "needs --stub-port.",
)
@click.option(
    "--against-key",
    envvar="OVERHEAD_AGAINST_KEY",
    show_envvar=True,
    help="Bearer key the --against proxies check (better in the environment than on the command line).",
)
@click.option(
    "--against-model", default="stub", show_default=True, help="Model name to ask the --against proxies for."
)
@click.option(
    "--stub-port",
    type=click.IntRange(1, 65535),
    help="Port of the stub upstream, where the --against proxies send to: http://127.0.0.1:PORT/v1 "
    "[default: any free].",
)
@click.option("--heuristic", is_flag=True, help="Also measure our server with the heuristic router.")
@click.option(
    "--passthrough",
    is_flag=True,
    help="Also measure a proxy that only forwards to the stub: the hop's own cost on this machine, "
    "and how much of it a proxy's own clock misses; at concurrency 1 also one that holds each "
    "request as long as ours takes (what a proxy's clock misses when a client waits that long).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@_handle_errors
def eval_overhead(
    *,
    levels: list[int],
    rounds: int | None,
    requests: int,
    warmup: int,
    against: tuple[str, ...],
    against_key: str | None,
    against_model: str,
    stub_port: int | None,
    heuristic: bool,
    passthrough: bool,
    as_json: bool,
) -> None:
    """What a hop through `hybrid serve` costs per request, beside other proxies, on an instant stub.

    Starts the stub and our server (learned router, verifiers, key check, cache off), then measures
    the stub directly, ours and each --against proxy in interleaved rounds: p50/p95, overhead over
    the stub in the same round, CPU per request, requests per second, and ratios."""
    from hybrid.evals.overhead import evaluate_overhead, format_table

    if against and stub_port is None:
        raise click.UsageError("--against needs --stub-port: the port the other proxy sends its requests to")
    bar = None
    if sys.stderr.isatty():
        from tqdm import tqdm

        from hybrid.evals.overhead import balanced_rounds, target_count

        counts = [target_count(level, heuristic, passthrough, len(against)) for level in levels]
        planned = rounds or max(balanced_rounds(count) for count in counts)
        blocks = sum((1 + planned) * count for count in counts)
        bar = tqdm(total=blocks, unit="block", file=sys.stderr, dynamic_ncols=True, leave=False)

    def tick(label: str) -> None:
        if bar is not None:
            bar.set_description(label)
            bar.update(1)

    try:
        report = evaluate_overhead(
            concurrency=levels,
            rounds=rounds,
            requests=requests,
            warmup=warmup,
            against=against,
            against_key=against_key,
            against_model=against_model,
            heuristic=heuristic,
            passthrough=passthrough,
            stub_port=stub_port,
            log=(lambda message: click.echo(message, err=True)) if bar is not None else (lambda _m: None),
            tick=tick,
        )
    finally:
        if bar is not None:
            bar.close()
    click.echo(json.dumps(report) if as_json else format_table(report))


@eval_.command("chaos")
@click.option(
    "--faults", default=",".join(("replica", "postgres", "chroma", "model", "reviews")), show_default=True,
    help="Comma-separated faults, in order: replica, postgres, chroma, model, reviews.",
)  # fmt: skip
@click.option("--replicas", default=2, show_default=True, type=click.IntRange(2, 8))
@click.option("--concurrency", default=3, show_default=True, type=click.IntRange(1, 64), help="Clients.")
@click.option(
    "--logs", type=click.Path(file_okay=False, path_type=Path), help="Keep every part's log in this folder."
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@_handle_errors
def eval_chaos(faults: str, replicas: int, concurrency: int, logs: Path | None, as_json: bool) -> None:
    """Faults under steady load on a real local cluster: lost, hung, refused, recovery time.

    Exits with 1 when a target is missed (0 lost, 0 hung, recovery within 15 s, no 5xx outside
    the faults, every review case resolved through another replica)."""
    from hybrid.evals.chaos import evaluate_chaos, format_report

    report = evaluate_chaos(
        [f.strip() for f in faults.split(",") if f.strip()],
        replicas=replicas,
        concurrency=concurrency,
        keep_logs=logs,
        log=lambda message: click.echo(message, err=True),
    )
    click.echo(json.dumps(report) if as_json else format_report(report))
    if not report["met"]:
        sys.exit(1)


@eval_.command("soak")
@click.option("--minutes", default=30.0, show_default=True, type=click.FloatRange(0.5), help="Measured time.")
@click.option(
    "--warmup-minutes", default=5.0, show_default=True, type=click.FloatRange(0), help="Not measured."
)
@click.option(
    "--sample-seconds", default=60.0, show_default=True, type=click.FloatRange(5), help="Sample interval."
)
@click.option("--replicas", default=2, show_default=True, type=click.IntRange(1, 8))
@click.option("--concurrency", default=3, show_default=True, type=click.IntRange(1, 64), help="Clients.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@_handle_errors
def eval_soak(
    *,
    minutes: float,
    warmup_minutes: float,
    sample_seconds: float,
    replicas: int,
    concurrency: int,
    as_json: bool,
) -> None:
    """Steady mixed traffic on a local cluster for a long time: memory, descriptors, connections, latency.

    Exits with 1 when a target is missed (after the warm-up: RSS growth <= 50 MB per replica,
    descriptors and connections flat, p50 drift <= 20 %, no errors, no restarts)."""
    from hybrid.evals.soak import evaluate_soak, format_report

    report = evaluate_soak(
        minutes,
        warmup_minutes=warmup_minutes,
        sample_seconds=sample_seconds,
        replicas=replicas,
        concurrency=concurrency,
        log=lambda message: click.echo(message, err=True),
    )
    click.echo(json.dumps(report) if as_json else format_report(report))
    if not report["met"]:
        sys.exit(1)


@eval_.command("answers")
@click.option(
    "--qa",
    "qa_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Questions with reference answers: SQuAD/XQuAD JSON, GSM8K JSONL, or JSONL of "
    "{question, answers, context?}.",
)
@click.option("--limit", type=click.IntRange(1), help="Only the first N questions.")
@click.option(
    "--router",
    "router_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A router artefact to evaluate as the `candidate` mode.",
)
@click.option(
    "--verifier",
    "verifier_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A small-tier verifier artefact for the `candidate` mode.",
)
@click.option(
    "--large-verifier",
    "large_verifier_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A large-tier verifier artefact for the `candidate` mode.",
)
@click.option(
    "--folds",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Also the `tuned` mode: each fold answered by artefacts tuned on the others (grouped folds).",
)
@click.option(
    "--target-quality", type=click.FloatRange(0, 1.5), help="For --folds: F1 as a share of always-large's."
)
@click.option(
    "--max-review-share", type=click.FloatRange(0, 1), help="For --folds: most questions sent to review."
)
@click.option(
    "--confidence",
    type=click.FloatRange(0, 1),
    help="For --folds: share of resampled question sets the thresholds must meet the target on "
    f"[default: {DEFAULT_TUNE_CONFIDENCE}].",
)
@click.option(
    "--record",
    type=click.Path(dir_okay=False, path_type=Path),
    help="SQLite file of recorded model answers [default: <data dir>/evals/answers.sqlite].",
)
@click.option(
    "--plot",
    "plot_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Draw quality against cost here.",
)
@click.option(
    "--outcomes",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write every question's outcome (JSON).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@_handle_errors
def eval_answers(
    *,
    qa_path: Path,
    limit: int | None,
    router_dir: Path | None,
    verifier_dir: Path | None,
    large_verifier_dir: Path | None,
    folds: int,
    target_quality: float | None,
    max_review_share: float | None,
    confidence: float | None,
    record: Path | None,
    plot_dir: Path | None,
    outcomes: Path | None,
    as_json: bool,
) -> None:
    """Real answers end to end: always-small, always-large, the product, and candidates, with savings."""
    from hybrid.evals.answers import Mode, evaluate_answers, format_report, plot

    candidate = {
        "HYBRID_ROUTER_PATH": router_dir,
        "HYBRID_VERIFIER_PATH": verifier_dir,
        "HYBRID_LARGE_VERIFIER_PATH": large_verifier_dir,
    }
    chosen = {k: str(v.resolve()) for k, v in candidate.items() if v is not None}
    modes = [Mode("candidate", environment=chosen)] if chosen else []
    tune_options = {
        "target_quality": target_quality,
        "max_review_share": max_review_share,
        "confidence": confidence,
    }
    report = evaluate_answers(
        qa_path,
        limit=limit,
        modes=modes,
        folds=folds,
        tune_options={k: v for k, v in tune_options.items() if v is not None},
        record=record,
        log=lambda message: click.echo(message, err=True),
    )
    every = report.pop("outcomes")
    if outcomes:
        outcomes.parent.mkdir(parents=True, exist_ok=True)
        outcomes.write_text(json.dumps(every))
    if plot_dir:
        click.echo(f"plot: {plot(report, plot_dir)}", err=True)
    click.echo(json.dumps(report) if as_json else format_report(report))


@eval_.command("judge")
@click.option(
    "--qa",
    "qa_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Questions with reference answers (the formats of `hybrid eval answers`).",
)
@click.option("--limit", type=click.IntRange(1), default=100, show_default=True, help="Pairs to judge.")
@click.option(
    "--record", type=click.Path(dir_okay=False, path_type=Path), help="Recorded model answers (SQLite)."
)
@click.option("--json", "as_json", is_flag=True)
@_handle_errors
def eval_judge(qa_path: Path, limit: int, record: Path | None, as_json: bool) -> None:
    """How far to trust the judge: its labels of both tiers' answers against the reference labels."""
    from hybrid.evals.answers import pairs_for_qa
    from hybrid.evals.judge import evaluate_judge, format_judge

    log = lambda message: click.echo(message, err=True)  # noqa: E731
    pairs = pairs_for_qa(qa_path, limit=limit, record=record, log=log)
    report = evaluate_judge(pairs, record=record, log=log)
    click.echo(json.dumps(report) if as_json else format_judge(report))


@eval_.command("replay")
@click.option("--since", help="Pairs from this date on (YYYY-MM-DD).")
@click.option(
    "--version", "versions", multiple=True, help="A version to replay (repeat; default: current and canary)."
)
@click.option("--json", "as_json", is_flag=True)
@_handle_errors
def eval_replay(since: str | None, versions: tuple[str, ...], as_json: bool) -> None:
    """What versions would have done with logged turns that have labelled shadow pairs, against
    always-small and always-large; no model runs (the judge's earlier verdicts are reused)."""
    from hybrid import registry
    from hybrid.settings import resolve_settings
    from hybrid.tuning.labels import labelled_pairs
    from hybrid.tuning.replay import format_replay, replay

    settings = resolve_settings()
    pairs, counts = labelled_pairs(settings, since=_since(since), judge="cached")
    if not pairs:
        raise click.ClickException(f"no labelled shadow pairs to replay ({counts})")
    if not versions:
        current = registry.state(settings, fresh=True)
        versions = (current.current, *([current.canary[0]] if current.canary else []))
    report = replay(settings, pairs, versions) | {"pairs_left_out": counts}
    click.echo(json.dumps(report, default=float) if as_json else format_replay(report))


@eval_.command("robustness")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@_handle_errors
def eval_robustness(as_json: bool) -> None:
    """Faults, injections and bad input against real models and a real local model server."""
    from hybrid.evals.robustness import evaluate_robustness, format_report

    report = evaluate_robustness(log=lambda message: click.echo(message, err=True))
    click.echo(json.dumps(report) if as_json else format_report(report))
    if report["failed"] or report["hung"] or report["lost"]:
        sys.exit(1)


@eval_.command("routing")
@click.option(
    "--routellm",
    "root",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="RouteLLM's routellm/evals folder (gsm8k/, mmlu/).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@click.option(
    "--plot",
    "plot_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write one PNG per benchmark (quality against large-model share) into this folder.",
)
@click.option(
    "--seeds", default=1, show_default=True, type=click.IntRange(1, 20), help="CV seeds; figures are means."
)
@click.option(
    "--max-items", type=click.IntRange(50), help="A seeded sample of N queries per data set (quick runs)."
)
@click.option(
    "--benchmark",
    "benchmarks",
    multiple=True,
    type=click.Choice(["mmlu_random_split", "mmlu_unseen_subjects", "gsm8k_query", "gsm8k_cascade"]),
    help="Run only this benchmark (repeatable; default: all four).",
)
@_handle_errors
def eval_routing(
    *,
    root: Path,
    as_json: bool,
    plot_dir: Path | None,
    seeds: int,
    max_items: int | None,
    benchmarks: tuple[str, ...],
) -> None:
    """APGR and CPT of the learned router on RouteLLM's MMLU and GSM8K labels, beside RouteLLM's."""
    from hybrid.evals.routing import BENCHMARKS, evaluate_routing, format_report
    from hybrid.settings import resolve_settings

    settings = resolve_settings()
    report = evaluate_routing(
        root,
        seeds=seeds,
        max_items=max_items,
        cache_dir=settings.data_dir / "embedding-cache",
        benchmarks=benchmarks or BENCHMARKS,
        router=settings.router_path,
        plot_dir=plot_dir,
        log=lambda message: click.echo(message, err=True),
    )
    click.echo(json.dumps(report) if as_json else format_report(report))


def _since(value: str | None) -> Any:
    from datetime import UTC, datetime

    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a date (YYYY-MM-DD or ISO 8601)", param_hint="--since"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _print_choice(report: Any) -> None:
    expected, plan = report.choice.expected, report.choice.plan

    def line(name: str, label: str, pct: bool = True) -> str:
        figure = expected[name]
        low, high = figure["ci95"]
        if pct:
            return f"  {label:<32}{figure['value']:>8.1%}   (95 % CI {low:.1%} - {high:.1%})"
        return f"  {label:<32}{figure['value']:>8.4f}   (95 % CI {low:.4f} - {high:.4f})"

    click.echo(
        f"thresholds: router need_large >= {plan.router:.3f}; small P(good) >= {plan.small:.3f}; "
        f"large P(good) >= {plan.large:.3f}" + ("" if report.choice.met else f"  [{report.choice.note}]")
    )
    click.echo(f"expected on {expected['questions']} questions (out-of-fold):")
    click.echo(line("quality", "quality (mean F1, review = 0)", pct=False))
    click.echo(line("quality_vs_large", "quality vs always-large"))
    click.echo(line("saving_vs_large", "saving vs always-large"))
    click.echo(line("large_share", "large share"))
    click.echo(line("review_share", "review share"))
    for tier, figures in report.verifiers.items():
        click.echo(
            f"  {tier}-tier verifier: AUROC {figures['auroc']:.3f}, ECE {figures['ece']:.3f} "
            f"({figures['good']} good of {figures['drafts']})"
        )


@cli.group("tune", invoke_without_command=True)
@click.option(
    "--qa",
    "qa_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Learn from a question-answer set: both tiers answer every question (recorded answers replay).",
)
@click.option("--limit", type=click.IntRange(1), help="With --qa: only the first N questions.")
@click.option(
    "--from-traffic", is_flag=True, help="Learn from shadow pairs of live traffic (HYBRID_SHADOW_RATE)."
)
@click.option("--since", help="With --from-traffic: pairs from this date on (YYYY-MM-DD).")
@click.option(
    "--target-quality",
    type=click.FloatRange(0, 1.5),
    help="Mean F1 as a share of always-large's [default: 0.95].",
)
@click.option(
    "--max-large-share", type=click.FloatRange(0, 1), help="At most this share calls the large model."
)
@click.option(
    "--max-review-share",
    type=click.FloatRange(0, 1),
    default=0.15,
    show_default=True,
    help="At most this share goes to review.",
)
@click.option(
    "--confidence",
    type=click.FloatRange(0, 1),
    default=DEFAULT_TUNE_CONFIDENCE,
    show_default=True,
    help="Share of resampled question sets the thresholds must meet the target on, not only this one.",
)
@click.option(
    "--folds",
    type=click.IntRange(2),
    default=5,
    show_default=True,
    help="Grouped folds for out-of-fold scores.",
)
@click.option(
    "--no-judge", is_flag=True, help="With --from-traffic: leave out pairs only the judge could label."
)
@click.option(
    "--record", type=click.Path(dir_okay=False, path_type=Path), help="Recorded model answers (SQLite)."
)
@click.option(
    "--promote", is_flag=True, help="Promote the new version at once (else: canary, compare, promote)."
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@_handle_errors
def tune(
    ctx: click.Context,
    *,
    qa_path: Path | None,
    limit: int | None,
    from_traffic: bool,
    since: str | None,
    target_quality: float | None,
    max_large_share: float | None,
    max_review_share: float,
    confidence: float,
    folds: int,
    no_judge: bool,
    record: Path | None,
    promote: bool,
    as_json: bool,
) -> None:
    """Learn the served models: train the router and a verifier per tier on pairs of their answers,
    calibrate every threshold together to one target, and store a new registry version.

    Without a source option, the subcommands manage versions: list, show, canary, compare,
    promote, rollback, export."""
    if ctx.invoked_subcommand is not None:
        return
    if (qa_path is None) == (not from_traffic):
        raise click.UsageError("give --qa FILE or --from-traffic (or a subcommand: hybrid tune --help)")
    if target_quality is not None and max_large_share is not None:
        raise click.UsageError("give at most one of --target-quality and --max-large-share")
    import tempfile

    from hybrid import registry
    from hybrid.settings import resolve_settings
    from hybrid.tuning.tune import tune as run_tune

    settings = resolve_settings()
    log = lambda message: click.echo(message, err=True)  # noqa: E731
    if qa_path is not None:
        from hybrid.evals.answers import pairs_for_qa

        pairs = pairs_for_qa(qa_path, limit=limit, record=record, log=log)
        description = f"{len(pairs)} questions of {qa_path.name}, labelled by their reference answers"
    else:
        from hybrid.tuning.labels import labelled_pairs

        pairs, counts = labelled_pairs(
            settings, since=_since(since), judge="off" if no_judge else "run", log=log
        )
        log(f"shadow pairs: {counts}")
        description = f"{len(pairs)} shadow pairs of live traffic" + (f" since {since}" if since else "")
    if not pairs:
        raise click.ClickException("no labelled pairs to learn from")
    with tempfile.TemporaryDirectory(prefix="hybrid-tune-") as folder:
        report = run_tune(
            pairs,
            Path(folder),
            models={"small": settings.small_spec, "large": settings.large_spec},
            description=description,
            target_quality=target_quality,
            max_large_share=max_large_share,
            max_review_share=max_review_share,
            confidence=confidence,
            folds=folds,
            cache_dir=settings.data_dir / "embedding-cache",
            actor=_reviewer(),
            log=log,
        )
        version = registry.add_version(settings, Path(folder), actor=_reviewer())
    if promote:
        registry.promote(settings, version, actor=_reviewer(), reason="hybrid tune --promote")
    if as_json:
        click.echo(
            json.dumps(
                {
                    "version": version,
                    "promoted": promote,
                    "pairs": len(pairs),
                    **report.choice.as_dict(),
                    "verifiers": report.verifiers,
                    "router": report.router,
                },
                default=float,
            )
        )
        return
    click.echo(f"version {version}: {description} ({report.seconds:.0f} s)")
    _print_choice(report)
    if promote:
        click.echo(f"promoted {version}")
    else:
        click.echo(
            f"next: hybrid tune canary {version} --share 0.1; hybrid tune compare; "
            f"hybrid tune promote {version}"
        )


@tune.command("list")
@click.option("--json", "as_json", is_flag=True)
@_handle_errors
def tune_list(as_json: bool) -> None:
    """Every version: what it was trained on, what it expects, which serves."""
    from hybrid import registry
    from hybrid.settings import resolve_settings

    settings = resolve_settings()
    current = registry.state(settings, fresh=True)
    rows = [
        {
            "version": registry.SHIPPED,
            "created_at": None,
            "created_by": "package",
            "manifest": registry.manifest_of(settings, registry.SHIPPED),
        },
        *registry.versions(settings),
    ]
    for row in rows:
        row["serving"] = (
            "current"
            if row["version"] == current.current
            else f"canary {current.canary[1]:.0%}"
            if current.canary and current.canary[0] == row["version"]
            else ""
        )
    if as_json:
        click.echo(json.dumps(rows, default=str))
        return
    for row in rows:
        manifest = row["manifest"]
        expected = (manifest.get("plan") or {}).get("expected") or {}
        figures = ""
        if expected:
            figures = (
                f"quality {expected['quality_vs_large']['value']:.0%} of large, saving "
                f"{expected['saving_vs_large']['value']:.0%}, review {expected['review_share']['value']:.0%}"
            )
        trained = manifest.get("trained_on") or {}
        trained = trained.get("description", trained) if isinstance(trained, dict) else trained
        click.echo(
            f"{row['version']:<10}{row['serving']:<14}{str(row['created_at'] or '')[:19]:<21}{figures}"
        )
        click.echo(f"{'':<10}{trained}")


@tune.command("show")
@click.argument("version")
@_handle_errors
def tune_show(version: str) -> None:
    """A version's manifest: training data, labels, models, thresholds, expected figures."""
    from hybrid import registry
    from hybrid.settings import resolve_settings

    click.echo(json.dumps(registry.manifest_of(resolve_settings(), version), indent=2, default=str))


@tune.command("canary")
@click.argument("version", required=False)
@click.option("--share", type=click.FloatRange(0, 1, min_open=True), default=0.1, show_default=True)
@click.option("--stop", is_flag=True, help="End the running canary.")
@_handle_errors
def tune_canary(version: str | None, share: float, stop: bool) -> None:
    """Serve VERSION to a share of conversations (the current version serves the rest)."""
    from hybrid import registry
    from hybrid.settings import resolve_settings

    settings = resolve_settings()
    if stop:
        registry.stop_canary(settings, actor=_reviewer())
        click.echo("canary stopped")
        return
    if version is None:
        raise click.UsageError("give a VERSION (or --stop)")
    registry.start_canary(settings, version, share, actor=_reviewer())
    click.echo(f"canary: {version} serves {share:.0%} of conversations")


@tune.command("promote")
@click.argument("version")
@click.option("--reason", help="Why (kept in the history).")
@_handle_errors
def tune_promote(version: str, reason: str | None) -> None:
    """Serve VERSION to every request (ends a canary)."""
    from hybrid import registry
    from hybrid.settings import resolve_settings

    registry.promote(resolve_settings(), version, actor=_reviewer(), reason=reason)
    click.echo(f"promoted {version}")


@tune.command("rollback")
@click.option("--reason", help="Why (kept in the history).")
@_handle_errors
def tune_rollback(reason: str | None) -> None:
    """Serve again the version that served before the latest promotion."""
    from hybrid import registry
    from hybrid.settings import resolve_settings

    now = registry.rollback(resolve_settings(), actor=_reviewer(), reason=reason)
    click.echo(f"rolled back: {now} serves")


@tune.command("compare")
@click.argument("versions", nargs=-1)
@click.option("--since", help="Turns from this date on (YYYY-MM-DD).")
@click.option("--json", "as_json", is_flag=True)
@_handle_errors
def tune_compare(versions: tuple[str, ...], since: str | None, as_json: bool) -> None:
    """Live figures per version (quality, large share, review share, cost per answered question),
    and the difference between two (default: the current version and the canary) with its 95 %
    interval and whether it is significant."""
    from hybrid import api
    from hybrid.versions import format_comparison

    report = api.compare_versions(versions, since=_since(since))
    click.echo(json.dumps(report, default=str) if as_json else format_comparison(report))


@tune.command("export")
@click.argument("version")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@_handle_errors
def tune_export(version: str, out: Path) -> None:
    """Write a version's artefacts to a folder (router/, verifier-small/, verifier-large/, manifest.json)."""
    import shutil

    from hybrid import registry
    from hybrid.settings import resolve_settings

    folder = registry.version_folder(resolve_settings(), version)
    shutil.copytree(folder, out, dirs_exist_ok=True)
    click.echo(f"{version} written to {out}")


@cli.group()
def router() -> None:
    """Train and calibrate the learned router."""


@router.command("train")
@click.option(
    "--data",
    "data_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='JSONL: {"query", "label": 0|1} or {"query", "small_correct", "large_correct"} '
    '(+ "context", "weight", "group").',
)
@click.option(
    "--routellm",
    "root",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Train on RouteLLM's MMLU and GSM8K labels (Mixtral small, GPT-4 large).",
)
@click.option("--from-feedback", is_flag=True, help="Add the labelled examples of the feedback table.")
@click.option(
    "--feedback-weight", default=3.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
    help="Weight of each feedback example (the others weigh 1 unless the file says).",
)  # fmt: skip
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write (default: a new versioned folder under the data directory).",
)
@click.option(
    "--cv-folds", default=5, show_default=True, type=click.IntRange(0, 20),
    help="Folds for out-of-fold scores (metrics, calibration); 0 skips them.",
)  # fmt: skip
@click.option(
    "--target-quality", type=click.FloatRange(0, 1.5),
    help="Recalibrate for this quality (fraction of the large model's) on the out-of-fold scores.",
)  # fmt: skip
@click.option(
    "--max-large-share", type=click.FloatRange(0, 1),
    help="Recalibrate for at most this share of large-model calls (default: the current router's rule).",
)  # fmt: skip
@_handle_errors
def router_train(
    *,
    data_file: Path | None,
    root: Path | None,
    from_feedback: bool,
    feedback_weight: float,
    out: Path | None,
    cv_folds: int,
    target_quality: float | None,
    max_large_share: float | None,
) -> None:
    """Train a router from labelled queries and write it as a versioned artifact, calibrated."""
    from hybrid.routing.examples import feedback_examples, read_jsonl, routellm_examples
    from hybrid.routing.pipeline import default_output_dir, train_router
    from hybrid.settings import resolve_settings

    if data_file is not None and root is not None:
        raise click.UsageError("give one of --data FILE.jsonl and --routellm DIR, not both")
    if data_file is None and root is None and not from_feedback:
        raise click.UsageError("give --data FILE.jsonl, --routellm DIR or --from-feedback")
    if target_quality is not None and max_large_share is not None:
        raise click.UsageError("give at most one of --target-quality and --max-large-share")
    settings = resolve_settings()
    examples: list = []
    description = "no base data"
    try:
        if root is not None:
            examples = routellm_examples(root)
            description = (
                f"RouteLLM MMLU + GSM8K labels ({len(examples)} queries after decontamination; "
                "small: Mixtral-8x7B-Instruct, large: GPT-4-1106)"
            )
        elif data_file is not None:
            examples = read_jsonl(data_file)
            description = f"{data_file.name} ({len(examples)} examples)"
    except (OSError, ValueError) as exc:
        _fail(str(exc))
    if from_feedback:
        extra = feedback_examples(settings, feedback_weight)
        examples = [*examples, *extra]
        description += f" + {len(extra)} feedback examples (weight {feedback_weight:g})"
    target = out or default_output_dir(settings)
    try:
        report = train_router(
            examples,
            target,
            description=description,
            cache_dir=settings.data_dir / "embedding-cache",
            cv_folds=cv_folds,
            threads=settings.embed_threads,
            log=lambda message: click.echo(message, err=True),
        )
    except ValueError as exc:
        _fail(str(exc))
    overall = report.metrics.get("out_of_fold", {}).get("all")
    summary = f"; out-of-fold APGR {overall['apgr']:.3f}, CPT50 {overall['cpt50']:.1%}" if overall else ""
    click.echo(
        f"router written to {report.path} ({report.examples} examples, level 2 {report.level2}{summary})"
    )
    rule = _calibration_rule(target_quality, max_large_share, settings.router_path)
    if cv_folds < 2:
        click.echo("not calibrated (no out-of-fold scores with --cv-folds 0): run `hybrid router calibrate`")
    elif rule is not None:
        _calibrate_and_report(report.path, None, *rule, settings=settings)


def _calibration_rule(
    target_quality: float | None, max_large_share: float | None, current: Path
) -> tuple[float | None, float | None] | None:
    """The rule to calibrate a new router by: the one given, else the current router's own."""
    if target_quality is not None or max_large_share is not None:
        return target_quality, max_large_share
    try:
        rule = str(json.loads((current / "router.json").read_text())["threshold"]["rule"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    name, _, value = rule.partition("=")
    if name == "target_quality":
        return float(value), None
    if name == "max_large_share":
        return None, float(value)
    return None


@router.command("calibrate")
@click.option(
    "--data",
    "data_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSONL with small_correct and large_correct (default: the router's own out-of-fold scores).",
)
@click.option(
    "--target-quality", type=click.FloatRange(0, 1.5), help="Quality as a fraction of the large model's."
)
@click.option(
    "--max-large-share", type=click.FloatRange(0, 1), help="Largest share of queries sent to the large model."
)
@click.option(
    "--router",
    "router_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Router folder (default: the configured router_path).",
)
@_handle_errors
def router_calibrate(
    data_file: Path | None,
    target_quality: float | None,
    max_large_share: float | None,
    router_dir: Path | None,
) -> None:
    """Choose the router's threshold for a target quality or a maximum large-model share, and save it."""
    from hybrid.settings import resolve_settings

    if (target_quality is None) == (max_large_share is None):
        raise click.UsageError("give exactly one of --target-quality and --max-large-share")
    settings = resolve_settings()
    _calibrate_and_report(
        router_dir or settings.router_path, data_file, target_quality, max_large_share, settings=settings
    )


def _calibrate_and_report(
    folder: Path,
    data_file: Path | None,
    target_quality: float | None,
    max_large_share: float | None,
    *,
    settings: Settings,
) -> None:
    """Calibrate the router in `folder` and print the threshold, quality and share with their CIs."""
    from hybrid.routing.examples import read_jsonl
    from hybrid.routing.pipeline import calibrate_router

    try:
        result = calibrate_router(
            folder,
            read_jsonl(data_file) if data_file else None,
            target_quality=target_quality,
            max_large_share=max_large_share,
            cache_dir=settings.data_dir / "embedding-cache",
            source=str(data_file) if data_file else "the router's out-of-fold scores",
        )
    except (OSError, ValueError) as exc:
        _fail(str(exc))
    q_low, q_high = result.quality_ci
    s_low, s_high = result.large_share_ci
    click.echo(f"threshold {result.threshold:.4f} ({result.rule}) saved to {folder / 'router.json'}")
    click.echo(
        f"expected quality {result.quality:.1%} (95% CI {q_low:.1%}-{q_high:.1%}), "
        f"{result.quality / result.large_accuracy:.1%} of the large model's {result.large_accuracy:.1%} "
        f"(small alone {result.small_accuracy:.1%})"
    )
    click.echo(
        f"large-model share {result.large_share:.1%} (95% CI {s_low:.1%}-{s_high:.1%}) "
        f"on {result.examples} examples"
    )


@eval_.command("verifier")
@click.option(
    "--xquad",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="XQuAD (SQuAD-format) JSON, e.g. xquad.en.json from deepmind/xquad.",
)
@click.option("--max-items", type=click.IntRange(10), help="A seeded sample of N questions (quick runs).")
@click.option("--folds", default=5, show_default=True, type=click.IntRange(2, 20), help="CV folds.")
@click.option(
    "--target-precision", type=click.FloatRange(0, 1),
    help="Rule for the per-fold threshold [default: 0.9, unless --max-reject-share].",
)  # fmt: skip
@click.option("--max-reject-share", type=click.FloatRange(0, 1), help="Rule for the per-fold threshold.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@_handle_errors
def eval_verifier(
    *,
    xquad: Path,
    max_items: int | None,
    folds: int,
    target_precision: float | None,
    max_reject_share: float | None,
    as_json: bool,
) -> None:
    """AUROC, Brier and ECE of the heuristic and the calibrated verifier on the small model's answers."""
    from hybrid.evals.drafts import build_xquad_rows
    from hybrid.settings import resolve_settings
    from hybrid.verification.pipeline import (
        embedding_cache,
        evaluate_verifier,
        format_report,
    )

    if target_precision is not None and max_reject_share is not None:
        raise click.UsageError("give at most one of --target-precision and --max-reject-share")
    if max_reject_share is None and target_precision is None:
        target_precision = 0.9
    settings = resolve_settings()
    log = lambda message: click.echo(message, err=True)  # noqa: E731
    try:
        rows = build_xquad_rows(xquad, settings, max_items=max_items, log=log)
        report = evaluate_verifier(
            rows,
            cache_dir=embedding_cache(settings),
            folds=folds,
            target_precision=target_precision,
            max_reject_share=max_reject_share,
            log=log,
        )
    except (OSError, ValueError, KeyError) as exc:
        _fail(str(exc))
    click.echo(json.dumps(report) if as_json else format_report(report))


@cli.group()
def verifier() -> None:
    """Build training data for, train and calibrate the learned verifier."""


@verifier.command("build-data")
@click.option(
    "--xquad",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="XQuAD (SQuAD-format) JSON, read in place.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="JSONL to write [default: <data dir>/verifier/xquad-smollm2.jsonl].",
)
@click.option("--per-paragraph", default=3, show_default=True, type=click.IntRange(1), help="Questions each.")
@click.option(
    "--wrong-share", default=0.25, show_default=True, type=click.FloatRange(0, 1),
    help="Share of questions shown another article's paragraph.",
)  # fmt: skip
@click.option("--max-tokens", default=48, show_default=True, type=click.IntRange(1), help="Answer length.")
@click.option("--max-items", type=click.IntRange(1), help="A seeded sample of N questions.")
@_handle_errors
def verifier_build_data(
    *,
    xquad: Path,
    out: Path | None,
    per_paragraph: int,
    wrong_share: float,
    max_tokens: int,
    max_items: int | None,
) -> None:
    """Answer XQuAD questions with the real small model through the graph's prompt; label the answers."""
    from hybrid.evals.drafts import build_xquad_rows
    from hybrid.settings import resolve_settings
    from hybrid.verification.data import write_jsonl

    settings = resolve_settings()
    rows = build_xquad_rows(
        xquad,
        settings,
        per_paragraph=per_paragraph,
        wrong_share=wrong_share,
        max_tokens=max_tokens,
        max_items=max_items,
        log=lambda message: click.echo(message, err=True),
    )
    target = write_jsonl(rows, out or settings.data_dir / "verifier" / "xquad-smollm2.jsonl")
    good = sum(r.good for r in rows)
    click.echo(f"{len(rows)} labelled drafts ({good} good, {good / len(rows):.1%}) written to {target}")


@verifier.command("train")
@click.option(
    "--data",
    "data_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='JSONL: {"question", "answer", "good": 0|1} (+ "passages", "finish_reason", "model_meta", "group").',
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write (default: a new versioned folder under the data directory).",
)
@click.option(
    "--cv-folds", default=5, show_default=True, type=click.IntRange(0, 20),
    help="Grouped folds for out-of-fold metrics; 0 skips them.",
)  # fmt: skip
@_handle_errors
def verifier_train(data_file: Path, out: Path | None, cv_folds: int) -> None:
    """Fit the calibrated verifier on labelled drafts and write verifier.json."""
    from hybrid.settings import resolve_settings
    from hybrid.verification.data import read_jsonl
    from hybrid.verification.pipeline import default_output_dir, embedding_cache, train_verifier

    settings = resolve_settings()
    try:
        rows = read_jsonl(data_file)
        report = train_verifier(
            rows,
            out or default_output_dir(settings),
            description=f"{data_file.name} ({len(rows)} drafts)",
            cache_dir=embedding_cache(settings),
            cv_folds=cv_folds,
            log=lambda message: click.echo(message, err=True),
        )
    except (OSError, ValueError) as exc:
        _fail(str(exc))
    oof = report.metrics.get("out_of_fold")
    summary = (
        f"; out of fold AUROC {oof['calibrated']['auroc']:.3f} (heuristic {oof['heuristic']['auroc']:.3f}), "
        f"ECE {oof['calibrated']['ece']:.3f} (heuristic {oof['heuristic']['ece']:.3f})"
        if oof
        else ""
    )
    click.echo(f"verifier written to {report.path} ({report.rows} drafts{summary})")


@verifier.command("calibrate")
@click.option(
    "--data",
    "data_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Labelled-draft JSONL (scored out of fold unless --held-out).",
)
@click.option("--target-precision", type=click.FloatRange(0, 1), help="Share accepted that is good.")
@click.option("--max-reject-share", type=click.FloatRange(0, 1), help="Largest share of drafts rejected.")
@click.option(
    "--verifier",
    "verifier_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Verifier folder (default: the configured verifier_path).",
)
@click.option("--held-out", is_flag=True, help="The rows were not used to train it: score them as is.")
@_handle_errors
def verifier_calibrate(
    data_file: Path,
    target_precision: float | None,
    max_reject_share: float | None,
    verifier_dir: Path | None,
    held_out: bool,
) -> None:
    """Choose the verifier's acceptance threshold for a target precision or a maximum reject share."""
    from hybrid.settings import resolve_settings
    from hybrid.verification.data import read_jsonl
    from hybrid.verification.pipeline import calibrate_verifier, embedding_cache

    if (target_precision is None) == (max_reject_share is None):
        raise click.UsageError("give exactly one of --target-precision and --max-reject-share")
    settings = resolve_settings()
    folder = verifier_dir or settings.verifier_path
    try:
        result = calibrate_verifier(
            folder,
            read_jsonl(data_file),
            target_precision=target_precision,
            max_reject_share=max_reject_share,
            cache_dir=embedding_cache(settings),
            source=data_file.name,
            held_out=held_out,
        )
    except (OSError, ValueError) as exc:
        _fail(str(exc))
    a_low, a_high = result.accept_share_ci
    r_low, r_high = result.recall_ci
    click.echo(f"threshold {result.threshold:.4f} ({result.rule}) saved to {folder / 'verifier.json'}")
    if result.precision is None:
        click.secho(
            "no threshold reaches that precision on this data: the threshold is above every score, "
            "so the small tier's drafts with sources will all be escalated",
            fg="yellow",
        )
    else:
        p_low, p_high = result.precision_ci
        click.echo(
            f"expected precision {result.precision:.1%} (95% CI {p_low:.1%}-{p_high:.1%}), "
            f"accept share {result.accept_share:.1%} (95% CI {a_low:.1%}-{a_high:.1%}), "
            f"recall {result.recall:.1%} (95% CI {r_low:.1%}-{r_high:.1%})"
        )
    click.echo(f"on {result.examples} drafts, {result.good_share:.1%} of them good")


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("streamlit_args", nargs=-1, type=click.UNPROCESSED)
@_handle_errors
def ui(streamlit_args: tuple[str, ...]) -> None:
    """Start the web app: chat, reviews, knowledge, dashboard (extra arguments go to `streamlit run`).

    It listens on 127.0.0.1 unless given `--server.address` (0.0.0.0 for every interface)."""
    import importlib.util

    from hybrid import api

    api.caller()  # an invalid policy file stops here, with every problem and its line

    app = importlib.util.find_spec("ui.app").origin  # type: ignore[union-attr]
    env = {
        # Defaults only: any STREAMLIT_* already set wins.
        "STREAMLIT_SERVER_HEADLESS": "true",
        "STREAMLIT_SERVER_ADDRESS": "127.0.0.1",  # like `hybrid serve`: loopback unless asked
        **os.environ,  # telemetry already off (see `cli`), for the child as well
    }
    command = [sys.executable, "-m", "ui.launch", "run", str(app), *streamlit_args]
    os.execvpe(command[0], command, env)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@_handle_errors
def serve(host: str, port: int) -> None:
    """Serve an OpenAI-compatible API (/v1/chat/completions, model "hybrid"), /health, /ready and /metrics."""
    from hybrid.server import serve as run

    run(host, port)


@cli.group()
def cluster() -> None:
    """A local cluster: HAProxy, replicas, PostgreSQL, Chroma, model servers, Prometheus.

    State, logs and data live under <data dir>/cluster; docs/cluster.md describes the layout."""


@cluster.command("up")
@click.option(
    "--replicas", default=2, show_default=True, type=click.IntRange(1, 16), help="`hybrid serve` processes."
)
@click.option(
    "--port",
    default=8000,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="HAProxy's port (0: any free).",
)
@click.option(
    "--prometheus-port",
    default=9090,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Prometheus' port.",
)
@click.option("--health-path", default="/health", show_default=True, help="What HAProxy asks each replica.")
@click.option(
    "--small-model", default="smollm2-135m-instruct", show_default=True, help="Packaged model or GGUF path."
)
@click.option("--large-model", default="gemma-3-270m", show_default=True, help="Packaged model or GGUF path.")
@click.option(
    "--ingest",
    "paths",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="Ingest into the Chroma server once up.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the status as one JSON object.")
@_handle_errors
def cluster_up(
    *,
    replicas: int,
    port: int,
    prometheus_port: int,
    health_path: str,
    small_model: str,
    large_model: str,
    paths: tuple[Path, ...],
    as_json: bool,
) -> None:
    """Start the cluster and wait until every part is healthy; it runs on after this returns."""
    from hybrid import cluster as local

    config = local.ClusterConfig(
        replicas=replicas, port=port, prometheus_port=prometheus_port, health_path=health_path,
        small_model=small_model, large_model=large_model,
    )  # fmt: skip
    plan = local.up(config, ingest=paths, log=lambda message: click.echo(message, err=True))
    report = local.status(plan.folder)
    click.echo(json.dumps(report) if as_json else local.format_status(report))


@cluster.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as one JSON object.")
@_handle_errors
def cluster_status(as_json: bool) -> None:
    """Each part, its pid, port and health now; exits with 1 unless all are healthy."""
    from hybrid import cluster as local

    report = local.status()
    click.echo(json.dumps(report) if as_json else local.format_status(report))
    if not report["healthy"]:
        sys.exit(1)


@cluster.command("down")
@click.option("--purge", is_flag=True, help="Also delete the cluster's data (database, knowledge, logs).")
@_handle_errors
def cluster_down(purge: bool) -> None:
    """Stop every part cleanly (the database last)."""
    from hybrid import cluster as local

    click.echo(local.down(purge=purge, log=lambda message: click.echo(message, err=True)))


@cli.command()
@click.option("--port", default=DEV_PORT, show_default=True, type=int)
@click.option("--host", default="127.0.0.1", show_default=True)
@_handle_errors
def dev(port: int, host: str) -> None:
    """Serve the graph with `langgraph dev` (offline; state kept under the data directory)."""
    from hybrid import api
    from hybrid.settings import resolve_settings

    api.caller()  # an invalid policy file stops here, with every problem and its line
    workdir = resolve_settings().data_dir / "langgraph"
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "langgraph.json"
    config.write_text(
        json.dumps({"dependencies": ["."], "graphs": LANGGRAPH_GRAPHS, "auth": LANGGRAPH_AUTH}, indent=2)
    )
    env = dict(os.environ)  # telemetry already off (see `cli`): langgraph-cli's analytics too
    command = [
        sys.executable, "-m", "langgraph_cli", "dev",
        "--config", str(config), "--host", host, "--port", str(port), "--no-browser", "--no-reload",
    ]  # fmt: skip
    os.chdir(workdir)  # langgraph dev keeps its state in ./.langgraph_api
    os.execvpe(command[0], command, env)


def main() -> None:
    """Console-script entry point."""
    from hybrid.privacy import disable_telemetry

    disable_telemetry()
    cli()


if __name__ == "__main__":
    main()
