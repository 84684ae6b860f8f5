"""Outbound address policy: which URLs the service may fetch on someone else's say-so.

Provider output and status URLs, and operator-registered webhook endpoints, name hosts that
creditgate did not choose. Fetching them blindly lets whoever writes the URL make the worker
read loopback services, the private network or the cloud metadata endpoint, and hand the
answer back. The policy:

- only `http` and `https`;
- every address a host name resolves to must be public: no loopback, private (RFC 1918,
  ULA), link-local, CGNAT (100.64.0.0/10), multicast, unspecified, reserved or documentation
  ranges, and no IPv4 hidden in IPv6 (mapped, 6to4, Teredo, NAT64) that is any of those;
- cloud metadata addresses (169.254.169.254, fd00:ec2::254, 100.100.100.200) are refused
  even when the policy allows local addresses;
- the check runs after DNS resolution, and the connection goes to the address that was
  checked (the URL is rewritten to the IP, with Host and TLS SNI kept), so a second DNS answer
  cannot swap in another address between the check and the connect;
- redirects are followed here, one hop at a time, each hop checked again, at most
  `max_redirects` hops.

`allow_local=True` is for routes an operator marked explicitly local (a runner or a Gradio app
on the same machine); `trusted_origins` names origins (scheme, host, port) that are allowed
whatever they resolve to, such as the provider endpoint the operator configured.

    policy = NetPolicy(trusted_origins={origin_of(endpoint)})
    async with guarded_client(policy) as client:
        resp = await guarded_request(client, "GET", url)   # redirects checked per hop
    await check_url(url, policy)                            # raises BlockedURL

The transport does the check on every request it sends, so a client built by
`guarded_client` is safe even when a caller forgets `guarded_request`; the helper adds the
bounded, per-hop redirect handling (httpx's own redirect following is turned off).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Origin = tuple[str, str, int]
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]

DEFAULT_MAX_REDIRECTS = 5

# Cloud instance metadata services: refused even on explicitly local routes.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "169.254.170.2")
)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Request extension naming the policy for one request (a job's own trusted origins) on a
# shared guarded client; without it the transport's own policy applies.
POLICY_EXTENSION = "creditgate.netpolicy"


class BlockedURL(httpx.RequestError):
    """The URL (or a redirect hop) names a scheme or an address the policy refuses."""


def origin_of(url: str) -> Origin:
    """(scheme, host, port) of a URL, lower-cased, with the scheme's default port."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError as exc:
        raise BlockedURL(f"invalid port in URL: {url[:200]!r}") from exc
    return scheme, (parts.hostname or "").lower(), port or {"http": 80, "https": 443}.get(scheme, 0)


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, Teredo client, NAT64)."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_refusal(ip: IPAddress, *, allow_local: bool = False) -> str | None:
    """Why the policy refuses to connect to `ip`, or None when the address is allowed."""
    if ip in METADATA_ADDRESSES:
        return "metadata address"
    inner = _embedded_ipv4(ip)
    if inner is not None:
        reason = address_refusal(inner, allow_local=allow_local)
        return f"{reason} (embedded in IPv6)" if reason else None
    if allow_local:
        return None
    if ip.is_unspecified:
        return "unspecified address"
    if ip.is_loopback:
        return "loopback address"
    if ip.is_link_local:
        return "link-local address"
    if ip.is_multicast:
        return "multicast address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT:
        return "CGNAT address"
    if ip.is_private:
        return "private address"
    if ip.is_reserved or not ip.is_global:
        return "reserved address"
    return None


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    """Every address getaddrinfo gives for host (A and AAAA), in its order."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise httpx.ConnectError(f"cannot resolve {host!r}: {exc.strerror}") from exc
    out: list[IPAddress] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if ip not in out:
            out.append(ip)
    return out


@dataclass(frozen=True)
class NetPolicy:
    """Which destinations a guarded client may reach."""

    allow_local: bool = False
    trusted_origins: frozenset[Origin] = field(default_factory=frozenset)
    max_redirects: int = DEFAULT_MAX_REDIRECTS
    resolver: Resolver = system_resolver

    def with_trusted(self, urls: Iterable[str]) -> NetPolicy:
        origins = set(self.trusted_origins)
        origins.update(origin_of(u) for u in urls if u)
        return NetPolicy(self.allow_local, frozenset(origins), self.max_redirects, self.resolver)


@dataclass(frozen=True)
class Resolved:
    """A checked destination: the address to connect to, or None for a trusted origin."""

    url: str
    host: str
    port: int
    address: IPAddress | None


async def check_url(url: str, policy: NetPolicy | None = None) -> Resolved:
    """Resolve and check one URL; raise BlockedURL when the policy refuses it."""
    policy = policy or NetPolicy()
    scheme, host, port = origin_of(url)
    if scheme not in ("http", "https"):
        raise BlockedURL(f"scheme {scheme or '(none)'!r} is not allowed")
    if not host:
        raise BlockedURL("URL has no host")
    if (scheme, host, port) in policy.trusted_origins:
        return Resolved(url, host, port, None)
    try:
        literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    addresses = [literal] if literal is not None else await policy.resolver(host, port)
    if not addresses:
        raise httpx.ConnectError(f"no address for {host!r}")
    # Every answer must pass: a name that resolves to one public and one private address
    # could otherwise be steered to the private one.
    for ip in addresses:
        reason = address_refusal(ip, allow_local=policy.allow_local)
        if reason:
            raise BlockedURL(f"{host} resolves to a {reason}")
    return Resolved(url, host, port, addresses[0])


class GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport that checks each request's destination and pins the checked IP."""

    def __init__(self, policy: NetPolicy, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self.policy = policy
        self._inner = inner or httpx.AsyncHTTPTransport(trust_env=False)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        extensions: dict[str, Any] = dict(request.extensions)
        policy = extensions.pop(POLICY_EXTENSION, None)
        if not isinstance(policy, NetPolicy):
            policy = self.policy
        resolved = await check_url(str(request.url), policy)
        if resolved.address is not None:
            ip = resolved.address
            host = f"[{ip}]" if isinstance(ip, ipaddress.IPv6Address) else str(ip)
            if request.url.scheme == "https":
                # Certificate checked against the name, not the address.
                extensions["sni_hostname"] = resolved.host
            request = httpx.Request(
                request.method,
                request.url.copy_with(host=host),
                headers=request.headers,  # keeps the original Host header
                stream=request.stream,
                extensions=extensions,
            )
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def guarded_client(
    policy: NetPolicy | None = None,
    *,
    inner: httpx.AsyncBaseTransport | None = None,
    **kwargs: Any,
) -> httpx.AsyncClient:
    """An AsyncClient whose every request passes `policy`; no proxies from the environment."""
    return httpx.AsyncClient(
        transport=GuardedTransport(policy or NetPolicy(), inner),
        trust_env=False,
        follow_redirects=False,
        **kwargs,
    )


async def guarded_request(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    policy: NetPolicy | None = None,
    headers: Mapping[str, str] | None = None,
    max_redirects: int | None = None,
    stream: bool = False,
    **kwargs: Any,
) -> httpx.Response:
    """One request with redirects followed here: each hop is checked, at most N hops.

    With `stream=True` the final response is returned unread (close it); intermediate
    redirect responses are always closed. Headers go to the first origin only: a hop to
    another origin drops them (they may carry credentials). A 303 (and a 301/302 after a
    POST) continues as a body-less GET, as browsers and httpx do.
    """
    policy = policy or _client_policy(client)
    limit = policy.max_redirects if max_redirects is None else max_redirects
    first = origin_of(url)
    hops = 0
    while True:
        await check_url(url, policy)
        send_headers = dict(headers or {}) if origin_of(url) == first else {}
        request = client.build_request(
            method, url, headers=send_headers, extensions={POLICY_EXTENSION: policy}, **kwargs
        )
        resp = await client.send(request, stream=True, follow_redirects=False)
        location = resp.headers.get("location")
        if resp.status_code not in _REDIRECTS or not location:
            if not stream:
                try:
                    await resp.aread()
                finally:
                    await resp.aclose()
            return resp
        await resp.aclose()
        hops += 1
        if hops > limit:
            raise httpx.TooManyRedirects(f"more than {limit} redirects", request=request)
        url = str(request.url.join(location))
        if resp.status_code == 303 or (resp.status_code in (301, 302) and method == "POST"):
            method = "GET"
            kwargs = {
                k: v for k, v in kwargs.items() if k not in ("json", "content", "files", "data")
            }


def _client_policy(client: httpx.AsyncClient) -> NetPolicy:
    transport = getattr(client, "_transport", None)
    if isinstance(transport, GuardedTransport):
        return transport.policy
    return NetPolicy()
