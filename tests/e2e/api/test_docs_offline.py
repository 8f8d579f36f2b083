"""The API docs page works on a SACCO network without internet: Swagger UI comes from the
app itself (the ``swagger-ui-bundle`` package), never from a CDN.

The browser half (Swagger UI really renders) is in ``tests/e2e/test_simulator_browser.py``.
"""

from __future__ import annotations

import re

from flask.testing import FlaskClient

DOCS = "/api/v1/docs"


def fetch(api: FlaskClient, url: str) -> tuple[int, str, bytes, dict[str, str]]:
    """Status, type, body and headers of a GET, the (file-streamed) response closed."""
    with api.get(url) as r:
        return r.status_code, r.mimetype or "", r.get_data(), dict(r.headers)


def referenced_urls(html: str) -> list[str]:
    return re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)


def test_the_docs_page_references_only_assets_the_app_serves(api: FlaskClient) -> None:
    page = api.get(DOCS)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    urls = referenced_urls(html)
    assert any(u.endswith("swagger-ui-bundle.js") for u in urls), urls
    assert any(u.endswith("swagger-ui.css") for u in urls), urls
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), f"{url} is not same-origin"
        status, _, data, _ = fetch(api, url)
        assert status == 200, url
        assert len(data) > 1000, url
    assert "http://" not in html and "https://" not in html  # no outside address at all
    # Swagger UI would fetch its validator badge from validator.swagger.io: switched off.
    assert '"validatorUrl": null' in html


def test_the_assets_have_their_real_types_and_nothing_else_is_served(api: FlaskClient) -> None:
    status, mimetype, _, headers = fetch(api, f"{DOCS}/static/swagger-ui-bundle.js")
    assert status == 200 and "javascript" in mimetype
    assert headers["X-Content-Type-Options"] == "nosniff"
    status, mimetype, _, _ = fetch(api, f"{DOCS}/static/swagger-ui.css")
    assert status == 200 and mimetype == "text/css"
    for path in ("../__init__.py", "..%2f__init__.py", "index.j2", "nothing.js"):
        assert fetch(api, f"{DOCS}/static/{path}")[0] == 404, path


def test_the_docs_page_policy_allows_no_other_origin(api: FlaskClient) -> None:
    csp = api.get(DOCS).headers["Content-Security-Policy"]
    assert "http" not in csp and "cdn" not in csp
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp
