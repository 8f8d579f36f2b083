"""A local stand-in of both credit bureaus, for tests and the demo (standard library only).

``POST /v2_1/identity/verify`` and ``/v2_1/report/credit_info`` (Metropol-shaped JSON)
    Checks ``X-METROPOL-REST-API-KEY`` and ``X-METROPOL-REST-API-HASH`` (SHA-256 hex of
    private key + body + public key + ``X-METROPOL-REST-API-TIMESTAMP``): a wrong key or
    hash answers HTTP 401. An unknown ID answers ``has_error`` with ``api_code`` "102".
``POST /crbws/CRBWebService`` (TransUnion-shaped SOAP 1.1, ``getProduct103`` and
    ``getProduct123`` of ``transunion.wsdl``). Wrong username, password or code answers
    ``responseCode`` 101; an unknown ID 202.

Answers per national ID (``POST /_control``)::

    {"national_id": "12345678", "answer": "clean"}   # clean | historical | delinquent |
                                                     # no_record | not_found | error |
                                                     # malformed
    {"fail_next": 2}                       # next N bureau requests: HTTP 500
    {"hang_next": 1, "hang_seconds": 5}    # next N bureau requests stall first
    {"default_answer": "not_found"}        # an ID without a rule (default "clean")

``GET /_calls`` lists every bureau request received (api, operation, national ID, consent
reference); ``POST /_reset`` forgets rules, calls and pending faults.

In-process: ``handle = start_standin(port=0)``; ``handle.url``; ``handle.stop()``. CLI:
``python -m integrations.bureaus.standin --port 8703``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from xml.sax.saxutils import escape

from integrations.bureaus.metropol import api_hash

PUBLIC_KEY = "standin-public-key"
PRIVATE_KEY = "standin-private-key"
TU_USERNAME, TU_PASSWORD, TU_CODE = "sacco", "standin-password", "SACCO01"
METROPOL_PREFIX = "/v2_1/"
SOAP_PATH = "/crbws/CRBWebService"
ANSWERS = ("clean", "historical", "delinquent", "no_record", "not_found", "error", "malformed")
SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
TU_NS = "http://ws.crbws.transunion.ke.co/"

# Each profile's accounts: (days in arrears now, worst days in arrears, non-performing).
PROFILES: dict[str, tuple[int | None, list[tuple[int, int, bool]]]] = {
    "clean": (682, [(0, 0, False), (0, 0, False)]),
    "historical": (575, [(0, 45, False), (0, 0, False)]),
    "delinquent": (401, [(120, 120, True), (0, 10, False)]),
    "no_record": (None, []),
}


@dataclass
class State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)
    answers: dict[str, str] = field(default_factory=dict)
    default_answer: str = "clean"
    calls: list[dict[str, Any]] = field(default_factory=list)
    fail_next: int = 0
    hang_next: int = 0
    hang_seconds: float = 0.0

    def answer_for(self, national_id: str) -> str:
        with self.lock:
            return self.answers.get(national_id, self.default_answer)


class _Server(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True

    def __init__(self, address: tuple[str, int], state: State, quiet: bool) -> None:
        super().__init__(address, _Handler)
        self.state, self.quiet = state, quiet

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a client that timed out and left
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "BureauStandin/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        if not self.server.quiet:
            super().log_message(format, *args)

    @property
    def state(self) -> State:
        return self.server.state

    def _reply(self, status: int, body: str, content_type: str = "application/json") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _fault_injected(self) -> bool:
        with self.state.lock:
            hang = self.state.hang_seconds if self.state.hang_next > 0 else 0.0
            self.state.hang_next = max(0, self.state.hang_next - 1)
        if hang and self.state.stopping.wait(hang):
            return True
        with self.state.lock:
            fail = self.state.fail_next > 0
            self.state.fail_next = max(0, self.state.fail_next - 1)
        if fail:
            self._reply(500, "Internal Server Error", "text/plain")
        return fail

    def _record(self, api: str, operation: str, national_id: str, consent: str) -> None:
        with self.state.lock:
            self.state.calls.append(
                {"api": api, "operation": operation, "national_id": national_id,
                 "consent_reference": consent}
            )  # fmt: skip

    def do_GET(self) -> None:
        if self.path != "/_calls":
            self._reply(404, "{}")
            return
        with self.state.lock:
            self._reply(200, json.dumps({"calls": list(self.state.calls)}))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        if self.path == "/_control":
            try:
                _control(self.state, json.loads(body or b"{}"))
            except (ValueError, TypeError) as exc:
                self._reply(400, json.dumps({"error": str(exc)}))
                return
            self._reply(200, '{"ok": true}')
        elif self.path == "/_reset":
            with self.state.lock:
                self.state.answers.clear()
                self.state.calls.clear()
                self.state.default_answer = "clean"
                self.state.fail_next = self.state.hang_next = 0
            self._reply(200, '{"ok": true}')
        elif self.path.startswith(METROPOL_PREFIX):
            if not self._fault_injected():
                self._metropol(self.path[len(METROPOL_PREFIX) :], body)
        elif self.path == SOAP_PATH:
            if not self._fault_injected():
                self._soap(body)
        else:
            self._reply(404, "{}")

    # -- Metropol-shaped ------------------------------------------------------------------

    def _metropol(self, path: str, body: bytes) -> None:
        stamp = self.headers.get("X-METROPOL-REST-API-TIMESTAMP") or ""
        expected = api_hash(PRIVATE_KEY, body.decode(errors="replace"), PUBLIC_KEY, stamp)
        if (
            self.headers.get("X-METROPOL-REST-API-KEY") != PUBLIC_KEY
            or self.headers.get("X-METROPOL-REST-API-HASH") != expected
        ):
            self._reply(401, json.dumps({"has_error": True, "api_code": "401",
                                         "api_code_description": "Invalid authentication"}))  # fmt: skip
            return
        try:
            request = json.loads(body)
            national_id = str(request["identity_number"])
        except (ValueError, KeyError, TypeError):
            self._reply(400, json.dumps({"has_error": True, "api_code": "400"}))
            return
        self._record("metropol", path, national_id, str(request.get("consent_reference", "")))
        answer = self.state.answer_for(national_id)
        trx = str(uuid.uuid4())
        base: dict[str, Any] = {"api_code": None, "api_code_description": None, "has_error": False,
                "identity_number": national_id, "identity_type": "001", "trx_id": trx}  # fmt: skip
        if answer == "malformed":
            self._reply(200, '{"has_error": false, "account_info": "not a list"')
            return
        if answer == "error":
            base.update(has_error=True, api_code="500", api_code_description="System error")
            self._reply(200, json.dumps(base))
            return
        if answer == "not_found":
            base.update(has_error=True, api_code="102",
                        api_code_description="No record found for identity")  # fmt: skip
            self._reply(200, json.dumps(base))
            return
        if path == "identity/verify":
            base.update(first_name="Wanjiru", other_name=None, last_name="Kamau", gender="F",
                        dob="1990-01-01", dod=None)  # fmt: skip
            self._reply(200, json.dumps(base))
            return
        score, accounts = PROFILES[answer]
        npa = sum(1 for _, _, listed in accounts if listed)
        base.update(
            credit_score=score,
            delinquency_code="004" if npa else "005" if any(w for _, w, _ in accounts) else "001",
            account_info=[
                {"account_number": f"DM_{i}", "account_status": "Active",
                 "current_balance": "1000.00000", "days_in_arrears": now,
                 "highest_days_in_arrears": worst, "delinquency_code": "005"}
                for i, (now, worst, _) in enumerate(accounts)
            ],
            lender_sector={"sector_bank": {"account_npa": npa, "account_performing": len(accounts) - npa}},
        )  # fmt: skip
        self._reply(200, json.dumps(base))

    # -- TransUnion-shaped SOAP ------------------------------------------------------------

    def _soap(self, body: bytes) -> None:
        try:
            envelope = ET.fromstring(body)
            call = next(iter(envelope.find(f"{{{SOAP_NS}}}Body") or []))
        except (ET.ParseError, StopIteration, TypeError):
            self._soap_fault("Client", "unreadable request")
            return
        operation = call.tag.split("}")[-1]
        fields = {child.tag.split("}")[-1]: (child.text or "") for child in call}
        if operation not in ("getProduct103", "getProduct123"):
            self._soap_fault("Client", f"unknown operation {operation}")
            return
        national_id = fields.get("nationalID", "")
        credentials = (fields.get("username"), fields.get("password"), fields.get("code"))
        if credentials != (TU_USERNAME, TU_PASSWORD, TU_CODE):
            self._soap_reply(operation, "<responseCode>101</responseCode>")
            return
        self._record("transunion", operation, national_id, fields.get("consentReference", ""))
        answer = self.state.answer_for(national_id)
        trx = f"<transactionID>{uuid.uuid4()}</transactionID>"
        if answer == "malformed":
            self._reply(200, "<soap:Envelope><broken", "text/xml; charset=utf-8")
            return
        if answer == "error":
            self._soap_fault("Server", "Internal error")
            return
        if answer == "not_found":
            self._soap_reply(operation, f"<responseCode>202</responseCode>{trx}")
            return
        profile = (
            "<personalProfile><fullName>Wanjiru Kamau</fullName>"
            f"<nationalID>{escape(national_id)}</nationalID></personalProfile>"
        )
        if operation == "getProduct103":
            self._soap_reply(operation, f"<responseCode>200</responseCode>{trx}{profile}")
            return
        score, accounts = PROFILES[answer]
        score_xml = (
            "" if score is None
            else f"<scoreOutput><grade>B</grade><positiveScore>{score}</positiveScore></scoreOutput>"
        )  # fmt: skip
        accounts_xml = "".join(
            f"<accountList><accountNo>TU{i}</accountNo><accountStatus>Active</accountStatus>"
            f"<daysInArrears>{now}</daysInArrears><worstArrears>{worst}</worstArrears>"
            f"<npa>{'true' if listed else 'false'}</npa></accountList>"
            for i, (now, worst, listed) in enumerate(accounts)
        )
        self._soap_reply(
            operation, f"<responseCode>200</responseCode>{trx}{profile}{score_xml}{accounts_xml}"
        )

    def _soap_reply(self, operation: str, inner: str) -> None:
        self._reply(
            200,
            f'<?xml version="1.0" encoding="UTF-8"?><S:Envelope xmlns:S="{SOAP_NS}"><S:Body>'
            f'<ns2:{operation}Response xmlns:ns2="{TU_NS}"><return>{inner}</return>'
            f"</ns2:{operation}Response></S:Body></S:Envelope>",
            "text/xml; charset=utf-8",
        )

    def _soap_fault(self, code: str, message: str) -> None:
        self._reply(
            500,
            f'<?xml version="1.0" encoding="UTF-8"?><S:Envelope xmlns:S="{SOAP_NS}"><S:Body>'
            f"<S:Fault><faultcode>S:{code}</faultcode><faultstring>{escape(message)}"
            "</faultstring></S:Fault></S:Body></S:Envelope>",
            "text/xml; charset=utf-8",
        )


def _control(state: State, command: object) -> None:
    if not isinstance(command, dict):
        raise ValueError("control body must be a JSON object")
    for key in ("answer", "default_answer"):
        if key in command and command[key] not in ANSWERS:
            raise ValueError(f"{key} must be one of {ANSWERS}")
    with state.lock:
        if "national_id" in command:
            state.answers[str(command["national_id"])] = str(command.get("answer", "clean"))
        if "default_answer" in command:
            state.default_answer = str(command["default_answer"])
        if "fail_next" in command:
            state.fail_next = int(command["fail_next"])
        if "hang_next" in command:
            state.hang_next = int(command["hang_next"])
            state.hang_seconds = float(command.get("hang_seconds", 30))


@dataclass
class StandinHandle:
    server: _Server
    thread: threading.Thread

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def state(self) -> State:
        return self.server.state

    def stop(self) -> None:
        self.server.state.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> StandinHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_standin(host: str = "127.0.0.1", port: int = 0, *, quiet: bool = True) -> StandinHandle:
    server = _Server((host, port), State(), quiet)
    thread = threading.Thread(target=server.serve_forever, name="bureau-standin", daemon=True)
    thread.start()
    return StandinHandle(server, thread)


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - the CLI
    parser = argparse.ArgumentParser(description="Credit-bureau stand-in (Metropol + TransUnion)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8703)
    args = parser.parse_args(argv)
    handle = start_standin(args.host, args.port, quiet=False)
    print(f"bureau stand-in on {handle.url}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    handle.stop()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
