"""Serve the demo SACCO with its own stand-ins: ``make demo`` (``python -m tools.demo``).

The app listens on ``--port`` (``PORT``, default 8000). Its four stand-ins take ports
derived from it, so that two demos side by side never share one:

* Africa's Talking (SMS, delivery reports, the SIM-swap check) on ``PORT + 701``;
* M-Pesa Daraja (STK push, C2B, B2C) on ``PORT + 702``;
* the credit bureau (Metropol-shaped REST; every ID "clean" unless told) on ``PORT + 703``;
* the bank (KCB-style funds transfer, Co-op-style statement) on ``PORT + 704``.

With the default port that is 8701, 8702, 8703 and 8704. A port that is taken stops the demo
before anything starts, with one line saying which and why; so does a stand-in or a
command that fails. The stand-ins run on threads of this process; gunicorn runs as a
child; Ctrl-C (or SIGTERM) stops all of them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from integrations.africastalking.standin import start_standin as start_at
from integrations.bank.standin import KEY as BANK_KEY
from integrations.bank.standin import SECRET as BANK_SECRET
from integrations.bank.standin import start_bank_standin
from integrations.bureaus import standin as bureau_standin
from integrations.mpesa.standin import StandinHandle
from integrations.mpesa.standin import start_standin as start_daraja

# The seeded demo members (manage.py seed-demo): their numbers end 0001-0004, which the
# Daraja stand-in turns into failures by default; the demo makes their payments succeed.
DEMO_PHONES = ("+254712000001", "+254722000002", "+254110000003", "+254733000004")
AT_OFFSET, DARAJA_OFFSET, BUREAU_OFFSET, BANK_OFFSET = 701, 702, 703, 704
BANK_CALLBACK_TOKEN = "demo-bank-callback-token-not-secret"
ROOT = Path(__file__).resolve().parents[1]


class DemoError(Exception):
    """Something stops the demo from starting; the message is the one line shown."""


@dataclass(frozen=True)
class Ports:
    app: int
    africastalking: int
    daraja: int
    bureau: int
    bank: int


def ports_for(app_port: int) -> Ports:
    """The stand-ins' ports for an app port (8000 → 8701, 8702, 8703, 8704)."""
    if not 1 <= app_port <= 65535 - BANK_OFFSET:
        raise DemoError(f"PORT={app_port}: choose a port between 1 and {65535 - BANK_OFFSET}")
    return Ports(
        app_port, app_port + AT_OFFSET, app_port + DARAJA_OFFSET, app_port + BUREAU_OFFSET,
        app_port + BANK_OFFSET,
    )  # fmt: skip


