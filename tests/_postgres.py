"""A real, throwaway PostgreSQL server for the survey tests and benchmark (Debian's `postgresql`).

`PostgresServer.start(folder)` runs initdb and pg_ctl in `folder` (data, log and unix socket
there) and listens on a free loopback port. PostgreSQL refuses to run as root, so when we are
root the server runs as the `postgres` system user (created by the Debian package) through
`runuser`. `make test` installs the package (`make postgres`); without it, the fixture fails with
one sentence instead of skipping, so a missing database can never pass silently.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

MISSING = ("PostgreSQL server binaries (initdb, pg_ctl) are not installed; `make test` installs them "
           "(make postgres: apt-get install postgresql).")


def find_bindir() -> Path | None:
    """Folder holding initdb and pg_ctl: newest /usr/lib/postgresql/<v>/bin, else the PATH."""
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if versions:
        return Path(versions[-1]).parent
    found = shutil.which("initdb")
    return Path(found).parent if found and shutil.which("pg_ctl") else None


@dataclass(kw_only=True)
class PostgresServer:
    """One running server: `url(name)` is a SQLAlchemy URL for database `name` on it."""

    bindir: Path  # where initdb/pg_ctl/postgres live
    folder: Path  # data/, server.log and the unix socket
    port: int  # loopback TCP port
    run_as: list[str]  # command prefix that runs a program as the server's owner

    @classmethod
    def start(cls, folder: Path, fsync: bool = False, max_connections: int = 200) -> PostgresServer:
        """initdb + pg_ctl start in `folder`; fsync=False for tests (only the app is ever killed)."""
        from survey.examples import free_port

        bindir = find_bindir()
        if bindir is None:
            raise RuntimeError(MISSING)
        folder.mkdir(parents=True, exist_ok=True)
        run_as = []
        if os.geteuid() == 0:  # postgres refuses root: hand the folder to the package's system user
            shutil.chown(folder, "postgres", "postgres")
            run_as = ["runuser", "-u", "postgres", "--"]
        server = cls(bindir=bindir, folder=folder, port=free_port(), run_as=run_as)
        server._run("initdb", "-D", str(folder / "data"), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                    "--no-sync", "--locale=C.UTF-8")
        options = (f"-c listen_addresses=127.0.0.1 -p {server.port} -k {folder} -c max_connections={max_connections}"
                   f" -c fsync={'on' if fsync else 'off'}"
                   f" -c synchronous_commit={'on' if fsync else 'off'} -c full_page_writes={'on' if fsync else 'off'}")
        server._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(folder / "data"), "-l", str(folder / "server.log"),
                    "-o", options)
        return server

    def _run(self, program: str, *args: str) -> None:
        cmd = [*self.run_as, str(self.bindir / program), *args]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=self.folder)
        if done.returncode != 0:
            log = self.folder / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{program} failed ({done.returncode}): {done.stderr[-2000:]} {tail}")

    def url(self, name: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def create_database(self, name: str) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def restart(self) -> None:
        """Stop (ending every client connection) and start again with the same options."""
        self._run("pg_ctl", "restart", "-m", "fast", "-w", "-t", "60", "-D", str(self.folder / "data"),
                  "-l", str(self.folder / "server.log"))

    def stop(self) -> None:
        """Stop at once (immediate: no shutdown checkpoint; the folder is thrown away after this)."""
        self._run("pg_ctl", "stop", "-m", "immediate", "-w", "-D", str(self.folder / "data"))


def start_in_tempdir(fsync: bool = False) -> PostgresServer:
    """A server in a fresh folder under the system temp dir (the caller stops it and removes .folder)."""
    return PostgresServer.start(Path(tempfile.mkdtemp(prefix="ltxlab-pg-")), fsync=fsync)
