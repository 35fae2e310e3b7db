"""The lean HTTP client where deployments differ: proxies, TLS, pool bounds, encodings, 1xx.

Real servers on loopback: Debian's nginx as a TLS front (SNI, client certificates, gzip, its
own keep-alive timeout), the fake upstream (aiohttp) behind it, uvicorn, and a small forward
proxy written here (CONNECT tunnels and absolute-form requests, optional Basic credentials).
Every scenario runs on asyncio's loop and on uvloop (the `run` fixture of test_http_client).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import re
import shutil
import signal
import subprocess
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import brotli
import orjson
import pytest

from gateway.core.errors import UpstreamError, UpstreamUnavailable
from gateway.providers.base import Deployment
from gateway.providers.openai_compat import OpenAICompatibleProvider
from gateway.transport.http_client import ConnectFailed, HTTPClient
from gateway.transport.tls import TLSOptions
from tests.conftest import free_port
from tests.fakes.upstream import FakeUpstream
from tests.loops import LOOP_NAMES, LOOPS, Run, loop_runner
from tests.test_http_client import CHAT, TinyServer, answer
from tests.tls_material import Material, make_material


@pytest.fixture(params=LOOPS, ids=LOOP_NAMES)
def run(request: pytest.FixtureRequest) -> Run:
    return loop_runner(request.param)


NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
needs_nginx = pytest.mark.skipif(not Path(NGINX).exists(), reason="needs nginx")


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Material:
    return make_material(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The proxy variables are the test's own: none unless it sets them."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUEST_METHOD"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


# --- nginx ------------------------------------------------------------------------------------


class Nginx:
    """nginx in a temporary prefix: a TLS front for the fake upstream (SNI-chosen), and a
    server that asks for client certificates."""

    def __init__(self, folder: Path, tls: Material, upstream_port: int) -> None:
        self.folder, self.tls, self.upstream_port = folder, tls, upstream_port
        self.tls_port, self.mtls_port = free_port(), free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def config(self) -> str:
        t, f = self.tls, self.folder
        temps = " ".join(
            f"{kind}_temp_path {f}/{kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        upstream = f"http://127.0.0.1:{self.upstream_port}"
        return f"""
