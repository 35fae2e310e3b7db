"""A path with a stray trailing slash: a 404 naming the right path, never a redirect built
from the caller's Host header (which would let anyone mint links to their own host)."""

from __future__ import annotations

import httpx

from tests.conftest import MASTER_KEY, GatewayFactory

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}


def test_a_trailing_slash_never_redirects_to_the_callers_host(gateway: GatewayFactory) -> None:
    base = gateway()
    forged = {**ADMIN, "Host": "attacker.example"}
    for method, path, right in (
        ("GET", "/v1/keys/", "/v1/keys"),
        ("POST", "/v1/chat/completions/", "/v1/chat/completions"),
        ("GET", "/healthz/", "/healthz"),
    ):
        response = httpx.request(method, base + path, headers=forged, json={})
        assert "location" not in response.headers, (path, response.headers)
        assert "attacker.example" not in response.text
        assert response.status_code == 404, (path, response.text)
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error"
        assert error["code"] == "not_found"
        assert f"{method} {path}" in error["message"]
        assert f"did you mean {right}" in error["message"].lower(), error["message"]


def test_an_unknown_path_says_so_without_a_suggestion(gateway: GatewayFactory) -> None:
    base = gateway()
    response = httpx.get(f"{base}/v1/nothing-here/", headers=ADMIN)
    assert response.status_code == 404
    assert "did you mean" not in response.json()["error"]["message"].lower()
