"""deploy/nginx.conf as an operator installs it: ``nginx -t`` accepts it, and a real nginx
refuses gateway callbacks from addresses not in deploy/nginx/gateway-allowlist.conf and
/metrics, /readyz from outside deploy/nginx/monitoring-allowlist.conf, while everything
else reaches the app. The absolute paths in the files (/etc/nginx/sacco, /etc/ssl/sacco,
/var/log/nginx, the upstream's port) are pointed into a temporary directory; nothing else
is changed. Skipped only when nginx is not installed (``.ci/run`` installs nginx-light)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
NGINX = shutil.which("nginx", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def self_signed(directory: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sacco.example.org")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=2))
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True)
    (directory / "fullchain.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "privkey.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def install(tmp: Path, port: int, app_port: int) -> Path:
    """The deploy files as an operator installs them, under ``tmp``; the main nginx.conf."""
    (tmp / "sacco").mkdir()
    for include in (DEPLOY / "nginx").glob("*.conf"):
        shutil.copy(include, tmp / "sacco" / include.name)
    self_signed(tmp / "ssl")
    (tmp / "log").mkdir()
    site = (DEPLOY / "nginx.conf").read_text()
    for old, new in (
        ("/etc/nginx/sacco/", f"{tmp}/sacco/"),
        ("/etc/ssl/sacco/", f"{tmp}/ssl/"),
        ("/var/log/nginx/", f"{tmp}/log/"),
        ("server 127.0.0.1:8000;", f"server 127.0.0.1:{app_port};"),
        ("listen 443 ssl http2;", f"listen 127.0.0.1:{port} ssl http2;"),
    ):
        assert old in site, old
        site = site.replace(old, new)
    (tmp / "site.conf").write_text(site)
    main = tmp / "nginx.conf"
    main.write_text(
        f"pid {tmp}/nginx.pid;\n"
        f"error_log {tmp}/log/error.log;\n"
        "worker_processes 1;\n"
        "events { worker_connections 64; }\n"
        "http {\n"
        f"    client_body_temp_path {tmp}/body;\n"
        f"    proxy_temp_path {tmp}/proxy;\n"
        f"    include {tmp}/site.conf;\n"
        "}\n"
    )
    return main


def nginx(main: Path, *args: str) -> list[str]:
    assert NGINX is not None
    return [NGINX, "-p", str(main.parent), "-c", str(main), "-e", f"{main.parent}/log/error.log"]


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
def running(tmp_path: Path, app_port: int) -> Iterator[tuple[Path, str]]:
    """nginx serving the installed config (master in the foreground, stopped after)."""
    port = free_port()
    main = install(tmp_path, port, app_port)
    proc = subprocess.Popen(
        [*nginx(main), "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    errors = main.parent / "log" / "error.log"
    base = f"https://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            assert proc.poll() is None, errors.read_text() if errors.exists() else "no log"
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.1)
    try:
        yield main, base
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def status(base: str, path: str) -> int:
    method = "GET" if path in MONITORING or path in PUBLIC else "POST"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the self-signed certificate
        return requests.request(
            method, f"{base}{path}?token={TOKEN}", data={"x": "1"}, verify=False, timeout=10
        ).status_code


def reload(main: Path, edit: dict[str, tuple[str, str]]) -> None:
    """Edit the installed allowlists as an operator would, then ``nginx -s reload``."""
    for name, (old, new) in edit.items():
        path = main.parent / "sacco" / name
        text = path.read_text()
        assert old in text, old
        path.write_text(text.replace(old, new))
    subprocess.run([*nginx(main), "-t", "-q"], check=True)
    subprocess.run([*nginx(main), "-s", "reload"], check=True)
    time.sleep(1.0)  # old workers finish, new ones read the new lists


def test_nginx_accepts_the_deploy_config(tmp_path: Path) -> None:
    main = install(tmp_path, free_port(), free_port())
    checked = subprocess.run([*nginx(main), "-t"], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
    assert "syntax is ok" in checked.stderr and "test is successful" in checked.stderr


def test_gateway_callbacks_and_monitoring_are_refused_from_outside_their_allowlists(
    running: tuple[Path, str],
) -> None:
    main, base = running
    # As shipped: loopback is no Safaricom address (403), Africa's Talking publishes no
    # list (let through: the token is the lock), monitoring is this host only.
    for path in GATEWAY_PATHS["daraja"]:
        assert status(base, path) == 403, path
    for path in GATEWAY_PATHS["africastalking"] + MONITORING + PUBLIC:
        assert status(base, path) == 200, path

    # The operator fills in Africa's Talking's addresses (not this host), adds this host
    # as a Daraja source, and moves monitoring to another network.
    reload(
        main,
        {
            "gateway-allowlist.conf": ("    default 1;", "    default 0;\n    192.0.2.7 1;"),
            "monitoring-allowlist.conf": ("allow 127.0.0.1;\nallow ::1;", "allow 10.20.0.0/24;"),
        },
    )
    reload(
        main,
        {"gateway-allowlist.conf": ("    default         0;", "    127.0.0.1 1;\n    default 0;")},
    )
    for path in GATEWAY_PATHS["africastalking"] + MONITORING:
        assert status(base, path) == 403, path
    for path in GATEWAY_PATHS["daraja"] + PUBLIC:
        assert status(base, path) == 200, path

    refused = (main.parent / "log" / "sacco-refused.log").read_text()
    assert '"POST /hooks/mobile/stk/callback" 403' in refused
    assert '"POST /ussd" 403' in refused
    assert "/metrics" not in refused  # only gateway refusals go there
    logs = refused + (main.parent / "log" / "sacco.log").read_text()
    assert TOKEN not in logs  # the callback token (query string) is never logged
