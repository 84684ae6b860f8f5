"""The generation worker: claim, run at the provider, store the outputs, settle.

    creditgate worker --concurrency 4

Life of a job (DESIGN §6, money rules in SQL):

1. **Claim.** ``service_claim_generations`` hands out queued jobs with ``FOR UPDATE SKIP
   LOCKED`` and a lease. The claim loop is woken by ``LISTEN creditgate_generations`` (one
   dedicated connection; ``request_generation`` notifies on commit), by a finished job when
   every slot was busy, and otherwise only by a slow fallback poll
   (``settings.idle_poll_seconds``) that covers a lost notification.
2. **Run.** A heartbeat extends the lease every ``settings.heartbeat_seconds``; if the
   database says ``lease_lost`` (the reaper gave the job to someone else) the job is stopped
   and never settled by this worker. Edits first read their input image from storage. The
   :class:`~creditgate.providers.ProviderGateway` runs the job (retries, key rotation,
   timeouts live there).
3. **Inspect.** Each output is checked by :mod:`creditgate.media` before anything is stored:
   its type comes from its bytes and must suit the job's kind, its metadata is stripped,
   its dimensions (against the model's limits), frames and decode time are capped. A
   refused output fails the job, not retryable, so SQL refunds it in full.
4. **Store.** Each output goes to ``media/<generation_id>/<attempt>-<n>.<ext>``. The attempt
   number is part of the name so that a worker that lost its lease can never overwrite, or
   clean up, the files of the attempt that replaced it. Any upload failure deletes what was
   uploaded and reports a retryable failure.
5. **Settle.** One call to ``service_settle_generation`` reports the outcome; SQL decides
   everything that touches money (charge kept, partial refund for token-priced chat from
   ``output.usage``, full refund, or back to the queue when retryable with attempts left).
   Settling is idempotent, so a transient database error is retried until the lease ends.

Shutdown (SIGTERM/SIGINT): stop claiming, let in-flight jobs finish and settle for up to
``grace_seconds``, then stop what is left and settle it ``failed`` + ``retryable`` with code
``worker_shutdown``. Chosen over letting the lease expire because the job is back in the
queue at once instead of after up to ``lease_seconds``; the price is one attempt of the
job's budget (a job out of attempts is failed and refunded in full by SQL, never charged
twice). A second signal skips the rest of the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from prometheus_client import start_http_server

from creditgate import ops_worker, wiring
from creditgate.config import Settings
from creditgate.db import ApiError, Arg, Database
from creditgate.media import Inspected, Limits, OutputRejected, inspect_output
from creditgate.netpolicy import NetPolicy, guarded_client
from creditgate.observability import (
    GENERATIONS_SETTLED,
    PROVIDER_ERRORS,
    PROVIDER_LATENCY,
    REGISTRY,
    bind,
    get_logger,
)
from creditgate.providers import (
    Attempt,
    MediaBlob,
    ProviderError,
    ProviderGateway,
    ProviderJob,
    ProviderResult,
)
from creditgate.providers.base import public_message
from creditgate.storage import NotFound, S3Storage, Storage, StorageError

__all__ = ["CHANNEL", "ClaimedJob", "Worker", "media_info", "run_worker"]

CHANNEL = "creditgate_generations"
DEFAULT_GRACE_SECONDS = 30.0
# After the grace period, how long stopped jobs get to report `worker_shutdown`.
SHUTDOWN_SETTLE_SECONDS = 10.0
# How long an outcome is retried while the database is unreachable before its worker
# gives up on it (the lease expired long before; the reaper re-runs or refunds the job).
SETTLE_GIVE_UP_SECONDS = 900.0
MAX_BACKOFF_SECONDS = 30.0
LISTEN_RETRY_MAX_SECONDS = 5.0
RECLAIM_AFTER_SECONDS = 0.5  # a second look after every claim that found work
UNLISTENED_POLL_SECONDS = 2.0  # claim polling while the LISTEN connection is down
MAX_OUTPUTS = 16  # service_settle_generation accepts at most 16 media per generation
DETAIL_LIMIT = 4000  # provider text kept in provider_calls (redacted before it is cut)

# Failure codes the worker reports besides the gateway's provider codes.
STORAGE_ERROR = "storage_error"  # reading the input or writing an output failed
INPUT_MISSING = "input_missing"  # the edit's input image is no longer stored
WORKER_SHUTDOWN = "worker_shutdown"
INTERNAL_ERROR = "internal_error"  # a bug in the worker: retry, and look at the logs

_EXTENSIONS = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/gif": "gif",
    "image/webp": "webp",
    "video/mp4": "mp4",
    "video/webm": "webm",
    "video/quicktime": "mov",
}

log = get_logger("creditgate.worker")


# --- jobs and outcomes ---------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimedJob:
    """One element of ``service_claim_generations``' result."""

    generation_id: str
    user_id: str
    kind: str
    model_id: str
    params: Mapping[str, Any]
    attempt: int
    max_attempts: int
    lease_token: str
    cost: int
    route: Mapping[str, Any]
    loras: Sequence[Mapping[str, Any]]
    init_media: Mapping[str, Any] | None

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ClaimedJob:
        return cls(
            generation_id=str(raw["generation_id"]),
            user_id=str(raw["user_id"]),
            kind=str(raw["kind"]),
            model_id=str(raw["model_id"]),
            params=raw.get("params") or {},
            attempt=int(raw.get("attempt") or 1),
            max_attempts=int(raw.get("max_attempts") or 1),
            lease_token=str(raw["lease_token"]),
            cost=int(raw.get("cost") or 0),
            route=raw.get("route") or {},
            loras=list(raw.get("loras") or []),
            init_media=raw.get("init_media") or None,
        )

    def provider_job(self, init_image: bytes | None) -> ProviderJob:
        """The gateway's view: route from the DB, LoRAs with their server-side sources."""
        params = dict(self.params)
        if self.loras:
            params["loras"] = [
                {"id": lo.get("id"), "source": lo.get("source"), "weight": lo.get("weight", 1.0)}
                for lo in self.loras
            ]
        return ProviderJob(
            generation_id=self.generation_id,
            kind=self.kind,
            provider=str(self.route.get("provider") or ""),
            provider_model=str(self.route.get("provider_model") or ""),
            endpoint=str(self.route.get("endpoint") or ""),
            options=self.route.get("options") or {},
            params=params,
            init_image=init_image,
        )

    def media_key(self, position: int, content_type: str) -> str:
        ext = _EXTENSIONS.get(content_type, "bin")
        return f"media/{self.generation_id}/{self.attempt}-{position}.{ext}"


