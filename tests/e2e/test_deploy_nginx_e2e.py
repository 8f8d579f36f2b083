"""deploy/nginx.conf for real, end to end: the Debian nginx serving the deploy/ site on
loopback (tests/nginxutil.py: the operator's install with paths in a temporary directory, a
throw-away certificate, the gateway and monitoring allowlists, the rate limits) in front of
**two** gunicorn instances of the app (deploy/gunicorn.conf.py, production settings,
``TRUSTED_PROXY_HOPS=1``, the test PostgreSQL database and Redis db). A USSD registration
walked over HTTPS lands on both instances (each one's own access log counts its hops) and
still completes, since the session lives in Redis; the client's address reaches the app
through ``X-Forwarded-For`` (and a forged one does not); /metrics is refused outside the
monitoring allowlist; TLS below 1.2 is refused."""

from __future__ import annotations

import json
import re
import secrets
import socket
import ssl
import subprocess
import time
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
import redis as redis_lib
import requests
from requests.adapters import HTTPAdapter
from sqlalchemy import Engine

from tests.e2e.gateway import GatewayPhone
from tests.e2e.servers import flush_redis, gunicorn, production_env
from tests.e2e.test_gunicorn_ussd import register
from tests.nginxutil import NGINX, Site, install, serving
from tests.settings import REDIS_URL
from ussd.store import RedisStore, session_key

pytestmark = pytest.mark.slow

OUTSIDER = "127.0.0.2"  # a client address outside the monitoring allowlist (loopback only)


@dataclass(frozen=True)
class Stack:
    site: Site
    token: str
    app_logs: list[Path]  # each gunicorn instance's own output


