"""Running `tollgate worker` as a real process for the integration tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from pipeline.clients.outputs import read_outputs
from pipeline.clients.producer import UsageProducer
from pipeline.clients.topic_admin import ensure_topics_for
from pipeline.kernel.settings import Settings
from pipeline.kernel.topics import Topics
from pipeline.wire import OutputRecord
from pipeline.worker.stall import EXIT_STALLED


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Deployment:
    """One isolated pipeline: its own topic prefix, worker group and state folder."""

    settings: Settings
    run_dir: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)  # workers
    intakes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    log_files: list[BinaryIO] = field(default_factory=list)
    restarted: list[subprocess.Popen[bytes]] = field(default_factory=list)
    api_urls: list[str] = field(default_factory=list)  # each worker's HTTP API, in start order
    worker_env: dict[str, str] = field(default_factory=dict)  # extra settings for workers

    @classmethod
    def create(cls, base: Settings, run_dir: Path, *, store: str = "rocksdb://") -> Deployment:
        name = f"t{uuid.uuid4().hex[:10]}"
        env = {
            **base.as_env(),
            "TOLLGATE_TOPIC_PREFIX": f"{name}.",
            "TOLLGATE_WORKER_APP_ID": f"{name}-worker",
            "TOLLGATE_INTAKE_GROUP": f"{name}-intake",
            "TOLLGATE_WORKER_STORE": store,
            "TOLLGATE_RUN_DIR": str(run_dir),
            # Killed and added workers: the group settles in seconds, not minutes.
            "TOLLGATE_WORKER_SESSION_TIMEOUT": "10",
            "TOLLGATE_WORKER_STALL_TIMEOUT": "20",
        }
        deployment = cls(Settings.from_env(env), run_dir)
        ensure_topics_for(deployment.settings)
        return deployment

    @property
    def topics(self) -> Topics:
        return Topics.with_prefix(self.settings.topic_prefix)

    def producer(self) -> UsageProducer:
        return UsageProducer(self.settings.kafka_bootstrap, self.topics)

    def start_worker(self) -> subprocess.Popen[bytes]:
        """A worker, and the first time an intake in front of it (the pipeline's two stages)."""
        if not self.intakes:
            self.start_intake()
        port = free_port()
        self.api_urls.append(f"http://127.0.0.1:{port}")
        env = {**self.worker_env, "TOLLGATE_API_PORT": str(port)}
        return self._start("worker", ["worker", "--clock", "records"], self.processes, env)

    def start_intake(self) -> subprocess.Popen[bytes]:
        return self._start("intake", ["intake"], self.intakes)

    def _start(
        self,
        name: str,
        command: list[str],
        into: list[subprocess.Popen[bytes]],
        extra: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            **self.settings.as_env(),
            "TOLLGATE_METRICS_PORT": str(free_port()),
            **(extra or {}),
        }
        log = open(self.run_dir / f"{name}-{len(into)}.log", "wb")  # noqa: SIM115
        self.log_files.append(log)
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", *command],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        into.append(process)
        return process

    def restart_stalled(self) -> int:
        """What a supervisor does (docker-compose: `restart: unless-stopped`): a worker that
        exited because a partition stalled is started again. Returns how many were."""
        return self.supervise(only_code=EXIT_STALLED)

    def supervise(self, only_code: int | None = None) -> int:
        """Start again every worker and intake that exited (with `only_code`, only those that
        exited with it). Returns how many were."""
        count = 0
        for into, start in ((self.processes, self.start_worker), (self.intakes, self.start_intake)):
            for process in list(into):
                code = process.poll()
                if code is None or process in self.restarted:
                    continue
                if only_code is not None and code != only_code:
                    continue
                self.restarted.append(process)
                start()
                count += 1
        return count

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        self.restarted.append(process)  # whoever kills it starts the next one

    def stop_all(self) -> None:
        everything = self.intakes + self.processes
        for process in everything:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + 30
        for process in everything:
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in self.log_files:
            log.close()

    def outputs(self, *, idle_exit: float = 8.0) -> list[OutputRecord]:
        return read_outputs(self.settings.kafka_bootstrap, self.topics.outputs, idle_exit=idle_exit)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-4000:] for p in self.run_dir.glob("*.log"))