def ensure_free(host: str, port: int, what: str, app_port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            raise DemoError(
                f"port {port} ({what}) is already in use: is another demo running with "
                f"PORT={app_port}? Start this one with another PORT, e.g. make demo "
                f"PORT={app_port + 1000}"
            ) from None


def set_outcomes(handle: StandinHandle, phones: tuple[str, ...]) -> None:
    status, answer = handle.state.handle(
        "POST", "/_control", "", {}, json.dumps({"outcomes": dict.fromkeys(phones, 0)}).encode()
    )
    if status != 200:
        raise DemoError(f"the Daraja stand-in refused the demo outcomes: {answer!r}")


@contextmanager
def standins(host: str, ports: Ports, var: Path) -> Iterator[tuple[str, str, Path, str, str]]:
    """The stand-ins, serving until the block ends; yields their URLs and the certificate."""
    app_url = f"http://{host}:{ports.app}"
    log = logging.getLogger("integrations.mpesa.standin")
    log.setLevel(logging.INFO)
    log.addHandler(logging.FileHandler(var / "mpesa-standin.log"))
    log.propagate = False
    with ExitStack() as stack:
        at = stack.enter_context(
            start_at(ports.africastalking, host, delivery_callback=f"{app_url}/sms/delivery")
        )
        daraja = stack.enter_context(start_daraja(ports.daraja, host, callback_base=app_url))
        set_outcomes(daraja, DEMO_PHONES)
        certificate = var / f"mpesa-standin-cert-{ports.app}.pem"
        certificate.write_bytes(daraja.certificate_pem)
        bureau = stack.enter_context(bureau_standin.start_standin(host, ports.bureau))
        bank_callback = f"{app_url}/hooks/bank/transfer-result?token={BANK_CALLBACK_TOKEN}"
        bank = stack.enter_context(start_bank_standin(bank_callback, ports.bank))
        yield at.url, daraja.url, certificate, bureau.url, bank.url


def run(command: list[str], env: dict[str, str], what: str) -> None:
    done = subprocess.run(command, cwd=ROOT, env=env, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        reason = (done.stderr or done.stdout).strip().splitlines()
        raise DemoError(f"{what} failed: {reason[-1] if reason else f'exit {done.returncode}'}")
    if done.stdout.strip():
        print("  " + done.stdout.strip())


def serve(host: str, app_port: int, var: Path) -> int:
    ports = ports_for(app_port)
    ensure_free(host, ports.app, "the app", app_port)
    ensure_free(host, ports.africastalking, "the Africa's Talking stand-in", app_port)
    ensure_free(host, ports.daraja, "the Daraja stand-in", app_port)
    ensure_free(host, ports.bureau, "the credit-bureau stand-in", app_port)
    ensure_free(host, ports.bank, "the bank stand-in", app_port)
    var.mkdir(exist_ok=True)
    with standins(host, ports, var) as (at_url, daraja_url, certificate, bureau_url, bank_url):
        env = {
            **os.environ,
            "SACCO_ENV": os.environ.get("SACCO_ENV", "demo"),
            "HOST": host,
            "PORT": str(ports.app),
            "AT_BASE_URL": at_url,
            "AT_INSIGHTS_URL": at_url,
            "MPESA_BASE_URL": daraja_url,
            "MPESA_CALLBACK_BASE_URL": f"http://{host}:{ports.app}",
            "MPESA_CERTIFICATE_PATH": str(certificate),
            # The credit bureau: the Metropol-shaped adapter with the stand-in's own keys.
            "BUREAU_PROVIDER": "metropol",
            "BUREAU_URL": bureau_url,
            "BUREAU_METROPOL_PUBLIC_KEY": bureau_standin.PUBLIC_KEY,
            "BUREAU_METROPOL_PRIVATE_KEY": bureau_standin.PRIVATE_KEY,
            "BANK_BASE_URL": bank_url,
            "BANK_CONSUMER_KEY": BANK_KEY,
            "BANK_CONSUMER_SECRET": BANK_SECRET,
            "BANK_DEBIT_ACCOUNT": "1100223344",
            "BANK_CALLBACK_TOKEN": BANK_CALLBACK_TOKEN,
        }
        python = sys.executable
        run([python, "manage.py", "mpesa-register-urls"], env, "registering the C2B URLs")
        base = f"http://{host}:{ports.app}"
        print(
            f"\nDemo SACCO on {base}  (Ctrl-C to stop; data in var/demo.db)\n"
            f"  phone simulator:  {base}/simulator   (or: make phone PORT={ports.app} "
            "PHONE=+254712000001)\n"
            f"  Staff API docs:   {base}/api/v1/docs\n"
            f"  Africa's Talking stand-in: {at_url}  (SMS sent: curl "
            f"'{at_url}/_messages?to=%2B254712000001')\n"
            f"  Daraja stand-in:  {daraja_url}  (paybill payment: curl -XPOST "
            f"{daraja_url}/_simulate/c2b -d "
            '\'{"amount":"250","bill_ref":"<member no>","msisdn":"+254712000001"}\')\n'
            f"  Credit-bureau stand-in: {bureau_url}  (calls: curl {bureau_url}/_calls)\n",
            flush=True,
        )
        child = subprocess.Popen(
            [python, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "wsgi:app"],
            cwd=ROOT,
            env=env,
        )
        signal.signal(signal.SIGTERM, lambda *_: child.terminate())
        try:
            return child.wait()
        except KeyboardInterrupt:
            child.terminate()
            return child.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--var", type=Path, default=Path("var"))
    args = parser.parse_args(argv)
    try:
        return serve(args.host, args.port, args.var)
    except DemoError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