@pytest.fixture(scope="module")
def stack(pg_engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if NGINX is None:
        pytest.fail("nginx is not installed: run `make system-deps` (Debian's nginx-light)")
    tmp = tmp_path_factory.mktemp("nginx-e2e")
    token = secrets.token_urlsafe(24)
    env = {
        **production_env(token, trusted_proxy_hops=1),  # behind deploy/nginx.conf
        "WEB_CONCURRENCY": "1",
        "GUNICORN_THREADS": "2",
    }
    pg_engine.info_snapshot.restore()  # type: ignore[attr-defined]
    flush_redis(REDIS_URL)
    logs = [tmp / "app-a.log", tmp / "app-b.log"]
    try:
        with ExitStack() as stack:
            outs = [stack.enter_context(path.open("w+")) for path in logs]
            ports = [int(base.rsplit(":", 1)[1]) for base in start_together(stack, env, outs)]
            site = stack.enter_context(serving(install(tmp, ports)))
            yield Stack(site, token, logs)
    finally:
        flush_redis(REDIS_URL)
        pg_engine.info_snapshot.restore()  # type: ignore[attr-defined]


def start_together(stack: ExitStack, env: dict[str, str], outs: Sequence[IO[str]]) -> list[str]:
    """Both gunicorn instances started at once (each takes seconds to import the app);
    every one that came up is stopped with ``stack``, even if the other failed."""
    managers = [gunicorn(env, output=out) for out in outs]
    with ThreadPoolExecutor(len(managers)) as pool:
        futures = [pool.submit(manager.__enter__) for manager in managers]
    for manager, future in zip(managers, futures, strict=True):
        if future.exception() is None:
            stack.push(manager.__exit__)
    return [future.result() for future in futures]


class _From(HTTPAdapter):
    """Connects from a given loopback address (Linux answers on all of 127.0.0.0/8)."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def client(stack: Stack, address: str = "127.0.0.1") -> requests.Session:
    http = requests.Session()
    http.trust_env = False  # else REQUESTS_CA_BUNDLE, where set, overrides the next line
    http.verify = stack.site.cert  # the throw-away certificate is trusted, not ignored
    http.mount("https://", _From(address))
    return http


def new_access_lines(stack: Stack, before: list[int], count: int) -> list[list[str]]:
    """Each instance's access lines since ``before``, once ``count`` have been written
    (gunicorn logs a request just after answering it)."""
    deadline = time.monotonic() + 10
    while True:
        lines = [now[n:] for now, n in zip(access_lines(stack), before, strict=True)]
        if sum(map(len, lines)) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def access_lines(stack: Stack) -> list[list[str]]:
    """Each instance's gunicorn access lines (their message: ``addr "METHOD /path" status``).
    ``addr`` is the WSGI ``REMOTE_ADDR`` gunicorn logs after the request, i.e. as the app's
    ProxyFix (``TRUSTED_PROXY_HOPS``) left it: the client the app believes it served."""
    per_instance = []
    for path in stack.app_logs:
        lines = []
        for raw in path.read_text().splitlines():
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            if record.get("logger") == "gunicorn.access":
                lines.append(str(record.get("message", "")))
        per_instance.append(lines)
    return per_instance


def test_nginx_accepts_the_site_with_both_app_servers(stack: Stack) -> None:
    checked = subprocess.run(stack.site.command("-T"), capture_output=True, text=True, check=False)
    assert checked.returncode == 0 and "test is successful" in checked.stderr, checked.stderr
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in checked.stdout


def test_a_ussd_session_over_https_lands_on_both_app_servers(stack: Stack) -> None:
    before = [len(lines) for lines in access_lines(stack)]
    store = redis_lib.Redis.from_url(REDIS_URL)
    with client(stack, OUTSIDER) as http:
        phone = GatewayPhone(
            http, stack.site.base, "+254711900417", path=f"/ussd?token={stack.token}"
        )
        done = register(phone, "Amina Wanjiru", "31415926", "4826")  # seven hops, one session
        assert "we will SMS your member number" in done
        assert "KYC pending" in phone.dial()  # the new member dials again: an eighth hop
        assert phone.dial_ is not None
        assert RedisStore(store).get(session_key(phone.dial_.session_id))  # state in Redis
        phone.hang_up()
    store.close()

    # 8 hops and 2 session-end notifications (the END, then the hang-up)
    hops = [
        [line for line in lines if '"POST /ussd"' in line]
        for lines in new_access_lines(stack, before, 10)
    ]
    # Round robin over two instances: both served hops of one session, none was lost, and
    # each saw the caller's own address (nginx's X-Forwarded-For, TRUSTED_PROXY_HOPS=1).
    assert all(hops), [len(h) for h in hops]
    assert sum(len(h) for h in hops) == 8
    for line in hops[0] + hops[1]:
        assert line.startswith(f'{OUTSIDER} "POST /ussd" 200'), line


def test_a_forged_x_forwarded_for_does_not_become_the_client(stack: Stack) -> None:
    before = [len(lines) for lines in access_lines(stack)]
    with client(stack, OUTSIDER) as http:
        answer = http.get(
            f"{stack.site.base}/healthz", headers={"X-Forwarded-For": "10.9.8.7"}, timeout=10
        )
    assert answer.status_code == 200
    (line,) = [  # the one request, whichever instance served it
        line for lines in new_access_lines(stack, before, 1) for line in lines
    ]
    assert line.startswith(f'{OUTSIDER} "GET /healthz" 200'), line


def test_metrics_only_for_the_monitoring_allowlist(stack: Stack) -> None:
    with client(stack, "127.0.0.1") as inside, client(stack, OUTSIDER) as outside:
        scraped = inside.get(f"{stack.site.base}/metrics", timeout=10)
        refused = outside.get(f"{stack.site.base}/metrics", timeout=10)
    assert scraped.status_code == 200 and "sacco_ussd_hops_total" in scraped.text
    assert refused.status_code == 403 and "nginx" in refused.text  # refused by nginx itself


def handshake(port: int, version: ssl.TLSVersion) -> str:
    """The protocol nginx agrees to when offered only ``version``; raises when it refuses."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers("ALL:@SECLEVEL=0")  # let this client offer what old phones would
    context.minimum_version = context.maximum_version = version
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="sacco.example.org") as tls,
    ):
        return str(tls.version())


def test_tls_below_1_2_is_refused(stack: Stack) -> None:
    port = stack.site.https_port
    assert handshake(port, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    assert handshake(port, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
    for old in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        with warnings.catch_warnings(), pytest.raises(ssl.SSLError) as refused:
            warnings.simplefilter("ignore", DeprecationWarning)  # Python's, on naming them
            handshake(port, old)
        # The server's refusal (an alert), not this client's inability to offer it.
        assert re.search(r"ALERT_PROTOCOL_VERSION|UNSUPPORTED_PROTOCOL", str(refused.value)), (
            refused.value
        )
