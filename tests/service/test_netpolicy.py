"""The outbound address policy (creditgate.netpolicy) over real HTTP to local servers.

Addresses are checked after resolution (a fake resolver stands in for DNS where a test
needs a name to resolve somewhere chosen), the connection is pinned to the checked address,
and redirects are followed one checked hop at a time.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from creditgate.netpolicy import (
    BlockedURL,
    IPAddress,
    NetPolicy,
    address_refusal,
    check_url,
    guarded_client,
    guarded_request,
    origin_of,
)
from tests.fakes.server import LiveServer

REFUSED = [
    "127.0.0.1",
    "127.8.9.10",
    "0.0.0.0",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "100.100.100.200",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "192.0.2.1",
    "198.18.0.1",
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "fd00:ec2::254",
    "ff02::1",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "2001:db8::1",
]
ALLOWED = ["8.8.8.8", "1.1.1.1", "93.184.215.14", "2606:4700:4700::1111", "64:ff9b::808:808"]


@pytest.mark.parametrize("address", REFUSED)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("address", ["169.254.169.254", "fd00:ec2::254", "::ffff:169.254.169.254"])
def test_metadata_refused_even_on_local_routes(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address), allow_local=True) is not None


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.5", "::1", "192.168.0.2"])
def test_local_routes_may_reach_local_addresses(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address), allow_local=True) is None


def _resolver(table: dict[str, list[str]]) -> Any:
    async def resolve(host: str, port: int) -> list[IPAddress]:
        return [ipaddress.ip_address(a) for a in table[host]]

    return resolve


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "gopher://example.com/",
        "ftp://example.com/x",
        "http:///nohost",
        "http://127.0.0.1/latest/meta-data/",
        "http://[::1]:8080/",
        "http://2130706433/",  # 127.0.0.1 as one decimal number
        "http://0x7f.1/",
    ],
)
def test_check_url_refuses(url: str) -> None:
    with pytest.raises(BlockedURL):
        asyncio.run(check_url(url, NetPolicy()))


def test_check_url_checks_every_resolved_address() -> None:
    policy = NetPolicy(resolver=_resolver({"mixed.test": ["8.8.8.8", "10.0.0.7"]}))
    with pytest.raises(BlockedURL, match="private"):
        asyncio.run(check_url("https://mixed.test/x.png", policy))
    policy = NetPolicy(resolver=_resolver({"cdn.test": ["8.8.8.8", "2606:4700:4700::1111"]}))
    resolved = asyncio.run(check_url("https://cdn.test/x.png", policy))
    assert str(resolved.address) == "8.8.8.8"


def test_trusted_origin_is_exact() -> None:
    policy = NetPolicy().with_trusted(["http://127.0.0.1:7000/base"])
    assert asyncio.run(check_url("http://127.0.0.1:7000/other", policy)).address is None
    with pytest.raises(BlockedURL):
        asyncio.run(check_url("http://127.0.0.1:7001/other", policy))
    with pytest.raises(BlockedURL):
        asyncio.run(check_url("https://127.0.0.1:7000/other", policy))
    assert origin_of("HTTPS://Example.COM/x") == ("https", "example.com", 443)


# --- over real HTTP --------------------------------------------------------------------------


def _target_app() -> Starlette:
    async def secret(request: Request) -> Response:
        return PlainTextResponse(f"secret host={request.headers.get('host')}")

    return Starlette(routes=[Route("/latest/meta-data/iam", secret)])


def _redirector_app(target: str) -> Starlette:
    async def hop(request: Request) -> Response:
        return RedirectResponse(target, status_code=302)

    async def loop(request: Request) -> Response:
        n = int(request.path_params["n"])
        return RedirectResponse(f"/loop/{n + 1}", status_code=307)

    async def ok(request: Request) -> Response:
        return PlainTextResponse(f"ok auth={request.headers.get('authorization')}")

    return Starlette(
        routes=[
            Route("/hop", hop),
            Route("/loop/{n}", loop),
            Route("/ok", ok),
        ]
    )


@pytest.fixture
def target() -> Iterator[str]:
    with LiveServer(_target_app()) as url:
        yield url


@pytest.fixture
def redirector(target: str) -> Iterator[str]:
    with LiveServer(_redirector_app(f"{target}/latest/meta-data/iam")) as url:
        yield url


async def _get(policy: NetPolicy, url: str, **kwargs: Any) -> httpx.Response:
    async with guarded_client(policy) as client:
        return await guarded_request(client, "GET", url, **kwargs)


def test_loopback_url_is_not_fetched(target: str) -> None:
    with pytest.raises(BlockedURL, match="loopback"):
        asyncio.run(_get(NetPolicy(), f"{target}/latest/meta-data/iam"))


def test_transport_alone_refuses_loopback(target: str) -> None:
    """A guarded client refuses even when the caller uses plain client.get()."""

    async def run() -> None:
        async with guarded_client(NetPolicy()) as client:
            await client.get(f"{target}/latest/meta-data/iam")

    with pytest.raises(BlockedURL):
        asyncio.run(run())


def test_redirect_hop_to_internal_address_is_refused(redirector: str, target: str) -> None:
    policy = NetPolicy().with_trusted([redirector])
    resp = asyncio.run(_get(policy, f"{redirector}/ok"))
    assert resp.status_code == 200  # the trusted origin itself works
    with pytest.raises(BlockedURL, match="loopback"):
        asyncio.run(_get(policy, f"{redirector}/hop"))


def test_redirects_are_bounded(redirector: str) -> None:
    policy = NetPolicy(max_redirects=3).with_trusted([redirector])
    with pytest.raises(httpx.TooManyRedirects):
        asyncio.run(_get(policy, f"{redirector}/loop/0"))


def test_local_policy_follows_redirects_and_drops_headers_across_origins(
    redirector: str, target: str
) -> None:
    policy = NetPolicy(allow_local=True)
    resp = asyncio.run(_get(policy, f"{redirector}/hop", headers={"Authorization": "Key s3cret"}))
    assert resp.status_code == 200 and resp.text.startswith("secret")
    same = asyncio.run(_get(policy, f"{redirector}/ok", headers={"Authorization": "Key s3cret"}))
    assert same.text == "ok auth=Key s3cret"


def test_connection_goes_to_the_checked_address(target: str) -> None:
    """The name resolves once, to the address checked; Host keeps the name."""
    port = target.rsplit(":", 1)[1]
    calls: list[str] = []

    async def resolve(host: str, p: int) -> list[IPAddress]:
        calls.append(host)
        return [ipaddress.ip_address("127.0.0.1")]

    policy = NetPolicy(allow_local=True, resolver=resolve)
    resp = asyncio.run(_get(policy, f"http://provider.invalid:{port}/latest/meta-data/iam"))
    assert resp.text == f"secret host=provider.invalid:{port}"
    assert set(calls) == {"provider.invalid"}
    # The same name pointing at a private address is refused without local permission.
    with pytest.raises(BlockedURL):
        asyncio.run(
            _get(
                NetPolicy(resolver=resolve), f"http://provider.invalid:{port}/latest/meta-data/iam"
            )
        )


def test_a_request_may_carry_its_own_policy(target: str) -> None:
    """One strict shared client (the worker's); each job's requests carry the job's policy."""
    url = f"{target}/latest/meta-data/iam"

    async def run() -> tuple[httpx.Response, BaseException | None]:
        async with guarded_client(NetPolicy()) as client:
            job_policy = NetPolicy().with_trusted([target])
            ok = await guarded_request(client, "GET", url, policy=job_policy)
            try:
                await guarded_request(client, "GET", url)  # the client's own, strict policy
            except BlockedURL as exc:
                return ok, exc
            return ok, None

    ok, refused = asyncio.run(run())
    assert ok.status_code == 200
    assert isinstance(refused, BlockedURL)
