"""A PostgreSQL cluster of a test's own (initdb into a temp folder, its own port), for
tests that must stop and start the database; the machine's own server is never touched."""

from __future__ import annotations

import os
import pwd
import subprocess
from pathlib import Path

from support.net import free_port
from support.tools import require_executable, tool_missing

__all__ = ["OwnCluster"]


def _bin(name: str) -> str:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/" + name))
    if versions:
        return str(versions[-1])
    return require_executable(name, install="apt-get install postgresql")


class OwnCluster:
    """initdb + pg_ctl on a free loopback port; run as the ``postgres`` user when the test
    runs as root (PostgreSQL refuses to run as root)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.sockets = folder / "sockets"
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self._user: list[str] = []
        folder.mkdir(parents=True, exist_ok=True)
        self.sockets.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            try:
                entry = pwd.getpwnam("postgres")
            except KeyError:
                tool_missing(
                    "no 'postgres' user to run a test cluster as (apt-get install postgresql)"
                )
            for path in (folder, self.sockets):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            self._user = ["runuser", "-u", "postgres", "--"]
        self._run(
            _bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync"
        )

    def start(self) -> None:
        """Starts the server and waits until it accepts connections."""
        options = f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            _bin("pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.folder / "server.log"),
            "-w",
            "start",
        )

    def stop(self) -> None:
        """Stops the server at once (clients' connections are cut, as in a crash or a
        failover); nothing when it is not running."""
        status = subprocess.run(
            [*self._user, _bin("pg_ctl"), "-D", str(self.data), "status"],
            capture_output=True,
            check=False,
        )
        if status.returncode == 0:
            self._run(_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def _run(self, *command: str) -> None:
        subprocess.run([*self._user, *command], check=True, capture_output=True, timeout=120)