worker_processes 1;
daemon off;
pid {f}/nginx.pid;
error_log {f}/error.log info;
events {{ worker_connections 256; }}
http {{
  access_log off;
  {temps}
  keepalive_timeout 1s;
  proxy_http_version 1.1;
  proxy_buffering off;
  default_type text/plain;
  server {{
    listen 127.0.0.1:{self.tls_port} ssl default_server;
    server_name other.test;
    ssl_certificate {t.other_server.cert};
    ssl_certificate_key {t.other_server.key};
    location / {{ return 200 "no SNI"; }}
  }}
  server {{
    listen 127.0.0.1:{self.tls_port} ssl;
    server_name localhost;
    ssl_certificate {t.server.cert};
    ssl_certificate_key {t.server.key};
    location = /connection {{ return 200 '{{"connection": $connection}}'; }}
    location = /sni {{ return 200 '{{"server": "$server_name", "sni": "$ssl_server_name"}}'; }}
    location / {{ proxy_pass {upstream}; }}
  }}
  server {{
    listen 127.0.0.1:{self.mtls_port} ssl;
    server_name localhost;
    ssl_certificate {t.server.cert};
    ssl_certificate_key {t.server.key};
    ssl_client_certificate {t.client_ca};
    ssl_verify_client on;
    location / {{ return 200 '{{"client": "$ssl_client_s_dn"}}'; }}
  }}
}}
"""

    def start(self) -> None:
        conf = self.folder / "nginx.conf"
        conf.write_text(self.config())
        self.process = subprocess.Popen(
            [NGINX, "-p", str(self.folder), "-c", str(conf), "-e", str(self.folder / "error.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for port in (self.tls_port, self.mtls_port):
            _wait_for_port(port, self.process, self.folder / "error.log")

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    import socket
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            text = log.read_text() if log.exists() else ""
            raise RuntimeError(f"the server exited: {text[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


@pytest.fixture
def upstream_port() -> int:
    return free_port()


@pytest.fixture
def nginx(tmp_path: Path, tls: Material, upstream_port: int) -> Iterator[Nginx]:
    if not Path(NGINX).exists():
        pytest.skip("needs nginx")
    server = Nginx(tmp_path, tls, upstream_port)
    server.start()
    yield server
    server.stop()


@contextlib.asynccontextmanager
async def fake_upstream(port: int) -> AsyncIterator[FakeUpstream]:
    fake = FakeUpstream(port=port)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


def deployment(api_base: str, model: str = "m", tls: TLSOptions | None = None) -> Deployment:
    return Deployment(
        id="d1", alias="a", model=f"openai/{model}", provider="openai",
        upstream_model=model, api_base=api_base, timeout=5, stream_timeout=5, tls=tls,
    )  # fmt: skip


BODY = {"messages": [{"role": "user", "content": "one two three"}]}


# --- TLS --------------------------------------------------------------------------------------


@needs_nginx
def test_tls_with_a_deployments_ca_bundle_and_refused_without(
    run: Run, nginx: Nginx, tls: Material, upstream_port: int, no_proxy_env: None
) -> None:
    base = f"https://localhost:{nginx.tls_port}/v1"

    async def scenario() -> None:
        async with fake_upstream(upstream_port):
            provider = OpenAICompatibleProvider()
            try:
                reply = await provider.chat(
                    deployment(base, tls=TLSOptions(verify=str(tls.ca))), dict(BODY)
                )
                assert orjson.loads(reply.body)["choices"][0]["message"]["content"] == (
                    "echo: one two three"
                )
                # Verification is on by default: the system's CAs do not know ours.
                with pytest.raises(UpstreamUnavailable) as caught:
                    await provider.chat(deployment(base), dict(BODY))
                assert "CERTIFICATE_VERIFY_FAILED" in (caught.value.detail or "")
                # ssl_verify: false, LiteLLM's switch, turns the checks off.
                reply = await provider.chat(
                    deployment(base, tls=TLSOptions(verify=False)), dict(BODY)
                )
                assert b"echo: one two three" in reply.body
            finally:
                await provider.aclose()

    run(scenario)


@needs_nginx
def test_ssl_cert_file_is_the_default_ca_bundle(
    run: Run, nginx: Nginx, tls: Material, monkeypatch: pytest.MonkeyPatch, no_proxy_env: None
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca))

    async def scenario() -> None:
        client = HTTPClient()
        try:
            response = await client.post(
                f"https://localhost:{nginx.tls_port}/sni", {}, b"", total=5
            )
            assert response.status == 200
            assert orjson.loads(await response.read()) == {
                "server": "localhost",
                "sni": "localhost",
            }
        finally:
            await client.aclose()

    run(scenario)


@needs_nginx
def test_sni_names_the_upstream_and_the_certificate_is_checked_against_it(
    run: Run, nginx: Nginx, tls: Material, no_proxy_env: None
) -> None:
    """nginx's default server on the port shows other.test's certificate: only a client that
    sends `localhost` as SNI reaches the localhost server (and passes verification)."""
    trusted = TLSOptions(verify=str(tls.ca))

    async def scenario() -> None:
        client = HTTPClient()
        try:
            url = f"https://localhost:{nginx.tls_port}/sni"
            response = await client.post(url, {}, b"", total=5, tls=trusted)
            assert orjson.loads(await response.read())["sni"] == "localhost"
            # By address no SNI is sent (RFC 6066): the default server's certificate is for
            # another name, and the call fails rather than talking to the wrong server.
            with pytest.raises(ConnectFailed) as caught:
                await client.post(
                    f"https://127.0.0.1:{nginx.tls_port}/sni", {}, b"", total=5, tls=trusted
                )
            assert "other.test" in str(caught.value) or "mismatch" in str(caught.value)
        finally:
            await client.aclose()

    run(scenario)


@needs_nginx
def test_client_certificates(run: Run, nginx: Nginx, tls: Material, no_proxy_env: None) -> None:
    url = f"https://localhost:{nginx.mtls_port}/whoami"
    with_key = TLSOptions(str(tls.ca), str(tls.client.cert), str(tls.client.key))
    combined = TLSOptions(str(tls.ca), str(tls.client_combined))
    stranger = TLSOptions(str(tls.ca), str(tls.stranger.cert), str(tls.stranger.key))

    async def scenario() -> None:
        client = HTTPClient()
        try:
            for options in (with_key, combined):
                response = await client.post(url, {}, b"", total=5, tls=options)
                assert response.status == 200
                assert orjson.loads(await response.read()) == {"client": "CN=gateway-client"}
            # nginx answers 400 to a client without a certificate, or with one it does not trust.
            for options in (TLSOptions(str(tls.ca)), stranger):
                response = await client.post(url, {}, b"", total=5, tls=options)
                assert response.status == 400
                assert b"certificate" in await response.read()
        finally:
            await client.aclose()

    run(scenario)


def test_unreadable_tls_files_are_a_clear_error(run: Run, tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")

    async def scenario() -> None:
        async with TinyServer(_ok) as server:
            provider = OpenAICompatibleProvider()
            target = deployment(
                server.url.replace("http://127.0.0.1", "https://localhost").removesuffix(
                    "/chat/completions"
                ),
                tls=TLSOptions(verify=str(bad)),
            )
            with pytest.raises(UpstreamError) as caught:
                await provider.chat(target, dict(BODY))
            assert f"ssl_verify={bad}" in (caught.value.detail or "")
            await provider.aclose()

    run(scenario)


async def _ok(writer: asyncio.StreamWriter, accepted: int, served: int) -> bool:
    writer.write(answer())
    return True


# --- pools ------------------------------------------------------------------------------------


@needs_nginx
def test_a_connection_the_server_closed_while_idle_is_replaced_without_failing_the_call(
    run: Run, nginx: Nginx, tls: Material, no_proxy_env: None
) -> None:
    """nginx closes keep-alive connections idle for 1 s: the next call notices and reconnects."""
    trusted = TLSOptions(verify=str(tls.ca))
    url = f"https://localhost:{nginx.tls_port}/connection"

    async def scenario() -> None:
        client = HTTPClient()
        try:
            seen = []
            for pause in (0, 0, 1.5, 0):
                await asyncio.sleep(pause)
                response = await client.post(url, {}, b"", total=5, tls=trusted)
                seen.append(orjson.loads(await response.read())["connection"])
            assert seen[0] == seen[1] != seen[2] == seen[3]
        finally:
            await client.aclose()

    run(scenario)


def test_the_pool_per_host_is_bounded_and_callers_wait_for_a_connection(run: Run) -> None:
    async def slow(writer: asyncio.StreamWriter, accepted: int, served: int) -> bool:
        await asyncio.sleep(0.1)
        writer.write(answer(b'{"n":%d}' % accepted))
        return True

    async def scenario() -> None:
        async with TinyServer(slow) as server:
            client = HTTPClient(max_per_host=2)

            async def call() -> bytes:
                return await (await client.post(server.url, {}, CHAT, total=5)).read()

            replies = await asyncio.gather(*(call() for _ in range(6)))
            assert sorted(replies) == [b'{"n":1}'] * 3 + [b'{"n":2}'] * 3
            assert server.accepted == 2
            # A caller that cannot get a connection within its deadline times out.
            busy = [asyncio.create_task(call()) for _ in range(2)]
            await asyncio.sleep(0.02)
            with pytest.raises(TimeoutError):
                await client.post(server.url, {}, CHAT, total=0.05)
            await asyncio.gather(*busy)
            assert server.accepted == 2
            await client.aclose()

    run(scenario)


def test_idle_connections_are_closed_after_the_keepalive(run: Run) -> None:
    async def scenario() -> None:
        async with TinyServer(_ok) as server:
            client = HTTPClient(keepalive=0.2)
            await (await client.post(server.url, {}, CHAT, total=5)).read()
            assert len(client.connections) == 1
            await asyncio.sleep(0.5)
            assert not client.connections  # the sweep closed it, no call needed
            await (await client.post(server.url, {}, CHAT, total=5)).read()
            assert server.accepted == 2
            await client.aclose()

    run(scenario)


# --- answers: 1xx, encodings ------------------------------------------------------------------


def test_interim_answers_are_skipped(run: Run) -> None:
    async def script(writer: asyncio.StreamWriter, accepted: int, served: int) -> bool:
        writer.write(
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n"
            + answer(b'{"final":true}', "x-final: yes")
        )
        return True

    async def scenario() -> None:
        async with TinyServer(script) as server:
            client = HTTPClient()
            for _ in range(2):
                response = await client.post(server.url, {}, CHAT, total=5)
                assert response.status == 200
                assert response.headers.get("x-final") == "yes"
                assert "link" not in response.headers
                assert await response.read() == b'{"final":true}'
            assert server.accepted == 1  # the connection stayed usable
            await client.aclose()

    run(scenario)


PAYLOAD = orjson.dumps({"text": "compressible " * 400})
ENCODED = {
    "gzip": gzip.compress(PAYLOAD),
    "deflate": zlib.compress(PAYLOAD),
    "raw deflate": zlib.compress(PAYLOAD)[2:-4],
    "br": brotli.compress(PAYLOAD),
    "gzip, br": brotli.compress(gzip.compress(PAYLOAD)),
}


@pytest.mark.parametrize("encoding", sorted(ENCODED))
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_compressed_answers_are_decoded(run: Run, encoding: str, framing: str) -> None:
    data = ENCODED[encoding]
    header = "content-encoding: " + encoding.replace("raw deflate", "deflate")

    async def script(writer: asyncio.StreamWriter, accepted: int, served: int) -> bool:
        if framing == "content-length":
            writer.write(answer(data, header))
            return True
        writer.write(answer(b"", header, "transfer-encoding: chunked"))
        for start in range(0, len(data), 7):  # pieces too small to decode alone
            writer.write(b"%x\r\n%s\r\n" % (len(data[start : start + 7]), data[start : start + 7]))
        writer.write(b"0\r\n\r\n")
        return True

    async def scenario() -> None:
        async with TinyServer(script) as server:
            client = HTTPClient()
            for _ in range(2):
                assert await (await client.post(server.url, {}, CHAT, total=5)).read() == PAYLOAD
            assert server.accepted == 1
            await client.aclose()

    run(scenario)


def test_a_gzip_stream_is_decoded_event_by_event(run: Run) -> None:
    """A server (or a proxy on the way) that compresses an SSE stream although we asked for
    identity: each event reaches the caller as soon as its compressed bytes arrive."""
    events = [b'data: {"n": %d}\n\n' % n for n in range(5)] + [b"data: [DONE]\n\n"]
    reached = asyncio.Event()

    async def script(writer: asyncio.StreamWriter, accepted: int, served: int) -> bool:
        writer.write(answer(b"", "content-encoding: gzip", "transfer-encoding: chunked",
                            "content-type: text/event-stream"))  # fmt: skip
        compressor = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
        for event in events:
            piece = compressor.compress(event) + compressor.flush(zlib.Z_SYNC_FLUSH)
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
            if event is events[0]:
                await reached.wait()  # the first event must arrive before the rest is sent
        tail = compressor.flush()
        writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(tail), tail))
        return True

    async def scenario() -> None:
        async with TinyServer(script) as server:
            provider = OpenAICompatibleProvider()
            target = deployment(server.url.removesuffix("/chat/completions"))
            stream = await provider.open_stream(target, {**BODY, "stream": True})
            got = []
            async for event in stream.events():
                got.append(event)
                reached.set()
            assert got == events
            await stream.aclose()
            await provider.aclose()

    run(scenario)


# --- configuration ----------------------------------------------------------------------------


def write_config(folder: Path, text: str) -> Path:
    path = folder / "gateway.yaml"
    path.write_text(text)
    return path


def test_tls_settings_from_the_config(tmp_path: Path, tls: Material) -> None:
    from gateway.core.config import load_config
    from gateway.providers import build_deployments

    config = load_config(
        write_config(
            tmp_path,
            f"""
