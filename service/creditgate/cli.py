"""The ``creditgate`` command line."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.table import Table

from creditgate import localdb, migrate, supabase_gen
from creditgate.config import DatabaseSettings

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


@app.command("bootstrap")
def bootstrap_cmd() -> None:
    """Create the local database and apply the Supabase-parity bootstrap."""
    settings = DatabaseSettings()
    created = localdb.ensure_database(settings.admin_url, settings.local_name)
    out.print(f"database {settings.local_name} {'created' if created else 'exists'}; bootstrapped")


@app.command("up")
def up() -> None:
    """Prepare the embedded default: local database, bootstrap, migrations, seed."""
    settings = DatabaseSettings()
    if settings.url:
        _fail("`up` runs the embedded local default; unset DATABASE_URL")
    created = localdb.ensure_database(settings.admin_url, settings.local_name)
    console.print(f"database {settings.local_name}: {'created' if created else 'exists'}")
    url = _database_url(None)
    plan = migrate.apply(url, progress=lambda m: console.print(m))
    console.print("migrations: " + ("up to date" if plan.empty else f"{len(plan.actions)} applied"))
    seed = migrate.project_root() / "supabase" / "seed.sql"
    if seed.exists():
        localdb.run_sql_file(url, seed)
        console.print("seed: loaded supabase/seed.sql")
    out.print(f"ready: {url}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
