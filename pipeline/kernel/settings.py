"""Settings: every knob is an environment variable named ``TOLLGATE_*``.

`Settings.from_env()` is called once, at the entry point (the `tollgate` command, the test
session), and the frozen result is handed down. docs/configuration.md lists each variable;
a unit test keeps that table and the fields below in step. Each field names one validator for
its kind of value (`integer`, `seconds`, `matching`, `one_of`, `folder`) with its bounds. The
local stack's own knobs are in pipeline/local/settings.py (`StackSettings`).

Relative folders (the run folder, the local stack's cache) are taken from the checkout's top
folder, the one holding pyproject.toml, so that `tollgate` finds the same local stack from any
sub-folder; when tollgate is installed from a wheel they are taken from the current folder.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from pipeline.kernel.errors import TollgateError

PREFIX = "TOLLGATE_"
# TOLLGATE_ENGINE: which billing engine loads (pipeline/tooling/compiled_engine.py).
ENGINE_MODES = ("auto", "source", "compiled")

_HOST_PORT = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>[0-9]{1,5})$")
_NAME_CHARS = "the characters a-z A-Z 0-9 . _ -"

Parse = Callable[[str], Any]


class SettingsError(TollgateError, ValueError):
    """One or more ``TOLLGATE_*`` variables hold a value that cannot be used."""


def variable(name: str, doc: str, parse: Parse) -> dict[str, Any]:
    return {"env": PREFIX + name, "doc": doc, "parse": parse}


# One validator per kind of value; each field picks one with its bounds.


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def integer(low: int, high: int, what: str = "an integer") -> Parse:
    """A whole number from `low` to `high`."""
    return _number(int, low, high, f"expected {what} from {low} to {high}")


def seconds(low: float, high: float, *, above: bool = False) -> Parse:
    """A number of seconds from `low` (or `above` it) to `high`."""
    low_text, high_text = _number_text(low), _number_text(high)
    bound = (
        f"above {low_text} and at most {high_text}" if above else f"from {low_text} to {high_text}"
    )
    return _number(float, low, high, f"expected a number of seconds {bound}", above=above)


def _number(
    convert: Callable[[str], float], low: float, high: float, expected: str, *, above: bool = False
) -> Parse:
    def parse(raw: str) -> float:
        try:
            value = convert(raw.strip())
        except ValueError:
            raise ValueError(expected) from None
        if not (low < value if above else low <= value) or not value <= high:
            raise ValueError(expected)
        return value

    return parse


def matching(pattern: str, expected: str, *, strip: bool = True) -> Parse:
    """Text that matches `pattern` whole (after trimming spaces unless `strip` is off)."""
    compiled = re.compile(pattern)

    def parse(raw: str) -> str:
        value = raw.strip() if strip else raw
        if not compiled.fullmatch(value):
            raise ValueError(f"expected {expected}")
        return value

    return parse


def one_of(*choices: str) -> Parse:
    """One of `choices`, exactly."""
    return matching("|".join(re.escape(choice) for choice in choices), ", ".join(choices))


def folder(raw: str) -> Path:
    """A folder; a relative one is taken from the checkout's top folder (`from_env`)."""
    if not raw.strip():
        raise ValueError("expected a folder path")
    return Path(raw.strip()).expanduser()


port = integer(1, 65535, "a TCP port")


def _bootstrap(raw: str) -> str:
    entries = [entry.strip() for entry in raw.split(",")]
    if not entries or not all(entries):
        raise ValueError("expected host:port[,host:port...]")
    for entry in entries:
        match = _HOST_PORT.match(entry)
        if match is None:
            raise ValueError(f"expected host:port[,host:port...], {entry!r} is not host:port")
        port(match["port"])
    return ",".join(entries)


def _listen_address(raw: str) -> str:
    value = raw.strip()
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError("expected an IP address such as 127.0.0.1 or 0.0.0.0") from None
    return value


def _schedule(raw: str) -> tuple[float, ...]:
    try:
        delays = tuple(float(part) for part in raw.split(","))
    except ValueError:
        raise ValueError("expected comma-separated seconds such as 0,5,300") from None
    if not all(0 <= delay <= 604_800 for delay in delays):
        raise ValueError("expected delays from 0 to 604800 seconds (a week)")
    return delays


