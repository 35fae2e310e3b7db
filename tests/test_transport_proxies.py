"""Forward proxies from the environment, and what servers receive from the lean client
compared with httpx, byte for byte.

The forward proxy is a small one written here: it answers CONNECT by opening a tunnel, and
passes an absolute-form request on to the origin unchanged (RFC 9112 says origins accept it),
recording the head of everything it is asked. The origins record the raw bytes they receive.

Normalized before comparing, and only this: header-name case and header order (HTTP gives
neither a meaning; httpx writes `Host`, `Content-Length` and keeps the caller's order, the
lean client writes lower case, host first and its framing headers last). httpx's own default
headers (`accept`, `accept-encoding`, `connection`, `user-agent`) are removed from its client,
and both are given the same request headers, `accept-encoding: identity` included (the lean
client always sends it: it never asks for compression).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import ssl
from pathlib import Path

import httpx
import orjson
import pytest

from gateway.core.errors import UpstreamUnavailable
from gateway.providers.openai_compat import OpenAICompatibleProvider
from gateway.transport.http_client import HTTPClient, ProxyError
from gateway.transport.proxies import Proxies
from gateway.transport.tls import TLSOptions
from tests.loops import LOOP_NAMES, LOOPS, Run, loop_runner
from tests.test_transport_conformance import BODY, deployment, fake_upstream
from tests.tls_material import Material, make_material


@pytest.fixture(params=LOOPS, ids=LOOP_NAMES)
def run(request: pytest.FixtureRequest) -> Run:
    return loop_runner(request.param)


PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUEST_METHOD")


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Material:
    return make_material(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


# --- NO_PROXY and friends: the same decisions as httpx -----------------------------------------

ENVIRONMENTS = [
    {"HTTPS_PROXY": "http://p1:3128"},
    {
        "HTTP_PROXY": "http://p2:8080",
        "HTTPS_PROXY": "p1:3128",
        "NO_PROXY": "example.com,.internal.test,localhost,127.0.0.1,::1,10.0.0.0/8,"
        "api.example.org:8443,http://plain.test",
    },
    {"ALL_PROXY": "http://user:pw@p3:1080", "no_proxy": "*"},
    {
        "ALL_PROXY": "http://p3:1080",
        "HTTPS_PROXY": "http://p1:3128",
        "NO_PROXY": " foo.test , ,bar.test:443,BAZ.test",
    },
    {"http_proxy": "http://lower:1", "HTTP_PROXY": "http://upper:2", "no_proxy": "a.test,*"},
    {"HTTP_PROXY": "http://p2:8080", "NO_PROXY": "*.wild.test,::3"},
]
URLS = [
    "https://example.com/v1", "https://api.example.com/v1", "https://notexample.com/",
    "http://x.internal.test/", "https://internal.test/", "http://localhost:8000/",
    "https://sub.localhost/", "http://127.0.0.1:9/", "http://[::1]:8080/",
    "http://[::3]/", "http://10.0.0.1/", "http://10.0.0.0/", "https://api.example.org:8443/",
    "https://api.example.org/", "http://plain.test/", "https://plain.test/", "https://foo.test/",
    "https://bar.test/", "https://bar.test:443/", "https://bar.test:8443/",
    "https://API.EXAMPLE.COM/", "https://baz.test/", "http://a.wild.test/", "http://wild.test/",
]  # fmt: skip


def httpx_proxy(url: str) -> tuple[str, int] | None:
    client = httpx.Client(trust_env=True)
    try:
        transport = client._transport_for_url(httpx.URL(url))
        if transport is client._transport:
            return None
        proxy = transport._pool._proxy_url  # type: ignore[attr-defined]
        return proxy.host.decode(), proxy.port
    finally:
        client.close()


@pytest.mark.parametrize("environment", ENVIRONMENTS, ids=lambda e: ",".join(sorted(e)))
def test_proxy_choice_matches_httpx(
    proxy_env: pytest.MonkeyPatch, environment: dict[str, str]
) -> None:
    for name, value in environment.items():
        proxy_env.setenv(name, value)
    ours = Proxies.from_environment()
    differences = []
    for url in URLS:
        parts = httpx.URL(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        proxy = ours.for_url(parts.scheme, parts.host, port)
        mine = None if proxy is None else (proxy.host, proxy.port)
        theirs = httpx_proxy(url)
        if mine != theirs:
            differences.append(f"{url}: httpx {theirs}, lean {mine}")
    assert not differences, differences


def test_unsupported_proxy_is_named_not_bypassed(proxy_env: pytest.MonkeyPatch) -> None:
    proxy_env.setenv("HTTPS_PROXY", "socks5://127.0.0.1:1080")
    proxies = Proxies.from_environment()
    assert proxies.problems() == [
        "HTTPS_PROXY='socks5://127.0.0.1:1080': only http:// forward proxies are supported "
        "(the proxy is reached in plain HTTP; https upstreams are tunnelled through it with "
        "CONNECT)"
    ]
    with pytest.raises(ValueError, match="HTTPS_PROXY"):
        proxies.for_url("https", "api.openai.com", 443)
    assert proxies.for_url("http", "api.openai.com", 80) is None


# --- a forward proxy and recording origins -----------------------------------------------------


DENIED = (
    b"HTTP/1.1 407 Proxy Authentication Required\r\n"
    b"proxy-authenticate: Basic\r\ncontent-length: 0\r\n\r\n"
)


class ForwardProxy:
    """CONNECT tunnels and absolute-form forwarding; `credentials` demands Basic auth."""

    def __init__(self, credentials: str | None = None) -> None:
        self.credentials = credentials
        self.heads: list[bytes] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> ForwardProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        origin: asyncio.StreamWriter | None = None
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.heads.append(head)
            method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ")
            if self.credentials is not None:
                expected = "basic " + base64.b64encode(self.credentials.encode()).decode()
                if f"proxy-authorization: {expected}".lower() not in head.decode().lower():
                    writer.write(DENIED)
                    await writer.drain()
                    return
            if method == "CONNECT":
                host, _, port = target.rpartition(":")
                origin_reader, origin = await asyncio.open_connection(host.strip("[]"), int(port))
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                first = b""
            else:
                address = re.match(r"http://([^/]+)", target)
                assert address, target
                host, _, port = address[1].rpartition(":")
                origin_reader, origin = await asyncio.open_connection(host, int(port or 80))
                first = head
            origin.write(first)
            await asyncio.gather(_pipe(reader, origin), _pipe(origin_reader, writer))
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            return
        finally:
            if origin is not None:
                origin.transport.abort()
            writer.transport.abort()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    sink.transport.abort()


class Recorder:
    """An origin that keeps the raw bytes of each request and answers a fixed JSON."""

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        self.context = context
        self.requests: list[bytes] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Recorder:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"(?i)content-length: (\d+)", head)
                body = await reader.readexactly(int(length[1]) if length else 0)
                self.requests.append(head + body)
                writer.write(b'HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n{"ok":true}')
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            return
        finally:
            writer.transport.abort()


def normalized(raw: bytes) -> tuple[bytes, list[bytes], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    first, *lines = head.split(b"\r\n")
    fields = sorted(
        name.lower() + b":" + value for name, _, value in (line.partition(b":") for line in lines)
    )
    return first, fields, body


HEADERS = {
    "content-type": "application/json",
    "authorization": "Bearer sk-test",
    "openai-organization": "org-1",
    "x-trace": "abc",
    "accept-encoding": "identity",
}
PAYLOADS = [
    orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "héllo"}]}),
    b"",
    orjson.dumps({"model": "m", "input": ["x" * 70000]}),
]


async def through_httpx(url: str, context: ssl.SSLContext | None) -> None:
    async with httpx.AsyncClient(trust_env=True, verify=context or True) as client:
        for name in ("accept", "accept-encoding", "connection", "user-agent"):
            del client.headers[name]
        for payload in PAYLOADS:
            response = await client.post(url, content=payload, headers=HEADERS)
            assert response.content == b'{"ok":true}'


async def through_lean(url: str, context: ssl.SSLContext | None) -> None:
    client = HTTPClient(tls=context)
    try:
        lean_headers = {k: v for k, v in HEADERS.items() if k != "accept-encoding"}
        for payload in PAYLOADS:
            response = await client.post(url, lean_headers, payload, total=5)
            assert await response.read() == b'{"ok":true}'
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    "route", ["direct", "http proxy", "https via CONNECT", "proxy with credentials"]
)
def test_servers_and_proxies_receive_the_same_bytes_from_both_clients(
    run: Run, tls: Material, proxy_env: pytest.MonkeyPatch, route: str
) -> None:
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(tls.server.cert, tls.server.key)
    trusting = ssl.create_default_context(cafile=str(tls.ca))
    secure = route in ("https via CONNECT", "proxy with credentials")
    credentials = "gw user:p@ss" if route == "proxy with credentials" else None

    async def scenario() -> None:
        async with (
            Recorder(served if secure else None) as origin,
            ForwardProxy(credentials) as proxy,
        ):
            scheme, host = ("https", "localhost") if secure else ("http", "127.0.0.1")
            url = f"{scheme}://{host}:{origin.port}/v1/chat/completions?api-version=2024-10-21"
            if route != "direct":
                user = "gw%20user:p%40ss@" if credentials else ""
                proxy_env.setenv(
                    "HTTPS_PROXY" if secure else "HTTP_PROXY",
                    f"http://{user}127.0.0.1:{proxy.port}",
                )
            received = {}
            for name, send in (("httpx", through_httpx), ("lean", through_lean)):
                origin.requests.clear()
                proxy.heads.clear()
                await send(url, trusting if secure else None)
                received[name] = (
                    [normalized(r) for r in origin.requests],
                    [normalized(h) for h in proxy.heads],
                )
            assert received["lean"] == received["httpx"]
            requests, heads = received["lean"]
            assert len(requests) == len(PAYLOADS)
            if route == "direct":
                assert heads == []
            elif route == "http proxy":
                assert requests[0][0].startswith(b"POST http://127.0.0.1:")
                assert len(heads) == 1  # one kept-alive connection carried them all
            else:
                assert heads[0][0] == f"CONNECT localhost:{origin.port} HTTP/1.1".encode()
                assert (
                    requests[0][0] == b"POST /v1/chat/completions?api-version=2024-10-21 HTTP/1.1"
                )

    run(scenario)


# --- through the provider: the environment's proxies, credentials, NO_PROXY ---------------------


def test_https_upstream_through_a_connect_proxy_with_credentials(
    run: Run, tls: Material, tmp_path: Path, proxy_env: pytest.MonkeyPatch
) -> None:
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(tls.server.cert, tls.server.key)
    options = TLSOptions(verify=str(tls.ca))

    async def scenario() -> None:
        async with Recorder(served) as origin, ForwardProxy("u:pw") as proxy:
            base = f"https://localhost:{origin.port}/v1"
            proxy_env.setenv("HTTPS_PROXY", f"http://u:pw@127.0.0.1:{proxy.port}")
            provider = OpenAICompatibleProvider()
            reply = await provider.chat(deployment(base, tls=options), dict(BODY))
            assert reply.body == b'{"ok":true}'
            assert len(proxy.heads) == 1
            await provider.aclose()

            proxy_env.setenv("HTTPS_PROXY", f"http://u:wrong@127.0.0.1:{proxy.port}")
            provider = OpenAICompatibleProvider()
            with pytest.raises(UpstreamUnavailable) as caught:
                await provider.chat(deployment(base, tls=options), dict(BODY))
            assert "through the forward proxy" in caught.value.message
            assert "407 Proxy Authentication Required" in (caught.value.detail or "")
            await provider.aclose()

            proxy_env.setenv("NO_PROXY", "localhost")
            proxy.heads.clear()
            provider = OpenAICompatibleProvider()
            reply = await provider.chat(deployment(base, tls=options), dict(BODY))
            assert reply.body == b'{"ok":true}'
            assert proxy.heads == []  # NO_PROXY: straight to the upstream
            await provider.aclose()

    run(scenario)


def test_http_upstream_through_a_proxy_in_absolute_form(
    run: Run, proxy_env: pytest.MonkeyPatch
) -> None:
    """The fake upstream (aiohttp) behind the proxy answers the absolute-form request."""

    async def scenario() -> None:
        async with fake_upstream(0) as fake, ForwardProxy() as proxy:
            proxy_env.setenv("HTTP_PROXY", proxy.url)
            provider = OpenAICompatibleProvider()
            try:
                for _ in range(2):
                    reply = await provider.chat(deployment(fake.url), dict(BODY))
                    assert b"echo: one two three" in reply.body
                assert len(proxy.heads) == 1  # kept alive through the proxy
                assert proxy.heads[0].startswith(
                    f"POST {fake.url}/chat/completions HTTP/1.1".encode()
                )
                stream = await provider.open_stream(deployment(fake.url), {**BODY, "stream": True})
                events = [event async for event in stream.events()]
                assert events[-1] == b"data: [DONE]\n\n"
                await stream.aclose()
            finally:
                await provider.aclose()

    run(scenario)


def test_a_proxy_that_closes_before_answering_connect(
    run: Run, proxy_env: pytest.MonkeyPatch
) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.transport.abort()

    async def scenario() -> None:
        server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        proxy_env.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
        client = HTTPClient()
        with pytest.raises(ProxyError, match="before answering CONNECT"):
            await client.post("https://localhost:1/v1", {}, b"", total=5)
        await client.aclose()
        server.close()
        await server.wait_closed()

    run(scenario)
