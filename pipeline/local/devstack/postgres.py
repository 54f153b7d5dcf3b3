"""The local PostgreSQL server.

Order of preference, for the server named by TOLLGATE_DATABASE_URL:

1. A server this run folder started and that still runs: reused.
2. Any server that accepts the URL's login: used as it is (`dev down` leaves it running).
3. A Debian cluster (`pg_lsclusters`) on that port that refuses the login: running as root,
   the role and database are created in it with `runuser -u postgres -- psql`.
4. Otherwise a private cluster: ``<run>/postgres/data``, initialised with `initdb` (the URL's
   user becomes its superuser, with the URL's password), started with `pg_ctl` on the URL's
   host and port with its socket in ``<run>/postgres``, logging to ``<run>/logs/postgres.log``.
   Server binaries come from /usr/lib/postgresql/*/bin (or PATH); when absent and running as
   root, the Debian package `postgresql` is installed with apt-get. PostgreSQL refuses to run
   as root, so as root the cluster belongs to the system user `postgres` (created with the
   package), or to a system user `tollgate` created with `useradd` when that one is missing.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from pipeline.kernel.commands import Echo
from pipeline.local.devstack._proc import (
    StackError,
    cmdline,
    is_loopback,
    pid_alive,
    port_open,
    read_pid,
    stop_pid,
    tail,
)
from pipeline.local.devstack.status import ServiceStatus
from pipeline.local.settings import StackSettings

_STOP_TIMEOUT = 30.0
_LOGIN_REFUSED = re.compile(
    r"password authentication failed|role .* does not exist|database .* does not exist"
    r"|no pg_hba\.conf entry",
)


def redact(url: str) -> str:
    """The URL with its password replaced by ***, for printing."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def find_bindir() -> Path | None:
    """A folder holding initdb, pg_ctl and postgres: PATH first, then Debian's layout."""
    candidates: list[Path] = []
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    debian = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if p.parent.name.isdigit()]
    candidates += sorted(debian, key=lambda p: int(p.parent.name), reverse=True)
    for folder in candidates:
        if all((folder / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


class Postgres:
    name = "postgresql"

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.url = settings.database_url
        params = conninfo_to_dict(settings.database_url)
        self.host = str(params.get("host") or "")
        self.port = int(params.get("port") or 5432)
        self.user = str(params.get("user") or "")
        self.password = str(params.get("password") or "")
        self.dbname = str(params.get("dbname") or self.user)
        self.home = settings.run_dir / "postgres"
        self.data_dir = self.home / "data"
        self.log = settings.log_dir / "postgres.log"
        self._started_at: float | None = None

    # Inspection

    def connect_error(self, dbname: str | None = None, timeout: int = 2) -> Exception | None:
        """None when the URL's login works (on `dbname` if given), else the error."""
        extra: dict[str, Any] = {"dbname": dbname} if dbname else {}
        try:
            with psycopg.connect(self.url, connect_timeout=timeout, **extra):
                return None
        except psycopg.Error as exc:
            return exc

    def managed_pid(self) -> int | None:
        """Pid of the postmaster this run folder started, if it still runs."""
        pid = read_pid(self.data_dir / "postmaster.pid")
        if pid is None or not pid_alive(pid):
            return None
        args = cmdline(pid)
        if args and args[0].endswith("postgres") and str(self.data_dir) in args:
            return pid
        return None

    def status(self) -> ServiceStatus:
        pid = self.managed_pid()
        return ServiceStatus(
            name=self.name,
            up=self.connect_error() is None,
            address=redact(self.url),
            pid=pid,
            managed=pid is not None,
            log=self.log if pid is not None else None,
        )

    # Start

    def start(self, echo: Echo) -> None:
        started = time.monotonic()
        pid = self.managed_pid()
        if pid is not None:
            self._wait_ready(pid, started, dbname=self.dbname)
            echo(f"postgresql: already running (pid {pid})")
            return
        if self._use_existing(echo):
            return
        bindir = find_bindir()
        if bindir is None:
            self._install_server(echo)
            if self._use_existing(echo):  # the package may have started its own cluster
                return
            bindir = find_bindir()
            if bindir is None:
                raise StackError(
                    "apt-get installed `postgresql` but no initdb/pg_ctl/postgres were found in "
                    "/usr/lib/postgresql/*/bin: check the installation"
                )
        self._start_private(bindir, echo)

    def _use_existing(self, echo: Echo) -> bool:
        """True when a server on the URL's address is usable (possibly after provisioning)."""
        where = f"{self.host or 'local socket'}:{self.port}"
        if not self.host:
            raise StackError(
                "TOLLGATE_DATABASE_URL names no host: use one such as "
                "postgresql://tollgate:tollgate@127.0.0.1:5432/tollgate"
            )
        error = self.connect_error()
        if error is None:
            echo(
                f"postgresql: using the server that already answers at {redact(self.url)} "
                "(not started from this run folder; `tollgate dev down` leaves it running)"
            )
            return True
        message = str(error).strip().splitlines()[-1] if str(error).strip() else repr(error)
        if not is_loopback(self.host):
            raise StackError(
                f"PostgreSQL at {where} does not accept TOLLGATE_DATABASE_URL ({message}), and "
                "the local stack only starts one on a loopback address: start that server, or "
                "set TOLLGATE_DATABASE_URL to a 127.0.0.1 address"
            )
        if not port_open(self.host, self.port):
            return False
        if _LOGIN_REFUSED.search(str(error)) and self._provision_debian_cluster(echo):
            return True
        if _LOGIN_REFUSED.search(str(error)):
            raise StackError(
                f"the PostgreSQL server at {where} refused the login of TOLLGATE_DATABASE_URL "
                f"({message}): create that role and database in it, or set "
                "TOLLGATE_DATABASE_URL to another server or port"
            )
        raise StackError(
            f"port {self.port} is held by a process that does not answer as PostgreSQL "
            f"({message}): stop it, or set TOLLGATE_DATABASE_URL to a free port"
        )

    def _provision_debian_cluster(self, echo: Echo) -> bool:
        """Create the URL's role and database in an online Debian cluster on our port."""
        if os.geteuid() != 0 or shutil.which("pg_lsclusters") is None:
            return False
        listing = subprocess.run(
            ["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=False
        )
        cluster = None
        for row in listing.stdout.splitlines():
            fields = row.split()
            if len(fields) >= 4 and fields[2] == str(self.port) and fields[3].startswith("online"):
                cluster = f"{fields[0]}/{fields[1]}"
        if cluster is None:
            return False
        role, database = _ident(self.user), _ident(self.dbname)
        password = f" PASSWORD {_literal(self.password)}" if self.password else ""
        statements = [
            f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = "
            f"{_literal(self.user)}) THEN CREATE ROLE {role} LOGIN; END IF; END $$;",
            f"ALTER ROLE {role} LOGIN CREATEDB{password};",
        ]
        self._psql_as_postgres(statements, "postgres")
        exists = self._psql_as_postgres(
            [f"SELECT 1 FROM pg_database WHERE datname = {_literal(self.dbname)};"], "postgres"
        )
        if exists.strip() != "1":
            self._psql_as_postgres([f"CREATE DATABASE {database} OWNER {role};"], "postgres")
        error = self.connect_error()
        if error is not None:
            raise StackError(
                f"created role and database in the Debian cluster {cluster}, but the login still "
                f"fails ({str(error).strip()}): check its pg_hba.conf, or set "
                "TOLLGATE_DATABASE_URL to another port"
            )
        echo(
            f"postgresql: created role and database {self.dbname!r} in the Debian cluster "
            f"{cluster} on port {self.port} (managed by pg_ctlcluster, not by `tollgate dev`)"
        )
        return True

    def _psql_as_postgres(self, statements: list[str], dbname: str) -> str:
        command = ["runuser", "-u", "postgres", "--", "psql", "-p", str(self.port), "-d", dbname]
        command += ["-v", "ON_ERROR_STOP=1", "-qAt"]
        for statement in statements:
            command += ["-c", statement]
        result = subprocess.run(
            command, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL
        )
        if result.returncode != 0:
            raise StackError(
                f"psql as postgres failed on port {self.port} ({result.stderr.strip()}): set "
                "TOLLGATE_DATABASE_URL to a server where that role and database exist"
            )
        return result.stdout

    def _install_server(self, echo: Echo) -> None:
        fix = (
            "install the PostgreSQL server (`apt-get install -y postgresql` as root), or set "
            "TOLLGATE_DATABASE_URL to a running server"
        )
        if os.geteuid() != 0:
            raise StackError(f"PostgreSQL server binaries not found and not running as root: {fix}")
        apt = shutil.which("apt-get")
        if apt is None:
            raise StackError(f"PostgreSQL server binaries not found and apt-get is missing: {fix}")
        self.settings.log_dir.mkdir(parents=True, exist_ok=True)
        apt_log = self.settings.log_dir / "apt-get.log"
        echo(f"postgresql: installing the Debian package `postgresql` (log {apt_log})")
        started = time.monotonic()
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        with apt_log.open("a") as log:
            for args in (["update", "-q"], ["install", "-y", "-q", "postgresql"]):
                result = subprocess.run(
                    [apt, *args],
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    check=False,
                )
                if result.returncode != 0:
                    raise StackError(
                        f"`apt-get {' '.join(args)}` failed (see {apt_log}: {tail(apt_log, 2)}): "
                        f"{fix}"
                    )
        echo(f"postgresql: installed in {time.monotonic() - started:.1f} s")

    def _start_private(self, bindir: Path, echo: Echo) -> None:
        s = self.settings
        started = time.monotonic()
        os_user = _server_user()
        self.home.mkdir(parents=True, exist_ok=True)
        s.log_dir.mkdir(parents=True, exist_ok=True)
        self.log.touch(exist_ok=True)
        if os_user is not None:
            record = pwd.getpwnam(os_user)
            for path in (self.home, self.log):
                os.chown(path, record.pw_uid, record.pw_gid)
        self.home.chmod(0o700)
        if os_user is not None and not self._user_can_write(os_user):
            raise StackError(
                f"the system user {os_user!r} cannot reach {self.home}: let other users enter "
                f"its parent folders (chmod o+x), or set TOLLGATE_RUN_DIR to a folder it can "
                "reach, e.g. /tmp/tollgate-run"
            )
        if not (self.data_dir / "PG_VERSION").is_file():
            self._initdb(bindir, os_user, echo)
        options = " ".join(
            [
                "-h",
                shlex.quote(self.host),
                "-p",
                str(self.port),
                "-k",
                shlex.quote(str(self.home)),
            ]
        )
        command = [str(bindir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log)]
        command += ["-W", "-o", options, "start"]
        result = subprocess.run(
            _as_user(os_user, command),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            start_new_session=True,
        )
        if result.returncode != 0:
            raise StackError(
                f"pg_ctl could not start PostgreSQL ({(result.stderr or result.stdout).strip()}; "
                f"log {self.log}: {tail(self.log, 2)})"
            )
        echo(f"postgresql: starting PostgreSQL from {bindir} on {self.host}:{self.port}")
        pid = self._wait_ready(None, started, dbname="postgres")
        self._create_database()
        echo(
            f"postgresql: ready at {redact(self.url)} in {time.monotonic() - started:.1f} s "
            f"(pid {pid})"
        )

    def _user_can_write(self, os_user: str) -> bool:
        probe = subprocess.run(
            ["runuser", "-u", os_user, "--", "test", "-w", str(self.home)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )
        return probe.returncode == 0

    def _initdb(self, bindir: Path, os_user: str | None, echo: Echo) -> None:
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)  # a half-made cluster from an interrupted initdb
        command = [str(bindir / "initdb"), "-D", str(self.data_dir), "-U", self.user]
        command += ["-E", "UTF8", "--locale=C", "--auth-local=trust"]
        pwfile = self.home / "initdb.pw"
        if self.password:
            pwfile.write_text(self.password + "\n")
            pwfile.chmod(0o600)
            if os_user is not None:
                record = pwd.getpwnam(os_user)
                os.chown(pwfile, record.pw_uid, record.pw_gid)
            command += ["--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
        else:
            command += ["--auth-host=trust"]
        echo(f"postgresql: initialising a private cluster in {self.data_dir}")
        try:
            result = subprocess.run(
                _as_user(os_user, command),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                check=False,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        initdb_log = self.settings.log_dir / "postgres-initdb.log"
        initdb_log.write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            raise StackError(
                f"initdb failed (see {initdb_log}: {tail(initdb_log, 2)}): remove "
                f"{self.data_dir} and retry"
            )

    def _wait_ready(self, pid: int | None, started: float, dbname: str) -> int:
        """Poll a psycopg connection until it succeeds; returns the postmaster pid."""
        deadline = started + self.settings.startup_timeout
        while True:
            pid = pid or read_pid(self.data_dir / "postmaster.pid")
            if pid is not None and not pid_alive(pid):
                raise StackError(
                    f"PostgreSQL exited during start-up: see {self.log} ({tail(self.log, 3)})"
                )
            error = self.connect_error(dbname=dbname, timeout=1)
            if error is None and pid is not None:
                return pid
            if time.monotonic() > deadline:
                raise StackError(
                    f"PostgreSQL did not answer at {self.host}:{self.port} within "
                    f"{self.settings.startup_timeout:g} s ({error}): see {self.log}, then "
                    "`tollgate dev down` and retry"
                )
            time.sleep(0.1)

    def _create_database(self) -> None:
        with psycopg.connect(self.url, dbname="postgres", autocommit=True) as conn:
            found = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.dbname,)
            ).fetchone()
            if found is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.dbname)))

    # Stop and reset

    def stop(self, echo: Echo) -> None:
        pid = self.managed_pid()
        if pid is None:
            if self.connect_error() is None:
                echo(
                    f"postgresql: not started from this run folder, left running at "
                    f"{redact(self.url)}"
                )
            else:
                echo("postgresql: not running")
            return
        started = time.monotonic()
        # SIGINT is PostgreSQL's "fast" shutdown: SIGTERM ("smart") would wait for clients.
        killed = stop_pid(pid, signal.SIGINT, _STOP_TIMEOUT)
        how = "killed after SIGINT timed out" if killed else "stopped"
        echo(f"postgresql: {how} (pid {pid}) in {time.monotonic() - started:.1f} s")

    def reset(self, echo: Echo) -> None:
        """Truncate every table of the sinks' schema (TOLLGATE_DATABASE_SCHEMA, default public)
        but `schema_migrations`: the tables stay, so the migrations stay applied."""
        error = self.connect_error()
        if error is not None:
            raise StackError(
                f"PostgreSQL does not answer at {redact(self.url)} ({str(error).strip()}): "
                "run `tollgate dev up` first"
            )
        schema = self.settings.database_schema
        with psycopg.connect(self.url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s"
                " AND tablename <> 'schema_migrations' ORDER BY tablename",
                (schema,),
            ).fetchall()
            tables = [row[0] for row in rows]
            if tables:
                names = sql.SQL(", ").join(sql.Identifier(schema, t) for t in tables)
                conn.execute(sql.SQL("TRUNCATE TABLE {} RESTART IDENTITY CASCADE").format(names))
        echo(f"postgresql: truncated {len(tables)} table(s) in {self.dbname}.{schema}")


def _server_user() -> str | None:
    """The system user that owns the private cluster; None when not running as root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "tollgate"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    useradd = shutil.which("useradd")
    if useradd is None:
        raise StackError(
            "PostgreSQL will not run as root and there is no `postgres` user nor useradd to "
            "create one: create a system user `tollgate`, or run as a normal user"
        )
    command = [useradd, "--system", "--user-group", "--no-create-home"]
    command += ["--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", "tollgate"]
    result = subprocess.run(
        command, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise StackError(
            f"could not create the system user `tollgate` ({result.stderr.strip()}): create it "
            "with `useradd --system tollgate`, or run as a normal user"
        )
    return "tollgate"


def _as_user(os_user: str | None, command: list[str]) -> list[str]:
    return command if os_user is None else ["runuser", "-u", os_user, "--", *command]


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