_seconds = seconds(0, 3600, above=True)
_up_to_a_minute = seconds(0, 60, above=True)
_batch_size = integer(1, 100_000)
_message_bytes = integer(1024, 64 << 20, "a size in bytes")
_name = matching(r"[A-Za-z0-9._-]+", f"a name of {_NAME_CHARS}")


@dataclass(frozen=True)
class Settings:
    """The whole configuration; build it with `Settings.from_env`."""

    kafka_bootstrap: str = field(
        default="127.0.0.1:19092",
        metadata=variable(
            "KAFKA_BOOTSTRAP",
            "Kafka bootstrap servers, `host:port[,host:port...]`. The local stack starts its "
            "broker on the first entry, which must then be a loopback address.",
            _bootstrap,
        ),
    )
    database_url: str = field(
        default="postgresql://tollgate:tollgate@127.0.0.1:5432/tollgate",
        metadata=variable(
            "DATABASE_URL",
            "PostgreSQL connection URL. If a server answers there it is used as it is; "
            "otherwise the local stack starts one on that host and port (loopback only) "
            "with that user, password and database.",
            matching(
                r"(?s)(postgresql|postgres)://.*",
                "a postgresql://user:password@host:port/database URL",
            ),
        ),
    )
    partitions: int = field(
        default=4,
        metadata=variable(
            "PARTITIONS", "Partition count of the topics tollgate creates.", integer(1, 1000)
        ),
    )
    topic_prefix: str = field(
        default="tollgate.",
        metadata=variable(
            "TOPIC_PREFIX",
            "Prefix of every topic name tollgate creates or reads.",
            matching(r"[A-Za-z0-9._-]{0,100}", f"at most 100 of {_NAME_CHARS}", strip=False),
        ),
    )
    run_dir: Path = field(
        default=Path(".run"),
        metadata=variable(
            "RUN_DIR",
            "Run folder: local stack data, pid files, logs (`logs/`) and worker state (`state/`).",
            folder,
        ),
    )
    metrics_port: int = field(
        default=9464,
        metadata=variable(
            "METRICS_PORT",
            "Port on which the intake, the worker and the sinks serve Prometheus metrics "
            "(`/metrics`) and their health (`/healthz`, `/readyz`).",
            port,
        ),
    )
    metrics_host: str = field(
        default="127.0.0.1",
        metadata=variable(
            "METRICS_HOST",
            "Address the metrics and health endpoints listen on: loopback by default; "
            "`0.0.0.0` in a container, for Prometheus and the orchestrator's probes.",
            _listen_address,
        ),
    )

    api_port: int = field(
        default=8000,
        metadata=variable(
            "API_PORT",
            "Port of the worker's HTTP API (Lago's paths: events in; usage, entitlements, "
            "alerts and access decisions out). Every worker serves it; printed at start.",
            port,
        ),
    )
    api_host: str = field(
        default="127.0.0.1",
        metadata=variable(
            "API_HOST",
            "Address the HTTP API listens on: loopback by default; `0.0.0.0` in a container, "
            "so that clients and the other workers (forwarded reads) reach it.",
            _listen_address,
        ),
    )
    api_url: str = field(
        default="",
        metadata=variable(
            "API_URL",
            "URL at which the other workers reach this worker's API, for reads they forward "
            "to the owner of a subscription's partition. Default: `http://<TOLLGATE_API_HOST, "
            "or the host name when that is 0.0.0.0>:<TOLLGATE_API_PORT>`.",
            matching(r"https?://[A-Za-z0-9._\[\]:-]+(:[0-9]{1,5})?/?", "an http://host:port URL"),
        ),
    )
    api_keys: str = field(
        default="",
        repr=False,  # secrets: never in a log line or a traceback
        metadata=variable(
            "API_KEYS",
            "API keys accepted by the HTTP API (`Authorization: Bearer <key>`), "
            "comma-separated. Empty: every request is refused with 401.",
            matching(
                r"[A-Za-z0-9._~+/=:, -]*", "comma-separated keys of letters, digits, ._~+/=:-"
            ),
        ),
    )
    api_max_body_bytes: int = field(
        default=1 << 20,
        metadata=variable(
            "API_MAX_BODY_BYTES",
            "Largest request body the HTTP API reads; a larger one is refused with 413.",
            _message_bytes,
        ),
    )
    api_publish_timeout: float = field(
        default=10.0,
        metadata=variable(
            "API_PUBLISH_TIMEOUT",
            "Seconds the API waits for the broker to acknowledge what a request publishes "
            "before it answers 503 (a client retry with the same transaction id is harmless).",
            _up_to_a_minute,
        ),
    )

    database_schema: str = field(
        default="public",
        metadata=variable(
            "DATABASE_SCHEMA",
            "PostgreSQL schema holding the sinks' tables (`tollgate db migrate` creates it); "
            "every sink connection sets its `search_path` to it alone.",
            matching(
                r"[A-Za-z_][A-Za-z0-9_]{0,62}",
                "a schema name: a letter or _, then letters, digits or _",
            ),
        ),
    )
    sink_batch_size: int = field(
        default=500,
        metadata=variable(
            "SINK_BATCH_SIZE",
            "Most outputs a sink writes in one PostgreSQL transaction (`--batch-size`).",
            _batch_size,
        ),
    )
    sink_batch_wait: float = field(
        default=0.5,
        metadata=variable(
            "SINK_BATCH_WAIT",
            "Seconds a sink waits for a batch to fill before writing what it has.",
            _seconds,
        ),
    )
    webhook_retry_schedule: tuple[float, ...] = field(
        default=(0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0),
        metadata=variable(
            "WEBHOOK_RETRY_SCHEDULE",
            "Seconds before each webhook delivery attempt, comma-separated: the first entry "
            "delays the first attempt, each later one follows a failed attempt; after the last "
            "the delivery is `failed`.",
            _schedule,
        ),
    )
    webhook_timeout: float = field(
        default=10.0,
        metadata=variable(
            "WEBHOOK_TIMEOUT",
            "Seconds a webhook POST may take (connect, send, answer) before it counts as failed.",
            _seconds,
        ),
    )
    webhook_concurrency: int = field(
        default=16,
        metadata=variable(
            "WEBHOOK_CONCURRENCY",
            "Webhook deliveries one `tollgate sink webhooks` process has in flight at once.",
            integer(1, 1000),
        ),
    )
    webhook_poll_interval: float = field(
        default=1.0,
        metadata=variable(
            "WEBHOOK_POLL_INTERVAL",
            "Seconds the delivery loop waits before looking again when nothing is due.",
            _seconds,
        ),
    )

    worker_app_id: str = field(
        default="tollgate-worker",
        metadata=variable(
            "WORKER_APP_ID",
            "Faust app id of the worker: its consumer group and the prefix of its changelog "
            "topics. Workers with the same id share the partitions.",
            _name,
        ),
    )
    worker_store: str = field(
        default="rocksdb://",
        metadata=variable(
            "WORKER_STORE",
            "Where the worker keeps subscription state between changelog writes: `rocksdb://` "
            "(rocksdict, under `<run folder>/state/`) or `memory://` (rebuilt from the changelog "
            "at every start).",
            one_of("rocksdb://", "memory://"),
        ),
    )
    worker_flush_interval: float = field(
        default=1.0,
        metadata=variable(
            "WORKER_FLUSH_INTERVAL",
            "Most seconds the worker keeps changed subscription states in memory before it "
            "writes them to its changelog (Kafka Streams' commit interval): a subscription "
            "touched by many events in that time is written once. Input is acknowledged only "
            "after the write that covers it, so a crash re-applies at most this much.",
            _up_to_a_minute,
        ),
    )
    worker_flush_states: int = field(
        default=20_000,
        metadata=variable(
            "WORKER_FLUSH_STATES",
            "Changed subscription states after which the worker writes them before the flush "
            "interval is up (bounds memory and the size of one write).",
            _batch_size,
        ),
    )
    intake_batch_messages: int = field(
        default=5000,
        metadata=variable(
            "INTAKE_BATCH_MESSAGES",
            "Most usage-events messages `tollgate intake` packs into one batch message.",
            _batch_size,
        ),
    )
    intake_batch_bytes: int = field(
        default=1 << 20,
        metadata=variable(
            "INTAKE_BATCH_BYTES",
            "Size in bytes at which the intake closes a batch (one more message may top it).",
            _message_bytes,
        ),
    )
    intake_linger: float = field(
        default=0.05,
        metadata=variable(
            "INTAKE_LINGER",
            "Most seconds the intake holds a partition's messages before it sends what it has "
            "as a batch: latency against messages per batch.",
            _up_to_a_minute,
        ),
    )
    intake_group: str = field(
        default="tollgate-intake",
        metadata=variable(
            "INTAKE_GROUP",
            "Consumer group of `tollgate intake` on the usage-events topic. Intakes with the "
            "same group share the partitions.",
            _name,
        ),
    )
    worker_session_timeout: float = field(
        default=60.0,
        metadata=variable(
            "WORKER_SESSION_TIMEOUT",
            "Seconds without a heartbeat after which the broker drops a worker from its group "
            "and hands its partitions to the others (also the rebalance timeout). Lower means a "
            "faster takeover after a crash; too low, and a busy worker is dropped needlessly.",
            seconds(6, 1800),  # the broker's group.min/max.session.timeout.ms defaults
        ),
    )
    worker_stall_timeout: float = field(
        default=300.0,
        metadata=variable(
            "WORKER_STALL_TIMEOUT",
            "Seconds a partition the worker holds may have messages waiting without moving "
            "before the worker exits with code 75 for its supervisor to restart it (a Faust "
            "consumer can stop fetching a partition after rebalances, silently).",
            _seconds,
        ),
    )
    tick_interval: float = field(
        default=1.0,
        metadata=variable(
            "TICK_INTERVAL",
            "Seconds between the clock ticks the worker sends to every partition (with "
            "`--clock wall`), so that quiet partitions still close their periods.",
            _seconds,
        ),
    )
    allowed_lateness: float = field(
        default=0.0,
        metadata=variable(
            "ALLOWED_LATENESS",
            "Seconds a period stays open after its end for late events (Lago's grace period, "
            "as a watermark).",
            seconds(0, 86400 * 31),
        ),
    )
    dedupe_window_days: int = field(
        default=35,
        metadata=variable(
            "DEDUPE_WINDOW_DAYS",
            "Days a transaction id is remembered for de-duplication, on the pipeline clock.",
            integer(1, 3650, "a number of days"),
        ),
    )
    max_message_bytes: int = field(
        default=1 << 20,
        metadata=variable(
            "MAX_MESSAGE_BYTES",
            "Largest usage-events message the worker decodes; a larger one is dead-lettered "
            "as `malformed`.",
            _message_bytes,
        ),
    )
    engine: str = field(
        default="auto",
        metadata=variable(
            "ENGINE",
            "Which billing engine runs: `auto` (the mypyc-compiled one built by `make engine` "
            "while it matches the sources, else the sources), `source` or `compiled` (refuse "
            "to start without a current build). Read by each entry point before the engine "
            "is first imported.",
            one_of(*ENGINE_MODES),
        ),
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
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
        for spec in dataclasses.fields(cls):
            if spec.metadata["parse"] is folder:
                path = values.get(spec.name, spec.default)
                values[spec.name] = path if path.is_absolute() else (base / path).absolute()
        return cls(**values)

    @classmethod
    def variables(cls) -> dict[str, str]:
        """Every variable name with its description, in declaration order."""
        return {spec.metadata["env"]: spec.metadata["doc"] for spec in dataclasses.fields(cls)}

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
    def api_key_list(self) -> tuple[str, ...]:
        """The accepted API keys (TOLLGATE_API_KEYS split at commas, blanks dropped)."""
        return tuple(key for key in (part.strip() for part in self.api_keys.split(",")) if key)

    @property
    def api_base_url(self) -> str:
        """Where the other workers reach this worker's API (TOLLGATE_API_URL or derived)."""
        if self.api_url:
            return self.api_url.rstrip("/")
        host = self.api_host
        if host in ("0.0.0.0", "::"):
            host = socket.gethostname()
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.api_port}"

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


def _base_dir() -> Path:
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "pipeline").is_dir():
        return checkout
    return Path.cwd()
