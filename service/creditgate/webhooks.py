"""Webhook delivery (DESIGN §8): Standard Webhooks, at least once, from the workers.

The outbox and the delivery state are SQL (``db/functions/ops``): every event is fanned out
to the enabled endpoints that want it, in the transaction of its cause. Workers run a
:class:`WebhookDeliverer`, which

1. claims due deliveries with ``service_claim_webhook_deliveries`` (``FOR UPDATE SKIP
   LOCKED`` and a lease: a worker killed mid-delivery leaves a delivering row whose lease
   expires, and the next claim takes it over and sends it again);
2. checks the endpoint URL against :mod:`creditgate.netpolicy` after DNS resolution and
   connects to the checked address (no private, link-local or metadata address; loopback
   only with the ``webhook_allow_loopback`` setting, on ``localhost``/``127.x``/``[::1]``);
3. signs the body with the ``standardwebhooks`` library (``webhook-id`` is the event's, the
   same on every attempt, so receivers can drop duplicates; ``webhook-timestamp`` is the
   attempt's) and POSTs it with a per-attempt timeout, without following redirects;
4. reports the attempt with ``service_finish_webhook_delivery``, which records it and
   decides: delivered (2xx), endpoint disabled (410), retried after exponential backoff
   with jitter, or parked once the retry budget is spent.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
from standardwebhooks.webhooks import Webhook

from creditgate.db import ApiError, Arg, Database
from creditgate.netpolicy import BlockedURL, NetPolicy, check_url, guarded_client, origin_of
from creditgate.observability import get_logger

__all__ = ["WebhookDeliverer", "policy_for", "refusal"]

DEFAULT_TIMEOUT_SECONDS = 10.0
DEFAULT_POLL_SECONDS = 1.0
DEFAULT_BATCH = 10
USER_AGENT = "creditgate-webhooks/1"

log = get_logger("creditgate.webhooks")


def _is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def policy_for(url: str, *, allow_loopback: bool) -> NetPolicy:
    """The address policy for one endpoint: public addresses only, and loopback names or
    addresses (never the private network) when the development setting allows them."""
    host = (urlsplit(url).hostname or "").lower()
    if allow_loopback and _is_loopback_host(host):
        return NetPolicy(trusted_origins=frozenset({origin_of(url)}))
    return NetPolicy()


async def refusal(url: str, *, allow_loopback: bool) -> str | None:
    """Why an endpoint URL is refused (scheme or address, after DNS), or None."""
    scheme = urlsplit(url).scheme.lower()
    host = (urlsplit(url).hostname or "").lower()
    if scheme != "https" and not (scheme == "http" and allow_loopback and _is_loopback_host(host)):
        return "https only (http only to loopback when webhook_allow_loopback is on)"
    try:
        await check_url(url, policy_for(url, allow_loopback=allow_loopback))
    except BlockedURL as exc:
        return str(exc)
    except httpx.HTTPError as exc:  # resolution failed: not a policy refusal
        return None if "resolve" in str(exc) else str(exc)
    return None


class WebhookDeliverer:
    """Claims and delivers webhook deliveries until ``stopped`` is set."""

    def __init__(
        self,
        db: Database,
        worker_id: str,
        *,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        poll_seconds: float = DEFAULT_POLL_SECONDS,
        batch: int = DEFAULT_BATCH,
    ) -> None:
        self.db = db
        self.worker_id = worker_id
        self.timeout_seconds = max(0.1, timeout_seconds)
        self.poll_seconds = max(0.05, poll_seconds)
        self.batch = max(1, min(batch, 100))
        # The lease outlives the attempt's timeout, so only a vanished worker loses it.
        self.lease_seconds = int(min(3600, max(5, self.timeout_seconds * 2 + 5)))
        self.log = log.bind(worker_id=worker_id)

    async def run(self, stopped: asyncio.Event) -> None:
        async with guarded_client(timeout=self.timeout_seconds) as client:
            while not stopped.is_set():
                delivered = 0
                try:
                    delivered = await self.run_once(client)
                except (ApiError, psycopg.Error, OSError) as exc:
                    self.log.warning("webhook claim failed", error=str(exc))
                if delivered:
                    continue  # there may be more due right now
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopped.wait(), self.poll_seconds)

    async def run_once(self, client: httpx.AsyncClient) -> int:
        claimed = await self.db.call(
            "service_claim_webhook_deliveries",
            {
                "worker_id": Arg(self.worker_id, "text"),
                "max_items": Arg(self.batch, "integer"),
                "lease_seconds": Arg(self.lease_seconds, "integer"),
            },
            role="service_role",
        )
        items = list(claimed or [])
        if items:
            await asyncio.gather(*(self._deliver(client, item) for item in items))
        return len(items)

    async def _deliver(self, client: httpx.AsyncClient, item: Mapping[str, Any]) -> None:
        url = str(item["url"])
        outcome = await self.attempt(client, item)
        try:
            result = await self.db.call(
                "service_finish_webhook_delivery",
                {
                    "delivery_id": Arg(int(item["delivery_id"]), "bigint"),
                    "worker_id": Arg(self.worker_id, "text"),
                    "lease_token": Arg(str(item["lease_token"]), "text"),
                    "outcome": Arg(outcome, "jsonb"),
                },
                role="service_role",
            )
        except ApiError as exc:
            self.log.warning(
                "webhook result refused", code=exc.code, delivery_id=item["delivery_id"]
            )
            return
        except (psycopg.Error, OSError) as exc:
            # The lease expires and another claim sends it again (at least once).
            self.log.warning("webhook result not recorded", error=str(exc))
            return
        self.log.info(
            "webhook attempt",
            delivery_id=item["delivery_id"],
            attempt=item.get("attempt"),
            event_type=item.get("event_type"),
            origin=f"{urlsplit(url).scheme}://{urlsplit(url).netloc}",
            http_status=outcome.get("http_status"),
            error=outcome.get("error"),
            status=result.get("status") if isinstance(result, Mapping) else None,
        )

    async def attempt(self, client: httpx.AsyncClient, item: Mapping[str, Any]) -> dict[str, Any]:
        """One signed POST; the outcome for ``service_finish_webhook_delivery``."""
        url = str(item["url"])
        allow_loopback = bool(item.get("allow_loopback"))
        refused = await refusal(url, allow_loopback=allow_loopback)
        if refused:
            return {"refused": True, "error": f"address refused: {refused}"[:500]}
        body = str(item["body"])
        msg_id = str(item["webhook_id"])
        now = datetime.now(UTC)
        try:
            signature = Webhook(str(item["secret"])).sign(msg_id, now, body)
        except Exception as exc:  # a malformed secret: retrying will not help
            return {"refused": True, "error": f"cannot sign: {type(exc).__name__}"}
        headers = {
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature,
            "content-type": "application/json",
            "user-agent": USER_AGENT,
        }
        started = time.monotonic()
        try:
            response = await client.post(
                url,
                content=body.encode(),
                headers=headers,
                extensions={"creditgate.netpolicy": policy_for(url, allow_loopback=allow_loopback)},
            )
        except BlockedURL as exc:
            return {"refused": True, "error": f"address refused: {exc}"[:500]}
        except httpx.TimeoutException:
            return {
                "latency_ms": _ms(started),
                "error": f"timed out after {self.timeout_seconds:g}s",
            }
        except httpx.HTTPError as exc:
            return {"latency_ms": _ms(started), "error": f"{type(exc).__name__}: {exc}"[:500]}
        outcome: dict[str, Any] = {"http_status": response.status_code, "latency_ms": _ms(started)}
        if not 200 <= response.status_code < 300:
            outcome["error"] = f"HTTP {response.status_code}"
        return outcome


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
