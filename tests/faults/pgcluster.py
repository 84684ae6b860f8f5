"""The throwaway cluster (creditgate.bench.pgcluster) for tests that must crash the database server.

``crash()`` is ``pg_ctl stop -m immediate`` (no checkpoint, every backend killed at once);
``start`` runs crash recovery.

    with Cluster.create() as cluster:
        cluster.prepare_creditgate()          # bootstrap + migrations + db/testing, as usual
        cluster.crash(); cluster.start()
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

import psycopg

from creditgate import localdb, migrate
from creditgate.bench import pgcluster

DBNAME = "creditgate"
ROOT = Path(__file__).resolve().parents[2]


class Cluster(pgcluster.Cluster):
    @classmethod
    def create(cls, *, prefix: str = "cg-faults-pg-", settings: str = "") -> Self:
        return super().create(prefix=prefix, settings=settings)

    def crash(self) -> None:
        """``pg_ctl stop -m immediate``: every backend dies, no shutdown checkpoint."""
        self.stop("immediate")

    # --- connections ------------------------------------------------------------------------

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
