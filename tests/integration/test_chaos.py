"""Chaos: the whole pipeline (intake + worker) on a broker of its own, with the worker, the
intake and the broker itself killed -9 and restarted while events stream in. Outputs,
de-duplicated by id, must equal `tollgate replay`'s — same ids, same bodies — and an id seen
twice must carry the same body each time.

`make test` runs one round with several broker kills (a failure in one broker restart out of
four cannot hide behind one lucky kill); `make chaos` runs more rounds
(TOLLGATE_CHAOS_ROUNDS).
"""

from __future__ import annotations

import io
import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.clients.feed import Feeder, feed
from pipeline.kernel.settings import Settings
from pipeline.local.devstack.kafka import Kafka
from pipeline.local.settings import StackSettings
from pipeline.wire import dumps
from tests.integration.test_worker import replayed, wait_caught_up
from tests.integration.timelines import busy_timeline
from tests.integration.worker_process import Deployment, free_port

pytestmark = pytest.mark.integration

ROUNDS = int(os.environ.get("TOLLGATE_CHAOS_ROUNDS", "1"))
BROKER_KILLS = 6  # per round
EVENTS, RATE = 9000, 300.0  # 30 s of streaming per round


class OwnBroker:
    """A Kafka broker started for these tests alone, so that killing it disturbs nothing else."""

    def __init__(self, base: Settings, run_dir: Path) -> None:
        env = {
            **os.environ,  # the local stack's own knobs (cache, Kafka version), as set
            **base.as_env(),
            "TOLLGATE_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
            "TOLLGATE_KAFKA_CONTROLLER_PORT": str(free_port()),
            "TOLLGATE_RUN_DIR": str(run_dir),
        }
        self.settings = StackSettings.from_env(env)
        self.kills = 0

    def start(self) -> None:
        broker = Kafka(self.settings)
        broker.start(lambda _: None)
        broker.wait_ready(lambda _: None)

    def kill(self) -> None:
        pid = Kafka(self.settings).managed_pid()
        assert pid is not None, "the test broker is not running"
        os.kill(pid, signal.SIGKILL)
        while Kafka(self.settings).managed_pid() is not None:
            time.sleep(0.05)
        self.kills += 1

    def stop(self) -> None:
        Kafka(self.settings).stop(lambda _: None)


@pytest.fixture(scope="module")
def own_broker(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnBroker]:
    broker = OwnBroker(settings, tmp_path_factory.mktemp("broker"))
    broker.start()
    yield broker
    broker.stop()


def stream(deployment: Deployment, lines: list[str], rate: float) -> None:
    with deployment.producer() as producer:
        feed(lines, Feeder(producer), name="timeline", err=io.StringIO(), rate=rate)


@pytest.mark.parametrize("round_", range(ROUNDS), ids=lambda r: f"round{r}")
def test_killing_worker_intake_and_broker_loses_nothing_and_bills_nothing_twice(
    own_broker: OwnBroker, tmp_path: Path, round_: int
):
    deployment = Deployment.create(own_broker.settings, tmp_path)
    lines = busy_timeline(subscriptions=40, events=EVENTS, seed=100 + round_)
    rng = random.Random(round_)
    try:
        worker = deployment.start_worker()
        feeding = threading.Thread(target=stream, args=(deployment, lines, RATE))
        feeding.start()
        broker_kills = 0
        step = 0
        while feeding.is_alive() or broker_kills < BROKER_KILLS:
            time.sleep(rng.uniform(1.5, 3.5))
            deployment.supervise()
            step += 1
            if step % 2 == 0 and broker_kills < BROKER_KILLS:
                own_broker.kill()
                time.sleep(rng.uniform(0.5, 2.0))
                own_broker.start()
                broker_kills += 1
            elif step % 3 == 0 and deployment.intakes[-1].poll() is None:
                deployment.kill(deployment.intakes[-1])
                deployment.start_intake()
            elif deployment.processes[-1].poll() is None:
                worker = deployment.processes[-1]
                deployment.kill(worker)
                deployment.start_worker()
        feeding.join()
        for _ in range(6):  # the pipeline restarted by its supervisor until it catches up
            deployment.supervise()
            try:
                wait_caught_up(deployment, timeout=60)
                break
            except AssertionError:
                continue
        else:
            wait_caught_up(deployment, timeout=60)
        records = deployment.outputs(idle_exit=10.0)
        bodies: dict[str, set[str]] = {}
        for record in records:
            bodies.setdefault(record.id, set()).add(dumps(record.body))
        changed = {i: b for i, b in bodies.items() if len(b) > 1}
        assert not changed, f"{len(changed)} ids carried two bodies: {list(changed)[:3]}"
        live = {i: next(iter(b)) for i, b in bodies.items()}
        expected = dict(replayed(lines))
        missing = set(expected) - set(live)
        extra = set(live) - set(expected)
        wrong = {i for i in set(live) & set(expected) if live[i] != expected[i]}
        assert not (missing or extra or wrong), (
            f"after {broker_kills} broker kills: {len(missing)} missing, {len(extra)} extra, "
            f"{len(wrong)} different of {len(expected)}\n{deployment.logs()}"
        )
        assert broker_kills == BROKER_KILLS
    finally:
        deployment.stop_all()
