"""A phone for tests: drives ``POST /ussd`` with the gateway's exact form fields."""

from __future__ import annotations

import itertools
from typing import Any

from db.models import Member

SERVICE_CODE = "*384*44135#"
_ids = itertools.count(1)


class Phone:
    def __init__(self, client: Any, msisdn: str, *, path: str = "/ussd") -> None:
        self.client = client
        self.msisdn = msisdn
        self.path = path
        self.session_id = ""
        self.inputs: list[str] = []
        self.last = ""

    def post(self, text: str) -> Any:
        return self.client.post(
            self.path,
            data={
                "sessionId": self.session_id,
                "serviceCode": SERVICE_CODE,
                "phoneNumber": self.msisdn,
                "networkCode": "63902",
                "text": text,
            },
        )

    def dial(self, text: str = "") -> str:
        """A new session; ``text`` non-empty simulates a direct-dial shortcut."""
        self.session_id = f"ATUid_test_{next(_ids)}"
        self.inputs = [text] if text else []
        return self._hop("*".join(self.inputs))

    def send(self, value: str) -> str:
        self.inputs.append(value)
        return self._hop("*".join(self.inputs))

    def _hop(self, text: str) -> str:
        response = self.post(text)
        assert response.status_code == 200, response.status_code
        assert response.mimetype == "text/plain"
        body: str = response.get_data(as_text=True)
        assert body.startswith(("CON ", "END ")), body
        assert len(body) <= 160, (len(body), body)
        self.last = body
        return body

    def hang_up(self, status: str = "Incomplete") -> int:
        response = self.client.post(
            self.path.replace("/ussd", "/ussd/events", 1),
            data={
                "date": "2026-11-27 21:00:00",
                "sessionId": self.session_id,
                "serviceCode": SERVICE_CODE,
                "networkCode": "63902",
                "phoneNumber": self.msisdn,
                "status": status,
                "cost": "KES 0.10",
                "durationInMillis": "41000",
                "hopsCount": str(len(self.inputs) + 1),
                "input": "*".join(self.inputs),
                "lastAppResponse": self.last,
                "errorMessage": "",
            },
        )
        return int(response.status_code)

    @property
    def ended(self) -> bool:
        return self.last.startswith("END ")


def make_member(
    session: Any,
    deps: Any,
    *,
    msisdn: str = "+254712000001",
    national_id: str = "23456781",
    name: str = "Amina Wanjiru",
    pin: str | None = "4826",
    status: str = "active",
    language: str = "en",
) -> Member:
    """A registered member in the given status (through core's own verbs)."""
    from core.members import registration as members

    member = members.register_member(
        session,
        deps,
        full_name=name,
        msisdn=msisdn,
        national_id=national_id,
        language=language,
        consent=True,
        pin=pin,
    )
    path = {
        "pending_kyc": [],
        "active": ["active"],
        "suspended": ["active", "suspended"],
        "exited": ["exited"],
    }[status]
    for step in path:
        members.set_status(session, member.id, step)
    return member
