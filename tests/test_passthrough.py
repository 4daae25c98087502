"""The pass-through proxy of `hybrid eval overhead --passthrough`: what it forwards, what it returns,
and its own account of its overhead (driven in-process, its upstream a mock)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from hybrid.evals.passthrough import HOLD_HEADER, OVERHEAD_HEADER, Passthrough, hold_ms


def _through(app: Passthrough, request: httpx.Request) -> httpx.Response:
    async def send() -> httpx.Response:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://proxy"
        ) as client:
            response = await client.send(request)
            await response.aread()
            return response

    return asyncio.run(send())


@pytest.mark.unit
def test_a_request_goes_on_as_it_came_and_its_answer_comes_back_with_the_proxys_overhead() -> None:
    seen: list[httpx.Request] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            201, content=b'{"id": "x"}', headers={"content-type": "application/json", "x-up": "1"}
        )

    app = Passthrough("http://stub:9/", transport=httpx.MockTransport(upstream))
    body = b'{"model": "stub", "messages": []}'
    response = _through(
        app,
        httpx.Request(
            "POST",
            "http://proxy/v1/chat/completions?trace=1",
            content=body,
            headers={
                "content-type": "application/json",
                "authorization": "Bearer k",
            },
        ),
    )

    (forwarded,) = seen
    assert (forwarded.method, str(forwarded.url)) == ("POST", "http://stub:9/v1/chat/completions?trace=1")
    assert forwarded.content == body
    assert forwarded.headers["content-type"] == "application/json"
    assert forwarded.headers["authorization"] == "Bearer k"  # the upstream checks keys, not the hop
    assert forwarded.headers["host"] == "stub:9"  # the hop's own headers are its client's, not copied
    assert (response.status_code, response.content, response.headers["x-up"]) == (201, b'{"id": "x"}', "1")
    assert response.headers["content-length"] == "11"  # whole, as the upstream sent it: not chunked
    assert float(response.headers[OVERHEAD_HEADER]) >= 0


@pytest.mark.unit
def test_an_upstream_that_cannot_be_reached_is_a_502_with_its_overhead_still_stated() -> None:
    def upstream(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    app = Passthrough("http://stub:9", transport=httpx.MockTransport(upstream))
    response = _through(app, httpx.Request("GET", "http://proxy/health"))

    assert response.status_code == 502
    assert response.json() == {"error": {"message": "upstream: ConnectError"}}
    assert float(response.headers[OVERHEAD_HEADER]) >= 0


@pytest.mark.unit
def test_a_held_request_waits_on_a_busy_proxy_is_forwarded_without_the_hold_and_counts_it_as_overhead() -> (
    None
):
    import time

    seen: list[httpx.Request] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b"{}")

    app = Passthrough("http://stub:9", transport=httpx.MockTransport(upstream))
    began_wall, began_cpu = time.perf_counter(), time.process_time()
    response = _through(
        app, httpx.Request("POST", "http://proxy/v1/x", content=b"{}", headers={HOLD_HEADER: "30"})
    )
    wall_ms = (time.perf_counter() - began_wall) * 1000
    cpu_ms = (time.process_time() - began_cpu) * 1000

    assert response.status_code == 200
    assert wall_ms >= 30
    assert cpu_ms >= 25  # working, not asleep (a busy proxy, as the one it stands in for)
    assert float(response.headers[OVERHEAD_HEADER]) >= 30  # its own account includes the hold
    (forwarded,) = seen
    assert HOLD_HEADER not in forwarded.headers  # the hold is the hop's, not the upstream's


@pytest.mark.unit
@pytest.mark.parametrize("value", ["soon", "-1", "nan", "inf", "10001"])
def test_a_hold_that_is_not_0_to_10_seconds_is_a_400_and_nothing_goes_upstream(value: str) -> None:
    seen: list[httpx.Request] = []
    app = Passthrough(
        "http://stub:9", transport=httpx.MockTransport(lambda r: seen.append(r) or httpx.Response(200))
    )

    response = _through(
        app, httpx.Request("POST", "http://proxy/v1/x", content=b"{}", headers={HOLD_HEADER: value})
    )

    assert response.status_code == 400
    assert (
        HOLD_HEADER in response.json()["error"]["message"] or "float" in response.json()["error"]["message"]
    )
    assert seen == []


@pytest.mark.unit
def test_a_request_without_a_hold_is_not_held() -> None:
    assert hold_ms([(b"content-type", b"application/json")]) == 0.0
    assert hold_ms([(b"X-Passthrough-Hold-Ms", b"2.5")]) == 2.5
