"""`hybrid eval overhead`: its arithmetic on made-up rounds, and the real command against the stub
(the stub as the only upstream, and a second stub standing in for another proxy)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from hybrid.evals.overhead import Block, Target, format_table, openai_base, round_order, summarise_level
from tests.servers import free_port, serving

REPO = Path(__file__).resolve().parent.parent

TARGETS = [
    Target("stub", "stub", "http://s/v1", "stub", pids=(1,)),
    Target("ours", "ours", "http://o/v1", "hybrid", "k", pids=(2,)),
    Target("against-1", "other", "http://a/v1", "stub"),
]


def _blocks() -> list[Block]:
    # Two rounds; the stub's p50 is 1 ms then 3 ms; ours sits 10 then 14 ms above it, the other 5 then 7.
    return [
        Block("stub", 0, [1.0, 1.0, 2.0], wall_s=0.01, cpu_s=0.003, upstream_calls=3),
        Block("ours", 0, [11.0, 11.0, 40.0], wall_s=0.1, cpu_s=0.03, upstream_calls=3,
              self_overheads_ms=[8.0, 9.0, 10.0], queued_ms=[0.0, 0.0, 4.0],
              outside_ms=[1.0, 2.0, 3.0], models_ms=[0.5, 0.5, 0.7],
              outcomes=Counter({"small/answered": 3})),
        Block("against-1", 0, [6.0, 6.0, 6.0], wall_s=0.05, upstream_calls=3),
        Block("stub", 1, [3.0, 3.0, 3.0], wall_s=0.02, cpu_s=0.003, upstream_calls=3),
        Block("ours", 1, [17.0, 17.0, 18.0], wall_s=0.3, cpu_s=0.03, upstream_calls=4,
              self_overheads_ms=[11.0, 12.0, 13.0], queued_ms=[0.0, 0.0, 0.0],
              outcomes=Counter({"small/answered": 2, "large/answered": 1})),
        Block("against-1", 1, [10.0, 10.0], ["HTTP 500: boom"], wall_s=0.05, upstream_calls=2),
    ]  # fmt: skip


@pytest.mark.unit
def test_overhead_is_the_median_over_rounds_of_p50_minus_the_stubs_p50_in_the_same_round() -> None:
    level = summarise_level(8, _blocks(), TARGETS)

    ours, other, stub = (level["targets"][name] for name in ("ours", "against-1", "stub"))
    assert ours["overhead_ms_rounds"] == [10.0, 14.0]
    assert ours["overhead_ms"] == 12.0
    assert other["overhead_ms_rounds"] == [5.0, 7.0]
    assert other["overhead_ms"] == 6.0
    assert stub["overhead_ms"] == 0.0
    assert ours["latency_ms"] == {"p50": 17.0, "p95": 34.5}  # over all six answers
    assert ours["rps"] == 20.0  # median of 30 and 10 per second
    assert ours["cpu_ms_per_request"] == 10.0  # 60 ms of CPU over 6 answers
    assert ours["upstream_calls_per_request"] == round(7 / 6, 3)
    assert ours["self_reported_overhead_ms_p50"] == 10.5
    assert ours["self_reported_queued_ms_p50"] == 0.0  # two of the three reported waits are 0
    assert ours["outside_clock_ms_p50"] == 2.0
    assert ours["self_reported_models_ms_p50"] == 0.5
    assert ours["outcomes"] == {"large/answered": 1, "small/answered": 5}
    assert (other["requests"], other["errors"], other["error_samples"]) == (6, 1, ["HTTP 500: boom"])
    assert other["cpu_ms_per_request"] is None  # its process was not found
    assert other["self_reported_overhead_ms_p50"] is None
    assert other["outside_clock_ms_p50"] is None
    assert level["ratios"] == [
        {
            "target": "ours",
            "against": "against-1",
            "overhead": 2.0,
            "rps": 0.4,
            "cpu_per_request": None,
            # round by round: 10 / 5 and 14 / 7 ms; 30 / 60 and 10 / 40 requests a second
            "overhead_rounds": [2.0, 2.0],
            "rps_rounds": [0.5, 0.25],
        }
    ]


@pytest.mark.unit
def test_every_ours_target_is_compared_with_every_other_proxy_and_a_zero_overhead_gives_no_ratio() -> None:
    targets = [*TARGETS, Target("ours-heuristic", "ours", "http://h/v1", "hybrid", "k", pids=(3,))]
    blocks = [
        *_blocks(),
        Block("ours-heuristic", 0, [1.0], wall_s=0.01, cpu_s=0.001, upstream_calls=1),
        Block("ours-heuristic", 1, [3.0], wall_s=0.01, cpu_s=0.001, upstream_calls=1),
    ]

    ratios = summarise_level(1, blocks, targets)["ratios"]

    pairs = [(r["target"], r["against"]) for r in ratios]
    assert pairs == [
        ("ours", "against-1"), ("ours", "ours-heuristic"),
        ("ours-heuristic", "ours"), ("ours-heuristic", "against-1"),
    ]  # fmt: skip
    heuristic_vs_ours = ratios[2]
    assert heuristic_vs_ours["overhead"] == 0.0  # 0 ms of overhead over 12
    assert ratios[1]["overhead"] is None  # over 0 ms: no ratio
    assert heuristic_vs_ours["cpu_per_request"] == 0.1


@pytest.mark.unit
def test_rounds_change_the_order_and_urls_get_their_v1() -> None:
    assert [t.name for t in round_order(TARGETS, 0)] == ["stub", "ours", "against-1"]
    assert [t.name for t in round_order(TARGETS, 1)] == ["against-1", "ours", "stub"]  # the mirror
    assert [t.name for t in round_order(TARGETS, 6)] == ["stub", "ours", "against-1"]  # six rows for three
    assert openai_base("http://127.0.0.1:4000") == "http://127.0.0.1:4000/v1"
    assert openai_base("http://127.0.0.1:4000/") == "http://127.0.0.1:4000/v1"
    assert openai_base("http://127.0.0.1:4000/proxy/v1/") == "http://127.0.0.1:4000/proxy/v1"


@pytest.mark.unit
@pytest.mark.parametrize("count", [2, 3, 4, 5, 6])
def test_over_a_full_cycle_each_target_follows_every_other_equally_often(count: int) -> None:
    # A block runs in what the one before it leaves: no target may always follow the same other.
    targets = [Target(f"t{i}", "other", f"http://{i}/v1", "m") for i in range(count)]
    rows = count if count % 2 == 0 else 2 * count
    orders = [[t.name for t in round_order(targets, r)] for r in range(rows)]
    assert all(sorted(order) == sorted(t.name for t in targets) for order in orders)
    follows = Counter((a, b) for order in orders for a, b in itertools.pairwise(order))
    assert len(follows) == count * (count - 1)
    assert len(set(follows.values())) == 1
    assert len(set(Counter(order[0] for order in orders).values())) == 1


@pytest.mark.unit
def test_by_default_the_rounds_make_a_full_cycle_of_the_design() -> None:
    from hybrid.evals.overhead import balanced_rounds

    assert [balanced_rounds(n) for n in (2, 3, 4, 5)] == [3, 6, 4, 10]


@pytest.mark.unit
def test_the_table_says_n_a_for_what_was_not_measured() -> None:
    report = {
        "settings": {"concurrency": [8], "rounds": 2, "requests": 3, "warmup": 0},
        "targets": [{"name": t.name, "kind": t.kind, "url": t.base_url, "model": t.model} for t in TARGETS],
        "levels": [summarise_level(8, _blocks(), TARGETS)],
    }

    table = format_table(report)

    assert "concurrency 8" in table
    assert "CPU/req n/ax" not in table
    # each ratio with its spread over the rounds, where there are two or more
    assert (
        "ours / against-1: overhead 2.00x (2.00-2.00x over 2 rounds), "
        "req/s 0.40x (0.25-0.50x over 2 rounds), CPU/req n/a" in table
    )
    assert "against-1 error: HTTP 500: boom" in table
    assert "ours waited for a run slot: p50 0.00 ms" in table
    assert "ours outside its own clock: p50 2.00 ms; model servers 0.50 ms by its account, the stub" in table


@pytest.mark.unit
def test_another_proxys_own_account_of_its_overhead_is_read_beside_ours() -> None:
    # LiteLLM's proxy states its overhead on each response; a value that is not a number is skipped.
    import asyncio

    import httpx

    from hybrid.evals.overhead import _block

    stated = iter(["4.5", "not a number", "5.5"])

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json={"choices": [{"message": {"role": "assistant", "content": "Paris"}}]},
            headers={"x-litellm-overhead-duration-ms": next(stated)},
        )

    async def one_block() -> Block:
        async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
            return await _block(client, TARGETS[2], 1, 3, itertools.count(), round_=0)

    block = asyncio.run(one_block())
    assert block.self_overheads_ms == [4.5, 5.5]
    stub = Block("stub", 0, [1.0, 1.0, 1.0], wall_s=0.01)
    level = summarise_level(1, [stub, block], [TARGETS[0], TARGETS[2]])
    assert level["targets"]["against-1"]["self_reported_overhead_ms_p50"] == 5.0
    report = {
        "settings": {"concurrency": [1], "rounds": 1, "requests": 3, "warmup": 0},
        "targets": [{"name": t.name, "kind": t.kind, "url": t.base_url, "model": t.model} for t in TARGETS],
        "levels": [level],
    }
    (row,) = [line for line in format_table(report).splitlines() if line.startswith("against-1 ")]
    assert "5.00" in row


@pytest.mark.unit
def test_each_own_account_is_set_against_the_clients_and_the_passthrough_is_no_rival() -> None:
    hop = Target("passthrough", "passthrough", "http://p/v1", "stub", pids=(4,))
    blocks = [
        *_blocks(),
        Block("passthrough", 0, [2.0, 2.0, 2.0], wall_s=0.01, self_overheads_ms=[0.5, 0.5, 0.6]),
        Block("passthrough", 1, [4.5, 4.5, 4.5], wall_s=0.01, self_overheads_ms=[0.6, 0.7, 0.7]),
    ]  # fmt: skip

    level = summarise_level(1, blocks, [*TARGETS, hop])

    figures = level["targets"]
    assert figures["passthrough"]["overhead_ms"] == 1.25  # 1 and 1.5 ms over the stub
    assert figures["passthrough"]["self_reported_gap_ms"] == 0.65  # 1.25 against its own 0.6
    # 12 against its own 11.5: each request's overhead and wait for a run slot (4 ms in one) added
    assert figures["ours"]["self_reported_gap_ms"] == 0.5
    assert figures["against-1"]["self_reported_gap_ms"] is None  # it states none
    assert figures["stub"]["self_reported_gap_ms"] is None
    # A yardstick, not a rival: no ratio is taken against it.
    assert [(r["target"], r["against"]) for r in level["ratios"]] == [("ours", "against-1")]
    targets = [{"name": t.name, "kind": t.kind, "url": t.base_url, "model": t.model} for t in [*TARGETS, hop]]
    report = {
        "settings": {"concurrency": [1], "rounds": 2, "requests": 3, "warmup": 0},
        "targets": targets,
        "levels": [level],
    }
    assert "own account under the client's overhead: ours 0.50 ms, passthrough 0.65 ms" in format_table(
        report
    )


@pytest.mark.unit
def test_a_held_passthrough_is_measured_at_concurrency_1_and_sets_what_ours_misses_beyond_it() -> None:
    from hybrid.evals.overhead import _against_held, target_count

    held = Target("passthrough-held", "passthrough", "http://h/v1", "stub", pids=(5,), holds_as="ours")
    assert held.measured_at(1)
    assert not held.measured_at(8)
    assert TARGETS[1].measured_at(8)
    # stub, ours, the heuristic one, the pass-through, the held one (at 1 only), two others
    assert [target_count(level, True, True, 2) for level in (1, 8)] == [7, 6]
    assert [target_count(level, False, False, 1) for level in (1, 8)] == [3, 3]

    # It holds as long as ours' own overhead so far (the warm-up, then every round): it follows ours.
    from hybrid.evals.overhead import _hold

    assert _hold(held, {"ours": []}) is None  # nothing reported yet: not measured
    assert _hold(held, {"ours": [9.0, 11.0, 10.0]}) == 10.0
    assert _hold(TARGETS[1], {"ours": [9.0]}) is None  # ours holds nothing

    figures = {"ours": {"self_reported_gap_ms": 1.4}, "passthrough-held": {"self_reported_gap_ms": 1.1}}
    _against_held(figures, held, 9.2344)
    assert figures["passthrough-held"]["hold_ms"] == 9.234
    assert figures["ours"]["self_reported_gap_beyond_held_ms"] == 0.3
    report = {
        "settings": {"concurrency": [1], "rounds": 1, "requests": 3, "warmup": 0},
        "targets": [],
        "levels": [{"concurrency": 1, "targets": {}, "ratios": []}],
    }
    report["levels"][0]["targets"]["ours"] = {
        **summarise_level(1, _blocks(), TARGETS)["targets"]["ours"],
        "self_reported_gap_beyond_held_ms": 0.3,
    }
    assert "ours's account misses 0.30 ms more than a pass-through held as long as it takes" in format_table(
        report
    )


@pytest.mark.integration
def test_the_command_measures_our_server_the_stub_and_another_proxy(tmp_path: Path) -> None:
    # A second stub stands in for another proxy the user started: it must be found by its port.
    other = free_port()
    command = [sys.executable, "-m", "hybrid.evals.stub", "--port", str(other)]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with serving(command, f"http://127.0.0.1:{other}/health", tmp_path / "other.log", env=env) as process:
        result = subprocess.run(
            [
                sys.executable, "-m", "hybrid.cli", "eval", "overhead", "--concurrency", "1,2",
                "--rounds", "1", "--requests", "5", "--warmup", "2", "--json",
                "--stub-port", str(free_port()), "--against", f"http://127.0.0.1:{other}",
                "--against-model", "m", "--passthrough",
            ],
            env=env | {"OVERHEAD_AGAINST_KEY": "sk-test"},
            capture_output=True, text=True, check=False, cwd=REPO, timeout=280,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        report = json.loads(result.stdout)
        assert result.stderr == ""  # not a terminal: no progress lines in logs
        assert process.poll() is None  # the other proxy is the user's: left running

    names = ["stub", "ours", "passthrough", "passthrough-held", "against-1"]
    assert [t["name"] for t in report["targets"]] == names
    assert [t["cpu_measured"] for t in report["targets"]] == [True] * 5
    assert report["targets"][4]["url"] == f"http://127.0.0.1:{other}/v1"
    assert [lvl["concurrency"] for lvl in report["levels"]] == [1, 2]
    assert report["errors_total"] == 0
    # Held as long as ours took in the warm-up, and only at concurrency 1 (it serves one at a time).
    held = report["levels"][0]["targets"]["passthrough-held"]
    assert held["hold_ms"] > 0
    assert held["latency_ms"]["p50"] > held["hold_ms"]  # the client waited for the hold
    assert held["self_reported_overhead_ms_p50"] >= held["hold_ms"]  # and the proxy counts it as its own
    assert held["upstream_calls_per_request"] == 1
    ours_at_1 = report["levels"][0]["targets"]["ours"]
    assert ours_at_1["self_reported_gap_beyond_held_ms"] == pytest.approx(
        ours_at_1["self_reported_gap_ms"] - held["self_reported_gap_ms"], abs=0.002
    )
    for level in report["levels"]:
        expected = set(names) if level["concurrency"] == 1 else set(names) - {"passthrough-held"}
        assert set(level["targets"]) == expected
        for name, figures in level["targets"].items():
            assert figures["requests"] == 5, name
            assert figures["errors"] == 0, figures["error_samples"]
            assert figures["latency_ms"]["p95"] >= figures["latency_ms"]["p50"] > 0
            assert isinstance(figures["overhead_ms"], float)
            assert figures["rps"] > 0
            assert figures["cpu_ms_per_request"] is not None
        ours = level["targets"]["ours"]
        assert ours["cpu_ms_per_request"] > 0  # the graph runs in our process
        assert ours["upstream_calls_per_request"] >= 1  # every request reached the stub through our server
        assert sum(ours["outcomes"].values()) == 5
        assert ours["self_reported_overhead_ms_p50"] > 0
        assert ours["self_reported_queued_ms_p50"] >= 0
        # what the client waited outside our clock, and the model time we subtracted
        assert ours["outside_clock_ms_p50"] > 0
        assert 0 < ours["self_reported_models_ms_p50"] < ours["latency_ms"]["p50"]
        assert level["targets"]["stub"]["upstream_calls_per_request"] == 1
        # The pass-through forwards each request to the stub once, and states its own overhead.
        hop = level["targets"]["passthrough"]
        assert hop["upstream_calls_per_request"] == 1
        assert hop["self_reported_overhead_ms_p50"] >= 0
        assert isinstance(hop["self_reported_gap_ms"], float)
        # The stand-in proxy is an instant server of its own, not in front of the stub.
        assert level["targets"]["against-1"]["upstream_calls_per_request"] == 0
        assert [(r["target"], r["against"]) for r in level["ratios"]] == [("ours", "against-1")]
    assert report["warnings"] == [
        f"against-1 (http://127.0.0.1:{other}/v1) answered without calling the stub"
    ]


@pytest.mark.unit
def test_cpu_time_of_a_process_grows_with_its_work_and_is_none_for_no_process() -> None:
    from hybrid.evals.overhead import cpu_seconds

    before = cpu_seconds([os.getpid()])
    sum(n * n for n in range(300_000))
    assert before is not None
    assert cpu_seconds([os.getpid()]) > before
    assert cpu_seconds([2**22 + 1]) is None  # above Linux's largest pid


@pytest.mark.unit
def test_the_litellm_example_sends_to_the_stub_port_the_benchmarks_page_gives() -> None:
    import yaml

    config = yaml.safe_load((REPO / "docs" / "examples" / "litellm-overhead.yaml").read_text())
    (entry,) = config["model_list"]
    assert entry["model_name"] == "stub"
    assert entry["litellm_params"]["model"] == "openai/stub"
    page = (REPO / "docs" / "benchmarks.md").read_text()
    port = urlsplit(entry["litellm_params"]["api_base"]).port
    assert f"--stub-port {port}" in page
    assert "--against-model stub" in page
    assert config["general_settings"]["master_key"] == "os.environ/LITELLM_MASTER_KEY"
