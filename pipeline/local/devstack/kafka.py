"""The local Kafka broker: one KRaft node (broker and controller), jars from Maven Central.

Layout, with ``<run>`` = TOLLGATE_RUN_DIR and ``<cache>`` = TOLLGATE_CACHE_DIR:

- ``<cache>/kafka/<version>/libs/``   class path, resolved once by Maven from deploy/kafka/pom.xml
- ``<run>/kafka/server.properties``   generated at every start from the settings
- ``<run>/kafka/log4j2.xml``          logging configuration (file appender, WARN and start-up)
- ``<run>/kafka/data/``               log.dirs, formatted once with kafka.tools.StorageTool
- ``<run>/kafka/kafka.pid``           pid of the running broker
- ``<run>/logs/kafka.log``            broker log; ``kafka.out`` holds the JVM's own output
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

from pipeline.clients.topic_admin import admin_client
from pipeline.kernel.commands import Echo
from pipeline.local.devstack._proc import (
    StackError,
    cmdline,
    is_loopback,
    launch_detached,
    pid_alive,
    port_open,
    read_pid,
    require_tool,
    stop_pid,
    tail,
)
from pipeline.local.devstack.status import ServiceStatus
from pipeline.local.settings import StackSettings

MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"
POM = Path(__file__).resolve().parents[3] / "deploy" / "kafka" / "pom.xml"
_STOP_TIMEOUT = 30.0


def broker_answers(bootstrap: str, timeout: float = 2.0) -> bool:
    """Whether a Kafka broker answers a metadata request within `timeout` seconds."""
    try:
        metadata = admin_client(bootstrap).list_topics(timeout=timeout)
    except Exception:
        return False
    return bool(metadata.brokers)


class Kafka:
    name = "kafka"

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.home = settings.run_dir / "kafka"
        self.data_dir = self.home / "data"
        self.pid_file = self.home / "kafka.pid"
        self.config_file = self.home / "server.properties"
        self.log4j_file = self.home / "log4j2.xml"
        self.cluster_id_file = self.home / "cluster.id"
        self.log = settings.log_dir / "kafka.log"
        self.jvm_log = settings.log_dir / "kafka.out"
        self.libs = settings.cache_dir / "kafka" / settings.kafka_version / "libs"
        self._started_at: float | None = None
        self._pid: int | None = None
        self._reused = False

    # Inspection

    def managed_pid(self) -> int | None:
        """Pid of the broker this run folder started, if it still runs."""
        pid = read_pid(self.pid_file)
        if pid is None or not pid_alive(pid):
            return None
        args = cmdline(pid)
        if MAIN_CLASS in args and str(self.config_file) in args:
            return pid
        return None

    def answers(self, timeout: float = 2.0) -> bool:
        s = self.settings
        if not port_open(s.kafka_host, s.kafka_port):
            return False
        return broker_answers(s.kafka_bootstrap, timeout)

    def status(self) -> ServiceStatus:
        pid = self.managed_pid()
        return ServiceStatus(
            name=self.name,
            up=self.answers(),
            address=self.settings.kafka_bootstrap,
            pid=pid,
            managed=pid is not None,
            log=self.log if pid is not None else None,
        )

    # Start

    def start(self, echo: Echo) -> None:
        """Start the broker unless one answers already; `wait_ready` finishes the job."""
        s = self.settings
        pid = self.managed_pid()
        if pid is not None:
            self._pid, self._started_at, self._reused = pid, time.monotonic(), True
            echo(f"kafka: already running (pid {pid})")
            return
        local = is_loopback(s.kafka_host)
        if not local or port_open(s.kafka_host, s.kafka_port):
            if broker_answers(s.kafka_bootstrap, timeout=5.0):
                echo(
                    f"kafka: using the broker that already answers at {s.kafka_bootstrap} "
                    "(not started from this run folder; `tollgate dev down` leaves it running)"
                )
                return
            if not local:
                raise StackError(
                    f"no Kafka broker answers at {s.kafka_bootstrap}, and the local stack only "
                    "starts one on a loopback address: start that broker, or set "
                    "TOLLGATE_KAFKA_BOOTSTRAP=127.0.0.1:19092"
                )
            raise StackError(
                f"port {s.kafka_port} is held by a process that is not a Kafka broker: stop it, "
                "or set TOLLGATE_KAFKA_BOOTSTRAP to a free port"
            )
        if port_open("127.0.0.1", s.kafka_controller_port):
            raise StackError(
                f"port {s.kafka_controller_port} (Kafka controller) is held by another process: "
                "stop it, or set TOLLGATE_KAFKA_CONTROLLER_PORT to a free port"
            )
        java = _require_java()
        self._ensure_libs(echo)
        self.home.mkdir(parents=True, exist_ok=True)
        s.log_dir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        self._format_storage(java)
        command = [
            java,
            *self._heap_flags(),
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.log4j_file}",
            f"-Dkafka.logs.dir={s.log_dir}",
            "-cp",
            f"{self.libs}/*",
            MAIN_CLASS,
            str(self.config_file),
        ]
        self._started_at = time.monotonic()
        pid = launch_detached(command, self.jvm_log, cwd=self.home)
        self.pid_file.write_text(f"{pid}\n")
        self._pid = pid
        echo(f"kafka: starting Apache Kafka {s.kafka_version} (pid {pid}) on {s.kafka_bootstrap}")

    def wait_ready(self, echo: Echo) -> None:
        """Poll an admin metadata request until the broker answers; no fixed sleep."""
        s = self.settings
        if self._started_at is None:
            return  # an outside broker, checked by `start`
        deadline = self._started_at + s.startup_timeout
        while True:
            if self._pid is not None and not pid_alive(self._pid):
                self.pid_file.unlink(missing_ok=True)
                raise StackError(
                    f"the Kafka broker exited during start-up: see {self.log} and {self.jvm_log} "
                    f"(last lines: {tail(self.log, 3) or tail(self.jvm_log, 3) or 'none'})"
                )
            if self.answers(timeout=1.0):
                break
            if time.monotonic() > deadline:
                raise StackError(
                    f"the Kafka broker did not answer at {s.kafka_bootstrap} within "
                    f"{s.startup_timeout:g} s: see {self.log}, then `tollgate dev down` and retry "
                    "(or raise TOLLGATE_STARTUP_TIMEOUT)"
                )
            time.sleep(0.2)
        if not self._reused:
            elapsed = time.monotonic() - self._started_at
            echo(f"kafka: ready at {s.kafka_bootstrap} in {elapsed:.1f} s")

    # Stop and reset

    def stop(self, echo: Echo) -> None:
        pid = self.managed_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            if self.answers(timeout=1.0):
                where = self.settings.kafka_bootstrap
                echo(f"kafka: not started from this run folder, left running at {where}")
            else:
                echo("kafka: not running")
            return
        started = time.monotonic()
        killed = stop_pid(pid, signal.SIGTERM, _STOP_TIMEOUT)
        self.pid_file.unlink(missing_ok=True)
        how = "killed after SIGTERM timed out" if killed else "stopped"
        echo(f"kafka: {how} (pid {pid}) in {time.monotonic() - started:.1f} s")

    def reset(self, echo: Echo) -> None:
        """Delete every non-internal topic and every consumer group."""
        s = self.settings
        if not self.answers():
            raise StackError(
                f"no Kafka broker answers at {s.kafka_bootstrap}: run `tollgate dev up` first"
            )
        admin = admin_client(s.kafka_bootstrap)
        groups = [g.group_id for g in admin.list_consumer_groups(request_timeout=10).result().valid]
        if groups:
            failures = []
            for group, future in admin.delete_consumer_groups(groups, request_timeout=10).items():
                try:
                    future.result()
                except Exception as exc:
                    failures.append(f"{group} ({exc})")
            if failures:
                raise StackError(
                    "could not delete consumer groups "
                    + ", ".join(failures)
                    + ": stop their consumers (workers, sinks) first"
                )
        topics = sorted(t for t in admin.list_topics(timeout=10).topics if not t.startswith("__"))
        if topics:
            for future in admin.delete_topics(topics, operation_timeout=30).values():
                future.result()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                left = set(topics) & set(admin.list_topics(timeout=10).topics)
                if not left:
                    break
                time.sleep(0.2)
        echo(f"kafka: deleted {len(topics)} topic(s) and {len(groups)} consumer group(s)")

    # Helpers

    def _ensure_libs(self, echo: Echo) -> None:
        s = self.settings
        marker = self.libs / f"kafka_2.13-{s.kafka_version}.jar"
        if marker.is_file():
            return
        mvn = require_tool("mvn", "install Maven (`apt-get install -y maven`)")
        if not POM.is_file():
            raise StackError(f"{POM} is missing: run `tollgate dev up` from a tollgate checkout")
        s.log_dir.mkdir(parents=True, exist_ok=True)
        maven_log = s.log_dir / "maven.log"
        partial = self.libs.with_name(f"libs.partial-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        echo(
            f"kafka: resolving Apache Kafka {s.kafka_version} from Maven Central into "
            f"{self.libs} (first run only; log {maven_log})"
        )
        started = time.monotonic()
        with maven_log.open("w") as log:
            result = subprocess.run(
                [
                    mvn,
                    "--batch-mode",
                    "--no-transfer-progress",
                    "-f",
                    str(POM),
                    f"-Dkafka.version={s.kafka_version}",
                    "-DincludeScope=runtime",
                    f"-DoutputDirectory={partial}",
                    "dependency:copy-dependencies",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if result.returncode != 0 or not (partial / marker.name).is_file():
            shutil.rmtree(partial, ignore_errors=True)
            errors = [ln for ln in maven_log.read_text().splitlines() if "[ERROR]" in ln][:2]
            raise StackError(
                f"Maven could not resolve Kafka {s.kafka_version}: see {maven_log} "
                f"({' | '.join(errors) or 'no [ERROR] line'}); check TOLLGATE_KAFKA_VERSION and "
                "that Maven Central is reachable"
            )
        shutil.rmtree(self.libs, ignore_errors=True)
        partial.rename(self.libs)
        count = len(list(self.libs.glob("*.jar")))
        echo(f"kafka: {count} jars resolved in {time.monotonic() - started:.1f} s")

    def _write_config(self) -> None:
        s = self.settings
        host, port, controller = s.kafka_host, s.kafka_port, s.kafka_controller_port
        listen_host = f"[{host}]" if ":" in host else host
        properties = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{controller}",
            "controller.listener.names": "CONTROLLER",
            "listeners": f"PLAINTEXT://{listen_host}:{port},CONTROLLER://127.0.0.1:{controller}",
            "advertised.listeners": f"PLAINTEXT://{listen_host}:{port}",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": str(s.partitions),
            "default.replication.factor": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "10",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "log.retention.hours": "168",
            "log.segment.bytes": str(256 * 1024 * 1024),
        }
        lines = ["# Generated by `tollgate dev up` at every start; edits are overwritten."]
        lines += [f"{key}={value}" for key, value in properties.items()]
        self.config_file.write_text("\n".join(lines) + "\n")
        self.log4j_file.write_text(_LOG4J2.format(log=self.log))

    def _format_storage(self, java: str) -> None:
        if (self.data_dir / "meta.properties").is_file():
            return
        if not self.cluster_id_file.is_file():
            raw = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            self.cluster_id_file.write_text(raw + "\n")
        cluster_id = self.cluster_id_file.read_text().strip()
        result = subprocess.run(
            [
                java,
                "-Xmx256m",
                f"-Dlog4j2.configurationFile={self.log4j_file}",
                "-cp",
                f"{self.libs}/*",
                STORAGE_TOOL,
                "format",
                # One argument: a random id may start with "-", which would read as an option.
                f"--cluster-id={cluster_id}",
                "--config",
                str(self.config_file),
                "--ignore-formatted",
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            raise StackError(
                f"formatting Kafka storage in {self.data_dir} failed ({last[0]}): "
                "remove that folder (`tollgate dev down`, then delete it) and retry"
            )

    def _heap_flags(self) -> list[str]:
        heap = self.settings.kafka_heap
        megabytes = int(heap[:-1]) * (1024 if heap[-1] in "gG" else 1)
        return [f"-Xmx{heap}", f"-Xms{min(megabytes, 256)}m"]


def _require_java() -> str:
    fix = "install Java 17 or newer (`apt-get install -y openjdk-17-jre-headless`)"
    java = require_tool("java", fix)
    result = subprocess.run(
        [java, "-version"], capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL
    )
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if match is None:
        raise StackError(f"could not read the version of {java}: {fix}")
    major = int(match[1]) if match[1] != "1" else int(match[2] or 0)
    if major < 17:
        raise StackError(f"Kafka 4 needs Java 17 or newer, {java} is Java {major}: {fix}")
    return java


_LOG4J2 = """<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by `tollgate dev up`. -->
<Configuration status="WARN">
  <Appenders>
    <RollingFile name="file" fileName="{log}" filePattern="{log}.%i">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
      <Policies><SizeBasedTriggeringPolicy size="50 MB"/></Policies>
      <DefaultRolloverStrategy max="3"/>
    </RollingFile>
  </Appenders>
  <Loggers>
    <Logger name="kafka.server.KafkaRaftServer" level="INFO"/>
    <Logger name="kafka.server.BrokerServer" level="INFO"/>
    <Logger name="kafka.server.ControllerServer" level="INFO"/>
    <Root level="WARN"><AppenderRef ref="file"/></Root>
  </Loggers>
</Configuration>
"""
