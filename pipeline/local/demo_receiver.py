"""A local webhook receiver for the demo: checks each delivery's signature and counts it once
per `webhook-id`, as a real receiver that drops duplicates would."""

from __future__ import annotations

import hmac
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sinks.webhooks.signing import sign


class Receiver:
    def __init__(self) -> None:
        self.secret = ""
        self.seen: set[str] = set()
        self.by_type: Counter[str] = Counter()
        self.rejected = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/webhooks"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def accept(self, webhook_id: str, timestamp: str, signature: str, body: str) -> bool:
        expected = sign(self.secret, webhook_id, int(timestamp), body)
        valid = any(hmac.compare_digest(expected, s) for s in signature.split())
        with self._lock:
            if not valid:
                self.rejected += 1
            elif webhook_id not in self.seen:
                self.seen.add(webhook_id)
                kind = body.split('"webhook_type":"', 1)[-1].split('"', 1)[0]
                self.by_type[kind] += 1
        return valid

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length).decode("utf-8")
                ok = receiver.accept(
                    self.headers.get("webhook-id", ""),
                    self.headers.get("webhook-timestamp", "0"),
                    self.headers.get("webhook-signature", ""),
                    body,
                )
                self.send_response(204 if ok else 401)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        return Handler
