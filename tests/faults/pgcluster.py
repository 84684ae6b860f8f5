"""A throwaway PostgreSQL 15 cluster for tests that must crash the database server.

The shared server on 127.0.0.1:5432 is never touched: this is a private cluster made with
``initdb`` in a temporary directory owned by the ``postgres`` OS user (tests run as root and
PostgreSQL refuses to run as root), trust auth, loopback only, its unix socket inside the
directory, a free port. ``pg_ctl stop -m immediate`` on it is a crash (no checkpoint, every
backend killed at once); ``start`` runs crash recovery.

    with Cluster.create() as cluster:
        cluster.prepare_creditgate()          # bootstrap + migrations + db/testing, as usual
        cluster.crash(); cluster.start()
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import psycopg

from creditgate import localdb, migrate
from tests.fakes import free_port

BIN = Path("/usr/lib/postgresql/15/bin")
OS_USER = "postgres"
DBNAME = "creditgate"
ROOT = Path(__file__).resolve().parents[2]


class Cluster:
    def __init__(self, base: Path, port: int) -> None:
        self.base = base
        self.port = port
        self.data = base / "data"
        self.sockets = base / "sock"
        self.log = base / "postgres.log"

    # --- lifecycle --------------------------------------------------------------------------

    @classmethod
    def create(cls) -> Cluster:
        """initdb a new cluster and start it; remove everything if that fails."""
        base = Path(tempfile.mkdtemp(prefix="cg-faults-pg-", dir="/tmp"))
        cluster = cls(base, free_port())
        try:
            user = pwd.getpwnam(OS_USER)
            cluster.sockets.mkdir()
            for path in (base, cluster.sockets):
                os.chown(path, user.pw_uid, user.pw_gid)
            cluster._pg(
                "initdb",
                "-D", str(cluster.data),
                "-U", "postgres",
                "-A", "trust",
                "-E", "UTF8",
                "--locale=C",
                "--no-sync",
                timeout=60,
            )  # fmt: skip
            conf = cluster.data / "postgresql.conf"
            with conf.open("a") as f:
                f.write(
                    "\n# creditgate fault tests\n"
                    f"port = {cluster.port}\n"
                    "listen_addresses = '127.0.0.1'\n"
                    f"unix_socket_directories = '{cluster.sockets}'\n"
                    "max_connections = 60\n"
                    "shared_buffers = 32MB\n"
                    "log_min_messages = warning\n"
                )
            for attempt in range(3):
                try:
                    cluster.start()
                    break
                except RuntimeError:
                    # The free port was taken meanwhile (the server is shared with other
                    # test runs): take another one; a later `port =` line wins.
                    if attempt == 2 or "already in use" not in cluster.server_log():
                        raise
                    cluster.port = free_port()
                    with conf.open("a") as f:
                        f.write(f"port = {cluster.port}\n")
        except BaseException:
            cluster.destroy()
            raise
        return cluster

    def _pg(self, program: str, *args: str, timeout: float = 60) -> None:
        out = self.base / f"{program}.out"
        with out.open("ab") as sink:
            # pg_ctl's postmaster writes to self.log; nothing inherits a pipe of ours.
            proc = subprocess.run(
                ["runuser", "-u", OS_USER, "--", str(BIN / program), *args],
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                cwd=self.base,
                check=False,
            )
        if proc.returncode != 0:
            raise RuntimeError(
                f"{program} {' '.join(args)} failed ({proc.returncode}):\n"
                f"{out.read_text(errors='replace')[-3000:]}\n{self.server_log()[-3000:]}"
            )

    def server_log(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def start(self) -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def crash(self) -> None:
        """``pg_ctl stop -m immediate``: every backend dies, no shutdown checkpoint."""
        self._pg("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "30", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def destroy(self) -> None:
        """Stop the server (if it runs) and delete the directory. Never raises."""
        if self.running():
            try:
                self.crash()
            except (RuntimeError, subprocess.SubprocessError, OSError):
                self._kill_postmaster()
        shutil.rmtree(self.base, ignore_errors=True)

    def _kill_postmaster(self) -> None:
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        try:
            os.kill(pid, 9)  # only this cluster's postmaster: its pid file is ours
        except OSError:
            return
        time.sleep(0.5)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.destroy()

    # --- connections ------------------------------------------------------------------------

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def superuser_url(self) -> str:
        """postgres@ the creditgate database."""
        return localdb.dsn_for(self.admin_url, dbname=DBNAME)

    def url(self, user: str = localdb.DEPLOYER_ROLE) -> str:
        return localdb.dsn_for(self.admin_url, dbname=DBNAME, user=user)

    @property
    def owner_url(self) -> str:
        return self.url()

    @property
    def api_url(self) -> str:
        return self.url("authenticator")

    def prepare_creditgate(self) -> None:
        """What tests/dbutil.py does for the template, minus pgTAP: a creditgate database."""
        localdb.create_database(self.admin_url, DBNAME)
        localdb.bootstrap(self.admin_url, DBNAME)
        migrate.apply(self.owner_url)
        with psycopg.connect(self.owner_url, autocommit=True) as conn:
            conn.execute("set client_min_messages = warning")
            for path in sorted((ROOT / "db" / "testing").glob("*.sql")):
                conn.execute(path.read_bytes(), prepare=False)

    def accepts_connections(self) -> bool:
        try:
            with psycopg.connect(self.owner_url, connect_timeout=2) as conn:
                conn.execute("select 1")
            return True
        except psycopg.Error:
            return False
