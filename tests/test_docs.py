"""The API docs pages work offline: every asset they load is served by the gateway itself."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gateway.api.app import create_app
from gateway.core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = re.compile(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']|url:\s*'([^']+)'""")
KINDS = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".png": "image/png",
    ".json": "application/json",
}


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(config=ROOT / "config" / "gateway.yaml", data_dir=tmp_path, master_key="k")
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        yield client


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_pages_load_only_local_assets(client: httpx.AsyncClient, page: str) -> None:
    html = await client.get(page)
    assert html.status_code == 200
    assert html.headers["content-type"].startswith("text/html")
    urls = [a or b for a, b in REFERENCE.findall(html.text)]
    assert urls, html.text
    for url in urls:
        assert url.startswith("/"), f"{page} loads {url} from elsewhere"
        assert not url.startswith("//"), f"{page} loads {url} from elsewhere"
        asset = await client.get(url)
        assert asset.status_code == 200, url
        suffix = Path(url).suffix
        assert asset.headers["content-type"].startswith(KINDS[suffix]), url
        assert asset.content
    assert "cdn" not in html.text.lower()
    assert "fonts.googleapis" not in html.text


async def test_docs_assets_are_the_real_bundles(client: httpx.AsyncClient) -> None:
    js = await client.get("/docs/assets/swagger-ui-bundle.js")
    assert b"SwaggerUIBundle" in js.content
    redoc = await client.get("/docs/assets/redoc.standalone.js")
    assert b"Redoc" in redoc.content
    missing = await client.get("/docs/assets/nothing.js")
    assert missing.status_code == 404
    oauth = await client.get("/docs/oauth2-redirect")
    assert oauth.status_code == 200
