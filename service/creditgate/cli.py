"""The ``creditgate`` command line."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
import uuid

import typer
from rich.console import Console
from rich.table import Table

from creditgate import localdb, migrate, supabase_gen, typegen
from creditgate.config import DatabaseSettings, Settings, load_dev_env
from creditgate.observability import configure_logging

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
migrate_app = typer.Typer(no_args_is_help=True, help="Database migrations (any DATABASE_URL).")
app.add_typer(migrate_app, name="migrate")

console = Console(stderr=True)
out = Console()


def _database_url(url: str | None) -> str:
    settings = DatabaseSettings()
    if url:
        return url
    if settings.url:
        return settings.url
    return localdb.dsn_for(
        settings.admin_url, dbname=settings.local_name, user=localdb.DEPLOYER_ROLE
    )


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(1)


UrlOption = typer.Option(None, "--database-url", help="Defaults to $DATABASE_URL or the local db.")


@migrate_app.command("status")
def migrate_status(database_url: str | None = UrlOption) -> None:
    """Show every migration file and whether it is applied."""
    rows = migrate.status(_database_url(database_url))
    table = Table("kind", "file", "state")
    for kind, name, state in rows:
        style = {"applied": "green", "pending": "yellow"}.get(state, "red")
        table.add_row(kind, name, f"[{style}]{state}[/]")
    out.print(table)
    if any(state in ("TAMPERED", "missing on disk") for _, _, state in rows):
        raise typer.Exit(1)


@migrate_app.command("plan")
def migrate_plan(database_url: str | None = UrlOption) -> None:
    """Dry run: list what `apply` would execute."""
    plan = migrate.inspect(_database_url(database_url))
    for f, _ in plan.tampered:
        console.print(f"[red]TAMPERED[/] {f.name}")
    for action in plan.actions:
        out.print(f"would apply {action.file.name} ({action.reason})")
    if plan.empty:
        out.print("nothing to do")
    if plan.tampered:
        raise typer.Exit(1)


@migrate_app.command("apply")
def migrate_apply(database_url: str | None = UrlOption) -> None:
    """Apply pending migrations in one transaction under an advisory lock."""
    try:
        plan = migrate.apply(_database_url(database_url), progress=lambda m: console.print(m))
    except migrate.MigrationError as exc:
        _fail(f"{exc}\nnothing was changed")
        return
    out.print("nothing to do" if plan.empty else f"applied {len(plan.actions)} file(s)")


@migrate_app.command("generate")
def migrate_generate(
    check: bool = typer.Option(False, "--check", help="Fail if regenerating would change files."),
) -> None:
    """Generate supabase/migrations/ from db/."""
    root = migrate.project_root()
    db_dir, out_dir = root / "db", root / "supabase" / "migrations"
    try:
        new = (
            supabase_gen.pending(db_dir, out_dir)
            if check
            else supabase_gen.generate(db_dir, out_dir)
        )
    except migrate.MigrationError as exc:
        _fail(str(exc))
        return
    for g in new:
        out.print(f"{'stale, would add' if check else 'wrote'} supabase/migrations/{g.filename}")
    if check and new:
        _fail("supabase/migrations is out of date: run `creditgate migrate generate`")
    if not new:
        out.print("supabase/migrations is up to date")


@app.command("types")
def types_cmd(
    check: bool = typer.Option(False, "--check", help="Fail if regenerating would change files."),
) -> None:
    """Generate supabase/types/ (postgres-meta's Database type, the result schemas)."""
    root = migrate.project_root()
    try:
        outputs = typegen.generate(
            root, DatabaseSettings().admin_url, progress=lambda m: console.print(m)
        )
    except (typegen.TypegenError, migrate.MigrationError) as exc:
        _fail(str(exc))
        return
    changed = typegen.stale(root, outputs)
    if check:
        for path in changed:
            out.print(f"stale: {path}")
        if changed:
            _fail("supabase/types is out of date: run `creditgate types`")
        out.print("supabase/types is up to date")
        return
    typegen.write(root, outputs)
    for o in outputs:
        out.print(f"{'wrote' if o.path in changed else 'unchanged'} {o.path}")


@app.command("bootstrap")
def bootstrap_cmd() -> None:
    """Create the local database and apply the Supabase-parity bootstrap."""
    settings = DatabaseSettings()
    created = localdb.ensure_database(settings.admin_url, settings.local_name)
    out.print(f"database {settings.local_name} {'created' if created else 'exists'}; bootstrapped")


@app.command("up")
def up(
    port: int | None = typer.Option(
        None, "--port", help="Service port (default $CREDITGATE_PORT or 8000)."
    ),
    no_worker: bool = typer.Option(False, "--no-worker", help="Do not start a worker."),
) -> None:
    """Run the embedded default: local database, migrations, seed, runner, service, worker."""
    from creditgate import devserver

    try:
        code = devserver.up(port=port, worker=not no_worker, progress=lambda m: console.print(m))
    except (devserver.DevServerError, migrate.MigrationError) as exc:
        _fail(str(exc))
        return
    raise typer.Exit(code)


# --- worker-side commands ---------------------------------------------------------------------


def _service_settings() -> Settings:
    """Settings for service-side commands; the embedded default when nothing is configured.

    With no database configured, the local database (as ``authenticator``, like PostgREST)
    and the dev secrets of ``.creditgate/dev.env`` are used, as `creditgate up` does.
    """
    settings = Settings()
    if settings.service_database_url:
        return settings
    load_dev_env()
    db = DatabaseSettings()
    url = localdb.dsn_for(db.admin_url, dbname=db.local_name, user="authenticator")
    settings = dataclasses.replace(Settings(), service_database_url=url)
    return settings


@app.command("worker")
def worker_cmd(
    concurrency: int | None = typer.Option(
        None,
        "--concurrency",
        "-c",
        min=1,
        max=100,
        help="Jobs in flight at once (default $CREDITGATE_WORKER_CONCURRENCY or 2).",
    ),
    grace: float = typer.Option(
        30.0, "--grace", min=0.0, help="Seconds in-flight jobs get to finish on SIGTERM/SIGINT."
    ),
    worker_id: str | None = typer.Option(None, "--worker-id", help="Default: host:pid:random."),
    metrics_port: int | None = typer.Option(
        None, "--metrics-port", help="Serve Prometheus metrics on 127.0.0.1:PORT/metrics."
    ),
) -> None:
    """Claim generations (woken by LISTEN/NOTIFY), run them, store outputs, settle."""
    from creditgate.worker import run_worker

    settings = _service_settings()
    configure_logging(settings.log_level)
    try:
        asyncio.run(
            run_worker(
                settings,
                concurrency=concurrency,
                grace_seconds=grace,
                worker_id=worker_id,
                metrics_port=metrics_port,
            )
        )
    except ValueError as exc:
        _fail(str(exc))


@app.command("runner")
def runner_cmd(
    host: str | None = typer.Option(None, "--host", help="Default $CREDITGATE_RUNNER_HOST."),
    port: int | None = typer.Option(None, "--port", help="Default $CREDITGATE_RUNNER_PORT (7860)."),
    allow_remote: bool = typer.Option(
        False, "--allow-remote", help="Allow a non-loopback address (only the secret guards it)."
    ),
) -> None:
    """Run the local runner (AUTOMATIC1111 + OpenAI chat API, deterministic, no weights)."""
    from creditgate import runner

    settings = _service_settings()
    try:
        runner.serve(
            host or settings.runner_host,
            port or settings.runner_port,
            settings.runner_secret,
            allow_remote=allow_remote,
        )
    except ValueError as exc:
        _fail(str(exc))


@app.command("cleanup")
def cleanup_cmd(
    batch_size: int = typer.Option(500, "--batch-size", min=1, max=10_000),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Stop after this many files."),
) -> None:
    """Delete expired temporary (and owner-deleted) media files from storage; mark them purged."""
    from creditgate.cleanup import PurgeStats, run_cleanup

    settings = _service_settings()
    configure_logging("warning")

    def show(stats: PurgeStats) -> None:
        console.print(f"batch {stats.batches}: {stats.purged} purged, {stats.failed} failed")

    stats = asyncio.run(run_cleanup(settings, batch_size=batch_size, limit=limit, progress=show))
    failures = f", {stats.failed} could not be deleted" if stats.failed else ""
    out.print(f"purged {stats.purged} media file(s){failures}")
    if stats.failed:
        raise typer.Exit(1)


@app.command("grant")
def grant_cmd(
    user_id: str = typer.Option(..., "--user-id", help="The auth.users id (a UUID)."),
    amount: int = typer.Option(..., "--amount", min=1, help="Credits to grant."),
    reason: str = typer.Option(..., "--reason", help="Recorded on the ledger entry."),
    key: str | None = typer.Option(
        None, "--key", help="Idempotency key (stored as grant:KEY); rerunning with it grants once."
    ),
    category: str = typer.Option("promotional", "--category", help="promotional or paid."),
) -> None:
    """Grant credits to a user (ledger entry type `grant`), idempotently."""
    from creditgate.db import ApiError, Arg, Database

    try:
        user = str(uuid.UUID(user_id))
    except ValueError:
        _fail(f"--user-id {user_id!r} is not a UUID")
        return
    settings = _service_settings()
    idempotency_key = f"grant:{key or uuid.uuid4()}"

    async def go() -> object:
        db = Database(settings.service_database_url, min_size=1, max_size=1)
        await db.open()
        try:
            return await db.call(
                "service_grant_credits",
                {
                    "user_id": Arg(user, "uuid"),
                    "amount": Arg(amount, "bigint"),
                    "entry_type": Arg("grant", "text"),
                    "idempotency_key": Arg(idempotency_key, "text"),
                    "category": Arg(category, "text"),
                    "reason": Arg(reason, "text"),
                },
                role="service_role",
            )
        finally:
            await db.close()

    try:
        result = asyncio.run(go())
    except ApiError as exc:
        _fail(f"{exc.code}: {json.dumps(exc.details) if exc.details is not None else exc.message}")
        return
    body = dict(result) if isinstance(result, dict) else {"result": result}
    out.print_json(json.dumps({"idempotency_key": idempotency_key, **body}))


# --- service-side commands --------------------------------------------------------------------


@app.command("serve")
def serve_cmd(
    host: str | None = typer.Option(None, "--host", help="Default $CREDITGATE_HOST (127.0.0.1)."),
    port: int | None = typer.Option(None, "--port", help="Default $CREDITGATE_PORT (8000)."),
) -> None:
    """Run the HTTP API with uvicorn (no migrations: run `creditgate migrate apply` first)."""
    import uvicorn

    from creditgate.app import create_app

    settings = _service_settings()
    settings = dataclasses.replace(settings, host=host or settings.host, port=port or settings.port)
    try:
        application = create_app(settings)
    except ValueError as exc:
        _fail(str(exc))
        return
    # proxy_headers off: the app decides whom to believe about the client IP
    # (CREDITGATE_TRUSTED_PROXY); uvicorn would otherwise trust X-Forwarded-For from loopback.
    uvicorn.run(
        application,
        host=settings.host,
        port=settings.port,
        proxy_headers=False,
        server_header=False,
        access_log=False,
        log_config=None,
        lifespan="on",
        # Past this many connections and tasks uvicorn answers 503 at once (long-polls hold
        # connections open: without a ceiling they could starve every other request).
        limit_concurrency=settings.limit_concurrency or None,
    )


@app.command("token")
def token_cmd(
    user_id: str | None = typer.Option(
        None, "--user-id", help="The auth.users id (a UUID). Default: a new random one."
    ),
    email: str | None = typer.Option(None, "--email", help="The email claim."),
    ttl: int = typer.Option(3600, "--ttl", min=1, help="Seconds until the token expires."),
) -> None:
    """Print a dev access token (HS256, signed with SUPABASE_JWT_SECRET)."""
    from creditgate.auth import mint_token

    settings = Settings()
    if not settings.jwt_secret:
        load_dev_env()  # the embedded default's secret, created once in .creditgate/dev.env
        settings = Settings()
    try:
        user = str(uuid.UUID(user_id)) if user_id else str(uuid.uuid4())
        token = mint_token(settings.jwt_secret, user, email=email, ttl_seconds=ttl)
    except ValueError as exc:
        _fail(str(exc))
        return
    if not user_id:
        console.print(f"user id: {user}", highlight=False)
    out.print(token, soft_wrap=True, highlight=False)


# --- ledger: audit and benchmark --------------------------------------------------------------


@app.command("audit")
def audit_cmd(
    database_url: str | None = UrlOption,
    since: str | None = typer.Option(
        None, "--since", help="Only users with activity since: ISO timestamp or 30m, 24h, 7d."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the raw audit JSON."),
) -> None:
    """Check every money invariant (creditgate.audit() as service_role); exit 1 on failures."""
    from creditgate import audit_report

    code = audit_report.main(
        _database_url(database_url), since=since, as_json=as_json, out=out, err=console
    )
    raise typer.Exit(code)


@app.command("bench")
def bench_cmd(
    users: int = typer.Option(10_000, "--users", min=2, help="Users to seed."),
    duration: int = typer.Option(15, "--duration", min=1, help="Seconds per workload."),
    clients: int = typer.Option(8, "--clients", min=1, help="pgbench clients (-c)."),
    jobs: int = typer.Option(2, "--jobs", min=1, help="pgbench threads (-j)."),
    rounds: int = typer.Option(
        3, "--rounds", min=1,
        help="Run the pgbench workloads this many times, round-robin; ratios are the median "
        "of the rounds'.",
    ),
    database: str = typer.Option(
        "creditgate_bench", "--database", help="Database to DROP and recreate for the run."
    ),
    model: str | None = typer.Option(
        None, "--model", help="Image model for request_generation (default: first enabled)."
    ),
    params: str = typer.Option(
        '{"prompt": "bench", "width": 512, "height": 512, "steps": 20}',
        "--params",
        help="request_generation params (JSON).",
    ),
    http: bool = typer.Option(
        True, "--http/--no-http",
        help="Also POST /v1/generations through a running `creditgate serve` (request path).",
    ),
    http_duration: int | None = typer.Option(
        None, "--http-duration", min=1, help="Seconds of HTTP load (default: --duration)."
    ),
    http_clients: int | None = typer.Option(
        None, "--http-clients", min=1, help="Concurrent HTTP clients (default: --clients)."
    ),
    growth: bool = typer.Option(
        False, "--growth/--no-growth",
        help="Also measure ledger growth: bytes and WAL per generation, balance reads at "
        "--growth-small-rows vs --growth-large-rows ledger rows (database <name>_growth).",
    ),
    growth_users: int = typer.Option(1_000, "--growth-users", min=2, help="Growth users."),
    growth_cycles: int = typer.Option(
        2_000, "--growth-cycles", min=1, help="Generations (request, claim, settle) measured."
    ),
    growth_small_rows: int = typer.Option(
        10_000, "--growth-small-rows", min=1, help="Ledger rows of the first balance-read run."
    ),
    growth_large_rows: int = typer.Option(
        1_000_000, "--growth-large-rows", min=2, help="Ledger rows of the second one."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 if a ratio misses its target."),
) -> None:
    """Benchmark spend_credits, request_generation (pgbench) and POST /v1/generations (HTTP)
    against a tutorial baseline; optionally ledger growth."""
    from creditgate import bench

    try:
        parsed = json.loads(params)
        if not isinstance(parsed, dict):
            raise ValueError("--params must be a JSON object")
        cfg = bench.BenchConfig(
            admin_url=DatabaseSettings().admin_url, database=database, users=users,
            duration=duration, clients=clients, jobs=jobs, rounds=rounds, model_id=model,
            params=parsed,
            http=http, http_duration=http_duration, http_clients=http_clients,
            growth=growth, growth_users=growth_users, growth_cycles=growth_cycles,
            growth_small_rows=growth_small_rows, growth_large_rows=growth_large_rows,
        )
    except ValueError as exc:
        _fail(str(exc))
        return
    raise typer.Exit(bench.main(cfg, as_json=as_json, strict=strict, out=out, err=console))


@app.command("instructions")
def instructions_cmd(
    users: int = typer.Option(1_000, "--users", min=2, help="Users to seed."),
    calls: int = typer.Option(
        1_000, "--calls", min=1, help="Transactions counted per workload (after --warmup)."
    ),
    warmup: int = typer.Option(
        200, "--warmup", min=1, help="Transactions of the short run subtracted from the long one."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Count the server's CPU instructions per transaction (valgrind) for the baseline
    spend, spend_credits and request_generation, on a throwaway cluster."""
    from creditgate.bench import instructions

    cfg = instructions.InstructionsConfig(users=users, calls=calls, warmup=warmup)
    raise typer.Exit(instructions.main(cfg, as_json=as_json, out=out, err=console))


def _register_ops() -> None:
    from creditgate import ops_cli

    ops_cli.register(app, _database_url, out, console)


_register_ops()


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
