"""deploy/nginx.conf installed as an operator installs it, under a temporary directory, and a
real nginx serving it. The absolute paths in the files (/etc/nginx/sacco, /etc/ssl/sacco,
/var/log/nginx, /var/www/letsencrypt), the public address the operator sets (203.0.113.10)
and the upstream's servers are pointed at the test's own; nothing else is changed.
Used by tests/integration/test_deploy_nginx.py (a stand-in upstream) and
tests/e2e/test_deploy_nginx_e2e.py (two gunicorn instances)."""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.e2e.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
NGINX = shutil.which("nginx", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
PUBLIC_ADDRESS = "203.0.113.10"  # the placeholder deploy/nginx.conf ships (SET by the operator)
HOST_NAME = "sacco.example.org"


def self_signed(directory: Path) -> Path:
    """A throw-away certificate for the host name and 127.0.0.1; returns its path."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST_NAME)])
    now = datetime.now(UTC)
    names = [x509.DNSName(HOST_NAME), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
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
    return directory / "fullchain.pem"


@dataclass(frozen=True)
class Site:
    main: Path  # the main nginx.conf that includes the site
    https_port: int
    http_port: int
    cert: str  # trust this file to verify the site's certificate

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def logs(self) -> Path:
        return self.main.parent / "log"

    def command(self, *args: str) -> list[str]:
        assert NGINX is not None
        main = str(self.main)
        return [
            NGINX,
            "-p",
            str(self.main.parent),
            "-c",
            main,
            "-e",
            f"{self.logs}/error.log",
            *args,
        ]


def install(tmp: Path, app_ports: Sequence[int]) -> Site:
    """The deploy files as an operator installs them, under ``tmp``, with the upstream's
    one ``server`` line replaced by one per app port."""
    (tmp / "sacco").mkdir()
    for include in (DEPLOY / "nginx").glob("*.conf"):
        shutil.copy(include, tmp / "sacco" / include.name)
    cert = self_signed(tmp / "ssl")
    (tmp / "log").mkdir()
    https_port, http_port = free_port(), free_port()
    servers = "\n    ".join(f"server 127.0.0.1:{port};" for port in app_ports)
    site = (DEPLOY / "nginx.conf").read_text()
    for old, new in (
        ("/etc/nginx/sacco/", f"{tmp}/sacco/"),
        ("/etc/ssl/sacco/", f"{tmp}/ssl/"),
        ("/var/log/nginx/", f"{tmp}/log/"),
        ("/var/www/letsencrypt", f"{tmp}/acme"),
        ("server 127.0.0.1:8000;", servers),
        (f"listen {PUBLIC_ADDRESS}:443 ", f"listen 127.0.0.1:{https_port} "),
        (f"listen {PUBLIC_ADDRESS}:80;", f"listen 127.0.0.1:{http_port};"),
    ):
        assert old in site, old
        site = site.replace(old, new)
    assert f"listen {PUBLIC_ADDRESS}" not in site  # every listen line is the test's
    (tmp / "site.conf").write_text(site)
    main = tmp / "nginx.conf"
    main.write_text(
        f"pid {tmp}/nginx.pid;\n"
        f"error_log {tmp}/log/error.log;\n"
        "worker_processes 1;\n"
        "events { worker_connections 256; }\n"
        "http {\n"
        f"    client_body_temp_path {tmp}/body;\n"
        f"    proxy_temp_path {tmp}/proxy;\n"
        f"    include {tmp}/site.conf;\n"
        "}\n"
    )
    return Site(main, https_port, http_port, str(cert))


@contextmanager
def serving(site: Site) -> Iterator[Site]:
    """nginx serving the installed config (master in the foreground, stopped after)."""
    proc = subprocess.Popen(
        site.command("-g", "daemon off;"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    errors = site.logs / "error.log"
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", site.https_port), timeout=0.5).close()
            break
        except OSError:
            assert proc.poll() is None, errors.read_text() if errors.exists() else "no log"
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.1)
    try:
        yield site
    finally:
        proc.terminate()
        proc.wait(timeout=15)
