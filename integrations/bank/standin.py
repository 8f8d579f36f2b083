"""A local stand-in for the bank (tests and the demo): the token, KCB-style funds transfer
with its asynchronous callback, the status query, Co-op-style balance and full statement.

``Controls`` script what the next transfers meet: ``mode`` ``ok`` (accepted, then the
callback), ``refuse`` (``statusCode`` ``"1"``, nothing moves), ``timeout`` (the transfer
is made but the answer comes after ``slow_seconds``: the client's read timeout),
``error500`` (made, then HTTP 500); ``outcome`` ``SUCCESS`` or ``FAILED`` for the callback;
``callbacks`` how many copies of it are posted at once (duplicates, on threads);
``callback`` False to send none (then only the status query tells).

``python -m integrations.bank.standin --port 8093 --callback URL`` serves it for the demo.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

KEY, SECRET = "standin-key", "standin-secret"


@dataclass
class Controls:
    mode: str = "ok"
    outcome: str = "SUCCESS"
    callbacks: int = 1
    callback: bool = True
    slow_seconds: float = 2.0


@dataclass
class Made:
    reference: str
    ft_reference: str
    amount: int  # shillings
    account: str
    name: str
    status: str  # SUCCESS | FAILED | PENDING
    day: date


@dataclass
class BankStandin:
    callback_url: str = ""
    controls: Controls = field(default_factory=Controls)
    opening_cents: int = 100_000_000
    made: dict[str, Made] = field(default_factory=dict)
    credits: list[dict[str, Any]] = field(default_factory=list)
    requests_seen: list[dict[str, Any]] = field(default_factory=list)
    tokens: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def credit(self, amount_cents: int, narration: str, day: date | None = None) -> None:
        """Money arriving in the SACCO's account (a sweep from the M-Pesa org portal)."""
        with self._lock:
            self.credits.append(
                {"amount_cents": amount_cents, "narration": narration,
                 "day": day or datetime.now(UTC).date(),
                 "ref": "CR" + secrets.token_hex(5).upper()}
            )  # fmt: skip

    def join(self, timeout: float = 10.0) -> None:
        for t in list(self._threads):
            t.join(timeout)

    # ------------------------------------------------------------ the API
    def handle(self, path: str, headers: Any, raw: bytes) -> tuple[int, dict[str, Any]]:
        if path == "/token":
            expected = "Basic " + base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
            if headers.get("Authorization") != expected:
                return 401, {"error": "invalid_client"}
            token = secrets.token_hex(16)
            self.tokens.add(token)
            return 200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600}
        auth = headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
            return 401, {"fault": {"code": 900902, "message": "Missing Credentials"}}
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return 400, {"statusCode": "1", "statusDescription": "malformed JSON"}
        with self._lock:
            self.requests_seen.append({"path": path, "body": body})
        if path == "/fundstransfer/1.0.0/api/v1/transfer":
            return self._transfer(body)
        if path == "/fundstransfer/1.0.0/api/v1/transfer/status":
            made = self.made.get(str(body.get("transactionReference")))
            if made is None:
                return 404, {"statusCode": "404", "statusDescription": "not found"}
            return 200, self._callback_body(made)
        if path == "/Enquiry/AccountBalance/1.0.0/Account":
            cents = self._balance_cents()
            shillings = f"{cents / 100:.2f}"
            return 200, {
                "MessageReference": body.get("MessageReference"), "MessageCode": "0",
                "MessageDescription": "Success", "AccountNumber": body.get("AccountNumber"),
                "Currency": "KES", "ClearedBalance": shillings, "BookedBalance": shillings,
                "BlockedBalance": "0.00", "AvailableBalance": shillings,
            }  # fmt: skip
        if path == "/Enquiry/FullStatement/Account/1.0.0":
            return 200, self._statement(body)
        return 404, {"error": "no such path"}

    def _transfer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        required = ("creditAccountNumber", "debitAccountNumber", "debitAmount",
                    "transactionReference", "transactionType", "beneficiaryBankCode")  # fmt: skip
        if any(body.get(k) in (None, "") for k in required) or body.get("transactionType") not in (
            "IF",
            "PL",
            "RT",
            "EF",
        ):
            return 400, {"statusCode": "1", "statusMessage": "Error",
                         "statusDescription": "Validation failed: missing parameter"}  # fmt: skip
        mode = self.controls.mode
        if mode == "refuse":
            return 200, {"statusCode": "1", "statusMessage": "Error",
                         "statusDescription": "Validation failed: Transaction failed due to "
                         "limit rule", "merchantID": None,
                         "retrievalRefNumber": secrets.token_hex(4).upper()}  # fmt: skip
        reference = str(body["transactionReference"])
        with self._lock:
            if reference in self.made:  # the bank refuses a repeated reference
                return 200, {"statusCode": "1", "statusMessage": "Error",
                             "statusDescription": "Duplicate transactionReference"}  # fmt: skip
            made = Made(
                reference, "FT" + secrets.token_hex(5).upper(), int(body["debitAmount"]),
                str(body["creditAccountNumber"]), str(body.get("beneficiaryDetails") or ""),
                "PENDING", datetime.now(UTC).date(),
            )  # fmt: skip
            self.made[reference] = made
        self._settle_later(made)
        if mode == "timeout":
            time.sleep(self.controls.slow_seconds)
        if mode == "error500":
            return 500, {"statusCode": "500", "statusDescription": "Internal error"}
        return 200, {"statusCode": "0", "statusMessage": "Success",
                     "statusDescription": "Request received for processing",
                     "merchantID": "standin", "retrievalRefNumber": made.ft_reference}  # fmt: skip

    def _settle_later(self, made: Made) -> None:
        outcome, copies, send = (
            self.controls.outcome,
            self.controls.callbacks,
            self.controls.callback,
        )

        def run() -> None:
            time.sleep(0.05)
            made.status = outcome
            if not (send and self.callback_url):
                return
            body = self._callback_body(made)
            posts = [threading.Thread(target=self._post, args=(body,)) for _ in range(copies)]
            for p in posts:
                p.start()
            for p in posts:
                p.join(15)

        t = threading.Thread(target=run, daemon=True)
        self._threads.append(t)
        t.start()

    def _post(self, body: dict[str, Any]) -> None:
        # The bank does not promise a retry: the status query catches a lost callback.
        with contextlib.suppress(requests.RequestException):
            requests.post(self.callback_url, json=body, timeout=10)

    def _callback_body(self, made: Made) -> dict[str, Any]:
        return {
            "ftReference": made.ft_reference,
            "transactionDate": datetime.now(UTC).isoformat(),
            "amount": str(made.amount),
            "transactionStatus": made.status,
            "transactionMessage": "Processed Successfully"
            if made.status == "SUCCESS"
            else "Failed",
            "beneficiaryAccountNumber": made.account,
            "beneficiaryName": made.name,
            "transactionReference": made.reference,
            "merchantId": "standin",
            "debitAccountNumber": "standin",
        }

    def _balance_cents(self) -> int:
        out = sum(m.amount * 100 for m in self.made.values() if m.status == "SUCCESS")
        credits: int = sum(int(c["amount_cents"]) for c in self.credits)
        return self.opening_cents - out + credits

    def _statement(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            start = date.fromisoformat(str(body.get("StartDate")))
            end = date.fromisoformat(str(body.get("EndDate")))
        except ValueError:
            return {"MessageReference": body.get("MessageReference"), "MessageCode": "-2",
                    "MessageDescription": "INVALID/MISSING PARAMETER"}  # fmt: skip
        rows = [
            {"TransactionDate": m.day.isoformat(), "ValueDate": m.day.isoformat(),
             "Narration": f"FT {m.reference} {m.name}", "TransactionType": "D",
             "TransactionReference": m.ft_reference, "DebitAmount": f"{m.amount:.2f}",
             "CreditAmount": "0.00"}
            for m in self.made.values() if m.status == "SUCCESS" and start <= m.day <= end
        ] + [
            {"TransactionDate": c["day"].isoformat(), "ValueDate": c["day"].isoformat(),
             "Narration": c["narration"], "TransactionType": "C",
             "TransactionReference": c["ref"], "DebitAmount": "0.00",
             "CreditAmount": f"{c['amount_cents'] / 100:.2f}"}
            for c in self.credits if start <= c["day"] <= end
        ]  # fmt: skip
        return {"MessageReference": body.get("MessageReference"), "MessageCode": "0",
                "MessageDescription": "Success", "AccountNumber": body.get("AccountNumber"),
                "Transactions": rows}  # fmt: skip


def _handler(bank: BankStandin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, body = bank.handle(self.path.split("?")[0], self.headers, raw)
            data = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the client gave up (its read timeout)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@dataclass
class BankStandinHandle:
    bank: BankStandin
    url: str


@contextmanager
def start_bank_standin(callback_url: str = "", port: int = 0) -> Iterator[BankStandinHandle]:
    bank = BankStandin(callback_url=callback_url)
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(bank))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield BankStandinHandle(bank, f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        bank.join(2)
        server.shutdown()
        server.server_close()


def main() -> None:  # pragma: no cover - the demo's entry point
    parser = argparse.ArgumentParser(description="bank stand-in")
    parser.add_argument("--port", type=int, default=8093)
    parser.add_argument("--callback", default="")
    args = parser.parse_args()
    with start_bank_standin(args.callback, args.port) as handle:
        print(f"bank stand-in on {handle.url}", flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
