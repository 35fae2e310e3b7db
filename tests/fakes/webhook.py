"""A loopback webhook receiver: keeps every POST (path, headers, raw body) and answers with
the statuses it is given, in order (then 200), so retries can be seen; `delay` seconds before
each answer, for timeouts."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson


@dataclass(frozen=True)
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


class WebhookReceiver(ThreadingHTTPServer):
    def __init__(self, statuses: list[int] | None = None, delay: float = 0.0) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.statuses = list(statuses or [])
        self.delay = delay
        self.deliveries: list[Delivery] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hooks/drift"

    def received(self) -> list[Delivery]:
        with self.lock:
            return list(self.deliveries)


class _Handler(BaseHTTPRequestHandler):
    server: WebhookReceiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        headers = {name.lower(): value for name, value in self.headers.items()}
        with self.server.lock:
            self.server.deliveries.append(Delivery(self.path, headers, body))
            status = self.server.statuses.pop(0) if self.server.statuses else 200
        time.sleep(self.server.delay)
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def running_receiver(
    statuses: list[int] | None = None, delay: float = 0.0
) -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(statuses, delay)
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.shutdown()
        receiver.server_close()