model_list:
  - model_name: own-ca
    litellm_params:
      model: openai/m
      api_base: https://localhost:1/v1
      ssl_verify: {tls.ca}
      ssl_certificate: {tls.client.cert}
      ssl_certificate_key: {tls.client.key}
      temperature: 0.5
  - model_name: defaults
    litellm_params: {{model: openai/m, api_base: https://localhost:1/v1}}
  - model_name: unchecked
    litellm_params: {{model: openai/m, api_base: https://localhost:1/v1, ssl_verify: false}}
litellm_settings:
  ssl_certificate: {tls.client_combined}
""",
        )
    )
    own, defaults, unchecked = build_deployments(config)
    assert own.tls == TLSOptions(str(tls.ca), str(tls.client.cert), str(tls.client.key))
    assert defaults.tls == TLSOptions(True, str(tls.client_combined))
    assert unchecked.tls == TLSOptions(False, str(tls.client_combined))
    # TLS settings are never a request parameter; litellm's own call gets ssl_verify.
    assert own.params == {"temperature": 0.5}
    assert own.litellm_kwargs == {"temperature": 0.5, "ssl_verify": str(tls.ca)}
    assert unchecked.litellm_kwargs == {"ssl_verify": False}


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ("ssl_verify: /nowhere/ca.pem", "ssl_verify: no CA bundle (file or directory) at /nowhere"),
        ("ssl_certificate: /nowhere/c.pem", "ssl_certificate: no file at /nowhere/c.pem"),
        ("ssl_certificate_key: /etc/hostname", "ssl_certificate_key is set without"),
    ],
)
def test_missing_tls_files_are_config_errors(tmp_path: Path, params: str, problem: str) -> None:
    from gateway.core.config import load_config
    from gateway.core.errors import ConfigError

    path = write_config(
        tmp_path,
        f"model_list:\n  - model_name: a\n    litellm_params: {{model: openai/m, {params}}}\n",
    )
    with pytest.raises(ConfigError, match=re.escape(problem)):
        load_config(path)
