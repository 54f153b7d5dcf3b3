"""The API assembled from settings: what a worker starts beside its agents."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.api.auth import Keys
from pipeline.api.directory import Directory
from pipeline.api.forwarding import Forwarder
from pipeline.api.handlers import Handlers
from pipeline.api.publishing import Publisher
from pipeline.api.server import ApiServer, build_application
from pipeline.clients.delivery import AckedProducer
from pipeline.kernel.settings import Settings
from pipeline.kernel.topics import Topics
from pipeline.wire import SchemaIds

HEADROOM = 64 * 1024  # an Avro header and a key on top of the largest event


@dataclass
class Api:
    server: ApiServer
    publisher: Publisher
    forwarder: Forwarder
    keys: Keys

    async def start(self) -> None:
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop()
        await self.forwarder.close()
        self.publisher.close()


def build_api(settings: Settings, directory: Directory, ids: SchemaIds, client_id: str) -> Api:
    topics = Topics.with_prefix(settings.topic_prefix)
    producer = AckedProducer(
        settings.kafka_bootstrap,
        client_id=f"{client_id}-api",
        max_message_bytes=settings.max_message_bytes + HEADROOM,
        message_timeout_ms=int(settings.api_publish_timeout * 1000) * 6,
    )
    publisher = Publisher(producer, topics.usage_events, settings.api_publish_timeout)
    forwarder = Forwarder(timeout=10.0)
    handlers = Handlers(
        directory, publisher, forwarder, ids, max_body_bytes=settings.api_max_body_bytes
    )
    keys = Keys(settings.api_key_list)
    application = build_application(
        handlers, keys, max_body_bytes=settings.api_max_body_bytes, served_by=settings.api_base_url
    )
    server = ApiServer(application, settings.api_host, settings.api_port)
    return Api(server, publisher, forwarder, keys)
