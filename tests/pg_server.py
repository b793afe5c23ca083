"""A scratch PostgreSQL server for the store tests, started from the machine's own PostgreSQL binaries.

The cluster lives in a temporary folder and listens on a Unix socket only. It has two roles, as a clinic's
server would: `skinapp_owner` owns the tables (and sets them up), `skinapp_app` is what the application
connects as. `SKINAPP_TEST_POSTGRES_URL` may instead name a superuser URL of a server of your own.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import sqlalchemy

OWNER_ROLE, APP_ROLE = "skinapp_owner", "skinapp_app"
_counter = itertools.count()


def _binaries() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(candidates[-1]).parent if candidates else None


def _scratch_root() -> str | None:
    """/dev/shm where it has room, else the usual temporary folder. In memory, a database is made three times
    faster, and the cluster's thousands of files go at once at the end: on the development machine's disk (ext4
    mounted with `discard`) deleting them took 25 s after a full run."""
    try:
        if os.access("/dev/shm", os.W_OK) and shutil.disk_usage("/dev/shm").free > 2 * 1024**3:
            return "/dev/shm"
    except OSError:
        pass
    return None


class ScratchPostgres:
    def __init__(self, admin_url: str, folder: Path | None = None, stop: list[str] | None = None):
        self.admin_url = admin_url
        self.folder = folder
        self._stop = stop
        engine = sqlalchemy.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            for role in (OWNER_ROLE, APP_ROLE):
                exists = connection.exec_driver_sql(f"SELECT 1 FROM pg_roles WHERE rolname = '{role}'").first()
                if not exists:
                    connection.exec_driver_sql(f"CREATE ROLE {role} LOGIN")
        engine.dispose()

    @classmethod
    def start(cls) -> ScratchPostgres:
        """Raises RuntimeError with the reason where no server can be started here."""
        given = os.environ.get("SKINAPP_TEST_POSTGRES_URL")
        if given:
            return cls(given)
        binaries = _binaries()
        if binaries is None:
            raise RuntimeError("PostgreSQL's binaries (initdb) are not installed and SKINAPP_TEST_POSTGRES_URL is not set")
        run_as: list[str] = []
        folder = Path(tempfile.mkdtemp(prefix="skinapp-pg-", dir=_scratch_root()))
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as the postgres user
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("running as root and there is no postgres user to run PostgreSQL as") from None
            os.chown(folder, user.pw_uid, user.pw_gid)
            run_as = ["runuser", "-u", "postgres", "--"]
        data, socket = folder / "data", folder
        subprocess.run([*run_as, str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                        "--no-sync", "-E", "UTF8"], check=True, capture_output=True)
        options = f"-k {socket} -c listen_addresses='' -p 54329 -F -c fsync=off"
        subprocess.run([*run_as, str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-w", "-l",
                        str(folder / "server.log"), "start"], check=True, capture_output=True)
        stop = [*run_as, str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]
        return cls(f"postgresql+psycopg://postgres@/postgres?host={socket}&port=54329", folder, stop)

    def url(self, database: str, role: str) -> str:
        base = sqlalchemy.engine.make_url(self.admin_url)
        return base.set(database=database, username=role).render_as_string(hide_password=False)

    def new_database(self) -> str:
        """A fresh, empty database owned by the owner role; its name."""
        name = f"skinapp_test_{os.getpid()}_{next(_counter)}"
        engine = sqlalchemy.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE {name} OWNER {OWNER_ROLE}")
        engine.dispose()
        return name

    def stop(self) -> None:
        if self._stop:
            subprocess.run(self._stop, capture_output=True)
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