def provider_summary(attempts: Sequence[Attempt], fallback: str) -> dict[str, Any]:
    """``outcome.provider``: the provider, the last HTTP status, the time spent in all tries.

    The database keeps one provider_calls row per lease; each try is in the logs and in the
    PROVIDER_LATENCY / PROVIDER_ERRORS metrics.
    """
    name = (attempts[-1].provider if attempts else fallback)[:50] or None
    if not attempts:
        return {"name": name, "http_status": None, "latency_ms": None}
    return {
        "name": name,
        "http_status": attempts[-1].http_status,
        "latency_ms": sum(a.latency_ms for a in attempts),
    }


def failed(
    code: str,
    message: str,
    *,
    retryable: bool,
    provider: Mapping[str, Any] | None = None,
    detail: str | None = None,
) -> dict[str, Any]:
    """A failed outcome. `message` is client-readable (generations.error): a fixed sentence,
    never provider text. `detail` (the provider's text, already redacted) goes to
    provider_calls only."""
    error = {"code": code, "message": message[:500]}
    if detail:
        error["detail"] = detail[:DETAIL_LIMIT]
    outcome: dict[str, Any] = {
        "status": "failed",
        "retryable": retryable,
        "error": error,
        "media": [],
    }
    if provider is not None:
        outcome["provider"] = dict(provider)
    return outcome


def media_info(output: Inspected) -> dict[str, Any]:
    """Width, height and duration of an inspected output (see creditgate.media)."""
    return output.info()


@dataclass
class _Run:
    """A claimed job in flight."""

    job: ClaimedJob
    lease_expires: float
    work: asyncio.Task[dict[str, Any]] | None = None
    uploaded: list[str] = field(default_factory=list)
    pending_put: asyncio.Future[None] | None = None
    lease_lost: bool = False


_DB_ERRORS = (psycopg.Error, OSError)


# --- the worker ----------------------------------------------------------------------------


