"""A server-sent-events response that notices a client leaving, for less than Starlette's.

Starlette's StreamingResponse watches for the client's disconnect with an anyio task group
per response: about a tenth of a streamed call's CPU under load. This response does the same
job with one plain asyncio task waiting on `receive()`: when the client goes, the relay is
cancelled where it waits (usually on the upstream), so the upstream call stops being paid
for and the relay's cleanup records the disconnect.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping

from starlette.responses import Response
from starlette.types import Receive, Scope, Send


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class EventStreamResponse(Response):
    media_type = "text/event-stream"

    def __init__(self, events: AsyncGenerator[bytes, None], headers: Mapping[str, str]) -> None:
        self.events = events
        self.status_code = 200
        self.background = None
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        relay = asyncio.current_task()
        assert relay is not None
        gone = False

        def on_disconnect(watcher: asyncio.Future[None]) -> None:
            nonlocal gone
            if not watcher.cancelled() and watcher.exception() is None:
                gone = True
                relay.cancel()

        watcher = asyncio.ensure_future(_disconnect(receive))
        watcher.add_done_callback(on_disconnect)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async for chunk in self.events:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not gone:
                raise
            relay.uncancel()  # the client left: a normal end for this response
        except OSError:
            pass  # servers on ASGI spec 2.4 report a gone client this way
        finally:
            watcher.remove_done_callback(on_disconnect)
            watcher.cancel()
            await self.events.aclose()  # runs the relay's cleanup if it stopped midway
