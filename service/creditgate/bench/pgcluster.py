"""A throwaway PostgreSQL 15 cluster in a temporary directory.

Made with ``initdb``, trust auth, loopback only, its unix socket inside the directory, a
free port. Owned by the ``postgres`` OS user when running as root (PostgreSQL refuses to
run as root), else by the current user. The shared server is never touched. Used where a
server must be stopped, crashed or run in single-user mode: the fault tests and
``creditgate instructions``.

    with Cluster.create() as cluster:
        ...  # cluster.admin_url, cluster.stop(), cluster.single_user_command(...)
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

BIN = Path("/usr/lib/postgresql/15/bin")
OS_USER = "postgres"


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_owner() -> tuple[int, int]:
    """uid and gid of the OS user clusters run as: ``postgres`` under root, else the caller."""
    if os.geteuid() == 0:
        user = pwd.getpwnam(OS_USER)
        return user.pw_uid, user.pw_gid
    return os.geteuid(), os.getegid()


def as_server_user(argv: list[str]) -> list[str]:
    """argv run as the OS user that owns clusters: ``postgres`` under root, else unchanged."""
    if os.geteuid() == 0:
        return ["runuser", "-u", OS_USER, "--", *argv]
    return argv


class Cluster:
    def __init__(self, base: Path, port: int) -> None:
        self.base = base
        self.port = port
        self.data = base / "data"
        self.sockets = base / "sock"
        self.log = base / "postgres.log"

    @classmethod
    def create(cls, *, prefix: str = "cg-pg-", settings: str = "") -> Self:
        """initdb a new cluster and start it; remove everything if that fails.

        settings: extra postgresql.conf lines."""
        if not (BIN / "initdb").exists():
            raise RuntimeError(f"{BIN / 'initdb'} not found: install postgresql-15")
        base = Path(tempfile.mkdtemp(prefix=prefix))  # $TMPDIR, else /tmp
        cluster = cls(base, free_port())
        try:
            cluster.sockets.mkdir()
            for path in (base, cluster.sockets):
                os.chown(path, *server_owner())
            cluster.run_pg(
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
                    "\n# throwaway cluster (creditgate)\n"
                    f"port = {cluster.port}\n"
                    "listen_addresses = '127.0.0.1'\n"
                    f"unix_socket_directories = '{cluster.sockets}'\n"
                    "max_connections = 60\n"
                    "shared_buffers = 32MB\n"
                    "log_min_messages = warning\n"
                    f"{settings}\n"
                )
            for attempt in range(3):
                try:
                    cluster.start()
                    break
                except RuntimeError:
                    # The free port was taken meanwhile (the server is shared with other
                    # runs): take another one; a later `port =` line wins.
                    if attempt == 2 or "already in use" not in cluster.server_log():
                        raise
                    cluster.port = free_port()
                    with conf.open("a") as f:
                        f.write(f"port = {cluster.port}\n")
        except BaseException:
            cluster.destroy()
            raise
        return cluster

    def run_pg(self, program: str, *args: str, timeout: float = 60) -> None:
        """Run one of PostgreSQL's programs as the cluster's OS user; RuntimeError on failure."""
        out = self.base / f"{program}.out"
        with out.open("ab") as sink:
            # pg_ctl's postmaster writes to self.log; nothing inherits a pipe of ours.
            proc = subprocess.run(
                as_server_user([str(BIN / program), *args]),
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
        self.run_pg("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m mode``: fast shuts down cleanly, immediate is a crash."""
        self.run_pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def destroy(self) -> None:
        """Stop the server (if it runs) and delete the directory. Never raises."""
        if self.running():
            try:
                self.stop("immediate")
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

    def single_user_command(self, dbname: str, *settings: str) -> list[str]:
        """argv of a single-user backend on ``dbname`` (the server must be stopped): it runs
        each line of its stdin as one transaction. settings: ``name=value``."""
        argv = [str(BIN / "postgres"), "--single", "-D", str(self.data)]
        for setting in settings:
            argv += ["-c", setting]
        return [*argv, dbname]

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.destroy()
