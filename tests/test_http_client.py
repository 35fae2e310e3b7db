"""The fast path's HTTP client, against the fake upstream and tiny scripted servers.

Every test runs on both event loops the gateway may use (asyncio's and uvloop), and fails on
a leaked task, an unclosed transport or an exception the loop had to swallow.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import ssl
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType

import orjson
import pytest

from gateway.core.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from gateway.providers.base import Deployment
from gateway.providers.errors import parse_retry_after, translate_http_errors
from gateway.providers.openai_compat import OpenAICompatibleProvider
from gateway.transport.http_client import (
    BodyIncomplete,
    ConnectFailed,
    HTTPClient,
    MalformedResponse,
    Response,
    ServerDisconnected,
)
from tests.conftest import free_port
from tests.fakes.upstream import FakeUpstream
from tests.loops import LOOP_NAMES, LOOPS, Run, loop_runner

CHAT = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "one two"}]})
STREAM = orjson.dumps(
    {"model": "m", "stream": True, "messages": [{"role": "user", "content": "one two"}]}
)


@pytest.fixture(params=LOOPS, ids=LOOP_NAMES)
def run(request: pytest.FixtureRequest) -> Run:
    return loop_runner(request.param)


def answer(body: bytes = b'{"ok":true}', *headers: str, status: str = "200 OK") -> bytes:
    if not any(h.lower().startswith(("content-length", "transfer-encoding")) for h in headers):
        headers = (f"content-length: {len(body)}", *headers)
    lines = "".join(f"{header}\r\n" for header in headers)
    return f"HTTP/1.1 {status}\r\n{lines}\r\n".encode() + body


async def forever() -> None:
    await asyncio.get_running_loop().create_future()


# Writes the answer to request number `served` (from 1) on connection number `accepted` (from
# 1); returns False to close the connection afterwards.
Script = Callable[[asyncio.StreamWriter, int, int], Awaitable[bool]]


class TinyServer:
    """A loopback HTTP server that counts connections and lets the test script each answer."""

    def __init__(self, script: Script, tls: ssl.SSLContext | None = None) -> None:
        self.script, self.tls = script, tls
        self.accepted = 0
        self.requests: list[bytes] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> TinyServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        port = self._server.sockets[0].getsockname()[1]
        host = "localhost" if self.tls else "127.0.0.1"
        self.url = f"{'https' if self.tls else 'http'}://{host}:{port}/v1/chat/completions"
        return self

    async def __aexit__(
        self, *exc: type[BaseException] | BaseException | TracebackType | None
    ) -> None:
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.accepted += 1
        accepted, served = self.accepted, 0
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = re.search(rb"content-length: (\d+)", head)
                body = await reader.readexactly(int(length.group(1)) if length else 0)
                self.requests.append(head + body)
                served += 1
                if not await self.script(writer, accepted, served):
                    return
                await writer.drain()
        except asyncio.CancelledError:
            return  # our own shutdown; a cancelled handler makes asyncio 3.11 log an error
        finally:
            writer.transport.abort()


async def always_ok(writer: asyncio.StreamWriter, accepted: int, served: int) -> bool:
    writer.write(answer())
    return True


def test_keep_alive_reuses_one_connection(run: Run) -> None:
    async def scenario() -> None:
        async with TinyServer(always_ok) as server:
            client = HTTPClient()
            for _ in range(5):
                response = await client.post(
                    server.url, {"authorization": "Bearer k"}, CHAT, total=5
                )
                assert response.status == 200
                assert await response.read() == b'{"ok":true}'
            assert server.accepted == 1
            head = server.requests[0].decode()
            port = server.url.split(":")[2].split("/")[0]
            assert head.startswith("POST /v1/chat/completions HTTP/1.1\r\n")
            for line in (f"host: 127.0.0.1:{port}", "authorization: Bearer k",
                         f"content-length: {len(CHAT)}", "accept-encoding: identity"):  # fmt: skip
                assert f"\r\n{line}\r\n" in head
            assert server.requests[0].endswith(CHAT)
            await client.aclose()
            assert not client.connections

    run(scenario)


def test_server_closing_an_idle_connection_triggers_one_safe_retry(run: Run) -> None:
    async def script(writer: asyncio.StreamWriter, accepted: int, served: int) -> bool:
        if accepted == 1 and served == 2:
            return False  # the server's idle close crossed the client's second request
        writer.write(answer())
        return True

    async def scenario() -> None:
        async with TinyServer(script) as server:
            client = HTTPClient()
            for _ in range(2):
                response = await client.post(server.url, {}, CHAT, total=5)
                assert await response.read() == b'{"ok":true}'
            assert server.accepted == 2
            assert len(server.requests) == 3
            await client.aclose()

    run(scenario)


def test_a_fresh_connection_closed_without_answer_is_not_retried(run: Run) -> None:
    async def script(writer: asyncio.StreamWriter, accepted: int, served: int) -> bool:
        return False

    async def scenario() -> None:
        async with TinyServer(script) as server:
            client = HTTPClient()
            with pytest.raises(ServerDisconnected):
                await client.post(server.url, {}, CHAT, total=5)
            assert server.accepted == 1
            await client.aclose()

    run(scenario)


def test_a_reused_connection_that_answered_in_part_is_not_retried(run: Run) -> None:
    async def script(writer: asyncio.StreamWriter, accepted: int, served: int) -> bool:
        if served == 2:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-le")
            return False
        writer.write(answer())
        return True

    async def scenario() -> None:
        async with TinyServer(script) as server:
            client = HTTPClient()
            await (await client.post(server.url, {}, CHAT, total=5)).read()
            with pytest.raises(ServerDisconnected):
                await client.post(server.url, {}, CHAT, total=5)
            assert server.accepted == 1
            await client.aclose()

    run(scenario)


BODY = b"x" * 5000


async def content_length(writer: asyncio.StreamWriter, accepted: int, served: int) -> bool:
    writer.write(answer(BODY))
    return True


async def chunked(writer: asyncio.StreamWriter, accepted: int, served: int) -> bool:
    writer.write(answer(b"", "transfer-encoding: chunked"))
    for start in range(0, len(BODY), 1000):
        writer.write(b"%x\r\n%s\r\n" % (1000, BODY[start : start + 1000]))
        await writer.drain()
        await asyncio.sleep(0.002)
    writer.write(b"0\r\n\r\n")
    return True


async def close_delimited(writer: asyncio.StreamWriter, accepted: int, served: int) -> bool:
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n" + BODY[:2500])
    await writer.drain()
    await asyncio.sleep(0.01)
    writer.write(BODY[2500:])
    await writer.drain()
    writer.close()
    return False


@pytest.mark.parametrize(
    ("script", "reusable"),
    [(content_length, True), (chunked, True), (close_delimited, False)],
    ids=["content-length", "chunked", "close-delimited"],
)
def test_body_framings(run: Run, script: Script, reusable: bool) -> None:
    async def scenario() -> None:
        async with TinyServer(script) as server:
            client = HTTPClient()
            for _ in range(2):
                response = await client.post(server.url, {}, CHAT, total=5)
                assert await response.read() == BODY
            assert server.accepted == (1 if reusable else 2)
            await client.aclose()

    run(scenario)


def test_connection_close_is_honoured_even_if_the_server_keeps_it_open(run: Run) -> None:
    async def script(writer: asyncio.StreamWriter, accepted: int, served: int) -> bool:
        writer.write(answer(b"{}", "connection: close"))
        return True

    async def scenario() -> None:
        async with TinyServer(script) as server:
            client = HTTPClient()
            for _ in range(2):
                assert await (await client.post(server.url, {}, CHAT, total=5)).read() == b"{}"
            assert server.accepted == 2
            await asyncio.sleep(0.01)
            assert not client.connections
            await client.aclose()

    run(scenario)


def test_large_body_arrives_whole(run: Run) -> None:
    big = bytes(range(256)) * (3 * 4096 + 7)  # > 3 MiB: reading pauses and resumes

    async def script(writer: asyncio.StreamWriter, accepted: int, served: int) -> bool:
        writer.write(answer(big))
        return True

    async def scenario() -> None:
        async with TinyServer(script) as server:
            client = HTTPClient()
            for _ in range(2):
                response = await client.post(server.url, {}, CHAT, total=5)
                await asyncio.sleep(0.05)  # let the socket fill our buffer past the high water
                assert await response.read() == big
            assert server.accepted == 1
            await client.aclose()

    run(scenario)


def test_headers_are_case_insensitive_and_repeated_ones_joined(run: Run) -> None:
    async def script(writer: asyncio.StreamWriter, accepted: int, served: int) -> bool:
        headers = ("Retry-After: 3", "X-Dup: a", "X-DUP: b", "Content-Type: application/json")
        writer.write(answer(b"{}", *headers, status="429 Too Many Requests"))
        return True

    async def scenario() -> None:
        async with TinyServer(script) as server:
            client = HTTPClient()
            response = await client.post(server.url, {}, CHAT, total=5)
            assert response.status == 429
            assert response.headers["x-dup"] == "a, b"
            assert response.headers["content-type"] == "application/json"
            assert parse_retry_after(response.headers) == 3.0
            await response.read()
            await client.aclose()

    run(scenario)


async def head_and_one_chunk_then_stall(
    writer: asyncio.StreamWriter, accepted: int, served: int
) -> bool:
    writer.write(answer(b"", "transfer-encoding: chunked") + b"5\r\nfirst\r\n")
    await writer.drain()
    await forever()
    return False


def test_idle_timeout_between_chunks_closes_the_connection(run: Run) -> None:
    async def scenario() -> None:
        async with TinyServer(head_and_one_chunk_then_stall) as server:
            client = HTTPClient()
            response = await client.post(server.url, {}, STREAM, total=5, idle=0.2)
            response.deadline = None
            assert await response.chunk() == b"first"
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                await response.chunk()
            assert 0.15 < time.monotonic() - started < 2
            await asyncio.sleep(0.01)
            assert not client.connections
            await client.aclose()

    run(scenario)


def test_total_deadline_covers_the_whole_body(run: Run) -> None:
    async def scenario() -> None:
        async with TinyServer(head_and_one_chunk_then_stall) as server:
            client = HTTPClient()
            response = await client.post(server.url, {}, CHAT, total=0.3)
            with pytest.raises(TimeoutError):
                await response.read()
            await asyncio.sleep(0.01)
            assert not client.connections
            await client.aclose()

    run(scenario)


def test_cancelled_reads_return_nothing_to_the_pool(run: Run) -> None:
    async def script(writer: asyncio.StreamWriter, accepted: int, served: int) -> bool:
        if accepted < 3:
            return await head_and_one_chunk_then_stall(writer, accepted, served)
        await forever()
        return False

    async def scenario() -> None:
        async with TinyServer(script) as server:
            client = HTTPClient()
            abandoned = await client.post(server.url, {}, STREAM, total=5)
            assert await abandoned.chunk() == b"first"
            abandoned.close()  # half-read: closed, not pooled
            response = await client.post(server.url, {}, STREAM, total=5)
            assert await response.chunk() == b"first"
            reading = asyncio.create_task(response.chunk())
            await asyncio.sleep(0.05)
            reading.cancel()
            with pytest.raises(asyncio.CancelledError):
                await reading
            response.close()
            # And a request cancelled while it waits for the head.
            posting = asyncio.create_task(client.post(server.url, {}, STREAM, total=5))
            await asyncio.sleep(0.05)
            posting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await posting
            await asyncio.sleep(0.01)
            assert not client.connections
            assert server.accepted == 3
            await client.aclose()

    run(scenario)


def test_malformed_http_is_its_own_error(run: Run) -> None:
    async def script(writer: asyncio.StreamWriter, accepted: int, served: int) -> bool:
        writer.write(b"HTTP/1.1 abc nonsense\r\n\x00\x01\r\n\r\n")
        return True

    async def scenario() -> None:
        async with TinyServer(script) as server:
            client = HTTPClient()
            with pytest.raises(MalformedResponse):
                await client.post(server.url, {}, CHAT, total=5)
            await asyncio.sleep(0.01)
            assert not client.connections
            await client.aclose()

    run(scenario)


def test_refused_connection(run: Run) -> None:
    async def scenario() -> None:
        client = HTTPClient()
        with pytest.raises(ConnectFailed) as caught:
            await client.post(f"http://127.0.0.1:{free_port()}/v1", {}, CHAT, total=5)
        assert isinstance(caught.value.os_error, ConnectionRefusedError)
        await client.aclose()

    run(scenario)


def test_aclose_closes_busy_and_idle_connections(run: Run) -> None:
    async def script(writer: asyncio.StreamWriter, accepted: int, served: int) -> bool:
        if accepted == 1:
            writer.write(answer())
            return True
        return await head_and_one_chunk_then_stall(writer, accepted, served)

    async def scenario() -> None:
        async with TinyServer(script) as server:
            client = HTTPClient()
            idle = await client.post(server.url, {}, CHAT, total=5)
            busy = await client.post(server.url, {}, STREAM, total=5)
            await idle.read()
            assert len(client.connections) == 2
            await client.aclose()
            assert not client.connections
            with pytest.raises(BodyIncomplete):
                await busy.read()

    run(scenario)


def test_tls(run: Run, tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(cert, key)
    trusting = ssl.create_default_context(cafile=str(cert))

    async def scenario() -> None:
        async with TinyServer(always_ok, tls=served) as server:
            client = HTTPClient(tls=trusting)
            for _ in range(3):
                assert await (await client.post(server.url, {}, CHAT, total=5)).read()
            assert server.accepted == 1
            await client.aclose()
            with pytest.raises(ConnectFailed):  # the system CAs do not know our certificate
                await HTTPClient().post(server.url, {}, CHAT, total=5)

    run(scenario)


# Against the fake upstream: the failure modes the gateway's own tests rely on.


async def started_fake() -> FakeUpstream:
    fake = FakeUpstream()
    await fake.start()
    return fake


def chat_body(model: str, stream: bool = False) -> bytes:
    messages = [{"role": "user", "content": "one two three"}]
    return orjson.dumps({"model": model, "messages": messages, "stream": stream})


async def drain(response: Response, into: list[bytes]) -> None:
    while data := await response.chunk():
        into.append(data)


def test_fake_upstream_stream_cut_and_stall(run: Run) -> None:
    async def scenario() -> None:
        fake = await started_fake()
        url = fake.url + "/chat/completions"
        client = HTTPClient()
        try:
            response = await client.post(url, {}, chat_body("chunk_delay=5", True), total=5)
            body = await response.read()
            assert body.endswith(b"data: [DONE]\n\n")
            assert body.count(b"data: ") == 8
            await (await client.post(url, {}, chat_body("x"), total=5)).read()
            assert len(client.connections) == 1  # the stream's connection was reused

            cut = await client.post(url, {}, chat_body("cut=2", True), total=5)
            received: list[bytes] = []
            with pytest.raises(BodyIncomplete):
                await drain(cut, received)
            assert b"".join(received).count(b"data: ") == 3

            stall = await client.post(url, {}, chat_body("stall=1", True), total=5, idle=0.2)
            stall.deadline = None
            with pytest.raises(TimeoutError):
                await stall.read()
            with pytest.raises(TimeoutError):
                await client.post(url, {}, chat_body("hang"), total=0.2)
            await asyncio.sleep(0.01)
            assert not client.connections  # each failure closed its connection
        finally:
            await client.aclose()
            await fake.stop()

    run(scenario)


def deployment(api_base: str, model: str = "m") -> Deployment:
    return Deployment(
        id="d1", alias="a", model=f"openai/{model}", provider="openai",
        upstream_model=model, api_base=api_base, timeout=5, stream_timeout=5,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("raised", "expected", "text"),
    [
        (TimeoutError(), UpstreamTimeout, "did not answer in time"),
        (
            ConnectFailed(ConnectionRefusedError(111, "refused")),
            UpstreamUnavailable,
            "cannot connect",
        ),
        (BodyIncomplete("cut"), UpstreamError, "broke mid-answer"),
        (ServerDisconnected("eof"), UpstreamError, "closed the connection"),
        (MalformedResponse("bad status"), UpstreamError, "transport error"),
    ],
)
def test_client_failures_become_gateway_errors(
    raised: Exception, expected: type[Exception], text: str
) -> None:
    with pytest.raises(expected) as caught, translate_http_errors(deployment("http://x")):
        raise raised
    assert type(caught.value) is expected
    assert text in str(caught.value)


def test_abandoned_provider_stream_closes_its_connection(run: Run) -> None:
    async def scenario() -> None:
        fake = await started_fake()
        provider = OpenAICompatibleProvider()
        try:
            body = {"messages": [{"role": "user", "content": "a b c"}], "stream": True}
            slow = deployment(fake.url, "chunk_delay=50,chunks=3")
            stream = await provider.open_stream(slow, dict(body))
            await stream.aclose()  # the client went away after the first event
            fast = deployment(fake.url, "chunks=3")
            stream = await provider.open_stream(fast, dict(body))
            events = [event async for event in stream.events()]
            assert events[-1] == b"data: [DONE]\n\n"
            await stream.aclose()
            http = provider._http
            assert http is not None
            await asyncio.sleep(0.01)
            assert len(http.connections) == 1  # the finished stream's, back in the pool
            assert fake.calls("chunk_delay=50,chunks=3") == 1
        finally:
            await provider.aclose()
            await fake.stop()

    run(scenario)


def test_a_redirect_is_a_clear_error_not_a_silent_second_request(run: Run) -> None:
    async def script(writer: asyncio.StreamWriter, accepted: int, served: int) -> bool:
        writer.write(answer(b"", "location: https://elsewhere.example/v1", status="307 Moved"))
        return True

    async def scenario() -> None:
        async with TinyServer(script) as server:
            provider = OpenAICompatibleProvider()
            target = deployment(server.url.removesuffix("/chat/completions"))
            with pytest.raises(UpstreamError) as caught:
                await provider.chat(target, {"messages": []})
            # The operator's log learns where to; the caller only that there was a redirect.
            assert "redirect" in caught.value.message
            assert "elsewhere" not in caught.value.message
            assert "answered 307" in (caught.value.detail or "")
            assert "redirected to https://elsewhere.example/v1" in (caught.value.detail or "")
            assert len(server.requests) == 1
            await provider.aclose()

    run(scenario)


def test_provider_request_headers(run: Run) -> None:
    async def scenario() -> None:
        async with TinyServer(always_ok) as server:
            provider = OpenAICompatibleProvider()
            target = deployment(server.url.removesuffix("/chat/completions"))
            target.api_key = "k"
            target.extra_headers = {"X-Trace": "1", "Content-Length": "9", "Authorization": "no"}
            reply = await provider.chat(target, {"messages": []})
            assert reply.body == b'{"ok":true}'
            head, _, body = server.requests[0].partition(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            assert lines[0] == "POST /v1/chat/completions HTTP/1.1"
            assert sorted(lines[1:]) == sorted(
                [
                    f"host: {server.url.split('/')[2]}",
                    "content-type: application/json",
                    "x-trace: 1",
                    "authorization: Bearer k",
                    f"content-length: {len(body)}",
                    "accept-encoding: identity",
                ]
            )
            assert orjson.loads(body) == {"messages": [], "model": "m"}
            await provider.aclose()

    run(scenario)
