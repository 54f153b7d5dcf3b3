"""Settings: every knob is an environment variable named ``TOLLGATE_*``.

`Settings.from_env()` is called once, at the entry point (the `tollgate` command, the test
session), and the frozen result is handed down. docs/configuration.md lists each variable;
a unit test keeps that table and the fields below in step.

Relative paths (run and cache folders) are taken from the checkout's top folder, the one
holding pyproject.toml, so that `tollgate` finds the same local stack from any sub-folder;
when tollgate is installed from a wheel they are taken from the current folder.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.compiled_engine import MODES as ENGINE_MODES
from pipeline.errors import TollgateError

PREFIX = "TOLLGATE_"

_HOST_PORT = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>[0-9]{1,5})$")
_TOPIC_CHARS = re.compile(r"^[A-Za-z0-9._-]*$")
_VERSION = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+$")
_HEAP = re.compile(r"^[0-9]+[mMgG]$")
_SCHEMA = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class SettingsError(TollgateError, ValueError):
    """One or more ``TOLLGATE_*`` variables hold a value that cannot be used."""


def _var(name: str, doc: str, parse: Callable[[str], Any]) -> dict[str, Any]:
    return {"env": PREFIX + name, "doc": doc, "parse": parse}


def _port(raw: str) -> int:
    try:
        value = _int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= 65535:
        raise ValueError("expected a TCP port from 1 to 65535")
    return value


def _int(raw: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise ValueError("expected an integer") from None


def _partitions(raw: str) -> int:
    value = _int(raw)
    if not 1 <= value <= 1000:
        raise ValueError("expected an integer from 1 to 1000")
    return value


def _seconds(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError("expected a number of seconds") from None
    if not 0 < value <= 3600:
        raise ValueError("expected a number of seconds above 0 and at most 3600")
    return value


def _bootstrap(raw: str) -> str:
    entries = [entry.strip() for entry in raw.split(",")]
    if not entries or not all(entries):
        raise ValueError("expected host:port[,host:port...]")
    for entry in entries:
        match = _HOST_PORT.match(entry)
        if match is None:
            raise ValueError(f"expected host:port[,host:port...], {entry!r} is not host:port")
        _port(match["port"])
    return ",".join(entries)


def _database_url(raw: str) -> str:
    value = raw.strip()
    if not value.startswith(("postgresql://", "postgres://")):
        raise ValueError("expected a postgresql://user:password@host:port/database URL")
    return value


def _listen_address(raw: str) -> str:
    value = raw.strip()
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError("expected an IP address such as 127.0.0.1 or 0.0.0.0") from None
    return value


def _version(raw: str) -> str:
    value = raw.strip()
    if not _VERSION.match(value):
        raise ValueError("expected a version such as 4.1.1")
    return value


def _topic_prefix(raw: str) -> str:
    if not _TOPIC_CHARS.match(raw) or len(raw) > 100:
        raise ValueError("expected at most 100 of the characters a-z A-Z 0-9 . _ -")
    return raw


def _heap(raw: str) -> str:
    value = raw.strip()
    if not _HEAP.match(value):
        raise ValueError("expected a JVM heap size such as 1g or 768m")
    return value


def _schema(raw: str) -> str:
    value = raw.strip()
    if not _SCHEMA.match(value):
        raise ValueError("expected a schema name: a letter or _, then letters, digits or _")
    return value


def _batch_size(raw: str) -> int:
    value = _int(raw)
    if not 1 <= value <= 100_000:
        raise ValueError("expected an integer from 1 to 100000")
    return value


def _flush_interval(raw: str) -> float:
    value = _seconds(raw)
    if not 0 < value <= 60:
        raise ValueError("expected seconds above 0, at most 60")
    return value


def _concurrency(raw: str) -> int:
    value = _int(raw)
    if not 1 <= value <= 1000:
        raise ValueError("expected an integer from 1 to 1000")
    return value


def _schedule(raw: str) -> tuple[float, ...]:
    try:
        delays = tuple(float(part) for part in raw.split(","))
    except ValueError:
        raise ValueError("expected comma-separated seconds such as 0,5,300") from None
    if not all(0 <= delay <= 604_800 for delay in delays):
        raise ValueError("expected delays from 0 to 604800 seconds (a week)")
    return delays


def _path(raw: str) -> Path:
    if not raw.strip():
        raise ValueError("expected a folder path")
    return Path(raw.strip()).expanduser()


def _app_id(raw: str) -> str:
    value = raw.strip()
    if not value or not _TOPIC_CHARS.match(value):
        raise ValueError("expected a name of the characters a-z A-Z 0-9 . _ -")
    return value


def _store(raw: str) -> str:
    value = raw.strip()
    if value not in ("rocksdb://", "memory://"):
        raise ValueError("expected rocksdb:// or memory://")
    return value


def _engine(raw: str) -> str:
    value = raw.strip()
    if value not in ENGINE_MODES:
        raise ValueError("expected " + ", ".join(ENGINE_MODES))
    return value


def _session_timeout(raw: str) -> float:
    value = _seconds(raw)
    if not 6 <= value <= 1800:  # the broker's group.min/max.session.timeout.ms defaults
        raise ValueError("expected seconds from 6 to 1800")
    return value


def _non_negative_seconds(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError("expected a number of seconds") from None
    if not 0 <= value <= 86400 * 31:
        raise ValueError("expected a number of seconds from 0 to 2678400")
    return value


def _days(raw: str) -> int:
    value = _int(raw)
    if not 1 <= value <= 3650:
        raise ValueError("expected a number of days from 1 to 3650")
    return value


def _message_bytes(raw: str) -> int:
    value = _int(raw)
    if not 1024 <= value <= 64 << 20:
        raise ValueError("expected a size in bytes from 1024 to 67108864")
    return value


@dataclass(frozen=True)
class Settings:
    """The whole configuration; build it with `Settings.from_env`."""

    kafka_bootstrap: str = field(
        default="127.0.0.1:19092",
        metadata=_var(
            "KAFKA_BOOTSTRAP",
            "Kafka bootstrap servers, `host:port[,host:port...]`. The local stack starts its "
            "broker on the first entry, which must then be a loopback address.",
            _bootstrap,
        ),
    )
    kafka_controller_port: int = field(
        default=19093,
        metadata=_var(
            "KAFKA_CONTROLLER_PORT",
            "Port of the KRaft controller listener of the local broker (127.0.0.1 only).",
            _port,
        ),
    )
    kafka_version: str = field(
        default="4.1.1",
        metadata=_var(
            "KAFKA_VERSION",
            "Apache Kafka version the local stack resolves from Maven Central and runs "
            "(deploy/kafka/pom.xml); docker-compose.yml uses the same image tag.",
            _version,
        ),
    )
    kafka_heap: str = field(
        default="1g",
        metadata=_var("KAFKA_HEAP", "Maximum JVM heap of the local broker (`-Xmx`).", _heap),
    )
    database_url: str = field(
        default="postgresql://tollgate:tollgate@127.0.0.1:5432/tollgate",
        metadata=_var(
            "DATABASE_URL",
            "PostgreSQL connection URL. If a server answers there it is used as it is; "
            "otherwise the local stack starts one on that host and port (loopback only) "
            "with that user, password and database.",
            _database_url,
        ),
    )
    partitions: int = field(
        default=4,
        metadata=_var("PARTITIONS", "Partition count of the topics tollgate creates.", _partitions),
    )
    topic_prefix: str = field(
        default="tollgate.",
        metadata=_var(
            "TOPIC_PREFIX", "Prefix of every topic name tollgate creates or reads.", _topic_prefix
        ),
    )
    run_dir: Path = field(
        default=Path(".run"),
        metadata=_var(
            "RUN_DIR",
            "Run folder: local stack data, pid files, logs (`logs/`) and worker state (`state/`).",
            _path,
        ),
    )
    cache_dir: Path = field(
        default=Path(".cache"),
        metadata=_var(
            "CACHE_DIR",
            "Download cache; the broker's jars go to `kafka/<version>/libs` inside it.",
            _path,
        ),
    )
    startup_timeout: float = field(
        default=120.0,
        metadata=_var(
            "STARTUP_TIMEOUT",
            "Seconds `tollgate dev up` waits for each service to answer before giving up.",
            _seconds,
        ),
    )
    metrics_port: int = field(
        default=9464,
        metadata=_var(
            "METRICS_PORT",
            "Port on which the worker and the sinks serve Prometheus metrics (`/metrics`) and "
            "their health (`/healthz`, `/readyz`).",
            _port,
        ),
    )
    metrics_host: str = field(
        default="127.0.0.1",
        metadata=_var(
            "METRICS_HOST",
            "Address the metrics and health endpoints listen on: loopback by default; "
            "`0.0.0.0` in a container, for Prometheus and the orchestrator's probes.",
            _listen_address,
        ),
    )

    database_schema: str = field(
        default="public",
        metadata=_var(
            "DATABASE_SCHEMA",
            "PostgreSQL schema holding the sinks' tables (`tollgate db migrate` creates it); "
            "every sink connection sets its `search_path` to it alone.",
            _schema,
        ),
    )
    sink_batch_size: int = field(
        default=500,
        metadata=_var(
            "SINK_BATCH_SIZE",
            "Most outputs a sink writes in one PostgreSQL transaction (`--batch-size`).",
            _batch_size,
        ),
    )
    sink_batch_wait: float = field(
        default=0.5,
        metadata=_var(
            "SINK_BATCH_WAIT",
            "Seconds a sink waits for a batch to fill before writing what it has.",
            _seconds,
        ),
    )
    webhook_retry_schedule: tuple[float, ...] = field(
        default=(0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0),
        metadata=_var(
            "WEBHOOK_RETRY_SCHEDULE",
            "Seconds before each webhook delivery attempt, comma-separated: the first entry "
            "delays the first attempt, each later one follows a failed attempt; after the last "
            "the delivery is `failed`.",
            _schedule,
        ),
    )
    webhook_timeout: float = field(
        default=10.0,
        metadata=_var(
            "WEBHOOK_TIMEOUT",
            "Seconds a webhook POST may take (connect, send, answer) before it counts as failed.",
            _seconds,
        ),
    )
    webhook_concurrency: int = field(
        default=16,
        metadata=_var(
            "WEBHOOK_CONCURRENCY",
            "Webhook deliveries one `tollgate sink webhooks` process has in flight at once.",
            _concurrency,
        ),
    )
    webhook_poll_interval: float = field(
        default=1.0,
        metadata=_var(
            "WEBHOOK_POLL_INTERVAL",
            "Seconds the delivery loop waits before looking again when nothing is due.",
            _seconds,
        ),
    )

    worker_app_id: str = field(
        default="tollgate-worker",
        metadata=_var(
            "WORKER_APP_ID",
            "Faust app id of the worker: its consumer group and the prefix of its changelog "
            "topics. Workers with the same id share the partitions.",
            _app_id,
        ),
    )
    worker_store: str = field(
        default="rocksdb://",
        metadata=_var(
            "WORKER_STORE",
            "Where the worker keeps subscription state between changelog writes: `rocksdb://` "
            "(rocksdict, under `<run folder>/state/`) or `memory://` (rebuilt from the changelog "
            "at every start).",
            _store,
        ),
    )
    worker_flush_interval: float = field(
        default=1.0,
        metadata=_var(
            "WORKER_FLUSH_INTERVAL",
            "Most seconds the worker keeps changed subscription states in memory before it "
            "writes them to its changelog (Kafka Streams' commit interval): a subscription "
            "touched by many events in that time is written once. Input is acknowledged only "
            "after the write that covers it, so a crash re-applies at most this much.",
            _flush_interval,
        ),
    )
    worker_flush_states: int = field(
        default=20_000,
        metadata=_var(
            "WORKER_FLUSH_STATES",
            "Changed subscription states after which the worker writes them before the flush "
            "interval is up (bounds memory and the size of one write).",
            _batch_size,
        ),
    )
    intake_batch_messages: int = field(
        default=5000,
        metadata=_var(
            "INTAKE_BATCH_MESSAGES",
            "Most usage-events messages `tollgate intake` packs into one batch message.",
            _batch_size,
        ),
    )
    intake_batch_bytes: int = field(
        default=1 << 20,
        metadata=_var(
            "INTAKE_BATCH_BYTES",
            "Size in bytes at which the intake closes a batch (one more message may top it).",
            _message_bytes,
        ),
    )
    intake_linger: float = field(
        default=0.05,
        metadata=_var(
            "INTAKE_LINGER",
            "Most seconds the intake holds a partition's messages before it sends what it has "
            "as a batch: latency against messages per batch.",
            _flush_interval,
        ),
    )
    intake_group: str = field(
        default="tollgate-intake",
        metadata=_var(
            "INTAKE_GROUP",
            "Consumer group of `tollgate intake` on the usage-events topic. Intakes with the "
            "same group share the partitions.",
            _app_id,
        ),
    )
    worker_session_timeout: float = field(
        default=60.0,
        metadata=_var(
            "WORKER_SESSION_TIMEOUT",
            "Seconds without a heartbeat after which the broker drops a worker from its group "
            "and hands its partitions to the others (also the rebalance timeout). Lower means a "
            "faster takeover after a crash; too low, and a busy worker is dropped needlessly.",
            _session_timeout,
        ),
    )
    worker_stall_timeout: float = field(
        default=300.0,
        metadata=_var(
            "WORKER_STALL_TIMEOUT",
            "Seconds a partition the worker holds may have messages waiting without moving "
            "before the worker exits with code 75 for its supervisor to restart it (a Faust "
            "consumer can stop fetching a partition after rebalances, silently).",
            _seconds,
        ),
    )
    tick_interval: float = field(
        default=1.0,
        metadata=_var(
            "TICK_INTERVAL",
            "Seconds between the clock ticks the worker sends to every partition (with "
            "`--clock wall`), so that quiet partitions still close their periods.",
            _seconds,
        ),
    )
    allowed_lateness: float = field(
        default=0.0,
        metadata=_var(
            "ALLOWED_LATENESS",
            "Seconds a period stays open after its end for late events (Lago's grace period, "
            "as a watermark).",
            _non_negative_seconds,
        ),
    )
    dedupe_window_days: int = field(
        default=35,
        metadata=_var(
            "DEDUPE_WINDOW_DAYS",
            "Days a transaction id is remembered for de-duplication, on the pipeline clock.",
            _days,
        ),
    )
    max_message_bytes: int = field(
        default=1 << 20,
        metadata=_var(
            "MAX_MESSAGE_BYTES",
            "Largest usage-events message the worker decodes; a larger one is dead-lettered "
            "as `malformed`.",
            _message_bytes,
        ),
    )
    engine: str = field(
        default="auto",
        metadata=_var(
            "ENGINE",
            "Which billing engine runs: `auto` (the mypyc-compiled one built by `make engine` "
            "while it matches the sources, else the sources), `source` or `compiled` (refuse "
            "to start without a current build). Read when `pipeline` is first imported.",
            _engine,
        ),
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every ``TOLLGATE_*`` variable; unset or empty ones keep their default.

        Raises `SettingsError` naming each bad variable, its value and what is expected.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        problems: list[str] = []
        for spec in dataclasses.fields(cls):
            name = spec.metadata["env"]
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            try:
                values[spec.name] = spec.metadata["parse"](raw)
            except ValueError as exc:
                problems.append(f"{name}={raw!r}: {exc}")
        if problems:
            raise SettingsError("bad setting: " + "; ".join(problems))
        base = _base_dir()
        for key in ("run_dir", "cache_dir"):
            path = values.get(key, getattr(cls, key))
            values[key] = path if path.is_absolute() else (base / path).absolute()
        return cls(**values)

    @staticmethod
    def variables() -> dict[str, str]:
        """Every variable name with its description, in declaration order."""
        return {spec.metadata["env"]: spec.metadata["doc"] for spec in dataclasses.fields(Settings)}

    def as_env(self) -> dict[str, str]:
        """These settings as ``TOLLGATE_*`` variables, for a child process."""
        return {
            spec.metadata["env"]: _env_text(getattr(self, spec.name))
            for spec in dataclasses.fields(self)
        }

    # Derived locations and addresses.

    @property
    def log_dir(self) -> Path:
        return self.run_dir / "logs"

    @property
    def state_dir(self) -> Path:
        """Local worker state (tables, checkpoints); `tollgate dev reset` empties it."""
        return self.run_dir / "state"

    @property
    def kafka_host(self) -> str:
        return self.kafka_bootstrap.split(",")[0].rsplit(":", 1)[0].strip("[]")

    @property
    def kafka_port(self) -> int:
        return int(self.kafka_bootstrap.split(",")[0].rsplit(":", 1)[1])


def _env_text(value: object) -> str:
    """A value as its variable's text: tuples of seconds comma-separated, as they are parsed."""
    if isinstance(value, tuple):
        return ",".join(_number_text(item) for item in value)
    return str(value)


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def _base_dir() -> Path:
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "pipeline").is_dir():
        return checkout
    return Path.cwd()
