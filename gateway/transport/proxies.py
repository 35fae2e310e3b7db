"""Which forward proxy an upstream URL goes through, read from the environment as httpx reads it.

`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY` and `NO_PROXY` (either case; urllib's getproxies,
which httpx calls too, decides which spelling wins) are read once, when a client is built.
NO_PROXY entries mean what they mean to httpx (tests/test_transport_proxies.py compares the
two on the same environments): `*` turns every proxy off; `example.com` matches it and its
subdomains, `.example.com` only the subdomains; `localhost`, an IPv4 or IPv6 address match
that host exactly; `host:port` that port only; `http://host` that scheme only. As in httpx, a
port equal to the scheme's default is "no port", so `example.com:443` never matches
`https://example.com`, and a CIDR block (`10.0.0.0/8`) matches only its first address.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import unquote, urlsplit
from urllib.request import getproxies

_DEFAULT_PORTS = {"http": 80, "https": 443}


class Proxy(NamedTuple):
    """An HTTP forward proxy: CONNECT tunnels for https, absolute-form requests for http."""

    host: str
    port: int
    # The Proxy-Authorization value for credentials in the proxy's URL, else None.
    authorization: str | None

    @classmethod
    def parse(cls, url: str, source: str) -> Proxy:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme != "http":
            raise ValueError(
                f"{source}={url!r}: only http:// forward proxies are supported (the proxy is "
                "reached in plain HTTP; https upstreams are tunnelled through it with CONNECT)"
            )
        try:
            port = parts.port or 80
        except ValueError:
            raise ValueError(f"{source}={url!r}: not a valid port") from None
        if not parts.hostname:
            raise ValueError(f"{source}={url!r}: no proxy host")
        authorization = None
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            authorization = "Basic " + base64.b64encode(pair.encode()).decode()
        return cls(parts.hostname, port, authorization)


@dataclass(frozen=True, slots=True)
class _Pattern:
    """httpx's URLPattern: scheme ("" for any), host regex (None for any), port (None: any)."""

    source: str
    scheme: str
    host: str
    host_regex: re.Pattern[str] | None
    port: int | None

    @classmethod
    def of(cls, pattern: str) -> _Pattern:
        scheme, _, rest = pattern.partition("://")
        netloc = rest.split("/", 1)[0].rpartition("@")[2]
        host, port = _host_and_port(netloc)
        host = host.lower()
        if scheme == "all":
            scheme = ""
        if host in ("", "*"):
            return cls(pattern, scheme, "", None, port)
        if host.startswith("*."):
            regex = re.compile(rf"^.+\.{re.escape(host[2:])}$")
        elif host.startswith("*"):
            regex = re.compile(rf"^(.+\.)?{re.escape(host[1:])}$")
        else:
            regex = re.compile(rf"^{re.escape(host)}$")
        return cls(pattern, scheme, host, regex, port)

    def matches(self, scheme: str, host: str, port: int | None) -> bool:
        if self.scheme and self.scheme != scheme:
            return False
        if self.host and self.host_regex is not None and not self.host_regex.match(host):
            return False
        return self.port is None or self.port == port

    @property
    def priority(self) -> tuple[int, int, int]:
        # httpx's order: with a port first, then longer hosts, then longer schemes.
        return (0 if self.port is not None else 1, -len(self.host), -len(self.scheme))


def _host_and_port(netloc: str) -> tuple[str, int | None]:
    if netloc.startswith("["):
        host, _, rest = netloc[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = netloc.partition(":")
    return host, int(port) if port.isdigit() else None


def _is_address(text: str, kind: type[ipaddress.IPv4Address | ipaddress.IPv6Address]) -> bool:
    try:
        kind(text.split("/")[0])
    except ValueError:
        return False
    return True


class Proxies:
    """The proxy each (scheme, host, port) takes, decided as httpx's mounts decide it."""

    def __init__(self, mounts: dict[str, str | None]) -> None:
        patterns = sorted(
            ((_Pattern.of(key), value) for key, value in mounts.items()),
            key=lambda item: item[0].priority,
        )
        self._patterns = [(pattern, _proxy(pattern, value)) for pattern, value in patterns]

    @classmethod
    def from_environment(cls) -> Proxies:
        return cls(environment_mounts(getproxies()))

    def problems(self) -> list[str]:
        """What is wrong with the proxies the environment names (said once at start)."""
        return [str(proxy) for _, proxy in self._patterns if isinstance(proxy, ValueError)]

    def for_url(self, scheme: str, host: str, port: int) -> Proxy | None:
        """The proxy for this URL, or None to connect directly; ValueError for a proxy this
        client cannot use (a call through it must fail, not bypass the proxy)."""
        if not self._patterns:
            return None
        host = host.lower()
        explicit = None if _DEFAULT_PORTS.get(scheme) == port else port
        for pattern, proxy in self._patterns:
            if pattern.matches(scheme, host, explicit):
                if isinstance(proxy, ValueError):
                    raise proxy
                return proxy
        return None


def _proxy(pattern: _Pattern, url: str | None) -> Proxy | ValueError | None:
    if url is None:
        return None
    try:
        return Proxy.parse(url, _source(pattern.source))
    except ValueError as exc:
        return exc


def _source(pattern: str) -> str:
    return {"http://": "HTTP_PROXY", "https://": "HTTPS_PROXY", "all://": "ALL_PROXY"}.get(
        pattern, pattern
    )


def environment_mounts(proxy_info: dict[str, str]) -> dict[str, str | None]:
    """httpx's get_environment_proxies, on getproxies()' answer: pattern -> proxy URL, or None
    for the NO_PROXY entries (no proxy)."""
    mounts: dict[str, str | None] = {}
    for scheme in ("http", "https", "all"):
        if proxy_info.get(scheme):
            url = proxy_info[scheme]
            mounts[f"{scheme}://"] = url if "://" in url else f"http://{url}"
    for entry in (host.strip() for host in proxy_info.get("no", "").split(",")):
        if entry == "*":
            return {}
        if not entry:
            continue
        if "://" in entry:
            mounts[entry] = None
        elif _is_address(entry, ipaddress.IPv4Address):
            mounts[f"all://{entry}"] = None
        elif _is_address(entry, ipaddress.IPv6Address):
            mounts[f"all://[{entry}]"] = None
        elif entry.lower() == "localhost":
            mounts[f"all://{entry}"] = None
        else:
            mounts[f"all://*{entry}"] = None
    return mounts
