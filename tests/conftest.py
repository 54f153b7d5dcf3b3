"""Shared fixtures. The stack's addresses come from the TOLLGATE_* variables (Settings).

Tests that need Kafka or PostgreSQL are marked `integration` (everything under
tests/integration/ is marked automatically). When the stack does not answer, their fixtures
fail with a message naming the fix: a silent skip would hide a broken stack. Tests that ask
for none of these fixtures (tests/unit) run without the stack.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from psycopg import sql

from pipeline.clients.topic_admin import admin_client
from pipeline.kernel.settings import Settings
from pipeline.tooling import compiled_engine

_START_HINT = "start the local stack with `make up` (or `tollgate dev up`)"
_INTEGRATION_DIR = Path(__file__).parent / "integration"


def pytest_configure(config: pytest.Config) -> None:
    """The engine TOLLGATE_ENGINE asks for, chosen before any test module imports it."""
    compiled_engine.select_from_env()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _INTEGRATION_DIR in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings.from_env()


@pytest.fixture(scope="session")
def kafka_admin(settings: Settings) -> AdminClient:
    admin = admin_client(settings.kafka_bootstrap)
    problem = ""
    try:
        if not admin.list_topics(timeout=10).brokers:
            problem = "no broker listed"
    except Exception as exc:
        problem = str(exc)
    if problem:
        pytest.fail(
            f"Kafka does not answer at {settings.kafka_bootstrap} (TOLLGATE_KAFKA_BOOTSTRAP): "
            f"{_START_HINT}. Cause: {problem}",
            pytrace=False,
        )
    return admin


@pytest.fixture(scope="session")
def kafka_bootstrap(settings: Settings, kafka_admin: AdminClient) -> str:
    """Bootstrap servers of a Kafka broker that answered a metadata request."""
    return settings.kafka_bootstrap


@pytest.fixture(scope="session")
def database_url(settings: Settings) -> str:
    """URL of a PostgreSQL server that accepted a login."""
    problem = ""
    try:
        with psycopg.connect(settings.database_url, connect_timeout=5):
            pass
    except psycopg.Error as exc:
        problem = str(exc).strip()
    if problem:
        pytest.fail(
            f"PostgreSQL does not accept TOLLGATE_DATABASE_URL: {_START_HINT}. Cause: {problem}",
            pytrace=False,
        )
    return settings.database_url


@pytest.fixture
def unique_topic(
    settings: Settings, kafka_admin: AdminClient, kafka_bootstrap: str
) -> Iterator[Callable[..., str]]:
    """Factory: `unique_topic(name="events", partitions=None)` creates a topic with a UUID in
    its name (prefix TOLLGATE_TOPIC_PREFIX) and returns its name; all are deleted afterwards."""
    created: list[str] = []

    def create(name: str = "test", partitions: int | None = None) -> str:
        topic = f"{settings.topic_prefix}{name}.{uuid.uuid4().hex}"
        count = partitions or settings.partitions
        futures = kafka_admin.create_topics(
            [NewTopic(topic, num_partitions=count, replication_factor=1)], operation_timeout=30
        )
        futures[topic].result()
        created.append(topic)
        return topic

    yield create
    if created:
        for future in kafka_admin.delete_topics(created, operation_timeout=30).values():
            future.result()


@pytest.fixture
def pg_conn(database_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """An autocommit psycopg connection to TOLLGATE_DATABASE_URL, closed afterwards."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def new_schema(database_url: str, pg_conn: psycopg.Connection[tuple[object, ...]]) -> Iterator[str]:
    """A fresh schema with a UUID in its name, first on `pg_conn`'s search_path; dropped
    (with everything in it) afterwards, over a connection of its own."""
    schema = sql.Identifier(name := f"test_{uuid.uuid4().hex}")
    pg_conn.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
    pg_conn.execute(sql.SQL("SET search_path TO {}, public").format(schema))
    try:
        yield name
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(schema))
