"""deploy/nginx.conf as an operator installs it (tests/nginxutil.py): ``nginx -t`` accepts
it, and a real nginx in front of a stand-in app refuses gateway callbacks from addresses not
in deploy/nginx/gateway-allowlist.conf and /metrics, /readyz from outside
deploy/nginx/monitoring-allowlist.conf while everything else reaches the app; answers 429
past its per-client rate limits (never on gateway callbacks); sends plain http to https.
Never skipped (``make system-deps`` installs nginx-light). The same file in front of two
real gunicorn instances: tests/e2e/test_deploy_nginx_e2e.py."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from tests.nginxutil import NGINX, Site, install, serving


@pytest.fixture(autouse=True)
def _nginx_installed() -> None:
    """Never skipped: `make test` installs nginx-light (make system-deps)."""
    if NGINX is None:
        pytest.fail("nginx is not installed: run `make system-deps` (Debian's nginx-light)")


TOKEN = "the-callback-token-never-logged"
GATEWAY_PATHS = {
    "africastalking": ["/ussd", "/ussd/events", "/sms/inbound", "/sms/delivery"],
    "daraja": [
        "/hooks/mobile/stk/callback",
        "/hooks/mobile/c2b/confirmation",
        "/mpesa/b2c/result",
        "/mpesa/c2b/validation",
    ],
}
MONITORING = ["/metrics", "/readyz"]
PUBLIC = ["/healthz", "/api/v1/openapi.json", "/"]


class App(BaseHTTPRequestHandler):
    """Stands in for gunicorn: answers every request 200 ``app <path>``."""

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = f"app {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer


@pytest.fixture
def app_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), App)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield server.server_port
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def running(tmp_path: Path, app_port: int) -> Iterator[Site]:
    """nginx serving the installed config in front of the stand-in app."""
    with serving(install(tmp_path, [app_port])) as site:
        yield site


def status(site: Site, path: str) -> int:
    method = "GET" if path in MONITORING or path in PUBLIC else "POST"
    return requests.request(
        method, f"{site.base}{path}?token={TOKEN}", data={"x": "1"}, verify=site.cert, timeout=10
    ).status_code


def reload(site: Site, edit: dict[str, tuple[str, str]]) -> None:
    """Edit the installed allowlists as an operator would, then ``nginx -s reload``."""
    for name, (old, new) in edit.items():
        path = site.main.parent / "sacco" / name
        text = path.read_text()
        assert old in text, old
        path.write_text(text.replace(old, new))
    subprocess.run(site.command("-t", "-q"), check=True)
    subprocess.run(site.command("-s", "reload"), check=True)
    time.sleep(1.0)  # old workers finish, new ones read the new lists


def test_nginx_accepts_the_deploy_config(tmp_path: Path) -> None:
    site = install(tmp_path, [8000])
    checked = subprocess.run(site.command("-t"), capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
    assert "syntax is ok" in checked.stderr and "test is successful" in checked.stderr


def test_gateway_callbacks_and_monitoring_are_refused_from_outside_their_allowlists(
    running: Site,
) -> None:
    site = running
    # As shipped: loopback is no Safaricom address (403), Africa's Talking publishes no
    # list (let through: the token is the lock), monitoring is this host only.
    for path in GATEWAY_PATHS["daraja"]:
        assert status(site, path) == 403, path
    for path in GATEWAY_PATHS["africastalking"] + MONITORING + PUBLIC:
        assert status(site, path) == 200, path

    # The operator fills in Africa's Talking's addresses (not this host), adds this host
    # as a Daraja source, and moves monitoring to another network.
    reload(
        site,
        {
            "gateway-allowlist.conf": ("    default 1;", "    default 0;\n    192.0.2.7 1;"),
            "monitoring-allowlist.conf": ("allow 127.0.0.1;\nallow ::1;", "allow 10.20.0.0/24;"),
        },
    )
    reload(
        site,
        {"gateway-allowlist.conf": ("    default         0;", "    127.0.0.1 1;\n    default 0;")},
    )
    for path in GATEWAY_PATHS["africastalking"] + MONITORING:
        assert status(site, path) == 403, path
    for path in GATEWAY_PATHS["daraja"] + PUBLIC:
        assert status(site, path) == 200, path

    refused = (site.logs / "sacco-refused.log").read_text()
    assert '"POST /hooks/mobile/stk/callback" 403' in refused
    assert '"POST /ussd" 403' in refused
    assert "/metrics" not in refused  # only gateway refusals go there
    logs = refused + (site.logs / "sacco.log").read_text()
    assert TOKEN not in logs  # the callback token (query string) is never logged


def test_sign_in_floods_are_answered_429_but_gateway_hops_never(running: Site) -> None:
    with requests.Session() as http:
        started = time.monotonic()
        login = [
            http.post(f"{running.base}/api/v1/auth/login", json={}, verify=running.cert).status_code
            for _ in range(30)
        ]
        elapsed = time.monotonic() - started
        hops = [
            http.post(f"{running.base}/ussd?token={TOKEN}", data={"x": "1"}, verify=running.cert)
            for _ in range(150)
        ]
    # 30 a minute with a burst of 20: the first 21 pass at once, then one more per 2 s elapsed;
    # the rest of a quick burst is refused by nginx itself.
    assert login[:21] == [200] * 21, login
    assert set(login[21:]) <= {200, 429} and login.count(200) <= 21 + int(elapsed / 2) + 1, login
    assert login[-1] == 429 or elapsed > 2, login
    assert {hop.status_code for hop in hops} == {200}  # a gateway's one address is never limited
    assert '"POST /api/v1/auth/login" 429' in (running.logs / "sacco.log").read_text()


def test_the_general_per_client_limit_leaves_room_for_a_busy_branch(running: Site) -> None:
    def get(_: int) -> int:
        with requests.Session() as http:  # a branch's terminals behind one address
            return sum(
                http.get(f"{running.base}/healthz", verify=running.cert).status_code == 200
                for _ in range(40)
            )

    started = time.monotonic()
    with ThreadPoolExecutor(10) as pool:
        passed = sum(pool.map(get, range(10)))
    elapsed = time.monotonic() - started
    # 50 a second with a burst of 100, whoever asks: 400 requests in about a second pass
    # up to 101 at once plus 50 per second elapsed; the rest are answered 429.
    assert 101 <= passed <= 101 + int(50 * elapsed) + 1, (passed, elapsed)


def test_plain_http_is_redirected_to_https(running: Site) -> None:
    answer = requests.get(
        f"http://127.0.0.1:{running.http_port}/api/v1/members?q=1",
        allow_redirects=False,
        timeout=10,
    )
    assert answer.status_code == 301
    assert answer.headers["Location"] == "https://127.0.0.1/api/v1/members?q=1"
    # certbot's http-01 challenge is served from the webroot, not redirected (403 here: the
    # test's temporary webroot is not readable by nginx's unprivileged workers).
    challenge = requests.get(
        f"http://127.0.0.1:{running.http_port}/.well-known/acme-challenge/t0ken",
        allow_redirects=False,
        timeout=10,
    )
    assert challenge.status_code in (403, 404), challenge.status_code
    secure = requests.get(f"{running.base}/healthz", verify=running.cert, timeout=10)
    assert secure.headers["Strict-Transport-Security"] == "max-age=63072000"