class Worker:
    """Claims and runs generations until :meth:`stop` is called, then drains.

    The caller owns ``db`` (opened), ``storage`` and ``gateway``; :func:`run_worker` wires
    them from settings for the CLI.
    """

    def __init__(
        self,
        settings: Settings,
        db: Database,
        storage: Storage,
        gateway: ProviderGateway,
        *,
        worker_id: str | None = None,
        concurrency: int | None = None,
        grace_seconds: float = DEFAULT_GRACE_SECONDS,
        reap_seconds: float | None = None,
        listen_url: str | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.storage = storage
        self.gateway = gateway
        self.worker_id = worker_id or default_worker_id()
        self.concurrency = max(1, concurrency or settings.worker_concurrency)
        self.grace_seconds = max(0.0, grace_seconds)
        # The SQL accepts leases of 5 s to 1 h; heartbeats come at least three per lease.
        self.lease_seconds = min(max(5, settings.lease_seconds), 3600)
        self.heartbeat_seconds = min(max(0.1, settings.heartbeat_seconds), self.lease_seconds / 3)
        self.idle_poll_seconds = max(0.1, settings.idle_poll_seconds)
        self.reap_seconds = reap_seconds or float(min(60, max(5, self.lease_seconds // 2)))
        self.listen_url = listen_url or settings.service_database_url
        self.listening = asyncio.Event()  # set while LISTEN is active (tests wait on it)
        self._wake = asyncio.Event()
        self._second_look_due = False
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self._runs: dict[asyncio.Task[None], _Run] = {}
        self.log = log.bind(worker_id=self.worker_id)
        self._model_limits: dict[str, tuple[float, Limits]] = {}

    # --- control -------------------------------------------------------------------------

    def stop(self, *, force: bool = False) -> None:
        """Stop claiming and drain; ``force`` (or a second call) ends the grace period now."""
        if self._stop.is_set() or force:
            self._force.set()
        self._stop.set()
        self._wake.set()

    def handle_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self._stop.is_set():
            self.log.warning("second signal: ending the grace period", signal=name)
        else:
            self.log.info(
                "stopping: no new claims, draining in-flight jobs",
                signal=name,
                in_flight=len(self._runs),
                grace_seconds=self.grace_seconds,
            )
        self.stop()

    @property
    def in_flight(self) -> int:
        return len(self._runs)

    async def run(self) -> None:
        """Claim and run jobs until stopped; returns once every job is settled or handed back."""
        self.log.info(
            "worker started",
            concurrency=self.concurrency,
            lease_seconds=self.lease_seconds,
            heartbeat_seconds=self.heartbeat_seconds,
            idle_poll_seconds=self.idle_poll_seconds,
        )
        background = [
            asyncio.create_task(self._listen(), name="worker-listen"),
            asyncio.create_task(self._reap_loop(), name="worker-reap"),
            *ops_worker.start(self.settings, self.db, self.worker_id, self._stop),
        ]
        try:
            await self._claim_loop()
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await self._drain()
            self.log.info("worker stopped")

    # --- claiming ------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        failures = 0
        second_look = False  # this round is a scheduled second look (see below)
        while not self._stop.is_set():
            self._wake.clear()
            free = self.concurrency - len(self._runs)
            if free > 0:
                try:
                    jobs = await self.db.call(
                        "service_claim_generations",
                        {
                            "worker_id": Arg(self.worker_id, "text"),
                            "max_jobs": Arg(free, "integer"),
                            "lease_seconds": Arg(self.lease_seconds, "integer"),
                        },
                        role="service_role",
                    )
                    failures = 0
                except (ApiError, *_DB_ERRORS) as exc:
                    failures += 1
                    delay = min(2.0**failures, MAX_BACKOFF_SECONDS)
                    self.log.warning("claim failed", error=str(exc), retry_in=delay)
                    await self._sleep_unless_stopped(delay)
                    continue
                for raw in jobs or []:
                    self._start(raw)
                if jobs or not second_look:
                    # request_generation notifies only when no other job was queued, so a
                    # job that committed just after this claim (having seen one that this
                    # claim, or another worker's, then took) sent no signal: look again
                    # shortly, and keep looking while that finds work.
                    asyncio.get_running_loop().call_later(
                        RECLAIM_AFTER_SECONDS, self._second_look
                    )
            # Without a listening connection nothing wakes us: poll briskly until it is back.
            idle = self.idle_poll_seconds if self.listening.is_set() else UNLISTENED_POLL_SECONDS
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), min(idle, self.idle_poll_seconds))
            second_look, self._second_look_due = self._second_look_due, False

    def _second_look(self) -> None:
        self._second_look_due = True
        self._wake.set()

    def _start(self, raw: Mapping[str, Any]) -> None:
        try:
            job = ClaimedJob.from_json(raw)
        except (KeyError, TypeError, ValueError) as exc:
            # Cannot happen with the SQL this worker ships with; the lease will expire.
            self.log.error("unreadable claimed job", error=str(exc), job=str(raw)[:500])
            return
        run = _Run(job, lease_expires=time.monotonic() + self.lease_seconds)
        task = asyncio.create_task(self._process(run), name=f"job-{job.generation_id}")
        self._runs[task] = run
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._runs.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            self.log.error("job task crashed", error=repr(task.exception()))
        self._wake.set()  # a slot is free (and a retryable failure may be queued again)

    async def _sleep_unless_stopped(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    # --- LISTEN --------------------------------------------------------------------------

    async def _listen(self) -> None:
        """Hold ``LISTEN creditgate_generations``; every notification wakes the claim loop."""
        failures = 0
        while not self._stop.is_set():
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.listen_url, autocommit=True, connect_timeout=10
                )
                async with conn:
                    await conn.execute(f"listen {CHANNEL}")
                    self.listening.set()
                    self._wake.set()  # whatever was queued while we were not listening
                    self.log.info("listening", channel=CHANNEL)
                    failures = 0
                    while not self._stop.is_set():
                        async for _ in conn.notifies(timeout=5.0):
                            self._wake.set()
            except _DB_ERRORS as exc:
                self.listening.clear()
                failures += 1
                delay = min(2.0**failures, LISTEN_RETRY_MAX_SECONDS)
                self.log.warning(
                    "listen connection lost; polling meanwhile", error=str(exc), retry_in=delay
                )
                await self._sleep_unless_stopped(delay)
        self.listening.clear()

    # --- reaping -------------------------------------------------------------------------

    async def _reap_loop(self) -> None:
        while not self._stop.is_set():
            try:
                result = await self.db.call("service_reap_expired_leases", role="service_role")
            except (ApiError, *_DB_ERRORS) as exc:
                self.log.warning("reap failed", error=str(exc))
            else:
                if _reaped_anything(result):
                    self.log.info("reaped expired leases", result=result)
                    self._wake.set()
            await self._sleep_unless_stopped(self.reap_seconds)

    # --- one job -------------------------------------------------------------------------

    async def _process(self, run: _Run) -> None:
        job = run.job
        bind(
            generation_id=job.generation_id,
            user_id=job.user_id,
            model=job.model_id,
            kind=job.kind,
            attempt=job.attempt,
            cost=job.cost,
        )
        self.log.info(
            "job claimed", max_attempts=job.max_attempts, provider=job.route.get("provider")
        )
        run.work = asyncio.create_task(self._produce(run))
        heartbeat = asyncio.create_task(self._heartbeat(run))
        try:
            await asyncio.wait({run.work})
        except asyncio.CancelledError:
            run.work.cancel()
            raise
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

        if run.work.cancelled():
            await self._discard_uploads(run)
            if run.lease_lost:
                self.log.warning("job abandoned: lease lost to another worker")
                return
            outcome = failed(
                WORKER_SHUTDOWN, "the worker stopped before the job finished", retryable=True
            )
        elif (exc := run.work.exception()) is not None:
            self.log.error("job failed unexpectedly", error=repr(exc), exc_info=exc)
            await self._discard_uploads(run)
            outcome = failed(INTERNAL_ERROR, "internal worker error", retryable=True)
        else:
            outcome = run.work.result()
        await self._settle(run, outcome)

    async def _produce(self, run: _Run) -> dict[str, Any]:
        """Input, provider, uploads; returns the outcome to settle."""
        job = run.job
        init_image: bytes | None = None
        if job.kind == "edit" and not job.init_media:
            # job_json finds no live media for params.init_media_id (purged or deleted).
            self.log.warning("input image missing", init_media_id=job.params.get("init_media_id"))
            return failed(INPUT_MISSING, "the input image is no longer stored", retryable=False)
        if job.init_media:
            key = str(job.init_media.get("storage_key") or "")
            try:
                init_image = await self.storage.get(key)
            except NotFound:
                self.log.warning("input image missing", storage_key=key)
                return failed(INPUT_MISSING, "the input image is no longer stored", retryable=False)
            except StorageError as exc:
                self.log.warning("input image unreadable", storage_key=key, error=str(exc))
                return failed(STORAGE_ERROR, "could not read the input image", retryable=True)
            self.log.info("input image loaded", storage_key=key, bytes=len(init_image))

        provider_job = job.provider_job(init_image)
        try:
            result = await self.gateway.run(provider_job)
        except ProviderError as exc:
            self._observe(job, exc.attempts)
            summary = provider_summary(exc.attempts, provider_job.provider)
            self.log.warning(
                "provider failed",
                error_code=exc.code,
                error=exc.message,
                retryable=exc.retryable,
                http_status=summary["http_status"],
                attempts=len(exc.attempts),
            )
            return failed(
                exc.code,
                public_message(exc.code),
                retryable=exc.retryable,
                provider=summary,
                detail=exc.message,
            )
        self._observe(job, result.attempts)
        summary = provider_summary(result.attempts, provider_job.provider)
        self.log.info(
            "provider succeeded",
            outputs=len(result.media),
            http_status=summary["http_status"],
            latency_ms=summary["latency_ms"],
            attempts=len(result.attempts),
        )

        limits = await self._limits(job.model_id)
        try:
            outputs = await asyncio.to_thread(_inspect_all, result.media, job.kind, limits)
        except OutputRejected as exc:
            # Not what the model may return: stored nowhere, refunded in full by SQL.
            self.log.warning("output refused", error_code=exc.code, error=exc.message)
            return failed(
                exc.code,
                public_message(exc.code),
                retryable=False,
                provider=summary,
                detail=exc.message,
            )

        try:
            media = await self._upload(run, outputs)
        except StorageError as exc:
            self.log.warning("upload failed; discarding this attempt's files", error=str(exc))
            await self._discard_uploads(run)
            return failed(
                STORAGE_ERROR, "could not store the output", retryable=True, provider=summary
            )
        outcome: dict[str, Any] = {
            "status": "succeeded",
            "retryable": False,
            "media": media,
            "provider": summary,
        }
        if output := self._output(result):
            outcome["output"] = output
        return outcome

    @staticmethod
    def _output(result: ProviderResult) -> dict[str, Any]:
        # Token usage goes to the database with the text: pricing is SQL's job, not ours.
        output: dict[str, Any] = {}
        if result.text is not None:
            output["text"] = result.text
        if result.usage:
            output["usage"] = dict(result.usage)
        return output

    async def _limits(self, model_id: str) -> Limits:
        """The model's output limits (creditgate.models), cached for a minute."""
        now = time.monotonic()
        cached = self._model_limits.get(model_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            row = await self.db.query_as(
                "select jsonb_build_object('max_width', m.max_width, 'max_height', m.max_height,"
                " 'max_pixels', m.max_pixels) from creditgate.models as m where m.id = %s",
                [model_id],
                role="service_role",
            )
        except (*_DB_ERRORS, ApiError) as exc:
            # The hard caps of creditgate.media still apply; the settle needs the database
            # anyway, so this only matters for a blip.
            self.log.warning("model limits unreadable; hard caps only", error=str(exc))
            return Limits()
        limits = Limits.from_model(row)
        self._model_limits[model_id] = (now + 60.0, limits)
        return limits

    async def _upload(self, run: _Run, outputs: Sequence[Inspected]) -> list[dict[str, Any]]:
        media: list[dict[str, Any]] = []
        for position, blob in enumerate(outputs):
            key = run.job.media_key(position, blob.content_type)
            run.uploaded.append(key)  # before the put: a half-written object is cleaned too
            # Shielded so a shutdown never interrupts a write halfway; cleanup waits for it.
            run.pending_put = asyncio.ensure_future(
                self.storage.put(key, blob.data, blob.content_type)
            )
            await asyncio.shield(run.pending_put)
            run.pending_put = None
            info = media_info(blob)
            media.append(
                {
                    "storage_key": key,
                    "content_type": blob.content_type,
                    "bytes": len(blob.data),
                    **info,
                }
            )
            self.log.info("output stored", storage_key=key, bytes=len(blob.data))
        return media

    async def _discard_uploads(self, run: _Run) -> None:
        if run.pending_put is not None:
            with contextlib.suppress(Exception):
                await run.pending_put
            run.pending_put = None
        for key in run.uploaded:
            try:
                await self.storage.delete(key)
            except StorageError as exc:
                self.log.warning("could not delete output", storage_key=key, error=str(exc))
            else:
                self.log.info("output deleted", storage_key=key)
        run.uploaded.clear()

    async def _heartbeat(self, run: _Run) -> None:
        job = run.job
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            try:
                await self.db.call(
                    "service_heartbeat",
                    {
                        "generation_id": Arg(job.generation_id, "uuid"),
                        "worker_id": Arg(self.worker_id, "text"),
                        "lease_token": Arg(job.lease_token, "text"),
                        "lease_seconds": Arg(self.lease_seconds, "integer"),
                    },
                    role="service_role",
                )
            except ApiError as exc:
                if exc.code == "lease_lost":
                    run.lease_lost = True
                    self.log.warning("lease lost; stopping the job")
                    if run.work is not None:
                        run.work.cancel()
                    return
                self.log.warning("heartbeat refused", code=exc.code)
            except _DB_ERRORS as exc:
                self.log.warning("heartbeat failed", error=str(exc))
            else:
                run.lease_expires = time.monotonic() + self.lease_seconds
                self.log.debug("heartbeat")

    async def _settle(self, run: _Run, outcome: dict[str, Any]) -> None:
        job = run.job
        delay = 0.5
        replaced = False
        started = time.monotonic()
        while True:
            try:
                result = await self.db.call(
                    "service_settle_generation",
                    {
                        "generation_id": Arg(job.generation_id, "uuid"),
                        "worker_id": Arg(self.worker_id, "text"),
                        "lease_token": Arg(job.lease_token, "text"),
                        "outcome": Arg(outcome, "jsonb"),
                    },
                    role="service_role",
                )
                break
            except ApiError as exc:
                if exc.code == "invalid_request" and not replaced:
                    # A worker bug: report a plain failure instead, so the user is refunded
                    # now rather than after every attempt's lease has expired.
                    self.log.error("settle refused the outcome", details=exc.details)
                    await self._discard_uploads(run)
                    outcome = failed(
                        INTERNAL_ERROR, "the worker reported an invalid outcome", retryable=False
                    )
                    replaced = True
                    continue
                # lease_lost: another worker owns the job now (or the reaper took it back).
                # Either way nothing will ever reference this attempt's files.
                log_fn = self.log.warning if exc.code == "lease_lost" else self.log.error
                log_fn("settle refused", code=exc.code, details=exc.details)
                await self._discard_uploads(run)
                return
            except _DB_ERRORS as exc:
                # Settle is idempotent, so keep asking past the lease until the database
                # answers: the same result (it had committed), a success (the lease ran out
                # but nobody took the job yet), or lease_lost (the files are discarded
                # above). Giving up earlier would leave this attempt's uploads referenced
                # by nothing, beyond the reach of cleanup.
                if time.monotonic() - started >= SETTLE_GIVE_UP_SECONDS:
                    self.log.error(
                        "settle failed for too long; its uploads are kept",
                        error=str(exc),
                        keys=list(run.uploaded),
                    )
                    return
                self.log.warning("settle failed; retrying", error=str(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        status = str(result.get("status")) if isinstance(result, Mapping) else "unknown"
        GENERATIONS_SETTLED.labels(model=job.model_id, status=status).inc()
        error = outcome.get("error") or {}
        self.log.info(
            "job settled",
            reported=outcome["status"],
            status=status,
            error_code=error.get("code"),
            retryable=outcome.get("retryable"),
            media=len(outcome.get("media") or []),
            result=result,
        )

    @staticmethod
    def _observe(job: ClaimedJob, attempts: Sequence[Attempt]) -> None:
        for attempt in attempts:
            outcome = "failed" if attempt.error_code else "succeeded"
            PROVIDER_LATENCY.labels(
                provider=attempt.provider, kind=job.kind, outcome=outcome
            ).observe(attempt.latency_ms / 1000)
            if attempt.error_code:
                PROVIDER_ERRORS.labels(provider=attempt.provider, code=attempt.error_code).inc()

    # --- shutdown ------------------------------------------------------------------------

    async def _drain(self) -> None:
        if not self._runs:
            return
        self.log.info("draining", in_flight=len(self._runs), grace_seconds=self.grace_seconds)
        await self._wait_runs(self.grace_seconds, interrupt=self._force)
        leftover = [run for run in self._runs.values() if run.work and not run.work.done()]
        for run in leftover:
            assert run.work is not None
            run.work.cancel()
        if leftover:
            self.log.warning(
                "grace period over: handing unfinished jobs back to the queue",
                jobs=[run.job.generation_id for run in leftover],
            )
        await self._wait_runs(SHUTDOWN_SETTLE_SECONDS)
        for task in list(self._runs):
            self.log.error(
                "job did not settle in time", generation_id=self._runs[task].job.generation_id
            )
            task.cancel()
        await asyncio.gather(*self._runs, return_exceptions=True)

    async def _wait_runs(self, seconds: float, interrupt: asyncio.Event | None = None) -> None:
        """Until every job is done, ``seconds`` pass, or ``interrupt`` is set."""
        deadline = time.monotonic() + seconds
        while self._runs:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (interrupt is not None and interrupt.is_set()):
                return
            waiters: set[asyncio.Future[Any]] = set(self._runs)
            interrupted: asyncio.Task[bool] | None = None
            if interrupt is not None:
                interrupted = asyncio.create_task(interrupt.wait())
                waiters.add(interrupted)
            await asyncio.wait(waiters, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            if interrupted is not None:
                interrupted.cancel()


def _inspect_all(blobs: Sequence[MediaBlob], kind: str, limits: Limits) -> list[Inspected]:
    """Every output checked, stripped and measured (creditgate.media), at most MAX_OUTPUTS."""
    if len(blobs) > MAX_OUTPUTS:
        log.warning("too many outputs; keeping the first", outputs=len(blobs))
    return [inspect_output(blob.data, kind, limits) for blob in blobs[:MAX_OUTPUTS]]


def _reaped_anything(result: Any) -> bool:
    """service_reap_expired_leases returns {requeued, failed, refunded}."""
    if not isinstance(result, Mapping):
        return False
    return any(result.get(key) for key in ("requeued", "failed"))


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


# --- process entry point -------------------------------------------------------------------


async def run_worker(
    settings: Settings,
    *,
    concurrency: int | None = None,
    grace_seconds: float = DEFAULT_GRACE_SECONDS,
    worker_id: str | None = None,
    metrics_port: int | None = None,
) -> None:
    """Build the worker from settings, run it until SIGTERM/SIGINT, then drain and close.

    ``metrics_port``: serve this process's Prometheus metrics on 127.0.0.1:<port>/metrics
    (the HTTP service exposes only its own).
    """
    if not settings.service_database_url:
        raise ValueError("no database: set CREDITGATE_SERVICE_DATABASE_URL or DATABASE_URL")
    jobs = max(1, concurrency or settings.worker_concurrency)
    # Each job holds a connection only for one call (heartbeat, settle); plus claim and reap.
    db = Database(
        settings.service_database_url,
        min_size=1,
        max_size=jobs + 3,
        timeout=settings.pool_timeout,
    )
    storage = wiring.make_storage(settings)
    metrics = (
        start_http_server(metrics_port, addr="127.0.0.1", registry=REGISTRY)[0]
        if metrics_port
        else None
    )
    try:
        # Provider traffic goes through the outbound address policy: each request carries its
        # job's policy (trusted endpoint origin, allow_local_urls) and connects to the
        # address that policy checked.
        async with guarded_client(NetPolicy()) as http:
            worker = Worker(
                settings,
                db,
                storage,
                wiring.make_gateway(settings, http),
                worker_id=worker_id,
                concurrency=jobs,
                grace_seconds=grace_seconds,
            )
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, worker.handle_signal, signum)
            await db.open()
            try:
                await worker.run()
            finally:
                for signum in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(signum)
                await db.close()
    finally:
        if isinstance(storage, S3Storage):
            storage.close()
        if metrics is not None:
            metrics.shutdown()
