"""The upstream-connection keys of the config schema (the lean client's TLS settings and pool),
each seen acting on calls routed from a config (tests/test_config_fields.py runs these beside its
own): a loopback upstream over TLS with throwaway certificates, or one that counts connections.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path
from typing import Any

import pytest

from gateway.core.errors import GatewayError
from tests.test_http_client import TinyServer, answer
from tests.tls_material import Material, make_material

REPLY = json.dumps(
    {
        "id": "chatcmpl-cf",
        "object": "chat.completion",
        "created": 0,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "ok"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
).encode()


async def _reply(writer: asyncio.StreamWriter, accepted: int, served: int) -> bool:
    writer.write(answer(REPLY, "content-type: application/json"))
    return True


async def _slow_reply(writer: asyncio.StreamWriter, accepted: int, served: int) -> bool:
    await asyncio.sleep(0.1)
    return await _reply(writer, accepted, served)


def _material(h: Any) -> Material:
    return make_material(h.data_dir.parent / "tls")


def _server_tls(material: Material, client_ca: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(material.server.cert, material.server.key)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(client_ca)
    return context


def _entry(alias: str, url: str, **params: Any) -> dict[str, Any]:
    base = url.removesuffix("/chat/completions")
    params = {"model": "openai/gpt-4o-mini", "api_base": base, "api_key": "sk-cf", **params}
    return {"model_name": alias, "litellm_params": params}


async def ssl_verify(h: Any) -> None:
    material = _material(h)
    async with TinyServer(_reply, tls=_server_tls(material)) as server:
        trusted = _entry("cf-trusted", server.url, ssl_verify=str(material.ca))
        unknown = _entry("cf-unknown", server.url)
        async with h.built([trusted, unknown]) as b:
            assert (await b.chat("cf-trusted")).value is not None
            with pytest.raises(GatewayError) as refused:
                await b.chat("cf-unknown")
            assert "certificate" in f"{refused.value.message} {refused.value.detail}".lower()
        off = _entry("cf-off", server.url, ssl_verify=False)
        async with h.built([off]) as b:
            assert (await b.chat("cf-off")).value is not None


async def ssl_certificate(h: Any) -> None:
    material = _material(h)
    tls = _server_tls(material, client_ca=material.client_ca)
    async with TinyServer(_reply, tls=tls) as server:
        common = {"ssl_verify": str(material.ca)}
        certificate = str(material.client_combined)  # its key in the same file
        known = _entry("cf-cert", server.url, ssl_certificate=certificate, **common)
        anonymous = _entry("cf-anonymous", server.url, **common)
        async with h.built([known, anonymous]) as b:
            assert (await b.chat("cf-cert")).value is not None
            with pytest.raises(GatewayError):
                await b.chat("cf-anonymous")


async def ssl_certificate_key(h: Any) -> None:
    material = _material(h)
    tls = _server_tls(material, client_ca=material.client_ca)
    async with TinyServer(_reply, tls=tls) as server:
        entry = _entry(
            "cf-split",
            server.url,
            ssl_verify=str(material.ca),
            ssl_certificate=str(material.client.cert),
            ssl_certificate_key=str(material.client.key),
        )
        async with h.built([entry]) as b:
            assert (await b.chat("cf-split")).value is not None


async def upstream_connections_per_host(h: Any) -> None:
    async with TinyServer(_slow_reply) as server:
        entry = _entry("cf-pool", server.url)
        async with h.built([entry], gateway={"upstream_connections_per_host": 1}) as b:
            await asyncio.gather(*(b.chat("cf-pool") for _ in range(4)))
        assert server.accepted == 1  # four calls at once, one connection: the others waited


async def upstream_keepalive_seconds(h: Any) -> None:
    async with TinyServer(_reply) as server:
        entry = _entry("cf-idle", server.url)
        async with h.built([entry], gateway={"upstream_keepalive_seconds": 0.2}) as b:
            await b.chat("cf-idle")
            await b.chat("cf-idle")
            assert server.accepted == 1  # kept alive between calls close together
            await asyncio.sleep(0.6)
            await b.chat("cf-idle")
        assert server.accepted == 2  # idle past the setting: closed, a new one made


TRANSPORT_CHECKS = {
    "model_list[].litellm_params.ssl_verify": ssl_verify,
    "model_list[].litellm_params.ssl_certificate": ssl_certificate,
    "model_list[].litellm_params.ssl_certificate_key": ssl_certificate_key,
    "gateway.upstream_connections_per_host": upstream_connections_per_host,
    "gateway.upstream_keepalive_seconds": upstream_keepalive_seconds,
}
