"""``GET /docs``: Swagger UI for /openapi.json, every asset served by the app itself."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import TYPE_CHECKING

import pytest
import requests
from flask.testing import FlaskClient

if TYPE_CHECKING:  # tests/web/conftest.py; "conftest" is only unique during collection
    from conftest import WebServer

# What each asset must be served as, by its extension.
CONTENT_TYPES = {".css": "text/css", ".js": "text/javascript", ".png": "image/png"}


class _Assets(HTMLParser):
    """Collect every URL the page loads: stylesheets, icons and scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        url = (
            values.get("href") if tag == "link" else values.get("src") if tag == "script" else None
        )
        if url:
            self.urls.append(url)


def _assets(html: str) -> list[str]:
    parser = _Assets()
    parser.feed(html)
    return parser.urls


def test_docs_page_and_every_asset_are_served_by_the_app(client: FlaskClient):
    redirect = client.get("/docs")
    assert redirect.status_code == 308 and redirect.headers["Location"] == "/docs/"
    assert not redirect.get_data() and "Content-Type" not in redirect.headers
    page = client.get("/docs", follow_redirects=True)
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert '"url": "/openapi.json"' in html  # the page describes this service's own document
    urls = _assets(html)
    assert len(urls) >= 4
    for url in urls:
        assert url.startswith("/docs/"), f"{url} is not served by the app (a CDN?)"
        asset = client.get(url)
        assert asset.status_code == 200, url
        suffix = re.search(r"\.\w+$", url).group(0)
        assert asset.mimetype == CONTENT_TYPES[suffix], url
        assert len(asset.get_data()) > 100
        asset.close()
    missing = client.get("/docs/nope.js")
    assert missing.status_code == 404 and missing.mimetype == "application/json"


@pytest.mark.integration
def test_docs_load_from_the_real_server(web_server: WebServer):
    page = requests.get(f"{web_server.url}/docs", timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    for url in _assets(page.text):
        asset = requests.get(f"{web_server.url}{url}", timeout=30)
        assert asset.status_code == 200, url
        suffix = re.search(r"\.\w+$", url).group(0)
        assert asset.headers["Content-Type"].startswith(CONTENT_TYPES[suffix]), url
    spec = requests.get(f"{web_server.url}/openapi.json", timeout=10).json()
    assert spec["openapi"].startswith("3.1")  # Swagger UI 5 renders 3.1 (4.x would not)
